"""Caffe's weight fillers (include/caffe/filler.hpp semantics).

Random fillers draw from torch's global generator, which
``caffe.set_random_seed`` reseeds, so initial weights are reproducible.
"""
import math

import torch


class FillerError(ValueError):
    pass


def _fans(shape):
    count = int(math.prod(shape)) if shape else 1
    fan_in = count // shape[0] if len(shape) >= 1 and shape[0] else count
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else count
    return fan_in, fan_out


def _variance_n(filler, shape):
    fan_in, fan_out = _fans(shape)
    norm = filler.variance_norm
    # FillerParameter.VarianceNorm: FAN_IN=0, FAN_OUT=1, AVERAGE=2
    if norm == 2:
        return (fan_in + fan_out) / 2.0
    if norm == 1:
        return float(fan_out)
    return float(fan_in)


def _checked_n(filler, shape, where):
    n = _variance_n(filler, shape)
    if not n > 0:
        raise FillerError("%s: %s filler has no fan-in/fan-out to scale by (blob shape %s)"
                          % (where, filler.type, list(shape)))
    return n


def fill(tensor, filler, where="filler"):
    """Fill ``tensor`` in place according to the FillerParameter ``filler``."""
    kind = filler.type
    shape = tuple(tensor.shape)
    if filler.sparse != -1 and kind != "gaussian":
        raise FillerError("%s: sparse is only supported by the gaussian filler (type %r)"
                          % (where, kind))
    with torch.no_grad():
        if kind == "constant":
            tensor.fill_(filler.value)
        elif kind == "uniform":
            if not filler.min <= filler.max:
                raise FillerError("%s: uniform filler needs min <= max (min %g, max %g)"
                                  % (where, filler.min, filler.max))
            tensor.uniform_(filler.min, filler.max)
        elif kind == "gaussian":
            if not filler.std >= 0:
                raise FillerError("%s: gaussian filler needs std >= 0 (std %g)"
                                  % (where, filler.std))
            tensor.normal_(filler.mean, filler.std)
            if filler.sparse >= 0:
                if len(shape) < 1 or shape[0] == 0:
                    raise FillerError("%s: sparse gaussian needs a blob with at least one axis"
                                      % where)
                p = float(filler.sparse) / shape[0]
                if p > 1:
                    raise FillerError("%s: sparse %d is more than the blob's %d outputs "
                                      "(shape %s)" % (where, filler.sparse, shape[0],
                                                      list(shape)))
                mask = torch.bernoulli(torch.full(shape, p, dtype=tensor.dtype,
                                                  device=tensor.device))
                tensor.mul_(mask)
        elif kind == "positive_unitball":
            tensor.uniform_(0.0, 1.0)
            rows = shape[0] if shape else 1
            flat = tensor.view(rows, -1)
            flat.div_(flat.sum(dim=1, keepdim=True))
        elif kind == "xavier":
            scale = math.sqrt(3.0 / _checked_n(filler, shape, where))
            tensor.uniform_(-scale, scale)
        elif kind == "msra":
            std = math.sqrt(2.0 / _checked_n(filler, shape, where))
            tensor.normal_(0.0, std)
        elif kind == "bilinear":
            if len(shape) != 4 or shape[2] != shape[3]:
                raise FillerError("%s: the bilinear filler needs a 4-D blob with square kernels, "
                                  "got shape %s" % (where, list(shape)))
            k = shape[3]
            f = math.ceil(k / 2.0)
            c = (k - 1) / (2.0 * f)
            idx = torch.arange(k, dtype=torch.float64)
            w1 = 1 - torch.abs(idx / f - c)
            kernel = (w1[:, None] * w1[None, :]).to(tensor.dtype)
            tensor.copy_(kernel.expand(shape))
        else:
            raise FillerError("%s: unknown filler type %r" % (where, kind))
    return tensor
