"""Emitters for the loss layers (forward values; autograd differentiates them) and
Accuracy."""
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


def _mode(ctx, default, legacy=True):
    lp = ctx.lp.loss_param
    if lp.HasField("normalization"):
        return _NORMALIZATION[int(lp.normalization)]
    if legacy and lp.HasField("normalize"):
        return "VALID" if lp.normalize else "BATCH_SIZE"
    return default


def _ignore(ctx):
    lp = ctx.lp.loss_param
    return int(lp.ignore_label) if lp.HasField("ignore_label") else None


@register("SigmoidCrossEntropyLoss")
def sigmoid_xent_loss(ctx):
    fn = ctx.helper("caffe_sigmoid_xent_loss")
    ctx.assign("%s(%s, %s, ignore_label=%r, normalization=%r)"
               % (fn, ctx.bottoms[0], ctx.bottoms[1], _ignore(ctx), _mode(ctx, "BATCH_SIZE")))


@register("MultinomialLogisticLoss")
def multinomial_logistic_loss(ctx):
    fn = ctx.helper("caffe_multinomial_logistic_loss")
    ctx.assign("%s(%s, %s)" % (fn, ctx.bottoms[0], ctx.bottoms[1]))


@register("InfogainLoss")
def infogain_loss(ctx):
    p = ctx.lp.infogain_loss_param
    if len(ctx.bottoms) > 2:
        matrix = ctx.bottoms[2]
    else:              # read from infogain_loss_param.source now: written into the file
        matrix = "self.%s_infogain" % ctx.attr
        h = ctx.child.caffe_layer.infogain
        ctx.init("self.register_buffer(%r, torch.tensor(%r).reshape(%s), persistent=False)"
                 % (ctx.attr + "_infogain", h.reshape(-1).tolist(), tuple(h.shape)))
    fn = ctx.helper("caffe_infogain_loss")
    axis = p.axis + len(ctx.bottom_shapes[0]) if p.axis < 0 else p.axis
    ctx.assign("%s(%s, %s, %s, axis=%d, ignore_label=%r, normalization=%r%s)"
               % (fn, ctx.bottoms[0], ctx.bottoms[1], matrix, axis, _ignore(ctx),
                  _mode(ctx, "VALID", legacy=False),
                  ", with_prob=True" if len(ctx.tops) > 1 else ""))


@register("HingeLoss")
def hinge_loss(ctx):
    fn = ctx.helper("caffe_hinge_loss")
    l2 = int(ctx.lp.hinge_loss_param.norm) == 2
    ctx.assign("%s(%s, %s%s)" % (fn, ctx.bottoms[0], ctx.bottoms[1], ", l2=True" if l2 else ""))


@register("SmoothL1Loss")
def smooth_l1_loss(ctx):
    fn = ctx.helper("caffe_smooth_l1_loss")
    b = ctx.bottoms
    if len(b) == 3:           # fast-rcnn / SSD's older form: one weight, no sigma
        ctx.assign("%s(%s, %s, legacy_weight=%s)" % (fn, b[0], b[1], b[2]))
        return
    extra = ", inside=%s, outside=%s" % (b[2], b[3]) if len(b) == 4 else ""
    ctx.assign("%s(%s, %s%s, sigma=%r)"
               % (fn, b[0], b[1], extra, ctx.lp.smooth_l1_loss_param.sigma))


@register("Accuracy")
def accuracy(ctx):
    p = ctx.lp.accuracy_param
    axis = p.axis + len(ctx.bottom_shapes[0]) if p.axis < 0 else p.axis
    args = ["axis=%d" % axis, "top_k=%d" % p.top_k]
    if p.HasField("ignore_label"):
        args.append("ignore_label=%d" % p.ignore_label)
    if len(ctx.tops) > 1:
        args.append("per_class=True")
    fn = ctx.helper("caffe_accuracy")
    ctx.assign("%s(%s, %s, %s)" % (fn, ctx.bottoms[0], ctx.bottoms[1], ", ".join(args)),
               comment="no gradient in Caffe")


_LOC_LOSS = {0: "L2", 1: "SMOOTH_L1"}
_CONF_LOSS = {0: "SOFTMAX", 1: "LOGISTIC"}
_MATCH = {0: "BIPARTITE", 1: "PER_PREDICTION"}
_MINING = {0: "NONE", 1: "MAX_NEGATIVE", 2: "HARD_EXAMPLE"}


@register("MultiBoxLoss")
def multibox_loss(ctx):
    """Matching on the priors (SSD's setting) only; mining without NMS only."""
    p = ctx.lp.multibox_loss_param
    f = "multibox_loss_param."
    if not p.use_prior_for_matching:
        raise ctx.error("matching on decoded predictions is not supported in generated code",
                        field=f + "use_prior_for_matching")
    mining = _MINING[int(p.mining_type)]
    if mining != "NONE" and p.HasField("nms_param") and p.nms_param.nms_threshold > 0:
        raise ctx.error("NMS among the mined examples is not supported in generated code",
                        field=f + "nms_param")
    pd = list(ctx.lp.propagate_down)
    args = ["num_classes=%d" % p.num_classes,
            "share_location=%r" % bool(p.share_location),
            "background_label_id=%d" % p.background_label_id,
            "use_difficult_gt=%r" % bool(p.use_difficult_gt),
            "match_type=%r" % _MATCH[int(p.match_type)],
            "overlap_threshold=%r" % p.overlap_threshold,
            "mining_type=%r" % mining]
    if mining == "MAX_NEGATIVE":
        args += ["neg_pos_ratio=%r" % p.neg_pos_ratio, "neg_overlap=%r" % p.neg_overlap]
    elif mining == "HARD_EXAMPLE":
        args.append("sample_size=%d" % p.sample_size)
    args += ["code_type=%d" % p.code_type,
             "encode_variance_in_target=%r" % bool(p.encode_variance_in_target),
             "loc_loss_type=%r" % _LOC_LOSS[int(p.loc_loss_type)],
             "conf_loss_type=%r" % _CONF_LOSS[int(p.conf_loss_type)],
             "loc_weight=%r" % p.loc_weight,
             "normalization=%r" % _mode(ctx, "VALID")]
    for name in ("ignore_cross_boundary_bbox", "bp_inside", "map_object_to_agnostic"):
        if getattr(p, name):
            args.append("%s=True" % name)
    if len(pd) > 0 and not pd[0]:
        args.append("use_loc=False")
    if len(pd) > 1 and not pd[1]:
        args.append("use_conf=False")
    fn = ctx.helper("ssd_multibox_loss")
    ctx.assign("%s(%s, %s)" % (fn, ", ".join(ctx.bottoms), ", ".join(args)),
               comment="matches and mined rows computed at run time")
