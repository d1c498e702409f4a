"""Shape ops: flatten / view / reshape / squeeze / unsqueeze, permute / transpose,
cat, split / chunk / slice / narrow / select, getitem, and the no-ops of an eval
graph (dropout, clone, contiguous...)."""
import operator

import numpy as np

from ..emitters import shape as shape_em
from . import ATEN
from ._util import axis, reshape_to, slice_keep


@ATEN.register("dropout", "dropout_", "feature_dropout", "alpha_dropout", "clone",
               "contiguous", "alias", "detach", "lift_fresh_copy", "_to_copy", "to",
               "type_as", "identity")
def identity(ctx, node):
    a = ctx.args()
    if a.get("train"):
        ctx.refuse("dropout in training mode (call model.eval() first)")
    x = node.args[0]
    if ctx.value(node).dtype != ctx.value(x).dtype and not ctx.value(node).is_floating_point():
        ctx.refuse("a cast to %s (Caffe blobs are float)" % ctx.value(node).dtype)
    ctx.alias(x)


@ATEN.register("flatten", "view", "reshape", "_unsafe_view", "squeeze", "unsqueeze",
               "view_copy", "expand_dims")
def reshape(ctx, node):
    x = node.args[0]
    s_in, s_out = ctx.shape(x), ctx.shape(node)
    if s_in == s_out:
        return ctx.alias(x)
    target = str(node.target)
    if "flatten" in target and len(s_in) > 1:
        a = ctx.args()
        start = axis(int(a["start_dim"]), len(s_in))
        end = axis(int(a["end_dim"]), len(s_in))
        if start > 0:
            shape_em.flatten(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), start,
                             -1 if end == len(s_in) - 1 else end)
            return ctx.produce(ctx.top())
    if len(s_out) == 0 or (s_out[0] != s_in[0] and len(s_in) > 0):
        # Caffe keeps a batch axis; a reshape across it is legal but worth a clear form
        shape_em.reshape(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), list(s_out) or [1])
    else:
        reshape_to(ctx, ctx.bottom(x), s_in, s_out, ctx.top(), ctx.name())
    ctx.produce(ctx.top())


def _permute(ctx, x, order):
    s_in = ctx.shape(x)
    order = [axis(int(o), len(s_in)) for o in order]
    if order == sorted(order):
        return ctx.alias(x)
    moved = [o for o in order if s_in[o] != 1]
    if moved == sorted(moved):   # only size-1 axes move: a reshape
        reshape_to(ctx, ctx.bottom(x), s_in, ctx.shape(ctx.node), ctx.top(), ctx.name())
    else:
        shape_em.permute(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), order,
                         why="permute %s" % order)
    ctx.produce(ctx.top())


@ATEN.register("permute")
def permute(ctx, node):
    _permute(ctx, node.args[0], node.args[1])


@ATEN.register("transpose", "swapaxes")
def transpose(ctx, node):
    x = node.args[0]
    rank = len(ctx.shape(x))
    d0, d1 = axis(int(node.args[1]), rank), axis(int(node.args[2]), rank)
    order = list(range(rank))
    order[d0], order[d1] = order[d1], order[d0]
    _permute(ctx, x, order)


@ATEN.register("t")
def t(ctx, node):
    _permute(ctx, node.args[0], [1, 0] if len(ctx.shape(node.args[0])) == 2 else [0])


@ATEN.register("cat", "concat", "concatenate")
def cat(ctx, node):
    tensors = list(node.args[0])
    dim = int(node.args[1]) if len(node.args) > 1 else int(node.kwargs.get("dim", 0))
    rank = len(ctx.shape(node))
    tensors = [t_ for t_ in tensors if int(np.prod(ctx.shape(t_))) > 0]
    if len(tensors) == 1:
        return ctx.alias(tensors[0])
    shape_em.concat(ctx.net, ctx.name(), [ctx.bottom(t_) for t_ in tensors], ctx.top(),
                    axis(dim, rank))
    ctx.produce(ctx.top())


def _split(ctx, node, x, dim, sizes):
    """One Slice with a top per piece; pieces nobody reads go to a Silence layer."""
    shape = ctx.shape(x)
    ax = axis(int(dim), len(shape))
    used = {u.args[1] for u in node.users if u.target is operator.getitem}
    tops = ["%s/%d" % (node.name, i) for i in range(len(sizes))]
    points = list(np.cumsum(sizes)[:-1])
    if len(sizes) == 1:
        ctx.blobs[node] = [ctx.bottom(x)]
        ctx.dynamic.add(node)
        return
    shape_em.slice_(ctx.net, ctx.name(), ctx.bottom(x), tops, ax, points)
    unused = [tp for i, tp in enumerate(tops) if i not in used]
    if unused:
        shape_em.silence(ctx.net, ctx.name("silence"), unused)
    ctx.blobs[node] = tops
    ctx.dynamic.add(node)


@ATEN.register("split", "split_with_sizes", "unsafe_split", "unsafe_split_with_sizes")
def split(ctx, node):
    a = ctx.args()
    x = a["self"]
    dim = a["dim"]
    size = ctx.shape(x)[axis(int(dim), len(ctx.shape(x)))]
    sizes = a.get("split_size") if a.get("split_size") is not None else a.get("split_sizes")
    if isinstance(sizes, int):
        sizes = [min(sizes, size - i) for i in range(0, size, sizes)]
    _split(ctx, node, x, dim, [int(s) for s in sizes])


@ATEN.register("chunk")
def chunk(ctx, node):
    a = ctx.args()
    sizes = [tuple(v.shape)[axis(int(a["dim"]), len(v.shape))] for v in ctx.value(node)]
    _split(ctx, node, a["self"], a["dim"], sizes)


@ATEN.register("unbind")
def unbind(ctx, node):
    ctx.refuse("unbind (use split + reshape; Caffe's Slice keeps the sliced axis)")


@ATEN.register("getitem")
def getitem(ctx, node):
    src, index = node.args
    blobs = ctx.blobs.get(src)
    if not isinstance(blobs, list) or blobs[index] is None:
        ctx.refuse("output %d of %s has no Caffe blob (e.g. pooling indices)" % (
            index, src.name))
    ctx.produce(blobs[index])


@ATEN.register("slice", "narrow")
def slice_(ctx, node):
    a = ctx.args()
    x = a["self"] if "self" in a else a["input"]
    shape = ctx.shape(x)
    ax = axis(int(a["dim"]), len(shape))
    if "narrow" in str(node.target):
        start = int(a["start"])
        start = start + shape[ax] if start < 0 else start
        stop = start + int(a["length"])
    else:
        if int(a.get("step") or 1) != 1:
            ctx.refuse("slicing with a step (Caffe's Slice takes contiguous pieces)")
        start, stop, _ = slice(a.get("start"), a.get("end")).indices(shape[ax])
    if start == 0 and stop == shape[ax]:
        return ctx.alias(x)
    if ax == 0:
        ctx.refuse("slicing the batch axis")
    ctx.produce(slice_keep(ctx, ctx.bottom(x), shape, ax, start, stop, ctx.top(), ctx.name()))


@ATEN.register("select")
def select(ctx, node):
    a = ctx.args()
    x = a["self"]
    shape = ctx.shape(x)
    ax = axis(int(a["dim"]), len(shape))
    if ax == 0:
        ctx.refuse("selecting along the batch axis")
    i = int(a["index"])
    i = i + shape[ax] if i < 0 else i
    kept = slice_keep(ctx, ctx.bottom(x), shape, ax, i, i + 1, ctx.top("slice"), ctx.name())
    out = list(shape)
    out[ax] = 1
    ctx.produce(reshape_to(ctx, kept, out, ctx.shape(node), ctx.top(), ctx.name("squeeze")))
