"""Python layers (``type: "Python"``): the golden case made by a real Caffe
build, pycaffe's own Python-layer behaviours, and Python layers inside train
nets with gradients flowing through them both ways."""
import os
import sys
import textwrap

import numpy as np
import pytest
import torch
from golden_cases import GOLDEN, chdir

import caffe

HERE = os.path.dirname(os.path.abspath(__file__))
PYLAYER_DIR = os.path.join(GOLDEN, "python_layer")

# The Python-layer classes the nets below name; written to a module on sys.path,
# because Caffe imports python_param.module the ordinary way.
PYLAYERS_SRC = '''
import json
import numpy as np
import caffe


class TimesTen(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 10 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 10 * top[0].diff


class Fails(caffe.Layer):
    def setup(self, bottom, top):
        raise RuntimeError("setup failed on purpose")


class TimesParamStr(caffe.Layer):
    def setup(self, bottom, top):
        try:
            self.value = float(self.param_str)
        except ValueError:
            raise ValueError("param_str must be a number")
        self.seen_underscore = self.param_str_

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.value * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = self.value * top[0].diff


class OneParam(caffe.Layer):
    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[0] = 0

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] = 1


class PhaseOut(caffe.Layer):
    def setup(self, bottom, top):
        self.phase_str = str(self.phase)

    def reshape(self, bottom, top):
        top[0].reshape()

    def forward(self, bottom, top):
        top[0].data[()] = self.phase


class Counting(caffe.Layer):
    """Counts reshape/forward calls; top has the bottom's shape."""
    def setup(self, bottom, top):
        self.calls = []

    def reshape(self, bottom, top):
        self.calls.append("reshape")
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        self.calls.append("forward")
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff


class TakeFirstRows(caffe.Layer):
    """Changes its top shape inside forward (as RoIDataLayer does)."""
    def setup(self, bottom, top):
        self.rows = int(self.param_str or 2)
        top[0].reshape(self.rows, *bottom[0].data.shape[1:])

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        top[0].reshape(self.rows, *bottom[0].data.shape[1:])
        top[0].data[...] = bottom[0].data[:self.rows]

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 0
        bottom[0].diff[:self.rows] = top[0].diff


class ScaleByParam(caffe.Layer):
    """top = w * bottom with a learned per-channel w (a Python-layer param)."""
    def setup(self, bottom, top):
        self.blobs.add_blob(bottom[0].channels)
        self.blobs[0].data[...] = 1.5

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data * self.blobs[0].data[None, :]

    def backward(self, top, propagate_down, bottom):
        # accumulate into the param diff, as Caffe's C++ layers do
        self.blobs[0].diff[...] += (top[0].diff * bottom[0].data).sum(axis=0)
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * self.blobs[0].data[None, :]


class SquareSum(caffe.Layer):
    """A scalar 'loss' top: sum of squares (a loss only with loss_weight)."""
    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        top[0].data[...] = np.sum(bottom[0].data ** 2)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = 2 * bottom[0].data * top[0].diff[0]
'''


@pytest.fixture(scope="module")
def pymod(tmp_path_factory):
    d = tmp_path_factory.mktemp("pylayers")
    name = "tc_pylayers_%d" % os.getpid()
    (d / (name + ".py")).write_text(PYLAYERS_SRC)
    sys.path.insert(0, str(d))
    try:
        yield name
    finally:
        sys.path.remove(str(d))
        sys.modules.pop(name, None)


def _net(tmp_path, text, phase=caffe.TRAIN, name="net.prototxt", **kw):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return caffe.Net(str(path), phase, **kw)


def _chain_net(mod):
    return """
    name: 'pythonnet' force_backward: true
    input: 'data' input_shape { dim: 10 dim: 9 dim: 8 }
    layer { type: 'Python' name: 'one' bottom: 'data' top: 'one'
      python_param { module: '%(m)s' layer: 'TimesTen' } }
    layer { type: 'Python' name: 'two' bottom: 'one' top: 'two'
      python_param { module: '%(m)s' layer: 'TimesTen' } }
    layer { type: 'Python' name: 'three' bottom: 'two' top: 'three'
      python_param { module: '%(m)s' layer: 'TimesTen' } }
    """ % {"m": mod}


# ---------------------------------------------------------------------------
# golden case from a real Caffe build
# ---------------------------------------------------------------------------
def test_golden_python_layer():
    ref = np.load(os.path.join(PYLAYER_DIR, "python_layer.npz"))
    sys.path.insert(0, PYLAYER_DIR)
    try:
        with chdir(PYLAYER_DIR):
            net = caffe.Net("python_layer.prototxt", caffe.TRAIN,
                            weights="python_layer.caffemodel")
    finally:
        sys.path.remove(PYLAYER_DIR)
    assert [l.type for l in net.layers] == list(ref["layer_types"])
    assert dict(net.blob_loss_weights)["loss"] == 1.0
    for key in ref.files:
        if key.startswith("in/"):
            net.blobs[key[3:]].data[...] = ref[key]
    net.forward()
    for key in ref.files:
        if key.startswith("out/"):
            np.testing.assert_allclose(net.blobs[key[4:]].data.reshape(ref[key].shape),
                                       ref[key], rtol=1e-4, atol=1e-5, err_msg=key)
    net.clear_param_diffs()
    net.backward()
    for key in ref.files:
        if key.startswith("diff/"):
            np.testing.assert_allclose(net.blobs[key[5:]].diff, ref[key], rtol=1e-3,
                                       atol=1e-4, err_msg=key)
        elif key.startswith("pdiff/"):
            _, lname, i = key.split("/")
            np.testing.assert_allclose(net.params[lname][int(i)].diff, ref[key], rtol=1e-3,
                                       atol=1e-4, err_msg=key)
    # the Python layer objects are the ones the net drives, with param_str parsed
    assert net.layers[2].factor == 3
    assert net.layer_dict["scaled"] is net.layers[2]


# ---------------------------------------------------------------------------
# pycaffe's Python-layer behaviours
# ---------------------------------------------------------------------------
def test_forward_through_three_layers(pymod, tmp_path):
    net = _net(tmp_path, _chain_net(pymod))
    net.blobs["data"].data[...] = 8
    net.forward()
    assert np.all(net.blobs["three"].data == 8000)


def test_backward_through_three_layers(pymod, tmp_path):
    net = _net(tmp_path, _chain_net(pymod))
    net.blobs["three"].diff[...] = 7
    net.backward()
    assert np.all(net.blobs["data"].diff == 7000)


def test_reshape_propagates(pymod, tmp_path):
    net = _net(tmp_path, _chain_net(pymod))
    net.blobs["data"].reshape(4, 4, 4, 4)
    net.forward()
    for name, blob in net.blobs.items():
        assert blob.data.shape == (4, 4, 4, 4), name


def test_exception_in_setup_propagates(pymod, tmp_path):
    text = """
    name: 'pythonnet' force_backward: true
    input: 'data' input_shape { dim: 10 dim: 9 dim: 8 }
    layer { type: 'Python' name: 'layer' bottom: 'data' top: 'top'
      python_param { module: '%s' layer: 'Fails' } }
    """ % pymod
    with pytest.raises(RuntimeError, match="on purpose"):
        _net(tmp_path, text, caffe.TEST)


def test_missing_module_and_class_are_explained(pymod, tmp_path):
    base = """
    input: 'data' input_shape { dim: 2 }
    layer { type: 'Python' name: 'p' bottom: 'data' top: 'top'
      python_param { module: '%s' layer: '%s' } }
    """
    with pytest.raises(ImportError, match="no_such_module_xyz.*sys.path"):
        _net(tmp_path, base % ("no_such_module_xyz", "X"))
    with pytest.raises(ImportError, match="NoSuchClass"):
        _net(tmp_path, base % (pymod, "NoSuchClass"))


def test_python_param_must_name_a_layer_class_before_anything_is_called(tmp_path):
    """python_param naming a function or a non-Layer class is refused without
    calling it (a prototxt must not be a way to run arbitrary callables)."""
    d = tmp_path / "mods"
    d.mkdir()
    marker = tmp_path / "called"
    name = "tc_not_layers_%d" % os.getpid()
    (d / (name + ".py")).write_text(
        "def not_a_layer(*a, **k):\n"
        "    open(%r, 'w').close()\n"
        "class NotALayer:\n"
        "    def __init__(self, *a, **k):\n"
        "        open(%r, 'w').close()\n" % (str(marker), str(marker)))
    sys.path.insert(0, str(d))
    try:
        for attr in ("not_a_layer", "NotALayer", "__name__"):
            text = """
            input: 'data' input_shape { dim: 2 }
            layer { type: 'Python' name: 'p' bottom: 'data' top: 'top'
              python_param { module: '%s' layer: '%s' } }
            """ % (name, attr)
            with pytest.raises(ImportError, match="'p'.*not a subclass of caffe.Layer"):
                _net(tmp_path, text, caffe.TEST)
            assert not marker.exists()
    finally:
        sys.path.remove(str(d))
        sys.modules.pop(name, None)


def test_param_str_and_param_str_underscore(pymod, tmp_path):
    text = """
    name: 'pythonnet' force_backward: true
    input: 'data' input_shape { dim: 10 dim: 9 dim: 8 }
    layer { type: 'Python' name: 'mul10' bottom: 'data' top: 'mul10'
      python_param { module: '%(m)s' layer: 'TimesParamStr' param_str: '10' } }
    layer { type: 'Python' name: 'mul2' bottom: 'mul10' top: 'mul2'
      python_param { module: '%(m)s' layer: 'TimesParamStr' param_str: '2' } }
    """ % {"m": pymod}
    net = _net(tmp_path, text)
    net.blobs["data"].data[...] = 8
    net.forward()
    assert np.all(net.blobs["mul2"].data == 160)
    net.blobs["mul2"].diff[...] = 7
    net.backward()
    assert np.all(net.blobs["data"].diff == 140)
    layer = net.layer_dict["mul10"]
    assert layer.param_str == "10" and layer.param_str_ == "10"
    assert layer.seen_underscore == "10"
    assert layer.type == "Python"


def test_phase(pymod, tmp_path):
    text = """
    name: 'pythonnet' force_backward: true
    layer { type: 'Python' name: 'layer' top: 'phase'
      python_param { module: '%s' layer: 'PhaseOut' } }
    """ % pymod
    for phase, name in ((caffe.TRAIN, "TRAIN"), (caffe.TEST, "TEST")):
        net = _net(tmp_path, text, phase)
        assert net.forward()["phase"] == phase
        layer = net.layers[0]
        assert layer.phase == phase and str(layer.phase) == name
        assert layer.phase_str == name
        assert int(layer.phase) == int(phase)
        assert {"TRAIN": 1, "TEST": 2}[str(layer.phase)]   # py-faster-rcnn's cfg[str(phase)]


def test_parameters_saved_loaded_shared(pymod, tmp_path):
    text = """
    name: 'pythonnet' force_backward: true
    input: 'data' input_shape { dim: 10 dim: 9 dim: 8 }
    layer { type: 'Python' name: 'layer' bottom: 'data' top: 'top'
      python_param { module: '%s' layer: 'OneParam' } }
    """ % pymod
    net = _net(tmp_path, text)
    net.forward()
    net.backward()
    layer = net.layers[list(net._layer_names).index("layer")]
    assert layer is net.layers[1]            # the same Python object every time
    assert layer.blobs[0].data[0] == 0
    assert layer.blobs[0].diff[0] == 1
    layer.blobs[0].data[0] += layer.blobs[0].diff[0]
    assert layer.blobs[0].data[0] == 1
    # the param is a net param with Caffe's default multipliers
    assert list(net.params) == ["layer"] and net.params["layer"][0] is layer.blobs[0]
    assert net.params_lr == [1.0] and net.params_weight_decay == [1.0]
    # saving and loading
    model = str(tmp_path / "p.caffemodel")
    net.save(model)
    layer.blobs[0].data[0] = -1
    net.copy_from(model)
    assert layer.blobs[0].data[0] == 1
    # HDF5 too
    h5 = str(tmp_path / "p.h5")
    net.save_hdf5(h5)
    layer.blobs[0].data[0] = -3
    net.load_hdf5(h5)
    assert layer.blobs[0].data[0] == 1
    # weights= at construction
    net3 = _net(tmp_path, text, weights=model)
    assert net3.layers[1].blobs[0].data[0] == 1
    # sharing with another net
    net2 = _net(tmp_path, text)
    net2.share_with(net)
    assert net2.layers[1].blobs[0].data[0] == 1
    layer.blobs[0].data[0] = 5
    assert net2.layers[1].blobs[0].data[0] == 5


def test_param_spec_lr_and_sharing_by_name(pymod, tmp_path):
    text = """
    name: 'p' force_backward: true
    input: 'data' input_shape { dim: 2 dim: 3 }
    layer { type: 'Python' name: 'a' bottom: 'data' top: 'a'
      param { name: 'w' lr_mult: 3 decay_mult: 0 }
      python_param { module: '%(m)s' layer: 'ScaleByParam' } }
    layer { type: 'Python' name: 'b' bottom: 'a' top: 'b'
      param { name: 'w' }
      python_param { module: '%(m)s' layer: 'ScaleByParam' } }
    """ % {"m": pymod}
    net = _net(tmp_path, text)
    assert net.params_lr == [3.0] and net.params_weight_decay == [0.0]
    assert net.layers[2].blobs[0] is net.layers[1].blobs[0]
    assert len(net.learnable_params) == 1


def test_embedded_blobs_are_loaded_before_setup(pymod, tmp_path):
    from google.protobuf import text_format

    from caffe.proto import caffe_pb2
    param = caffe_pb2.NetParameter()
    text_format.Merge("""
    input: 'data' input_shape { dim: 2 }
    layer { type: 'Python' name: 'c' bottom: 'data' top: 'c'
      python_param { module: '%s' layer: 'Counting' } }
    """ % pymod, param)
    blob = param.layer[0].blobs.add()
    blob.shape.dim.append(3)
    blob.data.extend([1, 2, 3])
    net = caffe.Net(param, caffe.TEST)
    assert list(net.layers[1].blobs[0].data) == [1, 2, 3]


def test_reshape_before_every_forward(pymod, tmp_path):
    text = """
    input: 'data' input_shape { dim: 2 dim: 3 }
    layer { type: 'Python' name: 'c' bottom: 'data' top: 'c'
      python_param { module: '%s' layer: 'Counting' } }
    """ % pymod
    net = _net(tmp_path, text)
    layer = net.layers[1]
    assert layer.calls == ["reshape"]                    # setup then reshape
    net.forward()
    net.forward()
    assert layer.calls == ["reshape", "reshape", "forward", "reshape", "forward"]


def test_top_shape_changed_in_forward_followed_downstream(pymod, tmp_path):
    text = """
    name: 'rows' force_backward: true
    input: 'data' input_shape { dim: 5 dim: 3 }
    layer { type: 'Python' name: 'take' bottom: 'data' top: 'rows'
      python_param { module: '%s' layer: 'TakeFirstRows' param_str: '2' } }
    layer { type: 'InnerProduct' name: 'ip' bottom: 'rows' top: 'ip'
      inner_product_param { num_output: 4 weight_filler { type: 'gaussian' std: 1 } } }
    """ % pymod
    net = _net(tmp_path, text)
    x = np.random.RandomState(0).randn(5, 3).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    assert net.blobs["rows"].data.shape == (2, 3)
    assert net.blobs["ip"].data.shape == (2, 4)
    w = net.params["ip"][0].data
    np.testing.assert_allclose(net.blobs["ip"].data, x[:2] @ w.T, rtol=1e-5, atol=1e-6)
    net.layers[1].rows = 4
    net.forward()
    assert net.blobs["ip"].data.shape == (4, 4)
    net.blobs["ip"].diff[...] = 1
    net.backward()
    expected = np.zeros((5, 3), np.float32)
    expected[:4] = np.ones((4, 4), np.float32) @ w
    np.testing.assert_allclose(net.blobs["data"].diff, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Python layers inside train nets
# ---------------------------------------------------------------------------
def _sandwich_text(mod, loss_weight=1):
    return """
    name: 'sandwich'
    input: 'x' input_shape { dim: 4 dim: 5 }
    input: 'y' input_shape { dim: 4 dim: 3 }
    layer { type: 'InnerProduct' name: 'ip1' bottom: 'x' top: 'ip1'
      inner_product_param { num_output: 3 weight_filler { type: 'gaussian' std: 0.5 }
                            bias_filler { type: 'gaussian' std: 0.5 } } }
    layer { type: 'Python' name: 'scale' bottom: 'ip1' top: 'scaled'
      python_param { module: '%(m)s' layer: 'ScaleByParam' } }
    layer { type: 'TanH' name: 'tanh' bottom: 'scaled' top: 'tanh' }
    layer { type: 'InnerProduct' name: 'ip2' bottom: 'tanh' top: 'ip2'
      inner_product_param { num_output: 3 weight_filler { type: 'gaussian' std: 0.5 } } }
    layer { type: 'Python' name: 'counting' bottom: 'ip2' top: 'out'
      python_param { module: '%(m)s' layer: 'Counting' } }
    layer { type: 'EuclideanLoss' name: 'loss' bottom: 'out' bottom: 'y' top: 'loss'
      loss_weight: %(lw)s }
    """ % {"m": mod, "lw": loss_weight}


def _torch_reference(net, x, y):
    w1, b1 = (torch.tensor(b.data.copy(), requires_grad=True) for b in net.params["ip1"])
    s = torch.tensor(net.params["scale"][0].data.copy(), requires_grad=True)
    w2, b2 = (torch.tensor(b.data.copy(), requires_grad=True) for b in net.params["ip2"])
    xt = torch.tensor(x)
    out = torch.tanh((xt @ w1.T + b1) * s) @ w2.T + b2
    loss = ((out - torch.tensor(y)) ** 2).sum() / x.shape[0] / 2
    loss.backward()
    return loss.item(), {"ip1": [w1.grad, b1.grad], "scale": [s.grad], "ip2": [w2.grad, b2.grad]}


def _check_sandwich(net):
    rs = np.random.RandomState(1)
    x = rs.randn(4, 5).astype(np.float32)
    y = rs.randn(4, 3).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = y
    ref_loss, ref_grads = _torch_reference(net, x, y)
    out = net.forward()
    np.testing.assert_allclose(float(out["loss"]), ref_loss, rtol=1e-5)
    net.clear_param_diffs()
    net.backward()
    for lname, grads in ref_grads.items():
        for i, g in enumerate(grads):
            np.testing.assert_allclose(net.params[lname][i].diff, g.numpy(), rtol=1e-4,
                                       atol=1e-6, err_msg="%s/%d" % (lname, i))
    # param diffs accumulate across backward calls, for tensor and Python layers alike
    net.backward()
    for lname, grads in ref_grads.items():
        for i, g in enumerate(grads):
            np.testing.assert_allclose(net.params[lname][i].diff, 2 * g.numpy(), rtol=1e-4,
                                       atol=1e-6, err_msg="%s/%d twice" % (lname, i))


def test_gradients_flow_through_python_layers_both_ways(pymod, tmp_path):
    net = _net(tmp_path, _sandwich_text(pymod))
    assert net.layer_dict["scale"].type == "Python"
    _check_sandwich(net)


def test_sgd_steps_through_python_layers(pymod, tmp_path):
    net = _net(tmp_path, _sandwich_text(pymod))
    rs = np.random.RandomState(2)
    net.blobs["x"].data[...] = rs.randn(4, 5)
    net.blobs["y"].data[...] = rs.randn(4, 3)
    losses = []
    for _ in range(30):
        losses.append(float(net.forward()["loss"]))
        net.clear_param_diffs()
        net.backward()
        for blob, lr in zip(net.learnable_params, net.params_lr):
            blob.data[...] -= 0.1 * lr * blob.diff
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gradients_through_python_layers_gpu(pymod, tmp_path):
    caffe.set_mode_gpu()
    try:
        net = _net(tmp_path, _sandwich_text(pymod))
        _check_sandwich(net)
    finally:
        caffe.set_mode_cpu()


def test_python_loss_needs_explicit_loss_weight(pymod, tmp_path):
    base = """
    name: 'l' force_backward: true
    input: 'x' input_shape { dim: 2 dim: 3 }
    layer { type: 'Python' name: 'sq' bottom: 'x' top: 'sq' %s
      python_param { module: '%s' layer: 'SquareSum' } }
    """
    net = _net(tmp_path, base % ("", pymod))
    assert net.blob_loss_weights["sq"] == 0.0
    net = _net(tmp_path, base % ("loss_weight: 2", pymod))
    assert net.blob_loss_weights["sq"] == 2.0
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    net.blobs["x"].data[...] = x
    assert abs(net.forward_prefilled() - 2 * np.sum(x ** 2)) < 1e-3
    net.backward()
    np.testing.assert_allclose(net.blobs["x"].diff, 4 * x)
