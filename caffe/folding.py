"""Per-channel affine folding: the maths behind merge_bn / merge_scale and the
optimised inference path.

Every foldable layer (BatchNorm with global statistics, Scale, Bias) is a
per-channel affine map ``y = a * x + b`` over axis 1.  Affine maps compose,
and an affine map after a Convolution, Deconvolution or InnerProduct becomes
part of that layer's weights and bias.  The functions work on numpy arrays
and torch tensors alike (only ``*``, ``+``, ``**`` and ``reshape`` are used),
so the offline tools and the runtime share one definition.
"""
import numpy as np

# Layer types whose output channels can absorb a following affine map.
FOLD_TARGETS = ("Convolution", "Deconvolution", "InnerProduct")
# Layer types that are per-channel affine maps (given the conditions of ``affine_of``).
AFFINE_TYPES = ("BatchNorm", "Scale", "Bias")


class FoldError(ValueError):
    """A layer cannot be folded; the message names the layer and the reason."""


def bn_affine(mean, variance, scale_factor, eps):
    """Caffe's BatchNorm with global statistics as ``(a, b)``.

    The stored mean and variance are running sums divided by the third blob
    (a scalar); a zero scalar means zero statistics, as in batch_norm_layer.cpp.
    """
    sf = float(np.asarray(scale_factor).reshape(-1)[0]) if scale_factor is not None else 1.0
    factor = 0.0 if sf == 0 else 1.0 / sf
    mean = mean * factor
    variance = variance * factor
    a = (variance + eps) ** -0.5
    return a, -mean * a


def compose(first, second):
    """The affine map ``second(first(x))``; either may have ``None`` for a or b
    (meaning 1 or 0)."""
    a1, b1 = first
    a2, b2 = second
    if a2 is None:
        a = a1
        b = b1
    else:
        a = a2 if a1 is None else a1 * a2
        b = None if b1 is None else b1 * a2
    if b2 is not None:
        b = b2 if b is None else b + b2
    return a, b


def _out_channel_scale(kind, weight, a, group, transpose):
    """``weight`` with each output channel multiplied by ``a``."""
    shape = tuple(weight.shape)
    if kind == "Convolution":
        return weight * a.reshape((-1,) + (1,) * (len(shape) - 1))
    if kind == "InnerProduct":
        if transpose:                       # weight stored (in, out)
            return weight * a.reshape(1, -1)
        return weight * a.reshape(-1, 1)
    if kind == "Deconvolution":
        # (C_in, C_out / group, k...): input channel i belongs to group i // (C_in / group)
        cin, cog = shape[0], shape[1]
        per = cin // group
        w = weight.reshape((group, per, cog) + shape[2:])
        s = a.reshape((group, 1, cog) + (1,) * (len(shape) - 2))
        return (w * s).reshape(shape)
    raise FoldError("cannot fold into a %s layer" % kind)


def fold_into(kind, weight, bias, affine, group=1, transpose=False):
    """Weights and bias of layer ``kind`` followed by ``affine = (a, b)``.

    ``bias`` may be None (the layer had no bias_term); the result always has one
    when the affine map has an offset.
    """
    a, b = affine
    if a is not None:
        weight = _out_channel_scale(kind, weight, a, group, transpose)
        if bias is not None:
            bias = bias * a
    if b is not None:
        bias = b if bias is None else bias + b
    return weight, bias


def out_channels(kind, weight_shape, group=1, transpose=False):
    """Number of output channels of a fold target with this weight shape."""
    if kind == "Deconvolution":
        return weight_shape[1] * group
    if kind == "InnerProduct" and transpose:
        return weight_shape[1]
    return weight_shape[0]


# ---------------------------------------------------------------------------
# Which layers are foldable, read from their LayerParameter
# ---------------------------------------------------------------------------
def _channel_axis_ok(axis, num_axes):
    return axis == 1 and num_axes == 1


def affine_reason(lp):
    """None when layer ``lp`` is a per-channel affine map over axis 1 (given its
    weights), else why not."""
    if lp.type == "BatchNorm":
        bp = lp.batch_norm_param
        if bp.HasField("use_global_stats") and not bp.use_global_stats:
            return "use_global_stats: false normalises with each batch's own statistics"
        return None
    if len(lp.bottom) != 1:
        return "%s with %d bottoms takes its factors from a blob" % (lp.type, len(lp.bottom))
    if lp.type == "Scale":
        sp = lp.scale_param
        if not _channel_axis_ok(sp.axis, sp.num_axes):
            return "scale_param axis %d num_axes %d is not one factor per channel" % (
                sp.axis, sp.num_axes)
        return None
    if lp.type == "Bias":
        bp = lp.bias_param
        if not _channel_axis_ok(bp.axis, bp.num_axes):
            return "bias_param axis %d num_axes %d is not one offset per channel" % (
                bp.axis, bp.num_axes)
        return None
    return "%s is not a per-channel affine layer" % lp.type


def affine_of(lp, blobs):
    """``(a, b)`` of an affine layer from its parameter blobs (arrays or tensors)."""
    reason = affine_reason(lp)
    if reason:
        raise FoldError("layer %r: %s" % (lp.name, reason))
    need = {"BatchNorm": 3, "Scale": 2 if lp.scale_param.bias_term else 1, "Bias": 1}[lp.type]
    if len(blobs) < need:
        raise FoldError("layer %r (%s) has %d parameter blobs, needs %d"
                        % (lp.name, lp.type, len(blobs), need))
    if lp.type == "BatchNorm":
        return bn_affine(blobs[0].reshape(-1), blobs[1].reshape(-1), blobs[2],
                         lp.batch_norm_param.eps)
    if lp.type == "Scale":
        return blobs[0].reshape(-1), (blobs[1].reshape(-1) if lp.scale_param.bias_term else None)
    return None, blobs[0].reshape(-1)


def target_reason(lp):
    """None when layer ``lp`` can absorb a following per-channel affine map."""
    if lp.type not in FOLD_TARGETS:
        return "%s cannot absorb a per-channel map" % lp.type
    if len(lp.top) != 1:
        return "it has %d tops" % len(lp.top)
    axis = (lp.inner_product_param.axis if lp.type == "InnerProduct"
            else lp.convolution_param.axis)
    if axis != 1:
        return "its axis is %d, not the channel axis" % axis
    if any(p.name for p in lp.param):
        return "its parameters are shared by name with other layers"
    return None


def bias_term(lp):
    """Whether a fold target or Scale layer has a bias blob."""
    if lp.type == "InnerProduct":
        return lp.inner_product_param.bias_term
    if lp.type == "Scale":
        return lp.scale_param.bias_term
    return lp.convolution_param.bias_term


def set_bias_term(lp):
    if lp.type == "InnerProduct":
        lp.inner_product_param.bias_term = True
    elif lp.type == "Scale":
        lp.scale_param.bias_term = True
    else:
        lp.convolution_param.bias_term = True


def fold_layer_weights(target, blobs, affine):
    """New parameter blobs of layer ``target`` (a fold target or a Scale layer)
    followed by ``affine``."""
    has_bias = bias_term(target)
    if target.type == "Scale":
        a, b = compose((blobs[0].reshape(-1), blobs[1].reshape(-1) if has_bias else None),
                       affine)
        if b is None:
            return [a.reshape(blobs[0].shape)]
        return [a.reshape(blobs[0].shape), b]
    weight, bias = fold_into(target.type, blobs[0], blobs[1] if has_bias else None, affine,
                             group=target.convolution_param.group,
                             transpose=target.inner_product_param.transpose)
    return [weight] if bias is None else [weight, bias]
