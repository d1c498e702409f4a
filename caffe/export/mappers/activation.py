"""Activations and softmax -> ReLU, Clip, Sigmoid, TanH, ELU, PReLU, Softmax; the
ones Caffe lacks (hardsigmoid, hardswish, silu, tanh-GELU) are written out with
Power, Clip, Sigmoid, TanH and Eltwise PROD so every target can read them."""
import math

from ...limits import FLT_MAX
from ..emitters import eltwise as elt_em
from ..emitters import neuron as neuron_em
from ..emitters import softmax as softmax_em
from . import ATEN
from ._util import axis


def inplace_top(ctx, x):
    """ReLU-like layers write in place (Caffe's habit) when nothing else reads ``x``."""
    return ctx.bottom(x) if ctx.inplace_ok(x) else ctx.top()


@ATEN.register("relu", "relu_")
def relu(ctx, node):
    x = node.args[0]
    top = inplace_top(ctx, x)
    neuron_em.relu(ctx.net, ctx.name(), ctx.bottom(x), top)
    ctx.produce(top)


@ATEN.register("leaky_relu", "leaky_relu_")
def leaky_relu(ctx, node):
    a = ctx.args()
    x = a["self"]
    top = inplace_top(ctx, x)
    neuron_em.relu(ctx.net, ctx.name(), ctx.bottom(x), top, float(a["negative_slope"]))
    ctx.produce(top)


def clip_of(ctx, x, lo, hi):
    """ReLU for [0, inf), else Clip (open ends as +-FLT_MAX)."""
    if lo == 0 and hi is None:
        top = inplace_top(ctx, x)
        neuron_em.relu(ctx.net, ctx.name(), ctx.bottom(x), top)
    else:
        top = inplace_top(ctx, x)
        neuron_em.clip(ctx.net, ctx.name(), ctx.bottom(x), top,
                       -FLT_MAX if lo is None else lo, FLT_MAX if hi is None else hi)
    ctx.produce(top)


@ATEN.register("hardtanh", "hardtanh_")
def hardtanh(ctx, node):
    a = ctx.args()
    clip_of(ctx, a["self"], float(a["min_val"]), float(a["max_val"]))


@ATEN.register("relu6", "relu6_")
def relu6(ctx, node):
    clip_of(ctx, node.args[0], 0.0, 6.0)


@ATEN.register("clamp", "clamp_", "clip")
def clamp(ctx, node):
    a = ctx.args()
    for k in ("min", "max"):
        if a.get(k) is not None and not isinstance(a[k], (int, float)):
            ctx.refuse("clamp with a tensor bound")
    clip_of(ctx, a["self"], a.get("min"), a.get("max"))


@ATEN.register("clamp_min", "clamp_min_")
def clamp_min(ctx, node):
    clip_of(ctx, node.args[0], float(node.args[1]), None)


@ATEN.register("clamp_max", "clamp_max_")
def clamp_max(ctx, node):
    clip_of(ctx, node.args[0], None, float(node.args[1]))


@ATEN.register("prelu", "_prelu_kernel")
def prelu(ctx, node):
    x, weight = node.args[0], ctx.const(node.args[1])
    channels = ctx.shape(x)[1] if len(ctx.shape(x)) > 1 else 1
    if weight.size not in (1, channels):
        ctx.refuse("PReLU weight of %d values for %d channels" % (weight.size, channels))
    neuron_em.prelu(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), weight)
    ctx.produce(ctx.top())


@ATEN.register("elu", "elu_")
def elu(ctx, node):
    a = ctx.args()
    if float(a["scale"]) != 1.0 or float(a["input_scale"]) != 1.0:
        ctx.refuse("ELU with scale/input_scale (SELU) has no Caffe equivalent")
    x = a["self"]
    top = inplace_top(ctx, x)
    neuron_em.elu(ctx.net, ctx.name(), ctx.bottom(x), top, float(a["alpha"]))
    ctx.produce(top)


@ATEN.register("sigmoid", "sigmoid_")
def sigmoid(ctx, node):
    neuron_em.simple(ctx.net, "Sigmoid", ctx.name(), ctx.bottom(node.args[0]), ctx.top())
    ctx.produce(ctx.top())


@ATEN.register("tanh", "tanh_")
def tanh(ctx, node):
    neuron_em.simple(ctx.net, "TanH", ctx.name(), ctx.bottom(node.args[0]), ctx.top())
    ctx.produce(ctx.top())


def _hardsigmoid(ctx, bottom, top, suffix=""):
    """relu6(x + 3) / 6 == clip(x / 6 + 1/2, 0, 1)."""
    lin = top + "/lin"
    neuron_em.power(ctx.net, ctx.name(suffix + "lin"), bottom, lin, scale=1.0 / 6, shift=0.5)
    neuron_em.clip(ctx.net, ctx.name(suffix + "clip"), lin, lin, 0.0, 1.0)
    return lin


def hardsigmoid_of(ctx, x, alpha=1.0 / 6, beta=0.5):
    """clip(alpha * x + beta, 0, 1): PyTorch's relu6(x + 3) / 6, ONNX's HardSigmoid."""
    top = ctx.top()
    neuron_em.power(ctx.net, ctx.name(), ctx.bottom(x), top, scale=alpha, shift=beta)
    neuron_em.clip(ctx.net, ctx.name("clip"), top, top, 0.0, 1.0)
    ctx.produce(top)


def hardswish_of(ctx, x):
    bottom = ctx.bottom(x)
    gate = _hardsigmoid(ctx, bottom, ctx.top(), "gate/")
    elt_em.eltwise(ctx.net, ctx.name(), [bottom, gate], ctx.top(), "PROD")
    ctx.produce(ctx.top())


@ATEN.register("hardsigmoid", "hardsigmoid_")
def hardsigmoid(ctx, node):
    hardsigmoid_of(ctx, node.args[0])


@ATEN.register("hardswish", "hardswish_")
def hardswish(ctx, node):
    hardswish_of(ctx, node.args[0])


@ATEN.register("silu", "silu_")
def silu(ctx, node):
    bottom = ctx.bottom(node.args[0])
    gate = ctx.top("sigmoid")
    neuron_em.simple(ctx.net, "Sigmoid", ctx.name("sigmoid"), bottom, gate)
    elt_em.eltwise(ctx.net, ctx.name(), [bottom, gate], ctx.top(), "PROD")
    ctx.produce(ctx.top())


@ATEN.register("gelu", "gelu_")
def gelu(ctx, node):
    a = ctx.args()
    if a.get("approximate", "none") != "tanh":
        ctx.refuse("exact (erf) GELU has no Caffe layer; use approximate='tanh', which is "
                   "written as Power/Eltwise/TanH layers")
    bottom, top = ctx.bottom(a["self"]), ctx.top()
    c = math.sqrt(2.0 / math.pi)
    net, name = ctx.net, ctx.name
    neuron_em.power(net, name("cube"), bottom, top + "/cube", power=3.0)
    elt_em.eltwise(net, name("inner"), [bottom, top + "/cube"], top + "/inner", "SUM",
                   coeff=[c, c * 0.044715])
    neuron_em.simple(net, "TanH", name("tanh"), top + "/inner", top + "/inner")
    neuron_em.power(net, name("half"), top + "/inner", top + "/inner", scale=0.5, shift=0.5)
    elt_em.eltwise(net, name(), [bottom, top + "/inner"], top, "PROD")
    ctx.produce(top)


@ATEN.register("softmax", "_softmax")
def softmax(ctx, node):
    x = node.args[0]
    ax = axis(int(node.args[1]), len(ctx.shape(x)))
    softmax_em.softmax(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), ax)
    ctx.produce(ctx.top())


@ATEN.register("log_softmax", "_log_softmax")
def log_softmax(ctx, node):
    x = node.args[0]
    ax = axis(int(node.args[1]), len(ctx.shape(x)))
    softmax_em.softmax(ctx.net, ctx.name("softmax"), ctx.bottom(x), ctx.top(), ax)
    neuron_em.log(ctx.net, ctx.name(), ctx.top(), ctx.top())
    ctx.produce(ctx.top())
