"""OICR's fork-only layers for torchcaffe, registered through ``caffe.modules``.

Importing this module registers:

* ``GlobalSumPooling`` -- caffemodel2pytorch's ``lambda param: function`` form
  (sum over the RoI axis, keeping it as size 1; autograd gives the broadcast
  backward the C++ layer has).
* ``MulticlassCrossEntropyLoss`` -- the same form returning an
  ``autograd.Function`` class, because OICR's backward is not the gradient of
  its forward: it carries an extra ``1/C`` factor.
* ``WeightedSoftmaxWithLoss`` -- the rich form (a ``CaffeLayer`` subclass,
  built as ``cls(layer_param, bottom_shapes, phase)``) since it reads
  ``loss_param``/``softmax_param``; normalised like OICR's GPU code.
* ``OICRLayer`` -- a ``caffe.Layer`` Python layer (Python 3, NumPy only).  It is
  registered under the class name, so the prototxt's ``type: "Python"``
  layers with ``python_param { module: 'oicr_layer.layer' layer: 'OICRLayer' }``
  run this class instead of OICR's Python 2 file.

``ROIPooling`` is torchcaffe's own (caffe-fast-rcnn semantics, CUDA kernel on
GPU).  Formulas: /work/shared/reference/fork_layers.md section 6 and OICR's
``lib/oicr_layer/layer.py``.
"""
import ast

import numpy as np
import torch

import caffe
from caffe.layers.base import CaffeLayer

FLT_MIN = float(np.finfo(np.float32).tiny)

# cfg.TRAIN.FG_THRESH in OICR's lib/fast_rcnn/config.py
FG_THRESH = 0.5


# ---------------------------------------------------------------------------
# GlobalSumPooling: top[k] = sum_i bottom[i, k]
# ---------------------------------------------------------------------------
def global_sum_pooling(param):
    return lambda pred: pred.sum(dim=0, keepdim=True)


# ---------------------------------------------------------------------------
# MulticlassCrossEntropyLoss
# ---------------------------------------------------------------------------
class MulticlassCrossEntropy(torch.autograd.Function):
    """loss = -sum_{n,c} [y log p' + (1-y) log(1-p')] / N with p' = clamp(p, 1e-10,
    1-1e-10) (in float32, so the upper bound is 1); the label is read as an int
    (0 picks the negative term), as OICR's GPU kernel does.
    dp = (p' - y) / (C p' (1 - p')) * loss_weight / N -- note the 1/C."""

    @staticmethod
    def forward(ctx, prob, labels):
        n, c = prob.shape[0], prob[0].numel()
        p = prob.clamp(1e-10, 1 - 1e-10)
        positive = labels.to(torch.int32) != 0
        terms = torch.where(positive, torch.log(p), torch.log(1 - p))
        ctx.save_for_backward(p, labels)
        ctx.nc = (n, c)
        return -terms.sum() / n

    @staticmethod
    def backward(ctx, grad):
        p, labels = ctx.saved_tensors
        n, c = ctx.nc
        dp = (p - labels) / (c * p * (1 - p)) * (grad / n)
        return dp, None


def multiclass_cross_entropy_loss(param):
    return MulticlassCrossEntropy


# ---------------------------------------------------------------------------
# WeightedSoftmaxWithLoss
# ---------------------------------------------------------------------------
_FULL, _VALID, _BATCH_SIZE, _NONE = 0, 1, 2, 3


class _WeightedSoftmaxLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, labels, weights, axis, ignore, mode):
        outer = int(np.prod(scores.shape[:axis]))
        inner = int(np.prod(scores.shape[axis + 1:]))
        k = scores.shape[axis]
        s = scores.reshape(outer, k, inner)
        prob = torch.softmax(s, dim=1)
        lab = labels.reshape(outer, inner).to(torch.int64)
        w = weights.reshape(outer, 1).expand(outer, inner)
        valid = torch.ones_like(lab, dtype=torch.bool) if ignore is None else lab != ignore
        safe = torch.where(valid, lab, torch.zeros_like(lab))
        picked = prob.gather(1, safe.unsqueeze(1)).squeeze(1)
        losses = -w * torch.log(picked.clamp_min(FLT_MIN))
        losses = torch.where(valid, losses, torch.zeros_like(losses))
        if mode == _FULL:
            norm = float(outer * inner)
        elif mode == _VALID:
            norm = float(valid.sum()) if ignore is not None else float(outer * inner)
        elif mode == _BATCH_SIZE:
            norm = float(outer)
        else:
            norm = 1.0
        norm = max(norm, 1.0)
        ctx.save_for_backward(prob, safe, w, valid)
        ctx.meta = (scores.shape, norm)
        return losses.sum() / norm

    @staticmethod
    def backward(ctx, grad):
        prob, safe, w, valid = ctx.saved_tensors
        shape, norm = ctx.meta
        d = prob.clone()
        d.scatter_add_(1, safe.unsqueeze(1), -torch.ones_like(prob[:, :1]))
        d = d * (w * valid).unsqueeze(1) * (grad / norm)
        return d.reshape(shape), None, None, None, None, None


class WeightedSoftmaxWithLoss(CaffeLayer):
    """Bottoms: scores (R, K), labels (R), per-RoI weights (R)."""
    num_bottoms = (3, 3)
    num_tops = (1, 2)
    is_loss = True

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        nd = len(bottom_shapes[0])
        axis = layer_param.softmax_param.axis
        self.axis = axis + nd if axis < 0 else axis
        lp = layer_param.loss_param
        self.ignore = lp.ignore_label if lp.HasField("ignore_label") else None
        if lp.HasField("normalization"):
            self.mode = int(lp.normalization)
        elif lp.HasField("normalize"):
            self.mode = _VALID if lp.normalize else _BATCH_SIZE
        else:
            self.mode = _VALID

    def output_shapes(self, bottom_shapes):
        shapes = [()]
        if len(self.layer_param.top) > 1:
            shapes.append(tuple(bottom_shapes[0]))
        return shapes

    def run(self, bottoms, params):
        scores, labels, weights = bottoms
        # checked per forward: at setup OICRLayer's tops are still 1-element
        outer = int(np.prod(scores.shape[:self.axis]))
        if weights.shape[0] != outer or labels.numel() != scores.numel() // scores.shape[self.axis]:
            raise self.error("labels and weights need one value per RoI (%d); got shapes %s "
                             "and %s" % (outer, list(labels.shape), list(weights.shape)))
        loss = _WeightedSoftmaxLoss.apply(scores, labels, weights, self.axis, self.ignore,
                                          self.mode)
        if len(self.layer_param.top) > 1:
            return [loss, torch.softmax(scores, dim=self.axis)]
        return [loss]


# ---------------------------------------------------------------------------
# OICRLayer (Python layer)
# ---------------------------------------------------------------------------
def bbox_overlaps(boxes, query):
    """IoU with Fast R-CNN's +1 pixel convention (utils.cython_bbox)."""
    boxes = boxes.astype(np.float64)
    query = query.astype(np.float64)
    iw = (np.minimum(boxes[:, None, 2], query[None, :, 2])
          - np.maximum(boxes[:, None, 0], query[None, :, 0]) + 1)
    ih = (np.minimum(boxes[:, None, 3], query[None, :, 3])
          - np.maximum(boxes[:, None, 1], query[None, :, 1]) + 1)
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_b = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    area_q = (query[:, 2] - query[:, 0] + 1) * (query[:, 3] - query[:, 1] + 1)
    union = area_b[:, None] + area_q[None, :] - inter
    return np.where(inter > 0, inter / union, 0.0)


def oicr_targets(boxes, cls_prob, im_labels, fg_thresh=FG_THRESH):
    """Per-RoI pseudo labels and loss weights from the previous stage's scores:
    for each class present in the image, its top-scoring RoI becomes a
    pseudo ground truth (and is then excluded for later classes); every RoI
    takes the class of the pseudo box it overlaps most (background below
    ``fg_thresh``) and that box's score as its weight."""
    cls_prob = np.array(cls_prob, dtype=np.float32, copy=True)
    num_images, num_classes = im_labels.shape
    if num_images != 1:
        raise ValueError("OICRLayer: batch size should be 1 (got %d images)" % num_images)
    gt_boxes, gt_classes, gt_scores = [], [], []
    for i in range(num_classes):
        if im_labels[0, i] == 1:
            j = int(np.argmax(cls_prob[:, i]))
            gt_boxes.append(boxes[j])
            gt_classes.append(i + 1)
            gt_scores.append(cls_prob[j, i])
            cls_prob[j, :] = 0
    n = boxes.shape[0]
    if not gt_boxes:
        return np.zeros(n, np.float32), np.zeros(n, np.float32)
    overlaps = bbox_overlaps(boxes, np.array(gt_boxes))
    assign = overlaps.argmax(axis=1)
    labels = np.array(gt_classes, np.float32)[assign]
    weights = np.array(gt_scores, np.float32)[assign]
    labels[overlaps.max(axis=1) < fg_thresh] = 0
    return labels, weights


class OICRLayer(caffe.Layer):
    """Bottoms: rois (R, 5), cls_prob (R, C or C+1), image labels (1, C).
    Tops: labels (R), cls_loss_weights (R).  ``param_str``: "'num_classes': 21".
    No gradient flows through it (as in OICR)."""

    def setup(self, bottom, top):
        if len(bottom) != 3:
            raise Exception("The number of bottoms should be 3!")
        if len(top) != 2:
            raise Exception("The number of tops should be 2!")
        if bottom[0].data.shape[0] != bottom[1].data.shape[0]:
            raise Exception("bottom[0].data.shape[0] must equal to bottom[1].data.shape[0]")
        params = ast.literal_eval("{%s}" % self.param_str) if self.param_str.strip() else {}
        if isinstance(params, set) or not isinstance(params, dict):
            raise Exception("OICRLayer: param_str must look like \"'num_classes': 21\"")
        self._num_classes = int(params["num_classes"])
        top[0].reshape(1)
        top[1].reshape(1)

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        boxes = bottom[0].data[:, 1:]
        cls_prob = bottom[1].data
        if cls_prob.shape[1] == self._num_classes:
            cls_prob = cls_prob[:, 1:]
        labels, weights = oicr_targets(boxes, cls_prob, bottom[2].data)
        top[0].reshape(*labels.shape)
        top[0].data[...] = labels
        top[1].reshape(*weights.shape)
        top[1].data[...] = weights

    def backward(self, top, propagate_down, bottom):
        pass


# ---------------------------------------------------------------------------
def register():
    """Register the OICR layers in ``caffe.modules`` (replacing earlier entries)."""
    caffe.modules["GlobalSumPooling"] = global_sum_pooling
    caffe.modules["MulticlassCrossEntropyLoss"] = multiclass_cross_entropy_loss
    caffe.modules["WeightedSoftmaxWithLoss"] = WeightedSoftmaxWithLoss
    caffe.modules["OICRLayer"] = lambda param: OICRLayer()


register()
