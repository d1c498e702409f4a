"""Emitters for SSD's Normalize, Permute and PriorBox."""
from .registry import register


@register("Normalize")
def normalize(ctx):
    p = ctx.lp.norm_param
    ctx.param_module()
    fn = ctx.helper("caffe_normalize")
    ctx.assign("%s(%s, self.%s.weight, across_spatial=%r, eps=%r)"
               % (fn, ctx.x, ctx.attr, bool(p.across_spatial), p.eps))


@register("Permute")
def permute(ctx):
    nd = len(ctx.bottom_shapes[0])
    order = [int(o) for o in ctx.lp.permute_param.order]
    order += [i for i in range(nd) if i not in order]
    ctx.assign("%s.permute(%s).contiguous()" % (ctx.x, ", ".join(str(o) for o in order)))


@register("PriorBox")
def prior_box(ctx):
    fn = ctx.helper("Constant")
    made_for = [tuple(s[2:]) for s in ctx.bottom_shapes]
    ctx.init("self.%s = %s(%s, made_for=%r)" % (ctx.attr, fn, tuple(ctx.top_shapes[0]),
                                                made_for))
    ctx.constant = True
    ctx.assign("self.%s(%s)" % (ctx.attr, ", ".join(ctx.bottoms)),
               comment="priors depend on shapes only: stored with the weights")
