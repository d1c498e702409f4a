"""Standalone PyTorch source for a Caffe net (``python -m caffe.to_pytorch``).

:func:`generate` walks a :class:`~caffe.pytorch.module.CaffeModule` layer by
layer; each layer type has one emitter (``emit_*.py``, registered by type) that
declares the layer in ``__init__`` and writes its line of ``forward``.  Caffe
maths torch lacks comes from :mod:`.helpers`, copied into the file, so the
result imports only torch and math.  The weights go to a state_dict whose keys
are the generated attribute names.
"""
import os
from collections import OrderedDict

import torch
from torch import nn

from ..naming import python_identifier
from . import (  # noqa: F401
    emit_common,
    emit_darknet,
    emit_detection,
    emit_loss,
    emit_neuron,
    emit_recurrent,
    emit_ssd,
    emit_vision,
)
from .context import CodegenError, LayerContext
from .helpers import HELPERS, helper_needs
from .registry import EMITTERS

__all__ = ["generate", "write", "CodegenError", "EMITTERS", "Generated"]

# Layer types the writer handles itself: inputs are forward's arguments, Split
# tops are the same tensor, Silence only consumes.
_STRUCTURAL = ("Input", "Split", "Silence")


class Generated:
    """The source text and the state_dict that ``Model().load_state_dict`` takes."""

    def __init__(self, source, state_dict, model_name):
        self.source = source
        self.state_dict = state_dict
        self.model_name = model_name


class _Writer:
    def __init__(self, module, source):
        self.module = module
        self.source = source
        self.init_lines = []
        self.forward_lines = []
        self.helpers = []
        self.extra_state = OrderedDict()

    def use_helper(self, name):
        if name not in HELPERS:
            raise KeyError("no code helper named %r" % name)
        if name not in self.helpers:
            # the helpers it calls first: a class helper's base must come before it
            for needed in helper_needs(name):
                self.use_helper(needed)
            self.helpers.append(name)


def generate(module, source="<net>", weights_file="model.pth"):
    """:class:`Generated` code and weights for a CaffeModule."""
    w = _Writer(module, source)
    var_taken = set()
    var = {}
    reserved_attrs = set(dir(nn.Module)) | {"inputs", "outputs"}
    attr_taken = set(reserved_attrs)

    def var_of(blob):
        if blob not in var:
            var[blob] = python_identifier(blob, var_taken)
        return var[blob]

    args = [var_of(n) for n in module.inputs]
    state = module.state_dict(keep_vars=False)
    out_state = OrderedDict()
    seen_params = {}
    shared_lines = []
    for lp in module.layer_params:
        ltype = lp.type
        if ltype == "Input":
            continue
        if ltype == "Split":
            for t in lp.top:
                var[t] = var_of(lp.bottom[0])
            continue
        if ltype == "Silence":
            w.forward_lines.append("# %s: Caffe's Silence layer consumes %s"
                                   % (lp.name, ", ".join(var_of(b) for b in lp.bottom)))
            continue
        child = module.layer(lp.name)
        where = "%s: layer %r (type %s)" % (source, lp.name, ltype)
        if child.is_blob_layer:
            raise CodegenError("%s is a Python/Blob layer: its code lives in your Python "
                               "module, so it has no standalone PyTorch form. Use "
                               "caffe.pytorch.load() instead, or cut the net before it with "
                               "outputs=[...]" % where)
        if ltype not in EMITTERS:
            raise CodegenError("%s: no code emitter for this layer type (supported: %s); use "
                               "caffe.pytorch.load() for a module that runs it"
                               % (where, ", ".join(EMITTERS.keys())))
        attr = python_identifier(lp.name, attr_taken)
        bottoms = [var_of(b) for b in lp.bottom]
        inplace = bool(lp.top) and list(lp.top)[:len(lp.bottom)] == list(lp.bottom)[:len(lp.top)]
        tops = [var_of(t) for t in lp.top]
        blobs = OrderedDict((n, getattr(child, n)) for n in child.blob_names)
        frozen = [n for n, t in blobs.items()
                  if isinstance(t, nn.Parameter) and not t.requires_grad]
        ctx = LayerContext(w, lp, attr, bottoms, tops,
                           [module.blob_shapes[b] for b in lp.bottom],
                           [module.blob_shapes[t] for t in lp.top], blobs, inplace, frozen)
        ctx.child = child
        EMITTERS.lookup(ltype, where)(ctx)
        cname = module.layer_children[lp.name]
        for n, t in blobs.items():
            out_state["%s.%s" % (attr, n)] = state["%s.%s" % (cname, n)].detach().clone()
            if isinstance(t, nn.Parameter):
                if id(t) in seen_params:
                    shared_lines.append("self.%s.%s = self.%s  # one parameter in Caffe "
                                        "(param { name })" % (attr, n, seen_params[id(t)]))
                else:
                    seen_params[id(t)] = "%s.%s" % (attr, n)
        if getattr(ctx, "constant", False):
            with torch.no_grad():
                zeros = [torch.zeros(s) for s in ctx.bottom_shapes]
                out_state["%s.value" % attr] = child(*zeros)[0].detach().clone()
    outputs = [(n, var_of(n)) for n in module.outputs]
    text = _render(module, source, w, args, outputs, shared_lines, weights_file)
    return Generated(text, out_state, "Model")


def _render(module, source, w, args, outputs, shared_lines, weights_file):
    I2, I3 = " " * 8, " " * 8
    lines = ['"""%s: generated by caffe.to_pytorch from %s.' % (module.net_name or "net",
                                                                 os.path.basename(source)),
             "",
             "Plain PyTorch: ``Model()(inputs)`` returns ``{output blob: tensor}``; ``load()``",
             "reads the weights (%s, strict). Needs only torch." % weights_file,
             '"""',
             "import math",
             "import os",
             "",
             "import torch",
             "import torch.nn.functional as F",
             "from torch import nn",
             "", ""]
    for name in w.helpers:
        lines.append(HELPERS[name])
        lines.append("")
    lines += ["class Model(nn.Module):",
              '    """%s as Caffe defines it (phase %s)."""' % (
                  module.net_name or "net", "TRAIN" if module.phase == 0 else "TEST"),
              "",
              "    inputs = %r" % (list(module.inputs),),
              "    outputs = %r" % (list(module.outputs),),
              "",
              "    def __init__(self):",
              "        super().__init__()"]
    lines += [I2 + l for l in w.init_lines + shared_lines]
    lines.append(I2 + "self.train(%s)" % (module.phase == 0))
    lines += ["", "    def forward(self, %s):" % ", ".join(args)]
    lines += [I3 + l for l in w.forward_lines]
    lines.append(I3 + "return {%s}" % ", ".join("%r: %s" % (n, v) for n, v in outputs))
    lines += ["", "",
              "def load(weights=None, map_location=\"cpu\"):",
              '    """A Model with its weights (default: %s next to this file)."""' % weights_file,
              "    model = Model()",
              "    if weights is None:",
              "        weights = os.path.join(os.path.dirname(os.path.abspath(__file__)), %r)"
              % weights_file,
              "    model.load_state_dict(torch.load(weights, map_location=map_location), "
              "strict=True)",
              "    return model",
              ""]
    return "\n".join(lines)


def write(module, out_py, source="<net>", with_weights=True):
    """Write ``out_py`` (and its ``.pth`` state_dict next to it when ``with_weights``)."""
    stem = os.path.splitext(os.path.basename(out_py))[0]
    gen = generate(module, source, weights_file=stem + ".pth")
    tmp = out_py + ".tmp"
    with open(tmp, "w") as f:
        f.write(gen.source)
    os.replace(tmp, out_py)
    pth = None
    if with_weights:
        pth = os.path.join(os.path.dirname(os.path.abspath(out_py)), stem + ".pth")
        torch.save(gen.state_dict, pth + ".tmp")
        os.replace(pth + ".tmp", pth)
    return gen, pth
