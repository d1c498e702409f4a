"""DetectionEvaluate, the SSD fork's per-batch detection bookkeeping
(``detection_evaluate_layer.cpp``): true/false positives per detection, which
the solver's ``eval_type: "detection"`` turns into mAP (caffe/detection_eval.py).

Bottoms: DetectionOutput rows ``1 x 1 x D x 7`` and AnnotatedData labels
``1 x 1 x G x 8``.  Top ``1 x 1 x (classes + valid detections) x 5``: first
``[-1, class, num_pos, -1, -1]`` per non-background class, then per image and
label (ascending) the detections by descending score as
``[image, label, score, tp, fp]``.
"""
import numpy as np
import torch

from .base import CaffeLayer
from .registry import register_layer

WARP, FIT_SMALL_SIZE, FIT_LARGE_SIZE_AND_PAD = 1, 2, 3


class _Box:
    """A NormalizedBBox: coordinates, the size the fork stores, flags."""
    __slots__ = ("b", "size", "score", "difficult")

    def __init__(self, b, score=0.0, difficult=False, size=None):
        self.b = [float(np.float32(v)) for v in b]
        self.score = float(score)
        self.difficult = bool(difficult)
        self.size = _size(self.b, True) if size is None else size


def _size(b, normalized):
    if b[2] < b[0] or b[3] < b[1]:
        return 0.0
    w, h = b[2] - b[0], b[3] - b[1]
    return w * h if normalized else (w + 1) * (h + 1)


def _clip(box, h=1.0, w=1.0):
    b = box.b
    out = [max(min(b[0], w), 0.0), max(min(b[1], h), 0.0),
           max(min(b[2], w), 0.0), max(min(b[3], h), 0.0)]
    return _Box(out, box.score, box.difficult)


def _scale(box, h, w):
    b = box.b
    out = [b[0] * w, b[1] * h, b[2] * w, b[3] * h]
    normalized = not (w > 1 or h > 1)
    return _Box(out, box.score, box.difficult, _size(out, normalized))


def _project(src, box):
    """ProjectBBox (the fork ignores whether it succeeded): box in src's frame, clipped."""
    s, b = src, box.b
    if b[0] >= s[2] or b[2] <= s[0] or b[1] >= s[3] or b[3] <= s[1]:
        return box
    sw, sh = s[2] - s[0], s[3] - s[1]
    out = [(b[0] - s[0]) / sw, (b[1] - s[1]) / sh, (b[2] - s[0]) / sw, (b[3] - s[1]) / sh]
    return _clip(_Box(out, box.score, box.difficult))


def output_bbox(box, img_size, resize):
    """OutputBBox: a normalized box in pixels of the original image."""
    h, w = img_size
    if resize is not None and resize.resize_mode:
        mode = int(resize.resize_mode)
        rh, rw = float(resize.height), float(resize.width)
        if mode == WARP:
            return _scale(_clip(box), h, w)
        if mode == FIT_LARGE_SIZE_AND_PAD:
            aspect, raspect = w / h, rw / rh
            if aspect > raspect:
                pad = (rh - rw / aspect) / 2
                src = [0.0, pad / rh, 1.0, 1.0 - pad / rh]
            else:
                pad = (rw - rh * aspect) / 2
                src = [pad / rw, 0.0, 1.0 - pad / rw, 1.0]
            return _scale(_clip(_project(src, box)), h, w)
        if mode == FIT_SMALL_SIZE:
            if resize.height_scale == 0 or resize.width_scale == 0:
                return _scale(_clip(box), h, w)
            return _clip(_scale(box, resize.height_scale, resize.width_scale), h, w)
    return _scale(_clip(box), h, w)


def jaccard(a, b, normalized=True):
    """JaccardOverlap of two _Box (the fork's NormalizedBBox form)."""
    x, y = a.b, b.b
    if y[0] > x[2] or y[2] < x[0] or y[1] > x[3] or y[3] < x[1]:
        return 0.0
    iw = min(x[2], y[2]) - max(x[0], y[0])
    ih = min(x[3], y[3]) - max(x[1], y[1])
    if not normalized:
        iw, ih = iw + 1, ih + 1
    if iw > 0 and ih > 0:
        inter = np.float32(iw * ih)
        return float(inter / (np.float32(a.size) + np.float32(b.size) - inter))
    return 0.0


@register_layer("DetectionEvaluate")
class DetectionEvaluateLayer(CaffeLayer):
    num_bottoms = (2, 2)
    num_tops = (1, 1)

    def allow_force_backward(self, bottom_index):
        return False

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.detection_evaluate_param
        f = "detection_evaluate_param."
        if not p.HasField("num_classes"):
            raise self.error("must provide num_classes", field=f + "num_classes")
        self.num_classes = int(p.num_classes)
        self.bg = int(p.background_label_id)
        self.overlap_threshold = float(np.float32(p.overlap_threshold))
        if not self.overlap_threshold > 0:
            raise self.error("overlap_threshold must be > 0", field=f + "overlap_threshold")
        self.evaluate_difficult = bool(p.evaluate_difficult_gt)
        self.sizes = []
        if p.HasField("name_size_file"):
            try:
                with open(p.name_size_file) as fh:
                    toks = fh.read().split()
            except OSError as e:
                raise self.error("failed to open name size file %r: %s"
                                 % (p.name_size_file, e), field=f + "name_size_file") from e
            for k in range(0, len(toks) - 2, 3):
                try:
                    self.sizes.append((int(toks[k + 1]), int(toks[k + 2])))
                except ValueError:
                    break
        self.resize = p.resize_param if p.HasField("resize_param") else None
        self.count = 0
        for i, (s, w) in enumerate(zip(bottom_shapes, (7, 8))):
            if len(s) != 4 or s[0] != 1 or s[1] != 1 or s[3] != w:
                raise self.error("bottom %d must be 1 x 1 x N x %d, got %s" % (i, w, tuple(s)),
                                 field="bottom")

    def output_shapes(self, bottom_shapes):
        pos = self.num_classes if self.bg == -1 else self.num_classes - 1
        return [(1, 1, pos, 5)]

    def evaluate(self, det, gt):
        """NumPy rows in, (K, 5) float32 rows out; advances the name-size cursor."""
        dets = {}
        for r in det.reshape(-1, 7):
            item = int(r[0])
            if item == -1:
                continue
            label = int(r[1])
            if label == self.bg:
                raise self.error("found background label %d in the detection results" % label)
            dets.setdefault(item, {}).setdefault(label, []).append(_Box(r[3:7], score=r[2]))
        gts = {}
        for r in gt.reshape(-1, 8):
            item = int(r[0])
            if item == -1:
                break   # this reader stops at the first -1 row (MultiBoxLoss skips it)
            label = int(r[1])
            if label == self.bg:
                raise self.error("found background label %d in the dataset" % label)
            gts.setdefault(item, {}).setdefault(label, []).append(
                _Box(r[3:7], difficult=r[7] != 0))
        num_pos = {}
        for labels in gts.values():
            for label, boxes in labels.items():
                n = len(boxes) if self.evaluate_difficult else \
                    sum(1 for b in boxes if not b.difficult)
                num_pos[label] = num_pos.get(label, 0) + n
        rows = [[-1, c, num_pos.get(c, 0), -1, -1] for c in range(self.num_classes)
                if c != self.bg]
        normalized = not self.sizes
        for item in sorted(dets):
            labels = gts.get(item)
            for label in sorted(dets[item]):
                if label == -1:   # DetectionOutput's "no detection" row
                    continue
                boxes = dets[item][label]
                if labels is None or label not in labels:
                    rows += [[item, label, b.score, 0, 1] for b in boxes]
                    continue
                gtb = labels[label]
                if not normalized:
                    size = self.sizes[self.count]
                    gtb = [output_bbox(g, size, self.resize) for g in gtb]
                visited = [False] * len(gtb)
                for b in sorted(boxes, key=lambda x: -x.score):
                    if not normalized:
                        b = output_bbox(b, self.sizes[self.count], self.resize)
                    best, jmax = -1.0, -1
                    for j, g in enumerate(gtb):
                        o = jaccard(b, g, normalized)
                        if o > best:
                            best, jmax = o, j
                    tp, fp = 0, 1
                    if best >= self.overlap_threshold:
                        if self.evaluate_difficult or not gtb[jmax].difficult:
                            tp, fp = (0, 1) if visited[jmax] else (1, 0)
                            visited[jmax] = True
                        else:
                            tp, fp = 0, 0   # matched a difficult gt: ignored
                    rows.append([item, label, b.score, tp, fp])
            if self.sizes:
                self.count = (self.count + 1) % len(self.sizes)
        return np.array(rows, dtype=np.float32).reshape(-1, 5)

    def run(self, bottoms, params):
        f = lambda t: t.detach().to("cpu", torch.float32).numpy()  # noqa: E731
        rows = self.evaluate(f(bottoms[0]), f(bottoms[1]))
        return [torch.from_numpy(rows).to(bottoms[0].device).view(1, 1, -1, 5)]
