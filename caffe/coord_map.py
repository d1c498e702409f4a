"""Relate the coordinates of blobs in a net_spec graph (pycaffe's
``caffe.coord_map``).

A coordinate map is a triple ``(axis, scale, shift)``: along each spatial
dimension from ``axis`` on, a position ``x`` in a layer's input corresponds to
``scale * x + shift`` in its output.  ``axis`` None means "any axis" (the map
of pointwise layers).  Maps compose along paths of the graph and invert, which
gives the offsets a Crop layer needs to align a top with another (as FCN does
after upsampling).

Works on :mod:`caffe.net_spec` Tops/Functions only; no Net is built.
"""

from __future__ import division

import numpy as np

from .net_spec import layers as L

__all__ = ['PASS_THROUGH_LAYERS', 'conv_params', 'crop_params',
           'UndefinedMapException', 'AxisMismatchException', 'coord_map',
           'compose', 'inverse', 'coord_map_from_to', 'crop']

# Layers whose output coordinates equal their input coordinates.
PASS_THROUGH_LAYERS = ['AbsVal', 'BatchNorm', 'Bias', 'BNLL', 'Dropout',
                       'Eltwise', 'ELU', 'Log', 'LRN', 'Exp', 'MVN', 'Power',
                       'ReLU', 'PReLU', 'Scale', 'Sigmoid', 'Split', 'TanH',
                       'Threshold']

_LEGACY_HW = ('pad_h', 'pad_w', 'kernel_h', 'kernel_w', 'stride_h',
              'stride_w')


def conv_params(fn):
    """``(axis, stride, effective kernel extent, pad)`` of a Convolution,
    Deconvolution, Im2col or Pooling Function.

    Values come from ``convolution_param=dict(...)`` when given, else from the
    flat keyword arguments (which is where Pooling's live).  Stride, kernel
    and pad are 1-d numpy arrays (one entry, or one per spatial axis); the
    kernel extent accounts for dilation: ``(kernel - 1) * dilation + 1``.
    """
    spec = fn.params.get('convolution_param', fn.params)
    legacy = set(_LEGACY_HW) & set(fn.params)
    assert not legacy, 'cropping does not support legacy _h/_w params'
    axis = spec.get('axis', 1)
    kernel = np.array(spec['kernel_size'], ndmin=1)
    dilation = np.array(spec.get('dilation', 1), ndmin=1)
    stride = np.array(spec.get('stride', 1), ndmin=1)
    pad = np.array(spec.get('pad', 0), ndmin=1)
    return axis, stride, (kernel - 1) * dilation + 1, pad


def crop_params(fn):
    """``(axis, offset)`` of a Crop Function; axis defaults to 2 (crop H, W
    of N x C x H x W) and offset to 0.  ``offset`` is a 1-d numpy array."""
    spec = fn.params.get('crop_param', fn.params)
    axis = spec.get('axis', 2)
    offset = np.array(spec.get('offset', 0), ndmin=1)
    return axis, offset


class UndefinedMapException(Exception):
    """The layer type has no known coordinate map."""
    pass


class AxisMismatchException(Exception):
    """Two maps composed along a path start at different axes."""
    pass


def coord_map(fn):
    """The ``(axis, scale, shift)`` map from a Function's input to its
    output coordinates.  Raises UndefinedMapException for other layer
    types."""
    kind = fn.type_name
    if kind in ('Convolution', 'Pooling', 'Im2col'):
        axis, stride, kernel, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (kernel - 1) / 2) / stride
    if kind == 'Deconvolution':
        axis, stride, kernel, pad = conv_params(fn)
        return axis, stride, (kernel - 1) / 2 - pad
    if kind in PASS_THROUGH_LAYERS:
        return None, 1, 0
    if kind == 'Crop':
        axis, offset = crop_params(fn)
        # the map's axis is the last axis that is not cropped
        return axis - 1, 1, -offset
    raise UndefinedMapException


def compose(base_map, next_map):
    """Follow ``base_map`` (scale a1, shift b1) by ``next_map`` (a2, b2):
    the result scales by a1 * a2 and shifts by a1 * b2 + b1.  An axis of None
    matches any axis; two different axes raise AxisMismatchException."""
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is None:
        axis = ax2
    elif ax2 is None or ax1 == ax2:
        axis = ax1
    else:
        raise AxisMismatchException
    return axis, a1 * a2, a1 * b2 + b1


def inverse(coord_map):
    """The map back from output to input: scale 1 / a, shift -b / a."""
    axis, a, b = coord_map
    return axis, 1 / a, -b / a


def _mappable_bottoms(top):
    """Bottoms whose coordinates relate to ``top``'s.  Crop maps only its
    first bottom; the second only supplies the output size."""
    bottoms = top.fn.inputs
    if top.fn.type_name == 'Crop':
        bottoms = bottoms[:1]
    return bottoms


def coord_map_from_to(top_from, top_to):
    """The coordinate map from ``top_from`` to ``top_to``.

    Walks back from ``top_from`` through every mappable layer, recording the
    map of each ancestor, then walks back from ``top_to`` until it reaches
    one of those ancestors and combines the two paths there.  Raises
    RuntimeError when the tops share no ancestor reachable through layers with
    a known map.
    """
    from_maps = {top_from: (None, 1, 0)}
    pending = [top_from]
    while pending:
        top = pending.pop()
        try:
            step = coord_map(top.fn)
        except UndefinedMapException:
            continue
        for bottom in _mappable_bottoms(top):
            if bottom in from_maps:
                # reached along another path; maps of a consistent graph
                # agree, and walking it again could take exponential time
                continue
            from_maps[bottom] = compose(from_maps[top], step)
            pending.append(bottom)

    to_maps = {top_to: (None, 1, 0)}
    pending = [top_to]
    while pending:
        top = pending.pop()
        if top in from_maps:
            return compose(to_maps[top], inverse(from_maps[top]))
        try:
            step = coord_map(top.fn)
        except UndefinedMapException:
            continue
        for bottom in _mappable_bottoms(top):
            if bottom in to_maps:
                continue
            to_maps[bottom] = compose(to_maps[top], step)
            pending.append(bottom)

    raise RuntimeError('Could not compute map between tops; are they '
                       'connected by spatial layers?')


def crop(top_from, top_to):
    """A Crop layer (a Top) that crops ``top_from`` to line up with
    ``top_to``, with ``axis`` and ``offset`` from their coordinate map.

    The map must have scale 1 and a non-positive integral shift (the cropped
    top has to cover the reference one); otherwise AssertionError.
    """
    axis, a, b = coord_map_from_to(top_from, top_to)
    assert (a == 1).all(), 'scale mismatch on crop (a = {})'.format(a)
    assert (b <= 0).all(), 'cannot crop negative offset (b = {})'.format(b)
    assert (np.round(b) == b).all(), \
        'cannot crop noninteger offset (b = {})'.format(b)
    offset = [int(v) for v in -np.round(b).astype(int)]
    return L.Crop(top_from, top_to,
                  crop_param=dict(axis=axis + 1, offset=offset))
