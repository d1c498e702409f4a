"""Relu, LeakyRelu, Clip, Sigmoid, Tanh, Elu, PRelu, HardSigmoid, HardSwish, Softmax,
LogSoftmax (the same layers as the ATen activation mappers)."""
from ..emitters import neuron as neuron_em
from ..emitters import softmax as softmax_em
from ..mappers import activation as act
from ..mappers._util import axis
from . import ONNX


@ONNX.register("Relu")
def relu(ctx, node):
    act.clip_of(ctx, node.inputs[0], 0.0, None)


@ONNX.register("LeakyRelu")
def leaky_relu(ctx, node):
    x = node.inputs[0]
    top = act.inplace_top(ctx, x)
    neuron_em.relu(ctx.net, ctx.name(), ctx.bottom(x), top, float(node.attrs.get("alpha", 0.01)))
    ctx.produce(top)


@ONNX.register("Clip")
def clip(ctx, node):
    lo, hi = node.attrs.get("min"), node.attrs.get("max")
    if len(node.inputs) > 1 and node.inputs[1]:
        lo = float(ctx.const(node.inputs[1]))
    if len(node.inputs) > 2 and node.inputs[2]:
        hi = float(ctx.const(node.inputs[2]))
    act.clip_of(ctx, node.inputs[0], lo, hi)


@ONNX.register("Sigmoid", "Tanh")
def sigmoid_tanh(ctx, node):
    layer = {"Sigmoid": "Sigmoid", "Tanh": "TanH"}[node.op_type]
    neuron_em.simple(ctx.net, layer, ctx.name(), ctx.bottom(node.inputs[0]), ctx.top())
    ctx.produce(ctx.top())


@ONNX.register("Elu")
def elu(ctx, node):
    x = node.inputs[0]
    top = act.inplace_top(ctx, x)
    neuron_em.elu(ctx.net, ctx.name(), ctx.bottom(x), top, float(node.attrs.get("alpha", 1.0)))
    ctx.produce(top)


@ONNX.register("PRelu")
def prelu(ctx, node):
    x, slope = node.inputs[0], ctx.const(node.inputs[1])
    channels = ctx.shape(x)[1]
    if slope.size not in (1, channels):
        ctx.refuse("PRelu slope of shape %s for %d channels" % (slope.shape, channels))
    neuron_em.prelu(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), slope)
    ctx.produce(ctx.top())


@ONNX.register("HardSigmoid")
def hard_sigmoid(ctx, node):
    act.hardsigmoid_of(ctx, node.inputs[0], float(node.attrs.get("alpha", 0.2)),
                       float(node.attrs.get("beta", 0.5)))


@ONNX.register("HardSwish")
def hard_swish(ctx, node):
    act.hardswish_of(ctx, node.inputs[0])


def _softmax_axis(ctx, node):
    x = node.inputs[0]
    rank = len(ctx.shape(x))
    opset = max((o.version for o in ctx.g.model.opset_import if o.domain in ("", "ai.onnx")),
                default=13)
    ax = axis(int(node.attrs.get("axis", -1 if opset >= 13 else 1)), rank)
    if opset < 13 and ax != rank - 1:
        ctx.refuse("Softmax before opset 13 normalises over all axes from %d on; Caffe's "
                   "Softmax uses one axis" % ax)
    return x, ax


@ONNX.register("Softmax")
def softmax(ctx, node):
    x, ax = _softmax_axis(ctx, node)
    softmax_em.softmax(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), ax)
    ctx.produce(ctx.top())


@ONNX.register("LogSoftmax")
def log_softmax(ctx, node):
    x, ax = _softmax_axis(ctx, node)
    softmax_em.softmax(ctx.net, ctx.name("softmax"), ctx.bottom(x), ctx.top(), ax)
    neuron_em.log(ctx.net, ctx.name(), ctx.top(), ctx.top())
    ctx.produce(ctx.top())
