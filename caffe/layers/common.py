"""Common layers: data plumbing (Input, Concat, Slice, Split, Reshape, ...),
InnerProduct, elementwise and reduction layers, normalisation (MVN,
BatchNorm), Scale/Bias, Softmax.

Each layer parses its parameters once in ``__init__`` and keeps ``run`` small.
Where Caffe's backward is not the autograd gradient of the forward we compute,
a small ``torch.autograd.Function`` carries Caffe's formula.
"""
import torch
import torch.nn.functional as F

from .._common import TEST
from ..proto import shipped as caffe_schema
from ._util import bottom_shape, canonical_axis, count
from .base import INPUT, CaffeLayer
from .registry import register_layer

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Input / Parameter
# ---------------------------------------------------------------------------
@register_layer("Input")
class InputLayer(CaffeLayer):
    """Net inputs.  Forward is a no-op in Caffe: the tops keep whatever the
    user wrote into them, so ``run`` produces no tops (the Net must not
    overwrite Input tops); ``output_shapes`` gives the configured shapes."""
    num_bottoms = (0, 0)
    num_tops = (1, None)
    kind = INPUT

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        shapes = [tuple(int(d) for d in s.dim) for s in layer_param.input_param.shape]
        ntop = len(layer_param.top)
        if len(shapes) not in (0, 1, ntop):
            raise self.error("must specify 'shape' once, once per top blob, or not at all: "
                             "%d shapes for %d tops" % (len(shapes), ntop),
                             field="input_param.shape")
        for s in shapes:
            if any(d < 0 for d in s):
                raise self.error("negative dimension in shape %s" % (list(s),),
                                 field="input_param.shape")
        if len(shapes) == 1:
            shapes = shapes * ntop
        elif not shapes:
            shapes = [(0,)] * ntop   # Caffe leaves such tops empty (count 0)
        self.shapes = shapes

    def output_shapes(self, bottom_shapes):
        return list(self.shapes)

    def run(self, bottoms, params):
        return []


@register_layer("Parameter")
class ParameterLayer(CaffeLayer):
    """Exposes its one blob as its top (Caffe shares data and diff)."""
    num_bottoms = (0, 0)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        shape = tuple(int(d) for d in layer_param.parameter_param.shape.dim)
        if any(d < 0 for d in shape):
            raise self.error("negative dimension in shape %s" % (list(shape),),
                             field="parameter_param.shape")
        self.add_param_blob(shape)

    def output_shapes(self, bottom_shapes):
        return [tuple(self.blobs[0].shape)]

    def run(self, bottoms, params):
        return [params[0]]


# ---------------------------------------------------------------------------
# InnerProduct
# ---------------------------------------------------------------------------
@register_layer("InnerProduct")
class InnerProductLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.inner_product_param
        shape = bottom_shape(self)
        self.num_output = int(p.num_output)
        if self.num_output <= 0:
            raise self.error("num_output must be positive", field="inner_product_param.num_output")
        self.axis = canonical_axis(self, p.axis, len(shape), "inner_product_param.axis")
        self.K = count(shape[self.axis:])
        self.bias_term = bool(p.bias_term)
        self.transpose = bool(p.transpose)
        wshape = (self.K, self.num_output) if self.transpose else (self.num_output, self.K)
        self.add_param_blob(wshape, p.weight_filler)
        if self.bias_term:
            self.add_param_blob((self.num_output,), p.bias_filler)

    def output_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if count(shape[self.axis:]) != self.K:
            raise self.error("input size incompatible with inner product parameters: "
                             "bottom %s gives K=%d, weights expect K=%d"
                             % (list(shape), count(shape[self.axis:]), self.K),
                             field="inner_product_param")
        return [shape[:self.axis] + (self.num_output,)]

    def run(self, bottoms, params):
        x = bottoms[0].flatten(self.axis) if self.axis < bottoms[0].dim() - 1 else bottoms[0]
        w = params[0]
        if self.transpose:
            y = torch.matmul(x, w)
            if self.bias_term:
                y = y + params[1]
            return [y]
        return [F.linear(x, w, params[1] if self.bias_term else None)]


# ---------------------------------------------------------------------------
# Concat / Slice / Split
# ---------------------------------------------------------------------------
def _axis_or_legacy_dim(layer, p, name, legacy):
    """Concat's / Slice's axis: ``axis`` (may be negative) or the deprecated
    unsigned ``concat_dim`` / ``slice_dim``, never both."""
    if p.HasField("axis") and p.HasField(legacy):
        raise layer.error("either axis or %s should be specified; not both" % legacy,
                          field=name + ".axis")
    nd = len(bottom_shape(layer))
    if p.HasField(legacy):
        axis = int(getattr(p, legacy))
        if axis >= nd:
            raise layer.error("%s %d out of range for a %d-D bottom" % (legacy, axis, nd),
                              field="%s.%s" % (name, legacy))
        return axis
    return canonical_axis(layer, p.axis, nd, name + ".axis")


@register_layer("Concat")
class ConcatLayer(CaffeLayer):
    num_bottoms = (1, None)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.axis = _axis_or_legacy_dim(self, layer_param.concat_param, "concat_param",
                                        "concat_dim")
        self.output_shapes(self.bottom_shapes)

    def output_shapes(self, bottom_shapes):
        first = tuple(bottom_shapes[0])
        total = first[self.axis]
        for i, s in enumerate(bottom_shapes[1:], 1):
            s = tuple(s)
            if len(s) != len(first):
                raise self.error("all bottoms must have the same number of axes: bottom 0 %s, "
                                 "bottom %d %s" % (list(first), i, list(s)),
                                 field="concat_param.axis")
            for j in range(len(s)):
                if j != self.axis and s[j] != first[j]:
                    raise self.error("all bottoms must have the same shape except along the "
                                     "concat axis %d: bottom 0 %s, bottom %d %s"
                                     % (self.axis, list(first), i, list(s)),
                                     field="concat_param.axis")
            total += s[self.axis]
        out = list(first)
        out[self.axis] = total
        return [tuple(out)]

    def run(self, bottoms, params):
        if len(bottoms) == 1:
            return [bottoms[0]]
        return [torch.cat(bottoms, self.axis)]


@register_layer("Slice")
class SliceLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, None)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.slice_param
        self.axis = _axis_or_legacy_dim(self, p, "slice_param", "slice_dim")
        self.ntop = len(layer_param.top)
        self.points = [int(v) for v in p.slice_point]
        if self.points:
            if len(self.points) != self.ntop - 1:
                raise self.error("%d slice points for %d tops (need one fewer than tops)"
                                 % (len(self.points), self.ntop), field="slice_param.slice_point")
            prev = 0
            for v in self.points:
                if v <= prev:
                    raise self.error("slice points must be strictly increasing and positive: %s"
                                     % self.points, field="slice_param.slice_point")
                prev = v
        self._cache_dim = None
        self._sizes = None
        self.output_shapes(self.bottom_shapes)

    def _split_sizes(self, dim):
        if dim == self._cache_dim:
            return self._sizes
        if self.points:
            if self.points[-1] >= dim:
                raise self.error("slice point %d out of range for axis %d of size %d"
                                 % (self.points[-1], self.axis, dim),
                                 field="slice_param.slice_point")
            edges = [0] + self.points + [dim]
            sizes = [b - a for a, b in zip(edges[:-1], edges[1:])]
        else:
            if self.ntop > dim or dim % self.ntop:
                raise self.error("axis %d of size %d cannot be split evenly into %d tops"
                                 % (self.axis, dim, self.ntop), field="slice_param.axis")
            sizes = [dim // self.ntop] * self.ntop
        self._cache_dim, self._sizes = dim, sizes
        return sizes

    def output_shapes(self, bottom_shapes):
        shape = list(bottom_shapes[0])
        if self.ntop == 1:
            return [tuple(shape)]
        out = []
        for s in self._split_sizes(shape[self.axis]):
            shape[self.axis] = s
            out.append(tuple(shape))
        return out

    def run(self, bottoms, params):
        x = bottoms[0]
        if self.ntop == 1:
            return [x]
        return list(torch.split(x, self._split_sizes(x.shape[self.axis]), self.axis))


@register_layer("Split")
class SplitLayer(CaffeLayer):
    """Every top is the bottom; autograd sums the tops' diffs in backward."""
    num_bottoms = (1, 1)
    num_tops = (1, None)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.ntop = len(layer_param.top)

    def output_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0])] * self.ntop

    def run(self, bottoms, params):
        return [bottoms[0]] * self.ntop


# ---------------------------------------------------------------------------
# Flatten / Reshape
# ---------------------------------------------------------------------------
@register_layer("Flatten")
class FlattenLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        if list(layer_param.bottom) and list(layer_param.bottom) == list(layer_param.top):
            raise self.error("Flatten does not allow in-place computation", field="top")
        p = layer_param.flatten_param
        self.axis_param = int(p.axis)
        self.end_axis_param = int(p.end_axis)
        self.output_shapes(self.bottom_shapes)

    def _axes(self, nd):
        a = canonical_axis(self, self.axis_param, nd, "flatten_param.axis")
        e = canonical_axis(self, self.end_axis_param, nd, "flatten_param.end_axis")
        if e < a:
            raise self.error("end_axis %d comes before axis %d" % (e, a),
                             field="flatten_param.end_axis")
        return a, e

    def output_shapes(self, bottom_shapes):
        s = tuple(bottom_shapes[0])
        a, e = self._axes(len(s))
        return [s[:a] + (count(s[a:e + 1]),) + s[e + 1:]]

    def run(self, bottoms, params):
        x = bottoms[0]
        a, e = self._axes(x.dim())
        return [x.flatten(a, e)]


@register_layer("Reshape")
class ReshapeLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        if list(layer_param.bottom) and list(layer_param.bottom) == list(layer_param.top):
            raise self.error("Reshape does not allow in-place computation", field="top")
        p = layer_param.reshape_param
        self.dims = [int(d) for d in p.shape.dim]
        self.copy_axes = [i for i, d in enumerate(self.dims) if d == 0]
        inferred = [i for i, d in enumerate(self.dims) if d == -1]
        if len(inferred) > 1:
            raise self.error("new shape contains multiple -1 dims; at most a single -1 may "
                             "be specified: %s" % self.dims, field="reshape_param.shape")
        bad = [d for d in self.dims if d < -1]
        if bad:
            raise self.error("invalid dimension %d in new shape %s" % (bad[0], self.dims),
                             field="reshape_param.shape")
        self.inferred = inferred[0] if inferred else -1
        self.constant = count([d for d in self.dims if d > 0])
        self.axis_param = int(p.axis)
        self.num_axes = int(p.num_axes)
        if self.num_axes < -1:
            raise self.error("num_axes must be >= 0, or -1 for all", field="reshape_param.num_axes")
        self._cache_in = None
        self._cache_out = None
        self.output_shapes(self.bottom_shapes)

    def _top_shape(self, shape):
        shape = tuple(shape)
        if shape == self._cache_in:
            return self._cache_out
        nd = len(shape)
        start = self.axis_param if self.axis_param >= 0 else nd + self.axis_param + 1
        if start < 0 or start > nd:
            raise self.error("axis %d out of range for a %d-D bottom" % (self.axis_param, nd),
                             field="reshape_param.axis")
        end = nd if self.num_axes == -1 else start + self.num_axes
        if end > nd:
            raise self.error("axis + num_axes = %d is out of range for a %d-D bottom"
                             % (end, nd), field="reshape_param.num_axes")
        top = list(shape[:start]) + list(self.dims) + list(shape[end:])
        for i in self.copy_axes:
            if start + i >= nd:
                raise self.error("new shape contains a 0, but there is no corresponding "
                                 "bottom axis %d to copy" % (start + i), field="reshape_param.shape")
            top[start + i] = shape[start + i]
        total = count(shape)
        if self.inferred >= 0:
            explicit = self.constant * count(shape[:start]) * count(shape[end:])
            for i in self.copy_axes:
                explicit *= top[start + i]
            if explicit == 0 or total % explicit:
                raise self.error("bottom count (%d) must be divisible by the product of the "
                                 "specified dimensions (%d)" % (total, explicit),
                                 field="reshape_param.shape")
            top[start + self.inferred] = total // explicit
        if count(top) != total:
            raise self.error("output count %d (shape %s) must match input count %d (shape %s)"
                             % (count(top), top, total, list(shape)),
                             field="reshape_param.shape")
        top = tuple(top)
        self._cache_in, self._cache_out = shape, top
        return top

    def output_shapes(self, bottom_shapes):
        return [self._top_shape(bottom_shapes[0])]

    def run(self, bottoms, params):
        x = bottoms[0]
        return [x.reshape(self._top_shape(x.shape))]


# ---------------------------------------------------------------------------
# Eltwise
# ---------------------------------------------------------------------------
class _ProdQuotientGrad(torch.autograd.Function):
    """Eltwise PROD with stable_prod_grad: false -- Caffe's gradient is
    top / bottom_i * top_diff (nan/inf where bottom_i is 0, as in Caffe)."""

    @staticmethod
    def forward(ctx, *xs):
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y = y * x
        ctx.save_for_backward(y, *xs)
        return y

    @staticmethod
    def backward(ctx, g):
        y, *xs = ctx.saved_tensors
        return tuple((y / x) * g if ctx.needs_input_grad[i] else None
                     for i, x in enumerate(xs))


@register_layer("Eltwise")
class EltwiseLayer(CaffeLayer):
    num_bottoms = (2, None)
    num_tops = (1, 1)
    _OP = caffe_schema().EltwiseParameter
    PROD, SUM, MAX = _OP.PROD, _OP.SUM, _OP.MAX

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.eltwise_param
        self.op = int(p.operation)
        coeff = [float(c) for c in p.coeff]
        nb = len(layer_param.bottom) or len(bottom_shapes)
        if coeff and self.op != self.SUM:
            raise self.error("coefficients are only allowed for SUM", field="eltwise_param.coeff")
        if coeff and len(coeff) != nb:
            raise self.error("needs one coefficient per bottom blob: %d coefficients, %d bottoms"
                             % (len(coeff), nb), field="eltwise_param.coeff")
        self.coeff = coeff or [1.0] * nb
        self.plain_sum = all(c == 1.0 for c in self.coeff)
        self.stable_prod_grad = bool(p.stable_prod_grad)
        self.output_shapes(self.bottom_shapes)

    def output_shapes(self, bottom_shapes):
        first = tuple(bottom_shapes[0])
        for i, s in enumerate(bottom_shapes[1:], 1):
            if tuple(s) != first:
                raise self.error("all bottoms must have the same shape: bottom 0 %s, bottom %d %s"
                                 % (list(first), i, list(s)), field="bottom")
        return [first]

    def run(self, bottoms, params):
        op = self.op
        if op == self.SUM:
            if self.plain_sum:
                y = bottoms[0] + bottoms[1]
                for x in bottoms[2:]:
                    y = y + x
                return [y]
            c = self.coeff
            y = bottoms[0] * c[0] if c[0] != 1.0 else bottoms[0]
            for i in range(1, len(bottoms)):
                y = torch.add(y, bottoms[i], alpha=c[i])
            return [y]
        if op == self.PROD:
            if not self.stable_prod_grad:
                return [_ProdQuotientGrad.apply(*bottoms)]
            y = bottoms[0] * bottoms[1]
            for x in bottoms[2:]:
                y = y * x
            return [y]
        if op == self.MAX:
            a, b = bottoms[0], bottoms[1]
            # bottom 1 wins a tie with bottom 0; later bottoms need to be strictly larger
            y = torch.where(a > b, a, b)
            for x in bottoms[2:]:
                y = torch.where(x > y, x, y)
            return [y]
        raise self.error("unknown operation %d" % op, field="eltwise_param.operation")


# ---------------------------------------------------------------------------
# Crop / Tile
# ---------------------------------------------------------------------------
@register_layer("Crop")
class CropLayer(CaffeLayer):
    num_bottoms = (2, 2)
    num_tops = (1, 1)

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.crop_param
        nd = len(bottom_shape(self))
        self.axis = canonical_axis(self, p.axis, nd, "crop_param.axis")
        self.offsets = [int(o) for o in p.offset]
        if len(self.offsets) > 1 and self.axis + len(self.offsets) != nd:
            raise self.error("number of offset values (%d) must be 1 or equal to the number of "
                             "dimensions from axis %d on (%d)"
                             % (len(self.offsets), self.axis, nd - self.axis),
                             field="crop_param.offset")
        self._cache = None
        self.output_shapes(self.bottom_shapes)

    def _slices(self, s0, s1):
        key = (tuple(s0), tuple(s1))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        if len(s1) != len(s0):
            raise self.error("bottoms must have the same number of axes: %s vs %s"
                             % (list(s0), list(s1)), field="bottom")
        slices = []
        shape = []
        for i in range(len(s0)):
            if i < self.axis:
                slices.append(slice(None))
                shape.append(s0[i])
                continue
            off = 0
            if len(self.offsets) == 1:
                off = self.offsets[0]
            elif self.offsets:
                off = self.offsets[i - self.axis]
            if off < 0 or s0[i] - off < s1[i]:
                raise self.error("the crop for dimension %d is out of bounds: size %d with offset "
                                 "%d does not fit in the input's size %d"
                                 % (i, s1[i], off, s0[i]), field="crop_param.offset")
            slices.append(slice(off, off + s1[i]))
            shape.append(s1[i])
        self._cache = (key, tuple(slices), tuple(shape))
        return self._cache[1], self._cache[2]

    def output_shapes(self, bottom_shapes):
        return [self._slices(bottom_shapes[0], bottom_shapes[1])[1]]

    def run(self, bottoms, params):
        sl, _ = self._slices(bottoms[0].shape, bottoms[1].shape)
        return [bottoms[0][sl]]


@register_layer("Tile")
class TileLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.tile_param
        nd = len(bottom_shape(self))
        self.axis = canonical_axis(self, p.axis, nd, "tile_param.axis")
        if not p.HasField("tiles"):
            raise self.error("tiles must be specified", field="tile_param.tiles")
        self.tiles = int(p.tiles)
        if self.tiles <= 0:
            raise self.error("number of tiles must be positive, got %d" % self.tiles,
                             field="tile_param.tiles")
        self.reps = (1,) * self.axis + (self.tiles,) + (1,) * (nd - self.axis - 1)

    def run(self, bottoms, params):
        x = bottoms[0]
        if len(self.reps) != x.dim():
            self.reps = (1,) * self.axis + (self.tiles,) + (1,) * (x.dim() - self.axis - 1)
        return [x.repeat(self.reps)]


# ---------------------------------------------------------------------------
# Reduction
# ---------------------------------------------------------------------------
@register_layer("Reduction")
class ReductionLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)
    _OP = caffe_schema().ReductionParameter
    SUM, ASUM, SUMSQ, MEAN = _OP.SUM, _OP.ASUM, _OP.SUMSQ, _OP.MEAN

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.reduction_param
        shape = bottom_shape(self)
        self.axis = canonical_axis(self, p.axis, len(shape), "reduction_param.axis")
        self.op = int(p.operation)
        if self.op not in (self.SUM, self.ASUM, self.SUMSQ, self.MEAN):
            raise self.error("unknown reduction operation %d" % self.op,
                             field="reduction_param.operation")
        self.coeff = float(p.coeff)

    def output_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0])[:self.axis]]

    def run(self, bottoms, params):
        x = bottoms[0]
        lead = x.shape[:self.axis]
        x = x.reshape(tuple(lead) + (-1,))
        op = self.op
        if op == self.ASUM:
            x = x.abs()
        elif op == self.SUMSQ:
            x = x * x
        y = x.sum(-1)
        coeff = self.coeff
        if op == self.MEAN:
            n = x.shape[-1]
            coeff = coeff / n if n else coeff
        if coeff != 1.0:
            y = y * coeff
        return [y]


# ---------------------------------------------------------------------------
# Silence / Filter / BatchReindex / ArgMax / Embed
# ---------------------------------------------------------------------------
@register_layer("Silence")
class SilenceLayer(CaffeLayer):
    """No tops.  Caffe's backward writes zeros into the bottoms' diffs (the
    Net does that for a layer whose run returns no tops)."""
    num_bottoms = (1, None)
    num_tops = (0, 0)

    def output_shapes(self, bottom_shapes):
        return []

    def run(self, bottoms, params):
        return []


@register_layer("Filter")
class FilterLayer(CaffeLayer):
    """Keeps the items (axis 0) whose selector (last bottom) is nonzero."""
    num_bottoms = (2, None)
    num_tops = (1, None)

    def allow_force_backward(self, bottom_index):
        return bottom_index != len(self.bottom_shapes) - 1

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        ntop = len(layer_param.top)
        if ntop and ntop != len(bottom_shapes) - 1:
            raise self.error("needs one top per data bottom: %d bottoms (last is the selector), "
                             "%d tops" % (len(bottom_shapes), ntop), field="top")
        self._check(bottom_shapes)

    def _check(self, bottom_shapes):
        sel = tuple(bottom_shapes[-1])
        if any(d != 1 for d in sel[1:]):
            raise self.error("selector blob dimensions must be singletons (1), except the "
                             "first: %s" % (list(sel),), field="bottom")
        for i, s in enumerate(bottom_shapes[:-1]):
            if not s or not sel or s[0] != sel[0]:
                raise self.error("bottom %d %s must have the same first dimension as the "
                                 "selector %s" % (i, list(s), list(sel)), field="bottom")

    def output_shapes(self, bottom_shapes):
        # data-dependent: like Caffe's first reshape, keep the full batch
        self._check(bottom_shapes)
        return [tuple(s) for s in bottom_shapes[:-1]]

    def run(self, bottoms, params):
        sel = bottoms[-1].detach().reshape(-1)
        idx = torch.nonzero(sel != 0).reshape(-1)
        return [b.index_select(0, idx) for b in bottoms[:-1]]


@register_layer("BatchReindex")
class BatchReindexLayer(CaffeLayer):
    """top[i] = bottom0[int(index[i])]; backward scatter-adds."""
    num_bottoms = (2, 2)
    num_tops = (1, 1)

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.output_shapes(self.bottom_shapes)

    def output_shapes(self, bottom_shapes):
        s0, s1 = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
        if len(s1) != 1:
            raise self.error("index bottom must be 1-D, got shape %s" % (list(s1),),
                             field="bottom")
        if not s0:
            raise self.error("data bottom needs at least one axis", field="bottom")
        return [s1 + s0[1:]]

    def run(self, bottoms, params):
        idx = bottoms[1].detach().to(torch.long)
        return [bottoms[0].index_select(0, idx)]


@register_layer("ArgMax")
class ArgMaxLayer(CaffeLayer):
    """Indices (and optionally values) of the top_k largest; ties go to the
    larger index (Caffe sorts (value, index) pairs descending).  No backward."""
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.argmax_param
        shape = bottom_shape(self)
        self.out_max_val = bool(p.out_max_val)
        self.top_k = int(p.top_k)
        if self.top_k < 1:
            raise self.error("top_k must not be less than 1", field="argmax_param.top_k")
        self.has_axis = p.HasField("axis")
        if self.has_axis:
            self.axis = canonical_axis(self, p.axis, len(shape), "argmax_param.axis")
        self.output_shapes(self.bottom_shapes)

    def output_shapes(self, bottom_shapes):
        s = list(bottom_shapes[0])
        if self.has_axis:
            if self.top_k > s[self.axis]:
                raise self.error("top_k (%d) must be at most the size of axis %d (%d)"
                                 % (self.top_k, self.axis, s[self.axis]),
                                 field="argmax_param.top_k")
            s[self.axis] = self.top_k
            return [tuple(s)]
        if self.top_k > count(s[1:]):
            raise self.error("top_k (%d) must be at most the per-item count (%d)"
                             % (self.top_k, count(s[1:])), field="argmax_param.top_k")
        out = [1] * max(len(s), 3)
        out[0] = s[0]
        out[2] = self.top_k
        if self.out_max_val:
            out[1] = 2
        return [tuple(out)]

    def _topk(self, x, dim):
        n = x.shape[dim]
        # stable descending sort of the reversed data puts the larger index first on ties
        vals, order = torch.sort(x.flip(dim), dim=dim, descending=True, stable=True)
        k = self.top_k
        vals = vals.narrow(dim, 0, k)
        idx = (n - 1) - order.narrow(dim, 0, k)
        return vals, idx.to(x.dtype)

    def run(self, bottoms, params):
        x = bottoms[0].detach()
        out_shape = self.output_shapes([tuple(x.shape)])[0]
        if self.has_axis:
            vals, idx = self._topk(x, self.axis)
            return [vals if self.out_max_val else idx]
        flat = x.reshape(x.shape[0], -1)
        vals, idx = self._topk(flat, 1)
        if self.out_max_val:
            y = torch.stack([idx, vals], 1)
        else:
            y = idx
        return [y.reshape(out_shape)]


@register_layer("Embed")
class EmbedLayer(CaffeLayer):
    """y = W[int(x)] (+ b); the bottom holds integer indices as floats."""
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def allow_force_backward(self, bottom_index):
        return False

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.embed_param
        self.N = int(p.num_output)
        if self.N <= 0:
            raise self.error("num_output must be positive", field="embed_param.num_output")
        self.K = int(p.input_dim)
        if self.K <= 0:
            raise self.error("input_dim must be positive", field="embed_param.input_dim")
        self.bias_term = bool(p.bias_term)
        self.add_param_blob((self.K, self.N), p.weight_filler)
        if self.bias_term:
            self.add_param_blob((self.N,), p.bias_filler)

    def output_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0]) + (self.N,)]

    def run(self, bottoms, params):
        idx = bottoms[0].detach().to(torch.long)   # static_cast<int>: truncation
        if idx.device.type != "meta" and idx.numel():
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self.K:
                raise self.error("index out of range [0, %d): got %d"
                                 % (self.K, lo if lo < 0 else hi), field="embed_param.input_dim")
        y = F.embedding(idx, params[0])
        if self.bias_term:
            y = y + params[1]
        return [y]


# ---------------------------------------------------------------------------
# MVN
# ---------------------------------------------------------------------------
class _MVNFunction(torch.autograd.Function):
    """Forward and backward of Caffe's MVN on a (rows, dim) view.

    Caffe divides by sqrt(var) + eps and its backward uses that same
    denominator everywhere, which differs from the exact gradient of the
    forward by O(eps / std) (and stays finite for constant rows)."""

    @staticmethod
    def forward(ctx, x, normalize_variance, eps):
        dim = x.shape[1]
        mean = x.sum(1, keepdim=True) * (1.0 / dim)
        y = x - mean
        ctx.normalize_variance = normalize_variance
        if normalize_variance:
            var = (y * y).sum(1, keepdim=True) * (1.0 / dim)
            std = var.sqrt() + eps
            y = y / std
            ctx.save_for_backward(y, std)
        return y

    @staticmethod
    def backward(ctx, dy):
        dim = dy.shape[1]
        if not ctx.normalize_variance:
            return dy - dy.sum(1, keepdim=True) * (1.0 / dim), None, None
        y, std = ctx.saved_tensors
        t = y * (y * dy).sum(1, keepdim=True) + dy.sum(1, keepdim=True)
        dx = (dy - t * (1.0 / dim)) / std
        return dx, None, None


@register_layer("MVN")
class MVNLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.mvn_param
        self.normalize_variance = bool(p.normalize_variance)
        self.across_channels = bool(p.across_channels)
        self.eps = float(p.eps)
        shape = bottom_shape(self)
        if len(shape) > 4:
            raise self.error("MVN works on blobs of at most 4 axes, got %s" % (list(shape),),
                             field="bottom")

    def output_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def run(self, bottoms, params):
        x = bottoms[0]
        s = x.shape
        n = s[0] if len(s) > 0 else 1
        rows = n if self.across_channels else n * (s[1] if len(s) > 1 else 1)
        y = _MVNFunction.apply(x.reshape(rows, -1), self.normalize_variance, self.eps)
        return [y.reshape(s)]


# ---------------------------------------------------------------------------
# BatchNorm
# ---------------------------------------------------------------------------
@register_layer("BatchNorm")
class BatchNormLayer(CaffeLayer):
    """Normalises per channel (axis 1) with batch statistics (TRAIN default)
    or the stored ones (blobs: mean sum, variance sum, scale factor)."""
    num_bottoms = (1, 1)
    num_tops = (1, 1)
    fixed_param_lr = True   # Caffe forces lr_mult 0 on the three blobs

    @property
    def mutates_params(self):
        """Batch statistics update the stored ones; with the stored ones a
        forward leaves the blobs alone."""
        return not self.use_global_stats

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.batch_norm_param
        self.maf = float(p.moving_average_fraction)
        self.use_global_stats = (self.phase == TEST)
        if p.HasField("use_global_stats"):
            self.use_global_stats = bool(p.use_global_stats)
        self.eps = float(p.eps)
        shape = bottom_shape(self)
        self.channels = 1 if len(shape) <= 1 else int(shape[1])
        for i, spec in enumerate(layer_param.param[:3]):
            if spec.HasField("lr_mult") and spec.lr_mult != 0:
                raise self.error("cannot configure batch normalization statistics as layer "
                                 "parameters (param %d has lr_mult %g, must be 0)"
                                 % (i, spec.lr_mult), field="param.lr_mult")
        self.add_param_blob((self.channels,), default_fill=0.0)
        self.add_param_blob((self.channels,), default_fill=0.0)
        self.add_param_blob((1,), default_fill=0.0)

    def output_shapes(self, bottom_shapes):
        s = tuple(bottom_shapes[0])
        c = 1 if len(s) <= 1 else s[1]
        if c != self.channels:
            raise self.error("bottom has %d channels, the layer was set up for %d"
                             % (c, self.channels), field="bottom")
        return [s]

    def run(self, bottoms, params):
        x = bottoms[0]
        shape = x.shape
        if x.dim() < 2:
            x = x.reshape(-1, 1)
        if self.use_global_stats:
            b0, b1, b2 = params[0].detach(), params[1].detach(), params[2].detach()
            factor = torch.where(b2 == 0, torch.zeros_like(b2), 1.0 / b2)
            y = F.batch_norm(x, b0 * factor, b1 * factor, None, None, False, 0.0, self.eps)
            return [y.reshape(shape)]
        dims = [0] + list(range(2, x.dim()))
        m = x.numel() // self.channels if self.channels else 0
        if m > 1:
            y = F.batch_norm(x, None, None, None, None, True, 0.0, self.eps)
        else:   # one value per channel: torch refuses, Caffe gives (x - x) / sqrt(eps)
            xc = x - x.mean(dims, keepdim=True)
            y = xc / torch.sqrt((xc * xc).mean(dims, keepdim=True) + self.eps)
        if x.device.type != "meta":
            with torch.no_grad():
                xd = x.detach()
                var, mean = torch.var_mean(xd, dim=dims, correction=0)
                corr = float(m) / (m - 1) if m > 1 else 1.0
                maf = self.maf
                params[2].mul_(maf).add_(1.0)
                params[0].mul_(maf).add_(mean)
                params[1].mul_(maf).add_(var, alpha=corr)
        return [y.reshape(shape)]


# ---------------------------------------------------------------------------
# Scale / Bias
# ---------------------------------------------------------------------------
class _AffineBase(CaffeLayer):
    """Shared axis / num_axes logic of Scale and Bias."""
    num_bottoms = (1, 2)
    num_tops = (1, 1)
    _field = None

    def _setup_operand(self, p):
        shape = bottom_shape(self)
        nd = len(shape)
        self.axis_param = int(p.axis)
        self.learned = len(self.bottom_shapes) == 1
        if self.learned:
            num_axes = int(p.num_axes)
            if num_axes < -1:
                raise self.error("num_axes must be non-negative, or -1 to extend to the end "
                                 "of the bottom", field=self._field + ".num_axes")
            axis = canonical_axis(self, p.axis, nd, self._field + ".axis")
            if num_axes != -1 and axis + num_axes > nd:
                raise self.error("axis %d + num_axes %d is beyond the bottom's %d axes"
                                 % (axis, num_axes, nd), field=self._field + ".num_axes")
            end = nd if num_axes == -1 else axis + num_axes
            return tuple(shape[axis:end])
        return None

    def _view_shape(self, xshape, oshape):
        """Shape that broadcasts the operand against the bottom, with checks."""
        nd, k = len(xshape), len(oshape)
        if k == 0:
            return ()
        axis = canonical_axis(self, self.axis_param, nd, self._field + ".axis")
        if axis + k > nd:
            raise self.error("operand shape %s does not fit bottom %s at axis %d"
                             % (list(oshape), list(xshape), axis), field=self._field + ".axis")
        if tuple(xshape[axis:axis + k]) != tuple(oshape):
            raise self.error("operand shape %s must match bottom %s from axis %d"
                             % (list(oshape), list(xshape), axis), field=self._field + ".axis")
        return (1,) * axis + tuple(oshape) + (1,) * (nd - axis - k)

    def _operand(self, x, o):
        key = (x.dim(), tuple(x.shape), tuple(o.shape))
        if key != self._cache_key:
            self._cache_view = self._view_shape(tuple(x.shape), tuple(o.shape))
            self._cache_key = key
        v = self._cache_view
        return o.reshape(v) if v else o

    def output_shapes(self, bottom_shapes):
        oshape = tuple(bottom_shapes[1]) if len(bottom_shapes) > 1 else tuple(self.blobs[0].shape)
        self._view_shape(tuple(bottom_shapes[0]), oshape)
        return [tuple(bottom_shapes[0])]


@register_layer("Scale")
class ScaleLayer(_AffineBase):
    _field = "scale_param"

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.scale_param
        self._cache_key = None
        oshape = self._setup_operand(p)
        if self.learned:
            if p.HasField("filler"):
                self.add_param_blob(oshape, p.filler)
            else:
                self.add_param_blob(oshape, default_fill=1.0)
        self.bias_term = bool(p.bias_term)
        self.bias_index = len(self.blobs)
        if self.bias_term:
            bshape = oshape if self.learned else tuple(bottom_shapes[1])
            self.add_param_blob(bshape, p.bias_filler)
        self.output_shapes(self.bottom_shapes)

    def run(self, bottoms, params):
        x = bottoms[0]
        s = bottoms[1] if len(bottoms) > 1 else params[0]
        s = self._operand(x, s)
        if self.bias_term:
            b = params[self.bias_index]
            b = b.reshape(s.shape) if b.dim() else b
            return [torch.addcmul(b, x, s)]
        return [x * s]


@register_layer("Bias")
class BiasLayer(_AffineBase):
    _field = "bias_param"

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.bias_param
        self._cache_key = None
        oshape = self._setup_operand(p)
        if self.learned:
            self.add_param_blob(oshape, p.filler)
        self.output_shapes(self.bottom_shapes)

    def run(self, bottoms, params):
        x = bottoms[0]
        b = bottoms[1] if len(bottoms) > 1 else params[0]
        return [x + self._operand(x, b)]


# ---------------------------------------------------------------------------
# Softmax
# ---------------------------------------------------------------------------
@register_layer("Softmax")
class SoftmaxLayer(CaffeLayer):
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.softmax_param
        self.axis = canonical_axis(self, p.axis, len(bottom_shape(self)), "softmax_param.axis")

    def output_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def run(self, bottoms, params):
        return [torch.softmax(bottoms[0], self.axis)]
