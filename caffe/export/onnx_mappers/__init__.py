"""ONNX node -> Caffe layer mappers, one module per op family, sharing the ATen
mappers' helpers (pooling sizes, BatchNorm, broadcasting, upsampling) and the
same emitters.  Each mapper is ``fn(ctx, node)`` with ``node`` an
:class:`~caffe.export.onnx_graph.OnnxNode` and ``ctx`` an
:class:`~caffe.export.onnx_context.OnnxContext`."""
from ..registry import OpRegistry

ONNX = OpRegistry("ONNX op")

from . import activation, conv, elementwise, norm, pool, resample, shape  # noqa: E402,F401
