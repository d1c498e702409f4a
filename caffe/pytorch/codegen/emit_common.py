"""Emitters for InnerProduct, Softmax, Concat, Eltwise, Slice, Flatten,
Reshape, Crop, BatchNorm, Scale and Bias."""
from .registry import register


def _axis(ctx, axis, nd, field):
    a = axis + nd if axis < 0 else axis
    if not 0 <= a < max(nd, 1):
        raise ctx.error("axis %d out of range for %d axes" % (axis, nd), field=field)
    return a


@register("InnerProduct")
def inner_product(ctx):
    p = ctx.lp.inner_product_param
    nd = len(ctx.bottom_shapes[0])
    axis = _axis(ctx, p.axis, nd, "inner_product_param.axis")
    flat = ctx.x if axis == nd - 1 else "%s.flatten(%d)" % (ctx.x, axis)
    if p.transpose:
        ctx.param_module()
        bias = ", self.%s.bias" % ctx.attr if "bias" in ctx.blobs else ""
        ctx.assign("F.linear(%s, self.%s.weight.t()%s)" % (flat, ctx.attr, bias),
                   comment="transpose: weight is (inputs, outputs)")
        return
    n_out, n_in = ctx.blobs["weight"].shape
    ctx.init("self.%s = nn.Linear(%d, %d%s)" % (ctx.attr, n_in, n_out,
                                               "" if "bias" in ctx.blobs else ", bias=False"))
    ctx.freeze()
    ctx.assign("self.%s(%s)" % (ctx.attr, flat))


@register("Softmax")
def softmax(ctx):
    ctx.assign("F.softmax(%s, dim=%d)" % (ctx.x, ctx.lp.softmax_param.axis))


@register("Concat")
def concat(ctx):
    p = ctx.lp.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    ctx.assign("torch.cat([%s], dim=%d)" % (", ".join(ctx.bottoms), axis))


@register("Eltwise")
def eltwise(ctx):
    p = ctx.lp.eltwise_param
    op = int(p.operation)
    if op == 0:
        ctx.assign(" * ".join(ctx.bottoms))
    elif op == 1:
        coeff = list(p.coeff)
        if coeff and len(coeff) != len(ctx.bottoms):
            raise ctx.error("give one coefficient per bottom", field="eltwise_param.coeff")
        if not coeff or all(c == 1 for c in coeff):
            ctx.assign(" + ".join(ctx.bottoms))
        else:
            ctx.assign(" + ".join("%r * %s" % (c, b) for c, b in zip(coeff, ctx.bottoms)))
    elif op == 2:
        expr = ctx.bottoms[0]
        for b in ctx.bottoms[1:]:
            expr = "torch.maximum(%s, %s)" % (expr, b)
        ctx.assign(expr)
    else:
        raise ctx.error("unknown operation %d" % op, field="eltwise_param.operation")


@register("Slice")
def slice_(ctx):
    p = ctx.lp.slice_param
    axis = p.slice_dim if p.HasField("slice_dim") else p.axis
    if len(ctx.tops) == 1:
        ctx.assign(ctx.x)
        return
    if p.slice_point:
        ctx.assign("list(torch.tensor_split(%s, %s, dim=%d))"
                   % (ctx.x, [int(s) for s in p.slice_point], axis))
    else:
        ctx.assign("list(torch.chunk(%s, %d, dim=%d))" % (ctx.x, len(ctx.tops), axis))


@register("Flatten")
def flatten(ctx):
    p = ctx.lp.flatten_param
    ctx.assign("torch.flatten(%s, %d, %d)" % (ctx.x, p.axis, p.end_axis))


@register("Reshape")
def reshape(ctx):
    p = ctx.lp.reshape_param
    fn = ctx.helper("caffe_reshape")
    ctx.assign("%s(%s, %s, axis=%d, num_axes=%d)"
               % (fn, ctx.x, [int(d) for d in p.shape.dim], p.axis, p.num_axes))


@register("Crop")
def crop(ctx):
    p = ctx.lp.crop_param
    fn = ctx.helper("caffe_crop")
    nd = len(ctx.bottom_shapes[0])
    axis = _axis(ctx, p.axis, nd, "crop_param.axis")
    ctx.assign("%s(%s, %s, axis=%d, offsets=%s)"
               % (fn, ctx.bottoms[0], ctx.bottoms[1], axis, [int(o) for o in p.offset]))


@register("BatchNorm")
def batch_norm(ctx):
    p = ctx.lp.batch_norm_param
    fn = ctx.helper("CaffeBatchNorm")
    shape = ctx.bottom_shapes[0]
    channels = 1 if len(shape) <= 1 else shape[1]
    ugs = repr(bool(p.use_global_stats)) if p.HasField("use_global_stats") else "None"
    ctx.init("self.%s = %s(%d, eps=%r, moving_average_fraction=%r, use_global_stats=%s)"
             % (ctx.attr, fn, channels, p.eps, p.moving_average_fraction, ugs))
    ctx.assign("self.%s(%s)" % (ctx.attr, ctx.x))


def _operand_view(ctx, p, field, operand_shape):
    nd = len(ctx.bottom_shapes[0])
    if not operand_shape:
        return None
    axis = _axis(ctx, p.axis, nd, field + ".axis")
    k = len(operand_shape)
    return (1,) * axis + tuple(operand_shape) + (1,) * (nd - axis - k)


def _affine(ctx, p, field, scale):
    """Scale (x * s [+ b]) or Bias (x + b), learned or from a second bottom."""
    parts = []
    if len(ctx.bottoms) > 1:
        view = _operand_view(ctx, p, field, ctx.bottom_shapes[1])
        other = ctx.bottoms[1] if view is None else "%s.view%s" % (ctx.bottoms[1], view)
        parts.append(other)
    if ctx.blobs:
        ctx.param_module()
    names = list(ctx.blobs)
    learned = names if len(ctx.bottoms) == 1 else [n for n in names if n == "bias"]
    for n in learned:
        view = _operand_view(ctx, p, field, tuple(ctx.blobs[n].shape))
        ref = "self.%s.%s" % (ctx.attr, n)
        parts.append(ref if view is None else "%s.view%s" % (ref, view))
    if scale:
        expr = "%s * %s" % (ctx.x, parts[0])
        if len(parts) > 1:
            expr += " + %s" % parts[1]
    else:
        expr = "%s + %s" % (ctx.x, parts[0])
    ctx.assign(expr)


@register("Scale")
def scale(ctx):
    _affine(ctx, ctx.lp.scale_param, "scale_param", scale=True)


@register("Bias")
def bias(ctx):
    _affine(ctx, ctx.lp.bias_param, "bias_param", scale=False)


@register("Reduction")
def reduction(ctx):
    p = ctx.lp.reduction_param
    nd = len(ctx.bottom_shapes[0])
    axis = _axis(ctx, p.axis, nd, "reduction_param.axis")
    flat = "%s.flatten(%d)" % (ctx.x, axis) if axis < nd else ctx.x
    term = {1: flat, 2: "%s.abs()" % flat, 3: "%s ** 2" % flat, 4: flat}.get(int(p.operation))
    if term is None:
        raise ctx.error("unknown operation %d" % p.operation, field="reduction_param.operation")
    expr = ("(%s).sum(-1)" if int(p.operation) != 4 else "(%s).mean(-1)") % term
    if p.coeff != 1:
        expr = "%s * %r" % (expr, p.coeff)
    ctx.assign(expr)


@register("Tile")
def tile(ctx):
    p = ctx.lp.tile_param
    nd = len(ctx.bottom_shapes[0])
    axis = _axis(ctx, p.axis, nd, "tile_param.axis")
    reps = (1,) * axis + (int(p.tiles),) + (1,) * (nd - axis - 1)
    ctx.assign("%s.repeat%s" % (ctx.x, reps))


@register("MVN")
def mvn(ctx):
    p = ctx.lp.mvn_param
    start = 1 if p.across_channels else 2
    dims = tuple(range(start, len(ctx.bottom_shapes[0])))
    centred = "%s - %s.mean(%s, keepdim=True)" % (ctx.x, ctx.x, dims)
    if not p.normalize_variance:
        ctx.assign(centred)
        return
    ctx.assign("(%s) / (%s.var(%s, correction=0, keepdim=True).sqrt() + %r)"
               % (centred, ctx.x, dims, p.eps), comment="Caffe divides by std + eps")


@register("Parameter")
def parameter(ctx):
    ctx.param_module()
    ctx.assign("self.%s.weight" % ctx.attr)


@register("Embed")
def embed(ctx):
    ctx.param_module()
    expr = "F.embedding(%s.long(), self.%s.weight)" % (ctx.x, ctx.attr)
    if "bias" in ctx.blobs:
        expr += " + self.%s.bias" % ctx.attr
    ctx.assign(expr, comment="indices truncated as Caffe's static_cast<int>")


@register("ArgMax")
def argmax(ctx):
    p = ctx.lp.argmax_param
    args = ["top_k=%d" % p.top_k] if p.top_k != 1 else []
    if p.out_max_val:
        args.append("out_max_val=True")
    if p.HasField("axis"):
        args.append("axis=%d" % _axis(ctx, p.axis, len(ctx.bottom_shapes[0]),
                                      "argmax_param.axis"))
    fn = ctx.helper("caffe_argmax")
    ctx.assign("%s(%s)" % (fn, ", ".join([ctx.x] + args)), comment="no gradient in Caffe")


@register("BatchReindex")
def batch_reindex(ctx):
    ctx.assign("%s.index_select(0, %s.detach().long())" % (ctx.bottoms[0], ctx.bottoms[1]))


@register("Filter")
def filter_(ctx):
    sel = ctx.bottoms[-1]
    keep = "torch.nonzero(%s.detach().reshape(-1) != 0).reshape(-1)" % sel
    data = ctx.bottoms[:-1]
    if len(data) == 1:
        ctx.assign("%s.index_select(0, %s)" % (data[0], keep),
                   comment="items whose selector is nonzero: a data-dependent size")
        return
    ctx.writer.forward_lines.append("%s_keep = %s" % (ctx.attr, keep))
    ctx.assign(", ".join("%s.index_select(0, %s_keep)" % (b, ctx.attr) for b in data),
               comment="items whose selector is nonzero: a data-dependent size")
