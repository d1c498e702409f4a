"""Write Caffe nets as Python code (pycaffe's ``caffe.net_spec``).

``layers`` (usually imported as ``L``) makes layer specifications:
``L.Convolution(bottom, kernel_size=3, num_output=8)`` returns a :class:`Top`.
``params`` (usually ``P``) gives the enum constants of the layer parameter
messages, e.g. ``P.Pooling.MAX``.  A :class:`NetSpec` names the tops assigned
to it; ``NetSpec.to_proto()`` and :func:`to_proto` turn the graph into a
``caffe_pb2.NetParameter``.

Only protobuf is needed here: nothing in this module touches the Net runtime.
"""

from collections import Counter, OrderedDict

from .protoio import schema

__all__ = ['param_name_dict', 'to_proto', 'assign_proto', 'Top', 'Function',
           'NetSpec', 'Layers', 'Parameters', 'layers', 'params']


_param_name_cache = {}


def _param_names():
    """param_name_dict() of the active schema, computed once per schema."""
    pb2 = schema()
    names = _param_name_cache.get(pb2)
    if names is None:
        names = _param_name_cache[pb2] = param_name_dict()
    return names


def param_name_dict():
    """Map each ``XxxParameter`` message used by a ``*_param`` field of
    LayerParameter to the field's prefix, e.g. ``'Convolution' ->
    'convolution'``, ``'Transformation' -> 'transform'``.

    The mapping is read from the protobuf descriptor, so fork fields in
    ``caffe.proto`` are picked up automatically.
    """
    result = {}
    for field in schema().LayerParameter.DESCRIPTOR.fields:
        if not field.name.endswith('_param') or field.message_type is None:
            continue
        message_name = field.message_type.name
        if message_name.endswith('Parameter'):
            message_name = message_name[:-len('Parameter')]
        result[message_name] = field.name[:-len('_param')]
    return result


def to_proto(*tops):
    """Build a NetParameter holding every layer needed to compute ``tops``.

    Every blob and layer name is generated automatically (``Convolution1``,
    ...).  Use :class:`NetSpec` to choose names.  ``tops`` are Tops, or the
    Functions returned for ``ntop=0`` layers.
    """
    layer_protos = OrderedDict()
    counter = Counter()
    for top in tops:
        # a top-less layer (ntop=0) is its own Function; accept it too
        fn = top if isinstance(top, Function) else top.fn
        fn._to_proto(layer_protos, {}, counter)
    net = schema().NetParameter()
    net.layer.extend(layer_protos.values())
    return net


def _plain(value):
    """Turn numpy scalars into the Python scalars protobuf wants."""
    if type(value).__module__ == 'numpy' and hasattr(value, 'item'):
        return value.item()
    return value


_INT_TYPES = (1, 2, 3, 4)   # FieldDescriptor.CPPTYPE_INT32/INT64/UINT32/UINT64


def _integral(proto, name, value):
    """Python 2 scripts (the SSD fork's ssd_pascal.py) divide ints with ``/``;
    under Python 3 that yields floats like 16.0.  An integral float given for
    an integer field is taken as that integer; any other float still fails."""
    if isinstance(value, float) and value.is_integer():
        fd = proto.DESCRIPTOR.fields_by_name.get(name)
        if fd is not None and fd.cpp_type in _INT_TYPES:
            return int(value)
    return value


def assign_proto(proto, name, val):
    """Set field ``name`` of message ``proto`` from a Python value.

    dicts fill sub-messages, lists fill repeated fields (a list of dicts adds
    one message per dict), and anything else is assigned directly.  A single
    value given for a repeated field is treated as a one-element list, so
    ``kernel_size=3`` works for ``repeated uint32 kernel_size``.
    """
    field = getattr(proto, name)
    repeated = hasattr(field, 'extend')
    if isinstance(val, tuple):
        val = list(val)
    if repeated and not isinstance(val, list):
        val = [val]
    if isinstance(val, list):
        if val and isinstance(val[0], dict):
            for entry in val:
                message = field.add()
                for key, sub_val in entry.items():
                    assign_proto(message, key, sub_val)
        else:
            field.extend([_integral(proto, name, _plain(v)) for v in val])
    elif isinstance(val, dict):
        for key, sub_val in val.items():
            assign_proto(field, key, sub_val)
    else:
        setattr(proto, name, _integral(proto, name, _plain(val)))


class Top(object):
    """One output blob of a :class:`Function` (layer): ``fn`` is the layer,
    ``n`` the index of this output among the layer's tops."""

    def __init__(self, fn, n):
        self.fn = fn
        self.n = n

    def to_proto(self):
        """NetParameter with every layer this top depends on (auto names)."""
        return to_proto(self)

    def _to_proto(self, layers, names, autonames):
        return self.fn._to_proto(layers, names, autonames)

    def _update(self, params):
        """The SSD fork's NetSpec.update: change the producing layer's params."""
        self.fn._update(params)


class Function(object):
    """A layer: its type, its bottoms (Tops of other layers) and its keyword
    parameters.  ``ntop`` (default 1) and ``in_place`` (default False) are
    consumed here and never reach the prototxt."""

    def __init__(self, type_name, inputs, params):
        self.type_name = type_name
        for index, bottom in enumerate(inputs):
            if not isinstance(bottom, Top):
                raise TypeError('%s input %d is not a Top (type is %s)'
                                % (type_name, index, type(bottom)))
        self.inputs = inputs
        self.params = params
        self.ntop = self.params.pop('ntop', 1)
        self.in_place = self.params.pop('in_place', False)
        self.tops = tuple(Top(self, i) for i in range(self.ntop))

    def _get_name(self, names, autonames):
        """The layer's name: the name of its first top, or ``TypeN`` for a
        layer without tops that was not given a name."""
        if self not in names:
            if self.ntop > 0:
                names[self] = self._get_top_name(self.tops[0], names,
                                                 autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = self.type_name + str(autonames[self.type_name])
        return names[self]

    def _get_top_name(self, top, names, autonames):
        if top not in names:
            kind = top.fn.type_name
            autonames[kind] += 1
            names[top] = kind + str(autonames[kind])
        return names[top]

    def _update(self, params):
        self.params.update(params)

    def _to_proto(self, layers, names, autonames):
        if self in layers:
            return
        bottom_names = []
        for bottom in self.inputs:
            bottom._to_proto(layers, names, autonames)
            bottom_names.append(layers[bottom.fn].top[bottom.n])

        layer = schema().LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottom_names)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            for top in self.tops:
                layer.top.append(self._get_top_name(top, names, autonames))
        layer.name = self._get_name(names, autonames)

        for key, value in self.params.items():
            if key.endswith('param'):
                # param, transform_param, convolution_param, ...: fields of
                # LayerParameter itself
                assign_proto(layer, key, value)
                continue
            try:
                prefix = _param_names().get(self.type_name) or \
                    _PARAM_ALIASES[self.type_name]
                assign_proto(getattr(layer, prefix + '_param'), key, value)
            except (AttributeError, KeyError):
                # not a field of this layer's own parameter message (or the
                # type has none): name, loss_weight, include, ...
                assign_proto(layer, key, value)

        layers[self] = layer


class NetSpec(object):
    """Tops assigned to a NetSpec's attributes (or items) are named after
    them; ``to_proto()`` writes every layer they need, in order."""

    def __init__(self):
        object.__setattr__(self, 'tops', OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        if name.startswith('__') and name.endswith('__'):
            raise AttributeError(name)
        tops = self.__dict__.get('tops')
        if tops is None or name not in tops:
            raise _NoSuchTop(name)
        return tops[name]

    def __setitem__(self, key, value):
        self.__setattr__(key, value)

    def __getitem__(self, item):
        return self.__getattr__(item)

    def __contains__(self, item):
        return item in self.tops

    def __dir__(self):
        return sorted(set(object.__dir__(self)) | set(self.tops))

    # The SSD fork's additions, which its model_libs.py relies on.
    def __delitem__(self, name):
        del self.tops[name]

    def keys(self):
        return list(self.tops.keys())

    def vals(self):
        return list(self.tops.values())

    def update(self, name, params):
        """Merge ``params`` into the parameters of the layer producing ``name``."""
        self.tops[name]._update(params)

    def to_proto(self):
        names = {value: key for key, value in self.tops.items()}
        autonames = Counter()
        layer_protos = OrderedDict()
        for top in self.tops.values():
            top._to_proto(layer_protos, names, autonames)
        net = schema().NetParameter()
        net.layer.extend(layer_protos.values())
        return net


class _NoSuchTop(AttributeError, KeyError):
    """A name not assigned to a NetSpec.  pycaffe raises KeyError here; being
    an AttributeError too keeps ``hasattr``/``getattr(..., default)`` usable."""

    def __str__(self):
        return repr(self.args[0]) if self.args else ''


class Layers(object):
    """``layers.Type(*bottoms, **params)`` specifies a layer of type ``Type``.
    It returns the Top (one output), a tuple of Tops (``ntop`` > 1), or the
    Function itself (``ntop=0``)."""

    def __getattr__(self, name):
        if name.startswith('__') and name.endswith('__'):
            raise AttributeError(name)

        def make_layer(*args, **kwargs):
            fn = Function(name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops
        make_layer.__name__ = name
        return make_layer


class _ParameterConstants(object):
    """Enum constants of ``caffe_pb2.<Name>Parameter``."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, const):
        if const.startswith('__') and const.endswith('__'):
            raise AttributeError(const)
        return getattr(getattr(schema(), self._name + 'Parameter'), const)


class Parameters(object):
    """``params.Pooling.MAX`` is ``caffe_pb2.PoolingParameter.MAX``."""

    def __getattr__(self, name):
        if name.startswith('__') and name.endswith('__'):
            raise AttributeError(name)
        return _ParameterConstants(name)



# Layer types that read a parameter message named after another type.  pycaffe
# has no entry for them, so flat kwargs such as L.Deconvolution(x,
# num_output=4) fell through to LayerParameter and failed; here they reach
# the message the layer actually reads.  Nets pycaffe accepts are unchanged.
_PARAM_ALIASES = {'Deconvolution': 'convolution', 'Im2col': 'convolution',
                  'RNN': 'recurrent', 'LSTM': 'recurrent'}
layers = Layers()
params = Parameters()
