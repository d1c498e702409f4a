"""State while Darknet sections are turned into Caffe layers (the same interface
the shared ATen helpers use: bottom / top / name / produce / refuse / net)."""
from .errors import ExportError


class SectionError(ExportError):
    """A section (or one of its keys) Caffe cannot express, with where it is."""

    def __init__(self, section, key, reason, path):
        self.section, self.key = section, key
        where = "%s:%d [%s] (layer %d)" % (path, section.line, section.kind, section.index)
        super().__init__("%s%s: %s" % (where, (" key '%s'" % key) if key else "", reason))


class DarknetContext:
    def __init__(self, net, cfg_path, reader, channels, height, width):
        self.net = net
        self.path = cfg_path
        self.reader = reader        # WeightReader or None (cfg-only: zeros)
        self.node = None            # the Section being mapped
        self.outputs = []           # per layer index: blob name
        self.shapes = []            # per layer index: (N, C, H, W) or (N, C)
        self.finals = []            # blobs that are net outputs ([yolo] / [region] inputs)
        self.input_shape = (1, channels, height, width)
        self.layer_weights = {}     # layer index -> [arrays in Darknet file order]
        self.pending = {}
        self._cur_shape = None

    # what the shared helpers call
    def bottom(self, x):
        if x == "input":
            return "data"
        return self.outputs[x] if isinstance(x, int) else x

    def shape(self, x):
        if x == "input":
            return self.input_shape
        return self.shapes[x] if isinstance(x, int) else self._cur_shape

    def top(self, suffix=""):
        return self.name() + ("/" + suffix if suffix else "")

    def name(self, suffix=""):
        base = "%s_%d" % (self.node.kind, self.node.index)
        return base + ("/" + suffix if suffix else "")

    def produce(self, blob, shape=None):
        self.outputs.append(blob)
        self.shapes.append(tuple(shape) if shape is not None else self._cur_shape)
        return blob

    def refuse(self, reason, key=None):
        raise SectionError(self.node, key, reason, self.path)

    # Darknet helpers
    def prev(self):
        return self.node.index - 1 if self.node.index > 0 else "input"

    def layer_ref(self, value, key):
        """A [route]/[shortcut] layer reference: negative = relative, else absolute."""
        idx = value + self.node.index if value < 0 else value
        if not 0 <= idx < self.node.index:
            self.refuse("refers to layer %d, which is not an earlier layer" % idx, key)
        return idx

    def weights(self, n, what):
        if self.reader is None:
            import numpy as np
            return np.zeros(n, np.float32)
        return self.reader.take(n, self.node, what)
