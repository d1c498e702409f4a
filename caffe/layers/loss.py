"""Loss layers and Accuracy, with Caffe's exact forward and backward.

Every loss writes a 0-d top and, in backward, scales its bottom diff by the
top's diff (the loss weight), the way Caffe's ``Backward_cpu`` does.  Where
Caffe's backward differs from the true gradient of its forward (clamped logs,
ignored labels, the normaliser, ContrastiveLoss's ``dist + 1e-4``) the layer
uses a ``torch.autograd.Function`` carrying Caffe's formula.

Labels are turned into integers by truncation toward zero (``static_cast<int>``).
"""
import math

import numpy as np
import torch

from .. import protoio
from ..proto import shipped as caffe_schema
from ._util import FLT_MIN, canonical_axis, count
from .base import CaffeLayer
from .registry import register_layer

LOG_THRESHOLD = 1e-20                          # kLOG_THRESHOLD in loss_layer.hpp

_MODES = caffe_schema().LossParameter.NormalizationMode   # same numbers in every fork
FULL, VALID, BATCH_SIZE, NONE = (_MODES.Value(n) for n in ("FULL", "VALID", "BATCH_SIZE", "NONE"))
_MODE_NAMES = {v: n for n, v in _MODES.items()}


def _labels_as_int(label):
    # static_cast<int>: truncation toward zero (what .to(int64) does as well)
    return label.detach().to(torch.int64)


def _normalizer(mode, outer, inner, valid_count):
    """Caffe's get_normalizer(), clamped to at least 1; ``valid_count`` a tensor."""
    if mode == FULL:
        return float(max(1, outer * inner))
    if mode == BATCH_SIZE:
        return float(max(1, outer))
    if mode == NONE:
        return 1.0
    if isinstance(valid_count, torch.Tensor):
        return valid_count.clamp(min=1)
    return float(max(1, valid_count))


class LossLayer(CaffeLayer):
    """Two bottoms (data, label), one 0-d top, labels take no gradient."""
    is_loss = True
    num_bottoms = (2, 2)
    num_tops = (1, 1)

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    def _check_first_dims(self, shapes):
        a, b = shapes[0], shapes[1]
        da = a[0] if len(a) else 1
        db = b[0] if len(b) else 1
        if da != db:
            raise self.error("the data and label should have the same first dimension "
                             "(bottom shapes %s and %s)" % (tuple(a), tuple(b)), field="bottom")

    def output_shapes(self, bottom_shapes):
        self._reshape(bottom_shapes)
        return [()]

    def _reshape(self, shapes):
        self._check_first_dims(shapes)


def _normalization_mode(layer, default, allow_legacy=True):
    lp = layer.layer_param.loss_param
    if lp.HasField("normalization"):
        mode = int(lp.normalization)
        if mode not in _MODE_NAMES:
            raise layer.error("unknown normalization mode %d" % mode,
                              field="loss_param.normalization")
        return mode
    if lp.HasField("normalize"):
        if not allow_legacy:
            raise layer.error('normalize is deprecated; use "normalization"',
                              field="loss_param.normalize")
        return VALID if lp.normalize else BATCH_SIZE
    return default


def _ignore_label(param):
    """``param.ignore_label`` as an int, or None where it is not set."""
    return int(param.ignore_label) if param.HasField("ignore_label") else None


def _split_ignored(lab, ignore):
    """(valid mask or None, labels with ignored ones replaced by 0 for indexing)."""
    if ignore is None:
        return None, lab
    valid = lab != ignore
    return valid, torch.where(valid, lab, torch.zeros_like(lab))


# ---------------------------------------------------------------------------
# SoftmaxWithLoss / InfogainLoss
# ---------------------------------------------------------------------------

class _SoftmaxLossFn(torch.autograd.Function):
    """loss = -sum log(max(p[label], FLT_MIN)) / normalizer, p = softmax(x)."""

    @staticmethod
    def forward(ctx, x, label, axis, outer, inner, ignore, mode):
        prob = torch.softmax(x, dim=axis)
        c = x.shape[axis]
        p3 = prob.reshape(outer, c, inner)
        lab = _labels_as_int(label).reshape(outer, 1, inner)
        valid, idx = _split_ignored(lab, ignore)
        picked = p3.gather(1, idx).clamp(min=FLT_MIN).log()
        if valid is not None:
            picked = picked * valid
            count = valid.sum().to(x.dtype)
        else:
            count = outer * inner
        norm = _normalizer(mode, outer, inner, count)
        loss = -picked.sum() / norm
        ctx.save_for_backward(prob, idx, valid if valid is not None else idx)
        ctx.has_valid = valid is not None
        ctx.norm = norm
        ctx.shape3 = (outer, c, inner)
        return loss, prob

    @staticmethod
    def backward(ctx, grad_loss, grad_prob):
        # Caffe ignores the diff of the optional prob top.
        prob, idx, valid = ctx.saved_tensors
        outer, c, inner = ctx.shape3
        g = prob.reshape(outer, c, inner).clone()
        g.scatter_add_(1, idx, torch.full(idx.shape, -1.0, dtype=g.dtype, device=g.device))
        if ctx.has_valid:
            g = g * valid
        g = g * (grad_loss / ctx.norm)
        return g.reshape(prob.shape), None, None, None, None, None, None


class _SoftmaxProbLoss(LossLayer):
    """A loss over softmax(bottom[0]) whose optional second top is that softmax."""
    num_tops = (1, 2)

    def output_shapes(self, bottom_shapes):
        self._reshape(bottom_shapes)
        return [()] + [tuple(bottom_shapes[0])] * (len(self.layer_param.top) > 1)

    def _tops(self, loss, prob):
        if len(self.layer_param.top) > 1:
            return [loss, prob]
        return [loss]

    def _label_geometry(self, shapes, axis_field):
        """(axis, outer, inner) of the prediction bottom, checking that the
        label bottom has one label per prediction (outer * inner of them)."""
        self._check_first_dims(shapes)
        s0 = shapes[0]
        axis = canonical_axis(self, self.axis_param, len(s0), axis_field)
        outer, inner = count(s0, 0, axis), count(s0, axis + 1)
        if outer * inner != count(shapes[1]):
            raise self.error(
                "number of labels must match number of predictions; with %s %d and "
                "prediction shape %s the label count must be %d, got %d (label shape %s)"
                % (axis_field, axis, tuple(s0), outer * inner, count(shapes[1]),
                   tuple(shapes[1])), field="bottom[1]")
        return axis, outer, inner


@register_layer("SoftmaxWithLoss")
class SoftmaxWithLossLayer(_SoftmaxProbLoss):
    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.ignore_label = _ignore_label(layer_param.loss_param)
        self.mode = _normalization_mode(self, VALID)
        self.axis_param = int(layer_param.softmax_param.axis)
        self._reshape(self.bottom_shapes)

    def _reshape(self, shapes):
        s0 = shapes[0]
        axis, outer, inner = self._label_geometry(shapes, "softmax_param.axis")
        self._geom = (tuple(s0), tuple(shapes[1]), axis, outer, inner)
        return self._geom

    def run(self, bottoms, params):
        x, label = bottoms[0], bottoms[1]
        g = self._geom
        if g[0] != tuple(x.shape) or g[1] != tuple(label.shape):
            g = self._reshape([tuple(x.shape), tuple(label.shape)])
        loss, prob = _SoftmaxLossFn.apply(x, label, g[2], g[3], g[4], self.ignore_label,
                                          self.mode)
        return self._tops(loss, prob)


class _InfogainLossFn(torch.autograd.Function):
    """loss = -sum_l H[label, l] log(max(p_l, 1e-20)) / normalizer."""

    @staticmethod
    def forward(ctx, x, label, H, axis, outer, inner, ignore, mode):
        prob = torch.softmax(x, dim=axis)
        c = x.shape[axis]
        p3 = prob.reshape(outer, c, inner)
        lab = _labels_as_int(label).reshape(outer, inner)
        H = H.detach().reshape(c, c).to(x.dtype)
        valid, idx = _split_ignored(lab, ignore)
        rows = H[idx].permute(0, 2, 1)                      # (outer, c, inner)
        terms = rows * p3.clamp(min=LOG_THRESHOLD).log()
        per_pos = terms.sum(1)                              # (outer, inner)
        if valid is not None:
            per_pos = per_pos * valid
            count = valid.sum().to(x.dtype)
        else:
            count = outer * inner
        norm = _normalizer(mode, outer, inner, count)
        loss = -per_pos.sum() / norm
        rowsum = H.sum(1)[idx].unsqueeze(1)                 # (outer, 1, inner)
        ctx.save_for_backward(prob, rows, rowsum, valid if valid is not None else idx)
        ctx.has_valid = valid is not None
        ctx.norm = norm
        ctx.shape3 = (outer, c, inner)
        return loss, prob

    @staticmethod
    def backward(ctx, grad_loss, grad_prob):
        prob, rows, rowsum, valid = ctx.saved_tensors
        outer, c, inner = ctx.shape3
        g = prob.reshape(outer, c, inner) * rowsum - rows
        if ctx.has_valid:
            g = g * valid.unsqueeze(1)
        g = g * (grad_loss / ctx.norm)
        return g.reshape(prob.shape), None, None, None, None, None, None, None


def _read_blobproto_file(layer, path, field):
    try:
        proto = protoio.read_binary(path, protoio.schema().BlobProto())
    except (OSError, protoio.CaffeFileError) as e:
        raise layer.error("cannot read %r: %s" % (path, e), field=field) from e
    if any(proto.HasField(k) for k in ("num", "channels", "height", "width")):
        shape = (proto.num, proto.channels, proto.height, proto.width)
    else:
        shape = tuple(proto.shape.dim)
    values = proto.double_data if len(proto.double_data) else proto.data
    if len(values) != count(shape):
        raise layer.error("%r holds %d values for shape %s" % (path, len(values), shape),
                          field=field)
    return torch.tensor(np.asarray(values, dtype=np.float32).reshape(shape))


@register_layer("InfogainLoss")
class InfogainLossLayer(_SoftmaxProbLoss):
    num_bottoms = (2, 3)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.ignore_label = _ignore_label(layer_param.loss_param)
        self.mode = _normalization_mode(self, VALID, allow_legacy=False)
        ip = layer_param.infogain_loss_param
        self.axis_param = int(ip.axis)
        self.infogain = None
        if len(self.bottom_shapes) < 3:
            if not ip.HasField("source"):
                raise self.error("the infogain matrix source must be specified (or given as "
                                 "a third bottom)", field="infogain_loss_param.source")
            self.infogain = _read_blobproto_file(self, ip.source, "infogain_loss_param.source")
        self._reshape(self.bottom_shapes)

    def _reshape(self, shapes):
        s0 = shapes[0]
        axis, outer, inner = self._label_geometry(shapes, "infogain_loss_param.axis")
        c = s0[axis]
        hcount = count(shapes[2]) if len(shapes) > 2 else self.infogain.numel()
        if hcount != c * c:
            raise self.error("the infogain matrix H must be %dx%d (%d values), got %d"
                             % (c, c, c * c, hcount),
                             field="bottom[2]" if len(shapes) > 2 else "infogain_loss_param.source")
        self._geom = (tuple(s0), tuple(shapes[1]), axis, outer, inner)
        return self._geom

    def run(self, bottoms, params):
        x, label = bottoms[0], bottoms[1]
        g = self._geom
        if g[0] != tuple(x.shape) or g[1] != tuple(label.shape):
            g = self._reshape([tuple(b.shape) for b in bottoms])
        if len(bottoms) > 2:
            H = bottoms[2]
        else:
            if self.infogain.device != x.device:
                self.infogain = self.infogain.to(x.device)
            H = self.infogain
        loss, prob = _InfogainLossFn.apply(x, label, H, g[2], g[3], g[4], self.ignore_label,
                                           self.mode)
        return self._tops(loss, prob)


# ---------------------------------------------------------------------------
# SigmoidCrossEntropyLoss
# ---------------------------------------------------------------------------

class _SigmoidXentFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, target, ignore, mode):
        t = target.detach().reshape(x.shape).to(x.dtype)
        pos = (x >= 0).to(x.dtype)
        # Caffe's stable form: x (t - [x>=0]) - log(1 + exp(x - 2x[x>=0]))
        elem = x * (t - pos) - torch.log1p(torch.exp(x - 2 * x * pos))
        outer = x.shape[0] if x.dim() else 1
        inner = x.numel() // outer if outer else 0
        if ignore is not None:
            valid = _labels_as_int(target).reshape(x.shape) != ignore
            elem = elem * valid
            count = valid.sum().to(x.dtype)
        else:
            valid = None
            count = x.numel()
        norm = _normalizer(mode, outer, inner, count)
        loss = -elem.sum() / norm
        ctx.save_for_backward(x, t, valid if valid is not None else t)
        ctx.has_valid = valid is not None
        ctx.norm = norm
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        x, t, valid = ctx.saved_tensors
        g = torch.sigmoid(x) - t
        if ctx.has_valid:
            g = g * valid
        return g * (grad_loss / ctx.norm), None, None, None


@register_layer("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLossLayer(LossLayer):
    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.ignore_label = _ignore_label(layer_param.loss_param)
        self.mode = _normalization_mode(self, BATCH_SIZE)
        self._reshape(self.bottom_shapes)

    def _reshape(self, shapes):
        self._check_first_dims(shapes)
        if count(shapes[0]) != count(shapes[1]):
            raise self.error("inputs must have the same count (bottom shapes %s and %s)"
                             % (tuple(shapes[0]), tuple(shapes[1])), field="bottom[1]")

    def run(self, bottoms, params):
        x, t = bottoms[0], bottoms[1]
        if x.numel() != t.numel():
            self._reshape([tuple(x.shape), tuple(t.shape)])
        return [_SigmoidXentFn.apply(x, t, self.ignore_label, self.mode)]


# ---------------------------------------------------------------------------
# EuclideanLoss
# ---------------------------------------------------------------------------

@register_layer("EuclideanLoss")
class EuclideanLossLayer(LossLayer):
    def allow_force_backward(self, bottom_index):
        return True

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self._reshape(self.bottom_shapes)

    def _reshape(self, shapes):
        self._check_first_dims(shapes)
        if count(shapes[0], 1) != count(shapes[1], 1):
            raise self.error("inputs must have the same dimension (bottom shapes %s and %s)"
                             % (tuple(shapes[0]), tuple(shapes[1])), field="bottom[1]")

    def run(self, bottoms, params):
        a, b = bottoms[0], bottoms[1]
        if a.numel() != b.numel():
            self._reshape([tuple(a.shape), tuple(b.shape)])
        num = a.shape[0] if a.dim() else 1
        d = a - b.reshape(a.shape)
        # the true gradient of this is Caffe's +-(a - b) * lw / num
        return [(d * d).sum() / num / 2]


# ---------------------------------------------------------------------------
# ContrastiveLoss
# ---------------------------------------------------------------------------

class _ContrastiveFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, sim, margin, legacy):
        num = a.shape[0]
        diff = (a - b).reshape(num, -1)
        dist_sq = (diff * diff).sum(1)
        similar = _labels_as_int(sim).reshape(num) != 0
        if legacy:
            dis = (margin - dist_sq).clamp(min=0)
        else:
            dis = (margin - dist_sq.sqrt()).clamp(min=0)
            dis = dis * dis
        loss = torch.where(similar, dist_sq, dis).sum() / num / 2
        ctx.save_for_backward(diff, dist_sq, similar)
        ctx.margin, ctx.legacy = margin, legacy
        ctx.shapes = (a.shape, b.shape)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        diff, dist_sq, similar = ctx.saved_tensors
        num = diff.shape[0]
        if ctx.legacy:
            mdist = ctx.margin - dist_sq
            coef_dis = -torch.ones_like(dist_sq)
        else:
            dist = dist_sq.sqrt()
            mdist = ctx.margin - dist
            coef_dis = -mdist / (dist + 1e-4)
        coef_dis = torch.where(mdist > 0, coef_dis, torch.zeros_like(coef_dis))
        coef = torch.where(similar, torch.ones_like(dist_sq), coef_dis)
        g = diff * coef.unsqueeze(1) * (grad_loss / num)
        ga = g.reshape(ctx.shapes[0]) if ctx.needs_input_grad[0] else None
        gb = (-g).reshape(ctx.shapes[1]) if ctx.needs_input_grad[1] else None
        return ga, gb, None, None, None


@register_layer("ContrastiveLoss")
class ContrastiveLossLayer(LossLayer):
    num_bottoms = (3, 3)

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.contrastive_loss_param
        self.margin = float(p.margin)
        self.legacy = bool(p.legacy_version)
        self._reshape(self.bottom_shapes)

    @staticmethod
    def _legacy_dim(shape, i):
        return shape[i] if i < len(shape) else 1

    def _reshape(self, shapes):
        self._check_first_dims(shapes)
        a, b, s = shapes[0], shapes[1], shapes[2]
        ld = self._legacy_dim
        if len(a) > 4 or len(b) > 4 or len(s) > 4:
            raise self.error("bottoms must have at most 4 axes (num, channels, 1, 1)",
                             field="bottom")
        if ld(a, 1) != ld(b, 1):
            raise self.error("bottom[0] and bottom[1] must have the same channels (%s vs %s)"
                             % (tuple(a), tuple(b)), field="bottom[1]")
        for name, sh in (("bottom[0]", a), ("bottom[1]", b)):
            if ld(sh, 2) != 1 or ld(sh, 3) != 1:
                raise self.error("%s must have height and width 1, got shape %s"
                                 % (name, tuple(sh)), field=name)
        if ld(s, 1) != 1 or ld(s, 2) != 1 or ld(s, 3) != 1:
            raise self.error("bottom[2] (similarity) must be (N, 1, 1, 1), got %s" % (tuple(s),),
                             field="bottom[2]")
        if count(b) != count(a) or count(s) != (a[0] if a else 1):
            raise self.error("bottom counts do not match (%s, %s, %s)"
                             % (tuple(a), tuple(b), tuple(s)), field="bottom")

    def run(self, bottoms, params):
        return [_ContrastiveFn.apply(bottoms[0], bottoms[1], bottoms[2], self.margin,
                                     self.legacy)]


# ---------------------------------------------------------------------------
# HingeLoss
# ---------------------------------------------------------------------------

class _HingeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, label, l2):
        num = x.shape[0]
        x2 = x.reshape(num, -1)
        lab = _labels_as_int(label).reshape(num, 1)
        sign = torch.ones_like(x2).scatter_(1, lab, -1.0)
        t = (1 + sign * x2).clamp(min=0)
        loss = ((t * t).sum() if l2 else t.sum()) / num
        ctx.save_for_backward(t, sign)
        ctx.l2 = l2
        ctx.shape = x.shape
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        t, sign = ctx.saved_tensors
        num = t.shape[0]
        if ctx.l2:
            g = t * sign * (grad_loss * 2 / num)
        else:
            g = torch.sign(t) * sign * (grad_loss / num)
        return g.reshape(ctx.shape), None, None


@register_layer("HingeLoss")
class HingeLossLayer(LossLayer):
    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        norm = int(layer_param.hinge_loss_param.norm)
        if norm not in (1, 2):
            raise self.error("unknown norm %d (L1 or L2)" % norm, field="hinge_loss_param.norm")
        self.l2 = norm == 2
        self._reshape(self.bottom_shapes)

    def _reshape(self, shapes):
        self._check_first_dims(shapes)
        num = shapes[0][0] if shapes[0] else 1
        if count(shapes[1]) != num:
            raise self.error("expected one label per sample (%d), got label shape %s"
                             % (num, tuple(shapes[1])), field="bottom[1]")

    def run(self, bottoms, params):
        return [_HingeFn.apply(bottoms[0], bottoms[1], self.l2)]


# ---------------------------------------------------------------------------
# MultinomialLogisticLoss
# ---------------------------------------------------------------------------

class _MultinomialFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, label):
        num = x.shape[0]
        x2 = x.reshape(num, -1)
        lab = _labels_as_int(label).reshape(num, 1)
        p = x2.gather(1, lab).clamp(min=LOG_THRESHOLD)
        loss = -p.log().sum() / num
        ctx.save_for_backward(p, lab)
        ctx.shape = x.shape
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        p, lab = ctx.saved_tensors
        num = p.shape[0]
        g = torch.zeros((num, int(math.prod(ctx.shape)) // num if num else 0),
                        dtype=p.dtype, device=p.device)
        g.scatter_(1, lab, -(grad_loss / num) / p)
        return g.reshape(ctx.shape), None


@register_layer("MultinomialLogisticLoss")
class MultinomialLogisticLossLayer(LossLayer):
    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self._reshape(self.bottom_shapes)

    def _reshape(self, shapes):
        self._check_first_dims(shapes)
        lab = shapes[1]
        if any((lab[i] if i < len(lab) else 1) != 1 for i in (1, 2, 3)) or len(lab) > 4:
            raise self.error("label must be (N,) or (N, 1, 1, 1), got %s" % (tuple(lab),),
                             field="bottom[1]")

    def run(self, bottoms, params):
        return [_MultinomialFn.apply(bottoms[0], bottoms[1])]


# ---------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------

@register_layer("Accuracy")
class AccuracyLayer(CaffeLayer):
    num_bottoms = (2, 2)
    num_tops = (1, 2)

    def allow_force_backward(self, bottom_index):
        # Caffe has no backward for Accuracy.
        return False

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        ap = layer_param.accuracy_param
        self.top_k = int(ap.top_k)
        self.axis_param = int(ap.axis)
        self.ignore_label = _ignore_label(ap)
        self._reshape(self.bottom_shapes)

    def _reshape(self, shapes):
        s0, s1 = shapes[0], shapes[1]
        nlab = count(s1)
        if nlab and self.top_k > count(s0) // nlab:
            raise self.error("top_k (%d) must be less than or equal to the number of classes "
                             "(%d)" % (self.top_k, count(s0) // nlab),
                             field="accuracy_param.top_k")
        axis = canonical_axis(self, self.axis_param, len(s0), "accuracy_param.axis")
        outer, inner = count(s0, 0, axis), count(s0, axis + 1)
        if outer * inner != nlab:
            raise self.error(
                "number of labels must match number of predictions; with label axis %d and "
                "prediction shape %s the label count must be %d, got %d"
                % (axis, tuple(s0), outer * inner, nlab), field="bottom[1]")
        self._geom = (tuple(s0), tuple(s1), axis, outer, inner, s0[axis])
        return self._geom

    def output_shapes(self, bottom_shapes):
        g = self._reshape(bottom_shapes)
        return [()] + [(g[5],)] * (len(self.layer_param.top) > 1)

    def run(self, bottoms, params):
        x, label = bottoms[0], bottoms[1]
        g = self._geom
        if g[0] != tuple(x.shape) or g[1] != tuple(label.shape):
            g = self._reshape([tuple(x.shape), tuple(label.shape)])
        _, _, axis, outer, inner, c = g
        with torch.no_grad():
            x3 = x.detach().reshape(outer, c, inner)
            lab = _labels_as_int(label).reshape(outer, 1, inner)
            if self.ignore_label is not None:
                valid = (lab != self.ignore_label).reshape(outer, inner)
                idx = torch.where(lab != self.ignore_label, lab, torch.zeros_like(lab))
            else:
                valid = None
                idx = lab
            true_score = x3.gather(1, idx)
            # the true class counts itself once among the ">=" scores
            better = (x3 >= true_score).sum(1) - 1
            correct = better < self.top_k
            if valid is not None:
                correct = correct & valid
                count = valid.sum()
            else:
                count = torch.tensor(outer * inner, device=x.device)
            acc = correct.sum().to(x.dtype)
            acc = torch.where(count > 0, acc / count.clamp(min=1).to(x.dtype),
                              torch.zeros((), dtype=x.dtype, device=x.device))
            tops = [acc]
            if len(self.layer_param.top) > 1:
                flat_idx = idx.reshape(-1)
                w = valid.reshape(-1).to(x.dtype) if valid is not None else \
                    torch.ones(flat_idx.shape, dtype=x.dtype, device=x.device)
                nums = torch.zeros(c, dtype=x.dtype, device=x.device).index_add_(0, flat_idx, w)
                hits = torch.zeros(c, dtype=x.dtype, device=x.device).index_add_(
                    0, flat_idx, correct.reshape(-1).to(x.dtype))
                per_class = torch.where(nums > 0, hits / nums.clamp(min=1),
                                        torch.zeros_like(nums))
                tops.append(per_class)
        return tops
