"""ArgMax and Reduction."""
from ...protoio import schema as pb2


def argmax(net, name, bottom, top, axis, out_max_val, top_k=1):
    layer = net.add("ArgMax", name, [bottom], [top])
    p = layer.argmax_param
    p.axis = int(axis)
    if out_max_val:
        p.out_max_val = True
    if top_k != 1:
        p.top_k = int(top_k)
    return layer


def reduction(net, name, bottom, top, operation, axis, coeff=1.0):
    """Reduces every axis from ``axis`` on (Caffe's Reduction has no other form)."""
    layer = net.add("Reduction", name, [bottom], [top])
    p = layer.reduction_param
    p.operation = getattr(pb2().ReductionParameter, operation)
    p.axis = int(axis)
    if coeff != 1.0:
        p.coeff = float(coeff)
    return layer
