"""Softmax."""


def softmax(net, name, bottom, top, axis=1):
    layer = net.add("Softmax", name, [bottom], [top])
    if axis != 1:
        layer.softmax_param.axis = int(axis)
    return layer
