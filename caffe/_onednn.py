"""oneDNN's fused CPU convolution, for the optimised inference path.

PyTorch ships the kernels its Inductor CPU backend emits when it freezes a
model (``torch.ops.mkldnn._convolution_pointwise``): a convolution with its
weights re-ordered once into oneDNN's blocked layout, and a ReLU or an
elementwise add (+ ReLU) applied inside the same kernel.  On channels-last
activations this avoids re-ordering the weights on every call and a separate
pass over the output for each fused op.  Eager PyTorch exposes them only as
these private ops, so everything here checks that they exist (and the caller
falls back to ``F.conv2d``) instead of assuming a torch version.
"""
import torch

__all__ = ["available", "PackedConv2d"]


def _op(name):
    try:
        return getattr(torch.ops.mkldnn, name)
    except (AttributeError, RuntimeError):
        return None


_POINTWISE = _op("_convolution_pointwise")
_POINTWISE_INTO = _op("_convolution_pointwise_")
_PACK = _op("_reorder_convolution_weight")


_AVAILABLE = (_POINTWISE is not None and _PACK is not None
              and torch.backends.mkldnn.is_available())


def available():
    """Whether this torch build has oneDNN and the fused convolution ops."""
    return _AVAILABLE


class PackedConv2d:
    """A 2-D convolution with its weights packed for one input shape at a time
    (oneDNN picks the blocked layout from the shape; packing is cached)."""

    def __init__(self, weight, bias, stride, pad, dilation, groups):
        self.weight = weight.contiguous()
        self.bias = None if bias is None else bias.contiguous()
        self.stride, self.pad = [int(s) for s in stride], [int(p) for p in pad]
        self.dilation, self.groups = [int(d) for d in dilation], int(groups)
        self._packed = {}

    def packed(self, shape):
        key = tuple(shape)
        w = self._packed.get(key)
        if w is None:
            w = self._packed[key] = _PACK(self.weight, self.pad, self.stride, self.dilation,
                                          self.groups, list(key))
        return w

    def __call__(self, x, relu=False, add=None, into_add=False):
        """``relu(conv(x) + add)`` with either part optional, in one kernel.

        With ``into_add`` the result is written over ``add`` (when this torch
        has the in-place kernel and ``add`` is channels-last): no new output
        is allocated and the memory written is already in cache.  The caller
        guarantees nothing else reads ``add``."""
        w = self.packed(x.shape)
        if add is None:
            return _POINTWISE(x, w, self.bias, self.pad, self.stride, self.dilation,
                              self.groups, "relu" if relu else "none", [], "")
        unary = "relu" if relu else None
        if (into_add and _POINTWISE_INTO is not None
                and add.is_contiguous(memory_format=torch.channels_last)):
            return _POINTWISE_INTO.binary(add, x, w, self.bias, self.pad, self.stride,
                                          self.dilation, self.groups, "add", None, unary, [], "")
        if 1 in (x.shape[1], x.shape[2] * x.shape[3], add.shape[1]):
            # where NCHW and NHWC are the same memory, some torch versions' (2.6)
            # out-of-place kernel cannot describe it ("could not create a
            # memory"): the add runs after the convolution there
            y = _POINTWISE(x, w, self.bias, self.pad, self.stride, self.dilation,
                           self.groups, "none", [], "").add_(add)
            return y.relu_() if relu else y
        return _POINTWISE.binary(x, add, w, self.bias, self.pad, self.stride, self.dilation,
                                 self.groups, "add", None, unary, [], "")
