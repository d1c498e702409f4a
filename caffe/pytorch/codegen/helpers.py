'''Source of the small helpers generated files carry for Caffe maths torch lacks.

Each entry is written into model.py at most once, only when a layer uses it,
so a generated file imports nothing but torch (and math).
'''

HELPERS = {}


def helper(name, source):
    if name in HELPERS:
        raise ValueError("helper %r defined twice" % name)
    HELPERS[name] = source.strip("\n") + "\n"


helper("Params", '''
class Params(nn.Module):
    """A Caffe layer's parameter blobs, by name (shapes as in the caffemodel)."""

    def __init__(self, **shapes):
        super().__init__()
        for name, shape in shapes.items():
            setattr(self, name, nn.Parameter(torch.zeros(shape)))
''')

helper("caffe_pool2d", '''
def caffe_pool2d(x, mode, kernel, stride, pad, ceil_mode=True):
    """Caffe's MAX/AVE pooling: the output size rounds up (ceil_mode) and the last
    window must start inside the image or its leading pad; AVE divides by the window
    clipped to the padded image, padding included."""
    size = [int(n) for n in x.shape[-2:]]
    kernel = [int(k) for k in kernel]
    out = []
    for n, k, s, p in zip(size, kernel, stride, pad):
        q = (n + 2 * p - k) / s
        o = (math.ceil(q) if ceil_mode else math.floor(q)) + 1
        if p and (o - 1) * s >= n + p:
            o -= 1
        out.append(o)
    # explicit padding that covers exactly the windows Caffe visits
    span = [(o - 1) * s + k for o, s, k in zip(out, stride, kernel)]
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
    if normalization == "FULL":
        norm = max(1, lab.numel())
    elif normalization == "BATCH_SIZE":
        norm = max(1, outer)
    elif normalization == "NONE":
        norm = 1
    else:
        norm = valid.sum().clamp(min=1)
    return total / norm
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
