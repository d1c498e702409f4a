"""Pooling (MAX / AVE, explicit or global)."""
from ...protoio import schema as pb2


def pooling(net, name, bottom, top, method, kernel=None, stride=None, pad=None,
            global_pooling=False):
    layer = net.add("Pooling", name, [bottom], [top])
    p = layer.pooling_param
    p.pool = getattr(pb2().PoolingParameter, method)
    if global_pooling:
        p.global_pooling = True
        return layer
    for field, values, default in (("kernel", kernel, None), ("stride", stride, 1),
                                   ("pad", pad, 0)):
        h, w = int(values[0]), int(values[1])
        if h == w:
            if h != default:
                setattr(p, field + "_size" if field == "kernel" else field, h)
        else:
            setattr(p, field + "_h", h)
            setattr(p, field + "_w", w)
    return layer
