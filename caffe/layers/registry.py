"""The one registry mapping layer types (and layer names) to layer factories.

Built-in layers register with :func:`register_layer` (a duplicate raises).
Users extend or override through ``caffe.modules``:

* ``caffe.modules['ROIPooling'] = lambda param: fn`` -- the caffemodel2pytorch
  form: the factory gets the layer's ``*_param`` as a dict-like object and
  returns an ``nn.Module``, a plain function or an autograd ``Function`` class,
  which is then applied to the bottom tensors.
* A richer form for layers that need their weights, bottom shapes or phase: a
  :class:`~caffe.layers.base.CaffeLayer` subclass, or any callable with a
  ``bottom_shapes`` parameter, called as ``factory(layer_param, bottom_shapes,
  phase)`` and returning a ``CaffeLayer``.

A key may be a layer type or a layer name; a name wins over a type, and a user
entry wins over a built-in one.  For ``type: "Python"`` layers the class name in
``python_param.layer`` also works as a key (caffemodel2pytorch's OICR example
registers ``modules['OICRLayer']`` that way).  As in caffemodel2pytorch, user
keys also match ignoring case and underscores when nothing matches exactly.

``modules.register(key, f)`` refuses a key that is already registered (built-in
or user); ``modules[key] = f`` replaces on purpose and ``del modules[key]``
removes a user entry (the built-in one, if any, comes back).
"""
import inspect
from collections.abc import MutableMapping


class UnknownLayerError(KeyError):
    def __str__(self):
        return self.args[0] if self.args else "unknown layer"


class DuplicateLayerError(ValueError):
    pass


class LayerRegistry(MutableMapping):
    def __init__(self):
        self._builtin = {}
        self._user = {}

    # -- built-ins ---------------------------------------------------------
    def register_builtin(self, type_name, factory):
        if type_name in self._builtin:
            raise DuplicateLayerError("layer type %r is already registered (by %r)"
                                      % (type_name, self._builtin[type_name]))
        self._builtin[type_name] = factory

    # -- user entries --------------------------------------------------------
    def register(self, key, factory, override=False):
        """Register ``factory`` for a layer type or layer name.

        Raises if ``key`` already has a user registration and ``override`` is
        false; use ``caffe.modules[key] = factory`` to replace on purpose.
        """
        if not callable(factory):
            raise TypeError("caffe.modules[%r] must be callable, got %r" % (key, factory))
        if not isinstance(key, str) or not key:
            raise TypeError("caffe.modules keys are layer types or layer names (non-empty "
                            "strings), got %r" % (key,))
        if not override and (key in self._user or key in self._builtin):
            raise DuplicateLayerError(
                "caffe.modules already has %s entry for %r; assign caffe.modules[%r] = ... "
                "to replace it on purpose" % ("a user" if key in self._user else "a built-in",
                                               key, key))
        self._user[key] = factory

    def __setitem__(self, key, factory):
        self.register(key, factory, override=True)

    def __getitem__(self, key):
        if key in self._user:
            return self._user[key]
        return self._builtin[key]

    def __delitem__(self, key):
        if key not in self._user:
            raise KeyError("caffe.modules has no user entry for %r (built-in layers cannot be "
                           "removed, only overridden)" % (key,))
        del self._user[key]

    def __iter__(self):
        return iter(sorted(set(self._builtin) | set(self._user)))

    def __len__(self):
        return len(set(self._builtin) | set(self._user))

    def __contains__(self, key):
        return key in self._user or key in self._builtin

    def builtin(self, type_name):
        return self._builtin.get(type_name)

    def types(self):
        """Registered layer types, sorted (what ``caffe.layer_type_list`` returns)."""
        return sorted(set(self._builtin) | set(self._user))

    def lookup(self, layer_param, source=None):
        """The factory for ``layer_param``.

        Order: user entry by layer name, by Python class name (``type:
        "Python"`` layers), by type; then the built-in type.  For types with
        no built-in layer, user keys matching ignoring case and underscores
        come before giving up.
        """
        user = self._user
        keys = [layer_param.name]
        if layer_param.type == "Python" and layer_param.HasField("python_param"):
            keys.append(layer_param.python_param.layer)
        keys.append(layer_param.type)
        keys = [k for k in keys if k]
        if user:
            for k in keys:
                if k in user:
                    return user[k]
        if user and layer_param.type not in self._builtin:
            folded = {}
            for k in user:
                folded.setdefault(_fold(k), k)
            for k in keys:
                hit = folded.get(_fold(k))
                if hit is not None:
                    return user[hit]
        if layer_param.type in self._builtin:
            return self._builtin[layer_param.type]
        where = (" in %s" % source) if source else ""
        raise UnknownLayerError(
            "Unknown layer type %r (layer %r%s). Known types: %s. To add it, register a "
            "factory before building the net: caffe.modules[%r] = lambda param: <nn.Module, "
            "function or autograd.Function applied to the bottoms, or a caffe.Layer>, or the "
            "rich form caffe.modules[%r] = MyCaffeLayer (a caffe.layers.CaffeLayer subclass, "
            "called as factory(layer_param, bottom_shapes, phase)); use the layer name %r as "
            "the key to change only this layer" % (layer_param.type, layer_param.name, where,
                                                   ", ".join(self.types()), layer_param.type,
                                                   layer_param.type, layer_param.name))


def _fold(key):
    return key.replace("_", "").upper()


modules = LayerRegistry()


def register_layer(*type_names):
    """Class decorator registering a built-in layer under one or more types."""
    def deco(cls):
        for name in type_names:
            modules.register_builtin(name, cls)
        if getattr(cls, "type", None) is None:
            cls.type = type_names[0]
        return cls
    return deco


def is_rich_factory(factory):
    """True for factories called as ``factory(layer_param, bottom_shapes, phase)``."""
    from .base import CaffeLayer
    if inspect.isclass(factory) and issubclass(factory, CaffeLayer):
        return True
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    return "bottom_shapes" in sig.parameters
