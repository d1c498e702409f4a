"""BatchNorm, Scale, Bias and MVN (normalisation and affine layers)."""
import numpy as np


def batch_norm(net, name, bottom, top, mean, var, eps):
    """Inference BatchNorm: Caffe stores mean, variance and a scale factor (1 here)."""
    layer = net.add("BatchNorm", name, [bottom], [top],
                    [mean, var, np.ones(1, np.float32)])
    layer.batch_norm_param.use_global_stats = True
    if abs(eps - 1e-5) > 1e-12:
        layer.batch_norm_param.eps = float(eps)
    return layer


def scale(net, name, bottoms, top, gamma=None, beta=None, axis=1):
    """Scale by a learned blob ``gamma`` (shape = the covered axes) or, with two
    bottoms, by the second bottom; ``beta`` adds the bias term."""
    blobs = ([gamma] if gamma is not None else []) + ([beta] if beta is not None else [])
    layer = net.add("Scale", name, list(bottoms), [top], blobs)
    p = layer.scale_param
    if axis != 1:
        p.axis = int(axis)
    if gamma is not None and gamma.ndim != 1:
        p.num_axes = int(gamma.ndim)
    if beta is not None:
        p.bias_term = True
    return layer


def bias(net, name, bottom, top, beta, axis=1):
    layer = net.add("Bias", name, [bottom], [top], [beta])
    p = layer.bias_param
    if axis != 1:
        p.axis = int(axis)
    if beta.ndim != 1:
        p.num_axes = int(beta.ndim)
    return layer


def mvn(net, name, bottom, top, eps, normalize_variance=True, across_channels=False):
    layer = net.add("MVN", name, [bottom], [top])
    p = layer.mvn_param
    if not normalize_variance:
        p.normalize_variance = False
    if across_channels:
        p.across_channels = True
    p.eps = float(eps)
    return layer
