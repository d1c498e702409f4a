"""The state an ONNX mapper works with (the same interface as the ATen context,
so shared helpers such as pooling, BatchNorm and broadcasting serve both)."""
import numpy as np

from .errors import UnsupportedOpError


class _Current:
    """The node being mapped, as the shared helpers see it (``.name`` = its top)."""

    def __init__(self, node):
        self.onnx = node
        self.name = node.outputs[0]


class OnnxContext:
    def __init__(self, graph, net, supported, merge_bn=False):
        self.g = graph
        self.net = net
        self.supported = supported
        self.merge_bn = merge_bn
        self.blobs = {}
        self.pending = {}
        self.dynamic = set(graph.inputs)
        self.checks = {}
        self.node = None
        self.input_blobs = set()
        self.consumers = {}
        for n in graph.nodes:
            for i in n.inputs:
                self.consumers[i] = self.consumers.get(i, 0) + 1

    def set_node(self, node):
        self.node = _Current(node)

    def value(self, x):
        return self.g.values[x]

    def shape(self, x):
        if isinstance(x, _Current):
            x = x.name
        return tuple(np.shape(self.g.values[x]))

    def is_const(self, x):
        return isinstance(x, str) and x not in self.dynamic and x in self.g.values

    def const(self, x):
        if isinstance(x, str):
            if not self.is_const(x):
                self.refuse("expected a constant here, got a tensor computed from the input")
            return np.asarray(self.g.values[x], dtype=np.float32)
        return np.asarray(x, dtype=np.float32)

    def bottom(self, x):
        if x in self.pending:
            self.refuse("a Pad (%s) can only be folded into the Conv / pooling that reads it" % x)
        if self.is_const(x):
            self.refuse("a constant tensor (%s) is used where Caffe needs a computed blob" % x)
        blob = self.blobs.get(x)
        if blob is None or isinstance(blob, list):
            self.refuse("input %s has no single Caffe blob" % x)
        return blob

    def top(self, suffix=""):
        return self.node.name + ("/" + suffix if suffix else "")

    def name(self, suffix=""):
        return self.node.onnx.name + ("/" + suffix if suffix else "")

    def produce(self, blob, value=None, check=True):
        value = value or self.node.name
        self.blobs[value] = blob
        self.dynamic.add(value)
        if check:
            self.checks[blob] = value
        return blob

    def alias(self, src):
        self.blobs[self.node.name] = self.bottom(src)
        self.dynamic.add(self.node.name)

    def inplace_ok(self, x):
        blob = self.blobs.get(x)
        if blob is None or blob in self.input_blobs or x in self.g.outputs:
            return False
        if self.consumers.get(x, 0) != 1:
            return False
        return not [n for n, b in self.blobs.items() if b == blob and n != x]

    def refuse(self, reason, node=None):
        node = self.node.onnx
        raise UnsupportedOpError(node.op_type, reason, node.name,
                                 "node #%d (%s -> %s)" % (node.index, ", ".join(node.inputs),
                                                          ", ".join(node.outputs)),
                                 self.supported)
