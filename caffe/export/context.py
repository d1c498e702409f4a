"""The state a PyTorch (ATen) mapper works with while one node is being mapped.

A mapper gets ``(ctx, node)`` and asks the context for what it needs: the Caffe
blob holding an input (:meth:`bottom`), a constant's value (:meth:`const`),
shapes, names for its layers and tops, and :meth:`refuse` to reject the node
with the op, module path and source line in the message.
"""
import numpy as np
import torch

from . import torch_graph
from .errors import UnsupportedOpError


class PendingPad:
    """A zero ``F.pad`` waiting to be folded into the next convolution or pooling."""

    def __init__(self, source, pads, value):
        self.source = source    # the padded node
        self.pads = pads        # [(before, after)] per spatial axis, last axis last
        self.value = value


class AtenContext:
    def __init__(self, captured, net, supported, merge_bn=False):
        self.g = captured
        self.net = net
        self.supported = supported
        self.merge_bn = merge_bn
        self.blobs = {}         # node -> blob name (or list of names for tuple outputs)
        self.pending = {}       # node -> PendingPad
        self.dynamic = set(captured.inputs)   # nodes depending on a user input
        self.checks = {}        # blob -> node whose value the blob must hold after forward
        self.node = None
        self.input_blobs = set()
        self._names = {}

    # -- values and shapes --------------------------------------------------
    def value(self, x):
        return self.g.values[x]

    def shape(self, x):
        return tuple(self.g.values[x].shape)

    def is_tensor(self, x):
        return isinstance(x, torch.fx.Node) and isinstance(self.g.values.get(x), torch.Tensor)

    def is_const(self, x):
        """A tensor that does not depend on any model input (weights, folded constants)."""
        return isinstance(x, torch.fx.Node) and x not in self.dynamic and self.is_tensor(x)

    def const(self, x):
        """``x`` as a float32 numpy array (a node that is constant, or a Python number)."""
        if isinstance(x, torch.fx.Node):
            if not self.is_const(x):
                self.refuse("expected a constant here, got a tensor computed from the input")
            return self.g.values[x].detach().to(torch.float32).cpu().numpy()
        return np.asarray(x, dtype=np.float32)

    # -- blobs and names ----------------------------------------------------
    def bottom(self, x):
        """The Caffe blob holding tensor node ``x``."""
        if x in self.pending:
            self.refuse("a padding (%s) can only be folded into the convolution or pooling "
                        "that reads it" % x.name)
        if not isinstance(x, torch.fx.Node):
            self.refuse("expected a tensor argument, got %r" % (x,))
        if self.is_const(x):
            self.refuse("a constant tensor (%s) is used where Caffe needs a computed blob; "
                        "only weights of conv/linear/norm layers and per-channel constants "
                        "can be stored" % x.name)
        blob = self.blobs.get(x)
        if blob is None or isinstance(blob, list):
            self.refuse("input %s has no single Caffe blob" % x.name)
        return blob

    def top(self, suffix=""):
        """Blob name for the current node's output (a helper blob with ``suffix``)."""
        return self.node.name + ("/" + suffix if suffix else "")

    def name(self, suffix=""):
        """Layer name from the module path: ``layer1.0.conv1`` for the module's op,
        ``layer1.0.relu`` for ops written in a forward(); ``suffix`` for helper layers."""
        node = self.node
        if node not in self._names:
            path = torch_graph.module_path(node)
            op = _op_short(node)
            if path and torch_graph.is_leaf_module(node):
                base = path
            else:
                base = (path + "." + op) if path else op
            self._names[node] = base
        base = self._names[node]
        return base + ("/" + suffix if suffix else "")

    def produce(self, blob, node=None, check=True):
        """Record that ``blob`` holds the value of ``node`` (default: the current node)."""
        node = node or self.node
        self.blobs[node] = blob
        self.dynamic.add(node)
        if check:
            self.checks[blob] = node
        return blob

    def alias(self, src):
        """The current node is the same tensor as ``src`` (dropout in eval, contiguous...)."""
        self.blobs[self.node] = self.bottom(src)
        self.dynamic.add(self.node)

    def inplace_ok(self, x):
        """Caffe writes in place (top == bottom) only when nothing else reads ``x``."""
        blob = self.blobs.get(x)
        if blob is None or blob in self.input_blobs or x in self.g.outputs:
            return False
        if len(x.users) != 1:
            return False
        # other nodes on this blob (overwritten in place earlier) must all be read already
        sharing = [n for n, b in self.blobs.items() if b == blob and n is not x]
        return all(u in self.blobs or u is self.node for n in sharing for u in n.users)

    def refuse(self, reason, node=None):
        node = node or self.node
        raise UnsupportedOpError(_op_name(node), reason, torch_graph.module_path(node),
                                 torch_graph.source_line(node), self.supported)

    # -- arguments ------------------------------------------------------------
    def args(self, node=None):
        """The node's arguments by schema name, defaults filled in."""
        node = node or self.node
        schema = getattr(node.target, "_schema", None)
        if schema is None:
            return {"args": node.args, **node.kwargs}
        out = {}
        for i, arg in enumerate(schema.arguments):
            if i < len(node.args):
                out[arg.name] = node.args[i]
            elif arg.name in node.kwargs:
                out[arg.name] = node.kwargs[arg.name]
            elif arg.has_default_value():
                out[arg.name] = arg.default_value
            else:
                out[arg.name] = None
        # ATen names the main operand 'self' or 'input' depending on the op
        if "self" in out and "input" not in out:
            out["input"] = out["self"]
        elif "input" in out and "self" not in out:
            out["self"] = out["input"]
        return out


def _op_name(node):
    target = node.target
    if hasattr(target, "_schema"):
        return "aten." + str(target.name()).split("::")[-1]
    return getattr(target, "__name__", str(target))


def _op_short(node):
    return _op_name(node).split(".")[1] if _op_name(node).startswith("aten.") \
        else _op_name(node)
