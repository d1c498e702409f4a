"""Vision layers: Convolution, Deconvolution, Im2col, Pooling, LRN, SPP.

Each layer parses and validates its parameters once, in ``__init__``, into
plain tuples, and ``run`` calls the matching native torch op.  Where a torch op
would disagree with Caffe (pooling output sizes, padding larger than half the
kernel, windows hanging over the padded border) the layer pads explicitly and
computes Caffe's numbers itself.
"""
import math

import torch
import torch.nn.functional as F

from .._common import TRAIN
from ..limits import INT_MAX, BlobShapeError, check_shape
from ..proto import shipped as caffe_schema
from ._util import FLT_MAX, canonical_axis
from .base import CaffeLayer
from .registry import register_layer

_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_DECONV_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _int_fields(layer, values, field):
    """Caffe reads these uint32 fields into ``int``: larger values are errors."""
    for v in values:
        if v > INT_MAX:
            raise layer.error("%d does not fit Caffe's int (at most %d)" % (v, INT_MAX),
                              field=field)
    return values


def _spatial_values(layer, cp, name, nsp, default):
    """One value per spatial axis from ``name`` (repeated) or ``name_h``/``name_w``."""
    field = "convolution_param." + (name if name != "kernel" else "kernel_size")
    return _int_fields(layer, _spatial_values_unchecked(layer, cp, name, nsp, default), field)


def _spatial_values_unchecked(layer, cp, name, nsp, default):
    field = "convolution_param." + name
    has_hw = cp.HasField(name + "_h") or cp.HasField(name + "_w")
    repeated = list(getattr(cp, name if name != "kernel" else "kernel_size"))
    if name == "kernel":
        field = "convolution_param.kernel_size"
    if has_hw:
        if nsp != 2:
            raise layer.error("%s_h & %s_w can only be used for 2-D convolution (bottom has %d "
                              "spatial axes)" % (name, name, nsp),
                              field="convolution_param.%s_h" % name)
        if repeated:
            raise layer.error("either %s or %s_h/%s_w should be specified, not both"
                              % (field.split(".")[1], name, name), field=field)
        return (int(getattr(cp, name + "_h")), int(getattr(cp, name + "_w")))
    n = len(repeated)
    if n == 0 and default is not None:
        return (default,) * nsp
    if n == 0 and nsp > 0:
        raise layer.error("kernel_size is missing (give kernel_size, or kernel_h and kernel_w)",
                          field=field)
    if n not in (1, nsp) and not (n == 0 and nsp == 0):
        raise layer.error("%s must be specified once, or once per spatial dimension "
                          "(specified %d times; %d spatial dims)" % (field.split(".")[1], n, nsp),
                          field=field)
    return tuple(int(repeated[0 if n == 1 else i]) for i in range(nsp))


def _conv_geometry(layer, cp, nsp):
    kernel = _spatial_values(layer, cp, "kernel", nsp, None)
    for k in kernel:
        if k <= 0:
            raise layer.error("filter dimensions must be nonzero, got %s" % (list(kernel),),
                              field="convolution_param.kernel_size")
    stride = _spatial_values(layer, cp, "stride", nsp, 1)
    for s in stride:
        if s <= 0:
            raise layer.error("stride dimensions must be nonzero, got %s" % (list(stride),),
                              field="convolution_param.stride")
    pad = _spatial_values(layer, cp, "pad", nsp, 0)
    dil = list(cp.dilation)
    if len(dil) not in (0, 1, nsp):
        raise layer.error("dilation must be specified once, or once per spatial dimension "
                          "(specified %d times; %d spatial dims)" % (len(dil), nsp),
                          field="convolution_param.dilation")
    dilation = tuple(1 if not dil else int(dil[0 if len(dil) == 1 else i]) for i in range(nsp))
    for d in dilation:
        if d <= 0:
            raise layer.error("dilation must be positive, got %s" % (list(dilation),),
                              field="convolution_param.dilation")
    return kernel, stride, pad, dilation


def _im2col_nd(x, kernel, stride, pad, dilation):
    """Caffe's im2col on a (N, C, *spatial) tensor: (N, C*prod(kernel), *out)."""
    nsp = len(kernel)
    if any(pad):
        pads = []
        for p in reversed(pad):
            pads += [p, p]
        x = F.pad(x, pads)
    for i in range(nsp):
        extent = dilation[i] * (kernel[i] - 1) + 1
        x = x.unfold(2 + i, extent, stride[i])
        if dilation[i] > 1:
            x = x[..., ::dilation[i]]
    # x: (N, C, o_1..o_n, k_1..k_n) -> (N, C, k_1..k_n, o_1..o_n)
    perm = [0, 1] + [2 + nsp + i for i in range(nsp)] + [2 + i for i in range(nsp)]
    x = x.permute(perm)
    shp = x.shape
    return x.reshape(shp[0], -1, *shp[2 + nsp:])


class _ConvBase(CaffeLayer):
    num_bottoms = (1, None)
    num_tops = (1, None)
    deconv = False

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        cp = layer_param.convolution_param
        shape = self.bottom_shapes[0]
        for i, s in enumerate(self.bottom_shapes[1:], 1):
            if s != shape:
                raise self.error("all bottoms must have the same shape: bottom[0] %s vs "
                                 "bottom[%d] %s" % (list(shape), i, list(s)))
        nd = len(shape)
        axis = canonical_axis(self, cp.axis, nd, "convolution_param.axis")
        nsp = nd - axis - 1
        self.axis, self.nsp = axis, nsp
        self.kernel, self.stride, self.pad, self.dilation = _conv_geometry(self, cp, nsp)
        channels = shape[axis]
        num_output = int(cp.num_output)
        if num_output <= 0:
            raise self.error("num_output must be positive (got %d)" % num_output,
                             field="convolution_param.num_output")
        group = int(cp.group)
        if group <= 0:
            raise self.error("group must be positive", field="convolution_param.group")
        if channels % group:
            raise self.error("the %d input channels are not divisible by group %d"
                             % (channels, group), field="convolution_param.group")
        if num_output % group:
            raise self.error("num_output %d is not divisible by group %d" % (num_output, group),
                             field="convolution_param.num_output")
        self.channels, self.num_output, self.group = channels, num_output, group
        if self.deconv:
            wshape = (channels, num_output // group) + self.kernel
        else:
            wshape = (num_output, channels // group) + self.kernel
            for i in range(nsp):
                extent = self.dilation[i] * (self.kernel[i] - 1) + 1
                if shape[axis + 1 + i] + 2 * self.pad[i] < extent:
                    raise self.error(
                        "kernel extent %d exceeds the padded input size %d on spatial axis %d"
                        % (extent, shape[axis + 1 + i] + 2 * self.pad[i], i),
                        field="convolution_param.kernel_size")
        self.bias_term = bool(cp.bias_term)
        expected = 1 + int(self.bias_term)
        if len(layer_param.blobs) and len(layer_param.blobs) != expected:
            raise self.error("incorrect number of weight blobs: expected %d, got %d"
                             % (expected, len(layer_param.blobs)))
        w = self.add_param_blob(wshape, cp.weight_filler)
        if tuple(w.shape) != wshape:
            raise self.error("incorrect weight shape: expected %s, got %s"
                             % (list(wshape), w.shape))
        if self.bias_term:
            b = self.add_param_blob((num_output,), cp.bias_filler)
            if tuple(b.shape) != (num_output,):
                raise self.error("incorrect bias shape: expected %s, got %s"
                                 % ([num_output], b.shape))
        self._setup_fn()

    def _setup_fn(self):
        nsp = self.nsp
        table = _DECONV_FN if self.deconv else _CONV_FN
        self._squeeze = nsp == 0
        self._simple = self.axis == 1 and nsp in table
        if nsp == 0:
            self._fn = table[1]
            self._args = ((1,), (0,), (1,))
        elif nsp in table:
            self._fn = table[nsp]
            self._args = (self.stride, self.pad, self.dilation)
        elif not self.deconv:
            self._fn = None  # generic N-D path (im2col + grouped matmul)
        else:
            raise self.error("Deconvolution with %d spatial axes is not supported (at most 3)"
                             % nsp)

    def _apply(self, x, w, b):
        s, p, d = self._args
        if self.deconv:
            return self._fn(x, w, b, s, p, 0, self.group, d)
        return self._fn(x, w, b, s, p, d, self.group)

    def _conv_generic(self, x, w, b):
        n = x.shape[0]
        cols = _im2col_nd(x, self.kernel, self.stride, self.pad, self.dilation)
        out_sp = cols.shape[2:]
        g = self.group
        cols = cols.reshape(n, g, -1, int(math.prod(out_sp)))
        wg = w.reshape(g, self.num_output // g, -1)
        y = torch.matmul(wg.unsqueeze(0), cols).reshape(n, self.num_output, *out_sp)
        if b is not None:
            y = y + b.view(1, -1, *([1] * len(out_sp)))
        return y

    def output_shapes(self, bottom_shapes):
        """Caffe's conv / deconv output sizes, without running anything."""
        out = []
        a = self.axis
        for shape in bottom_shapes:
            spatial = []
            for i in range(self.nsp):
                size = shape[a + 1 + i]
                extent = self.dilation[i] * (self.kernel[i] - 1) + 1
                if self.deconv:
                    spatial.append(self.stride[i] * (size - 1) + extent - 2 * self.pad[i])
                else:
                    spatial.append((size + 2 * self.pad[i] - extent) // self.stride[i] + 1)
            out.append(tuple(shape[:a]) + (self.num_output,) + tuple(spatial))
        return out

    def run(self, bottoms, params):
        w = params[0]
        b = params[1] if self.bias_term else None
        if self._simple:
            s, p, d = self._args
            if self.deconv:
                return [self._fn(x, w, b, s, p, 0, self.group, d) for x in bottoms]
            return [self._fn(x, w, b, s, p, d, self.group) for x in bottoms]
        tops = []
        axis = self.axis
        for x in bottoms:
            lead = x.shape[:axis]
            x2 = x.reshape(-1, *x.shape[axis:])
            if self._squeeze:
                y = self._apply(x2.unsqueeze(-1), w.unsqueeze(-1), b).squeeze(-1)
            elif self._fn is None:
                y = self._conv_generic(x2, w, b)
            else:
                y = self._apply(x2, w, b)
            tops.append(y.reshape(*lead, *y.shape[1:]))
        return tops


@register_layer("Convolution")
class ConvolutionLayer(_ConvBase):
    deconv = False


@register_layer("Deconvolution")
class DeconvolutionLayer(_ConvBase):
    deconv = True


@register_layer("Im2col")
class Im2colLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        cp = layer_param.convolution_param
        shape = self.bottom_shapes[0]
        axis = canonical_axis(self, cp.axis, len(shape), "convolution_param.axis")
        nsp = len(shape) - axis - 1
        if nsp < 1:
            raise self.error("Im2col needs at least one spatial axis after the channel axis",
                             field="convolution_param.axis")
        self.axis, self.nsp = axis, nsp
        self.kernel, self.stride, self.pad, self.dilation = _conv_geometry(self, cp, nsp)
        self._unfold2d = nsp == 2

    def run(self, bottoms, params):
        x = bottoms[0]
        axis = self.axis
        lead = x.shape[:axis]
        x2 = x.reshape(-1, *x.shape[axis:])
        if self._unfold2d:
            n, c, h, w = x2.shape
            oh = (h + 2 * self.pad[0] - (self.dilation[0] * (self.kernel[0] - 1) + 1)) \
                // self.stride[0] + 1
            ow = (w + 2 * self.pad[1] - (self.dilation[1] * (self.kernel[1] - 1) + 1)) \
                // self.stride[1] + 1
            y = F.unfold(x2, self.kernel, self.dilation, self.pad, self.stride)
            y = y.view(n, c * self.kernel[0] * self.kernel[1], oh, ow)
        else:
            y = _im2col_nd(x2, self.kernel, self.stride, self.pad, self.dilation)
        return [y.reshape(*lead, *y.shape[1:])]


# ---------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------
_POOL = caffe_schema().PoolingParameter   # enum numbers: the same in every fork
MAX, AVE, STOCHASTIC = _POOL.MAX, _POOL.AVE, _POOL.STOCHASTIC
CEIL, FLOOR = _POOL.CEIL, _POOL.FLOOR


def _pool_out(size, k, s, p, round_mode):
    q = (size + 2 * p - k) / s
    out = int(math.ceil(q) if round_mode == CEIL else math.floor(q)) + 1
    return out


def _torch_pool_out(size, k, s, p, ceil_mode):
    # ATen's pooling_output_shape (dilation 1)
    num = size + 2 * p - k + ((s - 1) if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


class _PoolPlan:
    """Everything needed to pool one (H, W) input the Caffe way."""

    __slots__ = ("method", "k", "s", "p", "out", "native", "ceil", "pad4", "div", "mask",
                 "train", "H", "W", "Wp", "div_cast")

    def __init__(self, method, H, W, k, s, p, round_mode, train, mask):
        self.method, self.k, self.s, self.p = method, k, s, p
        self.H, self.W = H, W
        self.train, self.mask = train, mask
        oh = _pool_out(H, k[0], s[0], p[0], round_mode)
        ow = _pool_out(W, k[1], s[1], p[1], round_mode)
        if p[0] or p[1]:
            # the last window must start inside the image (or the leading pad)
            if (oh - 1) * s[0] >= H + p[0]:
                oh -= 1
            if (ow - 1) * s[1] >= W + p[1]:
                ow -= 1
        if oh < 0 or ow < 0:        # Caffe's Blob::Reshape CHECK-fails here
            raise ValueError("the pooling window %dx%d (pad %d, %d) does not fit the %dx%d "
                             "input: output size %dx%d" % (k[0], k[1], p[0], p[1], H, W, oh, ow))
        self.out = (oh, ow)
        self.ceil = round_mode == CEIL
        self.native = (method != STOCHASTIC
                       and 2 * p[0] <= k[0] and 2 * p[1] <= k[1]
                       and H + 2 * p[0] >= k[0] and W + 2 * p[1] >= k[1]
                       and _torch_pool_out(H, k[0], s[0], p[0], self.ceil) == oh
                       and _torch_pool_out(W, k[1], s[1], p[1], self.ceil) == ow)
        # explicit padding covering every window exactly: (left, right, top, bottom)
        hp = (oh - 1) * s[0] + k[0]
        wp = (ow - 1) * s[1] + k[1]
        self.pad4 = (p[1], wp - W - p[1], p[0], hp - H - p[0])
        self.Wp = wp
        self.div = self.div_cast = None
        if method == AVE and not self.native:
            div = torch.empty(oh, ow, dtype=torch.float64)
            for i in range(oh):
                hs = i * s[0] - p[0]
                he = min(hs + k[0], H + p[0])
                for j in range(ow):
                    ws = j * s[1] - p[1]
                    we = min(ws + k[1], W + p[1])
                    div[i, j] = (he - hs) * (we - ws)
            self.div = div

    def __call__(self, x):
        m = self.method
        if m == MAX:
            if self.native:
                if self.mask:
                    y, idx = F.max_pool2d(x, self.k, self.s, self.p, 1, self.ceil, True)
                    return [y, idx.to(x.dtype)]
                return [F.max_pool2d(x, self.k, self.s, self.p, 1, self.ceil)]
            xp = F.pad(x, self.pad4, value=-FLT_MAX)
            if not self.mask:
                return [F.max_pool2d(xp, self.k, self.s)]
            y, idx = F.max_pool2d(xp, self.k, self.s, return_indices=True)
            h = torch.div(idx, self.Wp, rounding_mode="floor") - self.p[0]
            w = idx % self.Wp - self.p[1]
            inside = (h >= 0) & (h < self.H) & (w >= 0) & (w < self.W)
            flat = torch.where(inside, h * self.W + w, torch.full_like(h, -1))
            return [y, flat.to(x.dtype)]
        if m == AVE:
            if self.native:
                return [F.avg_pool2d(x, self.k, self.s, self.p, self.ceil, True)]
            xp = F.pad(x, self.pad4)
            total = F.avg_pool2d(xp, self.k, self.s, divisor_override=1)
            div = self.div_cast
            if div is None or div.device != x.device or div.dtype != x.dtype:
                div = self.div_cast = self.div.to(device=x.device, dtype=x.dtype)
            return [total / div]
        return [self._stochastic(x)]

    def _stochastic(self, x):
        n, c = x.shape[:2]
        oh, ow = self.out
        xp = F.pad(x, self.pad4)
        cols = F.unfold(xp, self.k, 1, 0, self.s).view(n, c, self.k[0] * self.k[1], oh * ow)
        if self.train:
            with torch.no_grad():
                cum = cols.cumsum(2)
                thres = torch.rand(n, c, 1, oh * ow, dtype=x.dtype, device=x.device) \
                    * cum[:, :, -1:, :]
                pick = (cum >= thres).to(torch.uint8).argmax(2, keepdim=True)
            y = cols.gather(2, pick)
        else:
            total = cols.sum(2)
            sq = (cols * cols).sum(2)
            pos = total > 0
            y = torch.where(pos, sq / torch.where(pos, total, torch.ones_like(total)),
                            torch.zeros_like(total))
        return y.view(n, c, oh, ow)


def _check_pool_setup(layer, method, kernel, stride, pad, is_global, where):
    if kernel[0] <= 0 or kernel[1] <= 0:
        raise layer.error("filter dimensions cannot be zero, got %s" % (list(kernel),),
                          field=where + ".kernel_size")
    if stride[0] <= 0 or stride[1] <= 0:
        raise layer.error("stride must be positive, got %s" % (list(stride),),
                          field=where + ".stride")
    if is_global and (pad != (0, 0) or stride != (1, 1)):
        raise layer.error("with global_pooling: true only pad = 0 and stride = 1 are allowed",
                          field=where + ".global_pooling")
    if pad[0] or pad[1]:
        if method not in (MAX, AVE):
            raise layer.error("padding is implemented only for AVE and MAX pooling",
                              field=where + ".pad")
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise layer.error("pad %s must be smaller than the kernel %s"
                              % (list(pad), list(kernel)), field=where + ".pad")


@register_layer("Pooling")
class PoolingLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 2)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        pp = layer_param.pooling_param
        W = "pooling_param"
        self.method = int(pp.pool)
        if self.method not in (MAX, AVE, STOCHASTIC):
            raise self.error("unknown pooling method %d" % self.method, field=W + ".pool")
        # TRAIN stochastic pooling samples its picks from the generator
        self.draws_random = self.method == STOCHASTIC and self.phase == TRAIN
        has = pp.HasField
        self.is_global = bool(pp.global_pooling)
        if self.is_global:
            if has("kernel_size") or has("kernel_h") or has("kernel_w"):
                raise self.error("with global_pooling: true the filter size cannot be specified",
                                 field=W + ".kernel_size")
            kernel = None
        else:
            if has("kernel_size") and has("kernel_h") and has("kernel_w"):
                raise self.error("filter size is kernel_size OR kernel_h and kernel_w; not both",
                                 field=W + ".kernel_size")
            if not has("kernel_size") and not (has("kernel_h") and has("kernel_w")):
                if has("kernel_h") or has("kernel_w"):
                    raise self.error("for non-square filters both kernel_h and kernel_w are "
                                     "required", field=W + ".kernel_h")
                raise self.error("kernel_size is missing (or give global_pooling: true)",
                                 field=W + ".kernel_size")
            if has("kernel_size"):
                kernel = (int(pp.kernel_size),) * 2
            else:
                kernel = (int(pp.kernel_h), int(pp.kernel_w))
        if not ((not has("pad") and has("pad_h") and has("pad_w"))
                or (not has("pad_h") and not has("pad_w"))):
            raise self.error("pad is pad OR pad_h and pad_w are required", field=W + ".pad")
        if not ((not has("stride") and has("stride_h") and has("stride_w"))
                or (not has("stride_h") and not has("stride_w"))):
            raise self.error("stride is stride OR stride_h and stride_w are required",
                             field=W + ".stride")
        pad = (int(pp.pad_h), int(pp.pad_w)) if has("pad_h") else (int(pp.pad),) * 2
        stride = (int(pp.stride_h), int(pp.stride_w)) if has("stride_h") \
            else (int(pp.stride),) * 2
        self.round_mode = int(pp.round_mode) if hasattr(pp, "round_mode") else CEIL
        if self.round_mode not in (CEIL, FLOOR):
            raise self.error("unknown rounding mode %d" % self.round_mode, field=W + ".round_mode")
        shape = self.bottom_shapes[0]
        if len(shape) != 4:
            raise self.error("input must have 4 axes (num, channels, height, width), got shape %s"
                             % (list(shape),))
        _check_pool_setup(self, self.method, kernel or tuple(shape[2:]), stride, pad,
                          self.is_global, W)
        for values, f in ((kernel or (), "kernel_size"), (stride, "stride"), (pad, "pad")):
            _int_fields(self, values, W + "." + f)
        self.kernel, self.stride, self.pad = kernel, stride, pad
        ntop = len(layer_param.top)
        if ntop > 1 and self.method != MAX:
            raise self.error("only MAX pooling has a second (mask) top", field=W + ".pool")
        self.mask = ntop > 1
        self._plans = {}
        self._last = None

    def plan(self, H, W):
        key = (H, W)
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        p = self._plans.get(key)
        if p is None:
            k = (H, W) if self.is_global else self.kernel
            try:
                p = _PoolPlan(self.method, H, W, k, self.stride, self.pad, self.round_mode,
                              self.phase == TRAIN, self.mask)
            except ValueError as exc:
                raise self.error(str(exc), field="pooling_param.kernel_size") from None
            self._plans[key] = p
        self._last = (key, p)
        return p

    def output_shapes(self, bottom_shapes):
        n, c, h, w = bottom_shapes[0]
        plan = self.plan(h, w)
        if not plan.native:             # the padded copy of the input is a real buffer
            try:
                check_shape((n, c, (plan.out[0] - 1) * plan.s[0] + plan.k[0], plan.Wp),
                            "padded input of the pooling")
            except BlobShapeError as exc:
                raise self.error(str(exc)) from None
        oh, ow = plan.out
        return [(n, c, oh, ow)] * (2 if self.mask else 1)

    def run(self, bottoms, params):
        x = bottoms[0]
        if x.dim() != 4:
            raise self.error("input must have 4 axes, got shape %s" % (list(x.shape),))
        return self.plan(x.shape[2], x.shape[3])(x)


@register_layer("SPP")
class SPPLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        sp = layer_param.spp_param
        self.height = int(sp.pyramid_height)
        if self.height < 1:
            raise self.error("pyramid_height must be at least 1", field="spp_param.pyramid_height")
        self.method = int(sp.pool)
        if self.method not in (MAX, AVE, STOCHASTIC):
            raise self.error("unknown pooling method %d" % self.method, field="spp_param.pool")
        shape = self.bottom_shapes[0]
        if len(shape) != 4:
            raise self.error("input must have 4 axes (num, channels, height, width), got shape %s"
                             % (list(shape),))
        if shape[2] <= 0 or shape[3] <= 0:
            raise self.error("input dimensions cannot be zero")
        self._plans = {}
        self.plans(shape[2], shape[3])

    def plans(self, H, W):
        key = (H, W)
        ps = self._plans.get(key)
        if ps is None:
            ps = []
            for level in range(self.height):
                bins = 2 ** level
                kh = int(math.ceil(H / float(bins)))
                kw = int(math.ceil(W / float(bins)))
                ph = (kh * bins - H + 1) // 2
                pw = (kw * bins - W + 1) // 2
                _check_pool_setup(self, self.method, (kh, kw), (kh, kw), (ph, pw), False,
                                  "spp_param(level %d pooling)" % level)
                ps.append(_PoolPlan(self.method, H, W, (kh, kw), (kh, kw), (ph, pw), CEIL,
                                    self.phase == TRAIN, False))
            self._plans[key] = ps
        return ps

    def run(self, bottoms, params):
        x = bottoms[0]
        ps = self.plans(x.shape[2], x.shape[3])
        if self.height == 1:
            return ps[0](x)
        n = x.shape[0]
        return [torch.cat([p(x)[0].reshape(n, -1) for p in ps], 1)]


# ---------------------------------------------------------------------------
# LRN
# ---------------------------------------------------------------------------
def _neg_power(scale, beta):
    """``scale ** -beta``; the common exponents through square roots, which are
    several times cheaper than pow and equal to it to float rounding."""
    if beta == 0.75:
        r = torch.rsqrt(scale)
        return r * torch.sqrt(r)
    if beta == 0.5:
        return torch.rsqrt(scale)
    return scale.pow(-beta)


@register_layer("LRN")
class LRNLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        lp = layer_param.lrn_param
        self.size = int(lp.local_size)
        if self.size % 2 != 1:
            raise self.error("LRN only supports odd values for local_size (got %d)" % self.size,
                             field="lrn_param.local_size")
        self.alpha, self.beta, self.k = float(lp.alpha), float(lp.beta), float(lp.k)
        self.region = int(lp.norm_region)
        if self.region not in (0, 1):
            raise self.error("unknown normalization region %d" % self.region,
                             field="lrn_param.norm_region")
        shape = self.bottom_shapes[0]
        if len(shape) != 4:
            raise self.error("input must have 4 axes (num, channels, height, width), got shape %s"
                             % (list(shape),))
        self.pre_pad = (self.size - 1) // 2

    def output_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def run(self, bottoms, params):
        x = bottoms[0]
        if self.region == 0:
            # scale = k + alpha/n * sum of squares over a zero-padded channel
            # window: the window sum as shifted adds along the channels (works
            # on any memory layout, several times faster than a pooling op)
            sq = x * x
            c = x.shape[1]
            total = sq.clone()
            for i in range(1, self.pre_pad + 1):
                if i >= c:
                    break
                total[:, i:] += sq[:, :c - i]
                total[:, :c - i] += sq[:, i:]
            scale = total * (self.alpha / self.size) + self.k
            return [x * _neg_power(scale, self.beta)]
        avg = F.avg_pool2d(x * x, self.size, 1, self.pre_pad, False, True)
        return [x * _neg_power(avg * self.alpha + 1.0, self.beta)]
