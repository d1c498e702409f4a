"""InferenceModule: ``caffe.pytorch.load(..., optimize=True)``.

The optimised inference path of ``net.optimize_for_inference()``
(caffe/inference.py: folded BatchNorm/Scale, fused convolutions, channels-last
oneDNN kernels or a frozen trace, whichever agrees and is fastest) behind an
``nn.Module`` interface: ``forward(tensors) -> {output blob: tensor}``, like
:class:`~caffe.pytorch.module.CaffeModule`.

It is an inference-only module, as ``torch.jit.optimize_for_inference``'s
result is: no autograd, and the weights stay in the TEST-phase ``caffe.Net``
it runs (``module.net.params``; writes there, or ``module.net.copy_from``,
are picked up by the next forward).  For training, fine-tuning or export use
``caffe.pytorch.load`` without ``optimize``.
"""
from collections import OrderedDict

import torch
from torch import nn

from .. import _common
from .module import bind_inputs


class InferenceModule(nn.Module):
    """A TEST-phase net's optimised forward as an nn.Module; see caffe/inference.py."""

    def __init__(self, net, outputs=None):
        super().__init__()
        if net.phase != _common.TEST:
            raise ValueError("optimize=True needs the TEST phase; %r is TRAIN" % net.name)
        self.net_name = net.name
        self.inputs = list(net.inputs)
        self.outputs = list(outputs) if outputs is not None else list(net.outputs)
        self.input_shapes = OrderedDict((n, tuple(net.blobs[n].shape)) for n in self.inputs)
        net.optimize_for_inference()
        self.net = net
        net._inference.computable(self.outputs)   # refuses a blob fused away, by name
        self._output_ids = [net._blob_index[n] for n in self.outputs]
        self.train(False)

    def train(self, mode=True):
        if mode:
            raise RuntimeError("%s: an optimize=True module is inference-only; load it without "
                               "optimize to train" % self.net_name)
        return super().train(False)

    @property
    def program(self):
        """The program the last new input shape chose (caffe.inference.PROGRAMS)."""
        return self.net._inference.kind

    def forward(self, *args, **kwargs):
        """Inputs positionally (``self.inputs`` order) or by name; ``{output: tensor}``."""
        env = bind_inputs(self.net_name, self.inputs, args, kwargs)
        net = self.net
        dev = _common.compute_device()
        xs = []
        for name in self.inputs:
            x = torch.as_tensor(env[name])
            if x.dtype != torch.float32:
                x = x.float()
            xs.append(x.to(dev).contiguous())
        blobs = net.blobs
        if any(tuple(x.shape) != tuple(blobs[n].shape) for n, x in zip(self.inputs, xs)):
            for n, x in zip(self.inputs, xs):      # new shapes: the layers reshape too
                blobs[n].reshape(*x.shape)
            net.reshape()
        outs = net._inference.run(xs, self._output_ids)
        return OrderedDict((n, t.contiguous()) for n, t in zip(self.outputs, outs))

    def extra_repr(self):
        return "net=%r, inputs=%s, outputs=%s, optimised" % (self.net_name, self.inputs,
                                                              self.outputs)
