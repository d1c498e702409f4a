"""Emitters for convolution, deconvolution, pooling and LRN."""
from .registry import register


def spatial(ctx, p, field, nd, default):
    """Caffe's per-axis values: ``field`` (repeated or single) or ``field_h``/``field_w``."""
    if nd == 2 and p.DESCRIPTOR.fields_by_name.get(field + "_h") is not None \
            and p.HasField(field + "_h"):
        return (int(getattr(p, field + "_h")), int(getattr(p, field + "_w")))
    values = getattr(p, field if field != "kernel" else "kernel_size")
    if hasattr(values, "__len__"):
        values = list(values)
        if not values:
            return (default,) * nd
        if len(values) == 1:
            return (int(values[0]),) * nd
        return tuple(int(v) for v in values)
    return (int(values),) * nd


def _conv_geometry(ctx, p):
    if p.axis != 1:
        raise ctx.error("only axis 1 (channels) is supported in generated code",
                        field="convolution_param.axis")
    nd = len(ctx.bottom_shapes[0]) - 2
    if nd not in (1, 2, 3):
        raise ctx.error("%d spatial axes have no torch convolution" % nd)
    kernel = spatial(ctx, p, "kernel", nd, 1)
    stride = spatial(ctx, p, "stride", nd, 1)
    pad = spatial(ctx, p, "pad", nd, 0)
    dilation = tuple(int(d) for d in p.dilation) or (1,)
    if len(dilation) == 1:
        dilation = dilation * nd
    return nd, kernel, stride, pad, dilation


@register("Convolution", "Deconvolution")
def convolution(ctx):
    p = ctx.lp.convolution_param
    nd, kernel, stride, pad, dilation = _conv_geometry(ctx, p)
    cls = ("nn.Conv%dd" if ctx.type == "Convolution" else "nn.ConvTranspose%dd") % nd
    channels = ctx.bottom_shapes[0][1]
    args = ["%d" % channels, "%d" % p.num_output, "kernel_size=%s" % (kernel,)]
    for name, value, default in (("stride", stride, 1), ("padding", pad, 0),
                                 ("dilation", dilation, 1)):
        if any(v != default for v in value):        # torch's defaults are Caffe's
            args.append("%s=%s" % (name, value))
    if p.group != 1:
        args.append("groups=%d" % p.group)
    if "bias" not in ctx.blobs:
        args.append("bias=False")
    ctx.init("self.%s = %s(%s)" % (ctx.attr, cls, ", ".join(args)))
    ctx.freeze()
    ctx.assign("self.%s(%s)" % (ctx.attr, ctx.x))


def _pool_mode(ctx, param, field):
    """"max" or "avg" for the helpers; STOCHASTIC (random draws) has no standalone form."""
    mode = {0: "max", 1: "avg"}.get(int(param.pool))
    if mode is None:
        raise ctx.error("STOCHASTIC pooling has no standalone form", field=field + ".pool")
    return mode


@register("Pooling")
def pooling(ctx):
    p = ctx.lp.pooling_param
    mode = _pool_mode(ctx, p, "pooling_param")
    ceil = int(getattr(p, "round_mode", 0)) == 0
    if p.global_pooling:
        kernel = "%s.shape[-2:]" % ctx.x
        stride, pad = (1, 1), (0, 0)
    else:
        kernel = spatial(ctx, p, "kernel", 2, 1)
        stride = spatial(ctx, p, "stride", 2, 1)
        pad = spatial(ctx, p, "pad", 2, 0)
    if len(ctx.tops) > 1:
        if mode != "max":
            raise ctx.error("only MAX pooling has a mask top", field="pooling_param.pool")
        fn = ctx.helper("caffe_max_pool2d_with_mask")
        ctx.assign("%s(%s, kernel=%s, stride=%s, pad=%s%s)"
                   % (fn, ctx.x, kernel, stride, pad, "" if ceil else ", ceil_mode=False"),
                   comment="second top: the argmax mask SegNet's Upsample reads")
        return
    fn = ctx.helper("caffe_pool2d")
    ctx.assign("%s(%s, %r, kernel=%s, stride=%s, pad=%s%s)"
               % (fn, ctx.x, mode, kernel, stride, pad, "" if ceil else ", ceil_mode=False"))


@register("SPP")
def spp(ctx):
    p = ctx.lp.spp_param
    mode = _pool_mode(ctx, p, "spp_param")
    fn = ctx.helper("caffe_spp")
    ctx.assign("%s(%s, %d, %r)" % (fn, ctx.x, p.pyramid_height, mode))


@register("Im2col")
def im2col(ctx):
    p = ctx.lp.convolution_param
    nd, kernel, stride, pad, dilation = _conv_geometry(ctx, p)
    if nd != 2:
        raise ctx.error("only 2 spatial axes are supported in generated code (got %d)" % nd,
                        field="convolution_param.kernel_size")
    fn = ctx.helper("caffe_im2col")
    ctx.assign("%s(%s, axis=1, kernel=%s, stride=%s, pad=%s, dilation=%s)"
               % (fn, ctx.x, kernel, stride, pad, dilation))


@register("LRN")
def lrn(ctx):
    p = ctx.lp.lrn_param
    fn = ctx.helper("caffe_lrn")
    ctx.assign("%s(%s, size=%d, alpha=%r, beta=%r, k=%r%s)"
               % (fn, ctx.x, p.local_size, p.alpha, p.beta, p.k,
                  "" if p.norm_region == 0 else ", across_channels=False"))
