"""Common layer family (caffe/layers/common.py) against real Caffe's golden data,
numerical gradients, parameter edge cases and error messages."""

import numpy as np
import pytest
import torch
from golden_cases import run_layer_case
from google.protobuf import text_format
from layer_testing import load_case

from caffe.layers import (
    LayerError,
    common,  # noqa: F401  (registration)
    modules,
)
from caffe.proto import caffe_pb2

CASES = """argmax argmax_topk_val batch_reindex bias_learned bias_two_bottoms bn_global
bn_test_default bn_train concat_axis0 concat_ch crop eltwise_max eltwise_prod eltwise_sum_coeff
embed filter flatten flatten_axes ip_basic ip_transpose_nobias mvn mvn_mean_only parameter
reduction_asum_axis reduction_sum reduction_sumsq reshape_infer scale_learned scale_num_axes0
scale_two_bottoms_axis0 slice_equal slice_points softmax softmax_axis2 split tile""".split()

FWD = dict(rtol=1e-4, atol=1e-5)
GRAD = dict(rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def make_layer(text, bottom_shapes, phase=0):
    lp = caffe_pb2.LayerParameter()
    text_format.Merge(text, lp)
    return modules[lp.type](lp, bottom_shapes, phase)


def run_case_standalone(name):
    net, lp, meta, d = load_case(name)
    phase = 0 if meta["phase"] == "TRAIN" else 1
    nb = len(lp.bottom)
    ins = [torch.tensor(d["in/b%d" % i]) for i in range(nb)]
    layer = modules[lp.type](lp, [tuple(t.shape) for t in ins], phase)
    for i, blob in enumerate(layer.blobs):
        if "param/%d" % i in d:
            blob.data[...] = d["param/%d" % i]
    bottoms = [t.clone().requires_grad_(True) for t in ins]
    params = [b.data_tensor(torch.device("cpu")).clone().requires_grad_(True) for b in layer.blobs]
    shapes = layer.output_shapes([tuple(t.shape) for t in ins])
    with torch.enable_grad():
        tops = layer.run(bottoms, params)
    ntop = len(lp.top)
    assert len(tops) == ntop
    for k in range(ntop):
        want = d["out/t%d" % k]
        got = tops[k].detach().numpy()
        assert got.shape == want.shape, (name, k, got.shape, want.shape)
        np.testing.assert_allclose(got, want, err_msg="%s out/t%d" % (name, k), **FWD)
        if lp.type != "Filter":   # Filter's static shape is the full batch
            assert tuple(shapes[k]) == want.shape
    for i in range(len(params)):
        if "param_after/%d" % i in d:
            np.testing.assert_allclose(params[i].detach().numpy(), d["param_after/%d" % i],
                                       err_msg="%s param_after/%d" % (name, i), **FWD)
    if not meta["backward"]:
        return
    if not net.force_backward:
        # Without force_backward and without a loss, Caffe runs no backward at all
        # (embed, filter, batch_reindex): the golden diffs are zeros.  That is a
        # Net-level rule, checked by test_golden_through_net.
        return
    gouts = [torch.tensor(d["topdiff/t%d" % k]) for k in range(ntop)]
    wrt = bottoms + params
    grads = torch.autograd.grad(tops, wrt, gouts, allow_unused=True)
    for i in range(nb):
        key = "diff/b%d" % i
        if key in d:
            g = grads[i]
            g = torch.zeros_like(bottoms[i]) if g is None else g
            np.testing.assert_allclose(g.numpy(), d[key], err_msg="%s %s" % (name, key), **GRAD)
    for i in range(len(params)):
        key = "pdiff/%d" % i
        if key in d:
            g = grads[nb + i]
            g = torch.zeros_like(params[i]) if g is None else g
            np.testing.assert_allclose(g.detach().numpy(), d[key], err_msg="%s %s" % (name, key),
                                       **GRAD)


# ---------------------------------------------------------------------------
# golden cases
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_golden_standalone(name):
    run_case_standalone(name)


@pytest.mark.parametrize("name", CASES)
def test_golden_through_net(name):
    run_layer_case(name)


# ---------------------------------------------------------------------------
# numerical gradients (float64)
# ---------------------------------------------------------------------------
def _gradcheck(text, shapes, phase=0, inputs=None, grad_bottoms=None, params=True, seed=0):
    torch.manual_seed(seed)
    layer = make_layer(text, shapes, phase)
    if inputs is None:
        inputs = [torch.randn(s, dtype=torch.float64) for s in shapes]
    inputs = [t.to(torch.float64) for t in inputs]
    pvals = [torch.randn(tuple(b.shape), dtype=torch.float64) for b in layer.blobs]
    gb = range(len(inputs)) if grad_bottoms is None else grad_bottoms
    for i in gb:
        inputs[i].requires_grad_(True)
    if params:
        for p in pvals:
            p.requires_grad_(True)

    def fn(*args):
        bots = list(inputs)
        ps = list(pvals)
        j = 0
        for i in gb:
            bots[i] = args[j]
            j += 1
        if params:
            ps = list(args[j:])
        return tuple(layer.run(bots, ps))

    args = [inputs[i] for i in gb] + (pvals if params else [])
    assert torch.autograd.gradcheck(fn, tuple(args), eps=1e-6, atol=1e-6, rtol=1e-4)
    return layer


GRADCHECK = [
    ('type: "InnerProduct" inner_product_param { num_output: 3 }', [(2, 3, 2)]),
    ('type: "InnerProduct" inner_product_param { num_output: 3 axis: 2 transpose: true }',
     [(2, 2, 4)]),
    ('type: "InnerProduct" inner_product_param { num_output: 3 bias_term: false axis: -1 }',
     [(2, 4)]),
    ('type: "Concat" concat_param { axis: -2 }', [(2, 1, 3), (2, 2, 3)]),
    ('type: "Concat" concat_param { concat_dim: 0 }', [(1, 3), (2, 3), (1, 3)]),
    ('type: "Slice" top: "a" top: "b" top: "c" slice_param { axis: -1 slice_point: 1 '
     'slice_point: 3 }', [(2, 5)]),
    ('type: "Slice" top: "a" top: "b" slice_param { slice_dim: 0 }', [(4, 3)]),
    ('type: "Split" top: "a" top: "b"', [(2, 3)]),
    ('type: "Flatten" flatten_param { axis: -3 end_axis: -2 }', [(2, 3, 2, 2)]),
    ('type: "Reshape" reshape_param { shape { dim: -1 dim: 0 } axis: 1 }', [(2, 3, 4)]),
    ('type: "Eltwise" eltwise_param { operation: SUM coeff: 2 coeff: -1 coeff: 0.5 }',
     [(2, 3), (2, 3), (2, 3)]),
    ('type: "Eltwise" eltwise_param { operation: PROD }', [(2, 3), (2, 3), (2, 3)]),
    ('type: "Eltwise" eltwise_param { operation: PROD stable_prod_grad: false }',
     [(2, 3), (2, 3)]),
    ('type: "Eltwise" eltwise_param { operation: MAX }', [(2, 3), (2, 3), (2, 3)]),
    ('type: "Tile" tile_param { axis: -1 tiles: 3 }', [(2, 3)]),
    ('type: "Reduction" reduction_param { operation: SUM axis: 1 coeff: -2 }', [(2, 3, 2)]),
    ('type: "Reduction" reduction_param { operation: ASUM axis: -1 }', [(2, 3)]),
    ('type: "Reduction" reduction_param { operation: SUMSQ }', [(2, 3)]),
    ('type: "Reduction" reduction_param { operation: MEAN axis: 1 coeff: 3 }', [(2, 3, 2)]),
    ('type: "MVN"', [(2, 3, 4)]),
    ('type: "MVN" mvn_param { across_channels: true }', [(2, 3, 2, 2)]),
    ('type: "MVN" mvn_param { normalize_variance: false }', [(2, 3, 4)]),
    ('type: "BatchNorm"', [(4, 3, 2)]),
    ('type: "Scale" scale_param { axis: -2 num_axes: 2 bias_term: true }', [(2, 3, 4)]),
    ('type: "Scale" scale_param { num_axes: 0 }', [(2, 3)]),
    ('type: "Scale" scale_param { num_axes: -1 }', [(2, 3, 2)]),
    ('type: "Scale" scale_param { axis: 1 }', [(2, 3, 4), (3, 4)]),
    ('type: "Scale" scale_param { axis: 0 bias_term: true }', [(2, 3, 4), (2,)]),
    ('type: "Bias" bias_param { axis: 0 num_axes: 2 }', [(2, 3, 4)]),
    ('type: "Bias"', [(2, 3, 4), (3,)]),
    ('type: "Softmax" softmax_param { axis: -1 }', [(2, 3, 4)]),
    ('type: "Softmax"', [(2, 3, 4)]),
]


@pytest.mark.parametrize("text,shapes", GRADCHECK, ids=[t.split('"')[1] + str(i)
                                                         for i, (t, _) in enumerate(GRADCHECK)])
def test_gradcheck(text, shapes):
    _gradcheck('name: "g" ' + text, shapes)


def test_gradcheck_crop():
    _gradcheck('name: "c" type: "Crop" crop_param { axis: 1 offset: 1 offset: 0 offset: 2 }',
               [(2, 4, 3, 5), (2, 2, 3, 2)], grad_bottoms=[0])


def test_gradcheck_index_layers():
    x = torch.randn(4, 3, dtype=torch.float64)
    _gradcheck('name: "r" type: "BatchReindex"', [(4, 3), (5,)],
               inputs=[x, torch.tensor([3., 0., 3., 1., 2.])], grad_bottoms=[0])
    _gradcheck('name: "f" type: "Filter"', [(4, 3), (4, 1)],
               inputs=[x, torch.tensor([[1.], [0.], [2.], [0.]])], grad_bottoms=[0])
    _gradcheck('name: "e" type: "Embed" embed_param { num_output: 3 input_dim: 5 }', [(2, 2)],
               inputs=[torch.tensor([[0., 4.], [4., 2.]])], grad_bottoms=[])
    _gradcheck('name: "p" type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }', [],
               inputs=[])


def test_gradcheck_batchnorm_global():
    layer = make_layer('name: "bn" type: "BatchNorm" batch_norm_param { use_global_stats: true }',
                       [(2, 3, 2)])
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    params = [torch.rand(3, dtype=torch.float64) + 0.5 for _ in range(2)] + \
             [torch.tensor([2.0], dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda t: layer.run([t], params)[0], (x,))


# ---------------------------------------------------------------------------
# semantics and edge cases
# ---------------------------------------------------------------------------
def test_split_backward_sums():
    layer = make_layer('name: "s" type: "Split" top: "a" top: "b" top: "c"', [(2, 3)])
    x = torch.randn(2, 3, requires_grad=True)
    tops = layer.run([x], [])
    gs = [torch.randn(2, 3) for _ in range(3)]
    (g,) = torch.autograd.grad(tops, [x], gs)
    assert torch.allclose(g, gs[0] + gs[1] + gs[2])


def test_eltwise_max_ties():
    layer = make_layer('name: "m" type: "Eltwise" eltwise_param { operation: MAX }',
                       [(3,), (3,), (3,)])
    a = torch.tensor([1., 2., 3.], requires_grad=True)
    b = torch.tensor([1., 2., 0.], requires_grad=True)
    c = torch.tensor([1., 0., 3.], requires_grad=True)
    (y,) = layer.run([a, b, c], [])
    ga, gb, gc = torch.autograd.grad(y, [a, b, c], torch.ones(3))
    # a==b: bottom 1 wins; c must be strictly larger to win
    assert ga.tolist() == [0., 0., 1.]
    assert gb.tolist() == [1., 1., 0.]
    assert gc.tolist() == [0., 0., 0.]


def test_eltwise_prod_unstable_grad_is_quotient():
    layer = make_layer('name: "p" type: "Eltwise" eltwise_param { operation: PROD '
                       'stable_prod_grad: false }', [(2,), (2,)])
    a = torch.tensor([0., 2.], requires_grad=True)
    b = torch.tensor([3., 5.], requires_grad=True)
    (y,) = layer.run([a, b], [])
    ga, gb = torch.autograd.grad(y, [a, b], torch.ones(2))
    assert torch.isnan(ga[0])          # 0/0, as in Caffe
    assert ga[1].item() == 5.0 and gb.tolist() == [0.0, 2.0]


def test_argmax_ties_and_axis():
    layer = make_layer('name: "a" type: "ArgMax" argmax_param { top_k: 2 }', [(2, 4)])
    x = torch.tensor([[1., 3., 3., 0.], [5., 5., 5., 5.]])
    (y,) = layer.run([x], [])
    assert y.shape == (2, 1, 2)
    assert y.reshape(2, 2).tolist() == [[2., 1.], [3., 2.]]
    layer = make_layer('name: "a" type: "ArgMax" argmax_param { axis: -1 out_max_val: true }',
                       [(2, 3, 4)])
    x = torch.randn(2, 3, 4)
    (y,) = layer.run([x], [])
    assert y.shape == (2, 3, 1)
    assert torch.equal(y[..., 0], x.max(-1).values)
    layer = make_layer('name: "a" type: "ArgMax" argmax_param { axis: 1 }', [(2, 3, 4)])
    (y,) = layer.run([x], [])
    assert torch.equal(y[:, 0], x.argmax(1).float())
    assert layer.output_shapes([(2, 3, 4)]) == [(2, 1, 4)]


def test_reshape_inference_and_axes():
    def shape(param, bottom):
        return make_layer('name: "r" type: "Reshape" reshape_param { %s }' % param,
                          [bottom]).output_shapes([bottom])[0]
    assert shape("shape { dim: 0 dim: -1 }", (2, 3, 4)) == (2, 12)
    assert shape("shape { dim: -1 }", (2, 3, 4)) == (24,)
    assert shape("shape { dim: 2 dim: 2 } axis: 1 num_axes: 1", (3, 4, 5)) == (3, 2, 2, 5)
    assert shape("shape { dim: 1 } axis: -1 num_axes: 0", (3, 4)) == (3, 4, 1)
    assert shape("shape { dim: 1 } axis: 0 num_axes: 0", (3, 4)) == (1, 3, 4)
    assert shape("shape { dim: -1 dim: 0 } axis: 1", (2, 3, 4)) == (2, 3, 4)
    assert shape("shape { dim: 0 dim: 0 dim: -1 dim: 2 }", (2, 3, 4, 4)) == (2, 3, 8, 2)
    assert shape("shape { }", (1, 1)) == ()
    layer = make_layer('name: "r" type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }',
                       [(2, 3, 4)])
    (y,) = layer.run([torch.zeros(5, 2, 2)], [])   # reshape at forward time
    assert y.shape == (5, 4)


def test_flatten_negative_axes_and_softmax_axis():
    layer = make_layer('name: "f" type: "Flatten" flatten_param { axis: 0 end_axis: -2 }',
                       [(2, 3, 4)])
    assert layer.output_shapes([(2, 3, 4)]) == [(6, 4)]
    layer = make_layer('name: "s" type: "Softmax" softmax_param { axis: -2 }', [(2, 3, 4)])
    x = torch.randn(2, 3, 4)
    assert torch.allclose(layer.run([x], [])[0], torch.softmax(x, 1))


def test_slice_and_concat_single():
    layer = make_layer('name: "s" type: "Slice" top: "a" slice_param { axis: 0 }', [(3, 2)])
    x = torch.randn(3, 2)
    assert layer.run([x], [])[0] is x
    layer = make_layer('name: "c" type: "Concat"', [(3, 2)])
    assert layer.run([x], [])[0] is x


def test_input_layer_shapes():
    layer = make_layer('name: "i" type: "Input" top: "a" top: "b" '
                       'input_param { shape { dim: 2 dim: 3 } }', [])
    assert layer.output_shapes([]) == [(2, 3), (2, 3)]
    layer = make_layer('name: "i" type: "Input" top: "a" top: "b" '
                       'input_param { shape { dim: 2 } shape { dim: 4 dim: 1 } }', [])
    assert layer.output_shapes([]) == [(2,), (4, 1)]
    assert layer.run([], []) == []


def test_batchnorm_phase_default_and_stats():
    train = make_layer('name: "bn" type: "BatchNorm"', [(4, 2, 3)], phase=0)
    test = make_layer('name: "bn" type: "BatchNorm"', [(4, 2, 3)], phase=1)
    assert not train.use_global_stats and test.use_global_stats
    assert train.mutates_params and train.fixed_param_lr
    assert [tuple(b.shape) for b in train.blobs] == [(2,), (2,), (1,)]
    x = torch.randn(4, 2, 3)
    params = [torch.zeros(2), torch.zeros(2), torch.zeros(1)]
    train.run([x], params)
    train.run([x], params)
    m = x.transpose(0, 1).reshape(2, -1)
    maf = train.maf
    assert torch.allclose(params[2], torch.tensor([1 + maf]))
    assert torch.allclose(params[0], m.mean(1) * (1 + maf), atol=1e-6)
    assert torch.allclose(params[1], m.var(1, unbiased=True) * (1 + maf), atol=1e-5)
    # global stats with a zero scale factor: mean = var = 0
    (y,) = test.run([x], [torch.ones(2), torch.ones(2), torch.zeros(1)])
    assert torch.allclose(y, x / test.eps ** 0.5)


def test_batchnorm_single_value_per_channel():
    layer = make_layer('name: "bn" type: "BatchNorm"', [(1, 3)], phase=0)
    params = [torch.zeros(3), torch.zeros(3), torch.zeros(1)]
    x = torch.randn(1, 3)
    (y,) = layer.run([x], params)
    assert torch.equal(y, torch.zeros(1, 3))
    assert torch.allclose(params[0], x[0]) and torch.equal(params[1], torch.zeros(3))


def test_batchnorm_lr_mult_rejected():
    with pytest.raises(LayerError, match="param.lr_mult"):
        make_layer('name: "bn" type: "BatchNorm" param { lr_mult: 1 }', [(2, 3)])
    make_layer('name: "bn" type: "BatchNorm" param { lr_mult: 0 } param { lr_mult: 0 } '
               'param { lr_mult: 0 }', [(2, 3)])


def test_scale_defaults():
    layer = make_layer('name: "s" type: "Scale" scale_param { bias_term: true }', [(2, 3, 4)])
    assert np.all(layer.blobs[0].data == 1) and np.all(layer.blobs[1].data == 0)
    layer = make_layer('name: "s" type: "Scale" scale_param { bias_term: true }',
                       [(2, 3, 4), (3,)])
    assert len(layer.blobs) == 1 and layer.blobs[0].shape == [3]
    layer = make_layer('name: "b" type: "Bias"', [(2, 3, 4)])
    assert np.all(layer.blobs[0].data == 0)


def test_mvn_eps_on_std():
    layer = make_layer('name: "m" type: "MVN" mvn_param { eps: 0.5 }', [(1, 1, 4)])
    x = torch.tensor([[[1., 2., 3., 4.]]])
    (y,) = layer.run([x], [])
    std = x.std(unbiased=False)
    assert torch.allclose(y, (x - x.mean()) / (std + 0.5))
    # constant rows give a finite gradient in Caffe
    x = torch.ones(1, 1, 4, requires_grad=True)
    (y,) = make_layer('name: "m" type: "MVN"', [(1, 1, 4)]).run([x], [])
    (g,) = torch.autograd.grad(y, [x], torch.randn(1, 1, 4))
    assert torch.isfinite(g).all()


def test_embed_truncates_indices():
    layer = make_layer('name: "e" type: "Embed" embed_param { num_output: 2 input_dim: 3 '
                       'bias_term: false }', [(3,)])
    w = torch.arange(6.).reshape(3, 2)
    (y,) = layer.run([torch.tensor([0.9, 2.0, 1.5])], [w])
    assert y.tolist() == [[0., 1.], [4., 5.], [2., 3.]]
    with pytest.raises(LayerError, match="embed_param.input_dim"):
        layer.run([torch.tensor([3.0])], [w])


def test_filter_static_shape_and_empty():
    layer = make_layer('name: "f" type: "Filter" top: "a" top: "b"', [(3, 2), (3,), (3,)])
    assert layer.output_shapes([(3, 2), (3,), (3,)]) == [(3, 2), (3,)]
    a, b = layer.run([torch.randn(3, 2), torch.randn(3), torch.zeros(3)], [])
    assert a.shape == (0, 2) and b.shape == (0,)


def test_tile_matches_repeat_and_reduction_shapes():
    layer = make_layer('name: "t" type: "Tile" tile_param { tiles: 2 }', [(2, 3, 2)])
    x = torch.randn(2, 3, 2)
    assert torch.equal(layer.run([x], [])[0], torch.cat([x, x], 1))
    layer = make_layer('name: "r" type: "Reduction" reduction_param { axis: -1 operation: MEAN }',
                       [(2, 3, 4)])
    (y,) = layer.run([x := torch.randn(2, 3, 4)], [])
    assert y.shape == (2, 3) and torch.allclose(y, x.mean(-1))
    assert layer.output_shapes([(2, 3, 4)]) == [(2, 3)]


def test_ip_axis_shape():
    layer = make_layer('name: "ip" type: "InnerProduct" inner_product_param { num_output: 5 '
                       'axis: -1 }', [(2, 3, 4)])
    assert [b.shape for b in layer.blobs] == [[5, 4], [5]]
    assert layer.output_shapes([(2, 3, 4)]) == [(2, 3, 5)]
    with pytest.raises(LayerError, match="inner_product_param"):
        layer.output_shapes([(2, 3, 6)])


# ---------------------------------------------------------------------------
# errors name the layer and the field
# ---------------------------------------------------------------------------
ERRORS = [
    ('type: "Reshape" reshape_param { shape { dim: -1 dim: -1 } }', [(2, 3)],
     "reshape_param.shape"),
    ('type: "Reshape" reshape_param { shape { dim: 5 } }', [(2, 3)], "reshape_param.shape"),
    ('type: "Reshape" reshape_param { shape { dim: 0 dim: 0 dim: 0 } }', [(2, 3)],
     "reshape_param.shape"),
    ('type: "Reshape" reshape_param { shape { dim: 4 dim: -1 } }', [(2, 3)],
     "reshape_param.shape"),
    ('type: "Reshape" reshape_param { shape { dim: 6 } axis: 3 }', [(2, 3)],
     "reshape_param.axis"),
    ('type: "Reshape" reshape_param { shape { dim: 6 } axis: 1 num_axes: 2 }', [(2, 3)],
     "reshape_param.num_axes"),
    ('type: "Reshape" bottom: "x" top: "x" reshape_param { shape { dim: 6 } }', [(2, 3)], "top"),
    ('type: "Flatten" bottom: "x" top: "x"', [(2, 3)], "top"),
    ('type: "Slice" top: "a" top: "b" top: "c" slice_param { slice_point: 3 slice_point: 1 }',
     [(2, 5)], "slice_param.slice_point"),
    ('type: "Slice" top: "a" top: "b" slice_param { slice_point: 1 slice_point: 2 }',
     [(2, 5)], "slice_param.slice_point"),
    ('type: "Slice" top: "a" top: "b" slice_param { slice_point: 5 }', [(2, 5)],
     "slice_param.slice_point"),
    ('type: "Slice" top: "a" top: "b" top: "c"', [(2, 5)], "slice_param.axis"),
    ('type: "Slice" top: "a" top: "b" slice_param { axis: 1 slice_dim: 1 }', [(2, 4)],
     "slice_param.axis"),
    ('type: "Concat"', [(2, 3, 4), (2, 3, 5)], "concat_param.axis"),
    ('type: "Concat" concat_param { axis: 3 }', [(2, 3), (2, 3)], "concat_param.axis"),
    ('type: "Concat"', [(2, 3), (2, 3, 1)], "concat_param.axis"),
    ('type: "Crop" crop_param { axis: 2 }', [(1, 1, 4, 4), (1, 1, 5, 2)], "crop_param.offset"),
    ('type: "Crop" crop_param { axis: 2 offset: 2 }', [(1, 1, 4, 4), (1, 1, 3, 2)],
     "crop_param.offset"),
    ('type: "Crop" crop_param { axis: 1 offset: 0 offset: 0 }', [(1, 1, 4, 4), (1, 1, 3, 2)],
     "crop_param.offset"),
    ('type: "Crop" crop_param { axis: 4 }', [(1, 1, 4, 4), (1, 1, 3, 2)], "crop_param.axis"),
    ('type: "Eltwise" eltwise_param { operation: PROD coeff: 1 coeff: 2 }', [(2,), (2,)],
     "eltwise_param.coeff"),
    ('type: "Eltwise" eltwise_param { coeff: 1 }', [(2,), (2,)], "eltwise_param.coeff"),
    ('type: "Eltwise"', [(2,), (3,)], "bottom"),
    ('type: "Tile" tile_param { tiles: 0 }', [(2, 3)], "tile_param.tiles"),
    ('type: "Tile"', [(2, 3)], "tile_param.tiles"),
    ('type: "Reduction" reduction_param { axis: 2 }', [(2, 3)], "reduction_param.axis"),
    ('type: "Flatten" flatten_param { axis: 2 end_axis: 1 }', [(2, 3, 4)],
     "flatten_param.end_axis"),
    ('type: "Flatten" flatten_param { axis: -4 }', [(2, 3, 4)], "flatten_param.axis"),
    ('type: "Softmax" softmax_param { axis: 3 }', [(2, 3)], "softmax_param.axis"),
    ('type: "InnerProduct" inner_product_param { num_output: 0 }', [(2, 3)],
     "inner_product_param.num_output"),
    ('type: "InnerProduct" inner_product_param { num_output: 2 axis: -3 }', [(2, 3)],
     "inner_product_param.axis"),
    ('type: "Scale" scale_param { axis: 1 num_axes: 3 }', [(2, 3, 4)], "scale_param.num_axes"),
    ('type: "Scale"', [(2, 3, 4), (4,)], "scale_param.axis"),
    ('type: "Bias" bias_param { axis: 2 }', [(2, 3, 4), (3,)], "bias_param.axis"),
    ('type: "ArgMax" argmax_param { top_k: 7 }', [(2, 3, 2)], "argmax_param.top_k"),
    ('type: "ArgMax" argmax_param { top_k: 4 axis: 1 }', [(2, 3, 2)], "argmax_param.top_k"),
    ('type: "Embed" embed_param { num_output: 2 }', [(2,)], "embed_param.input_dim"),
    ('type: "Input" top: "a" top: "b" top: "c" input_param { shape { dim: 1 } shape { dim: 2 } }',
     [], "input_param.shape"),
    ('type: "BatchReindex"', [(4, 3), (2, 1)], "bottom"),
    ('type: "Filter" top: "a"', [(4, 3), (4, 2)], "bottom"),
    ('type: "Filter" top: "a"', [(4, 3), (3,)], "bottom"),
]


@pytest.mark.parametrize("text,shapes,field", ERRORS,
                         ids=["%s-%s" % (t.split('"')[1], i) for i, (t, _, _) in enumerate(ERRORS)])
def test_errors_name_layer_and_field(text, shapes, field):
    with pytest.raises(LayerError) as info:
        make_layer('name: "badlayer" ' + text, shapes)
    msg = str(info.value)
    assert "badlayer" in msg and field in msg, msg


def test_runtime_reshape_errors():
    layer = make_layer('name: "sl" type: "Slice" top: "a" top: "b" slice_param { slice_point: 3 }',
                       [(2, 5)])
    with pytest.raises(LayerError, match="slice_param.slice_point"):
        layer.run([torch.zeros(2, 3)], [])
    layer = make_layer('name: "cr" type: "Crop"', [(1, 1, 4, 4), (1, 1, 3, 3)])
    with pytest.raises(LayerError, match="crop_param.offset"):
        layer.run([torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 3, 3)], [])


def test_registered_types():
    for t in ["Input", "InnerProduct", "Concat", "Slice", "Split", "Flatten", "Reshape",
              "Eltwise", "Crop", "Tile", "Reduction", "Silence", "Filter", "BatchReindex",
              "ArgMax", "Embed", "Parameter", "MVN", "BatchNorm", "Scale", "Bias", "Softmax"]:
        assert t in modules
    assert make_layer('name: "s" type: "Silence"', [(2, 3)]).output_shapes([(2, 3)]) == []
