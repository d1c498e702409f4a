"""Element-wise neuron layers: ReLU, Clip, Sigmoid, TanH, ELU, PReLU, Power, Exp, Log, AbsVal."""


def relu(net, name, bottom, top, negative_slope=0.0):
    layer = net.add("ReLU", name, [bottom], [top])
    if negative_slope:
        layer.relu_param.negative_slope = float(negative_slope)
    return layer


def clip(net, name, bottom, top, lo, hi):
    layer = net.add("Clip", name, [bottom], [top])
    layer.clip_param.min = float(lo)
    layer.clip_param.max = float(hi)
    return layer


def simple(net, layer_type, name, bottom, top):
    """A parameterless neuron layer (Sigmoid, TanH, AbsVal, BNLL)."""
    return net.add(layer_type, name, [bottom], [top])


def elu(net, name, bottom, top, alpha=1.0):
    layer = net.add("ELU", name, [bottom], [top])
    if alpha != 1.0:
        layer.elu_param.alpha = float(alpha)
    return layer


def prelu(net, name, bottom, top, slope):
    layer = net.add("PReLU", name, [bottom], [top], [slope.reshape(-1)])
    if slope.size == 1:
        layer.prelu_param.channel_shared = True
    return layer


def power(net, name, bottom, top, power=1.0, scale=1.0, shift=0.0):
    """(shift + scale * x) ** power."""
    layer = net.add("Power", name, [bottom], [top])
    p = layer.power_param
    if power != 1.0:
        p.power = float(power)
    if scale != 1.0:
        p.scale = float(scale)
    if shift != 0.0:
        p.shift = float(shift)
    return layer


def exp(net, name, bottom, top):
    return net.add("Exp", name, [bottom], [top])


def log(net, name, bottom, top):
    return net.add("Log", name, [bottom], [top])
