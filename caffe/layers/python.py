"""Python layers: ``type: "Python"`` with ``python_param { module layer param_str }``.

As in Caffe, the module is imported from ``sys.path`` and the class is
instantiated with the LayerParameter; before ``setup`` the layer gets
``param_str`` (also as ``param_str_``, one fork's spelling) and ``phase``.
The same Python object is what ``net.layers[i]`` returns.
"""
import importlib
import os
import sys

from .._common import TRAIN
from ..blob import BlobVec
from .base import BLOB, BlobLayer, LayerContract
from .registry import modules


class Phase(int):
    """An int equal to caffe.TRAIN/TEST whose str() is 'TRAIN'/'TEST'."""

    def __str__(self):
        return "TRAIN" if self == TRAIN else "TEST"

    __repr__ = __str__


class Layer(LayerContract):
    """Base class of Python layers (pycaffe's ``caffe.Layer``): a BLOB layer."""

    kind = BLOB
    type = "Python"
    # None: decided by the Net from the layer type (Python layers give a loss
    # only with an explicit loss_weight; a caffe.Layer registered for a type
    # ending in "Loss" gets Caffe's default loss_weight 1 on its first top).
    is_loss = None
    num_bottoms = None
    num_tops = None

    def __init__(self, layer_param=None, *args, **kwargs):
        self._layer_param = layer_param

    @property
    def blobs(self):
        blobs = self.__dict__.get("_blobs")
        if blobs is None:
            blobs = BlobVec()
            self.__dict__["_blobs"] = blobs
        return blobs

    def _caffe_prepare(self, layer_param, phase):
        """What Caffe does before calling ``setup``: the Layer constructor loads
        weights embedded in the LayerParameter into ``blobs``; PythonLayer's
        LayerSetUp sets ``param_str`` (``param_str_`` in caffe-fast-rcnn) and
        ``phase``."""
        if self.__dict__.get("_layer_param") is None:
            self.__dict__["_layer_param"] = layer_param
        if len(layer_param.blobs) and not len(self.blobs):
            from ..weights import blob_from_proto
            for j, proto in enumerate(layer_param.blobs):
                blob = self.blobs.add_blob()
                blob_from_proto(blob, proto, "layer %r blob %d" % (layer_param.name, j),
                                reshape=True)
        self.param_str = layer_param.python_param.param_str
        self.param_str_ = self.param_str
        self.phase = Phase(phase)

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


class PythonLayerError(ImportError):
    pass


def _python_layer(layer_param, bottom_shapes, phase):
    pp = layer_param.python_param
    if not pp.module or not pp.layer:
        raise PythonLayerError("layer %r (type Python): python_param.module and "
                               "python_param.layer must both be set" % layer_param.name)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(pp.module)
    except ImportError as exc:
        raise PythonLayerError("layer %r (type Python): cannot import python_param.module %r "
                               "(%s); is its folder on sys.path / PYTHONPATH?"
                               % (layer_param.name, pp.module, exc)) from exc
    try:
        cls = getattr(module, pp.layer)
    except AttributeError:
        raise PythonLayerError("layer %r (type Python): module %r has no class %r "
                               "(python_param.layer)" % (layer_param.name, pp.module,
                                                         pp.layer)) from None
    # checked before anything is called: python_param names code to run, and
    # only a caffe.Layer subclass is what the prototxt's author can have meant
    if not (isinstance(cls, type) and issubclass(cls, (Layer, BlobLayer))):
        raise PythonLayerError("layer %r (type Python): %s.%s is %s, not a subclass of "
                               "caffe.Layer; refusing to call it"
                               % (layer_param.name, pp.module, pp.layer,
                                  "a class" if isinstance(cls, type) else type(cls).__name__))
    return cls(layer_param)


modules.register_builtin("Python", _python_layer)
