"""pycaffe semantics of Net and Blob that user code depends on."""
import gc
import os
import warnings

import numpy as np
import pytest
import torch
from golden_cases import GOLDEN

import caffe

LENET = os.path.join(GOLDEN, "nets", "lenet.prototxt")
LENET_W = os.path.join(GOLDEN, "nets", "lenet.caffemodel")

TRAIN_NET = """
name: "train"
force_backward: true
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip" top: "ip2"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss"
        loss_weight: 2 }
"""


@pytest.fixture
def train_net(tmp_path):
    p = tmp_path / "train.prototxt"
    p.write_text(TRAIN_NET)
    caffe.set_random_seed(3)
    net = caffe.Net(str(p), caffe.TRAIN)
    rng = np.random.RandomState(0)
    net.blobs["data"].data[...] = rng.randn(4, 3)
    net.blobs["label"].data[...] = [0, 1, 2, 1]
    return net


def test_blob_data_is_live_view():
    net = caffe.Net(LENET, LENET_W, caffe.TEST)
    data = net.blobs["data"].data
    data[...] = 0.5
    out1 = net.forward()["prob"].copy()
    data[...] = 0.0
    out2 = net.forward()["prob"].copy()
    assert not np.allclose(out1, out2)
    w = net.params["ip2"][0].data
    w[...] = 0
    net.params["ip2"][1].data[...] = 0
    np.testing.assert_allclose(net.forward()["prob"], 0.1, rtol=1e-6)


def test_arrays_outlive_the_net():
    net = caffe.Net(LENET, LENET_W, caffe.TEST)
    net.forward()
    prob = net.blobs["prob"].data
    w = net.params["conv1"][0].data
    expected = prob.copy()
    del net
    gc.collect()
    np.testing.assert_array_equal(prob, expected)
    assert w.shape == (20, 1, 5, 5) and np.isfinite(w).all()


def test_output_view_stays_current_across_forwards():
    net = caffe.Net(LENET, LENET_W, caffe.TEST)
    prob = net.blobs["prob"].data          # taken once, read after each forward
    net.blobs["data"].data[...] = 1.0
    net.forward()
    a = prob.copy()
    net.blobs["data"].data[...] = -1.0
    net.forward()
    assert not np.allclose(a, prob)
    np.testing.assert_array_equal(prob, net.blobs["prob"].data)


def test_blob_reshape_keeps_storage_when_not_growing():
    net = caffe.Net(LENET, LENET_W, caffe.TEST)
    blob = net.blobs["data"]
    blob.data[...] = np.arange(blob.count).reshape(blob.shape)
    blob.reshape(1, 1, 28, 28)
    assert blob.shape == [1, 1, 28, 28] and blob.count == 784
    np.testing.assert_array_equal(blob.data.ravel(), np.arange(784))
    blob.reshape(2, 1, 28, 28)
    assert blob.num == 2 and blob.channels == 1 and blob.height == 28 and blob.width == 28
    with pytest.raises(RuntimeError):
        blob.reshape(2, 2, bad=1)
    blob.reshape()
    assert blob.shape == [] and blob.count == 1


def test_forward_reshapes_after_input_reshape():
    net = caffe.Net(LENET, LENET_W, caffe.TEST)
    net.blobs["data"].reshape(5, 1, 28, 28)
    out = net.forward()
    assert out["prob"].shape == (5, 10)


def test_param_diffs_accumulate_bottom_diffs_overwrite(train_net):
    net = train_net
    net.forward()
    net.clear_param_diffs()
    net.backward()
    w1 = net.params["ip"][0].diff.copy()
    d1 = net.blobs["data"].diff.copy()
    assert np.abs(w1).sum() > 0
    net.backward()
    np.testing.assert_allclose(net.params["ip"][0].diff, 2 * w1, rtol=1e-5)
    np.testing.assert_allclose(net.blobs["data"].diff, d1, rtol=1e-6)
    net.clear_param_diffs()
    assert not net.params["ip"][0].diff.any()


def test_loss_blob_diff_holds_loss_weight(train_net):
    net = train_net
    assert net.blob_loss_weights["loss"] == 2.0
    assert net.blobs["loss"].diff == 2.0
    out = net.forward()
    assert out["loss"].shape == ()
    # the net's loss is the weighted sum: twice the layer's loss
    loss = net._forward(0, len(net.layers) - 1)
    assert loss == pytest.approx(2 * float(net.blobs["loss"].data), rel=1e-6)


def test_backward_matches_autograd_and_loss_weight_scales(train_net):
    net = train_net
    net.forward()
    net.clear_param_diffs()
    net.backward()
    x = torch.from_numpy(net.blobs["data"].data.copy()).requires_grad_()
    w1, b1 = (torch.from_numpy(net.params["ip"][i].data.copy()) for i in range(2))
    w2, b2 = (torch.from_numpy(net.params["ip2"][i].data.copy()) for i in range(2))
    h = torch.relu(x @ w1.T + b1)
    logits = h @ w2.T + b2
    loss = 2 * torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 1]))
    loss.backward()
    np.testing.assert_allclose(net.blobs["data"].diff, x.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_hand_written_diffs_and_partial_backward(train_net):
    """deepdream-style: write a diff into an inner blob, backward from there."""
    net = train_net
    net.forward(end="ip2")
    net.blobs["ip2"].diff[...] = net.blobs["ip2"].data
    net.clear_param_diffs()
    net.backward(start="ip2")
    x = torch.from_numpy(net.blobs["data"].data.copy()).requires_grad_()
    w1, b1 = (torch.from_numpy(net.params["ip"][i].data.copy()) for i in range(2))
    w2, b2 = (torch.from_numpy(net.params["ip2"][i].data.copy()) for i in range(2))
    y = torch.relu(x @ w1.T + b1) @ w2.T + b2
    (0.5 * (y ** 2).sum()).backward()
    np.testing.assert_allclose(net.blobs["data"].diff, x.grad.numpy(), rtol=1e-4, atol=1e-6)
    # a segment only: ip2 alone writes ip's diff, data's diff untouched
    net.blobs["data"].diff[...] = 7
    net.backward(start="ip2", end="ip2")
    assert (net.blobs["data"].diff == 7).all()


def test_partial_forward_start_end(train_net):
    net = train_net
    net.forward()
    ref = net.blobs["ip2"].data.copy()
    net.blobs["ip"].data[...] = 0
    out = net.forward(start="ip2", end="ip2")
    assert set(out) == {"ip2"}
    np.testing.assert_allclose(out["ip2"], np.broadcast_to(net.params["ip2"][1].data, ref.shape))
    with pytest.raises(ValueError):
        net.forward(start="nope")


def test_forward_kwargs_checked(train_net):
    net = train_net
    with pytest.raises(Exception, match="do not match net inputs"):
        net.forward(data=np.zeros((4, 3)))
    with pytest.raises(Exception, match="not batch sized"):
        net.forward(data=np.zeros((3, 3)), label=np.zeros(3))


def test_callbacks_called_per_layer(train_net):
    seen = []
    train_net.before_forward(lambda i: seen.append(("bf", i)))
    train_net.after_forward(lambda i: seen.append(("af", i)))
    train_net.before_backward(lambda i: seen.append(("bb", i)))
    train_net.after_backward(lambda i: seen.append(("ab", i)))
    train_net.forward()
    train_net.backward()
    n = len(train_net.layers)
    assert seen[:2 * n] == [(k, i) for i in range(n) for k in ("bf", "af")]
    assert seen[2 * n:] == [(k, i) for i in reversed(range(n)) for k in ("bb", "ab")]


def test_deploy_forward_keeps_no_autograd_state():
    net = caffe.Net(LENET, LENET_W, caffe.TEST)
    text = open(LENET).read()
    assert "force_backward: true" in text          # golden copy forces backward ...
    deploy_text = text.replace("force_backward: true", "")
    path = os.path.join(os.path.dirname(LENET), "..", "..", "..", "examples",
                        "lenet_deploy", "deploy.prototxt")
    deploy = caffe.Net(os.path.abspath(path), caffe.TEST)
    deploy.forward()
    assert all(st.tape is None for st in deploy._steps)
    assert not any(deploy._layer_need_backward)
    net.forward()
    assert any(st.tape is not None for st in net._steps)
    del deploy_text


def test_set_mode_gpu_without_cuda_warns_once_and_runs():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: GPU mode really switches")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        caffe.set_mode_gpu()
        caffe.set_mode_gpu()
    caffe.set_mode_cpu()
    assert len([x for x in w if "CUDA" in str(x.message)]) <= 1
    net = caffe.Net(LENET, LENET_W, caffe.TEST)
    assert net.forward()["prob"].shape == (64, 10)


def test_inputs_outputs_and_names(train_net):
    net = train_net
    assert net.inputs == ["data", "label"]
    assert net.outputs == ["loss"]
    assert net.top_names["ip"] == ["ip"] and net.bottom_names["loss"] == ["ip2", "label"]
    assert list(net.layer_dict) == list(net._layer_names)
    assert [l.type for l in net.layers] == ["Input", "InnerProduct", "ReLU", "InnerProduct",
                                             "SoftmaxWithLoss"]


def test_legacy_and_keyword_constructors():
    a = caffe.Net(LENET, LENET_W, caffe.TEST)
    b = caffe.Net(LENET, caffe.TEST, weights=LENET_W)
    c = caffe.Net(network_file=LENET, phase=caffe.TEST, weights=LENET_W)
    for n in (b, c):
        np.testing.assert_array_equal(n.params["conv1"][0].data, a.params["conv1"][0].data)


def test_save_and_reload(tmp_path, train_net):
    path = str(tmp_path / "w.caffemodel")
    train_net.save(path)
    other = caffe.Net(str(tmp_path / "train.prototxt"), caffe.TRAIN, weights=path)
    for name in ("ip", "ip2"):
        for a, b in zip(train_net.params[name], other.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
    h5 = str(tmp_path / "w.caffemodel.h5")
    train_net.save_hdf5(h5)
    third = caffe.Net(str(tmp_path / "train.prototxt"), caffe.TRAIN, weights=h5)
    np.testing.assert_array_equal(third.params["ip"][0].data, train_net.params["ip"][0].data)


def test_load_caffe_written_hdf5():
    d = os.path.join(GOLDEN, "nets")
    a = caffe.Net(os.path.join(d, "mini_resnet.prototxt"), caffe.TEST,
                  weights=os.path.join(d, "mini_resnet.caffemodel"))
    b = caffe.Net(os.path.join(d, "mini_resnet.prototxt"), caffe.TEST,
                  weights=os.path.join(d, "mini_resnet.caffemodel.h5"))
    for name in a.params:
        for x, y in zip(a.params[name], b.params[name]):
            np.testing.assert_array_equal(x.data, y.data)


def test_share_with_shares_data(train_net, tmp_path):
    other = caffe.Net(str(tmp_path / "train.prototxt"), caffe.TEST)
    other.share_with(train_net)
    train_net.params["ip"][0].data[...] = 3
    assert (other.params["ip"][0].data == 3).all()


def test_views_taken_before_forward_stay_live_and_internal_blobs_are_not_aliased(train_net):
    """Writes adopt fresh tensors only for buffers nobody holds a view of."""
    net = train_net
    ip_view = net.blobs["ip"].data            # handed out before any forward
    net.forward()
    np.testing.assert_array_equal(ip_view, net.blobs["ip"].data)
    before = ip_view.copy()
    net.blobs["data"].data[...] *= -1
    net.forward()
    assert not np.array_equal(before, ip_view)   # same memory, new values
    np.testing.assert_array_equal(ip_view, net.blobs["ip"].data)
    # a blob first read after the forward is its own memory, not another blob's
    a = net.blobs["ip2"].data
    a[...] = 123
    assert not (net.blobs["ip"].data == 123).any()


def test_gpu_style_sync_logic_on_cpu_buffers():
    """SyncedBuffer head rules: the side written last is the truth."""
    from caffe.blob import SyncedBuffer
    buf = SyncedBuffer((2, 3))
    host = buf.host()
    assert (host == 0).all()                   # zero-filled on first use
    host.fill_(2)
    assert (buf.compute(torch.device("cpu")) == 2).all()
    buf.write(torch.full((2, 3), 5.0))
    assert (buf.host() == 5).all() and buf.host().data_ptr() == host.data_ptr()
    buf.reshape((1, 3))                        # shrinking keeps the memory
    assert buf.host().data_ptr() == host.data_ptr()
    buf.reshape((4, 4))                        # growing reallocates, zero-filled
    assert (buf.host() == 0).all()


def test_pycaffe_internal_accessors(train_net):
    """Code written against pycaffe's C++ bindings reads these directly."""
    net = train_net
    names = list(net._blob_names)
    assert [names[i] for i in net._bottom_ids(4)] == ["ip2", "label"]
    assert [names[i] for i in net._top_ids(1)] == ["ip"]
    assert [names[i] for i in net._inputs] == net.inputs
    assert [names[i] for i in net._outputs] == net.outputs
    assert len(net._blobs) == len(names) and list(net._layer_names) == list(net.layer_dict)
    assert list(net._blob_loss_weights) == list(net.blob_loss_weights.values())
