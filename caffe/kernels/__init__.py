"""Hand-written kernels of the forks' layers.

Each operation has CUDA C source (``*.cu`` in this folder, compiled by CuPy at
first use, cached per device, launched on PyTorch's current stream) and a
vectorised PyTorch path with the same numbers, used for CPU tensors or when
CuPy is absent.

* :func:`roi_pooling` -- caffe-fast-rcnn ROIPooling (max, argmax backward).
* :func:`psroi_pooling` -- R-FCN position-sensitive ROI pooling (average).
"""
from .launcher import cupy_available, read_source, source_path
from .psroi_pooling import PSROIPoolingFunction, psroi_pooling, psroi_pooling_backward, psroi_pooling_forward
from .roi_pooling import ROIPoolingFunction, roi_pooling, roi_pooling_backward, roi_pooling_forward

KERNEL_SOURCES = ("roi_pooling.cu", "psroi_pooling.cu")

__all__ = ["cupy_available", "source_path", "read_source", "KERNEL_SOURCES",
           "roi_pooling", "roi_pooling_forward", "roi_pooling_backward", "ROIPoolingFunction",
           "psroi_pooling", "psroi_pooling_forward", "psroi_pooling_backward",
           "PSROIPoolingFunction"]
