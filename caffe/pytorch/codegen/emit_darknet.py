"""Emitters for Darknet's detection outputs: Yolo ([yolo], YOLOv3/v4) and
Region ([region], YOLOv2)."""
from .registry import register


def _pairs(values):
    values = [float(v) for v in values]
    return [(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]


def _emit(ctx, anchors, classes, extra):
    fn = ctx.helper("darknet_boxes")
    args = [ctx.x, repr(anchors), "classes=%d" % classes] + extra
    if len(ctx.tops) > 1:
        args.append("with_map=True")
    ctx.assign("%s(%s)" % (fn, ", ".join(args)))


@register("Yolo")
def yolo(ctx):
    p = ctx.lp.yolo_param
    pairs = _pairs(p.anchors)
    mask = list(p.mask) or list(range(len(pairs)))
    extra = ["net_size=(%r, %r)" % (float(p.net_width), float(p.net_height))]
    if p.scale_x_y != 1:
        extra.append("scale_xy=%r" % p.scale_x_y)
    if p.thresh:
        extra.append("thresh=%r" % p.thresh)
    _emit(ctx, [pairs[m] for m in mask], int(p.classes), extra)


@register("Region")
def region(ctx):
    p = ctx.lp.region_param
    extra = ["softmax=True"] if p.softmax else []
    if p.thresh:
        extra.append("thresh=%r" % p.thresh)
    _emit(ctx, _pairs(p.anchors), int(p.classes), extra)
