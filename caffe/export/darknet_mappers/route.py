"""[route] (Concat, with groups/group_id -> Slice), [shortcut] (Eltwise SUM),
[upsample] (nearest Deconvolution), [reorg] (Reshape, gathering Convolution,
Reshape), [dropout], [softmax]."""
import numpy as np

from ...export.emitters import conv as conv_em
from ...export.emitters import eltwise as elt_em
from ...export.emitters import shape as shape_em
from ...export.emitters import softmax as softmax_em
from ...export.mappers._util import slice_keep
from ...export.mappers.resample import nearest
from . import SECTIONS
from .conv import activation


@SECTIONS.register("route")
def route(ctx, s):
    refs = s.ints("layers")
    if not refs:
        ctx.refuse("needs layers=", "layers")
    idx = [ctx.layer_ref(r, "layers") for r in refs]
    shapes = [ctx.shape(i) for i in idx]
    if len({sh[2:] for sh in shapes}) > 1:
        ctx.refuse("routes layers of different sizes %s" % [sh[2:] for sh in shapes], "layers")
    channels = sum(sh[1] for sh in shapes)
    n, h, w = shapes[0][0], shapes[0][2], shapes[0][3]
    groups, gid = s.get("groups", 1, int), s.get("group_id", 0, int)
    top = ctx.top()
    if len(idx) == 1:
        blob = ctx.bottom(idx[0])
    else:
        blob = top if groups == 1 else top + "/concat"
        shape_em.concat(ctx.net, ctx.name(), [ctx.bottom(i) for i in idx], blob, 1)
    if groups != 1:
        if channels % groups or not 0 <= gid < groups:
            ctx.refuse("groups=%d / group_id=%d for %d channels" % (groups, gid, channels),
                       "groups")
        part = channels // groups
        blob = slice_keep(ctx, blob, (n, channels, h, w), 1, gid * part, (gid + 1) * part, top,
                          ctx.name("group"))
        channels = part
    ctx.produce(blob, (n, channels, h, w))


@SECTIONS.register("shortcut")
def shortcut(ctx, s):
    refs = s.ints("from")
    if not refs or len(refs) != 1:
        ctx.refuse("exactly one from= layer is supported", "from")
    other = ctx.layer_ref(refs[0], "from")
    if ctx.shape(other) != ctx.shape(ctx.prev()):
        ctx.refuse("adds layers of shapes %s and %s" % (ctx.shape(other),
                                                         ctx.shape(ctx.prev())), "from")
    if s.get("weights_type", "none") != "none":
        ctx.refuse("weighted shortcuts are not supported", "weights_type")
    top = ctx.top()
    elt_em.eltwise(ctx.net, ctx.name(), [ctx.bottom(ctx.prev()), ctx.bottom(other)], top, "SUM")
    ctx.produce(activation(ctx, top), ctx.shape(ctx.prev()))


@SECTIONS.register("upsample")
def upsample(ctx, s):
    stride = s.get("stride", 2, int)
    if stride < 1 or s.get("scale", 1.0, float) != 1.0:
        ctx.refuse("only upsampling by a positive integer stride (scale=1)", "stride")
    n, c, h, w = ctx.shape(ctx.prev())
    ctx._cur_shape = (n, c, h * stride, w * stride)
    nearest(ctx, ctx.prev(), (n, c, h, w), (stride, stride))   # produces the layer's top


def reorg_gather_weight(channels, stride):
    """0/1 weights of the stride x stride, stride-``stride`` convolution inside
    [reorg]: output channel ``(oy * stride + ox) * inner + c`` picks input
    channel ``c`` at offset (oy, ox) of each window (``inner`` = channels / stride²)."""
    inner = channels // (stride * stride)
    weight = np.zeros((channels, inner, stride, stride), np.float32)
    for oy in range(stride):
        for ox in range(stride):
            for c in range(inner):
                weight[(oy * stride + ox) * inner + c, c, oy, ox] = 1.0
    return weight


@SECTIONS.register("reorg")
def reorg(ctx, s):
    """Darknet's [reorg] (YOLOv2's passthrough) is not a plain space-to-depth: it
    reads the (C, H, W) input as if it were (C/s², H·s, W·s), moves each s x s
    window of that view to channels (offset-major), and calls the result
    (C·s², H/s, W/s).  Written with BVLC layers only: Reshape to the view, a
    convolution whose 0/1 weights pick one input per output (exact), Reshape."""
    for key in ("reverse", "flatten", "extra"):
        if s.get(key, 0, int):
            ctx.refuse("%s=1 is not supported (only Darknet's default reorg)" % key, key)
    stride = s.get("stride", 1, int)
    n, c, h, w = ctx.shape(ctx.prev())
    if stride < 1 or c % (stride * stride) or h % stride or w % stride:
        ctx.refuse("stride %d needs channels divisible by %d and a size divisible by %d "
                   "(input %dx%dx%d)" % (stride, stride * stride, stride, c, h, w), "stride")
    inner = c // (stride * stride)
    view, gathered, top = ctx.top("view"), ctx.top("gather"), ctx.top()
    shape_em.reshape(ctx.net, ctx.name("view"), ctx.bottom(ctx.prev()), view,
                     [0, inner, h * stride, w * stride])
    conv_em.convolution(ctx.net, ctx.name("gather"), view, gathered,
                        reorg_gather_weight(c, stride), None, [stride, stride], [0, 0], [1, 1], 1)
    out = (n, c * stride * stride, h // stride, w // stride)
    shape_em.reshape(ctx.net, ctx.name(), gathered, top, [0] + list(out[1:]))
    ctx.produce(top, out)


@SECTIONS.register("dropout")
def dropout(ctx, s):
    ctx.produce(ctx.bottom(ctx.prev()), ctx.shape(ctx.prev()))


@SECTIONS.register("softmax")
def softmax(ctx, s):
    if s.get("groups", 1, int) != 1:
        ctx.refuse("grouped softmax", "groups")
    softmax_em.softmax(ctx.net, ctx.name(), ctx.bottom(ctx.prev()), ctx.top(), 1)
    ctx.produce(ctx.top(), ctx.shape(ctx.prev()))
