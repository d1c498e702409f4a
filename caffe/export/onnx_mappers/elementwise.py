"""Add, Sub, Mul, Div, Max, Neg, Sqrt, Reciprocal, Pow, Exp, Log, Abs."""
from ..emitters import eltwise as elt_em
from ..emitters import neuron as neuron_em
from ..mappers import elementwise as aten_elt
from . import ONNX


@ONNX.register("Add", "Sub", "Mul", "Div")
def binary(ctx, node):
    aten_elt.binary(ctx, node.inputs[0], node.inputs[1], node.op_type.lower())


@ONNX.register("Max")
def maximum(ctx, node):
    xs = node.inputs
    if len(xs) < 2 or any(ctx.is_const(x) for x in xs) or len({ctx.shape(x) for x in xs}) > 1:
        ctx.refuse("Max needs computed tensors of one shape (Eltwise MAX)")
    elt_em.eltwise(ctx.net, ctx.name(), [ctx.bottom(x) for x in xs], ctx.top(), "MAX")
    ctx.produce(ctx.top())


def _power(ctx, node, **kw):
    neuron_em.power(ctx.net, ctx.name(), ctx.bottom(node.inputs[0]), ctx.top(), **kw)
    ctx.produce(ctx.top())


@ONNX.register("Neg")
def neg(ctx, node):
    _power(ctx, node, scale=-1.0)


@ONNX.register("Sqrt")
def sqrt(ctx, node):
    _power(ctx, node, power=0.5)


@ONNX.register("Reciprocal")
def reciprocal(ctx, node):
    _power(ctx, node, power=-1.0)


@ONNX.register("Pow")
def pow_(ctx, node):
    e = ctx.const(node.inputs[1]) if ctx.is_const(node.inputs[1]) else None
    if e is None or e.size != 1:
        ctx.refuse("Pow with a tensor exponent")
    _power(ctx, node, power=float(e.reshape(-1)[0]))


@ONNX.register("Exp", "Log", "Abs")
def unary(ctx, node):
    layer = {"Exp": "Exp", "Log": "Log", "Abs": "AbsVal"}[node.op_type]
    neuron_em.simple(ctx.net, layer, ctx.name(), ctx.bottom(node.inputs[0]), ctx.top())
    ctx.produce(ctx.top())
