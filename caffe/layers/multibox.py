"""MultiBoxLoss, the SSD fork's training loss (``multibox_loss_layer.cpp``).

Bottoms: loc predictions ``N x (P*L*4)``, conf predictions ``N x (P*C)``,
PriorBox output ``1 x 2 x (P*4)``, AnnotatedData labels ``1 x 1 x G x 8``.
Matching, mining and encoding run batched in torch without gradient; the two
losses are then differentiable sums over the selected rows, so autograd
yields the fork's backward (its diff is the sub-losses' gradient scaled by
``top_diff / normalizer``).  The fork's quirks are kept and listed in LAYERS.md.
"""
import numpy as np
import torch
import torch.nn.functional as F

from . import bbox_util as bu
from .base import CaffeLayer
from .loss import FLT_MIN, VALID, _normalization_mode, _normalizer
from .registry import register_layer

L2, SMOOTH_L1 = 0, 1
SOFTMAX, LOGISTIC = 0, 1
BIPARTITE, PER_PREDICTION = 0, 1
NONE, MAX_NEGATIVE, HARD_EXAMPLE = 0, 1, 2
_LOG_FLT_MIN = float(np.log(np.float32(FLT_MIN)))


def _softmax_nll(logits, labels):
    """-log(max(p[label], FLT_MIN)) per row; gradient p - onehot as Caffe's."""
    nll = -torch.gather(F.log_softmax(logits, -1), -1, labels.unsqueeze(-1)).squeeze(-1)
    clamped = torch.clamp(nll, max=-_LOG_FLT_MIN)
    return nll + (clamped - nll).detach()


def _logistic_loss(logits, targets):
    """SigmoidCrossEntropyLoss's stable formula (targets may be any value)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def _loc_loss(diff, loc_type):
    """Per element: SmoothL1Loss (sigma 1) or half the squared error (EuclideanLoss)."""
    if loc_type == SMOOTH_L1:
        ad = diff.abs()
        return torch.where(ad < 1, 0.5 * diff * diff, ad - 0.5)
    return 0.5 * diff * diff


@register_layer("MultiBoxLoss")
class MultiBoxLossLayer(CaffeLayer):
    num_bottoms = (4, 4)
    num_tops = (1, 1)
    is_loss = True

    def allow_force_backward(self, bottom_index):
        return bottom_index < 2

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.multibox_loss_param
        f = "multibox_loss_param."
        if not p.HasField("num_classes"):
            raise self.error("must provide num_classes", field=f + "num_classes")
        self.num_classes = int(p.num_classes)
        if self.num_classes < 1:
            raise self.error("num_classes should not be less than 1", field=f + "num_classes")
        self.share_location = bool(p.share_location)
        self.loc_classes = 1 if self.share_location else self.num_classes
        self.bg = int(p.background_label_id)
        self.use_difficult = bool(p.use_difficult_gt)
        self.mining = int(p.mining_type)
        if p.HasField("do_neg_mining") and bool(p.do_neg_mining) != (self.mining != NONE):
            raise self.error("do_neg_mining (deprecated) contradicts mining_type",
                             field=f + "do_neg_mining")
        if self.mining != NONE and not self.share_location:
            raise self.error("negative mining needs share_location true (as the fork)",
                             field=f + "mining_type")
        self.mode = _normalization_mode(self, VALID)
        self.loc_weight = float(p.loc_weight)
        self.loc_type = int(p.loc_loss_type)
        self.conf_type = int(p.conf_loss_type)
        if self.loc_type not in (L2, SMOOTH_L1):
            raise self.error("unknown loc_loss_type %d" % self.loc_type, field=f + "loc_loss_type")
        if self.conf_type not in (SOFTMAX, LOGISTIC):
            raise self.error("unknown conf_loss_type %d" % self.conf_type,
                             field=f + "conf_loss_type")
        if self.conf_type == SOFTMAX and not 0 <= self.bg < self.num_classes:
            raise self.error("background_label_id should be within [0, num_classes) for "
                             "Softmax", field=f + "background_label_id")
        self.match_type = int(p.match_type)
        if self.match_type not in (BIPARTITE, PER_PREDICTION):
            raise self.error("unknown match_type %d" % self.match_type, field=f + "match_type")
        self.overlap_threshold = float(np.float32(p.overlap_threshold))
        self.use_prior_for_matching = bool(p.use_prior_for_matching)
        self.neg_pos_ratio = float(np.float32(p.neg_pos_ratio))
        self.neg_overlap = float(np.float32(p.neg_overlap))
        self.code_type = int(p.code_type)
        if self.code_type not in bu.CODE_TYPES:
            raise self.error("unknown code_type %d" % self.code_type, field=f + "code_type")
        self.var_in_target = bool(p.encode_variance_in_target)
        self.map_object_to_agnostic = bool(p.map_object_to_agnostic)
        if self.map_object_to_agnostic and self.num_classes != (2 if self.bg >= 0 else 1):
            raise self.error("map_object_to_agnostic needs num_classes 2 (with a background)",
                             field=f + "map_object_to_agnostic")
        self.ignore_cross = bool(p.ignore_cross_boundary_bbox)
        self.bp_inside = bool(p.bp_inside)
        self.sample_size = int(p.sample_size)
        if self.mining == HARD_EXAMPLE and self.sample_size <= 0:
            raise self.error("sample_size must be > 0 for HARD_EXAMPLE", field=f + "sample_size")
        self.has_nms = p.HasField("nms_param")
        self.nms_threshold = float(p.nms_param.nms_threshold) if self.has_nms else 0.0
        self.nms_top_k = int(p.nms_param.top_k) if self.has_nms else -1
        self.use_prior_for_nms = bool(p.use_prior_for_nms)
        pd = list(layer_param.propagate_down)
        # The fork adds propagate_down [true, true, false, false] when none is
        # given and leaves a sub-loss out of the top when its flag is false.
        self.use_loc = bool(pd[0]) if len(pd) > 0 else True
        self.use_conf = bool(pd[1]) if len(pd) > 1 else True
        if len(bottom_shapes) == 4:
            self._check_shapes(bottom_shapes)

    def _check_shapes(self, shapes):
        loc, conf, prior, label = shapes
        cnt = lambda s: int(np.prod(s[1:])) if len(s) > 1 else 1  # noqa: E731
        if loc[0] != conf[0]:
            raise self.error("loc and conf bottoms have different batch sizes (%d vs %d)"
                             % (loc[0], conf[0]), field="bottom")
        h = prior[2] if len(prior) > 2 else 1
        self.num_priors = int(h) // 4
        if self.num_priors * self.loc_classes * 4 != cnt(loc):
            raise self.error("number of priors must match number of location predictions "
                             "(%d priors x %d loc classes x 4, loc has %d values per image)"
                             % (self.num_priors, self.loc_classes, cnt(loc)), field="bottom")
        if self.num_priors * self.num_classes != cnt(conf):
            raise self.error("number of priors must match number of confidence predictions "
                             "(%d priors x %d classes, conf has %d values per image)"
                             % (self.num_priors, self.num_classes, cnt(conf)),
                             field="multibox_loss_param.num_classes")
        if int(np.prod(label)) % 8 or (len(label) and label[-1] != 8):
            raise self.error("label bottom must hold rows of 8 values, got shape %s"
                             % (tuple(label),), field="bottom")

    def output_shapes(self, bottom_shapes):
        self._check_shapes(bottom_shapes)
        return [()]

    # -- matching and mining (no gradient) ----------------------------------
    def _gt(self, label, num):
        rows = label.detach().reshape(-1, 8)
        used = rows[:, 0] != -1
        labels = rows[used, 1].to(torch.int64)
        if bool((labels == self.bg).any()):
            raise self.error("found background label %d in the dataset" % self.bg,
                             field="multibox_loss_param.background_label_id")
        if self.conf_type == SOFTMAX and bool(((labels < 0) | (labels >= self.num_classes)).any()):
            raise self.error("ground-truth label %d outside [0, %d)"
                             % (int(labels[(labels < 0) | (labels >= self.num_classes)][0]),
                                self.num_classes), field="multibox_loss_param.num_classes")
        return bu.GroundTruth(rows, num, keep_difficult=self.use_difficult)

    def _matches(self, gt, pboxes, pvars, loc):
        """(N, P, L) gt index per loc class (-1 none, -2 ignored) and (N, P, L) overlaps."""
        n, p = loc.shape[0], pboxes.shape[0]
        lc = self.loc_classes
        idx = torch.full((n, p, lc), -1, dtype=torch.int64, device=loc.device)
        ovl = torch.zeros(n, p, lc, device=loc.device)
        if gt.boxes.shape[1] == 0:
            return idx, ovl
        has = gt.present.view(n, 1)
        if self.use_prior_for_matching:
            ign = bu.cross_boundary(pboxes).unsqueeze(0).expand(n, -1) if self.ignore_cross \
                else None
            m, o = bu.match(pboxes, gt.boxes, gt.valid, self.match_type,
                            self.overlap_threshold, ign)
            m = torch.where(has, m, torch.full_like(m, -1))
            o = torch.where(has, o, torch.zeros_like(o))
            if self.share_location:
                return m.unsqueeze(-1), o.unsqueeze(-1)
            lab = torch.gather(gt.labels, 1, m.clamp(min=0))
            for c in range(lc):
                if c == self.bg:
                    continue
                idx[:, :, c] = torch.where((m > -1) & (lab == c), m, torch.full_like(m, -1))
                ovl[:, :, c] = o
            return idx, ovl
        for c in range(lc):
            if not self.share_location and c == self.bg:
                continue
            boxes = bu.decode(pboxes, pvars, loc[:, :, c], self.code_type, self.var_in_target)
            mask = gt.valid if self.share_location else gt.valid & (gt.labels == c)
            ign = bu.cross_boundary(boxes) if self.ignore_cross else None
            m, o = bu.match(boxes, gt.boxes, mask, self.match_type, self.overlap_threshold, ign)
            idx[:, :, c] = torch.where(has, m, torch.full_like(m, -1))
            ovl[:, :, c] = torch.where(has, o, torch.zeros_like(o))
        return idx, ovl

    def _prior_conf_loss(self, conf, gt, m):
        """ComputeConfLoss: per prior, the loss toward its matched label or background."""
        lab = torch.where(m > -1, torch.gather(gt.labels, 1, m.clamp(min=0)),
                          torch.full_like(m, self.bg))
        if self.conf_type == SOFTMAX:
            return _softmax_nll(conf, lab)
        tgt = torch.zeros_like(conf)
        valid = (lab >= 0) & (lab < self.num_classes)
        tgt[valid] = F.one_hot(lab[valid], self.num_classes).to(conf.dtype)
        return _logistic_loss(conf, tgt).sum(-1)

    def _mine(self, conf, loc_loss_prior, gt, m, ovl, pboxes, pvars, loc):
        """MineHardExamples (share_location): returns (new match (N, P), negatives (N, P))."""
        n, p = m.shape
        has = gt.present.view(n, 1)
        loss = self._prior_conf_loss(conf, gt, m) + loc_loss_prior
        if self.mining == MAX_NEGATIVE:
            elig = (m == -1) & (ovl < self.neg_overlap) & has
            num_pos = (m > -1).sum(1)
            ratio = np.float32(self.neg_pos_ratio)
            cap = torch.tensor([int(np.float32(k) * ratio) for k in num_pos.tolist()],
                               device=m.device)
            num_sel = torch.minimum(cap, elig.sum(1))
        else:
            elig = has.expand(n, p)
            num_sel = torch.minimum(torch.full((n,), self.sample_size, device=m.device),
                                    elig.sum(1))
        sel = torch.zeros_like(elig)
        if self.has_nms and self.nms_threshold > 0:
            for i in range(n):
                cand = torch.nonzero(elig[i]).view(-1)
                if cand.numel() == 0:
                    continue
                if self.use_prior_for_nms:
                    boxes = pboxes[cand]
                else:
                    boxes = bu.decode(pboxes, pvars, loc[i, :, 0], self.code_type,
                                      self.var_in_target)[cand]
                kept = bu.nms_by_score(boxes.cpu().numpy(), loss[i, cand].cpu().numpy(),
                                       self.nms_threshold, self.nms_top_k)
                kept = kept[:int(num_sel[i])]
                sel[i, cand[kept]] = True
        else:
            masked = torch.where(elig, loss, torch.full_like(loss, -float("inf")))
            order = torch.sort(masked, dim=1, descending=True, stable=True).indices
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(p, device=m.device).expand(n, p))
            sel = elig & (rank < num_sel.view(n, 1))
        neg = (m == -1) & sel
        if self.mining == HARD_EXAMPLE:
            m = torch.where((m > -1) & ~sel, torch.full_like(m, -1), m)
        return m, neg

    # -- the loss -------------------------------------------------------------
    def _encode_matched(self, loc, gt, idx, pboxes, pvars):
        """Loc prediction rows and encoded targets of every match: (K, 4) each,
        plus the (K,) image and prior indices."""
        i, j, c = torch.nonzero(idx > -1, as_tuple=True)
        pred = loc[i, j, c]
        box = gt.boxes[i, idx[i, j, c]]
        pr, pv = pboxes[j], pvars[j]
        target = bu.encode(pr, pv, box, self.code_type, self.var_in_target)
        if self.bp_inside:
            mb = pr if self.use_prior_for_matching else \
                bu.decode(pr, pv, pred.detach(), self.code_type, self.var_in_target)
            out = (mb < 0) | (mb > 1)
            pred = torch.where(out, target, pred)
        if self.var_in_target:
            # The fork divides both by the variance in a copy and copies the
            # copy's diff straight back: the value is scaled, the gradient not.
            pred = pred + (pred / pv - pred).detach()
            target = target / pv
        return pred, target, i, j

    def run(self, bottoms, params):
        loc_b, conf_b, prior_b, label_b = bottoms
        n = loc_b.shape[0]
        p = prior_b.shape[2] // 4 if prior_b.dim() > 2 else prior_b.numel() // 8
        c = self.num_classes
        loc = loc_b.reshape(n, p, self.loc_classes, 4)
        conf = conf_b.reshape(n, p, c)
        prior = prior_b.detach().reshape(-1)
        pboxes = prior[:p * 4].reshape(p, 4).float()
        pvars = prior[p * 4:p * 8].reshape(p, 4).float()
        with torch.no_grad():
            gt = self._gt(label_b, n)
            idx, ovl = self._matches(gt, pboxes, pvars, loc.detach())
            neg = None
            if self.mining != NONE:
                m = idx[:, :, 0]
                loc_loss_prior = torch.zeros(n, p, device=loc.device)
                if self.mining == HARD_EXAMPLE and bool((m > -1).any()):
                    pr, tg, ii, jj = self._encode_matched(loc.detach(), gt, idx, pboxes, pvars)
                    loc_loss_prior[ii, jj] = _loc_loss(pr - tg, self.loc_type).sum(-1)
                m, neg = self._mine(conf.detach(), loc_loss_prior, gt, m, ovl[:, :, 0],
                                    pboxes, pvars, loc.detach())
                idx = m.unsqueeze(-1)
        num_matches = int((idx > -1).sum())
        norm = _normalizer(self.mode, n, p, num_matches)
        total = loc_b.new_zeros(())
        if self.use_loc and num_matches >= 1:
            pred, target, _, _ = self._encode_matched(loc, gt, idx, pboxes, pvars)
            loc_sum = _loc_loss(pred - target.detach(), self.loc_type).sum()
            total = total + self.loc_weight * loc_sum / norm
        if self.use_conf:
            conf_sum = self._conf_loss(conf, gt, idx, neg)
            if conf_sum is not None:
                total = total + conf_sum / norm
        return [total]

    def _positive_labels(self, gt, idx):
        i, j, c = torch.nonzero(idx > -1, as_tuple=True)
        lab = gt.labels[i, idx[i, j, c]]
        if self.map_object_to_agnostic:
            lab = torch.full_like(lab, self.bg + 1)
        return i, j, lab

    def _conf_loss(self, conf, gt, idx, neg):
        """EncodeConfPrediction + the conf sub-loss (sum, not normalized)."""
        n, p, c = conf.shape
        pi, pj, plab = self._positive_labels(gt, idx)
        if neg is not None:   # mined: positives then negatives
            ni, nj = torch.nonzero(neg, as_tuple=True)
            if pi.numel() + ni.numel() == 0:
                return None
            rows = torch.cat([conf[pi, pj], conf[ni, nj]], 0)
            if self.conf_type == SOFTMAX:
                labels = torch.cat([plab, torch.full_like(ni, self.bg)])
                return _softmax_nll(rows, labels).sum()
            tgt = torch.full_like(rows, float(self.bg))
            k = pi.numel()
            tgt[torch.arange(k, device=rows.device), plab] = 1.0
            if 0 <= self.bg < c:
                tgt[k:, self.bg] = 1.0
            return _logistic_loss(rows, tgt).sum()
        if n * p == 0:
            return None
        if self.conf_type == SOFTMAX:
            labels = torch.full((n, p), self.bg, dtype=torch.int64, device=conf.device)
            labels[pi, pj] = plab
            return _softmax_nll(conf, labels).sum()
        # LOGISTIC without mining: the fork steps its target pointer by P (not
        # P*C) per image, so image i's targets land at i*P + j*C + label.
        tgt = torch.full((n * p * c,), float(self.bg), dtype=conf.dtype, device=conf.device)
        tgt[pi * p + pj * c + plab] = 1.0
        return _logistic_loss(conf.reshape(-1), tgt).sum()
