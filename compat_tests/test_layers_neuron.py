"""Neuron layers (caffe/layers/neuron.py) against real Caffe.

Golden cases in golden/layers/ were produced by BVLC Caffe; each layer is also
checked against numerical gradients (float64 gradcheck), on edge cases, and on
errors for invalid parameters.
"""

import numpy as np
import pytest
import torch
from golden_cases import run_layer_case
from google.protobuf import text_format
from layer_testing import load_case

from caffe.layers.base import LayerError
from caffe.layers.registry import modules
from caffe.proto import caffe_pb2

CASES = ["absval", "bnll", "clip", "dropout_test", "elu", "exp_base2", "exp_e", "log_e",
         "power_sq", "prelu", "prelu_shared", "relu", "relu_leaky", "sigmoid", "swish",
         "tanh", "threshold"]

FWD = dict(rtol=1e-4, atol=1e-5)
GRAD = dict(rtol=1e-3, atol=1e-4)
TRAIN, TEST = 0, 1


# -- helpers -------------------------------------------------------------------
def _layer_param(text):
    lp = caffe_pb2.LayerParameter()
    text_format.Merge(text, lp)
    return lp


def build(text, shape=(2, 3, 4, 5), phase=TRAIN):
    """A layer from LayerParameter text (name/bottom/top added when absent)."""
    lp = _layer_param(text)
    if not lp.name:
        lp.name = "L"
    if not lp.bottom:
        lp.bottom.append("b0")
    if not lp.top:
        lp.top.append("t0")
    return modules.builtin(lp.type)(lp, [tuple(shape)], phase)


def _set_params(layer, values):
    for blob, v in zip(layer.blobs, values):
        blob.data[...] = v


def run_golden_standalone(name):
    _, lp, meta, data = load_case(name)
    phase = TRAIN if meta["phase"] == "TRAIN" else TEST
    bottoms = [torch.tensor(data["in/" + b]) for b in meta["bottoms"]]
    layer = modules.builtin(lp.type)(lp, [tuple(b.shape) for b in bottoms], phase)
    n_params = len([k for k in data if k.startswith("param/")])
    assert len(layer.blobs) == n_params
    for i, blob in enumerate(layer.blobs):
        assert tuple(blob.shape) == data["param/%d" % i].shape
        blob.data[...] = data["param/%d" % i]
    params = [torch.tensor(np.array(b.data), requires_grad=True) for b in layer.blobs]
    bottoms = [b.clone().requires_grad_(True) for b in bottoms]

    assert layer.output_shapes([tuple(b.shape) for b in bottoms]) == [
        data["out/" + t].shape for t in meta["tops"]]
    tops = layer.run(bottoms, params)
    assert len(tops) == len(meta["tops"])
    for t, top in zip(meta["tops"], tops):
        assert top.dtype == torch.float32
        np.testing.assert_allclose(top.detach().numpy(), data["out/" + t], **FWD)
    if not meta["backward"]:
        return
    topdiff = [torch.tensor(data["topdiff/" + t]) for t in meta["tops"]]
    wrt = bottoms + params
    grads = torch.autograd.grad(tops, wrt, grad_outputs=topdiff, allow_unused=True)
    for i, b in enumerate(meta["bottoms"]):
        if "diff/" + b in data:
            np.testing.assert_allclose(grads[i].numpy(), data["diff/" + b], **GRAD)
    for i in range(n_params):
        if "pdiff/%d" % i in data:
            g = grads[len(bottoms) + i]
            np.testing.assert_allclose(g.numpy(), data["pdiff/%d" % i], **GRAD)


def gradcheck_layer(layer, x, params=None, **kw):
    x = x.double().requires_grad_(True)
    ps = [p.double().requires_grad_(True) for p in (params or [])]

    def f(*args):
        return layer.run([args[0]], list(args[1:]))[0]

    assert torch.autograd.gradcheck(f, (x, *ps), eps=1e-6, atol=1e-5, rtol=1e-3, **kw)


def _away_from(x, points, margin=0.05):
    """Nudge entries of x off the kinks at ``points`` (finite differences there lie)."""
    x = x.clone()
    for p in points:
        near = (x - p).abs() < margin
        x[near] = p + margin * 2 * torch.sign(x[near] - p + 1e-12)
    return x


# -- golden cases ----------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_golden_standalone(name):
    run_golden_standalone(name)


@pytest.mark.parametrize("name", CASES)
def test_golden_through_net(name):
    run_layer_case(name)


def test_prelu_shared_filler_deterministic():
    # prelu_shared: constant 0.3 filler -> building without the caffemodel gives param/0.
    _, lp, meta, data = load_case("prelu_shared")
    assert meta["fillers_deterministic"]
    layer = modules.builtin(lp.type)(lp, [data["in/b0"].shape], TRAIN)
    assert tuple(layer.blobs[0].shape) == ()
    np.testing.assert_array_equal(np.array(layer.blobs[0].data), data["param/0"])


# -- gradcheck (float64) -----------------------------------------------------------
torch.manual_seed(0)
_X = torch.randn(2, 3, 4, 5, dtype=torch.float64) * 1.5

GRADCHECK = [
    ('type: "AbsVal"', [0.0]),
    ('type: "BNLL"', []),
    ('type: "Clip" clip_param { min: -0.5 max: 0.7 }', [-0.5, 0.7]),
    ('type: "ELU"', [0.0]),
    ('type: "ELU" elu_param { alpha: 0.3 }', [0.0]),
    ('type: "Exp"', []),
    ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 0.1 }', []),
    ('type: "Exp" exp_param { base: 0.5 scale: -1.5 shift: -2 }', []),
    ('type: "ReLU"', [0.0]),
    ('type: "ReLU" relu_param { negative_slope: 0.1 engine: CUDNN }', [0.0]),
    ('type: "Sigmoid" sigmoid_param { engine: CAFFE }', []),
    ('type: "Swish"', []),
    ('type: "Swish" swish_param { beta: 1.5 }', []),
    ('type: "TanH" tanh_param { engine: CUDNN }', []),
    ('type: "Power"', []),
    ('type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }', []),
    ('type: "Power" power_param { power: 2 scale: -1.5 }', []),
    ('type: "Power" power_param { power: 3 scale: 0.7 }', [0.0]),
    ('type: "Power" power_param { power: 1 scale: 3 shift: -1 }', []),
    ('type: "Power" power_param { power: 0 scale: 3 shift: 2 }', []),
    ('type: "Power" power_param { power: 2.5 scale: 0 shift: 2 }', []),
    ('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', []),  # TEST phase below
    ('type: "Dropout" dropout_param { dropout_ratio: 0.3 scale_train: false }', []),
]


@pytest.mark.parametrize("text,kinks", GRADCHECK)
def test_gradcheck(text, kinks):
    phase = TEST if "Dropout" in text else TRAIN
    layer = build(text, _X.shape, phase)
    gradcheck_layer(layer, _away_from(_X, kinks))


@pytest.mark.parametrize("text", [
    'type: "Log"',
    'type: "Log" log_param { base: 10 }',
    'type: "Log" log_param { base: 2 scale: 0.5 shift: 3 }',
    'type: "Power" power_param { power: 0.5 scale: 2 shift: 0.5 }',
    'type: "Power" power_param { power: -1.5 scale: 1.5 }',
    'type: "Power" power_param { power: 2.5 }',
])
def test_gradcheck_positive_domain(text):
    layer = build(text, _X.shape)
    gradcheck_layer(layer, _X.abs() + 0.2)


def test_gradcheck_power_negative_base_integer_power():
    layer = build('type: "Power" power_param { power: 3 scale: 1.2 shift: -0.3 }', _X.shape)
    gradcheck_layer(layer, _away_from(_X, [0.25]))


@pytest.mark.parametrize("shared", [False, True])
def test_gradcheck_prelu(shared):
    text = 'type: "PReLU" prelu_param { channel_shared: %s filler { type: "uniform" min: -1 max: 1 } }' % (
        "true" if shared else "false")
    layer = build(text, _X.shape)
    slope = torch.tensor(np.array(layer.blobs[0].data))
    gradcheck_layer(layer, _away_from(_X, [0.0]), [slope])


def test_dropout_train_gradcheck_fixed_mask():
    # With the generator reseeded before every call the mask is fixed, so the
    # layer is a fixed linear map and gradcheck applies.
    for scale_train in ("true", "false"):
        layer = build('type: "Dropout" dropout_param { dropout_ratio: 0.4 scale_train: %s }'
                      % scale_train, _X.shape, TRAIN)

        def f(x, layer=layer):
            torch.manual_seed(7)
            return layer.run([x], [])[0]

        x = _X.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)


# -- forward semantics and edge cases ----------------------------------------------
def _fwd(text, x, phase=TRAIN, params=None):
    layer = build(text, x.shape, phase)
    if params is not None:
        _set_params(layer, params)
    ps = [torch.tensor(np.array(b.data)) for b in layer.blobs]
    return layer.run([x], ps)[0]


def _grad(text, x, topdiff=None, phase=TRAIN):
    layer = build(text, x.shape, phase)
    x = x.clone().requires_grad_(True)
    y = layer.run([x], [torch.tensor(np.array(b.data)) for b in layer.blobs])[0]
    td = torch.ones_like(y) if topdiff is None else topdiff
    return torch.autograd.grad(y, x, td)[0]


def test_relu_gradient_at_zero_is_slope():
    x = torch.tensor([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(_fwd('type: "ReLU" relu_param { negative_slope: 0.25 }', x),
                               [-0.5, 0.0, 3.0])
    np.testing.assert_allclose(_grad('type: "ReLU" relu_param { negative_slope: 0.25 }', x),
                               [0.25, 0.25, 1.0])
    np.testing.assert_allclose(_grad('type: "ReLU"', x), [0.0, 0.0, 1.0])


def test_absval_gradient_at_zero_and_no_in_place():
    x = torch.tensor([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(_grad('type: "AbsVal"', x), [-1.0, 0.0, 1.0])
    with pytest.raises(LayerError, match="in-place"):
        build('type: "AbsVal" bottom: "x" top: "x"', (3,))


def test_clip_bounds_inclusive_and_min_above_max():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.7, 1.0])
    text = 'type: "Clip" clip_param { min: -0.5 max: 0.7 }'
    np.testing.assert_allclose(_fwd(text, x), [-0.5, -0.5, 0.0, 0.7, 0.7], rtol=1e-6)
    np.testing.assert_allclose(_grad(text, x), [0, 1, 1, 1, 0])
    # Caffe's max(min, min(x, max)) with min > max: all min, zero gradient.
    text = 'type: "Clip" clip_param { min: 1 max: -1 }'
    np.testing.assert_allclose(_fwd(text, x), [1.0] * 5)
    np.testing.assert_allclose(_grad(text, x), [0.0] * 5)


def test_clip_requires_min_and_max():
    with pytest.raises(LayerError, match="clip_param.max"):
        build('type: "Clip" clip_param { min: 0 }', (3,))
    with pytest.raises(LayerError, match="clip_param.min"):
        build('type: "Clip"', (3,))


def test_elu_matches_formula():
    x = torch.linspace(-5, 5, 41)
    y = _fwd('type: "ELU" elu_param { alpha: 0.5 }', x)
    ref = np.maximum(x.numpy(), 0) + 0.5 * (np.exp(np.minimum(x.numpy(), 0)) - 1)
    np.testing.assert_allclose(y, ref, **FWD)
    g = _grad('type: "ELU" elu_param { alpha: 0.5 }', x)
    ref_g = np.where(x.numpy() > 0, 1.0, 0.5 + ref)
    np.testing.assert_allclose(g, ref_g, **FWD)


def test_bnll_extremes():
    x = torch.tensor([-100.0, -30.0, 0.0, 30.0, 60.0, 100.0])
    y = _fwd('type: "BNLL"', x)
    assert torch.isfinite(y).all()
    np.testing.assert_allclose(y, np.logaddexp(0, x.numpy().astype(np.float64)), rtol=1e-6, atol=1e-30)
    g = _grad('type: "BNLL"', x)
    np.testing.assert_allclose(g, 1 / (1 + np.exp(-x.numpy().astype(np.float64))), atol=1e-7)


def test_sigmoid_tanh_saturate():
    x = torch.tensor([-100.0, 0.0, 100.0])
    np.testing.assert_allclose(_fwd('type: "Sigmoid"', x), [0.0, 0.5, 1.0], atol=1e-7)
    np.testing.assert_allclose(_grad('type: "Sigmoid"', x), [0.0, 0.25, 0.0], atol=1e-7)
    np.testing.assert_allclose(_fwd('type: "TanH"', x), [-1.0, 0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(_grad('type: "TanH"', x), [0.0, 1.0, 0.0], atol=1e-7)


def test_swish_formula():
    x = torch.linspace(-6, 6, 25)
    for beta in (1.0, 1.5, 0.0):
        y = _fwd('type: "Swish" swish_param { beta: %g }' % beta, x)
        s = 1 / (1 + np.exp(-beta * x.numpy()))
        np.testing.assert_allclose(y, x.numpy() * s, **FWD)
        g = _grad('type: "Swish" swish_param { beta: %g }' % beta, x)
        yy = x.numpy() * s
        np.testing.assert_allclose(g, beta * yy + s * (1 - beta * yy), rtol=1e-4, atol=1e-5)


def test_exp_and_log_bases():
    x = torch.linspace(-2, 2, 9)
    np.testing.assert_allclose(_fwd('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 0.1 }', x),
                               2.0 ** (0.1 + 0.5 * x.numpy()), **FWD)
    np.testing.assert_allclose(_fwd('type: "Exp" exp_param { base: -1 shift: 1 }', x),
                               np.exp(1 + x.numpy()), **FWD)
    # base 1 is allowed for Exp (log(base) = 0): constant 1.
    np.testing.assert_allclose(_fwd('type: "Exp" exp_param { base: 1 scale: 3 }', x), 1.0)
    xp = torch.linspace(0.1, 4, 9)
    np.testing.assert_allclose(_fwd('type: "Log" log_param { base: 10 scale: 2 shift: 1 }', xp),
                               np.log10(1 + 2 * xp.numpy()), **FWD)
    np.testing.assert_allclose(_grad('type: "Log" log_param { base: 10 scale: 2 shift: 1 }', xp),
                               2 / ((1 + 2 * xp.numpy()) * np.log(10)), **FWD)
    y = _fwd('type: "Log"', torch.tensor([0.0, -1.0]))
    assert y[0] == -float("inf") and torch.isnan(y[1])


@pytest.mark.parametrize("kind,base", [("Exp", 0), ("Exp", -2), ("Exp", -0.5), ("Exp", "nan"),
                                       ("Log", 0), ("Log", -3), ("Log", 1), ("Log", "inf")])
def test_exp_log_invalid_base(kind, base):
    field = "%s_param.base" % kind.lower()
    with pytest.raises(LayerError, match=r"layer 'L' \(type %s\), field %s" % (kind, field)):
        build('type: "%s" %s_param { base: %s }' % (kind, kind.lower(), base), (3,))


def test_power_forward_and_special_cases():
    x = torch.tensor([-1.5, -0.5, 0.0, 0.5, 2.0])
    xn = x.numpy().astype(np.float64)
    np.testing.assert_allclose(_fwd('type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }', x),
                               (1 + 0.5 * xn) ** 2, **FWD)
    np.testing.assert_allclose(_fwd('type: "Power"', x), xn)
    # power * scale == 0: constant shift^power (1 for power 0), zero gradient.
    for text, value in [('power_param { power: 0 scale: 3 shift: 2 }', 1.0),
                        ('power_param { power: 0 shift: -2 }', 1.0),
                        ('power_param { power: 3 scale: 0 shift: 2 }', 8.0)]:
        np.testing.assert_allclose(_fwd('type: "Power" ' + text, x), value)
        np.testing.assert_allclose(_grad('type: "Power" ' + text, x), 0.0)
    # infinite/NaN inputs do not leak into the constant case's gradient.
    xi = torch.tensor([float("inf"), float("nan")])
    np.testing.assert_allclose(_grad('type: "Power" power_param { power: 0 }', xi), 0.0)
    # power 1: gradient is the scale everywhere.
    np.testing.assert_allclose(_grad('type: "Power" power_param { scale: -3 shift: 1 }', x), -3.0)


def test_power_backward_caffe_quirk_at_zero_base():
    # Caffe's backward is power * y / x (shift 0) or diff_scale * y / base: 0/0 = NaN
    # where the base is exactly 0, though the true derivative of x^3 there is 0.
    x = torch.tensor([0.0, 1.0, -2.0])
    g = _grad('type: "Power" power_param { power: 3 }', x)
    assert torch.isnan(g[0])
    np.testing.assert_allclose(g[1:], [3.0, 12.0], rtol=1e-6)
    g = _grad('type: "Power" power_param { power: 3 shift: 1 }', torch.tensor([-1.0, 1.0]))
    assert torch.isnan(g[0])
    np.testing.assert_allclose(g[1:], [12.0], rtol=1e-6)
    # power 2 has its own formula: 2*scale*(shift + scale*x), finite at the root.
    g = _grad('type: "Power" power_param { power: 2 scale: 2 shift: 1 }', torch.tensor([-0.5]))
    np.testing.assert_allclose(g, [0.0])


def test_prelu_default_filler_and_shapes():
    layer = build('type: "PReLU"', (2, 3, 4, 5))
    assert tuple(layer.blobs[0].shape) == (3,)
    np.testing.assert_allclose(np.array(layer.blobs[0].data), 0.25)
    layer = build('type: "PReLU" prelu_param { channel_shared: true }', (2, 3, 4, 5))
    assert tuple(layer.blobs[0].shape) == ()
    np.testing.assert_allclose(np.array(layer.blobs[0].data), 0.25)
    # 2-D and 5-D bottoms: channels are axis 1.
    for shape in [(4, 3), (2, 3, 2, 2, 2)]:
        x = torch.randn(shape)
        y = _fwd('type: "PReLU"', x, params=[np.array([0.1, 0.2, 0.3], np.float32)])
        slope = torch.tensor([0.1, 0.2, 0.3]).reshape((1, 3) + (1,) * (len(shape) - 2))
        np.testing.assert_allclose(y, torch.where(x > 0, x, x * slope), rtol=1e-6)
    with pytest.raises(LayerError, match="axes"):
        build('type: "PReLU"', (5,))


def test_prelu_gradients_at_zero():
    layer = build('type: "PReLU"', (1, 2, 2))
    _set_params(layer, [np.array([0.5, -0.25], np.float32)])
    x = torch.tensor([[[0.0, 2.0], [-1.0, 0.0]]], requires_grad=True)
    p = torch.tensor(np.array(layer.blobs[0].data), requires_grad=True)
    y = layer.run([x], [p])[0]
    gx, gp = torch.autograd.grad(y, [x, p], torch.full_like(y, 2.0))
    np.testing.assert_allclose(gx, [[[1.0, 2.0], [-0.5, -0.5]]])  # slope at x == 0
    np.testing.assert_allclose(gp, [0.0, -2.0])


def test_threshold_forward_and_zero_backward():
    x = torch.tensor([-1.0, 0.3, 0.30001, 2.0])
    np.testing.assert_array_equal(_fwd('type: "Threshold" threshold_param { threshold: 0.3 }', x),
                                  [0, 0, 1, 1])
    np.testing.assert_array_equal(_fwd('type: "Threshold"', torch.tensor([0.0, 1e-30])), [0, 1])
    # Caffe aborts (NOT_IMPLEMENTED); we give a zero bottom diff instead.
    np.testing.assert_array_equal(_grad('type: "Threshold"', x), [0, 0, 0, 0])


def test_dropout_test_phase():
    x = torch.randn(2, 3, 4)
    np.testing.assert_array_equal(_fwd('type: "Dropout"', x, TEST), x)
    np.testing.assert_array_equal(_grad('type: "Dropout"', x, phase=TEST), torch.ones_like(x))
    y = _fwd('type: "Dropout" dropout_param { dropout_ratio: 0.25 scale_train: false }', x, TEST)
    np.testing.assert_allclose(y, x * 0.75, rtol=1e-6)


def test_dropout_train_statistics_and_mask():
    torch.manual_seed(0)
    x = torch.ones(200, 500)
    layer = build('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', x.shape, TRAIN)
    xg = x.clone().requires_grad_(True)
    y = layer.run([xg], [])[0]
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    np.testing.assert_allclose(y.detach()[kept], np.float32(1 / np.float32(0.7)), rtol=1e-6)
    # The backward uses the same mask and scale.
    g = torch.autograd.grad(y, xg, torch.full_like(y, 2.0))[0]
    np.testing.assert_allclose(g, 2 * y.detach(), rtol=1e-6)
    # scale_train: false keeps the values unscaled in TRAIN.
    layer = build('type: "Dropout" dropout_param { dropout_ratio: 0.3 scale_train: false }',
                  x.shape, TRAIN)
    y = layer.run([x], [])[0]
    assert set(torch.unique(y).tolist()) == {0.0, 1.0}
    # Ratio 0 keeps everything.
    np.testing.assert_array_equal(_fwd('type: "Dropout" dropout_param { dropout_ratio: 0 }',
                                       x, TRAIN), x)


def test_dropout_reproducible_under_seed():
    from caffe import _common
    x = torch.randn(10, 20)
    layer = build('type: "Dropout"', x.shape, TRAIN)
    _common.set_random_seed(123)
    a = layer.run([x], [])[0]
    b = layer.run([x], [])[0]
    _common.set_random_seed(123)
    c = layer.run([x], [])[0]
    np.testing.assert_array_equal(a, c)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.1])
def test_dropout_invalid_ratio(ratio):
    with pytest.raises(LayerError, match=r"\(type Dropout\), field dropout_param.dropout_ratio"):
        build('type: "Dropout" dropout_param { dropout_ratio: %g }' % ratio, (3,))


def test_output_shapes_and_arity():
    for t in ["AbsVal", "BNLL", "Dropout", "ELU", "Exp", "Log", "Power", "ReLU", "Sigmoid",
              "Swish", "TanH", "Threshold", "PReLU"]:
        layer = build('type: "%s"' % t, (2, 3, 4))
        assert layer.output_shapes([(2, 3, 4)]) == [(2, 3, 4)]
        assert layer.num_bottoms == (1, 1) and layer.num_tops == (1, 1)
        assert not layer.is_loss


def test_float64_and_empty_inputs():
    for text in [t for t, _ in GRADCHECK] + ['type: "Log"', 'type: "Threshold"', 'type: "PReLU"']:
        layer = build(text, (0, 3, 2))
        ps = [torch.tensor(np.array(b.data)) for b in layer.blobs]
        assert layer.run([torch.zeros(0, 3, 2)], ps)[0].shape == (0, 3, 2)
        ps = [p.double() for p in ps]
        x = torch.rand(2, 3, 2, dtype=torch.float64) + 0.5
        assert layer.run([x], ps)[0].dtype == torch.float64


def test_standalone_module_forward():
    layer = build('type: "PReLU"', (2, 3, 4))
    x = torch.randn(2, 3, 4)
    np.testing.assert_allclose(layer(x), torch.where(x > 0, x, 0.25 * x), rtol=1e-6)
