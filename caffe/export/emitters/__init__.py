"""Caffe layer emitters: one module per Caffe layer family.

Each function appends one layer to a :class:`~caffe.export.builder.NetBuilder`
with Caffe's parameters filled in and its weight blobs in Caffe's layout, and
returns the LayerParameter.  Front ends (PyTorch ATen mappers, ONNX mappers,
Darknet sections) only decide *which* layers to emit; how a layer is written
lives here once.
"""
from . import (  # noqa: F401,A004
    conv,
    eltwise,
    inner_product,
    input,
    neuron,
    norm,
    pooling,
    reduction,
    shape,
    softmax,  # noqa: F401
)
