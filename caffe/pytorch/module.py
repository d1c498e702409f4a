"""CaffeModule: a Caffe net as a ``torch.nn.Module``.

Built from a :class:`caffe.Net` (which did the phase filtering, split
insertion, parameter sharing and shape checks), it keeps the Net's layer
objects -- so every layer has Caffe's numerics -- and runs them in order on
tensors.  Autograd replaces Caffe's backward, torch owns the parameters, and
``forward`` returns ``{output blob: tensor}`` in the net's output order
(caffemodel2pytorch's convention).
"""
from collections import OrderedDict

import torch
from torch import nn

from .. import _common
from .layer_module import LayerModule
from .naming import blob_names, child_name

# Layer types that only name or copy blobs: the module aliases tensors instead.
ALIAS_TYPES = frozenset(["Input", "Split"])


def bind_inputs(net_name, inputs, args, kwargs):
    """``{input blob: value}`` from positional (``inputs`` order) and named arguments."""
    if len(args) > len(inputs):
        raise TypeError("%s.forward takes %d input blob(s) (%s), got %d positional"
                        % (net_name, len(inputs), ", ".join(inputs), len(args)))
    env = dict(zip(inputs, args))
    for key, value in kwargs.items():
        if key not in inputs:
            raise TypeError("%s.forward: %r is not an input blob (inputs: %s)"
                            % (net_name, key, ", ".join(inputs)))
        if key in env:
            raise TypeError("%s.forward: input %r given twice" % (net_name, key))
        env[key] = value
    missing = [n for n in inputs if n not in env]
    if missing:
        raise TypeError("%s.forward: missing input blob(s) %s" % (net_name, ", ".join(missing)))
    return env


class CaffeModule(nn.Module):
    """A Caffe net as an nn.Module; see :func:`caffe.pytorch.load`."""

    def __init__(self, net, layer_params, outputs=None, name=None):
        super().__init__()
        self.net_name = name if name is not None else net.name
        self.inputs = list(net.inputs)
        self.outputs = list(outputs) if outputs is not None else list(net.outputs)
        self.input_shapes = OrderedDict((n, tuple(net.blobs[n].shape)) for n in self.inputs)
        self.layer_children = OrderedDict()    # Caffe layer name -> child name
        self.layer_types = OrderedDict()       # Caffe layer name -> type
        self.layer_params = list(layer_params)  # the LayerParameters, in net order
        self.blob_shapes = OrderedDict((n, tuple(b.shape)) for n, b in net.blobs.items())
        self.phase = net.phase
        self.loss_weights = OrderedDict(
            (k, float(v)) for k, v in net.blob_loss_weights.items() if v)
        lr = {}
        for blob, m in zip(net.learnable_params, net.params_lr):
            lr[id(blob)] = m
        shared = {}                              # id(Blob) -> nn.Parameter
        plan = []
        reserved = set(dir(nn.Module)) | set(type(self).__dict__) | set(self.__dict__)
        bottom_names = net.bottom_names
        top_names = net.top_names
        for layer, lname, lp in zip(net.layers, list(net._layer_names), self.layer_params):
            ltype = lp.type
            self.layer_types[lname] = ltype
            bottoms = list(bottom_names[lname])
            tops = list(top_names[lname])
            if ltype in ALIAS_TYPES:
                if bottoms:
                    plan.append((None, bottoms, tops))
                continue
            child = LayerModule(layer, ltype, len(tops))
            blobs = list(getattr(layer, "blobs", [])) if not child.is_blob_layer else []
            names, kind = blob_names(lp, len(blobs))
            for bname, blob in zip(names, blobs):
                if kind == "param" and id(blob) in shared:
                    child.add_blob(bname, shared[id(blob)], kind, True)
                    continue
                tensor = blob.data_buffer.host().detach().clone()
                child.add_blob(bname, tensor, kind, lr.get(id(blob), 1.0) != 0)
                if kind == "param":
                    shared[id(blob)] = getattr(child, bname)
            cname = child_name(lname, set(self._modules), reserved)
            self.add_module(cname, child)
            self.layer_children[lname] = cname
            plan.append((cname, bottoms, tops))
        self._plan = plan
        self.train(net.phase == _common.TRAIN)

    # -- running ------------------------------------------------------------
    def _bind_inputs(self, args, kwargs):
        return bind_inputs(self.net_name, self.inputs, args, kwargs)

    def forward(self, *args, **kwargs):
        """Inputs positionally (``self.inputs`` order) or by name; ``{output: tensor}``."""
        env = self._bind_inputs(args, kwargs)
        modules = self._modules
        for cname, bottoms, tops in self._plan:
            if cname is None:                       # Split: every top is the bottom
                for t in tops:
                    env[t] = env[bottoms[0]]
                continue
            outs = modules[cname](*[env[b] for b in bottoms])
            for t, value in zip(tops, outs):
                env[t] = value
        return OrderedDict((name, env[name]) for name in self.outputs)

    # -- conveniences -------------------------------------------------------
    def layer(self, name):
        """The child module of Caffe layer ``name``."""
        try:
            return self._modules[self.layer_children[name]]
        except KeyError:
            raise KeyError("%s: no module child for Caffe layer %r" % (self.net_name,
                                                                      name)) from None

    def loss(self, outputs):
        """Caffe's net loss from ``forward``'s dict: sum of loss weight x top sum."""
        total = None
        for name, w in self.loss_weights.items():
            if name in outputs:
                term = outputs[name].sum() * w
                total = term if total is None else total + term
        if total is None:
            raise ValueError("%s: none of the outputs %s carries a loss weight"
                             % (self.net_name, list(outputs)))
        return total

    def example_inputs(self, batch=None, seed=0):
        """Random inputs of the net's input shapes (``batch`` replaces axis 0)."""
        gen = torch.Generator().manual_seed(seed)
        out = []
        for shape in self.input_shapes.values():
            shape = tuple(shape)
            if batch is not None and shape:
                shape = (batch,) + shape[1:]
            out.append(torch.randn(shape, generator=gen))
        return tuple(out)

    def extra_repr(self):
        return "net=%r, inputs=%s, outputs=%s" % (self.net_name, self.inputs, self.outputs)
