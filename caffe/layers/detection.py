"""Layers of the Caffe forks that detection and segmentation code bases use.

* ROIPooling (caffe-fast-rcnn), PSROIPooling (R-FCN): through
  :mod:`caffe.kernels` (CUDA kernels with CuPy, else the PyTorch path).
* SmoothL1Loss: py-faster-rcnn's form (2 or 4 bottoms, ``sigma``,
  inside/outside weights), the older fast-rcnn/SSD form (2 or 3 bottoms,
  the weight applied inside only, no extra factor in the gradient).
* SSD: Normalize, Permute, PriorBox, DetectionOutput.
* DeepLab's Interp, SegNet's Upsample.
"""
import math

import numpy as np
import torch

from .. import kernels
from ._util import FLT_MAX
from .base import CaffeLayer
from .registry import register_layer


def _hw(shape):
    """Caffe's legacy height()/width() of a shape (1 for missing axes)."""
    h = shape[2] if len(shape) > 2 else 1
    w = shape[3] if len(shape) > 3 else 1
    return int(h), int(w)


# ---------------------------------------------------------------------------
# ROI pooling
# ---------------------------------------------------------------------------
@register_layer("ROIPooling")
class ROIPoolingLayer(CaffeLayer):
    num_bottoms = (2, 2)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.roi_pooling_param
        if p.pooled_h <= 0:
            raise self.error("pooled_h must be > 0", field="roi_pooling_param.pooled_h")
        if p.pooled_w <= 0:
            raise self.error("pooled_w must be > 0", field="roi_pooling_param.pooled_w")
        self.pooled_h = int(p.pooled_h)
        self.pooled_w = int(p.pooled_w)
        self.spatial_scale = float(p.spatial_scale)
        if len(bottom_shapes) > 0 and len(bottom_shapes[0]) != 4:
            raise self.error("bottom[0] must be (N, C, H, W), got %s" % (bottom_shapes[0],))

    def output_shapes(self, bottom_shapes):
        return [(int(bottom_shapes[1][0]), int(bottom_shapes[0][1]), self.pooled_h,
                 self.pooled_w)]

    def run(self, bottoms, params):
        x, rois = bottoms
        return [kernels.roi_pooling(x, rois.detach(), self.pooled_h, self.pooled_w,
                                    self.spatial_scale)]


@register_layer("PSROIPooling")
class PSROIPoolingLayer(CaffeLayer):
    num_bottoms = (2, 2)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.psroi_pooling_param
        for f in ("spatial_scale", "output_dim", "group_size"):
            if not p.HasField(f):
                raise self.error("%s is required" % f, field="psroi_pooling_param.%s" % f)
        if p.output_dim <= 0:
            raise self.error("output_dim must be > 0", field="psroi_pooling_param.output_dim")
        if p.group_size <= 0:
            raise self.error("group_size must be > 0", field="psroi_pooling_param.group_size")
        self.output_dim = int(p.output_dim)
        self.group_size = int(p.group_size)
        self.spatial_scale = float(p.spatial_scale)
        if bottom_shapes:
            c = int(bottom_shapes[0][1]) if len(bottom_shapes[0]) > 1 else 0
            if c != self.output_dim * self.group_size ** 2:
                raise self.error("input channels %d must equal output_dim * group_size^2 = %d"
                                 % (c, self.output_dim * self.group_size ** 2),
                                 field="psroi_pooling_param.output_dim")

    def output_shapes(self, bottom_shapes):
        k = self.group_size
        return [(int(bottom_shapes[1][0]), self.output_dim, k, k)]

    def run(self, bottoms, params):
        x, rois = bottoms
        return [kernels.psroi_pooling(x, rois.detach(), self.output_dim, self.group_size,
                                      self.spatial_scale)]


# ---------------------------------------------------------------------------
# SmoothL1Loss
# ---------------------------------------------------------------------------
@register_layer("SmoothL1Loss")
class SmoothL1LossLayer(CaffeLayer):
    """Two or four bottoms (pred, target[, inside_w, outside_w]) with ``sigma``
    (py-faster-rcnn); three bottoms (pred, target, w) is fast-rcnn's older
    form, whose gradient does not multiply by ``w`` again."""
    num_bottoms = (2, 4)
    num_tops = (1, 1)
    is_loss = True

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        nb = len(bottom_shapes)
        has_sigma = layer_param.HasField("smooth_l1_loss_param")
        sigma = float(layer_param.smooth_l1_loss_param.sigma)
        if nb == 3 and has_sigma:
            raise self.error("the sigma form takes 2 or 4 bottoms (pred, target, inside_w, "
                             "outside_w), got 3", field="smooth_l1_loss_param")
        if has_sigma and not sigma > 0:
            raise self.error("sigma must be > 0", field="smooth_l1_loss_param.sigma")
        self.legacy = nb == 3
        self.s2 = sigma * sigma
        if bottom_shapes:
            n0 = int(np.prod(bottom_shapes[0])) if len(bottom_shapes[0]) else 1
            for i, s in enumerate(bottom_shapes[1:], 1):
                n = int(np.prod(s)) if len(s) else 1
                if n != n0:
                    raise self.error("bottom[%d] has %d values, bottom[0] has %d" % (i, n, n0))
        self.num = int(bottom_shapes[0][0]) if bottom_shapes and len(bottom_shapes[0]) else 1

    def output_shapes(self, bottom_shapes):
        return [()]

    def run(self, bottoms, params):
        pred = bottoms[0]
        target = bottoms[1].reshape(pred.shape)
        num = pred.shape[0] if pred.dim() else 1
        diff = pred - target
        if self.legacy:
            w = bottoms[2].detach().reshape(pred.shape)
            wd = w * diff
            # value w*(pred-target), gradient 1 w.r.t. (pred-target)
            d = wd.detach() + (diff - diff.detach())
            ad = d.abs()
            f = torch.where(ad < 1, 0.5 * d * d, ad - 0.5)
            return [f.sum() / num]
        s2 = self.s2
        if len(bottoms) == 4:
            diff = bottoms[2].detach().reshape(pred.shape) * diff
        ad = diff.abs()
        f = torch.where(ad < 1.0 / s2, (0.5 * s2) * diff * diff, ad - 0.5 / s2)
        if len(bottoms) == 4:
            f = bottoms[3].detach().reshape(pred.shape) * f
        return [f.sum() / num]


# ---------------------------------------------------------------------------
# SSD: Normalize, Permute, PriorBox, DetectionOutput
# ---------------------------------------------------------------------------
@register_layer("Normalize")
class NormalizeLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.norm_param
        shape = tuple(bottom_shapes[0]) if bottom_shapes else ()
        if len(shape) < 2:
            raise self.error("bottom must have at least 2 axes, got %s" % (shape,))
        self.across_spatial = bool(p.across_spatial)
        self.channel_shared = bool(p.channel_shared)
        self.eps = float(p.eps)
        channels = int(shape[1])
        pshape = () if self.channel_shared else (channels,)
        if p.HasField("scale_filler"):
            blob = self.add_param_blob(pshape, filler=p.scale_filler)
        else:
            blob = self.add_param_blob(pshape, default_fill=1.0)
        expected = 1 if self.channel_shared else channels
        if blob.count != expected:
            raise self.error("scale has %d values, expected %d" % (blob.count, expected),
                             field="norm_param.channel_shared")

    def output_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def run(self, bottoms, params):
        x = bottoms[0]
        n, c = x.shape[0], x.shape[1]
        y = _NormalizeFunction.apply(x.reshape(n, c, -1), params[0], self.across_spatial,
                                     self.channel_shared, self.eps)
        return [y.reshape(x.shape)]


class _NormalizeFunction(torch.autograd.Function):
    """SSD's Normalize with its own backward: the bottom diff is
    ``scale * (dy - x * sum(x * dy) / norm^2) / norm`` -- for a per-channel scale
    this is not the true gradient (the sum leaves the scale out), as in SSD."""

    @staticmethod
    def forward(ctx, v, scale, across, shared, eps):
        n, c = v.shape[0], v.shape[1]
        sq = v * v
        if across:
            norm = torch.sqrt(sq.reshape(n, -1).sum(1) + eps).view(n, 1, 1)
            y = v * (1.0 / norm)
        else:
            norm = torch.sqrt(sq.sum(1, keepdim=True) + eps)
            y = v / norm
        s = scale.reshape(()) if shared else scale.view(1, c, 1)
        y = y * s
        ctx.save_for_backward(v, scale, norm, y)
        ctx.cfg = (across, shared)
        return y

    @staticmethod
    def backward(ctx, dy):
        v, scale, norm, y = ctx.saved_tensors
        across, shared = ctx.cfg
        c = v.shape[1]
        s = scale.reshape(()) if shared else scale.view(1, c, 1)
        gv = gs = None
        if ctx.needs_input_grad[1]:
            yd = y * dy
            if shared:
                gs = (yd.sum() / scale.reshape(())).reshape(scale.shape)
            else:
                gs = (yd.sum(2) / scale.view(1, c)).sum(0).reshape(scale.shape)
        if ctx.needs_input_grad[0]:
            if across:
                a = (v * dy).reshape(v.shape[0], -1).sum(1).view(-1, 1, 1)
                gv = (dy - v * (a / norm / norm)) * (1.0 / norm)
            else:
                a = (v * dy).sum(1, keepdim=True)
                gv = (dy - v * a / (norm * norm)) / norm
            gv = gv * s
        return gv, gs, None, None, None


@register_layer("Permute")
class PermuteLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        naxes = len(bottom_shapes[0]) if bottom_shapes else 0
        order = []
        for o in layer_param.permute_param.order:
            o = int(o)
            if o >= naxes:
                raise self.error("order axis %d out of range for a %d-axis bottom"
                                 % (o, naxes), field="permute_param.order")
            if o in order:
                raise self.error("there are duplicate orders (axis %d)" % o,
                                 field="permute_param.order")
            order.append(o)
        order += [i for i in range(naxes) if i not in order]
        self.order = tuple(order)
        self.identity = self.order == tuple(range(naxes))

    def output_shapes(self, bottom_shapes):
        s = bottom_shapes[0]
        return [tuple(s[i] for i in self.order)]

    def run(self, bottoms, params):
        x = bottoms[0]
        if self.identity:
            return [x.view(x.shape)]
        return [x.permute(self.order).contiguous()]


@register_layer("PriorBox")
class PriorBoxLayer(CaffeLayer):
    num_bottoms = (2, 2)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.prior_box_param
        F = "prior_box_param."
        if len(p.min_size) == 0:
            raise self.error("must provide min_size", field=F + "min_size")
        for s in p.min_size:
            if not s > 0:
                raise self.error("min_size must be positive", field=F + "min_size")
        self.min_sizes = [float(s) for s in p.min_size]
        ars = [1.0]
        for ar in p.aspect_ratio:
            ar = float(ar)
            if any(abs(ar - a) < 1e-6 for a in ars):
                continue
            ars.append(ar)
            if p.flip:
                ars.append(float(np.float32(1.0 / ar)))
        self.aspect_ratios = ars
        self.max_sizes = [float(s) for s in p.max_size]
        if self.max_sizes:
            if len(self.max_sizes) != len(self.min_sizes):
                raise self.error("max_size must be given once per min_size",
                                 field=F + "max_size")
            for mn, mx in zip(self.min_sizes, self.max_sizes):
                if not mx > mn:
                    raise self.error("max_size must be greater than min_size",
                                     field=F + "max_size")
        self.num_priors = len(ars) * len(self.min_sizes) + len(self.max_sizes)
        self.clip = bool(p.clip)
        var = [float(v) for v in p.variance]
        if len(var) > 1 and len(var) != 4:
            raise self.error("give 1 or exactly 4 variances, got %d" % len(var),
                             field=F + "variance")
        if any(not v > 0 for v in var):
            raise self.error("variance must be positive", field=F + "variance")
        self.variance = var or [0.1]
        if p.HasField("img_h") or p.HasField("img_w"):
            if p.HasField("img_size"):
                raise self.error("either img_size or img_h/img_w, not both",
                                 field=F + "img_size")
            if p.img_h <= 0 or p.img_w <= 0:
                raise self.error("img_h and img_w must be > 0", field=F + "img_h")
            self.img_h, self.img_w = int(p.img_h), int(p.img_w)
        elif p.HasField("img_size"):
            if p.img_size <= 0:
                raise self.error("img_size must be > 0", field=F + "img_size")
            self.img_h = self.img_w = int(p.img_size)
        else:
            self.img_h = self.img_w = 0
        if p.HasField("step_h") or p.HasField("step_w"):
            if p.HasField("step"):
                raise self.error("either step or step_h/step_w, not both", field=F + "step")
            if not (p.step_h > 0 and p.step_w > 0):
                raise self.error("step_h and step_w must be > 0", field=F + "step_h")
            self.step_h, self.step_w = float(p.step_h), float(p.step_w)
        elif p.HasField("step"):
            if not p.step > 0:
                raise self.error("step must be > 0", field=F + "step")
            self.step_h = self.step_w = float(p.step)
        else:
            self.step_h = self.step_w = 0.0
        self.offset = float(p.offset)
        self._cache = {}

    def output_shapes(self, bottom_shapes):
        h, w = _hw(bottom_shapes[0])
        return [(1, 2, h * w * self.num_priors * 4)]

    def priors(self, layer_h, layer_w, img_h, img_w):
        """(2, layer_h*layer_w*num_priors*4) float32 array: boxes, variances."""
        key = (layer_h, layer_w, img_h, img_w)
        out = self._cache.get(key)
        if out is not None:
            return out
        if self.img_h and self.img_w:
            img_h, img_w = self.img_h, self.img_w
        f32 = np.float32
        if self.step_h == 0 or self.step_w == 0:
            step_w = f32(f32(img_w) / f32(layer_w))
            step_h = f32(f32(img_h) / f32(layer_h))
        else:
            step_w, step_h = f32(self.step_w), f32(self.step_h)
        # box sizes of one cell, in emission order (C++ stores min/max sizes in ints)
        sizes = []
        for s, mn in enumerate(self.min_sizes):
            mn_i = int(mn)
            sizes.append((f32(mn_i), f32(mn_i)))
            if self.max_sizes:
                side = f32(math.sqrt(mn_i * int(self.max_sizes[s])))
                sizes.append((side, side))
            for ar in self.aspect_ratios:
                if abs(ar - 1.0) < 1e-6:
                    continue
                r = math.sqrt(ar)
                sizes.append((f32(mn_i * r), f32(mn_i / r)))
        bw = np.array([s[0] for s in sizes], dtype=np.float64)
        bh = np.array([s[1] for s in sizes], dtype=np.float64)
        off = f32(self.offset)
        cx = ((np.arange(layer_w, dtype=np.float32) + off) * step_w).astype(np.float32)
        cy = ((np.arange(layer_h, dtype=np.float32) + off) * step_h).astype(np.float32)
        cx = cx.astype(np.float64)[None, :, None]
        cy = cy.astype(np.float64)[:, None, None]
        shape = (layer_h, layer_w, len(sizes))
        boxes = np.stack([np.broadcast_to((cx - bw / 2.0) / img_w, shape),
                          np.broadcast_to((cy - bh / 2.0) / img_h, shape),
                          np.broadcast_to((cx + bw / 2.0) / img_w, shape),
                          np.broadcast_to((cy + bh / 2.0) / img_h, shape)], axis=-1)
        boxes = boxes.astype(np.float32).reshape(-1)
        if self.clip:
            boxes = np.clip(boxes, 0.0, 1.0)
        if len(self.variance) == 1:
            var = np.full(boxes.shape, self.variance[0], dtype=np.float32)
        else:
            var = np.tile(np.array(self.variance, dtype=np.float32), boxes.size // 4)
        out = torch.from_numpy(np.stack([boxes, var]))
        self._cache[key] = out
        return out

    def run(self, bottoms, params):
        lh, lw = _hw(bottoms[0].shape)
        ih, iw = _hw(bottoms[1].shape)
        pri = self.priors(lh, lw, ih, iw)
        return [pri.to(bottoms[0].device).view(1, 2, -1).clone()]


def _iou_matrix(b):
    """Pairwise Jaccard overlaps (float32, SSD's normalized form, no +1)."""
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    w = x2 - x1
    h = y2 - y1
    size = np.where((w < 0) | (h < 0), np.float32(0), w * h).astype(np.float32)
    ix1 = np.maximum(x1[:, None], x1[None, :])
    iy1 = np.maximum(y1[:, None], y1[None, :])
    ix2 = np.minimum(x2[:, None], x2[None, :])
    iy2 = np.minimum(y2[:, None], y2[None, :])
    disjoint = ((x1[None, :] > x2[:, None]) | (x2[None, :] < x1[:, None]) |
                (y1[None, :] > y2[:, None]) | (y2[None, :] < y1[:, None]))
    iw = (ix2 - ix1).astype(np.float32)
    ih = (iy2 - iy1).astype(np.float32)
    iw[disjoint] = 0
    ih[disjoint] = 0
    inter = (iw * ih).astype(np.float32)
    ok = (iw > 0) & (ih > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / ((size[:, None] + size[None, :]) - inter)
    return np.where(ok, iou, np.float32(0)).astype(np.float32)


def nms_fast(boxes, scores, score_threshold, nms_threshold, eta, top_k):
    """SSD's ApplyNMSFast: indices kept, in descending score order."""
    cand = np.nonzero(scores > score_threshold)[0]
    order = cand[np.argsort(-scores[cand], kind="stable")]
    if top_k > -1:
        order = order[:top_k]
    if order.size == 0:
        return []
    iou = _iou_matrix(boxes[order])
    thr = np.float32(nms_threshold)
    kept = []
    for j in range(order.size):
        if all(iou[j, k] <= thr for k in kept):
            kept.append(j)
            if eta < 1 and thr > 0.5:
                thr = np.float32(thr * np.float32(eta))
    return [int(order[j]) for j in kept]


@register_layer("DetectionOutput")
class DetectionOutputLayer(CaffeLayer):
    """SSD inference head: decode, per-class NMS, keep_top_k; rows
    ``[image, label, score, xmin, ymin, xmax, ymax]`` in a (1, 1, K, 7) top."""
    num_bottoms = (3, 4)
    num_tops = (1, 1)
    CORNER, CENTER_SIZE, CORNER_SIZE = 1, 2, 3

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.detection_output_param
        F = "detection_output_param."
        if not p.HasField("num_classes"):
            raise self.error("must specify num_classes", field=F + "num_classes")
        self.num_classes = int(p.num_classes)
        if self.num_classes <= 0:
            raise self.error("num_classes must be > 0", field=F + "num_classes")
        self.share_location = bool(p.share_location)
        self.num_loc_classes = 1 if self.share_location else self.num_classes
        self.background = int(p.background_label_id)
        self.code_type = int(p.code_type)
        if self.code_type not in (1, 2, 3):
            raise self.error("unknown code_type %d" % self.code_type, field=F + "code_type")
        self.variance_in_target = bool(p.variance_encoded_in_target)
        self.keep_top_k = int(p.keep_top_k)
        self.conf_threshold = float(p.confidence_threshold) \
            if p.HasField("confidence_threshold") else -FLT_MAX
        nms = p.nms_param
        self.nms_threshold = float(nms.nms_threshold)
        if self.nms_threshold < 0:
            raise self.error("nms_threshold must be non negative",
                             field=F + "nms_param.nms_threshold")
        self.eta = float(nms.eta)
        if not (0 < self.eta <= 1):
            raise self.error("eta must be in (0, 1]", field=F + "nms_param.eta")
        self.top_k = int(nms.top_k) if nms.HasField("top_k") else -1
        if len(bottom_shapes) >= 3:
            self._check_shapes(bottom_shapes)

    def _check_shapes(self, shapes):
        loc, conf, prior = shapes[0], shapes[1], shapes[2]
        num_priors = _hw(prior)[0] // 4 if len(prior) > 2 else 0
        count = lambda s: int(np.prod(s[1:])) if len(s) > 1 else 1  # noqa: E731
        if num_priors * self.num_loc_classes * 4 != count(loc):
            raise self.error("number of priors must match number of location predictions "
                             "(%d priors, loc has %d values per image)"
                             % (num_priors, count(loc)))
        if num_priors * self.num_classes != count(conf):
            raise self.error("number of priors must match number of confidence predictions "
                             "(%d priors x %d classes, conf has %d values per image)"
                             % (num_priors, self.num_classes, count(conf)),
                             field="detection_output_param.num_classes")

    def output_shapes(self, bottom_shapes):
        return [(1, 1, 1, 7)]

    def decode(self, loc, prior, var):
        """loc (..., P, 4), prior (P, 4), var (P, 4) float32 -> boxes (..., P, 4)."""
        f32 = np.float32
        v = np.ones_like(var) if self.variance_in_target else var
        if self.code_type == self.CORNER:
            return (prior + v * loc).astype(f32)
        pw = (prior[:, 2] - prior[:, 0]).astype(f32)
        ph = (prior[:, 3] - prior[:, 1]).astype(f32)
        if self.code_type == self.CORNER_SIZE:
            size = np.stack([pw, ph, pw, ph], axis=-1)
            return (prior + (v * loc).astype(f32) * size).astype(f32)
        pcx = ((prior[:, 0].astype(np.float64) + prior[:, 2]) / 2.0).astype(f32)
        pcy = ((prior[:, 1].astype(np.float64) + prior[:, 3]) / 2.0).astype(f32)
        cx = ((v[:, 0] * loc[..., 0]).astype(f32) * pw + pcx).astype(f32)
        cy = ((v[:, 1] * loc[..., 1]).astype(f32) * ph + pcy).astype(f32)
        w = (np.exp((v[:, 2] * loc[..., 2]).astype(f32)).astype(f32) * pw).astype(f32)
        h = (np.exp((v[:, 3] * loc[..., 3]).astype(f32)).astype(f32) * ph).astype(f32)
        cx, cy, w, h = (a.astype(np.float64) for a in (cx, cy, w, h))
        return np.stack([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                        axis=-1).astype(f32)

    def detect(self, loc, conf, prior):
        """NumPy float32 arrays -> (K, 7) rows."""
        num = loc.shape[0]
        prior = prior.reshape(-1)
        P = prior.size // 8
        pboxes = prior[:P * 4].reshape(P, 4)
        pvars = prior[P * 4:P * 8].reshape(P, 4)
        loc = loc.reshape(num, P, self.num_loc_classes, 4)
        conf = conf.reshape(num, P, self.num_classes)
        rows = []
        for i in range(num):
            decoded = [self.decode(loc[i, :, l], pboxes, pvars) for l in
                       range(self.num_loc_classes)]
            kept = {}
            num_det = 0
            for c in range(self.num_classes):
                if c == self.background:
                    continue
                boxes = decoded[0 if self.share_location else c]
                kept[c] = nms_fast(boxes, conf[i, :, c], self.conf_threshold,
                                   self.nms_threshold, self.eta, self.top_k)
                num_det += len(kept[c])
            if self.keep_top_k > -1 and num_det > self.keep_top_k:
                triples = [(conf[i, idx, c], c, idx) for c in sorted(kept) for idx in kept[c]]
                triples.sort(key=lambda t: -t[0])
                triples = triples[:self.keep_top_k]
                kept = {}
                for _, c, idx in triples:
                    kept.setdefault(c, []).append(idx)
            for c in sorted(kept):
                boxes = decoded[0 if self.share_location else c]
                for idx in kept[c]:
                    b = boxes[idx]
                    rows.append((i, c, conf[i, idx, c], b[0], b[1], b[2], b[3]))
        if not rows:
            out = np.full((num, 7), -1, dtype=np.float32)
            out[:, 0] = np.arange(num)
            return out
        return np.array(rows, dtype=np.float32)

    def run(self, bottoms, params):
        loc, conf, prior = bottoms[0], bottoms[1], bottoms[2]
        dev = loc.device
        f = lambda t: t.detach().to("cpu", torch.float32).numpy()  # noqa: E731
        rows = self.detect(f(loc).reshape(loc.shape[0], -1), f(conf).reshape(conf.shape[0], -1),
                           f(prior))
        return [torch.from_numpy(rows).to(dev).view(1, 1, -1, 7)]


# ---------------------------------------------------------------------------
# DeepLab Interp, SegNet Upsample
# ---------------------------------------------------------------------------
@register_layer("Interp")
class InterpLayer(CaffeLayer):
    """DeepLab's bilinear resize (caffe_cpu_interp2: corners aligned)."""
    num_bottoms = (1, 2)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.interp_param
        F = "interp_param."
        self.pad_beg = int(p.pad_beg)
        self.pad_end = int(p.pad_end)
        if self.pad_beg > 0:
            raise self.error("only non-positive padding (cropping) is supported",
                             field=F + "pad_beg")
        if self.pad_end > 0:
            raise self.error("only non-positive padding (cropping) is supported",
                             field=F + "pad_end")
        self.p = p
        self.has_shrink = p.HasField("shrink_factor")
        self.has_zoom = p.HasField("zoom_factor")
        self.has_size = p.HasField("height") and p.HasField("width")
        if len(bottom_shapes) > 1 and (self.has_shrink or self.has_zoom or p.HasField("height")
                                       or p.HasField("width")):
            raise self.error("a second bottom cannot be combined with shrink, zoom, height or "
                             "width (ambiguous)", field=F + "zoom_factor")
        if len(bottom_shapes) < 2 and not (self.has_shrink or self.has_zoom or self.has_size):
            raise self.error("give zoom_factor, shrink_factor, or height and width",
                             field=F + "zoom_factor")
        if self.has_shrink and p.shrink_factor < 1:
            raise self.error("shrink factor must be positive", field=F + "shrink_factor")
        if self.has_zoom and p.zoom_factor < 1:
            raise self.error("zoom factor must be positive", field=F + "zoom_factor")
        self._cache = {}
        if bottom_shapes:
            self.output_shapes(bottom_shapes)

    def _sizes(self, shapes):
        hin, win = _hw(shapes[0])
        he = hin + self.pad_beg + self.pad_end
        we = win + self.pad_beg + self.pad_end
        p = self.p
        if len(shapes) > 1:
            ho, wo = _hw(shapes[1])
        elif self.has_shrink and not self.has_zoom:
            ho, wo = (he - 1) // p.shrink_factor + 1, (we - 1) // p.shrink_factor + 1
        elif self.has_zoom and not self.has_shrink:
            ho, wo = he + (he - 1) * (p.zoom_factor - 1), we + (we - 1) * (p.zoom_factor - 1)
        elif self.has_size:
            ho, wo = int(p.height), int(p.width)
        else:
            ho, wo = (he - 1) // p.shrink_factor + 1, (we - 1) // p.shrink_factor + 1
            ho, wo = ho + (ho - 1) * (p.zoom_factor - 1), wo + (wo - 1) * (p.zoom_factor - 1)
        if he <= 0 or we <= 0:
            raise self.error("cropped input size must be positive", field="interp_param.pad_end")
        if ho <= 0 or wo <= 0:
            raise self.error("output size must be positive", field="interp_param.height")
        return he, we, ho, wo

    def output_shapes(self, bottom_shapes):
        s = bottom_shapes[0]
        _, _, ho, wo = self._sizes(bottom_shapes)
        return [(s[0], s[1], ho, wo)]

    @staticmethod
    def _axis(n1, n2):
        f32 = np.float32
        r = f32(f32(n1 - 1) / f32(n2 - 1)) if n2 > 1 else f32(0)
        pos = (r * np.arange(n2, dtype=np.float32)).astype(np.float32)
        i0 = pos.astype(np.int64)
        step = (i0 < n1 - 1).astype(np.int64)
        l1 = (pos - i0.astype(np.float32)).astype(np.float32)
        l0 = (f32(1) - l1).astype(np.float32)
        return i0, i0 + step, l0, l1

    def _tables(self, he, we, ho, wo, device, dtype):
        key = (he, we, ho, wo, device, dtype)
        t = self._cache.get(key)
        if t is None:
            h0, h1, hl0, hl1 = self._axis(he, ho)
            w0, w1, wl0, wl1 = self._axis(we, wo)
            T = lambda a, dt=None: torch.from_numpy(a).to(device=device, dtype=dt or  # noqa
                                                          torch.int64)
            t = (T(h0), T(h1), T(hl0, dtype).view(-1, 1), T(hl1, dtype).view(-1, 1),
                 T(w0), T(w1), T(wl0, dtype), T(wl1, dtype))
            self._cache[key] = t
        return t

    def run(self, bottoms, params):
        x = bottoms[0]
        he, we, ho, wo = self._sizes([tuple(b.shape) for b in bottoms])
        x4 = x.reshape(x.shape[0], x.shape[1], *_hw(x.shape))
        c0 = -self.pad_beg
        x4 = x4[:, :, c0:c0 + he, c0:c0 + we]
        if (he, we) == (ho, wo):
            return [x4.contiguous()]
        h0, h1, hl0, hl1, w0, w1, wl0, wl1 = self._tables(he, we, ho, wo, x.device, x.dtype)
        top_rows = x4.index_select(2, h0)
        bot_rows = x4.index_select(2, h1)
        a = top_rows.index_select(3, w0)
        b = top_rows.index_select(3, w1)
        c = bot_rows.index_select(3, w0)
        d = bot_rows.index_select(3, w1)
        y = hl0 * (wl0 * a + wl1 * b) + hl1 * (wl0 * c + wl1 * d)
        return [y]


@register_layer("Upsample")
class UpsampleLayer(CaffeLayer):
    """SegNet's max-unpooling: bottom[0] values go to the positions the mask
    (the max-pooling argmax top, h*W+w) names; the rest of the top is 0."""
    num_bottoms = (2, 2)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.upsample_param
        F = "upsample_param."
        self.fixed = None
        if p.HasField("upsample_h") and p.HasField("upsample_w"):
            if p.upsample_h <= 1 or p.upsample_w <= 1:
                raise self.error("upsample_h and upsample_w must be > 1", field=F + "upsample_h")
            self.fixed = (int(p.upsample_h), int(p.upsample_w))
        else:
            if p.HasField("scale_h") != p.HasField("scale_w"):
                raise self.error("give both scale_h and scale_w", field=F + "scale_h")
            if p.HasField("scale_h"):
                if p.HasField("scale"):
                    raise self.error("give scale OR scale_h and scale_w", field=F + "scale")
                self.scale_h, self.scale_w = int(p.scale_h), int(p.scale_w)
            else:
                self.scale_h = self.scale_w = int(p.scale)
            if self.scale_h <= 1 or self.scale_w <= 1:
                raise self.error("scale must be > 1", field=F + "scale")
            self.pad_h, self.pad_w = int(bool(p.pad_out_h)), int(bool(p.pad_out_w))
            if self.pad_h and self.scale_h != 2:
                raise self.error("output height padding compensation requires scale_h == 2",
                                 field=F + "pad_out_h")
            if self.pad_w and self.scale_w != 2:
                raise self.error("output width padding compensation requires scale_w == 2",
                                 field=F + "pad_out_w")
        if len(bottom_shapes) == 2:
            a, m = bottom_shapes
            if len(a) != 4 or len(m) != 4:
                raise self.error("bottom and mask must have 4 axes (num, channels, height, "
                                 "width)")
            if tuple(a) != tuple(m):
                raise self.error("bottom shape %s and mask shape %s differ" % (tuple(a),
                                                                              tuple(m)))

    def _out_hw(self, shape):
        if self.fixed:
            return self.fixed
        return (shape[2] * self.scale_h - self.pad_h, shape[3] * self.scale_w - self.pad_w)

    def output_shapes(self, bottom_shapes):
        s = bottom_shapes[0]
        return [(s[0], s[1]) + tuple(self._out_hw(s))]

    def run(self, bottoms, params):
        x, mask = bottoms
        n, c = x.shape[0], x.shape[1]
        ho, wo = self._out_hw(x.shape)
        idx = mask.detach().reshape(n, c, -1).to(torch.int64)
        if idx.numel() and bool((idx >= ho * wo).any()):
            raise self.error("upsample top index out of range - check scale settings match "
                             "input pooling layer's downsample setup")
        top = x.new_zeros((n, c, ho * wo))
        top = top.scatter(2, idx, x.reshape(n, c, -1))
        return [top.view(n, c, ho, wo)]
