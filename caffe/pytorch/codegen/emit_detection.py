"""Emitters for the detection and segmentation forks' layers: DeepLab's Interp,
SegNet's Upsample, Fast R-CNN's ROIPooling, R-FCN's PSROIPooling and SSD's
DetectionOutput."""
from .registry import register


@register("Interp")
def interp(ctx):
    p = ctx.lp.interp_param
    if len(ctx.bottom_shapes[0]) != 4:
        raise ctx.error("only 4-axis (N, C, H, W) inputs are supported in generated code",
                        field="bottom")
    args = []
    if len(ctx.bottoms) > 1:
        args.append("like=%s" % ctx.bottoms[1])
    else:
        shrink, zoom = p.HasField("shrink_factor"), p.HasField("zoom_factor")
        if shrink != zoom:
            args.append("shrink=%d" % p.shrink_factor if shrink else "zoom=%d" % p.zoom_factor)
        elif p.HasField("height") and p.HasField("width"):
            args.append("height=%d, width=%d" % (p.height, p.width))
        else:
            args.append("zoom=%d, shrink=%d" % (p.zoom_factor, p.shrink_factor))
    if p.pad_beg or p.pad_end:
        args.append("pad_beg=%d, pad_end=%d" % (p.pad_beg, p.pad_end))
    fn = ctx.helper("caffe_interp")
    ctx.assign("%s(%s)" % (fn, ", ".join([ctx.x] + args)))


@register("Upsample")
def upsample(ctx):
    p = ctx.lp.upsample_param
    if p.HasField("upsample_h") and p.HasField("upsample_w"):
        args = "size=(%d, %d)" % (p.upsample_h, p.upsample_w)
    else:
        if p.HasField("scale_h"):
            scale = (int(p.scale_h), int(p.scale_w))
        else:
            scale = (int(p.scale),) * 2
        args = "scale=%s" % (scale,)
        pad = (int(bool(p.pad_out_h)), int(bool(p.pad_out_w)))
        if any(pad):
            args += ", pad_out=%s" % (pad,)
    fn = ctx.helper("caffe_unpool")
    ctx.assign("%s(%s, %s, %s)" % (fn, ctx.bottoms[0], ctx.bottoms[1], args))


@register("ROIPooling")
def roi_pooling(ctx):
    p = ctx.lp.roi_pooling_param
    fn = ctx.helper("caffe_roi_pool")
    ctx.assign("%s(%s, %s, %d, %d, spatial_scale=%r)"
               % (fn, ctx.bottoms[0], ctx.bottoms[1], p.pooled_h, p.pooled_w, p.spatial_scale))


@register("PSROIPooling")
def psroi_pooling(ctx):
    p = ctx.lp.psroi_pooling_param
    fn = ctx.helper("caffe_psroi_pool")
    ctx.assign("%s(%s, %s, %d, %d, spatial_scale=%r)"
               % (fn, ctx.bottoms[0], ctx.bottoms[1], p.output_dim, p.group_size,
                  p.spatial_scale))


@register("DetectionOutput")
def detection_output(ctx):
    """save_output_param, visualize and a fourth bottom are ignored, as the runtime does."""
    p = ctx.lp.detection_output_param
    nms = p.nms_param
    args = ["num_classes=%d" % p.num_classes]
    if not p.share_location:
        args.append("share_location=False")
    args.append("background_label_id=%d" % p.background_label_id)
    args.append("code_type=%d" % p.code_type)
    if p.variance_encoded_in_target:
        args.append("variance_in_target=True")
    if p.HasField("confidence_threshold"):
        args.append("confidence_threshold=%r" % p.confidence_threshold)
    args.append("nms_threshold=%r" % nms.nms_threshold)
    if nms.eta != 1:
        args.append("eta=%r" % nms.eta)
    if nms.HasField("top_k"):
        args.append("top_k=%d" % nms.top_k)
    args.append("keep_top_k=%d" % p.keep_top_k)
    fn = ctx.helper("ssd_detection_output")
    ctx.assign("%s(%s, %s)" % (fn, ", ".join(ctx.bottoms[:3]), ", ".join(args)),
               comment="rows [image, label, score, xmin, ymin, xmax, ymax]")


@register("BoxAnnotatorOHEM")
def box_annotator_ohem(ctx):
    p = ctx.lp.box_annotator_ohem_param
    fn = ctx.helper("rfcn_box_annotator_ohem")
    ctx.assign("%s(%s, roi_per_img=%d, ignore_label=%d)"
               % (fn, ", ".join(ctx.bottoms), p.roi_per_img, p.ignore_label),
               comment="hard examples only; no gradient in R-FCN")
