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


@register("DetectionEvaluate")
def detection_evaluate(ctx):
    """Normalized boxes only: name_size_file rescales to pixel sizes read from a
    file, one image per call (state the generated code does not keep)."""
    p = ctx.lp.detection_evaluate_param
    if p.HasField("name_size_file"):
        raise ctx.error("evaluation in pixels of sizes read from a file (a cursor carried "
                        "across calls) has no standalone form; leave it unset to evaluate "
                        "normalized boxes", field="detection_evaluate_param.name_size_file")
    fn = ctx.helper("ssd_detection_evaluate")
    ctx.assign("%s(%s, %s, %d, background_label_id=%d, overlap_threshold=%r, "
               "evaluate_difficult_gt=%r)"
               % (fn, ctx.bottoms[0], ctx.bottoms[1], p.num_classes, p.background_label_id,
                  p.overlap_threshold, bool(p.evaluate_difficult_gt)),
               comment="rows [image, label, score, tp, fp] after one row per class")
