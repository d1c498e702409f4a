"""Small helpers shared by the ATen mappers."""
import numpy as np

from ..emitters import shape as shape_em


def ints(value, n):
    """An int or list of ints expanded to ``n`` ints."""
    if isinstance(value, (list, tuple)):
        value = [int(v) for v in value]
        if len(value) == 1:
            value = value * n
        return value
    return [int(value)] * n


def axis(dim, rank):
    return dim + rank if dim < 0 else dim


def slice_keep(ctx, blob, shape, ax, start, stop, top, name):
    """Emit a Slice keeping ``[start, stop)`` of ``blob`` along ``ax`` into ``top``;
    the other pieces go to one Silence layer so the net has no stray outputs."""
    size = shape[ax]
    if start == 0 and stop == size:
        return blob
    points, tops, unused = [], [], []
    if start > 0:
        points.append(start)
        tops.append(top + "/before")
        unused.append(top + "/before")
    tops.append(top)
    if stop < size:
        points.append(stop)
        tops.append(top + "/after")
        unused.append(top + "/after")
    shape_em.slice_(ctx.net, name, blob, tops, ax, points)
    shape_em.silence(ctx.net, name + "/silence", unused)
    return top


def reshape_dims(in_shape, out_shape):
    """Reshape dims for Caffe: the batch dim as 0 (copied) when unchanged."""
    dims = [int(d) for d in out_shape]
    if in_shape and out_shape and in_shape[0] == out_shape[0]:
        dims[0] = 0
    return dims


def reshape_to(ctx, blob, in_shape, out_shape, top, name):
    """Reshape (or Flatten where that is what it is) ``blob`` to ``out_shape``."""
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    if in_shape == out_shape:
        return blob
    if (len(out_shape) == 2 and len(in_shape) > 2 and in_shape[0] == out_shape[0]
            and int(np.prod(in_shape[1:])) == out_shape[1]):
        shape_em.flatten(ctx.net, name, blob, top, axis=1)
    else:
        shape_em.reshape(ctx.net, name, blob, top, reshape_dims(in_shape, out_shape))
    return top


def align_const(const, out_shape):
    """For a constant broadcast against a tensor of ``out_shape``: the Caffe
    ``axis`` and the blob (the constant without its leading/trailing broadcast
    dims), or None when the broadcast is not of that contiguous form."""
    c = np.asarray(const, dtype=np.float32)
    rank = len(out_shape)
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    real = [i for i, d in enumerate(shape) if d != 1]
    if not real:
        return None
    lo, hi = real[0], real[-1]
    if any(shape[i] != out_shape[i] for i in range(lo, hi + 1)):
        return None
    return lo, c.reshape(shape[lo:hi + 1])
