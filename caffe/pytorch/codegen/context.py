"""What an emitter sees and fills: one layer's names, shapes and params, and
the lines it adds to the generated ``__init__`` and ``forward``."""
import re

import numpy as np

_FLOAT = re.compile(r"(?<![\w.])(\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+)(?![\w.])")


def _float32_literal(match):
    """Proto floats are float32: print 1e-05, not 9.999999747378752e-06."""
    text = match.group(0)
    value = np.float32(float(text))
    short = str(value)
    if np.float32(float(short)) == value:
        return short
    return text


def tidy(line):
    return _FLOAT.sub(_float32_literal, line)


class CodegenError(ValueError):
    """A layer has no standalone PyTorch form; the message names it."""


class LayerContext:
    """One Caffe layer being written out.

    ``attr``: the attribute name in the generated Model (``self.<attr>``);
    ``bottoms`` / ``tops``: Python variable names; ``bottom_shapes`` /
    ``top_shapes``: the shapes the net was set up with; ``blobs``: the layer's
    parameter tensors by name (from the module) -- emitters declare them with
    the same names so the module's state_dict loads into the generated Model.
    """

    def __init__(self, writer, lp, attr, bottoms, tops, bottom_shapes, top_shapes, blobs,
                 inplace, frozen):
        self.writer = writer
        self.lp = lp
        self.name = lp.name
        self.type = lp.type
        self.attr = attr
        self.bottoms = bottoms
        self.tops = tops
        self.bottom_shapes = bottom_shapes
        self.top_shapes = top_shapes
        self.blobs = blobs
        self.inplace = inplace
        self.frozen = frozen          # parameter names with lr_mult 0

    @property
    def x(self):
        return self.bottoms[0]

    @property
    def top(self):
        return self.tops[0]

    def error(self, message, field=None):
        where = "layer %r (type %s)" % (self.name, self.type)
        if field:
            where += ", field %s" % field
        return CodegenError("%s: %s: %s" % (self.writer.source, where, message))

    def init(self, line):
        """A line of ``__init__`` (``self.`` prefix and comments are the emitter's)."""
        self.writer.init_lines.append(tidy(line))

    def assign(self, expr, comment=None):
        """``top = expr`` (several tops: ``a, b = expr``) in ``forward``."""
        lhs = ", ".join(self.tops) if len(self.tops) > 1 else self.tops[0]
        line = "%s = %s" % (lhs, expr)
        note = []
        if self.inplace:
            note.append("in place in Caffe")
        if comment:
            note.append(comment)
        if note:
            line += "  # %s" % "; ".join(note)
        self.writer.forward_lines.append(tidy(line))

    def helper(self, name):
        """Write helper ``name`` (from helpers.py) into the file; returns its name."""
        self.writer.use_helper(name)
        return name

    def param_module(self, kind="Params"):
        """Declare the layer's blobs under ``self.<attr>`` with their module names."""
        self.helper(kind)
        shapes = ", ".join("%s=%s" % (n, tuple(t.shape)) for n, t in self.blobs.items())
        self.init("self.%s = %s(%s)" % (self.attr, kind, shapes))
        self.freeze()

    def freeze(self):
        for n in self.frozen:
            self.init("self.%s.%s.requires_grad_(False)  # lr_mult: 0" % (self.attr, n))
