"""add / sub / mul / div / maximum / neg / pow / sqrt / exp / log / abs.

Two computed tensors of one shape -> Eltwise; a computed tensor and a
broadcast one (squeeze-excitation's ``x * s``) -> Scale / Bias with a second
bottom; a tensor and a constant -> Power (scalars) or Scale / Bias with the
constant stored as the layer's blob.
"""
import numpy as np

from ..emitters import eltwise as elt_em
from ..emitters import neuron as neuron_em
from ..emitters import norm as norm_em
from . import ATEN
from ._util import align_const, reshape_to


def _operand(ctx, x):
    """('tensor', x) for a computed tensor, ('const', array) otherwise."""
    if not isinstance(x, (int, float)) and not ctx.is_const(x):
        return "tensor", x
    return "const", ctx.const(x)


def _broadcast_bottom(ctx, small, big_shape, what):
    """Reshape computed ``small`` (e.g. N,C,1,1) to the axes it covers of ``big_shape``
    (N,C) for a two-bottom Scale/Bias; returns (blob, axis)."""
    s = ctx.shape(small)
    rank = len(big_shape)
    s = (1,) * (rank - len(s)) + tuple(s)
    real = [i for i, d in enumerate(s) if d != 1]
    lo = real[0] if real else 0
    hi = real[-1] if real else 0
    if any(s[i] != big_shape[i] for i in range(lo, hi + 1)) or any(
            s[i] != 1 for i in range(hi + 1, rank)):
        ctx.refuse("cannot %s tensors of shapes %s and %s in Caffe (only a broadcast over "
                   "trailing axes, like x * s with s of shape N,C,1,1)" % (
                       what, ctx.shape(small), tuple(big_shape)))
    if lo > 0 and any(s[i] != big_shape[i] for i in range(0, lo)):
        # leading broadcast dims must coincide with real dims of size 1 in the big shape
        ctx.refuse("cannot %s shapes %s and %s: broadcast over the batch axis" % (
            what, ctx.shape(small), tuple(big_shape)))
    covered = tuple(big_shape[:hi + 1])
    blob = reshape_to(ctx, ctx.bottom(small), ctx.shape(small), covered, ctx.top("bcast"),
                      ctx.name("bcast"))
    return blob, 0


def _const_layer(ctx, x, c, op):
    """tensor (op) constant."""
    out_shape = ctx.shape(ctx.node)
    if ctx.shape(x) != out_shape:
        ctx.refuse("the constant broadcasts the tensor %s up to %s" % (ctx.shape(x), out_shape))
    bottom, top = ctx.bottom(x), ctx.top()
    if c.size == 1:
        v = float(c.reshape(-1)[0])
        kw = {"add": {"shift": v}, "sub": {"shift": -v}, "rsub": {"scale": -1.0, "shift": v},
              "mul": {"scale": v}}.get(op)
        if op == "div":
            kw = {"scale": 1.0 / v}
        if op == "rdiv":
            neuron_em.power(ctx.net, ctx.name("recip"), bottom, top, power=-1.0)
            neuron_em.power(ctx.net, ctx.name(), top, top, scale=v)
        else:
            neuron_em.power(ctx.net, ctx.name(), bottom, top, **kw)
        return ctx.produce(top)
    placed = align_const(c, out_shape)
    if placed is None:
        ctx.refuse("a constant of shape %s does not broadcast along contiguous axes of %s" % (
            c.shape, out_shape))
    ax, blob = placed
    if op in ("add", "sub"):
        norm_em.bias(ctx.net, ctx.name(), bottom, top, blob if op == "add" else -blob, ax)
    elif op == "rsub":
        neuron_em.power(ctx.net, ctx.name("neg"), bottom, top + "/neg", scale=-1.0)
        norm_em.bias(ctx.net, ctx.name(), top + "/neg", top, blob, ax)
    elif op in ("mul", "div"):
        if op == "div" and np.any(blob == 0):
            ctx.refuse("division by a constant containing zeros")
        norm_em.scale(ctx.net, ctx.name(), [bottom], top, blob if op == "mul" else 1.0 / blob,
                      axis=ax)
    else:
        ctx.refuse("%s by a non-scalar constant" % op)
    return ctx.produce(top)


def binary(ctx, a, b, op, alpha=1.0):
    """``a (op) b`` for op in add/sub/mul/div (``b`` scaled by ``alpha`` for add/sub),
    shared by the ATen and ONNX front ends."""
    a_kind, a = _operand(ctx, a)
    b_kind, b = _operand(ctx, b)
    if a_kind == "const" and b_kind == "const":
        ctx.refuse("both operands are constants")
    if a_kind == "const":   # constant (op) tensor
        if alpha != 1.0:
            ctx.refuse("%s with alpha and a constant first operand" % op)
        if op in ("sub", "div") and a.size != 1:
            ctx.refuse("constant %s tensor with a non-scalar constant" % op)
        return _const_layer(ctx, b, a, {"add": "add", "mul": "mul", "sub": "rsub",
                                        "div": "rdiv"}[op])
    if b_kind == "const":
        return _const_layer(ctx, a, b * alpha if op in ("add", "sub") else b, op)
    sa, sb, out = ctx.shape(a), ctx.shape(b), ctx.shape(ctx.node)
    top = ctx.top()
    if sa == sb:
        if op in ("add", "sub"):
            coeff = [1.0, alpha if op == "add" else -alpha]
            elt_em.eltwise(ctx.net, ctx.name(), [ctx.bottom(a), ctx.bottom(b)], top, "SUM", coeff)
        elif op == "mul":
            elt_em.eltwise(ctx.net, ctx.name(), [ctx.bottom(a), ctx.bottom(b)], top, "PROD")
        else:
            neuron_em.power(ctx.net, ctx.name("recip"), ctx.bottom(b), top + "/recip", power=-1.0)
            elt_em.eltwise(ctx.net, ctx.name(), [ctx.bottom(a), top + "/recip"], top, "PROD")
        return ctx.produce(top)
    big, small = (a, b) if sa == out else (b, a) if sb == out else (None, None)
    if big is None:
        ctx.refuse("both operands (%s and %s) are broadcast to %s" % (sa, sb, out))
    if op == "mul":
        blob, ax = _broadcast_bottom(ctx, small, out, "multiply")
        norm_em.scale(ctx.net, ctx.name(), [ctx.bottom(big), blob], top, axis=ax)
    elif op in ("add", "sub") and (op == "add" or small is b):
        blob, ax = _broadcast_bottom(ctx, small, out, "add")
        if op == "sub" or alpha != 1.0:
            neuron_em.power(ctx.net, ctx.name("coeff"), blob, top + "/coeff",
                            scale=-alpha if op == "sub" else alpha)
            blob = top + "/coeff"
        layer = ctx.net.add("Bias", ctx.name(), [ctx.bottom(big), blob], [top])
        layer.bias_param.axis = ax
    elif op == "div" and small is b:
        blob, ax = _broadcast_bottom(ctx, small, out, "divide")
        neuron_em.power(ctx.net, ctx.name("recip"), blob, top + "/recip", power=-1.0)
        norm_em.scale(ctx.net, ctx.name(), [ctx.bottom(big), top + "/recip"], top, axis=ax)
    else:
        ctx.refuse("%s with the broadcast operand first" % op)
    return ctx.produce(top)


@ATEN.register("add", "add_")
def add(ctx, node):
    binary(ctx, node.args[0], node.args[1], "add", float(ctx.args().get("alpha") or 1))


@ATEN.register("sub", "sub_")
def sub(ctx, node):
    binary(ctx, node.args[0], node.args[1], "sub", float(ctx.args().get("alpha") or 1))


@ATEN.register("rsub")
def rsub(ctx, node):
    a = ctx.args()
    kind, x = _operand(ctx, a["self"])
    if kind != "tensor" or _operand(ctx, a["other"])[0] != "const":
        ctx.refuse("rsub of two tensors")
    _const_layer(ctx, x, ctx.const(a["other"]), "rsub")


@ATEN.register("mul", "mul_")
def mul(ctx, node):
    binary(ctx, node.args[0], node.args[1], "mul")


@ATEN.register("div", "div_")
def div(ctx, node):
    if ctx.args().get("rounding_mode") is not None:
        ctx.refuse("division with rounding_mode")
    binary(ctx, node.args[0], node.args[1], "div")


@ATEN.register("maximum", "max.other")
def maximum(ctx, node):
    a, b = node.args[0], node.args[1]
    if ctx.is_const(a) or ctx.is_const(b) or ctx.shape(a) != ctx.shape(b):
        ctx.refuse("maximum needs two computed tensors of one shape (Eltwise MAX)")
    elt_em.eltwise(ctx.net, ctx.name(), [ctx.bottom(a), ctx.bottom(b)], ctx.top(), "MAX")
    ctx.produce(ctx.top())


def _power(ctx, x, **kw):
    neuron_em.power(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), **kw)
    ctx.produce(ctx.top())


@ATEN.register("neg", "neg_")
def neg(ctx, node):
    _power(ctx, node.args[0], scale=-1.0)


@ATEN.register("pow")
def pow_(ctx, node):
    if not isinstance(node.args[1], (int, float)):
        ctx.refuse("pow with a tensor exponent")
    _power(ctx, node.args[0], power=float(node.args[1]))


@ATEN.register("sqrt", "sqrt_")
def sqrt(ctx, node):
    _power(ctx, node.args[0], power=0.5)


@ATEN.register("rsqrt", "rsqrt_")
def rsqrt(ctx, node):
    _power(ctx, node.args[0], power=-0.5)


@ATEN.register("reciprocal", "reciprocal_")
def reciprocal(ctx, node):
    _power(ctx, node.args[0], power=-1.0)


@ATEN.register("exp", "exp_")
def exp(ctx, node):
    neuron_em.exp(ctx.net, ctx.name(), ctx.bottom(node.args[0]), ctx.top())
    ctx.produce(ctx.top())


@ATEN.register("log", "log_")
def log(ctx, node):
    neuron_em.log(ctx.net, ctx.name(), ctx.bottom(node.args[0]), ctx.top())
    ctx.produce(ctx.top())


@ATEN.register("abs", "abs_")
def abs_(ctx, node):
    neuron_em.simple(ctx.net, "AbsVal", ctx.name(), ctx.bottom(node.args[0]), ctx.top())
    ctx.produce(ctx.top())
