"""ROIPooling (caffe-fast-rcnn): CUDA kernels (``roi_pooling.cu`` through
CuPy) and a CPU path with the same numbers.

On the CPU every bin of every ROI is answered at once from range-max sparse
tables (four overlapping power-of-two squares cover any bin), with values and
positions packed into one integer key so that "max, first position on ties"
is a plain integer max -- Caffe's scan order.  Bins much larger than the
memory budget allows, and non-float32 inputs, go through a per-ROI separable
max instead.  ``bench/roi_pooling.py`` times both against a NumPy loop.

Public API::

    roi_pooling(features, rois, pooled_h, pooled_w, spatial_scale=1.0) -> top
    roi_pooling_forward(...)  -> (top, argmax)
    roi_pooling_backward(top_diff, argmax, rois, features_shape, ...) -> bottom diff
    ROIPoolingFunction.apply(features, rois, pooled_h, pooled_w, spatial_scale)
"""
import torch

from ..limits import FLT_MAX
from . import launcher

SOURCE = "roi_pooling.cu"


def c_round(x):
    """C's round(): halves away from zero (done in float64, exact for float32)."""
    x = x.to(torch.float64)
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _check(features, rois, pooled_h, pooled_w):
    if features.dim() != 4:
        raise ValueError("ROIPooling: features must be (N, C, H, W), got %s"
                         % (tuple(features.shape),))
    if rois.dim() < 2 or rois.shape[1] != 5 or rois.numel() != rois.shape[0] * 5:
        raise ValueError("ROIPooling: rois must be (R, 5) rows [batch, x1, y1, x2, y2], got %s"
                         % (tuple(rois.shape),))
    if int(pooled_h) <= 0 or int(pooled_w) <= 0:
        raise ValueError("ROIPooling: pooled_h and pooled_w must be > 0")


def _flat_rois(rois, device):
    return rois.reshape(rois.shape[0], 5).to(device=device, dtype=torch.float32)


def roi_geometry(rois, spatial_scale, pooled_h, pooled_w):
    """Per-ROI (batch, hstart, hend, wstart, wend) exactly as the kernel:
    batch (R,), h-bounds (R, pooled_h), w-bounds (R, pooled_w), clipped later."""
    r = rois.to(torch.float32)
    batch = r[:, 0].to(torch.int64)                  # C truncating cast
    ss = torch.tensor(spatial_scale, dtype=torch.float32, device=r.device)
    box = c_round(r[:, 1:5] * ss).to(torch.int64)    # scale first, then round
    x1, y1, x2, y2 = box.unbind(1)
    rw = torch.clamp(x2 - x1 + 1, min=1).to(torch.float32)
    rh = torch.clamp(y2 - y1 + 1, min=1).to(torch.float32)
    bin_h = rh / float(pooled_h)
    bin_w = rw / float(pooled_w)
    ph = torch.arange(pooled_h, dtype=torch.float32, device=r.device)
    pw = torch.arange(pooled_w, dtype=torch.float32, device=r.device)
    hs = torch.floor(ph[None] * bin_h[:, None]).to(torch.int64) + y1[:, None]
    he = torch.ceil((ph[None] + 1) * bin_h[:, None]).to(torch.int64) + y1[:, None]
    ws = torch.floor(pw[None] * bin_w[:, None]).to(torch.int64) + x1[:, None]
    we = torch.ceil((pw[None] + 1) * bin_w[:, None]).to(torch.int64) + x1[:, None]
    return batch, hs, he, ws, we


def _window_max(values, starts, ends, dim):
    """Max of ``values`` over the windows ``[starts[i], ends[i])`` along ``dim``
    (window-relative indices), one slot per window in place of ``dim``, with
    the position of the first maximum (Caffe's strict ``>`` scan).

    Windows are padded to the longest one by repeating their last element, so
    no masking pass is needed: a repeat never beats the first occurrence.
    Empty windows give garbage; callers mask those bins."""
    k = max(int((ends - starts).max()), 1)
    idx = starts[:, None] + torch.arange(k, device=values.device)       # (P, k)
    idx = torch.minimum(idx, (ends - 1).clamp(min=starts)[:, None])
    idx = idx.clamp(0, max(values.shape[dim] - 1, 0))
    picked = values.index_select(dim, idx.reshape(-1))
    shape = list(values.shape)
    shape[dim:dim + 1] = [idx.shape[0], k]
    return picked.view(shape).max(dim=dim + 1)        # first maximum wins


# Most memory the range-max tables may take before the per-ROI loop is used.
TABLE_BUDGET_BYTES = 1 << 30


_LOW31 = 0x7FFFFFFF


def _encode_keys(features):
    """float32 (N, C, H, W) -> int64 keys (N, H, W, C) that order like Caffe's scan.

    The high word is the value's bits mapped to an order-preserving integer,
    the low word ``2**31 - 1 - (h * W + w)``: the larger key is the larger
    value and, on a tie, the earlier position in row-major order -- exactly
    the element Caffe's strict ``>`` loop keeps.  So every range max below is a
    plain integer ``max``.  (-0.0 is folded into +0.0: they compare equal.)"""
    N, C, H, W = features.shape
    bits = (features + 0.0).permute(0, 2, 3, 1).contiguous().view(torch.int32)
    ordered = (bits ^ ((bits >> 31) & _LOW31)).to(torch.int64)
    position = torch.arange(H * W, dtype=torch.int64, device=features.device).view(1, H, W, 1)
    return (ordered << 32) | (_LOW31 - position)


def _decode_keys(keys):
    """Inverse of :func:`_encode_keys`: (float32 values, int32 positions)."""
    ordered = (keys >> 32).to(torch.int32)
    values = (ordered ^ ((ordered >> 31) & _LOW31)).view(torch.float32)
    return values, (_LOW31 - (keys & 0xFFFFFFFF)).to(torch.int32)


def _range_max_tables(keys, levels_h, levels_w):
    """Sparse tables for 2-D range-max queries over ``keys`` (N, H, W, C).

    Entry ``[i, j, n, h, w, :]`` is the max over rows ``[h, h + 2**i)`` and
    columns ``[w, w + 2**j)`` (where that fits in the map).  Any bin
    ``[hs, he) x [ws, we)`` is the max of four such overlapping squares,
    whatever the other bins' sizes.  Channels stay last, so a look-up copies
    one contiguous run of channels."""
    N, H, W, C = keys.shape
    table = torch.empty((levels_h, levels_w) + tuple(keys.shape), dtype=keys.dtype,
                        device=keys.device)
    table[0, 0] = keys
    for i in range(levels_h):
        if i > 0:      # two row-halves of level i - 1
            step = 1 << (i - 1)
            table[i, 0] = table[i - 1, 0]
            torch.maximum(table[i - 1, 0, :, :H - step], table[i - 1, 0, :, step:],
                          out=table[i, 0, :, :H - step])
        for j in range(1, levels_w):   # then two column-halves of level j - 1
            step = 1 << (j - 1)
            table[i, j] = table[i, j - 1]
            torch.maximum(table[i, j - 1, :, :, :W - step], table[i, j - 1, :, :, step:],
                          out=table[i, j, :, :, :W - step])
    return table.view(-1, C)


def _floor_log2(n):
    """floor(log2(n)) of a positive int64 tensor, exactly."""
    out = torch.zeros_like(n)
    for bit in (16, 8, 4, 2, 1):
        big = n >= (1 << bit)
        out = out + big * bit
        n = torch.where(big, n >> bit, n)
    return out


def _forward_tables(features, batch, hs, he, ws, we):
    """Every bin of every ROI at once from four range-max table look-ups (float32)."""
    N, C, H, W = features.shape
    lh = _floor_log2((he - hs).clamp(min=1))
    lw = _floor_log2((we - ws).clamp(min=1))
    levels_w = int(lw.max()) + 1
    table = _range_max_tables(_encode_keys(features), int(lh.max()) + 1, levels_w)
    R, PH = hs.shape
    PW = ws.shape[1]
    # table row of [lh, lw, b, h, w] for each (roi, ph, pw), by broadcasting
    level = ((lh[:, :, None] * levels_w + lw[:, None, :]) * N + batch[:, None, None]) * (H * W)
    best = None
    for h in (hs, he - (1 << lh)):
        for w in (ws, we - (1 << lw)):
            row = (level + (h.clamp(0, H - 1) * W)[:, :, None]
                   + w.clamp(0, W - 1)[:, None, :]).view(-1)
            corner = table.index_select(0, row)
            best = corner if best is None else torch.maximum(best, corner, out=best)
    values, positions = _decode_keys(best.view(R, PH, PW, C).permute(0, 3, 1, 2))
    return values, positions


def _forward_per_roi(features, batch, hs, he, ws, we):
    """Per ROI, a separable max over its window: first over each bin's columns
    (for every row of the window), then over each bin's rows; taking rows last
    keeps Caffe's tie rule.  Used when the range-max tables would not fit."""
    N, C, H, W = features.shape
    R, PH = hs.shape
    PW = ws.shape[1]
    best = features.new_full((R, C, PH, PW), -float("inf"))
    best_idx = torch.zeros((R, C, PH, PW), dtype=torch.int32, device=features.device)
    for r, b in enumerate(batch.tolist()):
        hs_r, he_r, ws_r, we_r = hs[r], he[r], ws[r], we[r]
        if bool((he_r <= hs_r).all() or (we_r <= ws_r).all()):
            continue
        h0, h1 = int(hs_r.min()), int(he_r.max())
        w0, w1 = int(ws_r.min()), int(we_r.max())
        window = features[b, :, h0:h1, w0:w1]                                # (C, h, w)
        col_best, col_pos = _window_max(window, ws_r - w0, we_r - w0, 2)     # (C, h, PW)
        best[r], row_pos = _window_max(col_best, hs_r - h0, he_r - h0, 1)    # (C, PH, PW)
        row = (hs_r - h0)[None, :, None] + row_pos                           # window row
        col = col_pos.gather(1, row.clamp(0, max(h1 - h0 - 1, 0)))          # its column
        best_idx[r] = ((row + h0) * W + (col + ws_r[None, None, :])).to(torch.int32)
    return best, best_idx


def _forward_torch(features, rois, pooled_h, pooled_w, spatial_scale):
    N, C, H, W = features.shape
    R = rois.shape[0]
    dev = features.device
    if R == 0 or C == 0 or H == 0 or W == 0:
        return (features.new_zeros((R, C, pooled_h, pooled_w)),
                torch.full((R, C, pooled_h, pooled_w), -1, dtype=torch.int32, device=dev))
    batch, hs, he, ws, we = roi_geometry(rois, spatial_scale, pooled_h, pooled_w)
    hs, he = hs.clamp(0, H), he.clamp(0, H)
    ws, we = ws.clamp(0, W), we.clamp(0, W)
    if bool(((batch < 0) | (batch >= N)).any()):
        raise ValueError("ROIPooling: roi batch index out of range [0, %d)" % N)
    if features.is_floating_point() and bool(torch.isnan(features).any()):
        # Caffe's ``>`` never picks a NaN: make them lose every comparison.
        features = features.masked_fill(torch.isnan(features), -float("inf"))
    levels = ((int(_floor_log2((he - hs).clamp(min=1)).max()) + 1)
              * (int(_floor_log2((we - ws).clamp(min=1)).max()) + 1))
    if features.dtype == torch.float32 and levels * features.numel() * 8 <= TABLE_BUDGET_BYTES:
        best, idx = _forward_tables(features, batch, hs, he, ws, we)
    else:
        best, idx = _forward_per_roi(features, batch, hs, he, ws, we)
    empty = ((he <= hs)[:, :, None] | (we <= ws)[:, None, :])[:, None]     # (R, 1, PH, PW)
    low = best <= -FLT_MAX                      # nothing beats Caffe's -FLT_MAX start
    top = best.masked_fill(low, -FLT_MAX).masked_fill(empty, 0)
    argmax = idx.to(torch.int32).masked_fill(low | empty, -1)
    return top, argmax


def _backward_torch(top_diff, argmax, rois, features_shape):
    """Add each bin's diff onto its argmax with one ``index_add_``.

    Contributions to one position are summed in (roi, ph, pw) order, the order
    Caffe's kernel loops in; empty bins (argmax -1) land in a spare slot at the
    end of each plane instead of being filtered out (no masked copies)."""
    N, C, H, W = features_shape
    plane = H * W + 1
    grad = top_diff.new_zeros((N * C * plane,))
    if top_diff.shape[0]:
        batch = _flat_rois(rois, top_diff.device)[:, 0].to(torch.int64)
        base = (batch[:, None] * C + torch.arange(C, device=top_diff.device)) * plane
        target = argmax.to(torch.int64).masked_fill_(argmax < 0, H * W)
        target.add_(base[:, :, None, None])
        grad.index_add_(0, target.view(-1), top_diff.reshape(-1))
    return grad.view(N, C, plane)[:, :, :H * W].reshape(N, C, H, W)


def _forward_cuda(features, rois, pooled_h, pooled_w, spatial_scale):
    x = features.contiguous().float()
    r = _flat_rois(rois, x.device).contiguous()
    top = x.new_empty((r.shape[0], x.shape[1], pooled_h, pooled_w))
    argmax = torch.empty(top.shape, dtype=torch.int32, device=x.device)
    launcher.launch_roi_forward(SOURCE, "roi_pool_forward", x, spatial_scale, pooled_h, pooled_w,
                                r, top, argmax)
    return top.to(features.dtype), argmax


def _backward_cuda(top_diff, argmax, rois, features_shape, pooled_h, pooled_w, spatial_scale):
    g = top_diff.contiguous().float()
    a = argmax.contiguous()
    r = _flat_rois(rois, g.device).contiguous()
    N, C, H, W = features_shape
    out = g.new_empty((N, C, H, W))
    n = out.numel()
    L = launcher
    L.launch(SOURCE, "roi_pool_backward", n,
             (L.i64(n), L.ptr(g), L.ptr(a), L.i32(r.shape[0]), L.f32(spatial_scale),
              L.i32(C), L.i32(H), L.i32(W), L.i32(pooled_h), L.i32(pooled_w), L.ptr(r),
              L.ptr(out)),
             g.device)
    return out.to(top_diff.dtype)


def roi_pooling_forward(features, rois, pooled_h, pooled_w, spatial_scale=1.0):
    """Forward pass: ``(top (R, C, pooled_h, pooled_w), argmax int32)``.

    ``argmax`` holds ``h * W + w`` of each bin's first maximum, -1 for empty
    bins.  CUDA tensors use the CUDA kernel when CuPy is available."""
    _check(features, rois, pooled_h, pooled_w)
    pooled_h, pooled_w = int(pooled_h), int(pooled_w)
    rois = _flat_rois(rois, features.device)
    if launcher.use_kernels(features) and features.dtype == torch.float32:
        return _forward_cuda(features, rois, pooled_h, pooled_w, spatial_scale)
    return _forward_torch(features, rois, pooled_h, pooled_w, spatial_scale)


def roi_pooling_backward(top_diff, argmax, rois, features_shape, pooled_h=None, pooled_w=None,
                         spatial_scale=1.0):
    """Caffe's backward: each top diff goes to its bin's argmax position."""
    features_shape = tuple(int(d) for d in features_shape)
    if launcher.use_kernels(top_diff) and top_diff.dtype == torch.float32:
        ph = int(pooled_h if pooled_h is not None else top_diff.shape[2])
        pw = int(pooled_w if pooled_w is not None else top_diff.shape[3])
        return _backward_cuda(top_diff, argmax, rois, features_shape, ph, pw, spatial_scale)
    return _backward_torch(top_diff, argmax, rois, features_shape)


class ROIPoolingFunction(torch.autograd.Function):
    """Differentiable in ``features`` (argmax backward); rois get no gradient."""

    @staticmethod
    def forward(ctx, features, rois, pooled_h, pooled_w, spatial_scale=1.0):
        top, argmax = roi_pooling_forward(features, rois, pooled_h, pooled_w, spatial_scale)
        ctx.save_for_backward(rois, argmax)
        ctx.geom = (tuple(features.shape), int(pooled_h), int(pooled_w), float(spatial_scale))
        ctx.mark_non_differentiable(argmax)
        return top

    @staticmethod
    def backward(ctx, top_diff):
        rois, argmax = ctx.saved_tensors
        shape, ph, pw, ss = ctx.geom
        gx = None
        if ctx.needs_input_grad[0]:
            gx = roi_pooling_backward(top_diff, argmax, rois, shape, ph, pw, ss)
        return gx, None, None, None, None


def roi_pooling(features, rois, pooled_h, pooled_w, spatial_scale=1.0):
    """caffe-fast-rcnn ROIPooling: ``features`` (N, C, H, W), ``rois`` (R, 5)
    rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels; returns
    (R, C, pooled_h, pooled_w), differentiable in ``features``."""
    return ROIPoolingFunction.apply(features, rois, pooled_h, pooled_w, spatial_scale)
