"""batch_norm -> BatchNorm + Scale (or folded into the conv / linear before it);
instance / group / layer norm -> an exact MVN-based normalisation + Scale.

Caffe's MVN divides by ``std + eps`` while PyTorch divides by ``sqrt(var + eps)``,
which differs a lot for small variances; so only MVN's mean subtraction is used,
and the variance goes through Power / Reduction / Power exactly as PyTorch does.
"""
import numpy as np

from ..emitters import neuron as neuron_em
from ..emitters import norm as norm_em
from ..emitters import reduction as red_em
from ..emitters import shape as shape_em
from . import ATEN


def _fold_into_producer(ctx, x, mean, var, eps, gamma, beta):
    """Fold inference BatchNorm into the Convolution / InnerProduct writing ``x``."""
    if not ctx.inplace_ok(x):
        return False
    layer = ctx.net.producer(ctx.bottom(x))
    if layer is None or layer.type not in ("Convolution", "InnerProduct"):
        return False
    blobs = ctx.net.blobs_of(layer)
    factor = (gamma if gamma is not None else 1.0) / np.sqrt(var + eps)
    w = blobs[0]
    blobs[0] = (w * factor.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
    b = blobs[1] if len(blobs) > 1 else np.zeros(w.shape[0], np.float32)
    new_b = (b - mean) * factor + (beta if beta is not None else 0.0)
    if len(blobs) > 1:
        blobs[1] = new_b.astype(np.float32)
    else:
        blobs.append(new_b.astype(np.float32))
        param = layer.convolution_param if layer.type == "Convolution" \
            else layer.inner_product_param
        param.ClearField("bias_term")
    ctx.produce(ctx.bottom(x))
    return True


def _batch_norm(ctx, x, gamma, beta, mean, var, eps):
    if mean is None or var is None:
        ctx.refuse("BatchNorm without running statistics (track_running_stats=False) "
                   "normalises with batch statistics, which Caffe's inference BatchNorm "
                   "cannot")
    mean, var = ctx.const(mean), ctx.const(var)
    gamma = ctx.const(gamma) if gamma is not None else None
    beta = ctx.const(beta) if beta is not None else None
    if ctx.merge_bn and _fold_into_producer(ctx, x, mean, var, eps, gamma, beta):
        return
    top = ctx.bottom(x) if ctx.inplace_ok(x) else ctx.top()
    norm_em.batch_norm(ctx.net, ctx.name(), ctx.bottom(x), top, mean, var, eps)
    if gamma is not None or beta is not None:
        g = gamma if gamma is not None else np.ones_like(mean)
        norm_em.scale(ctx.net, ctx.name("scale"), [top], top, g, beta)
    ctx.produce(top)


@ATEN.register("batch_norm")
def batch_norm(ctx, node):
    a = ctx.args()
    if a["training"]:
        ctx.refuse("BatchNorm in training mode (call model.eval() first)")
    _batch_norm(ctx, a["input"], a["weight"], a["bias"], a["running_mean"],
                a["running_var"], float(a["eps"]))


@ATEN.register("_native_batch_norm_legit_no_training")
def batch_norm_no_training(ctx, node):
    a = ctx.args()
    _batch_norm(ctx, a["input"], a["weight"], a["bias"], a["running_mean"],
                a["running_var"], float(a["eps"]))
    ctx.blobs[node] = [ctx.blobs[node], None, None]


def _normalize_rows(ctx, x, groups_shape, eps):
    """Normalise ``x`` viewed as (N, groups, 1, n): mean by MVN, variance exactly as
    PyTorch ((var + eps) ** -0.5); returns the blob in ``x``'s shape."""
    top, net, name = ctx.top(), ctx.net, ctx.name
    shape = ctx.shape(x)
    rows = top + "/rows"
    groups = int(np.prod(groups_shape[1:])) if len(groups_shape) > 1 else 1
    shape_em.reshape(net, name("rows"), ctx.bottom(x), rows, [0, groups, 1, -1])
    centred = top + "/centred"
    norm_em.mvn(net, name("centre"), rows, centred, eps=0.0, normalize_variance=False)
    sq = top + "/sq"
    neuron_em.power(net, name("square"), centred, sq, power=2.0)
    var = top + "/var"
    red_em.reduction(net, name("var"), sq, var, "MEAN", axis=2)
    neuron_em.power(net, name("rstd"), var, var, power=-0.5, shift=eps)
    normed = top + "/normed"
    norm_em.scale(net, name("normalize"), [centred, var], normed, axis=0)
    out = top + "/shaped"
    shape_em.reshape(net, name("unrows"), normed, out, [0] + list(shape[1:]))
    return out


def _affine(ctx, blob, gamma, beta, axis, shape):
    top = ctx.top()
    if gamma is None and beta is None:
        shape_em.reshape(ctx.net, ctx.name("out"), blob, top, [0] + list(shape[1:]))
    else:
        g = ctx.const(gamma) if gamma is not None else np.ones(shape[axis:axis + 1], np.float32)
        b = ctx.const(beta) if beta is not None else None
        norm_em.scale(ctx.net, ctx.name(), [blob], top, g, b, axis=axis)
    ctx.produce(top)


@ATEN.register("instance_norm")
def instance_norm(ctx, node):
    a = ctx.args()
    if not a["use_input_stats"]:
        return _batch_norm(ctx, a["input"], a["weight"], a["bias"], a["running_mean"],
                           a["running_var"], float(a["eps"]))
    shape = ctx.shape(a["input"])
    out = _normalize_rows(ctx, a["input"], [shape[0], shape[1]], float(a["eps"]))
    _affine(ctx, out, a["weight"], a["bias"], 1, shape)


@ATEN.register("group_norm")
def group_norm(ctx, node):
    a = ctx.args()
    shape = ctx.shape(a["input"])
    out = _normalize_rows(ctx, a["input"], [shape[0], int(a["num_groups"])], float(a["eps"]))
    _affine(ctx, out, a["weight"], a["bias"], 1, shape)


@ATEN.register("layer_norm")
def layer_norm(ctx, node):
    a = ctx.args()
    shape = ctx.shape(a["input"])
    k = len(a["normalized_shape"])
    if k >= len(shape):
        ctx.refuse("layer_norm over every axis including the batch axis")
    out = _normalize_rows(ctx, a["input"], list(shape[:len(shape) - k]), float(a["eps"]))
    _affine(ctx, out, a["weight"], a["bias"], len(shape) - k, shape)
