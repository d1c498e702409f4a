"""Upsampling, padding and arg-max ops.

Nearest upsampling by an integer factor f is a Deconvolution with kernel f,
stride f, group = channels and all-one weights.  Bilinear upsampling with
``align_corners=False`` is a Deconvolution with Caffe's bilinear kernel, but
PyTorch clamps at the borders where a deconvolution sees zeros; replicating the
first and last row/column (Slice + Concat) first and widening the
deconvolution's pad by f makes the numbers equal everywhere.
"""
import math

import numpy as np

from ..context import PendingPad
from ..emitters import conv as conv_em
from ..emitters import reduction as red_em
from ..emitters import shape as shape_em
from . import ATEN
from ._util import axis, reshape_to


def _factors(ctx, node):
    s_in, s_out = ctx.shape(node.args[0]), ctx.shape(node)
    if len(s_in) != 4:
        ctx.refuse("upsampling a %d-D tensor (only 2-D images map to Deconvolution)" %
                   len(s_in))
    factors = []
    for i in (2, 3):
        if s_out[i] % s_in[i]:
            ctx.refuse("upsampling %s to %s is not by an integer factor" % (s_in[2:], s_out[2:]))
        factors.append(s_out[i] // s_in[i])
    return s_in, factors


@ATEN.register("upsample_nearest2d")
def upsample_nearest(ctx, node):
    s_in, factors = _factors(ctx, node)
    nearest(ctx, node.args[0], s_in, factors)


def nearest(ctx, x, s_in, factors):
    """Nearest upsampling of ``x`` (shape ``s_in``) by integer (fh, fw)."""
    fh, fw = factors
    c = s_in[1]
    weight = np.ones((c, 1, fh, fw), np.float32)
    conv_em.convolution(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), weight, None,
                        [fh, fw], [0, 0], [1, 1], c, transposed=True)
    ctx.produce(ctx.top())


def bilinear_kernel(f):
    """Caffe's BilinearFiller kernel for factor f (size 2f - f % 2)."""
    k = 2 * f - f % 2
    centre = (2 * f - 1 - f % 2) / (2.0 * f)
    x = np.arange(k)
    return (1 - np.abs(x / f - centre)).astype(np.float32)


def _replicate_edges(ctx, blob, shape, ax, top):
    """``blob`` with its first and last slice along ``ax`` repeated once (edge padding)."""
    n = shape[ax]
    if n == 1:
        shape_em.concat(ctx.net, ctx.name("edge%d" % ax), [blob, blob, blob], top, ax)
        return top
    first, last = top + "/first", top + "/last"
    tops, points = [first], [1]
    if n > 2:
        tops.append(top + "/mid")
        points.append(n - 1)
    tops.append(last)
    shape_em.slice_(ctx.net, ctx.name("edges%d" % ax), blob, tops, ax, points)
    if n > 2:
        shape_em.silence(ctx.net, ctx.name("edges%d/silence" % ax), [top + "/mid"])
    shape_em.concat(ctx.net, ctx.name("edge%d" % ax), [first, blob, last], top, ax)
    return top


@ATEN.register("upsample_bilinear2d")
def upsample_bilinear(ctx, node):
    a = ctx.args()
    if a["align_corners"]:
        ctx.refuse("bilinear upsampling with align_corners=True (only align_corners=False "
                   "maps to a bilinear Deconvolution)")
    s_in, factors = _factors(ctx, node)
    bilinear(ctx, node.args[0], s_in, factors)


def bilinear(ctx, x, s_in, factors):
    """Bilinear (half-pixel, edge-clamped) upsampling of ``x`` by integer (fh, fw)."""
    fh, fw = factors
    c = s_in[1]
    padded = _replicate_edges(ctx, ctx.bottom(x), s_in, 2, ctx.top("padh"))
    shape_h = list(s_in)
    shape_h[2] += 2
    padded = _replicate_edges(ctx, padded, shape_h, 3, ctx.top("padw"))
    weight = np.outer(bilinear_kernel(fh), bilinear_kernel(fw))
    weight = np.tile(weight[None, None], (c, 1, 1, 1)).astype(np.float32)
    pad = [int(math.ceil((f - 1) / 2.0)) + f for f in (fh, fw)]
    layer = conv_em.convolution(ctx.net, ctx.name(), padded, ctx.top(), weight, None,
                                [fh, fw], pad, [1, 1], c, transposed=True)
    layer.convolution_param.weight_filler.type = "bilinear"
    ctx.produce(ctx.top())


@ATEN.register("constant_pad_nd", "pad")
def pad(ctx, node):
    a = ctx.args()
    if a.get("mode", "constant") != "constant":
        ctx.refuse("%s padding (only zero padding folds into Caffe's conv/pool pad)" % a["mode"])
    p = [int(v) for v in a["pad"]]
    if any(v < 0 for v in p):
        ctx.refuse("negative padding (cropping)")
    value = float(a.get("value") or 0.0)
    pairs = [(p[i], p[i + 1]) for i in range(0, len(p), 2)][::-1]   # first axis first
    ctx.pending[node] = PendingPad(node.args[0], pairs, value)
    ctx.dynamic.add(node)


def _argmax(ctx, node, x, dim, keepdim, values, top):
    shape = ctx.shape(x)
    if dim is None:
        ctx.refuse("arg-max over all elements (give dim)")
    ax = axis(int(dim), len(shape))
    kept = top if keepdim else top + "/keep"
    red_em.argmax(ctx.net, ctx.name("values" if values else "indices"), ctx.bottom(x), kept,
                  ax, out_max_val=values)
    if not keepdim:
        out = list(shape)
        out[ax] = 1
        reduced = list(shape[:ax]) + list(shape[ax + 1:])
        reshape_to(ctx, kept, out, reduced, top, ctx.name("squeeze" if values else
                                                          "squeeze_idx"))
    return top


@ATEN.register("max.dim")
def max_dim(ctx, node):
    a = ctx.args()
    used = {u.args[1] for u in node.users}
    blobs = [None, None]
    if 0 in used:
        blobs[0] = _argmax(ctx, node, a["self"], a["dim"], a["keepdim"], True, node.name + "/0")
    if 1 in used:
        blobs[1] = _argmax(ctx, node, a["self"], a["dim"], a["keepdim"], False,
                           node.name + "/1")
    ctx.blobs[node] = blobs
    ctx.dynamic.add(node)


@ATEN.register("argmax")
def argmax(ctx, node):
    a = ctx.args()
    ctx.produce(_argmax(ctx, node, a["self"], a["dim"], a["keepdim"], False, ctx.top()))
