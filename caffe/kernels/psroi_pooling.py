"""PSROIPooling (R-FCN): CUDA kernels (``psroi_pooling.cu`` through CuPy) and
a vectorised PyTorch path (summed-area tables in float64) with the same numbers.

Public API::

    psroi_pooling(features, rois, output_dim, group_size, spatial_scale) -> top
    psroi_pooling_forward(...) -> (top, mapping_channel)
    PSROIPoolingFunction.apply(features, rois, output_dim, group_size, spatial_scale)
"""
import torch
import torch.nn.functional as F

from . import launcher
from .roi_pooling import c_round

SOURCE = "psroi_pooling.cu"


def psroi_geometry(rois, spatial_scale, group_size, height, width):
    """(batch (R,), hs, he (R, k), ws, we (R, k)) clipped, as the kernel."""
    r = rois.to(torch.float32)
    batch = r[:, 0].to(torch.int64)
    ss = torch.tensor(spatial_scale, dtype=torch.float32, device=r.device)
    rnd = c_round(r[:, 1:5]).to(torch.float32)        # round the raw coordinates first
    x1 = rnd[:, 0] * ss
    y1 = rnd[:, 1] * ss
    x2 = (rnd[:, 2] + 1) * ss
    y2 = (rnd[:, 3] + 1) * ss
    rw = torch.clamp(x2 - x1, min=0.1)
    rh = torch.clamp(y2 - y1, min=0.1)
    bin_h = rh / float(group_size)
    bin_w = rw / float(group_size)
    p = torch.arange(group_size, dtype=torch.float32, device=r.device)
    hs = torch.floor(p[None] * bin_h[:, None] + y1[:, None]).to(torch.int64).clamp(0, height)
    he = torch.ceil((p[None] + 1) * bin_h[:, None] + y1[:, None]).to(torch.int64).clamp(0, height)
    ws = torch.floor(p[None] * bin_w[:, None] + x1[:, None]).to(torch.int64).clamp(0, width)
    we = torch.ceil((p[None] + 1) * bin_w[:, None] + x1[:, None]).to(torch.int64).clamp(0, width)
    return batch, hs, he, ws, we


def _check(features, rois, output_dim, group_size):
    if features.dim() != 4:
        raise ValueError("PSROIPooling: features must be (N, C, H, W), got %s"
                         % (tuple(features.shape),))
    if rois.dim() < 2 or rois.shape[1] != 5 or rois.numel() != rois.shape[0] * 5:
        raise ValueError("PSROIPooling: rois must be (R, 5), got %s" % (tuple(rois.shape),))
    if output_dim <= 0 or group_size <= 0:
        raise ValueError("PSROIPooling: output_dim and group_size must be > 0")
    if features.shape[1] != output_dim * group_size * group_size:
        raise ValueError("PSROIPooling: input channels %d != output_dim * group_size^2 = %d"
                         % (features.shape[1], output_dim * group_size * group_size))


def _bin_index(rois, output_dim, group_size, shape, spatial_scale):
    N, C, H, W = shape
    k = group_size
    dev = rois.device
    batch, hs, he, ws, we = psroi_geometry(rois, spatial_scale, k, H, W)
    if batch.numel() and bool(((batch < 0) | (batch >= N)).any()):
        raise ValueError("PSROIPooling: roi batch index out of range [0, %d)" % N)
    ctop = torch.arange(output_dim, device=dev)
    g = torch.arange(k, device=dev)
    chan = (ctop[:, None, None] * k + g[None, :, None]) * k + g[None, None, :]   # (D, k, k)
    plane = batch[:, None, None, None] * C + chan[None]                        # (R, D, k, k)
    hs_, he_ = hs[:, None, :, None], he[:, None, :, None]
    ws_, we_ = ws[:, None, None, :], we[:, None, None, :]
    return chan, plane, hs_, he_, ws_, we_


def _forward_torch(features, rois, output_dim, group_size, spatial_scale):
    N, C, H, W = features.shape
    R = rois.shape[0]
    k = group_size
    if R == 0:
        return (features.new_zeros((0, output_dim, k, k)),
                torch.zeros((0, output_dim, k, k), dtype=torch.int32, device=features.device))
    chan, plane, hs, he, ws, we = _bin_index(rois, output_dim, k, features.shape, spatial_scale)
    # summed-area table with a zero first row and column (made by padding, not by
    # filling a slice in place, so that torch's tracer records it as computed)
    flat = F.pad(features.to(torch.float64).cumsum(2).cumsum(3), (1, 0, 1, 0)).reshape(-1)
    W1 = W + 1
    base = plane * ((H + 1) * W1)

    def at(h, w):
        return flat[base + h * W1 + w]
    total = at(he, we) - at(hs, we) - at(he, ws) + at(hs, ws)
    area = ((he - hs) * (we - ws)).to(torch.float64)
    empty = (he <= hs) | (we <= ws)
    top = torch.where(empty, torch.zeros_like(total), total / area.clamp(min=1))
    mapping = chan[None].expand(R, -1, -1, -1).to(torch.int32).contiguous()
    return top.to(features.dtype), mapping


def _backward_torch(top_diff, rois, features_shape, output_dim, group_size, spatial_scale):
    N, C, H, W = features_shape
    if top_diff.shape[0] == 0:
        return top_diff.new_zeros((N, C, H, W))
    chan, plane, hs, he, ws, we = _bin_index(rois, output_dim, group_size, features_shape,
                                             spatial_scale)
    shape = torch.broadcast_shapes(plane.shape, hs.shape, ws.shape)
    plane, hs, he, ws, we = [t.expand(shape) for t in (plane, hs, he, ws, we)]
    empty = (he <= hs) | (we <= ws)
    area = ((he - hs) * (we - ws)).clamp(min=1).to(top_diff.dtype)
    g = torch.where(empty, torch.zeros_like(top_diff), top_diff / area).to(torch.float64)
    W1 = W + 1
    diffimg = torch.zeros((N * C * (H + 1) * W1,), dtype=torch.float64, device=top_diff.device)
    base = plane * ((H + 1) * W1)
    for h, w, sign in ((hs, ws, 1.0), (hs, we, -1.0), (he, ws, -1.0), (he, we, 1.0)):
        diffimg.index_add_(0, (base + h * W1 + w).reshape(-1), (g * sign).reshape(-1))
    dense = diffimg.view(N, C, H + 1, W1).cumsum(2).cumsum(3)[:, :, :H, :W]
    return dense.to(top_diff.dtype).contiguous()


def _forward_cuda(features, rois, output_dim, group_size, spatial_scale):
    x = features.contiguous().float()
    r = rois.reshape(-1, 5).to(device=x.device, dtype=torch.float32).contiguous()
    k = group_size
    top = x.new_empty((r.shape[0], output_dim, k, k))
    mapping = torch.empty(top.shape, dtype=torch.int32, device=x.device)
    launcher.launch_roi_forward(SOURCE, "psroi_pool_forward", x, spatial_scale, k, output_dim,
                                r, top, mapping)
    return top.to(features.dtype), mapping


def _backward_cuda(top_diff, rois, features_shape, output_dim, group_size, spatial_scale):
    g = top_diff.contiguous().float()
    r = rois.reshape(-1, 5).to(device=g.device, dtype=torch.float32).contiguous()
    N, C, H, W = features_shape
    out = g.new_zeros((N, C, H, W))
    n = g.numel()
    L = launcher
    L.launch(SOURCE, "psroi_pool_backward", n,
             (L.i64(n), L.ptr(g), L.f32(spatial_scale), L.i32(C), L.i32(H), L.i32(W),
              L.i32(group_size), L.i32(output_dim), L.ptr(r), L.ptr(out)),
             g.device)
    return out.to(top_diff.dtype)


def psroi_pooling_forward(features, rois, output_dim, group_size, spatial_scale=1.0):
    """Forward pass: ``(top (R, output_dim, k, k), mapping_channel int32)``."""
    output_dim, group_size = int(output_dim), int(group_size)
    _check(features, rois, output_dim, group_size)
    rois = rois.reshape(-1, 5).to(device=features.device, dtype=torch.float32)
    if launcher.use_kernels(features) and features.dtype == torch.float32:
        return _forward_cuda(features, rois, output_dim, group_size, spatial_scale)
    return _forward_torch(features, rois, output_dim, group_size, spatial_scale)


def psroi_pooling_backward(top_diff, rois, features_shape, output_dim, group_size,
                           spatial_scale=1.0):
    """Each pixel of a non-empty bin receives ``top_diff / bin_area``."""
    features_shape = tuple(int(d) for d in features_shape)
    rois = rois.reshape(-1, 5).to(device=top_diff.device, dtype=torch.float32)
    if launcher.use_kernels(top_diff) and top_diff.dtype == torch.float32:
        return _backward_cuda(top_diff, rois, features_shape, int(output_dim), int(group_size),
                              spatial_scale)
    return _backward_torch(top_diff, rois, features_shape, int(output_dim), int(group_size),
                           spatial_scale)


class PSROIPoolingFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, rois, output_dim, group_size, spatial_scale=1.0):
        top, _ = psroi_pooling_forward(features, rois, output_dim, group_size, spatial_scale)
        ctx.save_for_backward(rois)
        ctx.geom = (tuple(features.shape), int(output_dim), int(group_size), float(spatial_scale))
        return top

    @staticmethod
    def backward(ctx, top_diff):
        (rois,) = ctx.saved_tensors
        shape, d, k, ss = ctx.geom
        gx = None
        if ctx.needs_input_grad[0]:
            gx = psroi_pooling_backward(top_diff, rois, shape, d, k, ss)
        return gx, None, None, None, None


def psroi_pooling(features, rois, output_dim, group_size, spatial_scale=1.0):
    """R-FCN PSROIPooling: ``features`` (N, output_dim*k*k, H, W), ``rois``
    (R, 5); returns (R, output_dim, k, k), differentiable in ``features``."""
    return PSROIPoolingFunction.apply(features, rois, output_dim, group_size, spatial_scale)
