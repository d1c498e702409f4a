"""Emitters for the loss layers deploy and fine-tuning nets use."""
from .registry import register

_NORMALIZATION = {0: "FULL", 1: "VALID", 2: "BATCH_SIZE", 3: "NONE"}


@register("SoftmaxWithLoss")
def softmax_loss(ctx):
    if len(ctx.tops) > 1:
        raise ctx.error("the second (probability) top has no standalone form", field="top")
    lp = ctx.lp.loss_param
    if lp.HasField("normalization"):
        mode = _NORMALIZATION[int(lp.normalization)]
    elif lp.HasField("normalize"):
        mode = "VALID" if lp.normalize else "BATCH_SIZE"
    else:
        mode = "VALID"
    ignore = int(lp.ignore_label) if lp.HasField("ignore_label") else None
    fn = ctx.helper("caffe_softmax_loss")
    ctx.assign("%s(%s, %s, axis=%d, ignore_label=%r, normalization=%r)"
               % (fn, ctx.bottoms[0], ctx.bottoms[1], ctx.lp.softmax_param.axis, ignore, mode))


@register("EuclideanLoss")
def euclidean_loss(ctx):
    a, b = ctx.bottoms
    ctx.assign("((%s - %s.reshape(%s.shape)) ** 2).sum() / %s.shape[0] / 2" % (a, b, a, a))


@register("ContrastiveLoss")
def contrastive_loss(ctx):
    p = ctx.lp.contrastive_loss_param
    fn = ctx.helper("caffe_contrastive_loss")
    ctx.assign("%s(%s, %s, %s, margin=%r, legacy_version=%r)"
               % (fn, ctx.bottoms[0], ctx.bottoms[1], ctx.bottoms[2], p.margin,
                  bool(p.legacy_version)))
