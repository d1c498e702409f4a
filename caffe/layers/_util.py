"""Small helpers every layer family uses (Caffe's Blob/Layer utilities).

``count`` and ``canonical_axis`` are Caffe's ``Blob::count`` and
``Blob::CanonicalAxisIndex``; ``f32`` rounds a constant to float32 as Caffe's
``Dtype`` members are; ``FLT_MAX``/``FLT_MIN`` are float32's limits.
"""
import numpy as np

from ..limits import FLT_MAX, FLT_MIN, count  # noqa: F401 (the layers' helpers live here)


def canonical_axis(layer, axis, num_axes, field):
    """Caffe's CanonicalAxisIndex: ``axis`` in [-num_axes, num_axes), made
    non-negative; out of range raises the layer's error naming ``field``."""
    axis = int(axis)
    if axis < -num_axes or axis >= num_axes:
        raise layer.error("axis %d out of range for a %d-axis bottom" % (axis, num_axes),
                          field=field)
    return axis + num_axes if axis < 0 else axis


def bottom_shape(layer, index=0):
    """Shape of bottom ``index`` at set-up, or the layer's error if missing."""
    if index >= len(layer.bottom_shapes):
        raise layer.error("needs bottom %d, got %d bottoms" % (index, len(layer.bottom_shapes)))
    return layer.bottom_shapes[index]


def f32(value):
    """A Python float holding ``value`` rounded to float32 (Caffe's Dtype)."""
    return float(np.float32(value))
