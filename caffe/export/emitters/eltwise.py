"""Eltwise (SUM with coefficients, PROD, MAX)."""
from ...protoio import schema as pb2


def eltwise(net, name, bottoms, top, operation, coeff=None):
    layer = net.add("Eltwise", name, list(bottoms), [top])
    p = layer.eltwise_param
    p.operation = getattr(pb2().EltwiseParameter, operation)
    if coeff is not None and any(c != 1 for c in coeff):
        p.coeff.extend(float(c) for c in coeff)
    return layer
