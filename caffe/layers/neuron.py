"""Neuron layers: element-wise maps of one bottom to one top of the same shape.

AbsVal, BNLL, Clip, Dropout, ELU, Exp, Log, Power, PReLU, ReLU, Sigmoid, Swish,
TanH, Threshold.

Forward values follow BVLC Caffe's ``src/caffe/layers/*_layer.cpp`` (constants
derived from the parameters are computed in float32, as Caffe's ``Dtype``
members are).  Backward is torch autograd wherever that gives Caffe's formula;
two layers need their own ``autograd.Function``:

* Power: Caffe's backward divides the top by the base (``power * y / x``,
  ``diff_scale * y / (shift + scale*x)``) instead of evaluating
  ``power * scale * base^(power-1)``; where the base is exactly 0 Caffe thus
  gives NaN (0/0) or inf, and we reproduce that.  With ``power * scale == 0``
  the output is the constant ``shift^power`` (1 if power is 0) and the bottom
  diff is 0.
* Threshold: Caffe's ``Backward_cpu`` is ``NOT_IMPLEMENTED`` (it aborts when a
  net back-propagates through it).  We deliberately deviate: the bottom diff
  is 0, the derivative of the step function almost everywhere, so nets with a
  Threshold layer can still run ``backward()``.

The ``engine`` fields of ReLU/Sigmoid/TanH are accepted and ignored (CAFFE and
CUDNN give the same numbers).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from .._common import TRAIN
from ._util import f32
from .base import CaffeLayer
from .registry import register_layer


class NeuronLayer(CaffeLayer):
    """One bottom, one top of the bottom's shape."""
    num_bottoms = (1, 1)
    num_tops = (1, 1)

    def output_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]


@register_layer("AbsVal")
class AbsValLayer(NeuronLayer):
    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        if (len(layer_param.bottom) and len(layer_param.top)
                and layer_param.bottom[0] == layer_param.top[0]):
            raise self.error("AbsVal Layer does not allow in-place computation "
                             "(top %r is its bottom)" % layer_param.top[0], field="top")

    def run(self, bottoms, params):
        # d|x|/dx = sign(x), 0 at 0, as Caffe's caffe_cpu_sign.
        return [torch.abs(bottoms[0])]


@register_layer("BNLL")
class BNLLLayer(NeuronLayer):
    def run(self, bottoms, params):
        # log(1 + e^x), computed stably; softplus's linear region (x > 20)
        # equals Caffe's x + log(1 + e^-x) in float32.  Its gradient
        # e^x / (1 + e^x) is Caffe's backward.
        return [F.softplus(bottoms[0])]


@register_layer("Clip")
class ClipLayer(NeuronLayer):
    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.clip_param
        if not p.HasField("min"):
            raise self.error("the required field min is not set", field="clip_param.min")
        if not p.HasField("max"):
            raise self.error("the required field max is not set", field="clip_param.max")
        self.min = f32(p.min)
        self.max = f32(p.max)

    def run(self, bottoms, params):
        x = bottoms[0]
        if self.min <= self.max:
            # clamp's gradient passes where min <= x <= max (inclusive), as Caffe.
            return [torch.clamp(x, self.min, self.max)]
        # Caffe computes max(min, min(x, max)): with min > max every output is
        # min and every gradient 0; torch.clamp(x, min, max) would give max.
        return [torch.clamp(torch.clamp(x, max=self.max), min=self.min)]


@register_layer("Dropout")
class DropoutLayer(NeuronLayer):
    """Inverted dropout.

    TRAIN: ``y = x * mask / (1 - ratio)`` with ``mask ~ Bernoulli(1 - ratio)``
    drawn from torch's generator (seeded by ``caffe.set_random_seed``); TEST:
    identity.  With ``scale_train: false`` (the fast-rcnn/R-FCN field) TRAIN
    gives ``x * mask`` and TEST ``x * (1 - ratio)``.
    """

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.dropout_param
        ratio = float(p.dropout_ratio)
        if not (0.0 <= ratio < 1.0) or math.isnan(ratio):
            raise self.error("dropout_ratio must be in [0, 1), got %r" % ratio,
                             field="dropout_param.dropout_ratio")
        self.ratio = ratio
        self.draws_random = self.phase == TRAIN and ratio > 0.0
        self.scale_train = bool(p.scale_train)
        self.keep = 1.0 - ratio
        # Caffe: scale_ = 1 / (1 - threshold_), a float member.
        self.scale = f32(1.0 / (1.0 - f32(ratio)))
        self.test_scale = f32(1.0 / self.scale)

    def run(self, bottoms, params):
        x = bottoms[0]
        if self.phase == TRAIN:
            if self.ratio == 0.0:
                return [x.clone()]
            mask = torch.empty_like(x).bernoulli_(self.keep)
            if self.scale_train:
                return [x * mask * self.scale]
            return [x * mask]
        if self.scale_train:
            # The top is a distinct tensor (Caffe copies), the gradient is identity.
            return [x.clone()]
        return [x * self.test_scale]


@register_layer("ELU")
class ELULayer(NeuronLayer):
    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.alpha = f32(layer_param.elu_param.alpha)

    def run(self, bottoms, params):
        # Gradient for x <= 0 is alpha * e^x (= alpha + y, Caffe's form).
        return [F.elu(bottoms[0], alpha=self.alpha)]


def _check_base(layer, base, field, forbid_one=False):
    if base != -1.0 and not (base > 0.0):
        raise layer.error("base must be strictly positive (or -1 for e), got %r" % base,
                          field=field)
    if math.isinf(base):
        raise layer.error("log(base) is infinite for base %r" % base, field=field)
    if forbid_one and base == 1.0:
        raise layer.error("1/log(base) is infinite for base 1", field=field)


@register_layer("Exp")
class ExpLayer(NeuronLayer):
    """``y = base^(shift + scale*x)`` computed as ``base^shift * exp(log(base)*scale*x)``."""

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.exp_param
        base, scale, shift = float(p.base), float(p.scale), float(p.shift)
        _check_base(self, base, "exp_param.base")
        log_base = 1.0 if base == -1.0 else f32(np.log(np.float32(base)))
        self.inner_scale = f32(np.float32(log_base) * np.float32(scale))
        if shift == 0.0:
            self.outer_scale = 1.0
        elif base == -1.0:
            self.outer_scale = f32(np.exp(np.float32(shift)))
        else:
            self.outer_scale = f32(np.power(np.float32(base), np.float32(shift)))
        if math.isinf(self.outer_scale):
            raise self.error("base^shift overflows float32", field="exp_param.shift")

    def run(self, bottoms, params):
        x = bottoms[0]
        y = torch.exp(x) if self.inner_scale == 1.0 else torch.exp(x * self.inner_scale)
        if self.outer_scale != 1.0:
            y = y * self.outer_scale
        return [y]


@register_layer("Log")
class LogLayer(NeuronLayer):
    """``y = log_base(shift + scale*x)``; base -1 means e."""

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.log_param
        base = float(p.base)
        _check_base(self, base, "log_param.base", forbid_one=True)
        log_base = 1.0 if base == -1.0 else f32(np.log(np.float32(base)))
        self.base_scale = f32(np.float32(1.0) / np.float32(log_base))
        self.scale = f32(p.scale)
        self.shift = f32(p.shift)

    def run(self, bottoms, params):
        u = bottoms[0]
        if self.scale != 1.0:
            u = u * self.scale
        if self.shift != 0.0:
            u = u + self.shift
        y = torch.log(u)
        if self.base_scale != 1.0:
            y = y * self.base_scale
        return [y]


class _PowerFunction(torch.autograd.Function):
    """Power's forward with Caffe's backward formulas (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, power, scale, shift):
        u = x
        if scale != 1.0:
            u = u * scale
        if shift != 0.0:
            u = u + shift
        y = torch.pow(u, power)
        ctx.consts = (power, scale, shift)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        power, scale, shift = ctx.consts
        x, y = ctx.saved_tensors
        diff_scale = f32(np.float32(power) * np.float32(scale))
        if power == 2.0:
            d = x * f32(np.float32(diff_scale) * np.float32(scale))
            if shift != 0.0:
                d = d + f32(np.float32(diff_scale) * np.float32(shift))
        elif shift == 0.0:
            d = (y / x) * power
        else:
            u = x
            if scale != 1.0:
                u = u * scale
            u = u + shift
            d = y / u
            if diff_scale != 1.0:
                d = d * diff_scale
        return grad * d, None, None, None


class _ConstantFunction(torch.autograd.Function):
    """A constant top with a zero bottom diff (Power with power*scale == 0)."""

    @staticmethod
    def forward(ctx, x, value):
        return torch.full_like(x, value)

    @staticmethod
    def backward(ctx, grad):
        return torch.zeros_like(grad), None


@register_layer("Power")
class PowerLayer(NeuronLayer):
    """``y = (shift + scale*x)^power``."""

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.power_param
        self.power = f32(p.power)
        self.scale = f32(p.scale)
        self.shift = f32(p.shift)
        self.diff_scale = f32(np.float32(self.power) * np.float32(self.scale))
        if self.diff_scale == 0.0:
            self.constant = 1.0 if self.power == 0.0 else f32(
                np.power(np.float32(self.shift), np.float32(self.power)))
        else:
            self.constant = None

    def run(self, bottoms, params):
        x = bottoms[0]
        if self.constant is not None:
            return [_ConstantFunction.apply(x, self.constant)]
        if self.power == 1.0:
            # Linear: autograd's scale * top_diff is Caffe's backward.
            u = x * self.scale if self.scale != 1.0 else x
            if self.shift != 0.0:
                u = u + self.shift
            elif u is x:
                u = x.clone()
            return [u]
        return [_PowerFunction.apply(x, self.power, self.scale, self.shift)]


@register_layer("PReLU")
class PReLULayer(NeuronLayer):
    """Leaky ReLU with learned slopes: one per channel (axis 1), or one scalar
    (0-axis blob) with ``channel_shared``.  Default filler: constant 0.25."""

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        shape = self.bottom_shapes[0] if self.bottom_shapes else ()
        if len(shape) < 2:
            raise self.error("Number of axes of bottom blob must be >=2, got shape %s"
                             % (list(shape),), field="bottom")
        p = layer_param.prelu_param
        self.channel_shared = bool(p.channel_shared)
        channels = shape[1]
        blob_shape = () if self.channel_shared else (channels,)
        if len(layer_param.blobs):
            count = 1
            embedded = layer_param.blobs[0]
            dims = list(embedded.shape.dim) if embedded.HasField("shape") else [
                d for d in (embedded.num, embedded.channels, embedded.height, embedded.width)]
            for d in dims:
                count *= int(d)
            expected = 1 if self.channel_shared else channels
            if count != expected:
                raise self.error("Negative slope size is inconsistent with prototxt config "
                                 "(blob has %d values, expected %d)" % (count, expected),
                                 field="prelu_param.channel_shared")
            if tuple(int(d) for d in dims) != blob_shape:
                blob_shape = tuple(int(d) for d in dims)
        if p.HasField("filler"):
            self.add_param_blob(blob_shape, p.filler)
        else:
            self.add_param_blob(blob_shape, default_fill=0.25)

    def run(self, bottoms, params):
        # prelu's gradients: bottom x > 0 ? 1 : slope (slope at 0, as Caffe);
        # slope sum(top_diff * x) over x <= 0.
        return [F.prelu(bottoms[0], params[0].reshape(-1))]


@register_layer("ReLU")
class ReLULayer(NeuronLayer):
    """``max(x, 0) + negative_slope * min(x, 0)``; the gradient at 0 is the slope."""

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.negative_slope = f32(layer_param.relu_param.negative_slope)

    def run(self, bottoms, params):
        if self.negative_slope == 0.0:
            return [F.relu(bottoms[0])]
        return [F.leaky_relu(bottoms[0], self.negative_slope)]


@register_layer("Sigmoid")
class SigmoidLayer(NeuronLayer):
    def run(self, bottoms, params):
        # Caffe evaluates 0.5*tanh(0.5x)+0.5: the same function to float32
        # rounding; the gradient y(1-y) is Caffe's.
        return [torch.sigmoid(bottoms[0])]


@register_layer("Swish")
class SwishLayer(NeuronLayer):
    """``x * sigmoid(beta * x)``."""

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.beta = f32(layer_param.swish_param.beta)

    def run(self, bottoms, params):
        x = bottoms[0]
        if self.beta == 1.0:
            return [F.silu(x)]
        return [x * torch.sigmoid(x * self.beta)]


@register_layer("TanH")
class TanHLayer(NeuronLayer):
    def run(self, bottoms, params):
        return [torch.tanh(bottoms[0])]


class _StepFunction(torch.autograd.Function):
    """``x > threshold`` as 0/1 with a zero gradient (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, threshold):
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return torch.zeros_like(grad), None


@register_layer("Threshold")
class ThresholdLayer(NeuronLayer):
    """``y = 1 if x > threshold else 0``.  Caffe has no backward (it aborts);
    here the bottom diff is 0."""

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.threshold = f32(layer_param.threshold_param.threshold)

    def run(self, bottoms, params):
        x = bottoms[0]
        if x.requires_grad:
            return [_StepFunction.apply(x, self.threshold)]
        return [(x > self.threshold).to(x.dtype)]
