"""Batched box arithmetic of the SSD fork (``util/bbox_util.cpp``) in torch.

Boxes are ``(..., 4)`` float32 tensors ``[xmin, ymin, xmax, ymax]`` in
normalized coordinates.  The functions follow the fork's float32 formulas
(sizes, overlaps, encodings) so that thresholds fall on the same side, and
work on whole batches at once: the training loss matches thousands of priors
against every ground-truth box of every image per step.
"""
import numpy as np
import torch

# PriorBoxParameter.CodeType
CORNER, CENTER_SIZE, CORNER_SIZE = 1, 2, 3
CODE_TYPES = {CORNER: "CORNER", CENTER_SIZE: "CENTER_SIZE", CORNER_SIZE: "CORNER_SIZE"}


def bbox_size(b):
    """BBoxSize (normalized): 0 for an inverted box, else width * height."""
    w = b[..., 2] - b[..., 0]
    h = b[..., 3] - b[..., 1]
    return torch.where((w < 0) | (h < 0), torch.zeros_like(w), w * h)


def jaccard(a, b):
    """JaccardOverlap of every box in ``a (..., A, 4)`` with every box in
    ``b (..., B, 4)``: ``(..., A, B)``; 0 where the boxes do not overlap."""
    a1 = a.unsqueeze(-2)
    b1 = b.unsqueeze(-3)
    disjoint = ((b1[..., 0] > a1[..., 2]) | (b1[..., 2] < a1[..., 0]) |
                (b1[..., 1] > a1[..., 3]) | (b1[..., 3] < a1[..., 1]))
    iw = torch.minimum(a1[..., 2], b1[..., 2]) - torch.maximum(a1[..., 0], b1[..., 0])
    ih = torch.minimum(a1[..., 3], b1[..., 3]) - torch.maximum(a1[..., 1], b1[..., 1])
    inter = iw * ih
    union = (bbox_size(a).unsqueeze(-1) + bbox_size(b).unsqueeze(-2)) - inter
    ok = (~disjoint) & (iw > 0) & (ih > 0)
    return torch.where(ok, inter / torch.where(ok, union, torch.ones_like(union)),
                       torch.zeros_like(inter))


def coverage(a, b):
    """BBoxCoverage: intersection(a, b) / size(a), elementwise over ``(..., 4)``."""
    disjoint = ((b[..., 0] > a[..., 2]) | (b[..., 2] < a[..., 0]) |
                (b[..., 1] > a[..., 3]) | (b[..., 3] < a[..., 1]))
    inter = torch.stack([torch.maximum(a[..., 0], b[..., 0]), torch.maximum(a[..., 1], b[..., 1]),
                         torch.minimum(a[..., 2], b[..., 2]), torch.minimum(a[..., 3], b[..., 3])],
                        -1)
    isize = torch.where(disjoint, torch.zeros_like(a[..., 0]), bbox_size(inter))
    asize = bbox_size(a)
    return torch.where(isize > 0, isize / torch.where(isize > 0, asize, torch.ones_like(asize)),
                       torch.zeros_like(isize))


def cross_boundary(b):
    """IsCrossBoundaryBBox: any coordinate outside [0, 1]."""
    return ((b < 0) | (b > 1)).any(-1)


def _centers(b):
    w = b[..., 2] - b[..., 0]
    h = b[..., 3] - b[..., 1]
    return w, h, (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2


def encode(prior, var, box, code_type, variance_in_target):
    """EncodeBBox of ``box`` against ``prior`` (all ``(..., 4)``)."""
    v = torch.ones_like(var) if variance_in_target else var
    if code_type == CORNER:
        return (box - prior) / v
    pw, ph, pcx, pcy = _centers(prior)
    if code_type == CORNER_SIZE:
        size = torch.stack([pw, ph, pw, ph], -1)
        return (box - prior) / size / v
    bw, bh, bcx, bcy = _centers(box)
    return torch.stack([(bcx - pcx) / pw / v[..., 0], (bcy - pcy) / ph / v[..., 1],
                        torch.log(bw / pw) / v[..., 2], torch.log(bh / ph) / v[..., 3]], -1)


def decode(prior, var, loc, code_type, variance_in_target):
    """DecodeBBox of predictions ``loc`` against ``prior`` (no clipping)."""
    v = torch.ones_like(var) if variance_in_target else var
    if code_type == CORNER:
        return prior + v * loc
    pw, ph, pcx, pcy = _centers(prior)
    if code_type == CORNER_SIZE:
        size = torch.stack([pw, ph, pw, ph], -1)
        return prior + v * loc * size
    cx = v[..., 0] * loc[..., 0] * pw + pcx
    cy = v[..., 1] * loc[..., 1] * ph + pcy
    w = torch.exp(v[..., 2] * loc[..., 2]) * pw
    h = torch.exp(v[..., 3] * loc[..., 3]) * ph
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


class GroundTruth:
    """Label rows ``[item, label, instance, xmin, ymin, xmax, ymax, difficult]``
    grouped per image and padded: ``boxes (N, G, 4)``, ``labels (N, G)``,
    ``difficult (N, G)``, ``valid (N, G)``; ``present (N,)`` marks images that
    kept at least one box (the fork's ``all_gt_bboxes`` map keys).  Rows keep
    their order within an image; rows with item id -1 are skipped."""

    def __init__(self, rows, num, keep_difficult=True):
        rows = rows.detach().reshape(-1, 8).float()
        item = rows[:, 0].to(torch.int64)
        keep = (item >= 0) & (item < num)
        if not keep_difficult:
            keep &= rows[:, 7] == 0
        rows = rows[keep]
        item = item[keep]
        counts = torch.bincount(item, minlength=num) if item.numel() else \
            torch.zeros(num, dtype=torch.int64, device=rows.device)
        g = int(counts.max()) if num else 0
        order = torch.sort(item, stable=True).indices
        item_s = item[order]
        first = torch.cumsum(counts, 0) - counts
        slot = torch.arange(item_s.numel(), device=rows.device) - first[item_s]
        dev = rows.device
        self.boxes = torch.zeros(num, g, 4, device=dev)
        self.labels = torch.full((num, g), -1, dtype=torch.int64, device=dev)
        self.difficult = torch.zeros(num, g, dtype=torch.bool, device=dev)
        self.valid = torch.zeros(num, g, dtype=torch.bool, device=dev)
        r = rows[order]
        self.boxes[item_s, slot] = r[:, 3:7]
        self.labels[item_s, slot] = r[:, 1].to(torch.int64)
        self.difficult[item_s, slot] = r[:, 7] != 0
        self.valid[item_s, slot] = True
        self.present = counts > 0
        self.num = num


def match(pred, gt, gt_mask, match_type, overlap_threshold, ignore=None):
    """MatchBBox for a batch: ``pred (N, P, 4)`` or ``(P, 4)`` against the
    ground truth ``gt (N, G, 4)`` where ``gt_mask (N, G)``.

    Returns ``(indices, overlaps)``, both ``(N, P)``: the matched gt index, -1
    (unmatched) or -2 (ignored cross-boundary prediction), and the overlap the
    fork records (the match's, else the best over all gts).  Greedy bipartite
    matching first (largest overlap first; ties to the lower prediction, then
    the lower gt index, as the fork's scan), then, for PER_PREDICTION (1), each
    unmatched prediction takes its best gt with overlap >= threshold.
    """
    n, g = gt.shape[0], gt.shape[1]
    if pred.dim() == 2:
        pred = pred.unsqueeze(0).expand(n, -1, -1)
    p = pred.shape[1]
    dev = pred.device
    idx = torch.full((n, p), -1, dtype=torch.int64, device=dev)
    if g == 0 or p == 0:
        return idx, torch.zeros(n, p, device=dev)
    iou = jaccard(pred, gt)                                    # (N, P, G)
    usable = (iou > 1e-6) & gt_mask.unsqueeze(1)
    if ignore is not None:
        usable &= ~ignore.unsqueeze(-1)
        idx[ignore] = -2
    iou = torch.where(usable, iou, torch.zeros_like(iou))
    overlaps = iou.max(-1).values
    # Bipartite: the prior a gt gets is among that gt's g best (at most g - 1
    # are taken before), so the greedy rounds run on that short list.
    k = min(g, p)
    cand_val, cand_idx = torch.sort(torch.where(usable, iou, torch.full_like(iou, -1.0)),
                                    dim=1, descending=True, stable=True)
    cand_val, cand_idx = cand_val[:, :k], cand_idx[:, :k]       # (N, k, G)
    pool = gt_mask.clone()
    rows = torch.arange(n, device=dev)
    gcol = torch.arange(g, device=dev).view(1, 1, g)
    big = p * g
    for _ in range(g):
        taken = torch.gather(idx, 1, cand_idx.reshape(n, -1)).view(n, k, g) != -1
        ok = (cand_val > 0) & ~taken & pool.unsqueeze(1)
        if not bool(ok.any()):
            break
        val = torch.where(ok, cand_val, torch.full_like(cand_val, -1.0))
        best = val.amax(dim=(1, 2), keepdim=True)
        key = torch.where(ok & (val == best), cand_idx * g + gcol, torch.full_like(cand_idx, big))
        flat = key.view(n, -1).min(1).values
        hit = flat < big
        pi, gi = (flat // g)[hit], (flat % g)[hit]
        ri = rows[hit]
        idx[ri, pi] = gi
        overlaps[ri, pi] = iou[ri, pi, gi]
        pool[ri, gi] = False
    if match_type == 1:   # PER_PREDICTION
        thr = torch.where(usable & (iou >= overlap_threshold), iou, torch.full_like(iou, -1.0))
        bv, bi = thr.max(-1)   # first maximum: the lowest gt index, as the fork
        take = (idx == -1) & (bv >= 0)
        idx = torch.where(take, bi, idx)
        overlaps = torch.where(take, bv, overlaps)
    return idx, overlaps


def nms_by_score(boxes, scores, threshold, top_k):
    """ApplyNMS (the plain one mining uses): indices into ``boxes`` kept in
    descending score order; boxes smaller than 1e-5 are dropped."""
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    order = list(np.argsort(-scores, kind="stable"))
    if top_k > -1:
        order = order[:top_k]
    t = torch.from_numpy(boxes)
    size = bbox_size(t).numpy()
    iou = jaccard(t, t).numpy() if len(boxes) else None
    kept = []
    while order:
        best = order.pop(0)
        if size[best] < 1e-5:
            continue
        kept.append(int(best))
        if top_k > -1 and len(kept) >= top_k:
            break
        order = [c for c in order if size[c] >= 1e-5 and not iou[best, c] > threshold]
    return kept
