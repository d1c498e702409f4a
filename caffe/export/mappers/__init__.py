"""PyTorch ATen op -> Caffe layer mappers, one module per op family.

Every mapper is ``fn(ctx, node)`` (see :class:`~caffe.export.context.AtenContext`)
registered under the op's overload-packet name (``conv2d``, ``add``...); all
overloads of an op share a mapper, which reads its arguments by schema name.
"""
from ..registry import OpRegistry

ATEN = OpRegistry("ATen op")

from . import activation, conv, elementwise, linear, norm, pool, resample, shape  # noqa: E402,F401
