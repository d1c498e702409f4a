"""ROIPooling (caffe-fast-rcnn): CUDA kernels (``roi_pooling.cu`` through
CuPy) and a vectorised PyTorch path with the same numbers.

Public API::

    roi_pooling(features, rois, pooled_h, pooled_w, spatial_scale=1.0) -> top
    roi_pooling_forward(...)  -> (top, argmax)
    roi_pooling_backward(top_diff, argmax, rois, features_shape, ...) -> bottom diff
    ROIPoolingFunction.apply(features, rois, pooled_h, pooled_w, spatial_scale)
"""
import torch

from . import launcher

SOURCE = "roi_pooling.cu"
FLT_MAX = 3.4028234663852886e38
# Largest gathered window tensor built at once by the PyTorch path.
_CHUNK_ELEMS = 1 << 25


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


def _forward_torch(features, rois, pooled_h, pooled_w, spatial_scale):
    N, C, H, W = features.shape
    R = rois.shape[0]
    dev = features.device
    top = features.new_zeros((R, C, pooled_h, pooled_w))
    argmax = torch.full((R, C, pooled_h, pooled_w), -1, dtype=torch.int32, device=dev)
    if R == 0 or C == 0:
        return top, argmax
    batch, hs, he, ws, we = roi_geometry(rois, spatial_scale, pooled_h, pooled_w)
    hs, he = hs.clamp(0, H), he.clamp(0, H)
    ws, we = ws.clamp(0, W), we.clamp(0, W)
    if bool(((batch < 0) | (batch >= N)).any()):
        raise ValueError("ROIPooling: roi batch index out of range [0, %d)" % N)
    kh = max(int((he - hs).max()), 1)
    kw = max(int((we - ws).max()), 1)
    ar_h = torch.arange(kh, device=dev)
    ar_w = torch.arange(kw, device=dev)
    ih = hs[:, :, None] + ar_h                     # (R, PH, KH)
    iw = ws[:, :, None] + ar_w                     # (R, PW, KW)
    vh = ih < he[:, :, None]
    vw = iw < we[:, :, None]
    ih = ih.clamp(0, max(H - 1, 0))
    iw = iw.clamp(0, max(W - 1, 0))
    cidx = torch.arange(C, device=dev)
    per_roi = C * pooled_h * pooled_w * kh * kw
    step = max(1, _CHUNK_ELEMS // max(per_roi, 1))
    neg = torch.tensor(-float("inf"), dtype=features.dtype, device=dev)
    for s in range(0, R, step):
        e = min(R, s + step)
        b = batch[s:e]
        # (r, C, PH, PW, KH, KW) windows by broadcast indexing
        vals = features[b[:, None, None, None, None, None],
                        cidx[None, :, None, None, None, None],
                        ih[s:e, None, :, None, :, None],
                        iw[s:e, None, None, :, None, :]]
        valid = vh[s:e, None, :, None, :, None] & vw[s:e, None, None, :, None, :]
        vals = torch.where(valid, vals, neg)
        flat = vals.reshape(e - s, C, pooled_h, pooled_w, kh * kw)
        best, pos = flat.max(dim=-1)               # first maximum wins
        h = hs[s:e, None, :, None] + torch.div(pos, kw, rounding_mode="floor")
        w = ws[s:e, None, None, :] + pos % kw
        idx = (h * W + w).to(torch.int32)
        empty = ((he[s:e] <= hs[s:e])[:, :, None] | (we[s:e] <= ws[s:e])[:, None, :])[:, None]
        low = best <= -FLT_MAX                      # nothing beats -FLT_MAX
        best = torch.where(low, torch.full_like(best, -FLT_MAX), best)
        idx = torch.where(low, torch.full_like(idx, -1), idx)
        top[s:e] = torch.where(empty, torch.zeros_like(best), best)
        argmax[s:e] = torch.where(empty, torch.full_like(idx, -1), idx)
    return top, argmax


def _backward_torch(top_diff, argmax, rois, features_shape):
    N, C, H, W = features_shape
    R = top_diff.shape[0]
    grad = top_diff.new_zeros((N * C * H * W,))
    if R == 0:
        return grad.view(N, C, H, W)
    batch = _flat_rois(rois, top_diff.device)[:, 0].to(torch.int64)
    plane = (batch[:, None] * C + torch.arange(C, device=top_diff.device)[None]) * (H * W)
    target = plane[:, :, None, None] + argmax.to(torch.int64)
    valid = argmax >= 0
    grad.index_add_(0, target[valid], top_diff[valid])
    return grad.view(N, C, H, W)


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
