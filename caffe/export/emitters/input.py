"""Input (deploy-net data entry point)."""


def input_layer(net, name, top, shape):
    layer = net.add("Input", name, [], [top])
    layer.input_param.shape.add().dim.extend(int(d) for d in shape)
    return layer
