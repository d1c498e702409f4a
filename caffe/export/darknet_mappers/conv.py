"""[convolutional] and [connected] (with batch_normalize and the activations)."""
import numpy as np

from ...export.emitters import conv as conv_em
from ...export.emitters import eltwise as elt_em
from ...export.emitters import inner_product as ip_em
from ...export.emitters import neuron as neuron_em
from ...export.emitters import norm as norm_em
from . import SECTIONS

DARKNET_BN_EPS = 1e-5


def activation(ctx, blob, key="activation"):
    """Append Darknet's activation (in place where Caffe allows); returns the blob."""
    act = ctx.node.get(key, "logistic")   # Darknet's default
    net, name = ctx.net, ctx.name
    if act == "linear":
        return blob
    if act == "leaky":
        neuron_em.relu(net, name("leaky"), blob, blob, 0.1)
    elif act == "relu":
        neuron_em.relu(net, name("relu"), blob, blob)
    elif act == "relu6":
        neuron_em.clip(net, name("relu6"), blob, blob, 0.0, 6.0)
    elif act == "logistic":
        neuron_em.simple(net, "Sigmoid", name("logistic"), blob, blob)
    elif act == "tanh":
        neuron_em.simple(net, "TanH", name("tanh"), blob, blob)
    elif act == "swish":
        neuron_em.simple(net, "Sigmoid", name("swish/sigmoid"), blob, blob + "/sigmoid")
        elt_em.eltwise(net, name("swish"), [blob, blob + "/sigmoid"], blob + "/act", "PROD")
        return blob + "/act"
    elif act == "mish":   # x * tanh(softplus(x)); BNLL is softplus
        neuron_em.simple(net, "BNLL", name("mish/softplus"), blob, blob + "/softplus")
        neuron_em.simple(net, "TanH", name("mish/tanh"), blob + "/softplus", blob + "/softplus")
        elt_em.eltwise(net, name("mish"), [blob, blob + "/softplus"], blob + "/act", "PROD")
        return blob + "/act"
    else:
        ctx.refuse("activation %r has no Caffe equivalent (leaky, linear, relu, relu6, "
                   "logistic, tanh, swish, mish are supported)" % act, key)
    return blob


@SECTIONS.register("convolutional", "conv")
def convolutional(ctx, s):
    n, c, h, w = ctx.shape(ctx.prev())
    filters = s.get("filters", 1, int)
    size = s.get("size", 1, int)
    stride = s.get("stride", 1, int)
    groups = s.get("groups", 1, int)
    if "stride_x" in s.options or "stride_y" in s.options or s.get("dilation", 1, int) != 1:
        ctx.refuse("stride_x / stride_y / dilation are not supported", "stride_x")
    pad = s.get("padding", None, int)
    if pad is None:
        pad = size // 2 if s.get("pad", 0, int) else 0
    if c % groups or filters % groups:
        ctx.refuse("groups=%d does not divide %d input / %d output channels" % (
            groups, c, filters), "groups")
    bn = s.get("batch_normalize", 0, int)
    ctx.layer_weights[s.index] = []
    biases = ctx.weights(filters, "biases")
    ctx.layer_weights[s.index].append(biases)
    if bn:
        scales = ctx.weights(filters, "scales")
        mean = ctx.weights(filters, "rolling_mean")
        var = ctx.weights(filters, "rolling_variance")
        ctx.layer_weights[s.index] += [scales, mean, var]
    weight = ctx.weights(filters * (c // groups) * size * size, "weights")
    ctx.layer_weights[s.index].append(weight)
    weight = weight.reshape(filters, c // groups, size, size)
    top = ctx.top()
    conv_em.convolution(ctx.net, ctx.name(), ctx.bottom(ctx.prev()), top, weight,
                        None if bn else biases, [stride, stride], [pad, pad], [1, 1], groups)
    if bn:
        norm_em.batch_norm(ctx.net, ctx.name("bn"), top, top, mean, var, DARKNET_BN_EPS)
        norm_em.scale(ctx.net, ctx.name("scale"), [top], top, scales, biases)
    oh = (h + 2 * pad - size) // stride + 1
    ow = (w + 2 * pad - size) // stride + 1
    ctx.produce(activation(ctx, top), (n, filters, oh, ow))


@SECTIONS.register("connected")
def connected(ctx, s):
    shape = ctx.shape(ctx.prev())
    inputs = int(np.prod(shape[1:]))
    outputs = s.get("output", 1, int)
    ctx.layer_weights[s.index] = []
    biases = ctx.weights(outputs, "biases")
    weight = ctx.weights(outputs * inputs, "weights")
    ctx.layer_weights[s.index] += [biases, weight]
    top = ctx.top()
    bn = s.get("batch_normalize", 0, int)
    ip_em.inner_product(ctx.net, ctx.name(), ctx.bottom(ctx.prev()), top,
                        weight.reshape(outputs, inputs), None if bn else biases)
    if bn:
        scales = ctx.weights(outputs, "scales")
        mean = ctx.weights(outputs, "rolling_mean")
        var = ctx.weights(outputs, "rolling_variance")
        ctx.layer_weights[s.index] += [scales, mean, var]
        norm_em.batch_norm(ctx.net, ctx.name("bn"), top, top, mean, var, DARKNET_BN_EPS)
        norm_em.scale(ctx.net, ctx.name("scale"), [top], top, scales, biases)
    ctx.produce(activation(ctx, top), (shape[0], outputs))
