"""caffe.modules: the registry users extend or override, by layer type or by
layer name, with caffemodel2pytorch-style factories (``lambda param: ...``)
and the rich form (``factory(layer_param, bottom_shapes, phase)``)."""
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import caffe
from caffe.layers import CaffeLayer, DuplicateLayerError, UnknownLayerError
from caffe.layers.adapters import CallableLayer, LayerParamDict
from caffe.layers.registry import register_layer


@pytest.fixture(autouse=True)
def clean_registry():
    saved = dict(caffe.modules._user)
    yield
    caffe.modules._user.clear()
    caffe.modules._user.update(saved)


def _net(tmp_path, text, phase=caffe.TRAIN, **kw):
    path = tmp_path / "net.prototxt"
    path.write_text(textwrap.dedent(text))
    return caffe.Net(str(path), phase, **kw)


TWO_RELUS = """
name: 'relus' force_backward: true
layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }
layer { name: 'relu_a' type: 'ReLU' bottom: 'x' top: 'a' }
layer { name: 'relu_b' type: 'ReLU' bottom: 'x' top: 'b' }
"""
X = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)


def _run_relus(tmp_path):
    net = _net(tmp_path, TWO_RELUS)
    net.blobs["x"].data[...] = X
    net.forward()
    return net


# ---------------------------------------------------------------------------
# keys: type versus name
# ---------------------------------------------------------------------------
def test_override_by_type_changes_every_layer_of_that_type(tmp_path):
    caffe.modules["ReLU"] = lambda param: torch.nn.Tanh()
    net = _run_relus(tmp_path)
    np.testing.assert_allclose(net.blobs["a"].data, np.tanh(X), rtol=1e-6)
    np.testing.assert_allclose(net.blobs["b"].data, np.tanh(X), rtol=1e-6)


def test_override_by_name_changes_only_that_layer(tmp_path):
    caffe.modules["relu_b"] = lambda param: (lambda x: x * 2)
    net = _run_relus(tmp_path)
    np.testing.assert_array_equal(net.blobs["a"].data, np.maximum(X, 0))   # built-in ReLU
    np.testing.assert_array_equal(net.blobs["b"].data, 2 * X)
    assert isinstance(net.layer_dict["relu_b"], CallableLayer)
    assert net.layer_dict["relu_b"].type == "ReLU"
    # the name wins over a type entry too
    caffe.modules["ReLU"] = lambda param: torch.nn.Tanh()
    net = _run_relus(tmp_path)
    np.testing.assert_allclose(net.blobs["a"].data, np.tanh(X), rtol=1e-6)
    np.testing.assert_array_equal(net.blobs["b"].data, 2 * X)


def test_deleting_a_user_entry_restores_the_builtin(tmp_path):
    caffe.modules["ReLU"] = lambda param: torch.nn.Tanh()
    del caffe.modules["ReLU"]
    net = _run_relus(tmp_path)
    np.testing.assert_array_equal(net.blobs["a"].data, np.maximum(X, 0))
    with pytest.raises(KeyError):
        del caffe.modules["ReLU"]          # built-ins cannot be removed


def test_duplicate_register_raises_assignment_replaces():
    f1 = lambda param: (lambda x: x)       # noqa: E731
    f2 = lambda param: (lambda x: -x)      # noqa: E731
    caffe.modules.register("MyOwnLayer", f1)
    with pytest.raises(DuplicateLayerError, match="MyOwnLayer"):
        caffe.modules.register("MyOwnLayer", f2)
    assert caffe.modules["MyOwnLayer"] is f1
    caffe.modules["MyOwnLayer"] = f2       # on purpose
    assert caffe.modules["MyOwnLayer"] is f2
    with pytest.raises(DuplicateLayerError, match="built-in"):
        caffe.modules.register("ReLU", f1)
    with pytest.raises(DuplicateLayerError):
        register_layer("ReLU")(type("Dup", (CaffeLayer,), {}))
    with pytest.raises(TypeError):
        caffe.modules.register("NotCallable", 3)


def test_unknown_type_error_names_type_layer_and_how_to_register(tmp_path):
    text = """
    layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 } } }
    layer { name: 'mystery' type: 'NoSuchLayerType' bottom: 'x' top: 'y' }
    """
    with pytest.raises(UnknownLayerError) as info:
        _net(tmp_path, text)
    msg = str(info.value)
    assert "NoSuchLayerType" in msg and "mystery" in msg
    assert "caffe.modules['NoSuchLayerType'] = lambda param" in msg
    assert isinstance(info.value, KeyError)


def test_layer_type_list_lists_registered():
    types = caffe.layer_type_list()
    assert types == sorted(types)
    assert {"Convolution", "ReLU", "Python", "SoftmaxWithLoss"} <= set(types)
    assert "BrandNewLayer" not in types
    caffe.modules["BrandNewLayer"] = lambda param: (lambda x: x)
    assert "BrandNewLayer" in caffe.layer_type_list()
    assert "BrandNewLayer" in caffe.modules


# ---------------------------------------------------------------------------
# caffemodel2pytorch factory forms: lambda param: <...>
# ---------------------------------------------------------------------------
ROI_NET = """
name: 'forms' force_backward: true
layer { name: 'in' type: 'Input' top: 'x' top: 'lab'
  input_param { shape { dim: 3 dim: 4 } shape { dim: 3 dim: 4 } } }
layer { name: 'gsp' type: 'GlobalSumPooling' bottom: 'x' top: 'g' }
layer { name: 'scale' type: 'ScaleBy' bottom: 'x' top: 's'
  scale_param { axis: 0 num_axes: 2 } }
"""


def test_plain_function_and_param_dict(tmp_path):
    seen = {}

    def scale_factory(param):
        seen["param"] = param
        return lambda x: x * (param["axis"] + param.get("num_axes", 99))

    caffe.modules["GlobalSumPooling"] = lambda param: lambda pred: pred.sum(dim=0, keepdim=True)
    caffe.modules["ScaleBy"] = scale_factory
    net = _net(tmp_path, ROI_NET)
    x = np.random.RandomState(0).randn(3, 4).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.forward()
    np.testing.assert_allclose(net.blobs["g"].data, x.sum(0, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(net.blobs["s"].data, 2 * x, rtol=1e-6)
    p = seen["param"]
    assert isinstance(p, LayerParamDict)
    assert p == {"axis": 0, "num_axes": 2, "inplace": False}
    assert p.axis == 0 and p["bias_term"] is False and "bias_term" not in p
    assert p.get("bias_term", "unset") == "unset"       # caffemodel2pytorch's .get semantics
    # gradients flow back through the function
    net.blobs["g"].diff[...] = 1
    net.blobs["s"].diff[...] = 0
    net.backward()
    np.testing.assert_allclose(net.blobs["x"].diff, np.ones((3, 4)), rtol=1e-6)


class _Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return 3 * g * x          # deliberately not the true gradient: shows it is used


class _LegacyCube(torch.autograd.Function):
    """Old-style (non-static) Function, as caffemodel2pytorch's README writes them."""

    def __init__(self, k=1.0):
        super().__init__()
        self.k = k

    def forward(self, x):
        self.save_for_backward(x)
        return self.k * x ** 3

    def backward(self, grad_output):
        x, = self.saved_tensors
        return grad_output * 3 * self.k * x ** 2


ONE_LAYER = """
name: 'one' force_backward: true
layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }
layer { name: 'f' type: 'Custom' bottom: 'x' top: 'y' }
"""


def _run_one(tmp_path, x, topdiff):
    net = _net(tmp_path, ONE_LAYER)
    net.blobs["x"].data[...] = x
    net.forward()
    net.blobs["y"].diff[...] = topdiff
    net.backward()
    return net


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("form", ["class", "instance", "legacy_class"])
def test_autograd_function_forms(tmp_path, form):
    x = np.array([[1, -2, 3], [0.5, 2, -1]], np.float32)
    if form == "class":
        caffe.modules["Custom"] = lambda param: _Square
        fwd, bwd = x * x, 3 * x
    elif form == "instance":
        caffe.modules["Custom"] = lambda param: _LegacyCube(2.0)
        fwd, bwd = 2 * x ** 3, 6 * x ** 2
    else:
        caffe.modules["Custom"] = lambda param: _LegacyCube
        fwd, bwd = x ** 3, 3 * x ** 2
    net = _run_one(tmp_path, x, np.ones_like(x))
    np.testing.assert_allclose(net.blobs["y"].data, fwd, rtol=1e-6)
    np.testing.assert_allclose(net.blobs["x"].diff, bwd, rtol=1e-6)


class _Affine(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((n,), 2.0))
        self.bias = torch.nn.Parameter(torch.zeros(n))

    def forward(self, x):
        return x * self.weight + self.bias


def test_nn_module_parameters_become_blobs(tmp_path):
    caffe.modules["Custom"] = lambda param: _Affine(3)
    text = ONE_LAYER.replace("top: 'y' }", "top: 'y' param { lr_mult: 5 } param { lr_mult: 0 } }")
    net = _net(tmp_path, text)
    assert [list(b.shape) for b in net.params["f"]] == [[3], [3]]
    np.testing.assert_array_equal(net.params["f"][0].data, [2, 2, 2])
    assert net.params_lr == [5.0, 0.0]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    net.blobs["x"].data[...] = x
    net.params["f"][1].data[...] = [1, 2, 3]             # the blobs are what runs
    net.forward()
    np.testing.assert_allclose(net.blobs["y"].data, 2 * x + [1, 2, 3])
    net.blobs["y"].diff[...] = 1
    net.clear_param_diffs()
    net.backward()
    np.testing.assert_allclose(net.params["f"][0].diff, x.sum(0))
    np.testing.assert_allclose(net.blobs["x"].diff, np.full((2, 3), 2.0))
    net.backward()                                       # param diffs accumulate
    np.testing.assert_allclose(net.params["f"][0].diff, 2 * x.sum(0))
    # saved and loaded like any layer's params
    model = str(tmp_path / "m.caffemodel")
    net.params["f"][0].data[...] = [7, 8, 9]
    net.save(model)
    net2 = _net(tmp_path, text, weights=model)
    np.testing.assert_array_equal(net2.params["f"][0].data, [7, 8, 9])
    np.testing.assert_array_equal(net2.params["f"][1].data, [1, 2, 3])


def test_nn_module_follows_phase(tmp_path):
    caffe.modules["Custom"] = lambda param: torch.nn.Dropout(0.5)
    assert _net(tmp_path, ONE_LAYER, caffe.TEST).layers[1].module.training is False
    assert _net(tmp_path, ONE_LAYER, caffe.TRAIN).layers[1].module.training is True


class _PyDouble(caffe.Layer):
    def setup(self, bottom, top):
        self.factor = float(self.param_str or 2)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.factor * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = self.factor * top[0].diff


class _DuckLayer:
    """A pycaffe-style layer that is not a caffe.Layer subclass."""

    def setup(self, bottom, top):
        self.ran_setup = True

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data + 1

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = top[0].diff


@pytest.mark.parametrize("form", ["instance", "class", "duck"])
def test_wrapped_pycaffe_layer(tmp_path, form):
    made = {"instance": lambda: _PyDouble(), "class": lambda: _PyDouble,
            "duck": lambda: _DuckLayer()}[form]
    holder = {}

    def factory(param):
        holder["obj"] = made()
        return holder["obj"]

    caffe.modules["f"] = factory                  # by layer name
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    net = _run_one(tmp_path, x, np.full((2, 3), 5, np.float32))
    layer = net.layer_dict["f"]
    if form != "class":
        assert layer is holder["obj"]             # the object the factory returned
    if form == "duck":
        assert layer.ran_setup and str(layer.phase) == "TRAIN"
        np.testing.assert_allclose(net.blobs["y"].data, x + 1)
        np.testing.assert_allclose(net.blobs["x"].diff, 5)
    else:
        assert isinstance(layer, _PyDouble)
        np.testing.assert_allclose(net.blobs["y"].data, 2 * x)
        np.testing.assert_allclose(net.blobs["x"].diff, 10)


def test_python_layer_overridden_by_class_name(tmp_path):
    # caffemodel2pytorch's OICR example: modules['OICRLayer'] replaces the layer
    # whose python_param names class OICRLayer (its module need not exist)
    text = """
    name: 'py' force_backward: true
    layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }
    layer { name: 'oicr' type: 'Python' bottom: 'x' top: 'y'
      python_param { module: 'oicr_layer.layer' layer: 'OICRLayer' param_str: '3' } }
    """
    seen = {}

    def factory(param):
        seen.update(param)
        return _PyDouble()

    caffe.modules["OICRLayer"] = factory
    net = _net(tmp_path, text)
    assert seen["param_str"] == "3" and seen["module"] == "oicr_layer.layer"
    net.blobs["x"].data[...] = 1
    net.forward()
    np.testing.assert_allclose(net.blobs["y"].data, 3)
    assert net.layers[1].param_str == "3" and net.layers[1].param_str_ == "3"


def test_loss_types_get_default_loss_weight(tmp_path):
    caffe.modules["MulticlassCrossEntropyLoss"] = \
        lambda param: lambda p, y: F.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), y)
    text = """
    name: 'l' force_backward: true
    layer { name: 'in' type: 'Input' top: 'p' top: 'y'
      input_param { shape { dim: 1 dim: 4 } shape { dim: 1 dim: 4 } } }
    layer { name: 'loss' type: 'MulticlassCrossEntropyLoss' bottom: 'p' bottom: 'y' top: 'loss' }
    """
    net = _net(tmp_path, text)
    assert net.blob_loss_weights["loss"] == 1.0
    net.blobs["p"].data[...] = [[0.2, 0.9, 0.5, 0.1]]
    net.blobs["y"].data[...] = [[0, 1, 1, 0]]
    loss = net.forward_prefilled()
    p = np.array([0.2, 0.9, 0.5, 0.1])
    y = np.array([0, 1, 1, 0])
    ref = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert abs(loss - ref) < 1e-5
    net.backward()
    np.testing.assert_allclose(net.blobs["p"].diff[0], (p - y) / (p * (1 - p)) / 4, rtol=1e-4)


def test_case_and_underscore_insensitive_keys_for_unknown_types(tmp_path):
    caffe.modules["custom"] = lambda param: (lambda x: x - 1)
    net = _run_one(tmp_path, np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(net.blobs["y"].data, -1)
    # but a built-in type is never captured by such a loose match
    caffe.modules["re_lu"] = lambda param: (lambda x: x * 0 + 42)
    net = _run_relus(tmp_path)
    np.testing.assert_array_equal(net.blobs["a"].data, np.maximum(X, 0))


def test_shape_inference_failure_is_explained(tmp_path):
    def picky(x):
        if not bool((x != 0).all()):
            raise ValueError("needs non-zero input")
        if bool((x < 2).all()):
            raise ValueError("still not happy")
        return x
    caffe.modules["Custom"] = lambda param: picky
    with pytest.raises(caffe.net.NetError, match="cannot infer top shapes.*rich form"):
        _net(tmp_path, ONE_LAYER)


# ---------------------------------------------------------------------------
# the rich form: factory(layer_param, bottom_shapes, phase)
# ---------------------------------------------------------------------------
class _RichScale(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        c = bottom_shapes[0][1]
        self.add_param_blob((c,), default_fill=3.0)

    def run(self, bottoms, params):
        return [bottoms[0] * params[0]]


def test_rich_form_caffelayer_subclass(tmp_path):
    caffe.modules["Custom"] = _RichScale
    net = _net(tmp_path, ONE_LAYER)
    assert isinstance(net.layers[1], _RichScale)
    np.testing.assert_array_equal(net.params["f"][0].data, [3, 3, 3])
    net.blobs["x"].data[...] = 1
    net.forward()
    np.testing.assert_array_equal(net.blobs["y"].data, 3)
    net.blobs["y"].diff[...] = 1
    net.backward()
    np.testing.assert_array_equal(net.params["f"][0].diff, [2, 2, 2])


def test_rich_form_callable_with_bottom_shapes(tmp_path):
    calls = []

    def factory(layer_param, bottom_shapes, phase):
        calls.append((layer_param.name, list(bottom_shapes), phase))
        return _RichScale(layer_param, bottom_shapes, phase)

    caffe.modules["f"] = factory
    _net(tmp_path, ONE_LAYER, caffe.TEST)
    assert calls == [("f", [(2, 3)], caffe.TEST)]


# ---------------------------------------------------------------------------
# examples/oicr: caffemodel2pytorch's flagship use of the registry
# ---------------------------------------------------------------------------
OICR_DIR = __import__("os").path.join(__import__("os").path.dirname(__file__), "..",
                                      "examples", "oicr")


@pytest.fixture
def oicr():
    import importlib
    import sys
    sys.path.insert(0, OICR_DIR)
    try:
        mod = importlib.import_module("oicr_layers")
        mod.register()
        yield mod
    finally:
        sys.path.remove(OICR_DIR)


def test_oicr_multiclass_cross_entropy_has_the_1_over_c_gradient(oicr):
    p = torch.tensor([[0.2, 0.9, 0.5, 1.0]], requires_grad=True)
    y = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    loss = oicr.MulticlassCrossEntropy.apply(p, y)
    pc = p.detach().clamp(1e-10, 1 - 1e-10)          # the last one stays 1 in float32
    ref = -(torch.where(y > 0, pc.log(), (1 - pc).log())).sum()
    assert torch.isinf(ref) and torch.isinf(loss)
    p2 = torch.tensor([[0.2, 0.9, 0.5, 0.3]], requires_grad=True)
    loss = oicr.MulticlassCrossEntropy.apply(p2, y)
    q = p2.detach()
    np.testing.assert_allclose(
        loss.item(), -(y * q.log() + (1 - y) * (1 - q).log()).sum().item(), rtol=1e-6)
    loss.backward(torch.tensor(2.0))
    np.testing.assert_allclose(p2.grad, 2 * (q - y) / (4 * q * (1 - q)), rtol=1e-5)


def test_oicr_weighted_softmax_loss_numerics(oicr, tmp_path):
    text = """
    name: 'w' force_backward: true
    layer { name: 'in' type: 'Input' top: 's' top: 'l' top: 'w'
      input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } shape { dim: 4 } } }
    layer { name: 'loss' type: 'WeightedSoftmaxWithLoss' bottom: 's' bottom: 'l' bottom: 'w'
      propagate_down: 1 propagate_down: 0 propagate_down: 0 top: 'loss' }
    """
    net = _net(tmp_path, text)
    assert net.blob_loss_weights["loss"] == 1.0
    rs = np.random.RandomState(0)
    s = rs.randn(4, 3).astype(np.float32)
    lab = np.array([0, 2, 1, 2], np.float32)
    w = np.array([0.5, 0.0, 1.0, 0.25], np.float32)
    net.blobs["s"].data[...] = s
    net.blobs["l"].data[...] = lab
    net.blobs["w"].data[...] = w
    loss = net.forward()["loss"]
    prob = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    idx = lab.astype(int)
    ref = -(w * np.log(prob[np.arange(4), idx])).sum() / 4      # GPU normaliser: R
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    net.backward()
    onehot = np.eye(3)[idx]
    np.testing.assert_allclose(net.blobs["s"].diff, (prob - onehot) * w[:, None] / 4,
                               rtol=1e-5, atol=1e-7)


def test_oicr_global_sum_pooling_and_targets(oicr):
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [20, 20, 29, 29], [21, 20, 30, 29]],
                     np.float32)
    prob = np.array([[0.1, 0.7], [0.6, 0.1], [0.2, 0.1], [0.1, 0.1]], np.float32)
    labels, weights = oicr.oicr_targets(boxes, prob, np.array([[1, 0]], np.float32))
    # class 0's best RoI is box 1; boxes 0 and 1 overlap it (IoU 0.68 with +1 sizes)
    np.testing.assert_array_equal(labels, [1, 1, 0, 0])
    np.testing.assert_allclose(weights, [0.6] * 4)
    labels, weights = oicr.oicr_targets(boxes, prob, np.array([[1, 1]], np.float32))
    # class 0 takes box 1 (its row is then zeroed), class 1 takes box 0; background
    # RoIs overlap neither and take the first pseudo box's score as weight
    np.testing.assert_array_equal(labels, [2, 1, 0, 0])
    np.testing.assert_allclose(weights, [0.7, 0.6, 0.6, 0.6])
    np.testing.assert_allclose(oicr.bbox_overlaps(boxes[:1], boxes[1:2]), [[81 / 119]])


def test_oicr_synthetic_scenario_runs_and_learns(oicr):
    import importlib
    run = importlib.import_module("run_synthetic")
    oicr.register()
    history = run.main(["--iters", "24", "--quiet"])
    assert len(history) == 24
    for h in history:
        assert all(np.isfinite(v) for v in h.values()), h
    first = np.mean([h["loss_oicr1"] for h in history[:4]])
    last = np.mean([h["loss_oicr1"] for h in history[-4:]])
    assert last < first
    first = np.mean([h["loss_midn"] for h in history[:4]])
    last = np.mean([h["loss_midn"] for h in history[-4:]])
    assert last < first
