"""Shape layers: Flatten, Reshape, Concat, Slice, Permute, Silence."""


def flatten(net, name, bottom, top, axis=1, end_axis=-1):
    layer = net.add("Flatten", name, [bottom], [top])
    if axis != 1:
        layer.flatten_param.axis = int(axis)
    if end_axis != -1:
        layer.flatten_param.end_axis = int(end_axis)
    return layer


def reshape(net, name, bottom, top, dims):
    """``dims`` in Caffe's convention: 0 copies the input dim, -1 is inferred."""
    layer = net.add("Reshape", name, [bottom], [top])
    layer.reshape_param.shape.dim.extend(int(d) for d in dims)
    return layer


def concat(net, name, bottoms, top, axis=1):
    layer = net.add("Concat", name, list(bottoms), [top])
    if axis != 1:
        layer.concat_param.axis = int(axis)
    return layer


def slice_(net, name, bottom, tops, axis, points):
    layer = net.add("Slice", name, [bottom], list(tops))
    if axis != 1:
        layer.slice_param.axis = int(axis)
    layer.slice_param.slice_point.extend(int(p) for p in points)
    return layer


def permute(net, name, bottom, top, order, why=""):
    layer = net.add("Permute", name, [bottom], [top], why=why)
    layer.permute_param.order.extend(int(o) for o in order)
    return layer


def silence(net, name, bottoms):
    """Consumes tops nobody reads (the unused pieces of a Slice)."""
    return net.add("Silence", name, list(bottoms), [])
