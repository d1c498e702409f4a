"""How a ``caffe.modules`` entry becomes a layer the Net can drive.

:func:`build_layer` looks the layer up (by name, then by type) and calls its
factory in one of two ways:

* the rich form -- a :class:`~caffe.layers.base.CaffeLayer` subclass or a
  callable with a ``bottom_shapes`` parameter -- is called as
  ``factory(layer_param, bottom_shapes, phase)``;
* the caffemodel2pytorch form is called as ``factory(param)`` with the layer's
  ``*_param`` message as a :class:`LayerParamDict`.  What it returns is adapted:

  - a ``caffe.Layer`` instance (or subclass, instantiated with the
    LayerParameter) or a ``CaffeLayer`` instance is used as is;
  - any other object with pycaffe's ``setup``/``reshape``/``forward``
    (/``backward``) methods is driven on Blobs by :class:`PycaffeObjectLayer`
    (``net.layers`` shows the object itself);
  - an ``nn.Module``, a plain function, a new-style ``autograd.Function``
    class, or a legacy (non-static) ``autograd.Function`` class or instance
    is wrapped in :class:`CallableLayer` and applied to the bottom tensors.
    An ``nn.Module``'s parameters become the layer's blobs.
"""
import inspect

import torch
from torch.func import functional_call

from .. import _common
from ..blob import Blob, BlobVec
from ..proto.pytext import is_repeated
from ..weights import blob_from_proto
from .base import BlobLayer, CaffeLayer, LayerContract
from .python import Layer as PyLayer
from .python import Phase
from .registry import is_rich_factory, modules


def _as_list(outs):
    if outs is None:
        return []
    if isinstance(outs, torch.Tensor):
        return [outs]
    if isinstance(outs, (list, tuple)):
        return [o if isinstance(o, torch.Tensor) else torch.as_tensor(o, dtype=torch.float32)
                for o in outs]
    return [torch.as_tensor(outs, dtype=torch.float32)]


# ---------------------------------------------------------------------------
# Legacy autograd.Function (non-static forward/backward) support
# ---------------------------------------------------------------------------
def _is_legacy_function(fn):
    if isinstance(fn, torch.autograd.Function):
        return True
    if inspect.isclass(fn) and issubclass(fn, torch.autograd.Function):
        return not isinstance(inspect.getattr_static(fn, "forward"), staticmethod)
    return False


class _LegacyState:
    """Stands in for ``self`` of a legacy Function during one application:
    holds what ``save_for_backward`` saved and whatever forward stores on it;
    other attributes come from the original object."""

    def __init__(self, owner, needs_input_grad):
        self.__dict__["_owner"] = owner
        self.to_save = ()
        self.needs_input_grad = needs_input_grad
        self.non_differentiable = ()

    def save_for_backward(self, *tensors):
        self.to_save = tensors

    @property
    def saved_tensors(self):
        return self.to_save

    def mark_non_differentiable(self, *tensors):
        self.non_differentiable = tensors

    def mark_dirty(self, *tensors):
        pass

    def __getattr__(self, name):
        return getattr(self.__dict__["_owner"], name)


class _LegacyBridge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, owner, *inputs):
        state = _LegacyState(owner, tuple(ctx.needs_input_grad[1:]))
        outs = type(owner).forward(state, *inputs)
        ctx.state = state
        ctx.n_inputs = len(inputs)
        if state.non_differentiable:
            ctx.mark_non_differentiable(*state.non_differentiable)
        if isinstance(outs, torch.Tensor):
            return outs
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        state = ctx.state
        g = type(state.__dict__["_owner"]).backward(state, *grads)
        if not isinstance(g, (tuple, list)):
            g = (g,)
        g = list(g)[:ctx.n_inputs] + [None] * max(0, ctx.n_inputs - len(g))
        return (None,) + tuple(g)


def _legacy_apply(fn):
    if isinstance(fn, torch.autograd.Function):
        return lambda *inputs: _LegacyBridge.apply(fn, *inputs)
    return lambda *inputs: _LegacyBridge.apply(fn(), *inputs)


# ---------------------------------------------------------------------------
# Callable layers
# ---------------------------------------------------------------------------
class CallableLayer(CaffeLayer):
    """Adapter for caffemodel2pytorch-style factories: ``factory(param)`` returns
    an nn.Module, a function or an autograd Function applied to the bottoms.

    An nn.Module's parameters become this layer's blobs (so ``copy_from`` fills
    them, ``param {}`` specs give them learning rates, and gradients accumulate
    into the blob diffs); the module runs with ``torch.func.functional_call``
    on the blob values.
    """

    is_loss = None      # from the type name, as Caffe's default loss weight

    def __init__(self, fn, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        if _is_legacy_function(fn):
            fn = _legacy_apply(fn)
        elif inspect.isclass(fn) and issubclass(fn, torch.autograd.Function):
            fn = fn.apply
        self._param_names = []
        if isinstance(fn, torch.nn.Module):
            self.module = fn
            self._fn = None
            self.module.train(self.phase == _common.TRAIN)
            embedded = layer_param.blobs
            for j, (pname, p) in enumerate(self.module.named_parameters()):
                blob = Blob(tuple(p.shape))
                if j < len(embedded):
                    blob_from_proto(blob, embedded[j], "layer %r blob %d" % (self.name, j))
                else:
                    blob.data_buffer.host().copy_(p.detach().cpu().float())
                self.blobs.append(blob)
                self._param_names.append(pname)
        else:
            if not callable(fn):
                raise TypeError("caffe.modules factory for layer %r (type %s) returned %r, "
                                "which is neither an nn.Module, a function, an autograd "
                                "Function nor a caffe.Layer" % (self.name, layer_param.type, fn))
            self.module = None
            self._fn = fn

    def _module_on(self, device):
        if self._module_device != device:
            self.module.to(device)
            self._module_device = device

    _module_device = torch.device("cpu")

    def run(self, bottoms, params):
        if self.module is not None:
            if bottoms and bottoms[0].device != self._module_device \
                    and bottoms[0].device.type != "meta":
                self._module_on(bottoms[0].device)
            if self._param_names:
                outs = functional_call(self.module, dict(zip(self._param_names, params)),
                                       tuple(bottoms))
            else:
                outs = self.module(*bottoms)
        else:
            outs = self._fn(*bottoms)
        return _as_list(outs)

    def forward(self, *bottoms):
        dev = bottoms[0].device if bottoms else None
        return self.run(list(bottoms), [b.data_tensor(dev) for b in self.blobs])

    def output_shapes(self, bottom_shapes):
        params = [b.data_tensor(torch.device("cpu")).clone() for b in self.blobs]
        errors = []
        gen = torch.Generator().manual_seed(0)
        for make in (lambda s: torch.zeros(s), lambda s: torch.rand(s, generator=gen)):
            bottoms = [make(s) for s in bottom_shapes]
            try:
                with torch.no_grad():
                    outs = self.run(bottoms, params)
                return [tuple(o.shape) for o in outs]
            except Exception as exc:   # user code: any failure means "try other values"
                errors.append(exc)
        raise RuntimeError(
            "layer %r (type %s): cannot infer top shapes by running the registered callable "
            "on zero or random bottoms of shapes %s (%s: %s). Register the rich form instead "
            "(a CaffeLayer subclass with output_shapes, or a caffe.Layer whose reshape sets "
            "the top shapes)" % (self.name, self.layer_param.type, list(bottom_shapes),
                                 type(errors[-1]).__name__, errors[-1])) from errors[-1]

    def extra_repr(self):
        return "name=%r" % (self.name,)


class LayerParamDict(dict):
    """The ``*_param`` of a layer as caffemodel2pytorch passes it: a dict of the
    fields that are set (so ``param.get(key, default)`` and ``key in param``
    behave as there), where reading an unset field -- ``param[key]`` or
    ``param.key`` -- gives the proto default.  Messages are LayerParamDicts,
    repeated fields lists, enums ints."""

    def __init__(self, msg=None):
        super().__init__()
        self._msg = msg
        if msg is None:
            return
        for field, value in msg.ListFields():
            self[field.name] = self._convert(field, value)

    @staticmethod
    def _convert(field, value):
        if is_repeated(field):
            if field.message_type is not None:
                return [LayerParamDict(v) for v in value]
            return list(value)
        if field.message_type is not None:
            return LayerParamDict(value)
        return value

    def __missing__(self, key):
        msg = self._msg
        if msg is not None and key in msg.DESCRIPTOR.fields_by_name:
            return self._convert(msg.DESCRIPTOR.fields_by_name[key], getattr(msg, key))
        raise KeyError(key)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __reduce__(self):
        return (dict, (dict(self),))


def type_param(layer_param):
    """The layer's ``*_param`` message: the one named after its type if set,
    else the first one set (caffemodel2pytorch's choice), else None."""
    found = [(f, v) for f, v in layer_param.ListFields()
             if f.name.endswith("_param") and f.message_type is not None]
    if not found:
        return None
    want = "".join(c if c.islower() or c.isdigit() else "_" + c.lower()
                   for c in layer_param.type).lstrip("_") + "_param"
    for f, v in found:
        if f.name.replace("_", "") == want.replace("_", ""):
            return v
    return found[0][1]


_PYCAFFE_METHODS = ("setup", "reshape", "forward")


def _looks_like_pycaffe_layer(obj):
    if isinstance(obj, torch.nn.Module) or inspect.isfunction(obj) or inspect.ismethod(obj) \
            or inspect.isclass(obj) or inspect.isbuiltin(obj):
        return False
    return all(callable(getattr(obj, m, None)) for m in _PYCAFFE_METHODS)


class PycaffeObjectLayer(BlobLayer):
    """Drives an object with pycaffe's layer methods that is not a
    ``caffe.Layer``: it gets what Caffe gives a Python layer (``param_str``,
    ``param_str_``, ``phase``, ``blobs``, ``type``) and ``net.layers`` shows it."""

    is_loss = None

    def __init__(self, obj, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.obj = obj
        obj.param_str = layer_param.python_param.param_str
        obj.param_str_ = obj.param_str
        obj.phase = Phase(phase)
        obj.type = layer_param.type
        blobs = getattr(obj, "blobs", None)
        if not isinstance(blobs, list):
            obj.blobs = BlobVec()
        self.blobs = obj.blobs
        loss = getattr(obj, "is_loss", None)
        if loss is not None:
            self.is_loss = bool(loss)

    def exposed(self):
        return self.obj

    def setup(self, bottom, top):
        self.obj.setup(bottom, top)

    def reshape(self, bottom, top):
        self.obj.reshape(bottom, top)

    def forward(self, bottom, top):
        self.obj.forward(bottom, top)

    def backward(self, top, propagate_down, bottom):
        backward = getattr(self.obj, "backward", None)
        if callable(backward):
            backward(top, propagate_down, bottom)


def adapt_layer(made, layer_param, bottom_shapes, phase):
    """Turn what a caffemodel2pytorch-style factory returned into a layer."""
    if inspect.isclass(made) and issubclass(made, PyLayer):
        made = made(layer_param)
    if isinstance(made, LayerContract):
        return made
    if _looks_like_pycaffe_layer(made):
        return PycaffeObjectLayer(made, layer_param, bottom_shapes, phase)
    return CallableLayer(made, layer_param, bottom_shapes, phase)


def build_layer(layer_param, bottom_shapes, phase, source=None):
    """Instantiate the layer for ``layer_param`` through ``caffe.modules``."""
    factory = modules.lookup(layer_param, source)
    if is_rich_factory(factory):
        return factory(layer_param, bottom_shapes, phase)
    param = LayerParamDict(type_param(layer_param))
    param["inplace"] = (len(layer_param.bottom) == 1
                        and list(layer_param.bottom) == list(layer_param.top))
    return adapt_layer(factory(param), layer_param, bottom_shapes, phase)
