"""[maxpool] and [avgpool].

Darknet pads a max pool by ``padding`` (default size - 1) in total, starting its
windows at ``-padding // 2``, and floors the output size.  Caffe's windows start
at ``-pad`` and its size is rounded up, so: pad = padding // 2, then Slice off
extra windows at the end; for stride 1 (tiny-YOLO's size-2 "same" pool, where
Caffe would give one row too few) pad one more and Slice off the first window.
"""
from ...export.emitters import pooling as pool_em
from ...export.mappers._util import slice_keep
from ...export.mappers.pool import caffe_size
from . import SECTIONS


@SECTIONS.register("maxpool")
def maxpool(ctx, s):
    n, c, h, w = ctx.shape(ctx.prev())
    size = s.get("size", 1, int)
    stride = s.get("stride", 1, int)
    if "stride_x" in s.options or "stride_y" in s.options:
        ctx.refuse("stride_x / stride_y are not supported", "stride_x")
    padding = s.get("padding", size - 1, int)
    out = [(d + padding - size) // stride + 1 for d in (h, w)]
    pad = padding // 2
    drop_first = 0
    got = [caffe_size(d, size, stride, pad) for d in (h, w)]
    if any(g < o for g, o in zip(got, out)):
        if stride != 1:
            ctx.refuse("maxpool size=%d stride=%d padding=%d: Caffe's Pooling cannot place "
                       "these windows" % (size, stride, padding), "padding")
        drop_first = 1
        pad += 1
        got = [caffe_size(d, size, stride, pad) for d in (h, w)]
    top = ctx.top()
    axes = [i for i in (0, 1) if (drop_first, drop_first + out[i]) != (0, got[i])]
    if any(drop_first + out[i] > got[i] for i in axes):
        ctx.refuse("maxpool gives fewer windows in Caffe than in Darknet", "size")
    raw = top + "/caffe" if axes else top
    pool_em.pooling(ctx.net, ctx.name(), ctx.bottom(ctx.prev()), raw, "MAX", [size, size],
                    [stride, stride], [pad, pad])
    blob, cur = raw, [n, c] + got
    for k, i in enumerate(axes):
        dest = top if k == len(axes) - 1 else top + "/rows"
        blob = slice_keep(ctx, blob, cur, 2 + i, drop_first, drop_first + out[i], dest,
                          ctx.name("trim%d" % i))
        cur[2 + i] = out[i]
    ctx.produce(top, (n, c, out[0], out[1]))


@SECTIONS.register("avgpool")
def avgpool(ctx, s):
    n, c, h, w = ctx.shape(ctx.prev())
    pool_em.pooling(ctx.net, ctx.name(), ctx.bottom(ctx.prev()), ctx.top(), "AVE",
                    global_pooling=True)
    ctx.produce(ctx.top(), (n, c, 1, 1))
