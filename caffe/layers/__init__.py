"""Layer implementations, one module per family, all registering into
``caffe.layers.registry.modules`` (exposed as ``caffe.modules``)."""
from . import (  # noqa: F401 (registration)  # noqa: F401 (registration)
    annotated_data,
    common,
    data,
    detection,
    detection_evaluate,
    loss,
    multibox,
    neuron,
    ohem,
    python,
    recurrent,
    vision,
    yolo,  # noqa: F401 (registration: Darknet's Yolo / Region)
)
from .base import BLOB, INPUT, TENSOR, BlobLayer, CaffeLayer, LayerContract, LayerError
from .registry import DuplicateLayerError, UnknownLayerError, modules, register_layer
