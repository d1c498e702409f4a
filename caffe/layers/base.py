"""The layer contract: everything the Net asks of a layer, declared once.

Start here to write a layer.  A layer is built from its LayerParameter and
the shapes of its bottoms, ``cls(layer_param, bottom_shapes, phase)``, and
registered for its Caffe type::

    from caffe.layers.base import CaffeLayer
    from caffe.layers.registry import register_layer     # built-ins
    # (user code: caffe.modules["Square"] = SquareLayer)

    @register_layer("Square")
    class SquareLayer(CaffeLayer):
        num_bottoms = (1, 1)
        num_tops = (1, 1)

        def __init__(self, layer_param, bottom_shapes, phase):
            super().__init__(layer_param, bottom_shapes, phase)
            p = layer_param.power_param            # read and check fields here;
            if p.scale == 0:                        # raise self.error(msg, field=...)
                raise self.error("scale must not be 0", field="power_param.scale")
            self.add_param_blob((1,), default_fill=p.scale)   # learnable, in order

        def run(self, bottoms, params):
            return [params[0] * bottoms[0] * bottoms[0]]

``run`` maps bottom tensors and param tensors to top tensors with
differentiable torch ops; that is all a tensor layer needs.  The Net derives
top shapes by running it on meta tensors (override ``output_shapes`` when that
cannot work), records each layer's forward as its own small autograd graph
and runs Caffe's layer-by-layer backward from whatever diffs the top blobs
hold.  A recording that is missing or stale (a bottom or param written after
the forward) is recomputed from the current blobs first.

Every attribute and method the Net reads is declared in :class:`LayerContract`
with its default; the Net reads nothing else.  ``kind`` says how the Net
drives the layer:

* ``TENSOR`` (:class:`CaffeLayer`): ``run(bottoms, params) -> [tops]``.
* ``BLOB`` (:class:`BlobLayer`, ``caffe.Layer`` Python layers, data layers):
  the C++ API on Blobs -- ``setup(bottom, top)`` once, then
  ``reshape(bottom, top)`` + ``forward(bottom, top)`` per forward and
  ``backward(top, propagate_down, bottom)``.
* ``INPUT`` (the Input layer): tops hold what the user wrote; forward and
  backward do nothing.

Parameter blobs live in ``self.blobs`` (the Blob objects ``net.params``
exposes).  Errors in the configuration raise :class:`LayerError` naming the
layer and field (``self.error``).
"""
import torch
from torch import nn

from .. import fillers
from ..blob import Blob, BlobVec
from ..limits import BlobShapeError, check_shape

TENSOR = "tensor"
BLOB = "blob"
INPUT = "input"


class LayerError(ValueError):
    """Invalid layer configuration; the message names the layer and field."""


def is_loss_by_type(layer_param):
    """Caffe's default for layers that do not say: a type ending in "Loss"
    (Python layers excepted) puts loss weight 1 on its first top."""
    t = layer_param.type
    return t != "Python" and t.lower().endswith("loss")


class LayerContract:
    """What the Net reads from a layer, with the defaults.  Every layer
    class derives from this (directly or through CaffeLayer / BlobLayer)."""

    #: How the Net drives the layer: TENSOR, BLOB or INPUT (see the module doc).
    kind = TENSOR
    #: The Caffe type string (set by ``register_layer`` and by the Net).
    type = None
    #: (min, max) bottoms and tops; None bound means unbounded, None means unchecked.
    num_bottoms = (0, None)
    num_tops = (0, None)
    #: True: loss weight 1 on the first top unless the prototxt says otherwise;
    #: None: decided from the type name (:func:`is_loss_by_type`).
    is_loss = False
    #: The layer updates its own blobs in forward (BatchNorm's statistics): a
    #: forward recomputed for backward gets copies of them.
    mutates_params = False
    #: Caffe forces lr_mult 0 on the blobs (statistics, not parameters).
    fixed_param_lr = False
    #: run() draws from torch's generator (Dropout, stochastic pooling): a
    #: forward recomputed for backward replays the same draws.
    draws_random = False

    @property
    def stateful_forward(self):
        """Whether a forward changes anything besides the tops (a data source's
        cursor, the layer's own blobs, the random generator): such a layer must
        run exactly once per Net.forward, never again to check or time it."""
        return self.kind == BLOB or self.mutates_params or self.draws_random

    def allow_force_backward(self, bottom_index):
        """Whether ``force_backward`` may send a gradient into bottom
        ``bottom_index`` (false for labels and other non-differentiable inputs)."""
        return True

    def exposed(self):
        """The object ``net.layers`` shows for this layer (an adapter shows
        the user's object it drives)."""
        return self

    def _caffe_prepare(self, layer_param, phase):
        """BLOB layers: called by the Net right before ``setup``."""

    @property
    def _caffe_blob_layer(self):
        """Older spelling of ``kind == BLOB`` (kept for code that reads it)."""
        return self.kind == BLOB

    @property
    def forward_is_noop(self):
        """Older spelling of ``kind == INPUT`` (kept for code that reads it)."""
        return self.kind == INPUT


class CaffeLayer(LayerContract, nn.Module):
    """A TENSOR layer (also usable standalone as an nn.Module: ``layer(x)``)."""

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__()
        self.layer_param = layer_param
        self.name = layer_param.name
        self.phase = int(phase)
        self.bottom_shapes = [tuple(s) for s in bottom_shapes]
        self.blobs = BlobVec()

    # -- helpers for subclasses --------------------------------------------
    def error(self, message, field=None):
        where = "layer %r (type %s)" % (self.name, self.layer_param.type)
        if field:
            where += ", field %s" % field
        return LayerError("%s: %s" % (where, message))

    def add_param_blob(self, shape, filler=None, default_fill=None):
        """Create parameter blob ``len(self.blobs)`` with ``shape``, filled.

        As in Caffe, weights embedded in the LayerParameter (``blobs``) are used
        instead of the filler, after a shape check.
        """
        index = len(self.blobs)
        shape = tuple(int(d) for d in shape)
        try:
            check_shape(shape, "param blob %d" % index)
        except BlobShapeError as exc:
            raise self.error(str(exc)) from None
        blob = Blob(shape)
        embedded = self.layer_param.blobs
        if index < len(embedded):
            from ..weights import blob_from_proto
            blob_from_proto(blob, embedded[index], "layer %r blob %d" % (self.name, index))
        elif filler is not None:
            fillers.fill(blob.mutable_data_tensor(torch.device("cpu")), filler,
                         "layer %r blob %d filler" % (self.name, index))
        elif default_fill is not None:
            blob.data_buffer.host().fill_(default_fill)
        self.blobs.append(blob)
        return blob

    # -- the computation -----------------------------------------------------
    def run(self, bottoms, params):
        """Compute the tops from bottom tensors and param tensors."""
        raise NotImplementedError("%s.run" % type(self).__name__)

    def forward(self, *bottoms):
        """nn.Module entry point for standalone use: tops from bottom tensors."""
        params = [b.data_tensor(bottoms[0].device if bottoms else None) for b in self.blobs]
        tops = self.run(list(bottoms), params)
        return tops[0] if len(tops) == 1 else tuple(tops)

    def output_shapes(self, bottom_shapes):
        """Top shapes for ``bottom_shapes``, found by running on meta tensors."""
        meta = torch.device("meta")
        bottoms = [torch.empty(s, device=meta) for s in bottom_shapes]
        params = [torch.empty(tuple(b.shape), device=meta) for b in self.blobs]
        try:
            with torch.no_grad():
                tops = self.run(bottoms, params)
        except (NotImplementedError, RuntimeError):
            bottoms = [torch.zeros(s) for s in bottom_shapes]
            params = [b.data_tensor(torch.device("cpu")) for b in self.blobs]
            with torch.no_grad():
                tops = self.run(bottoms, [p.clone() for p in params])
        return [tuple(t.shape) for t in tops]

    def reshape(self, bottom, top):
        """pycaffe's ``layer.reshape(bottom, top)``: reshape top Blobs for the bottoms."""
        shapes = self.output_shapes([tuple(b.shape) for b in bottom])
        for blob, shape in zip(top, shapes):
            blob.reshape(*shape)

    def extra_repr(self):
        return "name=%r" % (self.name,)


class BlobLayer(CaffeLayer):
    """A BLOB layer, with an explicit backward (Caffe's C++ API): the Net calls
    ``setup``, ``reshape``, ``forward(bottom, top)`` and
    ``backward(top, propagate_down, bottom)`` with lists of Blobs."""

    kind = BLOB

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        raise NotImplementedError("%s.forward" % type(self).__name__)

    def backward(self, top, propagate_down, bottom):
        pass

    def output_shapes(self, bottom_shapes):
        raise NotImplementedError("BlobLayer shapes come from setup/reshape")
