"""Names the module gives Caffe things: children after layers, params after blobs.

Caffe layer names may hold characters torch refuses in a child name ('.') or
clash with nn.Module attributes ('forward', 'train'); those get a safe,
deterministic spelling and the module keeps the map both ways.  Parameter
blobs get torch-style names per layer type (``weight``, ``bias``; BatchNorm's
statistics are buffers), registered here rather than spelled out in the code
that builds modules.
"""
import keyword
import re

from .registry import Registry

# type -> fn(layer_param) -> (names of the blobs in order, "param" or "buffer")
BLOB_NAMES = Registry("caffe.pytorch blob names")
BLOB_NAMES.add("BatchNorm", lambda lp: (("running_mean", "running_var", "scale_factor"),
                                        "buffer"))
BLOB_NAMES.add("Bias", lambda lp: (("bias",), "param"))
# Scale with a second bottom learns only the bias
BLOB_NAMES.add("Scale", lambda lp: (("bias",) if len(lp.bottom) > 1 else ("weight", "bias"),
                                    "param"))

_DEFAULT = ("weight", "bias")


def blob_names(layer_param, count):
    """Names for a layer's ``count`` blobs and whether they are params or buffers."""
    rule = BLOB_NAMES.get(layer_param.type)
    names, kind = rule(layer_param) if rule else (_DEFAULT, "param")
    names = list(names[:count])
    names += ["blob%d" % i for i in range(len(names), count)]
    return names, kind


_IDENT = re.compile(r"[^0-9a-zA-Z_]")


def child_name(layer_name, taken, reserved):
    """A torch child name for ``layer_name``: the name itself whenever torch allows it."""
    name = layer_name.replace(".", "_") or "layer"
    while name in taken or name in reserved:
        name += "_"
    return name


def python_identifier(name, taken):
    """A Python identifier for generated code (``conv1/3x3`` -> ``conv1_3x3``)."""
    ident = _IDENT.sub("_", name) or "x"
    if ident[0].isdigit():
        ident = "_" + ident
    if keyword.iskeyword(ident) or ident in ("self", "torch", "F", "nn", "np", "math"):
        ident += "_"
    base, k = ident, 1
    while ident in taken:
        ident = "%s_%d" % (base, k)
        k += 1
    taken.add(ident)
    return ident
