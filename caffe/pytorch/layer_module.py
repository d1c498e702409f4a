"""One Caffe layer as a child of the module: its params, its phase, its run.

The wrapped layer object is the very one ``caffe.Net`` builds, so numerics are
Caffe's by construction; this wrapper only owns the parameters as torch
``nn.Parameter``/buffers (the layer's ``run(bottoms, params)`` takes them as
arguments) and switches the layer's Caffe phase when ``.train()``/``.eval()``
is called.  Blob layers (Python layers) run through an autograd Function that
calls their ``forward``/``backward`` on Blobs, as the Net does.
"""
import torch
from torch import nn

from .. import _common
from ..blob import Blob
from .registry import Registry

# type -> fn(layer, phase): what a phase switch changes besides ``layer.phase``.
PHASE_SWITCHES = Registry("caffe.pytorch phase switches")


@PHASE_SWITCHES.register("BatchNorm")
def _batch_norm_phase(layer, phase):
    layer.phase = phase
    if not layer.layer_param.batch_norm_param.HasField("use_global_stats"):
        layer.use_global_stats = (phase == _common.TEST)


@PHASE_SWITCHES.register("Python")
def _python_phase(layer, phase):
    from ..layers.python import Phase
    layer.phase = Phase(phase)


def _generic_phase(layer, phase):
    if hasattr(layer, "phase"):
        layer.phase = phase
    inner = getattr(layer, "module", None)     # caffe.modules nn.Module factories
    if isinstance(inner, nn.Module):
        inner.train(phase == _common.TRAIN)


class _BlobLayerFunction(torch.autograd.Function):
    """Runs a Blob layer's forward/backward on Blobs made from the tensors."""

    @staticmethod
    def forward(ctx, holder, *bottoms):
        layer = holder.caffe_layer
        bblobs = []
        for t in bottoms:
            blob = Blob(tuple(t.shape))
            blob.data[...] = t.detach().to("cpu", torch.float32).numpy()
            bblobs.append(blob)
        tblobs = [Blob(()) for _ in range(holder.num_tops)]
        layer.reshape(bblobs, tblobs)
        layer.forward(bblobs, tblobs)
        like = bottoms[0] if bottoms else torch.empty(0)
        ctx.state = (layer, bblobs, tblobs, like.device, like.dtype)
        return tuple(torch.from_numpy(b.data.copy()).to(like.device, like.dtype
                                                         if like.is_floating_point()
                                                         else torch.float32)
                     for b in tblobs)

    @staticmethod
    def backward(ctx, *grads):
        layer, bblobs, tblobs, device, dtype = ctx.state
        for blob, g in zip(tblobs, grads):
            blob.diff[...] = 0 if g is None else g.detach().to("cpu", torch.float32).numpy()
        propagate = [bool(n) for n in ctx.needs_input_grad[1:]]
        for blob in bblobs:
            blob.diff[...] = 0
        layer.backward(tblobs, propagate, bblobs)
        return (None,) + tuple(torch.from_numpy(b.diff.copy()).to(device, dtype) if p else None
                               for b, p in zip(bblobs, propagate))


class LayerModule(nn.Module):
    """A Caffe layer inside a module: ``forward(*bottoms) -> list of tops``.

    ``export_form``: while :func:`caffe.pytorch.onnx_export.export` traces the
    module, a layer whose own code cannot be traced correctly runs this
    ``fn(layer, bottoms, params) -> tops`` instead (same numbers, ONNX-friendly
    ops); None otherwise.
    """

    export_form = None

    def __init__(self, layer, layer_type, num_tops):
        super().__init__()
        # Not a registered child: its own state (Blobs, a factory's module) is not
        # the model's state; the parameters registered below are.
        object.__setattr__(self, "caffe_layer", layer)
        self.layer_type = layer_type
        self.num_tops = num_tops
        self.is_blob_layer = bool(getattr(layer, "_caffe_blob_layer", False))
        self.blob_names = []

    def add_blob(self, name, tensor, kind, requires_grad):
        if kind == "buffer":
            self.register_buffer(name, tensor)
        else:
            self.register_parameter(name, tensor if isinstance(tensor, nn.Parameter)
                                    else nn.Parameter(tensor, requires_grad=requires_grad))
        self.blob_names.append(name)

    def blob_tensors(self):
        return [getattr(self, n) for n in self.blob_names]

    def forward(self, *bottoms):
        if self.is_blob_layer:
            return list(_BlobLayerFunction.apply(self, *bottoms))
        if self.export_form is not None:
            tops = self.export_form(self.caffe_layer, list(bottoms), self.blob_tensors())
            return list(tops)
        tops = self.caffe_layer.run(list(bottoms), self.blob_tensors())
        return [tops] if isinstance(tops, torch.Tensor) else list(tops)

    def train(self, mode=True):
        super().train(mode)
        phase = _common.TRAIN if mode else _common.TEST
        PHASE_SWITCHES.get(self.layer_type, _generic_phase)(self.caffe_layer, phase)
        return self

    def extra_repr(self):
        return "type=%s, layer=%r" % (self.layer_type,
                                     getattr(self.caffe_layer, "name", "?"))
