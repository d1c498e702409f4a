"""Base classes every layer derives from.

Two kinds of layer exist, as the Net drives them:

* :class:`CaffeLayer` -- a tensor layer.  ``run(bottoms, params)`` maps bottom
  tensors and parameter tensors to top tensors with differentiable torch ops;
  the Net records each layer's own small autograd graph and replays Caffe's
  layer-by-layer backward from whatever diffs the top blobs hold.
* :class:`BlobLayer` -- a layer that works on Blobs directly, the way Caffe's
  C++ layers do (Python layers, data layers): ``setup``/``reshape``/
  ``forward``/``backward`` receive lists of Blobs.

Layers are built from their LayerParameter and the bottom shapes:
``cls(layer_param, bottom_shapes, phase)``.  Parameter blobs live in
``self.blobs`` (the very Blob objects ``net.params`` exposes).
"""
import torch
from torch import nn

from ..blob import Blob, BlobVec
from .. import fillers
from ..limits import BlobShapeError, check_shape


class LayerError(ValueError):
    """Invalid layer configuration; the message names the layer and field."""


class CaffeLayer(nn.Module):
    type = None
    # (min, max) bottoms and tops; None means unbounded.
    num_bottoms = (0, None)
    num_tops = (0, None)
    # Loss layers put a default loss weight of 1 on their first top.
    is_loss = False
    # Whether backward may be forced into bottom ``i`` (loss labels may not).
    def allow_force_backward(self, bottom_index):
        return True

    # Layers that update their own blobs in forward (BatchNorm statistics).
    mutates_params = False
    # Layers whose run() draws from torch's generator (Dropout, stochastic
    # pooling): a forward recomputed for backward replays the same draws.
    draws_random = False

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
    """A layer driven on Blobs, with an explicit backward (Caffe's C++ API):
    the Net calls ``setup``, ``reshape``, ``forward(bottom, top)`` and
    ``backward(top, propagate_down, bottom)`` with lists of Blobs."""

    _caffe_blob_layer = True

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
