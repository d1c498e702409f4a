"""Layer implementations, one module per family, all registering into
``caffe.layers.registry.modules`` (exposed as ``caffe.modules``)."""
from .registry import modules, register_layer, UnknownLayerError, DuplicateLayerError
from .base import CaffeLayer, BlobLayer, LayerContract, LayerError, TENSOR, BLOB, INPUT
from . import vision, neuron, common, loss, recurrent, data, detection, python  # noqa: F401 (registration)
from . import multibox, detection_evaluate, annotated_data, ohem  # noqa: F401 (registration)
from . import yolo  # noqa: F401 (registration: Darknet's Yolo / Region)
