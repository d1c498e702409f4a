"""max/avg pool, adaptive pools, mean over spatial axes -> Pooling (and Reduction).

Caffe always rounds the output size up (and drops a last window starting in the
padding only when pad > 0); PyTorch floors unless ``ceil_mode``.  The windows
start at the same places, so when Caffe's output is longer the extra last
row/column is sliced off -- the numbers of the kept windows are identical.
"""
import math

from ..emitters import pooling as pool_em
from ..emitters import reduction as red_em
from . import ATEN
from ._util import axis, ints, reshape_to, slice_keep
from .conv import fold_pad


def torch_size(n, k, s, p, ceil_mode):
    out = (math.ceil if ceil_mode else math.floor)((n + 2 * p - k) / s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def caffe_size(n, k, s, p):
    out = math.ceil((n + 2 * p - k) / s) + 1
    if p > 0 and (out - 1) * s >= n + p:
        out -= 1
    return out


def emit_pool(ctx, method, x, kernel, stride, pad, ceil_mode):
    shape = ctx.shape(x)
    if len(shape) != 4:
        ctx.refuse("Caffe's Pooling is 2-D only (input shape %s)" % (shape,))
    out = [torch_size(n, k, s, p, ceil_mode)
           for n, k, s, p in zip(shape[2:], kernel, stride, pad)]
    got = [caffe_size(n, k, s, p) for n, k, s, p in zip(shape[2:], kernel, stride, pad)]
    top = ctx.top()
    raw = top if got == out else top + "/caffe"
    pool_em.pooling(ctx.net, ctx.name(), ctx.bottom(x), raw, method, kernel, stride, pad)
    blob, cur = raw, list(shape[:2]) + got
    for i in (0, 1):
        if got[i] != out[i]:
            if got[i] < out[i]:
                ctx.refuse("Caffe's Pooling gives %d outputs where PyTorch gives %d" % (
                    got[i], out[i]))
            last = got[1 - i] == out[1 - i] or i == 1
            dest = top if last else top + "/rows"
            blob = slice_keep(ctx, blob, cur, 2 + i, 0, out[i], dest, ctx.name("trim%d" % i))
            cur[2 + i] = out[i]
    ctx.produce(top)


@ATEN.register("max_pool2d", "max_pool2d_with_indices")
def max_pool(ctx, node):
    a = ctx.args()
    if any(d != 1 for d in ints(a["dilation"], 2)):
        ctx.refuse("dilated max pooling has no Caffe equivalent")
    kernel = ints(a["kernel_size"], 2)
    stride = ints(a["stride"], 2) if a["stride"] else kernel
    x, pad = a["input"], ints(a["padding"], 2)
    if x in ctx.pending:
        ctx.refuse("F.pad before max pooling cannot be folded (Caffe's max pooling ignores "
                   "padding, F.pad inserts values)")
    emit_pool(ctx, "MAX", x, kernel, stride, pad, bool(a["ceil_mode"]))
    if "with_indices" in str(node.target):
        ctx.blobs[node] = [ctx.blobs[node], None]


@ATEN.register("avg_pool2d")
def avg_pool(ctx, node):
    a = ctx.args()
    if a["divisor_override"] is not None:
        ctx.refuse("divisor_override has no Caffe equivalent")
    kernel = ints(a["kernel_size"], 2)
    stride = ints(a["stride"], 2) if a["stride"] else kernel
    pad = ints(a["padding"], 2)
    folded = a["input"] in ctx.pending
    x, pad = fold_pad(ctx, a["input"], pad, "average pooling")
    if not a["count_include_pad"] and any(pad) and not folded:
        ctx.refuse("count_include_pad=False with padding: Caffe's average pooling always "
                   "divides by the padded window")
    emit_pool(ctx, "AVE", x, kernel, stride, pad, bool(a["ceil_mode"]))


def _adaptive(ctx, node, method):
    x = node.args[0]
    shape = ctx.shape(x)
    out = ints(node.args[1], 2)
    out = [shape[2 + i] if o is None else o for i, o in enumerate(out)]
    if len(shape) != 4:
        ctx.refuse("adaptive pooling of a %d-D tensor" % len(shape))
    if out == [1, 1]:
        pool_em.pooling(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), method,
                        global_pooling=True)
    elif all(shape[2 + i] % out[i] == 0 for i in (0, 1)):
        kernel = [shape[2 + i] // out[i] for i in (0, 1)]
        pool_em.pooling(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), method, kernel, kernel,
                        [0, 0])
    else:
        ctx.refuse("adaptive pooling from %s to %s: only global or exact-divisor sizes map "
                   "to Caffe's Pooling" % (shape[2:], tuple(out)))
    ctx.produce(ctx.top())


@ATEN.register("adaptive_avg_pool2d", "_adaptive_avg_pool2d")
def adaptive_avg(ctx, node):
    _adaptive(ctx, node, "AVE")


@ATEN.register("adaptive_max_pool2d")
def adaptive_max(ctx, node):
    _adaptive(ctx, node, "MAX")
    ctx.blobs[node] = [ctx.blobs[node], None]


def _reduce(ctx, node, operation):
    a = ctx.args()
    x = a["self"]
    shape = ctx.shape(x)
    rank = len(shape)
    dims = a.get("dim")
    dims = list(range(rank)) if dims is None or dims == [] else ints(dims, 1)
    dims = sorted(axis(d, rank) for d in dims)
    keep = bool(a.get("keepdim"))
    out_shape = ctx.shape(node)
    if operation == "MEAN" and rank == 4 and dims == [2, 3]:
        pooled = ctx.top("pool") if not keep else ctx.top()
        pool_em.pooling(ctx.net, ctx.name(), ctx.bottom(x), pooled, "AVE", global_pooling=True)
        if not keep:
            reshape_to(ctx, pooled, shape[:2] + (1, 1), out_shape, ctx.top(),
                       ctx.name("flatten"))
    elif dims == list(range(dims[0], rank)) and dims[0] > 0:
        reduced = ctx.top() if not keep else ctx.top("reduced")
        red_em.reduction(ctx.net, ctx.name(), ctx.bottom(x), reduced, operation, dims[0])
        if keep:
            reshape_to(ctx, reduced, shape[:dims[0]], out_shape, ctx.top(), ctx.name("keepdim"))
    else:
        ctx.refuse("reducing axes %s of a %d-D tensor: Caffe reduces only trailing axes "
                   "(Reduction) or H,W (Pooling)" % (dims, rank))
    ctx.produce(ctx.top())


@ATEN.register("mean")
def mean(ctx, node):
    _reduce(ctx, node, "MEAN")


@ATEN.register("sum")
def sum_(ctx, node):
    _reduce(ctx, node, "SUM")
