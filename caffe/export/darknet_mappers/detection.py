"""[yolo] / [region]: the preceding feature map becomes a net output (the raw
map every runtime decodes); [reorg] has no BVLC layer."""
from . import SECTIONS


@SECTIONS.register("yolo", "region")
def detection_output(ctx, s):
    blob = ctx.bottom(ctx.prev())
    ctx.finals.append((blob, s))
    ctx.produce(blob, ctx.shape(ctx.prev()))


@SECTIONS.register("reorg")
def reorg(ctx, s):
    ctx.refuse("[reorg] (YOLOv2's space-to-depth) has no Caffe layer in this package")
