"""[yolo] / [region]: the preceding raw feature map is always a net output; targets
that have them (``any``) also get this package's Yolo / Region layer decoding the
boxes as Darknet does."""
from .. import targets
from . import SECTIONS


@SECTIONS.register("yolo")
def yolo(ctx, s):
    raw = ctx.bottom(ctx.prev())
    ctx.finals.append((raw, s))
    if not targets.allowed(ctx.net.target, "Yolo"):
        return ctx.produce(raw, ctx.shape(ctx.prev()))
    n, c, h, w = ctx.shape(ctx.prev())
    anchors = s.floats("anchors", [])
    mask = s.ints("mask", list(range(len(anchors) // 2)))
    classes = s.get("classes", 20, int)
    if c != len(mask) * (5 + classes):
        ctx.refuse("the previous layer has %d channels, not %d masked anchors x (5 + %d "
                   "classes)" % (c, len(mask), classes), "mask")
    layer = ctx.net.add("Yolo", ctx.name(), [raw], [ctx.top()])
    p = layer.yolo_param
    p.anchors.extend(anchors)
    p.mask.extend(mask)
    p.classes = classes
    p.scale_x_y = s.get("scale_x_y", 1.0, float)
    p.net_width, p.net_height = ctx.input_shape[3], ctx.input_shape[2]
    p.thresh = s.get("thresh", 0.0, float)
    ctx.finals.append((ctx.top(), s))
    ctx.produce(ctx.top(), (n, h * w * len(mask), 5 + classes))


@SECTIONS.register("region")
def region(ctx, s):
    raw = ctx.bottom(ctx.prev())
    ctx.finals.append((raw, s))
    if not targets.allowed(ctx.net.target, "Region"):
        return ctx.produce(raw, ctx.shape(ctx.prev()))
    n, c, h, w = ctx.shape(ctx.prev())
    num, classes = s.get("num", 1, int), s.get("classes", 20, int)
    if s.get("coords", 4, int) != 4 or c != num * (5 + classes):
        ctx.refuse("expects coords=4 and %d channels" % (num * (5 + classes)), "coords")
    layer = ctx.net.add("Region", ctx.name(), [raw], [ctx.top()])
    p = layer.region_param
    p.anchors.extend(s.floats("anchors", []))
    p.classes, p.num = classes, num
    p.softmax = bool(s.get("softmax", 0, int))
    p.thresh = s.get("thresh", 0.0, float)
    ctx.finals.append((ctx.top(), s))
    ctx.produce(ctx.top(), (n, h * w * num, 5 + classes))

