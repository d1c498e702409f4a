"""Darknet's detection output layers: Yolo (YOLOv3/v4 ``[yolo]``) and Region
(YOLOv2 ``[region]``), written by ``caffe.from_darknet``.

Top 0 holds one row per (cell, anchor) -- row index ``(y * W + x) * A + a``, as
OpenCV's Darknet reader lays it out -- with ``cx, cy, w, h`` relative to the image,
the objectness, then ``objectness * class probability`` per class (0 where not
above ``thresh``).  The optional top 1 is Darknet's own layer output (the map
with the logistic / softmax applied), the bottom is the raw feature map.
"""
import torch

from .base import CaffeLayer
from .registry import register_layer


class _DarknetBoxes(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 2)

    def setup_anchors(self, anchors, count, field):
        if len(anchors) != 2 * count:
            raise self.error("needs %d anchor values (w, h per anchor), got %d" % (
                2 * count, len(anchors)), field=field)
        return torch.tensor(anchors, dtype=torch.float32).view(count, 2)

    def check_channels(self, bottom_shapes):
        s = bottom_shapes[0] if bottom_shapes else ()
        if len(s) != 4 or s[1] != self.num * self.cell:
            raise self.error("bottom must be N x %d x H x W (%d anchors x (5 + %d classes)), "
                             "got %s" % (self.num * self.cell, self.num, self.classes, s),
                             field="bottom")

    def output_shapes(self, bottom_shapes):
        n, _, h, w = bottom_shapes[0]
        shapes = [(n, h * w * self.num, self.cell)]
        return shapes + [tuple(bottom_shapes[0])] * (len(self.layer_param.top) - 1)

    def decode(self, x, activate_classes, norm_w, norm_h, scale_xy):
        n, _, h, w = x.shape
        a, cell = self.num, self.cell
        m = x.view(n, a, cell, h, w)
        xy = torch.sigmoid(m[:, :, 0:2]) * scale_xy - 0.5 * (scale_xy - 1)
        wh = m[:, :, 2:4]
        obj = torch.sigmoid(m[:, :, 4:5])
        cls = activate_classes(m[:, :, 5:])
        activated = torch.cat([xy, wh, obj, cls], 2).view(n, a * cell, h, w)
        gx = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, w)
        gy = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1)
        anchors = self.anchors.to(x.device, x.dtype)
        cx = (xy[:, :, 0] + gx) / w
        cy = (xy[:, :, 1] + gy) / h
        bw = torch.exp(wh[:, :, 0]) * anchors[:, 0].view(1, a, 1, 1) / norm_w
        bh = torch.exp(wh[:, :, 1]) * anchors[:, 1].view(1, a, 1, 1) / norm_h
        probs = obj * cls
        probs = torch.where(probs > self.thresh, probs, torch.zeros_like(probs))
        boxes = torch.cat([torch.stack([cx, cy, bw, bh], 2), obj, probs], 2)   # n,a,cell,h,w
        rows = boxes.permute(0, 3, 4, 1, 2).reshape(n, h * w * a, cell)
        return [rows, activated][:len(self.layer_param.top)]


@register_layer("Yolo")
class YoloLayer(_DarknetBoxes):
    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.yolo_param
        all_anchors = list(p.anchors)
        mask = list(p.mask) or list(range(len(all_anchors) // 2))
        if any(2 * m + 1 >= len(all_anchors) for m in mask):
            raise self.error("mask %s refers past the %d anchors" % (mask, len(all_anchors) // 2),
                             field="yolo_param.mask")
        picked = [v for m in mask for v in all_anchors[2 * m:2 * m + 2]]
        self.num, self.classes = len(mask), int(p.classes)
        self.cell = 5 + self.classes
        self.anchors = self.setup_anchors(picked, self.num, "yolo_param.anchors")
        if not (p.net_width and p.net_height):
            raise self.error("give the network input size", field="yolo_param.net_width")
        self.net_w, self.net_h = float(p.net_width), float(p.net_height)
        self.scale_xy, self.thresh = float(p.scale_x_y), float(p.thresh)
        self.check_channels(bottom_shapes)

    def run(self, bottoms, params):
        return self.decode(bottoms[0], torch.sigmoid, self.net_w, self.net_h, self.scale_xy)


@register_layer("Region")
class RegionLayer(_DarknetBoxes):
    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.region_param
        if p.coords != 4:
            raise self.error("only coords=4", field="region_param.coords")
        self.num, self.classes = int(p.num), int(p.classes)
        self.cell = 5 + self.classes
        self.anchors = self.setup_anchors(list(p.anchors), self.num, "region_param.anchors")
        self.softmax, self.thresh = bool(p.softmax), float(p.thresh)
        self.check_channels(bottom_shapes)

    def run(self, bottoms, params):
        x = bottoms[0]
        classes = (lambda c: torch.softmax(c, 2)) if self.softmax else torch.sigmoid
        return self.decode(x, classes, float(x.shape[3]), float(x.shape[2]), 1.0)
