"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, ReduceMean -> Pooling / Reduction."""
from ..emitters import pooling as pool_em
from ..emitters import reduction as red_em
from ..mappers._util import axis, reshape_to
from ..mappers.conv import fold_pad
from ..mappers.pool import emit_pool
from . import ONNX
from .conv import spatial_pads


def _pool(ctx, node, method):
    a = node.attrs
    if len(a.get("kernel_shape", [])) != 2:
        ctx.refuse("only 2-D pooling maps to Caffe's Pooling")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        ctx.refuse("dilated pooling")
    if len(node.outputs) > 1 and node.outputs[1]:
        ctx.refuse("MaxPool indices output")
    begin, end = spatial_pads(ctx, node, 2)
    if begin != end:
        ctx.refuse("asymmetric pads %s" % (begin + end))
    kernel = list(a["kernel_shape"])
    x, pad = node.inputs[0], begin
    if method == "AVE":
        folded = x in ctx.pending
        x, pad = fold_pad(ctx, x, pad, "average pooling")
        if any(pad) and not a.get("count_include_pad", 0) and not folded:
            ctx.refuse("count_include_pad=0 with pads: Caffe's average pooling always divides "
                       "by the padded window")
    elif x in ctx.pending:
        ctx.refuse("Pad before MaxPool cannot be folded")
    emit_pool(ctx, method, x, kernel, list(a.get("strides", [1, 1])), pad,
              bool(a.get("ceil_mode", 0)))


@ONNX.register("MaxPool")
def max_pool(ctx, node):
    _pool(ctx, node, "MAX")


@ONNX.register("AveragePool")
def avg_pool(ctx, node):
    _pool(ctx, node, "AVE")


def _global(ctx, node, method):
    if len(ctx.shape(node.inputs[0])) != 4:
        ctx.refuse("global pooling of a non-4-D tensor")
    pool_em.pooling(ctx.net, ctx.name(), ctx.bottom(node.inputs[0]), ctx.top(), method,
                    global_pooling=True)
    ctx.produce(ctx.top())


@ONNX.register("GlobalAveragePool")
def global_avg(ctx, node):
    _global(ctx, node, "AVE")


@ONNX.register("GlobalMaxPool")
def global_max(ctx, node):
    _global(ctx, node, "MAX")


@ONNX.register("ReduceMean", "ReduceSum")
def reduce(ctx, node):
    x = node.inputs[0]
    shape = ctx.shape(x)
    rank = len(shape)
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = [int(v) for v in ctx.const(node.inputs[1])]
    axes = sorted(axis(int(d), rank) for d in (axes if axes is not None else range(rank)))
    keep = bool(node.attrs.get("keepdims", 1))
    out_shape = ctx.shape(ctx.node)
    op = "MEAN" if node.op_type == "ReduceMean" else "SUM"
    if op == "MEAN" and rank == 4 and axes == [2, 3]:
        pooled = ctx.top() if keep else ctx.top("pool")
        pool_em.pooling(ctx.net, ctx.name(), ctx.bottom(x), pooled, "AVE", global_pooling=True)
        if not keep:
            reshape_to(ctx, pooled, shape[:2] + (1, 1), out_shape, ctx.top(), ctx.name("flat"))
    elif axes and axes == list(range(axes[0], rank)) and axes[0] > 0:
        reduced = ctx.top("reduced") if keep else ctx.top()
        red_em.reduction(ctx.net, ctx.name(), ctx.bottom(x), reduced, op, axes[0])
        if keep:
            reshape_to(ctx, reduced, shape[:axes[0]], out_shape, ctx.top(), ctx.name("keep"))
    else:
        ctx.refuse("reducing axes %s of a %d-D tensor" % (axes, rank))
    ctx.produce(ctx.top())
