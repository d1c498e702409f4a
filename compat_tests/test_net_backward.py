"""Net.backward reads the blobs as they are when it runs (Caffe's Backward).

The per-layer autograd recording of the forward is only a fast path: when it
is missing (no forward yet) or stale (a bottom or param written since), the
layer's forward is recomputed from the current blobs before its backward.
"""
import numpy as np
import torch

import caffe
from caffe.layers import CaffeLayer

IP_NET = """
name: "ipnet"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 5 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "gaussian" std: 1 } } }
"""


def _net(tmp_path, text, phase=caffe.TRAIN, name="net.prototxt"):
    p = tmp_path / name
    p.write_text(text)
    return caffe.Net(str(p), phase)


def test_backward_on_a_fresh_net_uses_current_blobs(tmp_path):
    # pycaffe's test_backward_start_end: write a top diff, backward one layer
    caffe.set_random_seed(1)
    net = _net(tmp_path, IP_NET)
    x = np.random.RandomState(0).randn(5, 4).astype(np.float32)
    net.blobs["data"].data[...] = x
    g = np.random.RandomState(1).randn(5, 3).astype(np.float32)
    net.blobs["ip"].diff[...] = g
    net.clear_param_diffs()
    out = net.backward(start="ip", end="ip")
    w = net.params["ip"][0].data
    np.testing.assert_allclose(out["data"], g @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.params["ip"][0].diff, g.T @ x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.params["ip"][1].diff, g.sum(0), rtol=1e-5, atol=1e-6)


def test_backward_sees_data_changed_after_forward(tmp_path):
    caffe.set_random_seed(1)
    net = _net(tmp_path, IP_NET)
    rng = np.random.RandomState(0)
    net.blobs["data"].data[...] = rng.randn(5, 4)
    net.forward()
    x2 = rng.randn(5, 4).astype(np.float32)
    net.blobs["data"].data[...] = x2          # written between forward and backward
    w2 = rng.randn(3, 4).astype(np.float32)
    net.params["ip"][0].data[...] = w2        # ... and a param
    g = rng.randn(5, 3).astype(np.float32)
    net.blobs["ip"].diff[...] = g
    net.clear_param_diffs()
    net.backward()
    np.testing.assert_allclose(net.blobs["data"].diff, g @ w2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.params["ip"][0].diff, g.T @ x2, rtol=1e-5, atol=1e-6)


def test_backward_of_a_saved_result_layer_sees_the_new_bottom(tmp_path):
    # TanH's gradient comes from its output: a stale recording would use the old one
    net = _net(tmp_path, """
name: "t"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "tanh" type: "TanH" bottom: "data" top: "out" }
""")
    rng = np.random.RandomState(2)
    net.blobs["data"].data[...] = rng.randn(4, 3)
    net.forward()
    x2 = rng.randn(4, 3).astype(np.float32)
    net.blobs["data"].data[...] = x2
    net.blobs["out"].diff[...] = 1.0
    net.backward()
    np.testing.assert_allclose(net.blobs["data"].diff, 1 - np.tanh(x2) ** 2, rtol=1e-5,
                               atol=1e-6)


INPLACE_NET = """
name: "inplace"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 6 dim: 3 dim: 2 dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 1
                            weight_filler { type: "gaussian" std: 1 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "%(bn)s" }
layer { name: "scale" type: "Scale" bottom: "%(bn)s" top: "%(scale)s"
        scale_param { bias_term: true filler { type: "gaussian" std: 1 }
                      bias_filler { type: "gaussian" std: 1 } } }
layer { name: "relu" type: "ReLU" bottom: "%(scale)s" top: "%(relu)s" }
layer { name: "drop" type: "Dropout" bottom: "%(relu)s" top: "%(drop)s"
        dropout_param { dropout_ratio: 0.4 } }
layer { name: "ip" type: "InnerProduct" bottom: "%(drop)s" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 } } }
"""


def _chain(tmp_path, inplace):
    names = dict(bn="conv", scale="conv", relu="conv", drop="conv") if inplace else \
        dict(bn="bn", scale="scale", relu="relu", drop="drop")
    caffe.set_random_seed(7)
    net = _net(tmp_path, INPLACE_NET % names, name="c%d.prototxt" % inplace)
    net.blobs["data"].data[...] = np.random.RandomState(3).randn(6, 3, 2, 2)
    return net


def test_inplace_relu_dropout_batchnorm_scale_chain_matches_separate_tops(tmp_path):
    a, b = _chain(tmp_path, True), _chain(tmp_path, False)
    for net in (a, b):
        torch.manual_seed(11)
        net.forward()
        net.blobs["ip"].diff[...] = np.random.RandomState(5).randn(6, 2)
        net.clear_param_diffs()
        net.backward()
    np.testing.assert_allclose(a.blobs["ip"].data, b.blobs["ip"].data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.blobs["data"].diff, b.blobs["data"].diff, rtol=1e-4,
                               atol=1e-5)
    for name in ("conv", "scale", "ip"):
        for pa, pb in zip(a.params[name], b.params[name]):
            np.testing.assert_allclose(pa.diff, pb.diff, rtol=1e-4, atol=1e-5)
    # BatchNorm statistics were updated once per forward, not again by backward
    assert a.params["bn"][2].data[0] == 1.0


def test_reading_blobs_between_forward_and_backward_changes_no_gradient(tmp_path):
    # blob.data hands out a writable view, so the recordings count as stale and
    # are recomputed; in-place layers recompute from the input their forward
    # saw (Caffe's in-place Scale keeps a copy of its bottom), Dropout redraws
    # nothing, BatchNorm does not update its statistics again
    a, b = _chain(tmp_path, True), _chain(tmp_path, True)
    for net, read in ((a, False), (b, True)):
        torch.manual_seed(11)
        net.forward()
        if read:
            for blob in net.blobs.values():
                blob.data  # noqa: B018 (reading hands out a writable view)
            for blobs in net.params.values():
                for blob in blobs:
                    blob.data  # noqa: B018 (reading hands out a writable view)
        net.blobs["ip"].diff[...] = np.random.RandomState(5).randn(6, 2)
        net.clear_param_diffs()
        net.backward()
    np.testing.assert_allclose(a.blobs["data"].diff, b.blobs["data"].diff, rtol=1e-5,
                               atol=1e-6)
    for name in ("conv", "bn", "scale", "ip"):
        for pa, pb in zip(a.params[name], b.params[name]):
            np.testing.assert_allclose(pa.diff, pb.diff, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(pa.data, pb.data)


def test_dropout_recomputed_for_backward_reuses_its_mask(tmp_path):
    net = _net(tmp_path, """
name: "d"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 50 dim: 40 } } }
layer { name: "drop" type: "Dropout" bottom: "data" top: "out"
        dropout_param { dropout_ratio: 0.5 } }
""")
    net.blobs["data"].data[...] = 1.0
    net.forward()
    kept = net.blobs["out"].data != 0
    assert 0 < kept.mean() < 1
    net.blobs["data"].data[...] = 3.0          # stale: the forward is recomputed ...
    net.blobs["out"].diff[...] = 1.0
    net.backward()
    np.testing.assert_array_equal(net.blobs["data"].diff != 0, kept)   # ... same mask


class CountingIP(CaffeLayer):
    """An InnerProduct without bias that counts its forward computations."""
    calls = 0

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.add_param_blob((2, bottom_shapes[0][1]), default_fill=0.5)

    def run(self, bottoms, params):
        if bottoms[0].device.type != "meta":
            type(self).calls += 1
        return [bottoms[0] @ params[0].t()]


def test_normal_forward_backward_loop_does_no_extra_forward(tmp_path):
    caffe.modules["CountingIP"] = CountingIP
    try:
        net = _net(tmp_path, """
name: "cnt"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 3 dim: 4 } } }
layer { name: "ip" type: "CountingIP" bottom: "data" top: "ip" }
layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "data2" top: "loss" }
""".replace('top: "data" input_param { shape { dim: 3 dim: 4 } }',
            'top: "data" top: "data2" input_param { shape { dim: 3 dim: 4 } '
            'shape { dim: 3 dim: 2 } }'))
        CountingIP.calls = 0
        for _ in range(3):
            net.forward()
            net.backward()
            net.forward_backward()
        assert CountingIP.calls == 6
        net.forward()
        net.blobs["data"].data[...] = 1.0          # a write: the next backward recomputes
        net.backward()
        assert CountingIP.calls == 8
        net.backward()                             # the recomputed tape is current now
        assert CountingIP.calls == 8
    finally:
        del caffe.modules["CountingIP"]


def test_solver_step_does_no_extra_forward(tmp_path):
    caffe.modules["CountingIP"] = CountingIP
    try:
        (tmp_path / "train.prototxt").write_text("""
name: "cnt"
layer { name: "data" type: "DummyData" top: "data" top: "target"
        dummy_data_param { shape { dim: 3 dim: 4 } shape { dim: 3 dim: 2 }
                           data_filler { type: "gaussian" } } }
layer { name: "ip" type: "CountingIP" bottom: "data" top: "ip" }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
""")
        (tmp_path / "solver.prototxt").write_text(
            'net: "%s" base_lr: 0.01 lr_policy: "fixed" max_iter: 10 display: 0 '
            'snapshot_after_train: false\n' % (tmp_path / "train.prototxt"))
        solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
        CountingIP.calls = 0
        solver.step(4)
        assert CountingIP.calls == 4
    finally:
        del caffe.modules["CountingIP"]
