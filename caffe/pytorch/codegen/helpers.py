'''Source of the small helpers generated files carry for Caffe maths torch lacks.

Each entry is written into model.py at most once, only when a layer uses it
(with the helpers its code calls), so a generated file imports nothing but
torch (and math).
'''
import re

HELPERS = {}


def helper(name, source):
    if name in HELPERS:
        raise ValueError("helper %r defined twice" % name)
    HELPERS[name] = source.strip("\n") + "\n"


def helper_needs(name):
    """The other helpers ``name``'s code refers to (written into the file with it)."""
    words = set(re.findall(r"[A-Za-z_]\w*", HELPERS[name]))
    return sorted(w for w in words if w in HELPERS and w != name)


helper("Params", '''
class Params(nn.Module):
    """A Caffe layer's parameter blobs, by name (shapes as in the caffemodel)."""

    def __init__(self, **shapes):
        super().__init__()
        for name, shape in shapes.items():
            setattr(self, name, nn.Parameter(torch.zeros(shape)))
''')

helper("caffe_pool_windows", '''
def caffe_pool_windows(size, kernel, stride, pad, ceil_mode=True):
    """Caffe's pooled sizes (rounded up with ceil_mode; the last window must start
    inside the image or its leading pad) and the extent the windows span."""
    out = []
    for n, k, s, p in zip(size, kernel, stride, pad):
        q = (n + 2 * p - k) / s
        o = (math.ceil(q) if ceil_mode else math.floor(q)) + 1
        if p and (o - 1) * s >= n + p:
            o -= 1
        out.append(o)
    return out, [(o - 1) * s + k for o, s, k in zip(out, stride, kernel)]
''')

helper("caffe_pool2d", '''
def caffe_pool2d(x, mode, kernel, stride, pad, ceil_mode=True):
    """Caffe's MAX/AVE pooling over exactly the windows Caffe visits; AVE divides
    by the window clipped to the padded image, padding included."""
    size = [int(n) for n in x.shape[-2:]]
    kernel = [int(k) for k in kernel]
    out, span = caffe_pool_windows(size, kernel, stride, pad, ceil_mode)
    # explicit padding that covers exactly those windows
    extra = [max(0, sp - n - p) for sp, n, p in zip(span, size, pad)]
    fill = torch.finfo(x.dtype).min if mode == "max" else 0.0
    xp = F.pad(x, (pad[1], extra[1], pad[0], extra[0]), value=fill)
    xp = xp[..., :span[0], :span[1]]
    if mode == "max":
        return F.max_pool2d(xp, kernel, stride)
    total = F.avg_pool2d(xp, kernel, stride) * (kernel[0] * kernel[1])
    counts = []
    for o, n, k, s, p in zip(out, size, kernel, stride, pad):
        start = torch.arange(o, device=x.device) * s - p
        counts.append(torch.clamp(start + k, max=n + p) - start)
    divisor = (counts[0][:, None] * counts[1][None, :]).to(x.dtype)
    return total / divisor
''')

helper("caffe_lrn", '''
def caffe_lrn(x, size, alpha, beta, k, across_channels=True):
    """Caffe's LRN: x / (k + alpha/size * sum of squares)^beta over a window of
    channels (zero padded), or x / (1 + alpha * mean of squares)^beta over a
    size x size spatial window."""
    pre = (size - 1) // 2
    if across_channels:
        sq = F.pad((x * x).unsqueeze(1), (0, 0, 0, 0, pre, pre))
        avg = F.avg_pool3d(sq, (size, 1, 1), stride=1).squeeze(1)
        return x * (avg * alpha + k).pow(-beta)
    avg = F.avg_pool2d(x * x, size, 1, pre, False, True)
    return x * (avg * alpha + 1.0).pow(-beta)
''')

helper("CaffeBatchNorm", '''
class CaffeBatchNorm(nn.Module):
    """Caffe's BatchNorm: no affine part (a Scale layer follows); the statistics
    are sums scaled by scale_factor (mean = running_mean / scale_factor); train
    mode uses batch statistics and updates the sums with a moving average."""

    def __init__(self, channels, eps=1e-5, moving_average_fraction=0.999,
                 use_global_stats=None):
        super().__init__()
        self.eps = eps
        self.maf = moving_average_fraction
        self.use_global_stats = use_global_stats
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.zeros(channels))
        self.register_buffer("scale_factor", torch.zeros(1))

    def forward(self, x):
        shape = x.shape
        if x.dim() < 2:
            x = x.reshape(-1, 1)
        use_global = (not self.training) if self.use_global_stats is None \\
            else self.use_global_stats
        if use_global:
            f = self.scale_factor
            factor = torch.where(f == 0, torch.zeros_like(f), 1.0 / f)
            y = F.batch_norm(x, self.running_mean * factor, self.running_var * factor,
                             None, None, False, 0.0, self.eps)
            return y.reshape(shape)
        dims = [0] + list(range(2, x.dim()))
        y = F.batch_norm(x, None, None, None, None, True, 0.0, self.eps)
        with torch.no_grad():
            m = x.numel() // x.shape[1]
            var, mean = torch.var_mean(x.detach(), dim=dims, correction=0)
            self.scale_factor.mul_(self.maf).add_(1.0)
            self.running_mean.mul_(self.maf).add_(mean)
            self.running_var.mul_(self.maf).add_(var, alpha=m / max(m - 1, 1))
        return y.reshape(shape)
''')

helper("caffe_reshape", '''
def caffe_reshape(x, dims, axis=0, num_axes=-1):
    """Caffe's Reshape: replaces axes [axis, axis + num_axes) by ``dims``, where
    0 copies the replaced axis and -1 is inferred."""
    nd = x.dim()
    start = axis if axis >= 0 else nd + axis + 1
    end = nd if num_axes == -1 else start + num_axes
    middle = [x.shape[start + i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(list(x.shape[:start]) + middle + list(x.shape[end:]))
''')

helper("caffe_crop", '''
def caffe_crop(x, like, axis, offsets):
    """Caffe's Crop: x cut to like's size on every axis from ``axis`` on."""
    index = [slice(None)] * x.dim()
    for i in range(axis, x.dim()):
        off = offsets[0] if len(offsets) == 1 else (offsets[i - axis] if offsets else 0)
        index[i] = slice(off, off + like.shape[i])
    return x[tuple(index)]
''')

helper("caffe_softmax_loss", '''
def caffe_softmax_loss(x, label, axis=1, ignore_label=None, normalization="VALID"):
    """Caffe's SoftmaxWithLoss: mean negative log probability of the labels over
    the positions (not ignored), normalised as Caffe's normalization mode says."""
    logp = torch.log_softmax(x, dim=axis).movedim(axis, -1)
    logp = logp.reshape(-1, logp.shape[-1])
    lab = label.reshape(-1).long()
    valid = torch.ones_like(lab, dtype=torch.bool) if ignore_label is None \\
        else lab != ignore_label
    picked = logp.gather(1, torch.where(valid, lab, torch.zeros_like(lab))[:, None])[:, 0]
    total = -(picked.clamp(min=math.log(1.17549435e-38)) * valid).sum()
    outer = math.prod(x.shape[:axis])
    return total / caffe_loss_normalizer(normalization, outer, lab.numel() // max(1, outer),
                                         valid.sum())
''')

helper("caffe_contrastive_loss", '''
def caffe_contrastive_loss(a, b, similar, margin=1.0, legacy_version=False):
    """Caffe's ContrastiveLoss: d^2 for similar pairs, max(margin - d, 0)^2 for
    dissimilar ones (legacy: max(margin - d^2, 0)), summed over 2N."""
    n = a.shape[0]
    dist_sq = ((a - b).reshape(n, -1) ** 2).sum(1)
    if legacy_version:
        far = (margin - dist_sq).clamp(min=0)
    else:
        far = (margin - dist_sq.sqrt()).clamp(min=0) ** 2
    sim = similar.reshape(n).long() != 0
    return torch.where(sim, dist_sq, far).sum() / n / 2
''')

helper("caffe_normalize", '''
def caffe_normalize(x, scale, across_spatial=True, eps=1e-10):
    """SSD's Normalize: x over its L2 norm (whole item, or per position across
    channels), times a learned scale (one value, or one per channel)."""
    n, c = x.shape[0], x.shape[1]
    v = x.reshape(n, c, -1)
    if across_spatial:
        norm = torch.sqrt((v * v).reshape(n, -1).sum(1) + eps).view(n, 1, 1)
    else:
        norm = torch.sqrt((v * v).sum(1, keepdim=True) + eps)
    s = scale if scale.dim() == 0 else scale.view(1, -1, 1)
    return (v / norm * s).reshape(x.shape)
''')

helper("Constant", '''
class Constant(nn.Module):
    """A value Caffe computes from shapes only (PriorBox): stored with the weights,
    valid for the input size the file was generated for."""

    def __init__(self, shape, made_for):
        super().__init__()
        self.made_for = made_for
        self.register_buffer("value", torch.zeros(shape))

    def forward(self, *inputs):
        got = [tuple(t.shape[2:]) for t in inputs]
        if got != self.made_for:
            raise ValueError("this constant was generated for spatial sizes %s, got %s; "
                             "regenerate model.py for the new input size"
                             % (self.made_for, got))
        return self.value
''')

helper("caffe_max_pool2d_with_mask", '''
def caffe_max_pool2d_with_mask(x, kernel, stride, pad, ceil_mode=True):
    """Caffe's MAX pooling with its mask top: the argmax as h * W + w in the
    unpadded input (-1 where only padding was seen), as a float tensor."""
    size = [int(n) for n in x.shape[-2:]]
    _, span = caffe_pool_windows(size, kernel, stride, pad, ceil_mode)
    xp = F.pad(x, (pad[1], span[1] - size[1] - pad[1], pad[0], span[0] - size[0] - pad[0]),
              value=torch.finfo(x.dtype).min)
    y, idx = F.max_pool2d(xp, kernel, stride, return_indices=True)
    h = torch.div(idx, span[1], rounding_mode="floor") - pad[0]
    w = idx % span[1] - pad[1]
    inside = (h >= 0) & (h < size[0]) & (w >= 0) & (w < size[1])
    mask = torch.where(inside, h * size[1] + w, torch.full_like(h, -1))
    return y, mask.to(x.dtype)
''')

helper("caffe_argmax", '''
def caffe_argmax(x, top_k=1, out_max_val=False, axis=None):
    """Caffe's ArgMax: top_k indices (as floats) of each item, or along ``axis``;
    ties go to the larger index, as Caffe's descending (value, index) sort does."""
    dim = 1 if axis is None else axis
    data = x.reshape(x.shape[0], -1) if axis is None else x
    n = data.shape[dim]
    vals, order = torch.sort(data.flip(dim), dim=dim, descending=True, stable=True)
    vals = vals.narrow(dim, 0, top_k)
    idx = ((n - 1) - order.narrow(dim, 0, top_k)).to(x.dtype)
    if axis is not None:
        return vals if out_max_val else idx
    shape = [1] * max(x.dim(), 3)
    shape[0], shape[2] = x.shape[0], top_k
    if out_max_val:
        shape[1] = 2
        return torch.stack([idx, vals], 1).reshape(shape)
    return idx.reshape(shape)
''')

helper("caffe_interp", '''
def _interp_axis(n_in, n_out):
    """Source rows and weights of DeepLab's corner-aligned resize, in float32."""
    if n_out > 1:
        ratio = torch.tensor(n_in - 1, dtype=torch.float32) / torch.tensor(
            n_out - 1, dtype=torch.float32)
    else:
        ratio = torch.tensor(0.0)
    pos = ratio * torch.arange(n_out, dtype=torch.float32)
    i0 = pos.long()
    i1 = i0 + (i0 < n_in - 1).long()
    w1 = pos - i0.float()
    return i0, i1, 1.0 - w1, w1


def caffe_interp(x, like=None, zoom=None, shrink=None, height=None, width=None,
                 pad_beg=0, pad_end=0):
    """DeepLab's Interp: crop by the (non-positive) pads, then a bilinear resize with
    corners aligned to like's size, height x width, or the zoom/shrink factors."""
    h_in = x.shape[2] + pad_beg + pad_end
    w_in = x.shape[3] + pad_beg + pad_end
    if like is not None:
        h_out, w_out = like.shape[2], like.shape[3]
    elif height is not None:
        h_out, w_out = height, width
    else:
        h_out, w_out = h_in, w_in
        if shrink is not None:
            h_out, w_out = (h_out - 1) // shrink + 1, (w_out - 1) // shrink + 1
        if zoom is not None:
            h_out, w_out = h_out + (h_out - 1) * (zoom - 1), w_out + (w_out - 1) * (zoom - 1)
    x = x[:, :, -pad_beg:-pad_beg + h_in, -pad_beg:-pad_beg + w_in]
    if (h_in, w_in) == (h_out, w_out):
        return x.contiguous()
    h0, h1, hw0, hw1 = (t.to(x.device) for t in _interp_axis(h_in, h_out))
    w0, w1, ww0, ww1 = (t.to(x.device) for t in _interp_axis(w_in, w_out))
    hw0, hw1 = hw0.to(x.dtype).view(-1, 1), hw1.to(x.dtype).view(-1, 1)
    ww0, ww1 = ww0.to(x.dtype), ww1.to(x.dtype)
    top, bottom = x.index_select(2, h0), x.index_select(2, h1)
    return hw0 * (ww0 * top.index_select(3, w0) + ww1 * top.index_select(3, w1)) + \\
        hw1 * (ww0 * bottom.index_select(3, w0) + ww1 * bottom.index_select(3, w1))
''')

helper("caffe_unpool", '''
def caffe_unpool(x, mask, size=None, scale=(2, 2), pad_out=(0, 0)):
    """SegNet's Upsample: each value goes to the position (h * W + w) its max-pooling
    mask names in a zero top of ``size`` (or scale x the input, minus pad_out)."""
    n, c = x.shape[0], x.shape[1]
    if size is None:
        size = (x.shape[2] * scale[0] - pad_out[0], x.shape[3] * scale[1] - pad_out[1])
    idx = mask.reshape(n, c, -1).long()
    if idx.numel() and bool((idx >= size[0] * size[1]).any()):
        raise ValueError("upsample top index out of range: check the scale matches the "
                         "pooling layer that made the mask")
    top = x.new_zeros((n, c, size[0] * size[1]))
    return top.scatter(2, idx, x.reshape(n, c, -1)).view(n, c, size[0], size[1])
''')

helper("caffe_spp", '''
def caffe_spp(x, pyramid_height, mode):
    """Caffe's SPP: level l pools into 2^l x 2^l bins (ceil-sized windows, centred
    padding); the flattened levels are concatenated (one level: the pooled map)."""
    h, w = int(x.shape[2]), int(x.shape[3])
    levels = []
    for level in range(pyramid_height):
        bins = 2 ** level
        kh, kw = math.ceil(h / bins), math.ceil(w / bins)
        pad = ((kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2)
        levels.append(caffe_pool2d(x, mode, kernel=(kh, kw), stride=(kh, kw), pad=pad))
    if pyramid_height == 1:
        return levels[0]
    return torch.cat([y.reshape(x.shape[0], -1) for y in levels], 1)
''')

helper("caffe_im2col", '''
def caffe_im2col(x, axis, kernel, stride, pad, dilation):
    """Caffe's Im2col over the two axes after ``axis``: (channels x kernel window)
    columns laid out on the output grid."""
    lead = x.shape[:axis]
    x = x.reshape(-1, *x.shape[axis:])
    n, c, h, w = x.shape
    oh = (h + 2 * pad[0] - (dilation[0] * (kernel[0] - 1) + 1)) // stride[0] + 1
    ow = (w + 2 * pad[1] - (dilation[1] * (kernel[1] - 1) + 1)) // stride[1] + 1
    cols = F.unfold(x, kernel, dilation, pad, stride)
    return cols.reshape(*lead, c * kernel[0] * kernel[1], oh, ow)
''')

helper("c_round", '''
def c_round(x):
    """C's round(): halves away from zero (in float64, exact for float32 inputs)."""
    x = x.to(torch.float64)
    return torch.sign(x) * torch.floor(x.abs() + 0.5)
''')

helper("caffe_roi_pool", '''
def caffe_roi_pool(x, rois, pooled_h, pooled_w, spatial_scale):
    """Fast R-CNN's ROIPooling: the max of each bin of each ROI (rows [batch, x1, y1,
    x2, y2] scaled then rounded); an empty bin is 0, NaNs never win."""
    n, c, h, w = x.shape
    r = rois.detach().reshape(-1, 5).to(torch.float32)
    batch = r[:, 0].long()
    if bool(((batch < 0) | (batch >= n)).any()):
        raise ValueError("ROIPooling: roi batch index out of range [0, %d)" % n)
    box = c_round(r[:, 1:5] * torch.tensor(spatial_scale, dtype=torch.float32)).long()
    x1, y1, x2, y2 = box.unbind(1)
    bin_h = torch.clamp(y2 - y1 + 1, min=1).float() / float(pooled_h)
    bin_w = torch.clamp(x2 - x1 + 1, min=1).float() / float(pooled_w)
    ph = torch.arange(pooled_h, dtype=torch.float32)
    pw = torch.arange(pooled_w, dtype=torch.float32)
    hs = (torch.floor(ph[None] * bin_h[:, None]).long() + y1[:, None]).clamp(0, h)
    he = (torch.ceil((ph[None] + 1) * bin_h[:, None]).long() + y1[:, None]).clamp(0, h)
    ws = (torch.floor(pw[None] * bin_w[:, None]).long() + x1[:, None]).clamp(0, w)
    we = (torch.ceil((pw[None] + 1) * bin_w[:, None]).long() + x1[:, None]).clamp(0, w)
    x = x.masked_fill(torch.isnan(x), -float("inf"))
    lowest = torch.finfo(torch.float32).min
    top = x.new_zeros((r.shape[0], c, pooled_h, pooled_w))
    for i, b in enumerate(batch.tolist()):
        for p in range(pooled_h):
            h0, h1 = int(hs[i, p]), int(he[i, p])
            for q in range(pooled_w):
                w0, w1 = int(ws[i, q]), int(we[i, q])
                if h1 > h0 and w1 > w0:
                    top[i, :, p, q] = x[b, :, h0:h1, w0:w1].amax((1, 2)).clamp(min=lowest)
    return top
''')

helper("caffe_psroi_pool", '''
def caffe_psroi_pool(x, rois, output_dim, group_size, spatial_scale):
    """R-FCN's PSROIPooling: bin (i, j) of output channel d averages input channel
    (d * k + i) * k + j over the bin (float64 summed-area table); empty bins are 0."""
    n, c, h, w = x.shape
    k = group_size
    r = rois.detach().reshape(-1, 5).to(torch.float32)
    batch = r[:, 0].long()
    if bool(((batch < 0) | (batch >= n)).any()):
        raise ValueError("PSROIPooling: roi batch index out of range [0, %d)" % n)
    scale = torch.tensor(spatial_scale, dtype=torch.float32)
    rnd = c_round(r[:, 1:5]).to(torch.float32)
    x1, y1 = rnd[:, 0] * scale, rnd[:, 1] * scale
    x2, y2 = (rnd[:, 2] + 1) * scale, (rnd[:, 3] + 1) * scale
    bin_h = torch.clamp(y2 - y1, min=0.1) / float(k)
    bin_w = torch.clamp(x2 - x1, min=0.1) / float(k)
    g = torch.arange(k, dtype=torch.float32)
    hs = torch.floor(g[None] * bin_h[:, None] + y1[:, None]).long().clamp(0, h)
    he = torch.ceil((g[None] + 1) * bin_h[:, None] + y1[:, None]).long().clamp(0, h)
    ws = torch.floor(g[None] * bin_w[:, None] + x1[:, None]).long().clamp(0, w)
    we = torch.ceil((g[None] + 1) * bin_w[:, None] + x1[:, None]).long().clamp(0, w)
    gi = torch.arange(k)
    chan = (torch.arange(output_dim)[:, None, None] * k + gi[None, :, None]) * k \\
        + gi[None, None, :]
    sat = x.new_zeros((n, c, h + 1, w + 1), dtype=torch.float64)
    sat[:, :, 1:, 1:] = x.to(torch.float64).cumsum(2).cumsum(3)
    flat = sat.reshape(-1)
    base = (batch[:, None, None, None] * c + chan[None]) * ((h + 1) * (w + 1))
    hs, he = hs[:, None, :, None], he[:, None, :, None]
    ws, we = ws[:, None, None, :], we[:, None, None, :]

    def at(hh, ww):
        return flat[base + hh * (w + 1) + ww]
    total = at(he, we) - at(hs, we) - at(he, ws) + at(hs, ws)
    area = ((he - hs) * (we - ws)).to(torch.float64)
    empty = (he <= hs) | (we <= ws)
    top = torch.where(empty, torch.zeros_like(total), total / area.clamp(min=1))
    return top.to(x.dtype)
''')

helper("ssd_decode", '''
def ssd_decode(loc, prior, var, code_type, variance_in_target=False):
    """SSD's DecodeBBox for (P, 4) offsets against (P, 4) priors: CORNER (1),
    CENTER_SIZE (2) or CORNER_SIZE (3), float32 step by step as Caffe's CPU code."""
    v = torch.ones_like(var) if variance_in_target else var
    if code_type == 1:
        return prior + v * loc
    pw = prior[:, 2] - prior[:, 0]
    ph = prior[:, 3] - prior[:, 1]
    if code_type == 3:
        return prior + (v * loc) * torch.stack([pw, ph, pw, ph], -1)
    pcx = ((prior[:, 0].double() + prior[:, 2]) / 2.0).float()
    pcy = ((prior[:, 1].double() + prior[:, 3]) / 2.0).float()
    cx = (v[:, 0] * loc[:, 0]) * pw + pcx
    cy = (v[:, 1] * loc[:, 1]) * ph + pcy
    w = torch.exp(v[:, 2] * loc[:, 2]) * pw
    h = torch.exp(v[:, 3] * loc[:, 3]) * ph
    cx, cy, w, h = cx.double(), cy.double(), w.double(), h.double()
    return torch.stack([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], -1).float()
''')

helper("ssd_nms", '''
def ssd_nms(boxes, scores, score_threshold, nms_threshold, eta=1.0, top_k=-1):
    """SSD's ApplyNMSFast: indices above score_threshold, best first (top_k of
    them), each kept unless it overlaps a kept box by more than the threshold."""
    cand = torch.nonzero(scores > score_threshold).reshape(-1)
    order = cand[torch.sort(scores[cand], descending=True, stable=True)[1]]
    if top_k > -1:
        order = order[:top_k]
    if order.numel() == 0:
        return []
    ranked = boxes[order]
    iou = ssd_overlaps(ranked, ranked).tolist()
    thr = torch.tensor(nms_threshold, dtype=torch.float32)
    kept = []
    for j in range(order.numel()):
        if all(iou[j][k] <= float(thr) for k in kept):
            kept.append(j)
            if eta < 1 and float(thr) > 0.5:
                thr = thr * torch.tensor(eta, dtype=torch.float32)
    return [int(order[j]) for j in kept]
''')

helper("ssd_detection_output", '''
def ssd_detection_output(loc, conf, prior, num_classes, share_location=True,
                         background_label_id=0, code_type=2, variance_in_target=False,
                         confidence_threshold=None, nms_threshold=0.3, eta=1.0, top_k=-1,
                         keep_top_k=-1):
    """SSD's DetectionOutput: decode, per-class NMS, keep_top_k by score; rows
    [image, label, score, xmin, ymin, xmax, ymax] in a (1, 1, K, 7) tensor, K data
    dependent (no detection at all: one row of -1 per image)."""
    device, num = loc.device, loc.shape[0]
    prior = prior.detach().float().cpu().reshape(-1)
    p = prior.numel() // 8
    boxes_p, vars_p = prior[:p * 4].reshape(p, 4), prior[p * 4:p * 8].reshape(p, 4)
    loc_classes = 1 if share_location else num_classes
    loc = loc.detach().float().cpu().reshape(num, p, loc_classes, 4)
    conf = conf.detach().float().cpu().reshape(num, p, num_classes)
    if confidence_threshold is None:
        confidence_threshold = -torch.finfo(torch.float32).max
    rows = []
    for i in range(num):
        decoded = [ssd_decode(loc[i, :, c], boxes_p, vars_p, code_type, variance_in_target)
                   for c in range(loc_classes)]
        kept = {}
        for c in range(num_classes):
            if c != background_label_id:
                kept[c] = ssd_nms(decoded[0 if share_location else c], conf[i, :, c],
                                  confidence_threshold, nms_threshold, eta, top_k)
        if keep_top_k > -1 and sum(len(k) for k in kept.values()) > keep_top_k:
            scored = [(float(conf[i, j, c]), c, j) for c in sorted(kept) for j in kept[c]]
            scored.sort(key=lambda t: -t[0])
            kept = {}
            for _, c, j in scored[:keep_top_k]:
                kept.setdefault(c, []).append(j)
        for c in sorted(kept):
            boxes = decoded[0 if share_location else c]
            for j in kept[c]:
                rows.append(torch.cat([torch.tensor([i, c, float(conf[i, j, c])]), boxes[j]]))
    if not rows:
        out = torch.full((num, 7), -1.0)
        out[:, 0] = torch.arange(num, dtype=torch.float32)
    else:
        out = torch.stack(rows)
    return out.to(device).view(1, 1, -1, 7)
''')

helper("darknet_boxes", '''
def darknet_boxes(x, anchors, classes, softmax=False, net_size=None, scale_xy=1.0,
                  thresh=0.0, with_map=False):
    """Darknet's [yolo] / [region] output: one row per (cell, anchor), row
    (y * W + x) * A + a, holding cx, cy, w, h relative to the image, the objectness
    and objectness * class probability (0 unless above thresh); with_map: also the
    activated map Darknet's layer outputs."""
    n, _, h, w = x.shape
    a, cell = len(anchors), 5 + classes
    m = x.view(n, a, cell, h, w)
    scale_xy = float(torch.tensor(scale_xy, dtype=torch.float32))    # the proto's float32
    xy = torch.sigmoid(m[:, :, 0:2]) * scale_xy - 0.5 * (scale_xy - 1)
    wh = m[:, :, 2:4]
    obj = torch.sigmoid(m[:, :, 4:5])
    cls = torch.softmax(m[:, :, 5:], 2) if softmax else torch.sigmoid(m[:, :, 5:])
    norm_w, norm_h = (float(w), float(h)) if net_size is None else net_size
    anchor = torch.tensor(anchors, dtype=torch.float32).to(x.device, x.dtype)
    gx = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, w)
    gy = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1)
    cx = (xy[:, :, 0] + gx) / w
    cy = (xy[:, :, 1] + gy) / h
    bw = torch.exp(wh[:, :, 0]) * anchor[:, 0].view(1, a, 1, 1) / norm_w
    bh = torch.exp(wh[:, :, 1]) * anchor[:, 1].view(1, a, 1, 1) / norm_h
    probs = obj * cls
    probs = torch.where(probs > thresh, probs, torch.zeros_like(probs))
    boxes = torch.cat([torch.stack([cx, cy, bw, bh], 2), obj, probs], 2)
    rows = boxes.permute(0, 3, 4, 1, 2).reshape(n, h * w * a, cell)
    if not with_map:
        return rows
    return rows, torch.cat([xy, wh, obj, cls], 2).view(n, a * cell, h, w)
''')

helper("caffe_loss_normalizer", '''
def caffe_loss_normalizer(mode, outer, inner, valid_count):
    """Caffe's get_normalizer() for a loss, at least 1."""
    if mode == "FULL":
        return float(max(1, outer * inner))
    if mode == "BATCH_SIZE":
        return float(max(1, outer))
    if mode == "NONE":
        return 1.0
    return valid_count.clamp(min=1) if torch.is_tensor(valid_count) else float(max(1, valid_count))
''')

helper("caffe_sigmoid_xent_loss", '''
def caffe_sigmoid_xent_loss(x, target, ignore_label=None, normalization="BATCH_SIZE"):
    """Caffe's SigmoidCrossEntropyLoss in its stable form
    x (t - [x >= 0]) - log(1 + exp(x - 2 x [x >= 0])), summed, negated, normalised."""
    t = target.detach().reshape(x.shape).to(x.dtype)
    pos = (x >= 0).to(x.dtype)
    elem = x * (t - pos) - torch.log1p(torch.exp(x - 2 * x * pos))
    outer = x.shape[0] if x.dim() else 1
    inner = x.numel() // outer if outer else 0
    count = x.numel()
    if ignore_label is not None:
        valid = target.detach().long().reshape(x.shape) != ignore_label
        elem = elem * valid
        count = valid.sum().to(x.dtype)
    return -elem.sum() / caffe_loss_normalizer(normalization, outer, inner, count)
''')

helper("caffe_multinomial_logistic_loss", '''
def caffe_multinomial_logistic_loss(prob, label):
    """Caffe's MultinomialLogisticLoss: mean -log(max(prob[label], 1e-20)) over items."""
    num = prob.shape[0]
    picked = prob.reshape(num, -1).gather(1, label.detach().long().reshape(num, 1))
    return -picked.clamp(min=1e-20).log().sum() / num
''')

helper("caffe_infogain_loss", '''
def caffe_infogain_loss(x, label, infogain, axis=1, ignore_label=None, normalization="VALID",
                        with_prob=False):
    """Caffe's InfogainLoss: -sum over positions of H[label] . log(max(softmax(x), 1e-20)),
    normalised (with_prob: also the softmax, Caffe's optional second top)."""
    prob = torch.softmax(x, dim=axis)
    c = x.shape[axis]
    outer, inner = math.prod(x.shape[:axis]), math.prod(x.shape[axis + 1:])
    lab = label.detach().long().reshape(outer, inner)
    h = infogain.detach().reshape(c, c).to(x.dtype)
    count = outer * inner
    valid = None
    if ignore_label is not None:
        valid = lab != ignore_label
        lab = torch.where(valid, lab, torch.zeros_like(lab))
    terms = h[lab].permute(0, 2, 1) * prob.reshape(outer, c, inner).clamp(min=1e-20).log()
    per_position = terms.sum(1)
    if valid is not None:
        per_position = per_position * valid
        count = valid.sum().to(x.dtype)
    loss = -per_position.sum() / caffe_loss_normalizer(normalization, outer, inner, count)
    return (loss, prob) if with_prob else loss
''')

helper("caffe_hinge_loss", '''
def caffe_hinge_loss(x, label, l2=False):
    """Caffe's HingeLoss: sum of max(0, 1 -+ x) (+ for the true class), or its
    squares (L2), over the items, divided by their number."""
    num = x.shape[0]
    x2 = x.reshape(num, -1)
    sign = torch.ones_like(x2).scatter(1, label.detach().long().reshape(num, 1), -1.0)
    t = (1 + sign * x2).clamp(min=0)
    return ((t * t).sum() if l2 else t.sum()) / num
''')

helper("caffe_smooth_l1_loss", '''
def caffe_smooth_l1_loss(pred, target, inside=None, outside=None, sigma=1.0, legacy_weight=None):
    """Smooth L1 summed over the items, divided by their number: py-faster-rcnn's
    sigma form with inside/outside weights, or fast-rcnn's (legacy_weight) form."""
    num = pred.shape[0] if pred.dim() else 1
    sigma = float(torch.tensor(sigma, dtype=torch.float32))      # the proto's float32
    diff = pred - target.reshape(pred.shape)
    if legacy_weight is not None:
        d = legacy_weight.detach().reshape(pred.shape) * diff
        ad = d.abs()
        return torch.where(ad < 1, 0.5 * d * d, ad - 0.5).sum() / num
    s2 = sigma * sigma
    if inside is not None:
        diff = inside.detach().reshape(pred.shape) * diff
    ad = diff.abs()
    f = torch.where(ad < 1.0 / s2, (0.5 * s2) * diff * diff, ad - 0.5 / s2)
    if outside is not None:
        f = outside.detach().reshape(pred.shape) * f
    return f.sum() / num
''')

helper("caffe_accuracy", '''
def caffe_accuracy(x, label, axis=1, top_k=1, ignore_label=None, per_class=False):
    """Caffe's Accuracy: the share of positions whose label scores among the top_k
    (ties count against it); per_class: also each class's accuracy."""
    x = x.detach()
    c = x.shape[axis]
    outer, inner = math.prod(x.shape[:axis]), math.prod(x.shape[axis + 1:])
    x3 = x.reshape(outer, c, inner)
    lab = label.detach().long().reshape(outer, 1, inner)
    valid = None
    count = torch.tensor(outer * inner, device=x.device)
    if ignore_label is not None:
        valid = (lab != ignore_label).reshape(outer, inner)
        lab = torch.where(lab != ignore_label, lab, torch.zeros_like(lab))
        count = valid.sum()
    better = (x3 >= x3.gather(1, lab)).sum(1) - 1
    correct = better < top_k
    if valid is not None:
        correct = correct & valid
    acc = correct.sum().to(x.dtype)
    acc = torch.where(count > 0, acc / count.clamp(min=1).to(x.dtype), torch.zeros_like(acc))
    if not per_class:
        return acc
    flat = lab.reshape(-1)
    weight = torch.ones(flat.shape, dtype=x.dtype, device=x.device) if valid is None \\
        else valid.reshape(-1).to(x.dtype)
    totals = x.new_zeros(c).index_add_(0, flat, weight)
    hits = x.new_zeros(c).index_add_(0, flat, correct.reshape(-1).to(x.dtype))
    return acc, torch.where(totals > 0, hits / totals.clamp(min=1), torch.zeros_like(totals))
''')

helper("caffe_lstm_unit", '''
def caffe_lstm_unit(c_prev, gates, cont):
    """Caffe's LSTMUnit: gates ordered i, f, o, g; cont == 0 zeroes the forget gate
    (a new sequence starts); returns the new cell and hidden state."""
    hidden = c_prev.shape[-1]
    i = torch.sigmoid(gates[..., :hidden])
    f = torch.sigmoid(gates[..., hidden:2 * hidden])
    o = torch.sigmoid(gates[..., 2 * hidden:3 * hidden])
    g = torch.tanh(gates[..., 3 * hidden:])
    cont = cont.detach().to(gates.dtype).unsqueeze(-1)
    f = torch.where(cont == 0, torch.zeros_like(f), cont * f)
    c = f * c_prev + i * g
    return c, o * torch.tanh(c)
''')

helper("caffe_carried_state", '''
def caffe_carried_state(prev, num, hidden, like):
    """The state a Caffe RNN/LSTM starts from: zero at first, then the last forward's
    final state (a smaller batch keeps its leading values, a larger one restarts)."""
    if prev is not None and prev.numel() >= num * hidden:
        return prev.reshape(-1)[:num * hidden].reshape(num, hidden).to(like)
    return like.new_zeros((num, hidden))
''')

helper("CaffeLSTM", '''
class CaffeLSTM(Params):
    """Caffe's LSTM layer over (T, N, ...) inputs with cont (T, N) flags: weight,
    bias, [static weight], recurrent weight as in the caffemodel.  Without exposed
    hidden inputs, each forward starts from the previous one's final (h, c)."""

    def __init__(self, hidden, **shapes):
        super().__init__(**shapes)
        self.blob_names = list(shapes)         # caffemodel order (parameters() dedups shares)
        self.hidden = hidden
        self.state = None                      # (h, c) carried across forwards

    def reset(self):
        self.state = None

    def forward(self, x, cont, x_static=None, h0=None, c0=None):
        weights = [getattr(self, k) for k in self.blob_names]
        w_x, b, w_h = weights[0], weights[1], weights[-1]
        t, n = x.shape[0], x.shape[1]
        if h0 is not None:
            h = h0.detach().reshape(n, self.hidden)
            c = c0.detach().reshape(n, self.hidden)
        else:
            prev_h, prev_c = self.state if self.state is not None else (None, None)
            h = caffe_carried_state(prev_h, n, self.hidden, x)
            c = caffe_carried_state(prev_c, n, self.hidden, x)
        x_gates = F.linear(x.reshape(t, n, -1), w_x, b)
        static = F.linear(x_static.reshape(n, -1), weights[2]) if x_static is not None else None
        cont = cont.detach().to(x.dtype)
        hs = []
        for step in range(t):
            gates = F.linear(h * cont[step].unsqueeze(-1), w_h) + x_gates[step]
            if static is not None:
                gates = gates + static
            c, h = caffe_lstm_unit(c, gates, cont[step])
            hs.append(h)
        if h0 is None:
            self.state = (h.detach(), c.detach())
        out = torch.stack(hs, 0)
        if h0 is None:
            return out
        return out, h.detach().reshape(1, n, -1), c.detach().reshape(1, n, -1)
''')

helper("CaffeRNN", '''
class CaffeRNN(Params):
    """Caffe's RNN layer over (T, N, ...) inputs with cont (T, N) flags:
    h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_s x_static]),
    o_t = tanh(W_ho h_t + b_o).  Without exposed hidden inputs, each forward starts
    from the previous one's final h."""

    def __init__(self, hidden, **shapes):
        super().__init__(**shapes)
        self.blob_names = list(shapes)         # caffemodel order (parameters() dedups shares)
        self.hidden = hidden
        self.state = None                      # h carried across forwards

    def reset(self):
        self.state = None

    def forward(self, x, cont, x_static=None, h0=None):
        weights = [getattr(self, k) for k in self.blob_names]
        w_xh, b_h = weights[0], weights[1]
        w_hh, w_ho, b_o = weights[-3:]
        t, n = x.shape[0], x.shape[1]
        if h0 is not None:
            h = h0.detach().reshape(n, self.hidden)
        else:
            h = caffe_carried_state(self.state, n, self.hidden, x)
        x_in = F.linear(x.reshape(t, n, -1), w_xh, b_h)
        static = F.linear(x_static.reshape(n, -1), weights[2]) if x_static is not None else None
        cont = cont.detach().to(x.dtype).unsqueeze(-1)
        hs = []
        for step in range(t):
            pre = F.linear(h * cont[step], w_hh) + x_in[step]
            if static is not None:
                pre = pre + static
            h = torch.tanh(pre)
            hs.append(h)
        if h0 is None:
            self.state = h.detach()
        out = torch.tanh(F.linear(torch.stack(hs, 0), w_ho, b_o))
        if h0 is None:
            return out
        return out, h.detach().reshape(1, n, -1)
''')

helper("ssd_eval_overlap", '''
def ssd_eval_overlap(a, b):
    """JaccardOverlap of two [x1, y1, x2, y2] lists as SSD's evaluation computes it:
    widths and sizes in double, the ratio in float32."""
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return 0.0
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0

    def size(r):
        return 0.0 if r[2] < r[0] or r[3] < r[1] else (r[2] - r[0]) * (r[3] - r[1])

    def f32(v):
        return torch.tensor(v, dtype=torch.float32)
    inter = f32(iw * ih)
    return float(inter / (f32(size(a)) + f32(size(b)) - inter))
''')

helper("ssd_detection_evaluate", '''
def ssd_detection_evaluate(det, gt, num_classes, background_label_id=0,
                           overlap_threshold=0.5, evaluate_difficult_gt=True):
    """SSD's DetectionEvaluate: [-1, class, #positives, -1, -1] per class, then per
    image and label each detection (best score first) as [image, label, score, tp, fp];
    a (1, 1, K, 5) tensor, K data dependent."""
    bg = background_label_id
    dets = {}
    for r in det.detach().float().cpu().reshape(-1, 7).tolist():
        if int(r[0]) == -1:
            continue
        if int(r[1]) == bg:
            raise ValueError("DetectionEvaluate: background label %d in the detections" % bg)
        dets.setdefault(int(r[0]), {}).setdefault(int(r[1]), []).append((r[2], r[3:7]))
    gts = {}
    for r in gt.detach().float().cpu().reshape(-1, 8).tolist():
        if int(r[0]) == -1:
            break                           # the fork stops at the first unused row
        if int(r[1]) == bg:
            raise ValueError("DetectionEvaluate: background label %d in the labels" % bg)
        gts.setdefault(int(r[0]), {}).setdefault(int(r[1]), []).append((r[3:7], r[7] != 0))
    num_pos = {}
    for labels in gts.values():
        for label, boxes in labels.items():
            n = sum(1 for _, hard in boxes if evaluate_difficult_gt or not hard)
            num_pos[label] = num_pos.get(label, 0) + n
    rows = [[-1, c, num_pos.get(c, 0), -1, -1] for c in range(num_classes) if c != bg]
    threshold = float(torch.tensor(overlap_threshold, dtype=torch.float32))
    for item in sorted(dets):
        labels = gts.get(item, {})
        for label in sorted(dets[item]):
            if label == -1:                 # DetectionOutput's "nothing found" row
                continue
            boxes = sorted(dets[item][label], key=lambda d: -d[0])
            if label not in labels:
                rows += [[item, label, score, 0, 1] for score, _ in dets[item][label]]
                continue
            truth = labels[label]
            visited = [False] * len(truth)
            for score, box in boxes:
                best, jmax = -1.0, -1
                for j, (g, _) in enumerate(truth):
                    o = ssd_eval_overlap(box, g)
                    if o > best:
                        best, jmax = o, j
                tp, fp = 0, 1
                if best >= threshold:
                    if evaluate_difficult_gt or not truth[jmax][1]:
                        tp, fp = (0, 1) if visited[jmax] else (1, 0)
                        visited[jmax] = True
                    else:
                        tp, fp = 0, 0       # matched a difficult box: ignored
                rows.append([item, label, score, tp, fp])
    return torch.tensor(rows, dtype=torch.float32).reshape(1, 1, -1, 5).to(det.device)
''')

helper("rfcn_box_annotator_ohem", '''
def rfcn_box_annotator_ohem(rois, loss, labels, bbox_weights, roi_per_img, ignore_label=-1):
    """R-FCN's BoxAnnotatorOHEM: per image, the roi_per_img rois with the largest loss
    (ties: the earlier roi) keep their label and bbox loss weights; the others get
    ignore_label and zero weights.  Tops are N x 1 x H x W and N x B x H x W."""
    n = rois.shape[0]
    h, w = (list(rois.shape[2:]) + [1, 1])[:2]
    image = rois.detach().reshape(n, 5, -1)[:, 0].reshape(-1).long()
    if image.numel() and int(image.max()) < 0:
        raise ValueError("BoxAnnotatorOHEM: no roi has an image index >= 0")
    order = torch.sort(loss.detach().reshape(-1), descending=True, stable=True).indices
    group = image[order] - (int(image.min()) if image.numel() else 0)   # -1: a group too
    onehot = F.one_hot(group, int(group.max()) + 1 if group.numel() else 1)
    rank = torch.empty_like(order)
    rank[order] = (onehot.cumsum(0) * onehot).sum(1) - 1      # place within its image
    keep = (rank < roi_per_img) & (image >= 0)
    lab = labels.detach().reshape(-1)
    top_labels = torch.where(keep, lab, torch.full_like(lab, float(ignore_label)))
    weights = bbox_weights.detach().reshape(n, -1, h * w)
    top_weights = weights * keep.reshape(n, 1, h * w).to(weights.dtype)
    return top_labels.reshape(n, 1, h, w), top_weights.reshape(n, -1, h, w)
''')

helper("ssd_overlaps", '''
def ssd_overlaps(a, b):
    """Jaccard overlap of every (A, 4) box with every (B, 4) box, SSD's float32 form."""
    def size(r):
        w, h = r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]
        return torch.where((w < 0) | (h < 0), torch.zeros_like(w), w * h)
    a1, b1 = a[:, None], b[None]
    disjoint = ((b1[..., 0] > a1[..., 2]) | (b1[..., 2] < a1[..., 0])
                | (b1[..., 1] > a1[..., 3]) | (b1[..., 3] < a1[..., 1]))
    iw = torch.minimum(a1[..., 2], b1[..., 2]) - torch.maximum(a1[..., 0], b1[..., 0])
    ih = torch.minimum(a1[..., 3], b1[..., 3]) - torch.maximum(a1[..., 1], b1[..., 1])
    inter = iw * ih
    union = (size(a)[:, None] + size(b)[None]) - inter
    ok = ~disjoint & (iw > 0) & (ih > 0)
    return torch.where(ok, inter / torch.where(ok, union, torch.ones_like(union)),
                       torch.zeros_like(inter))
''')

helper("ssd_encode", '''
def ssd_encode(prior, var, box, code_type, variance_in_target=False):
    """SSD's EncodeBBox of (K, 4) boxes against their (K, 4) priors: CORNER (1),
    CENTER_SIZE (2) or CORNER_SIZE (3)."""
    v = torch.ones_like(var) if variance_in_target else var
    if code_type == 1:
        return (box - prior) / v
    pw, ph = prior[:, 2] - prior[:, 0], prior[:, 3] - prior[:, 1]
    if code_type == 3:
        return (box - prior) / torch.stack([pw, ph, pw, ph], -1) / v
    pcx, pcy = (prior[:, 0] + prior[:, 2]) / 2, (prior[:, 1] + prior[:, 3]) / 2
    bw, bh = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    bcx, bcy = (box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2
    return torch.stack([(bcx - pcx) / pw / v[:, 0], (bcy - pcy) / ph / v[:, 1],
                        torch.log(bw / pw) / v[:, 2], torch.log(bh / ph) / v[:, 3]], -1)
''')

helper("ssd_match", '''
def ssd_match(priors, truth, bipartite, overlap_threshold, ignore=None):
    """SSD's MatchBBox of (P, 4) priors to (G, 4) ground truth: each gt first takes its
    best free prior (largest overlap first, ties to the lower prior, then gt), then
    (PER_PREDICTION) each free prior takes its best gt at or above the threshold.
    Returns the gt index per prior (-1 none, -2 ignored) and the overlap recorded."""
    p = priors.shape[0]
    match = torch.full((p,), -1, dtype=torch.long)
    iou = ssd_overlaps(priors, truth)
    usable = iou > 1e-6
    if ignore is not None:
        usable &= ~ignore[:, None]
        match[ignore] = -2
    iou = torch.where(usable, iou, torch.zeros_like(iou))
    overlap = iou.max(1).values if truth.shape[0] else torch.zeros(p)
    free_gt = torch.ones(truth.shape[0], dtype=torch.bool)
    for _ in range(truth.shape[0]):
        ok = usable & (iou > 0) & (match == -1)[:, None] & free_gt[None]
        if not bool(ok.any()):
            break
        masked = torch.where(ok, iou, torch.full_like(iou, -1.0))
        j, g = torch.nonzero(masked == masked.max())[0].tolist()
        match[j], overlap[j], free_gt[g] = g, iou[j, g], False
    if not bipartite:
        above = torch.where(usable & (iou >= overlap_threshold), iou, torch.full_like(iou, -1.0))
        if truth.shape[0]:
            best, best_gt = above.max(1)
            take = (match == -1) & (best >= 0)
            match = torch.where(take, best_gt, match)
            overlap = torch.where(take, best, overlap)
    return match, overlap
''')

helper("ssd_multibox_loss", '''
def ssd_multibox_loss(loc, conf, prior, label, num_classes, share_location=True,
                      background_label_id=0, use_difficult_gt=True, match_type="PER_PREDICTION",
                      overlap_threshold=0.5, ignore_cross_boundary_bbox=False,
                      mining_type="MAX_NEGATIVE", neg_pos_ratio=3.0, neg_overlap=0.5,
                      sample_size=64, code_type=2, encode_variance_in_target=False,
                      bp_inside=False, map_object_to_agnostic=False, loc_loss_type="SMOOTH_L1",
                      conf_loss_type="SOFTMAX", loc_weight=1.0, normalization="VALID",
                      use_loc=True, use_conf=True):
    """SSD's MultiBoxLoss with priors used for matching: match priors to each image's
    ground truth (label rows [image, label, instance, x1, y1, x2, y2, difficult]),
    mine hard negatives, then loc_weight * (smooth L1 or L2 of the encoded offsets)
    plus the softmax or logistic confidence loss, both over the normalizer."""
    num, bg = loc.shape[0], background_label_id
    p = prior.shape[2] // 4 if prior.dim() > 2 else prior.numel() // 8
    loc_classes = 1 if share_location else num_classes
    loc = loc.reshape(num, p, loc_classes, 4)
    conf = conf.reshape(num, p, num_classes)
    flat = prior.detach().reshape(-1).float()
    boxes, variances = flat[:p * 4].reshape(p, 4), flat[p * 4:p * 8].reshape(p, 4)
    log_flt_min = float(torch.log(torch.tensor(torch.finfo(torch.float32).tiny)))
    softmax = conf_loss_type == "SOFTMAX"

    def conf_nll(logits, labels):
        """Softmax loss per row, -log(max(p[label], FLT_MIN)) as Caffe clamps it."""
        nll = -F.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0]
        return nll + (nll.clamp(max=-log_flt_min) - nll).detach()

    def loc_terms(diff):
        """Per coordinate: smooth L1 (sigma 1) or half the squared error."""
        if loc_loss_type == "SMOOTH_L1":
            return torch.where(diff.abs() < 1, 0.5 * diff * diff, diff.abs() - 0.5)
        return 0.5 * diff * diff

    truth = {}                                   # image -> (boxes, labels) in row order
    for r in label.detach().float().cpu().reshape(-1, 8).tolist():
        if int(r[0]) == -1:
            continue
        lab = int(r[1])
        if lab == bg:
            raise ValueError("MultiBoxLoss: background label %d in the labels" % bg)
        if softmax and not 0 <= lab < num_classes:
            raise ValueError("MultiBoxLoss: label %d outside [0, %d)" % (lab, num_classes))
        if 0 <= int(r[0]) < num and (use_difficult_gt or r[7] == 0):
            truth.setdefault(int(r[0]), ([], []))
            truth[int(r[0])][0].append(r[3:7])
            truth[int(r[0])][1].append(lab)
    truth = {i: (torch.tensor(b, dtype=torch.float32), torch.tensor(lab))
             for i, (b, lab) in truth.items()}
    ignore = ((boxes < 0) | (boxes > 1)).any(1) if ignore_cross_boundary_bbox else None
    match = torch.full((num, p, loc_classes), -1, dtype=torch.long)
    overlap = torch.zeros(num, p)
    for i, (gt_boxes, gt_labels) in truth.items():
        m, overlap[i] = ssd_match(boxes, gt_boxes, match_type == "BIPARTITE",
                                  overlap_threshold, ignore)
        if share_location:
            match[i, :, 0] = m
            continue
        matched_label = gt_labels[m.clamp(min=0)]
        for c in range(num_classes):
            if c != bg:
                match[i, :, c] = torch.where((m > -1) & (matched_label == c), m,
                                             torch.full_like(m, -1))

    def gt_label(i, g):
        return torch.stack([truth[a][1][b] for a, b in zip(i.tolist(), g.tolist())]) \\
            if i.numel() else torch.zeros(0, dtype=torch.long)

    def encoded(loc_rows, match):
        """Predicted and target offsets of every matched (image, prior, class)."""
        i, j, c = torch.nonzero(match > -1, as_tuple=True)
        pred = loc_rows[i, j, c]
        gt = torch.stack([truth[a][0][match[a, b, k]] for a, b, k in
                          zip(i.tolist(), j.tolist(), c.tolist())]) if i.numel() \\
            else torch.zeros(0, 4)
        target = ssd_encode(boxes[j], variances[j], gt, code_type, encode_variance_in_target)
        if bp_inside:
            outside = (boxes[j] < 0) | (boxes[j] > 1)
            pred = torch.where(outside, target, pred)
        if encode_variance_in_target:   # the value is scaled, the gradient (as Caffe's) not
            pred = pred + (pred / variances[j] - pred).detach()
            target = target / variances[j]
        return pred, target, i, j

    negatives = None
    if mining_type != "NONE":
        with torch.no_grad():
            m = match[:, :, 0]
            has_gt = torch.tensor([i in truth for i in range(num)])[:, None]
            ii, jj = torch.nonzero(m > -1, as_tuple=True)
            prior_label = torch.full_like(m, bg)
            prior_label[ii, jj] = gt_label(ii, m[ii, jj])
            if softmax:
                score = conf_nll(conf.detach(), prior_label)
            else:
                onehot = ((prior_label[..., None] == torch.arange(num_classes))
                          & (prior_label[..., None] >= 0)).to(conf.dtype)
                score = F.binary_cross_entropy_with_logits(
                    conf.detach(), onehot, reduction="none").sum(-1)
            if mining_type == "HARD_EXAMPLE" and ii.numel():
                pred, target, i, j = encoded(loc.detach(), match)
                score = score.index_put((i, j), loc_terms(pred - target).sum(-1),
                                        accumulate=True)
            if mining_type == "MAX_NEGATIVE":
                eligible = (m == -1) & (overlap < neg_overlap) & has_gt
                ratio = torch.tensor(neg_pos_ratio, dtype=torch.float32)
                cap = ((m > -1).sum(1).float() * ratio).long()
                wanted = torch.minimum(cap, eligible.sum(1))
            else:
                eligible = has_gt.expand(num, p)
                wanted = eligible.sum(1).clamp(max=sample_size)
            masked = torch.where(eligible, score, torch.full_like(score, -float("inf")))
            order = torch.sort(masked, dim=1, descending=True, stable=True).indices
            rank = torch.empty_like(order).scatter_(1, order, torch.arange(p).expand(num, p))
            selected = eligible & (rank < wanted[:, None])
            negatives = (m == -1) & selected
            if mining_type == "HARD_EXAMPLE":
                m = torch.where((m > -1) & ~selected, torch.full_like(m, -1), m)
            match = m[..., None]
    num_matches = int((match > -1).sum())
    norm = caffe_loss_normalizer(normalization, num, p, num_matches)
    total = loc.new_zeros(())
    if use_loc and num_matches >= 1:
        pred, target, _, _ = encoded(loc, match)
        total = total + loc_weight * loc_terms(pred - target.detach()).sum() / norm
    if not use_conf:
        return total
    pi, pj, pc = torch.nonzero(match > -1, as_tuple=True)
    pos_label = gt_label(pi, match[pi, pj, pc])
    if map_object_to_agnostic:
        pos_label = torch.full_like(pos_label, bg + 1)
    if negatives is not None:                    # mined: positives, then negatives
        ni, nj = torch.nonzero(negatives, as_tuple=True)
        if pi.numel() + ni.numel() == 0:
            return total
        rows = torch.cat([conf[pi, pj], conf[ni, nj]], 0)
        if softmax:
            conf_sum = conf_nll(rows, torch.cat([pos_label, torch.full_like(ni, bg)])).sum()
        else:
            target = torch.full_like(rows, float(bg))     # the fork fills with the bg id
            target[torch.arange(pi.numel()), pos_label] = 1.0
            if 0 <= bg < num_classes:
                target[pi.numel():, bg] = 1.0
            conf_sum = F.binary_cross_entropy_with_logits(rows, target, reduction="sum")
    elif num * p == 0:
        return total
    elif softmax:
        labels = torch.full((num, p), bg, dtype=torch.long)
        labels[pi, pj] = pos_label
        conf_sum = conf_nll(conf, labels).sum()
    else:   # the fork steps its target pointer by P, not P * C, per image
        target = torch.full((num * p * num_classes,), float(bg), dtype=conf.dtype)
        target[pi * p + pj * num_classes + pos_label] = 1.0
        conf_sum = F.binary_cross_entropy_with_logits(conf.reshape(-1), target,
                                                      reduction="sum")
    return total + conf_sum / norm
''')
