"""Loss layers and Accuracy against real Caffe's golden data, gradchecks, edge cases."""

import numpy as np
import pytest
import torch
from golden_cases import run_layer_case
from google.protobuf import text_format
from layer_testing import load_case

from caffe.layers import LayerError, modules
from caffe.proto import caffe_pb2

FWD = dict(rtol=1e-4, atol=1e-5)
GRAD = dict(rtol=1e-3, atol=1e-4)


def build(lp, shapes, phase=0):
    return modules[lp.type](lp, shapes, phase)


def run_case_standalone(name):
    """Build layer L alone, forward the golden inputs, backward the golden top diffs."""
    _, lp, _, d = load_case(name)
    nb = len(lp.bottom)
    ins = [torch.tensor(d["in/b%d" % k]) for k in range(nb)]
    layer = build(lp, [tuple(x.shape) for x in ins])
    assert layer.output_shapes([tuple(x.shape) for x in ins]) == \
        [tuple(d["out/t%d" % k].shape) for k in range(len(lp.top))]
    for i, b in enumerate(layer.blobs):
        if "param/%d" % i in d:
            b.data[...] = d["param/%d" % i]
    params = [b.data_tensor(torch.device("cpu")).clone().requires_grad_(True)
              for b in layer.blobs]
    ins = [x.clone().requires_grad_("diff/b%d" % k in d) for k, x in enumerate(ins)]
    outs = layer.run(ins, params)
    assert len(outs) == len(lp.top)
    for k, o in enumerate(outs):
        np.testing.assert_allclose(o.detach().numpy(), d["out/t%d" % k], **FWD,
                                   err_msg="%s out/t%d" % (name, k))
        assert tuple(o.shape) == d["out/t%d" % k].shape
    wrt = [x for k, x in enumerate(ins) if "diff/b%d" % k in d] + \
        [p for i, p in enumerate(params) if "pdiff/%d" % i in d]
    if not wrt:
        return layer, outs
    if layer.is_loss:
        tops, grads = [outs[0]], [torch.ones(())]
    else:
        tops = [o for k, o in enumerate(outs) if "topdiff/t%d" % k in d]
        grads = [torch.tensor(d["topdiff/t%d" % k]) for k in range(len(outs))
                 if "topdiff/t%d" % k in d]
    got = torch.autograd.grad(tops, wrt, grad_outputs=grads, allow_unused=True)
    names = ["diff/b%d" % k for k in range(len(ins)) if "diff/b%d" % k in d] + \
        ["pdiff/%d" % i for i in range(len(params)) if "pdiff/%d" % i in d]
    for n, g in zip(names, got):
        g = torch.zeros_like(wrt[names.index(n)]) if g is None else g
        np.testing.assert_allclose(g.numpy(), d[n], **GRAD, err_msg="%s %s" % (name, n))
    return layer, outs


CASES = ["accuracy", "accuracy_perclass_ignore", "contrastive", "euclidean", "hinge_l1",
         "infogain", "multinomial_logistic", "sigmoid_xent", "softmaxloss", "softmaxloss_batch",
         "softmaxloss_full", "softmaxloss_legacy_nonorm", "softmaxloss_spatial_ignore"]


@pytest.mark.parametrize("name", CASES)
def test_golden_standalone(name):
    run_case_standalone(name)


@pytest.mark.parametrize("name", CASES)
def test_golden_through_net(name):
    run_layer_case(name)


# ---------------------------------------------------------------------------
# helpers for hand-built layers
# ---------------------------------------------------------------------------

def make_param(type_, text="", nbottom=2, ntop=1):
    lp = caffe_pb2.LayerParameter()
    text_format.Merge(text, lp)
    lp.name = "L"
    lp.type = type_
    del lp.bottom[:]
    del lp.top[:]
    lp.bottom.extend(["b%d" % i for i in range(nbottom)])
    lp.top.extend(["t%d" % i for i in range(ntop)])
    return lp


def gradcheck_layer(layer, inputs, wrt):
    """Gradcheck (float64) the layer's run w.r.t. the inputs indexed by ``wrt``."""
    inputs = [x.double() for x in inputs]

    def f(*vs):
        xs = list(inputs)
        for i, v in zip(wrt, vs):
            xs[i] = v
        return layer.run(xs, [])[0]

    vs = [inputs[i].clone().requires_grad_(True) for i in wrt]
    assert torch.autograd.gradcheck(f, vs, eps=1e-6, atol=1e-5, rtol=1e-3)


def rng(seed=0):
    return np.random.RandomState(seed)


# ---------------------------------------------------------------------------
# gradchecks
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "loss_param { normalization: FULL ignore_label: 2 }",
                                  "loss_param { normalization: BATCH_SIZE }",
                                  "loss_param { normalization: NONE }",
                                  "loss_param { normalize: true ignore_label: 0 }",
                                  "softmax_param { axis: -1 }"])
def test_softmaxloss_gradcheck(text):
    r = rng()
    x = torch.tensor(r.randn(2, 4, 3))
    lp = make_param("SoftmaxWithLoss", text)
    if "axis: -1" in text:
        lab = torch.tensor(r.randint(0, 3, size=(2, 4)).astype(np.float64))
    else:
        lab = torch.tensor(r.randint(0, 4, size=(2, 1, 3)).astype(np.float64))
    layer = build(lp, [tuple(x.shape), tuple(lab.shape)])
    gradcheck_layer(layer, [x, lab], [0])


def test_softmaxloss_prob_top_and_manual_values():
    r = rng(1)
    x = torch.tensor(r.randn(3, 5).astype(np.float32))
    lab = torch.tensor([1.7, 4.2, 0.0], dtype=torch.float32)   # truncates to 1, 4, 0
    lp = make_param("SoftmaxWithLoss", "", ntop=2)
    layer = build(lp, [(3, 5), (3,)])
    assert layer.output_shapes([(3, 5), (3,)]) == [(), (3, 5)]
    x.requires_grad_(True)
    loss, prob = layer.run([x, lab], [])
    p = torch.softmax(x.detach().double(), 1)
    expected = -np.mean([np.log(p[i, j].item()) for i, j in enumerate([1, 4, 0])])
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)
    np.testing.assert_allclose(prob.detach().numpy(), p.numpy(), rtol=1e-5)
    # the prob top's diff is ignored by Caffe's backward; loss weight 2 scales
    g, = torch.autograd.grad([loss, prob], [x], [torch.tensor(2.0), torch.ones(3, 5)])
    onehot = torch.zeros(3, 5, dtype=torch.float64)
    onehot[[0, 1, 2], [1, 4, 0]] = 1
    np.testing.assert_allclose(g.numpy(), (2 * (p - onehot) / 3).numpy(), rtol=1e-5, atol=1e-7)


def test_softmaxloss_all_ignored():
    """All labels ignored: VALID count 0 -> normalizer max(1, 0) = 1, loss 0, zero diff."""
    x = torch.randn(2, 3, requires_grad=True)
    lab = torch.tensor([-1.0, -1.0])
    layer = build(make_param("SoftmaxWithLoss", "loss_param { ignore_label: -1 }"),
                  [(2, 3), (2,)])
    loss, = layer.run([x, lab], [])
    assert loss.item() == 0.0 and not torch.isnan(loss)
    g, = torch.autograd.grad(loss, x)
    assert torch.all(g == 0)


def test_softmaxloss_flt_min_clamp():
    x = torch.tensor([[0.0, -200.0]], requires_grad=True)
    layer = build(make_param("SoftmaxWithLoss"), [(1, 2), (1,)])
    loss, = layer.run([x, torch.tensor([1.0])], [])
    np.testing.assert_allclose(loss.item(), -np.log(np.finfo(np.float32).tiny), rtol=1e-6)


def test_softmaxloss_label_count_mismatch():
    with pytest.raises(LayerError) as e:
        build(make_param("SoftmaxWithLoss"), [(2, 3, 4), (2, 3)])
    assert "'L'" in str(e.value) and "bottom[1]" in str(e.value)


def test_loss_first_dim_mismatch():
    with pytest.raises(LayerError) as e:
        build(make_param("EuclideanLoss"), [(2, 3), (3, 2)])
    assert "EuclideanLoss" in str(e.value)


def test_infogain_deprecated_normalize():
    with pytest.raises(LayerError) as e:
        build(make_param("InfogainLoss", "loss_param { normalize: true }", nbottom=3),
              [(2, 3), (2,), (3, 3)])
    assert "loss_param.normalize" in str(e.value)


def test_infogain_needs_source():
    with pytest.raises(LayerError) as e:
        build(make_param("InfogainLoss"), [(2, 3), (2,)])
    assert "infogain_loss_param.source" in str(e.value)


def test_infogain_bad_H_shape():
    with pytest.raises(LayerError) as e:
        build(make_param("InfogainLoss", nbottom=3), [(2, 3), (2,), (2, 2)])
    assert "bottom[2]" in str(e.value)


@pytest.mark.parametrize("text", ["", "loss_param { ignore_label: 1 normalization: FULL }",
                                  "infogain_loss_param { axis: 2 }"])
def test_infogain_gradcheck(text):
    r = rng(2)
    if "axis: 2" in text:
        x = torch.tensor(r.randn(2, 3, 4))
        lab = torch.tensor(r.randint(0, 4, size=(2, 3)).astype(np.float64))
        H = torch.tensor(r.rand(4, 4))
    else:
        x = torch.tensor(r.randn(2, 3, 2))
        lab = torch.tensor(r.randint(0, 3, size=(2, 2)).astype(np.float64))
        H = torch.tensor(r.rand(3, 3))
    layer = build(make_param("InfogainLoss", text, nbottom=3),
                  [tuple(x.shape), tuple(lab.shape), tuple(H.shape)])
    gradcheck_layer(layer, [x, lab, H], [0])


def test_infogain_source_file_and_prob_top(tmp_path):
    _, lp_case, _, d = load_case("infogain")
    H = d["in/b2"]
    blob = caffe_pb2.BlobProto()
    blob.num, blob.channels, blob.height, blob.width = 1, 1, 3, 3
    blob.data.extend(H.ravel().tolist())
    path = tmp_path / "H.binaryproto"
    path.write_bytes(blob.SerializeToString())
    lp = make_param("InfogainLoss", 'infogain_loss_param { source: "%s" }' % path, ntop=2)
    layer = build(lp, [(4, 3), (4,)])
    x = torch.tensor(d["in/b0"], requires_grad=True)
    loss, prob = layer.run([x, torch.tensor(d["in/b1"])], [])
    np.testing.assert_allclose(loss.item(), d["out/t0"], **FWD)
    np.testing.assert_allclose(prob.detach().numpy(),
                               torch.softmax(x.detach(), 1).numpy(), rtol=1e-5)
    g, = torch.autograd.grad(loss, x)
    np.testing.assert_allclose(g.numpy(), d["diff/b0"], **GRAD)


@pytest.mark.parametrize("text", ["", "loss_param { normalization: VALID ignore_label: 1 }",
                                  "loss_param { normalize: false }",
                                  "loss_param { normalization: FULL }"])
def test_sigmoid_xent_gradcheck(text):
    r = rng(3)
    x = torch.tensor(r.randn(3, 4) * 3)
    t = torch.tensor(r.randint(0, 2, size=(3, 4)).astype(np.float64))
    layer = build(make_param("SigmoidCrossEntropyLoss", text), [(3, 4), (3, 4)])
    gradcheck_layer(layer, [x, t], [0])


def test_sigmoid_xent_all_ignored_and_count_error():
    layer = build(make_param("SigmoidCrossEntropyLoss",
                             "loss_param { ignore_label: -1 normalization: VALID }"),
                  [(2, 2), (2, 2)])
    x = torch.randn(2, 2, requires_grad=True)
    loss, = layer.run([x, -torch.ones(2, 2)], [])
    assert loss.item() == 0
    assert torch.all(torch.autograd.grad(loss, x)[0] == 0)
    with pytest.raises(LayerError):
        build(make_param("SigmoidCrossEntropyLoss"), [(2, 2), (2, 3)])


def test_euclidean_gradcheck_both_bottoms():
    r = rng(4)
    layer = build(make_param("EuclideanLoss"), [(3, 4), (3, 2, 2)])
    assert layer.allow_force_backward(1)
    gradcheck_layer(layer, [torch.tensor(r.randn(3, 4)), torch.tensor(r.randn(3, 2, 2))], [0, 1])


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_gradcheck(legacy):
    r = rng(5)
    text = "contrastive_loss_param { margin: 3.0 legacy_version: %s }" % str(legacy).lower()
    layer = build(make_param("ContrastiveLoss", text, nbottom=3), [(4, 3), (4, 3), (4, 1, 1, 1)])
    assert not layer.allow_force_backward(2)
    a, b = torch.tensor(r.randn(4, 3)), torch.tensor(r.randn(4, 3))
    sim = torch.tensor([[1.0], [0.0], [0.9], [0.0]]).reshape(4, 1, 1, 1)  # 0.9 truncates to 0
    gradcheck_layer(layer, [a, b, sim], [0, 1])


def test_contrastive_shape_errors():
    with pytest.raises(LayerError):
        build(make_param("ContrastiveLoss", nbottom=3), [(4, 3), (4, 2), (4, 1, 1, 1)])
    with pytest.raises(LayerError):
        build(make_param("ContrastiveLoss", nbottom=3), [(4, 3, 2, 1), (4, 3, 2, 1), (4,)])


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_gradcheck(norm):
    r = rng(6)
    x = torch.tensor(r.randn(4, 5) * 2)
    lab = torch.tensor([0.0, 3.0, 4.0, 1.0])
    layer = build(make_param("HingeLoss", "hinge_loss_param { norm: %s }" % norm), [(4, 5), (4,)])
    gradcheck_layer(layer, [x, lab], [0])


def test_hinge_l2_value():
    x = torch.tensor([[0.5, -2.0, 0.25]])
    layer = build(make_param("HingeLoss", "hinge_loss_param { norm: L2 }"), [(1, 3), (1,)])
    loss, = layer.run([x, torch.tensor([0.0])], [])
    # t = max(0, 1 + [-0.5, -2, 0.25]) = [0.5, 0, 1.25]
    np.testing.assert_allclose(loss.item(), 0.25 + 1.5625, rtol=1e-6)


def test_multinomial_gradcheck_and_threshold():
    r = rng(7)
    p = torch.tensor(r.rand(4, 3) + 0.1)
    lab = torch.tensor([0.0, 2.0, 1.0, 2.0]).reshape(4, 1, 1, 1)
    layer = build(make_param("MultinomialLogisticLoss"), [(4, 3), (4, 1, 1, 1)])
    gradcheck_layer(layer, [p, lab], [0])
    x = torch.tensor([[0.0, 1.0]], requires_grad=True)
    loss, = layer.run([x, torch.tensor([0.0])], [])
    np.testing.assert_allclose(loss.item(), -np.log(1e-20), rtol=1e-6)
    g, = torch.autograd.grad(loss, x)
    np.testing.assert_allclose(g.numpy(), [[-1e20, 0.0]], rtol=1e-6)
    with pytest.raises(LayerError):
        build(make_param("MultinomialLogisticLoss"), [(4, 3), (4, 2)])


# ---------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------

def test_accuracy_top_k_and_ties():
    x = torch.tensor([[0.1, 0.5, 0.4, 0.0],
                      [0.3, 0.3, 0.2, 0.1],    # tie with the true class counts against it
                      [0.9, 0.1, 0.0, 0.05]])
    lab = torch.tensor([2.0, 1.0, 3.0])
    top1 = build(make_param("Accuracy"), [(3, 4), (3,)])
    top2 = build(make_param("Accuracy", "accuracy_param { top_k: 2 }", ntop=2), [(3, 4), (3,)])
    assert top1.run([x, lab], [])[0].item() == 0.0
    acc, per = top2.run([x, lab], [])
    # sample 0 (class 2 second best): hit; sample 1 (tied with 0.3 of class 0): hit (1 better);
    # sample 2 (class 3 third): miss
    np.testing.assert_allclose(acc.item(), 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(per.numpy(), [0, 1, 1, 0])
    top3 = build(make_param("Accuracy", "accuracy_param { top_k: 3 }"), [(3, 4), (3,)])
    assert top3.run([x, lab], [])[0].item() == 1.0
    assert top2.output_shapes([(3, 4), (3,)]) == [(), (4,)]


def test_accuracy_all_ignored_is_zero():
    layer = build(make_param("Accuracy", "accuracy_param { ignore_label: 5 }", ntop=2),
                  [(2, 3), (2,)])
    acc, per = layer.run([torch.randn(2, 3), torch.tensor([5.0, 5.0])], [])
    assert acc.item() == 0.0 and torch.all(per == 0)


def test_accuracy_spatial_axis():
    r = rng(8)
    x = torch.tensor(r.randn(2, 3, 5).astype(np.float32))
    lab = torch.tensor(r.randint(0, 5, size=(2, 3)).astype(np.float32))
    layer = build(make_param("Accuracy", "accuracy_param { axis: -1 }"), [(2, 3, 5), (2, 3)])
    expected = (x.argmax(-1) == lab.long()).float().mean()
    np.testing.assert_allclose(layer.run([x, lab], [])[0].item(), expected.item(), rtol=1e-6)


def test_accuracy_errors():
    with pytest.raises(LayerError) as e:
        build(make_param("Accuracy", "accuracy_param { top_k: 5 }"), [(3, 4), (3,)])
    assert "accuracy_param.top_k" in str(e.value) and "'L'" in str(e.value)
    with pytest.raises(LayerError) as e:
        build(make_param("Accuracy"), [(3, 4, 2), (3,)])
    assert "bottom[1]" in str(e.value)


def test_registered_types():
    for t in ["SoftmaxWithLoss", "EuclideanLoss", "ContrastiveLoss", "HingeLoss", "InfogainLoss",
              "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss", "Accuracy"]:
        assert t in modules
    assert modules["SoftmaxWithLoss"].is_loss and not modules["Accuracy"].is_loss
