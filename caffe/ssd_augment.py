"""The SSD fork's image and box augmentation (``data_transformer.cpp``,
``im_transforms.cpp``, ``sampler.cpp``) on OpenCV images (HWC, BGR, uint8).

Annotations travel as a float32 array of rows
``[group_label, instance_id, xmin, ymin, xmax, ymax, difficult]`` in the
AnnotatedDatum's group order; every step keeps that order, as the fork's
TransformAnnotation does.  Random draws come from a ``numpy.random.RandomState``
the caller owns (the fork's ``caffe_rng_uniform`` is uniform on [a, b)).
"""
import numpy as np

f32 = np.float32
WARP, FIT_SMALL_SIZE, FIT_LARGE_SIZE_AND_PAD = 1, 2, 3
CENTER, MIN_OVERLAP = 0, 1


class AugmentError(ValueError):
    """An augmentation parameter the fork would reject (CHECK failure)."""


def _cv2():
    import cv2
    return cv2


def empty_rows():
    return np.zeros((0, 7), dtype=np.float32)


# ---------------------------------------------------------------------------
# boxes
# ---------------------------------------------------------------------------
def bbox_size(b):
    w = b[..., 2] - b[..., 0]
    h = b[..., 3] - b[..., 1]
    return np.where((w < 0) | (h < 0), f32(0), w * h).astype(f32)


def clip(b):
    return np.clip(b, f32(0), f32(1)).astype(f32)


def jaccard(box, boxes):
    """JaccardOverlap of one box with each of ``boxes`` (K, 4)."""
    b = boxes
    disjoint = (b[:, 0] > box[2]) | (b[:, 2] < box[0]) | (b[:, 1] > box[3]) | (b[:, 3] < box[1])
    iw = np.minimum(box[2], b[:, 2]) - np.maximum(box[0], b[:, 0])
    ih = np.minimum(box[3], b[:, 3]) - np.maximum(box[1], b[:, 1])
    inter = (iw * ih).astype(f32)
    ok = ~disjoint & (iw > 0) & (ih > 0)
    union = bbox_size(box[None])[0] + bbox_size(b) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, inter / union, f32(0)).astype(f32)


def coverage(a, b):
    """BBoxCoverage(a, b) = area(a ∩ b) / area(a), rowwise (broadcasting)."""
    disjoint = (b[..., 0] > a[..., 2]) | (b[..., 2] < a[..., 0]) | \
        (b[..., 1] > a[..., 3]) | (b[..., 3] < a[..., 1])
    inter = np.stack([np.maximum(a[..., 0], b[..., 0]), np.maximum(a[..., 1], b[..., 1]),
                      np.minimum(a[..., 2], b[..., 2]), np.minimum(a[..., 3], b[..., 3])], -1)
    isz = np.where(disjoint, f32(0), bbox_size(inter))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(isz > 0, isz / bbox_size(a), f32(0)).astype(f32)


def update_by_resize_policy(param, old_w, old_h, boxes):
    """UpdateBBoxByResizePolicy: boxes of the original image as they sit in
    the resized one (clipped, padding accounted for)."""
    nh, nw = f32(param.height), f32(param.width)
    orig_aspect = f32(old_w) / f32(old_h)
    new_aspect = nw / nh
    x1 = boxes[:, 0] * f32(old_w)
    y1 = boxes[:, 1] * f32(old_h)
    x2 = boxes[:, 2] * f32(old_w)
    y2 = boxes[:, 3] * f32(old_h)
    mode = int(param.resize_mode)
    zero = f32(0)
    if mode == WARP or mode == FIT_SMALL_SIZE:
        if mode == FIT_SMALL_SIZE:
            if orig_aspect < new_aspect:
                nh = f32(nw / orig_aspect)
            else:
                nw = f32(orig_aspect * nh)
        x1 = np.maximum(zero, x1 * nw / f32(old_w))
        x2 = np.minimum(nw, x2 * nw / f32(old_w))
        y1 = np.maximum(zero, y1 * nh / f32(old_h))
        y2 = np.minimum(nh, y2 * nh / f32(old_h))
    elif mode == FIT_LARGE_SIZE_AND_PAD:
        if orig_aspect > new_aspect:
            pad = f32((nh - nw / orig_aspect) / 2)
            x1 = np.maximum(zero, x1 * nw / f32(old_w))
            x2 = np.minimum(nw, x2 * nw / f32(old_w))
            y1 = pad + np.maximum(zero, y1 * (nh - 2 * pad) / f32(old_h))
            y2 = pad + np.minimum(nh, y2 * (nh - 2 * pad) / f32(old_h))
        else:
            pad = f32((nw - orig_aspect * nh) / 2)
            x1 = pad + np.maximum(zero, x1 * (nw - 2 * pad) / f32(old_w))
            x2 = pad + np.minimum(nw, x2 * (nw - 2 * pad) / f32(old_w))
            y1 = np.maximum(zero, y1 * nh / f32(old_h))
            y2 = np.minimum(nh, y2 * nh / f32(old_h))
    else:
        raise AugmentError("unknown resize_mode %d" % mode)
    return np.stack([x1 / nw, y1 / nh, x2 / nw, y2 / nh], 1).astype(f32)


def meets_emit_constraint(src, boxes, emit):
    """MeetEmitConstraint for each box against the crop ``src``."""
    if int(emit.emit_type) == CENTER:
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        return (cx >= src[0]) & (cx <= src[2]) & (cy >= src[1]) & (cy <= src[3])
    if int(emit.emit_type) == MIN_OVERLAP:
        return coverage(boxes, np.broadcast_to(src, boxes.shape)) > f32(emit.emit_overlap)
    raise AugmentError("unknown emit_type %d" % int(emit.emit_type))


def project(src, boxes):
    """ProjectBBox: boxes in the frame of ``src``, clipped; and which are kept
    (they overlap src and keep a positive area)."""
    keep = ~((boxes[:, 0] >= src[2]) | (boxes[:, 2] <= src[0]) |
             (boxes[:, 1] >= src[3]) | (boxes[:, 3] <= src[1]))
    sw, sh = f32(src[2] - src[0]), f32(src[3] - src[1])
    p = np.stack([(boxes[:, 0] - src[0]) / sw, (boxes[:, 1] - src[1]) / sh,
                  (boxes[:, 2] - src[0]) / sw, (boxes[:, 3] - src[1]) / sh], 1).astype(f32)
    p = clip(p)
    return p, keep & (bbox_size(p) > 0)


def extrapolate(param, h, w, crop, boxes):
    """ExtrapolateBBox (FIT_SMALL_SIZE with height_scale/width_scale only)."""
    hs, ws = f32(param.height_scale), f32(param.width_scale)
    if not (hs > 0 and ws > 0 and int(param.resize_mode) == FIT_SMALL_SIZE):
        return boxes
    orig_aspect = f32(w) / f32(h)
    rh, rw = f32(param.height), f32(param.width)
    if orig_aspect < rw / rh:
        rh = f32(rw / orig_aspect)
    else:
        rw = f32(rh * orig_aspect)
    ch = f32(rh * (crop[3] - crop[1]))
    cw = f32(rw * (crop[2] - crop[0]))
    if cw < ws or ch < hs:
        raise AugmentError("crop %gx%g is smaller than height_scale/width_scale" % (ch, cw))
    out = boxes.copy()
    out[:, [0, 2]] *= cw / ws
    out[:, [1, 3]] *= ch / hs
    return out.astype(f32)


def transform_annotation(rows, img_h, img_w, resize, crop, mirror, emit):
    """TransformAnnotation: rows of the source image -> rows in the output.
    ``resize`` is the ResizeParameter when the image gets resized, else None."""
    if not len(rows):
        return rows
    boxes = rows[:, 2:6].astype(f32)
    if resize is not None:
        boxes = update_by_resize_policy(resize, img_w, img_h, boxes)
    crop = np.asarray(crop, dtype=f32)
    keep = np.ones(len(rows), bool)
    if emit is not None:
        keep &= meets_emit_constraint(crop, boxes, emit)
    proj, ok = project(crop, boxes)
    keep &= ok
    if mirror:
        proj = np.stack([1 - proj[:, 2], proj[:, 1], 1 - proj[:, 0], proj[:, 3]], 1).astype(f32)
    if resize is not None:
        proj = extrapolate(resize, img_h, img_w, crop, proj)
    out = rows[keep].copy()
    out[:, 2:6] = proj[keep]
    return out


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------
_INTERP = {1: "INTER_LINEAR", 2: "INTER_AREA", 3: "INTER_NEAREST", 4: "INTER_CUBIC",
           5: "INTER_LANCZOS4"}
_PAD = {1: "BORDER_CONSTANT", 2: "BORDER_REFLECT101", 3: "BORDER_REPLICATE"}


def infer_new_size(param, w, h):
    """InferNewSize: (width, height) of the resized image."""
    height, width = int(param.height), int(param.width)
    if int(param.resize_mode) == FIT_SMALL_SIZE:
        orig_aspect = f32(w) / f32(h)
        if orig_aspect < f32(width) / f32(height):
            height = int(f32(width / orig_aspect))
        else:
            width = int(f32(orig_aspect * height))
    return width, height


def apply_resize(img, param, rng):
    """ApplyResize: WARP, FIT_SMALL_SIZE or FIT_LARGE_SIZE_AND_PAD with one of
    the interp_modes drawn uniformly."""
    cv2 = _cv2()
    nh, nw = int(param.height), int(param.width)
    interp = cv2.INTER_LINEAR
    modes = list(param.interp_mode)
    if modes:
        if len(modes) > 1:
            cum = np.cumsum(np.full(len(modes), f32(1.0 / len(modes)), dtype=f32))
            val = f32(rng.uniform(0, cum[-1]))
            pick = int(np.searchsorted(cum, val, side="left"))
            mode = modes[min(pick, len(modes) - 1)]
        else:
            mode = modes[0]
        interp = getattr(cv2, _INTERP[int(mode)])
    pad_mode = getattr(cv2, _PAD.get(int(param.pad_mode), "BORDER_CONSTANT"))
    ch = img.shape[2] if img.ndim == 3 else 1
    pv = list(param.pad_value)
    if pv and len(pv) not in (1, ch):
        raise AugmentError("specify either 1 pad_value or as many as channels: %d" % ch)
    pad_val = (pv * 3 if len(pv) == 1 else pv + [0] * 3)[:3] if pv else [0, 0, 0]
    mode = int(param.resize_mode)
    h, w = img.shape[:2]
    if mode == WARP:
        return cv2.resize(img, (nw, nh), interpolation=interp)
    orig_aspect = f32(w) / f32(h)
    new_aspect = f32(nw) / f32(nh)
    if mode == FIT_SMALL_SIZE:
        if orig_aspect < new_aspect:
            size = (nw, int(np.floor(f32(nw) / orig_aspect)))
        else:
            size = (int(np.floor(orig_aspect * f32(nh))), nh)
        return cv2.resize(img, size, interpolation=interp)
    if mode == FIT_LARGE_SIZE_AND_PAD:
        if orig_aspect > new_aspect:
            rh = int(np.floor(f32(nw) / orig_aspect))
            out = cv2.resize(img, (nw, rh), interpolation=interp)
            top = int(np.floor((nh - rh) / 2.0))
            return cv2.copyMakeBorder(out, top, nh - rh - top, 0, 0, pad_mode, value=pad_val)
        rw = int(np.floor(orig_aspect * f32(nh)))
        out = cv2.resize(img, (rw, nh), interpolation=interp)
        left = int(np.floor((nw - rw) / 2.0))
        return cv2.copyMakeBorder(out, 0, 0, left, nw - rw - left, pad_mode, value=pad_val)
    raise AugmentError("unknown resize_mode %d" % mode)


def _convert(img, alpha, beta):
    """cv::Mat::convertTo(-1, alpha, beta): saturating round to uint8."""
    return np.clip(np.rint(img * f32(alpha) + f32(beta)), 0, 255).astype(np.uint8)


def _hsv_channel(img, k, alpha, beta):
    cv2 = _cv2()
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    ch = list(cv2.split(hsv))
    ch[k] = _convert(ch[k], alpha, beta)
    return cv2.cvtColor(cv2.merge(ch), cv2.COLOR_HSV2BGR)


def _uniform(rng, a, b):
    return f32(a) if b <= a else f32(rng.uniform(a, b))


def apply_distort(img, p, rng):
    """ApplyDistort: brightness, contrast, saturation, hue (contrast first or
    last, by a coin), then a random channel order."""
    def brightness(im):
        if _uniform(rng, 0, 1) < f32(p.brightness_prob):
            if p.brightness_delta < 0:
                raise AugmentError("brightness_delta must be non-negative")
            d = _uniform(rng, -p.brightness_delta, p.brightness_delta)
            return _convert(im, 1, d) if abs(d) > 0 else im
        return im

    def contrast(im):
        if _uniform(rng, 0, 1) < f32(p.contrast_prob):
            if p.contrast_upper < p.contrast_lower or p.contrast_lower < 0:
                raise AugmentError("contrast needs 0 <= contrast_lower <= contrast_upper")
            d = _uniform(rng, p.contrast_lower, p.contrast_upper)
            return _convert(im, d, 0) if abs(d - 1) > 1e-3 else im
        return im

    def saturation(im):
        if _uniform(rng, 0, 1) < f32(p.saturation_prob):
            if p.saturation_upper < p.saturation_lower or p.saturation_lower < 0:
                raise AugmentError("saturation needs 0 <= saturation_lower <= saturation_upper")
            d = _uniform(rng, p.saturation_lower, p.saturation_upper)
            return _hsv_channel(im, 1, d, 0)   # the fork's test never skips (!= 1e-3)
        return im

    def hue(im):
        if _uniform(rng, 0, 1) < f32(p.hue_prob):
            if p.hue_delta < 0:
                raise AugmentError("hue_delta must be non-negative")
            d = _uniform(rng, -p.hue_delta, p.hue_delta)
            return _hsv_channel(im, 0, 1, d) if abs(d) > 0 else im
        return im

    def order(im):
        if _uniform(rng, 0, 1) < f32(p.random_order_prob):
            if im.ndim != 3 or im.shape[2] != 3:
                raise AugmentError("random_order_prob needs 3-channel images")
            return np.ascontiguousarray(im[:, :, rng.permutation(3)])
        return im

    if _uniform(rng, 0, 1) > 0.5:
        steps = (brightness, contrast, saturation, hue, order)
    else:
        steps = (brightness, saturation, hue, contrast, order)
    for step in steps:
        img = step(img)
    return img


def expand(img, rows, p, mean_values, rng):
    """ExpandImage: paste the image at a random place of a canvas up to
    max_expand_ratio times larger, filled with the mean values (else 0)."""
    if _uniform(rng, 0, 1) > f32(p.prob):
        return img, rows
    ratio_max = f32(p.max_expand_ratio)
    if abs(ratio_max - 1) < 1e-2:
        return img, rows
    ratio = _uniform(rng, 1, ratio_max)
    h, w = img.shape[:2]
    H, W = int(f32(h) * ratio), int(f32(w) * ratio)
    h_off = np.floor(_uniform(rng, 0, H - h))
    w_off = np.floor(_uniform(rng, 0, W - w))
    bbox = np.array([-w_off / w, -h_off / h, (W - w_off) / w, (H - h_off) / h], dtype=f32)
    ch = img.shape[2] if img.ndim == 3 else 1
    canvas = np.zeros((H, W) + img.shape[2:], dtype=img.dtype)
    if mean_values is not None:
        mv = np.broadcast_to(np.asarray(mean_values, dtype=f32), (ch,))
        canvas[...] = mv.astype(np.int64).astype(np.uint8).reshape((1, 1) + img.shape[2:]) \
            if img.ndim == 3 else np.uint8(int(mv[0]))
    ho, wo = int(h_off), int(w_off)
    canvas[ho:ho + h, wo:wo + w] = img
    return canvas, transform_annotation(rows, h, w, None, bbox, False, None)


def _sample_bbox(s, rng):
    """SampleBBox: a crop of random scale and aspect ratio inside [0, 1]²."""
    if not (s.max_scale >= s.min_scale and s.min_scale > 0 and s.max_scale <= 1):
        raise AugmentError("sampler needs 0 < min_scale <= max_scale <= 1")
    if not (s.max_aspect_ratio >= s.min_aspect_ratio and s.min_aspect_ratio > 0):
        raise AugmentError("sampler needs 0 < min_aspect_ratio <= max_aspect_ratio")
    scale = _uniform(rng, s.min_scale, s.max_scale)
    ar = _uniform(rng, s.min_aspect_ratio, s.max_aspect_ratio)
    ar = max(ar, f32(scale ** 2))
    ar = min(ar, f32(1 / f32(scale ** 2)))
    bw = f32(scale * np.sqrt(ar, dtype=f32))
    bh = f32(scale / np.sqrt(ar, dtype=f32))
    # The fork aborts (CHECK_LE) when rounding makes 1 - bw slightly negative;
    # here the offset range is clamped at 0 instead.
    w_off = _uniform(rng, 0, max(f32(0), f32(1 - bw)))
    h_off = _uniform(rng, 0, max(f32(0), f32(1 - bh)))
    return np.array([w_off, h_off, w_off + bw, h_off + bh], dtype=f32)


def satisfies(sampled, objects, c):
    """SatisfySampleConstraint: some object meets every constraint set."""
    has_j = c.HasField("min_jaccard_overlap") or c.HasField("max_jaccard_overlap")
    has_s = c.HasField("min_sample_coverage") or c.HasField("max_sample_coverage")
    has_o = c.HasField("min_object_coverage") or c.HasField("max_object_coverage")
    if not (has_j or has_s or has_o):
        return True
    if not len(objects):
        return False
    ok = np.ones(len(objects), bool)
    if has_j:
        j = jaccard(sampled, objects)
        if c.HasField("min_jaccard_overlap"):
            ok &= ~(j < f32(c.min_jaccard_overlap))
        if c.HasField("max_jaccard_overlap"):
            ok &= ~(j > f32(c.max_jaccard_overlap))
    if has_s:
        s = coverage(np.broadcast_to(sampled, objects.shape), objects)
        if c.HasField("min_sample_coverage"):
            ok &= ~(s < f32(c.min_sample_coverage))
        if c.HasField("max_sample_coverage"):
            ok &= ~(s > f32(c.max_sample_coverage))
    if has_o:
        o = coverage(objects, np.broadcast_to(sampled, objects.shape))
        if c.HasField("min_object_coverage"):
            ok &= ~(o < f32(c.min_object_coverage))
        if c.HasField("max_object_coverage"):
            ok &= ~(o > f32(c.max_object_coverage))
    return bool(ok.any())


def generate_batch_samples(rows, samplers, rng):
    """GenerateBatchSamples: candidate crops from every batch_sampler that uses
    the original image (up to max_sample each, max_trials draws)."""
    objects = rows[:, 2:6].astype(f32) if len(rows) else np.zeros((0, 4), f32)
    out = []
    for bs in samplers:
        if not bs.use_original_image:
            continue
        found = 0
        for _ in range(int(bs.max_trials)):
            if bs.HasField("max_sample") and found >= bs.max_sample:
                break
            box = _sample_bbox(bs.sampler, rng)   # LocateBBox in the unit box: unchanged
            if satisfies(box, objects, bs.sample_constraint):
                found += 1
                out.append(box)
    return out


def crop_image(img, bbox):
    """CropImage's pixel part: the integer window of the clipped box."""
    h, w = img.shape[:2]
    b = clip(np.asarray(bbox, dtype=f32))
    x1, y1 = f32(b[0] * w), f32(b[1] * h)
    x2, y2 = f32(b[2] * w), f32(b[3] * h)
    wo, ho = int(x1), int(y1)
    cw, chh = int(f32(x2 - x1)), int(f32(y2 - y1))
    return img[ho:ho + chh, wo:wo + cw]


def crop(img, rows, bbox):
    """CropImage of an annotated image: pixels and boxes of the crop."""
    h, w = img.shape[:2]
    return crop_image(img, bbox), transform_annotation(rows, h, w, None, clip(bbox), False,
                                                       None)


def reencode_jpeg(img):
    """The fork stores intermediate images as JPEG (cv::imencode, quality 95)."""
    cv2 = _cv2()
    ok, buf = cv2.imencode(".jpg", img)
    if not ok:
        raise AugmentError("cannot JPEG-encode an intermediate image")
    flag = cv2.IMREAD_UNCHANGED
    return cv2.imdecode(buf, flag)
