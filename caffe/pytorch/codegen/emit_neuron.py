"""Emitters for element-wise layers (one torch expression each)."""
from .registry import register


@register("ReLU")
def relu(ctx):
    slope = ctx.lp.relu_param.negative_slope
    if slope:
        ctx.assign("F.leaky_relu(%s, %r)" % (ctx.x, slope))
    else:
        ctx.assign("F.relu(%s)" % ctx.x)


@register("Sigmoid")
def sigmoid(ctx):
    ctx.assign("torch.sigmoid(%s)" % ctx.x)


@register("TanH")
def tanh(ctx):
    ctx.assign("torch.tanh(%s)" % ctx.x)


@register("AbsVal")
def absval(ctx):
    ctx.assign("torch.abs(%s)" % ctx.x)


@register("ELU")
def elu(ctx):
    ctx.assign("F.elu(%s, alpha=%r)" % (ctx.x, ctx.lp.elu_param.alpha))


@register("BNLL")
def bnll(ctx):
    ctx.assign("F.softplus(%s)" % ctx.x)


@register("Power")
def power(ctx):
    p = ctx.lp.power_param
    ctx.assign("(%r + %r * %s) ** %r" % (p.shift, p.scale, ctx.x, p.power))


@register("Exp")
def exp(ctx):
    p = ctx.lp.exp_param
    inner = "%r + %r * %s" % (p.shift, p.scale, ctx.x)
    if p.base == -1:
        ctx.assign("torch.exp(%s)" % inner)
    else:
        ctx.assign("torch.pow(%r, %s)" % (float(p.base), inner))


@register("Log")
def log(ctx):
    p = ctx.lp.log_param
    inner = "%r + %r * %s" % (p.shift, p.scale, ctx.x)
    if p.base == -1:
        ctx.assign("torch.log(%s)" % inner)
    else:
        ctx.assign("torch.log(%s) / math.log(%r)" % (inner, float(p.base)))


@register("Threshold")
def threshold(ctx):
    ctx.assign("(%s > %r).to(%s.dtype)" % (ctx.x, ctx.lp.threshold_param.threshold, ctx.x))


@register("Clip")
def clip(ctx):
    p = ctx.lp.clip_param
    ctx.assign("torch.clamp(%s, %r, %r)" % (ctx.x, p.min, p.max))


@register("Swish")
def swish(ctx):
    beta = ctx.lp.swish_param.beta
    ctx.assign("%s * torch.sigmoid(%r * %s)" % (ctx.x, beta, ctx.x))


@register("Dropout")
def dropout(ctx):
    p = ctx.lp.dropout_param
    if not getattr(p, "scale_train", True):
        ctx.assign("%s * (torch.bernoulli(torch.full_like(%s, %r)) if self.training else %r)"
                   % (ctx.x, ctx.x, 1 - p.dropout_ratio, 1 - p.dropout_ratio),
                   comment="scale_train: false")
        return
    ctx.assign("F.dropout(%s, p=%r, training=self.training)" % (ctx.x, p.dropout_ratio))


@register("PReLU")
def prelu(ctx):
    ctx.param_module()
    shared = ctx.blobs["weight"].dim() == 0          # channel_shared: one slope
    ctx.assign("F.prelu(%s, self.%s.weight%s)" % (ctx.x, ctx.attr,
                                                  ".reshape(1)" if shared else ""))
