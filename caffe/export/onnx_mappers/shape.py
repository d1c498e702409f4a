"""Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice, and the
no-ops (Identity, Dropout, float Cast); Shape / Constant results stay constants."""
import numpy as np

from ..emitters import shape as shape_em
from ..mappers import shape as aten_shape
from ..mappers._util import axis, reshape_to, slice_keep
from . import ONNX


@ONNX.register("Identity", "Dropout")
def identity(ctx, node):
    if len(node.outputs) > 1 and node.outputs[1]:
        ctx.refuse("Dropout's mask output")
    ctx.alias(node.inputs[0])


@ONNX.register("Cast")
def cast(ctx, node):
    if not np.issubdtype(np.asarray(ctx.value(ctx.node.name)).dtype, np.floating):
        ctx.refuse("a cast to a non-float type (Caffe blobs are float)")
    ctx.alias(node.inputs[0])


@ONNX.register("Shape", "Size")
def shape_of(ctx, node):
    """Static shapes: the value stays a constant for the ops reading it."""


@ONNX.register("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def reshape(ctx, node):
    x = node.inputs[0]
    s_in, s_out = ctx.shape(x), ctx.shape(ctx.node)
    if s_in == s_out:
        return ctx.alias(x)
    if node.op_type == "Flatten" and len(s_in) > 1 and s_out[0] == s_in[0]:
        ax = axis(int(node.attrs.get("axis", 1)), len(s_in))
        shape_em.flatten(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), ax)
    else:
        reshape_to(ctx, ctx.bottom(x), s_in, s_out, ctx.top(), ctx.name())
    ctx.produce(ctx.top())


@ONNX.register("Transpose")
def transpose(ctx, node):
    x = node.inputs[0]
    perm = node.attrs.get("perm", list(range(len(ctx.shape(x))))[::-1])
    aten_shape._permute(ctx, x, list(perm))


@ONNX.register("Concat")
def concat(ctx, node):
    xs = [x for x in node.inputs if int(np.prod(ctx.shape(x))) > 0]
    rank = len(ctx.shape(ctx.node))
    if len(xs) == 1:
        return ctx.alias(xs[0])
    shape_em.concat(ctx.net, ctx.name(), [ctx.bottom(x) for x in xs], ctx.top(),
                    axis(int(node.attrs["axis"]), rank))
    ctx.produce(ctx.top())


@ONNX.register("Split")
def split(ctx, node):
    x = node.inputs[0]
    shape = ctx.shape(x)
    ax = axis(int(node.attrs.get("axis", 0)), len(shape))
    sizes = [ctx.shape(o)[ax] for o in node.outputs]
    tops = list(node.outputs)
    shape_em.slice_(ctx.net, ctx.name(), ctx.bottom(x), tops, ax, list(np.cumsum(sizes)[:-1]))
    unused = [t for t in tops if ctx.consumers.get(t, 0) == 0 and t not in ctx.g.outputs]
    if unused:
        shape_em.silence(ctx.net, ctx.name("silence"), unused)
    for t in tops:
        ctx.produce(t, t)


@ONNX.register("Slice")
def slice_(ctx, node):
    x = node.inputs[0]
    shape = ctx.shape(x)
    consts = [ctx.const(i).astype(np.int64) if i else None for i in node.inputs[1:]]
    starts, ends = consts[0], consts[1]
    axes = consts[2] if len(consts) > 2 and consts[2] is not None else range(len(starts))
    steps = consts[3] if len(consts) > 3 and consts[3] is not None else [1] * len(starts)
    blob, cur = ctx.bottom(x), list(shape)
    sliced = [(axis(int(a), len(shape)), int(s), int(e), int(st))
              for a, s, e, st in zip(axes, starts, ends, steps)]
    for n, (ax, s, e, st) in enumerate(sliced):
        if st != 1:
            ctx.refuse("Slice with step %d" % st)
        start, stop, _ = slice(s, e).indices(cur[ax])
        if (start, stop) == (0, cur[ax]):
            continue
        if ax == 0:
            ctx.refuse("slicing the batch axis")
        top = ctx.top() if n == len(sliced) - 1 else ctx.top("ax%d" % ax)
        blob = slice_keep(ctx, blob, cur, ax, start, stop, top, ctx.name("ax%d" % ax))
        cur[ax] = stop - start
    if blob == ctx.bottom(x):
        return ctx.alias(x)
    if blob != ctx.top():
        blob = reshape_to(ctx, blob, cur, cur, ctx.top(), ctx.name())
    ctx.produce(blob)
