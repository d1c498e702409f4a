"""NetBuilder: the Caffe net being written, shared by every front end.

Layers keep their weights as numpy arrays until :meth:`NetBuilder.write`, so
passes such as folding BatchNorm into a convolution or dropping layers whose
tops nobody reads can still change them.
"""
import os

import numpy as np

from ..protoio import schema as pb2
from ..protoio import write_binary, write_text
from . import targets
from .errors import ExportError


class NetBuilder:
    def __init__(self, name="exported", target="bvlc"):
        self.target = targets.check_target(target)
        self.name = name
        self.layers = []          # [(LayerParameter, [np.ndarray, ...])]
        self.outputs = []         # blob names that are net outputs
        self._layer_names = set()

    # -- layers -------------------------------------------------------------
    def unique_name(self, base):
        name = base or "layer"
        k = 1
        while name in self._layer_names:
            name = "%s_%d" % (base, k)
            k += 1
        self._layer_names.add(name)
        return name

    def add(self, layer_type, name, bottoms, tops, blobs=(), why=""):
        """Append a layer (name made unique) and return its LayerParameter to fill in."""
        if not targets.allowed(self.target, layer_type):
            raise TargetError(layer_type, self.target, why)
        layer = pb2().LayerParameter()
        layer.name = self.unique_name(name)
        layer.type = layer_type
        layer.bottom.extend(bottoms)
        layer.top.extend(tops)
        self.layers.append((layer, [np.asarray(b, dtype=np.float32) for b in blobs]))
        return layer

    def blobs_of(self, layer):
        for lp, arrays in self.layers:
            if lp is layer:
                return arrays
        raise KeyError(layer.name)

    def producer(self, blob):
        """The last layer writing ``blob`` (or None)."""
        for lp, _ in reversed(self.layers):
            if blob in lp.top:
                return lp
        return None

    def consumers(self, blob):
        return [lp for lp, _ in self.layers if blob in lp.bottom]

    def rename_blob(self, old, new):
        for lp, _ in self.layers:
            for field in (lp.bottom, lp.top):
                for i, b in enumerate(field):
                    if b == old:
                        field[i] = new
        self.outputs = [new if b == old else b for b in self.outputs]

    def prune(self, keep_types=("Input", "Silence")):
        """Drop layers none of whose tops is read or is a net output (e.g. a Flatten
        folded into InnerProduct), repeating until nothing changes."""
        changed = True
        while changed:
            changed = False
            read = set(self.outputs)
            for lp, _ in self.layers:
                read.update(lp.bottom)
            kept = []
            for lp, arrays in self.layers:
                if lp.type not in keep_types and not any(t in read for t in lp.top):
                    changed = True
                    self._layer_names.discard(lp.name)
                    continue
                kept.append((lp, arrays))
            self.layers = kept

    # -- output -------------------------------------------------------------
    def net_param(self, with_blobs):
        net = pb2().NetParameter()
        net.name = self.name
        for lp, arrays in self.layers:
            layer = net.layer.add()
            layer.CopyFrom(lp)
            if with_blobs:
                for arr in arrays:
                    blob = layer.blobs.add()
                    blob.shape.dim.extend(arr.shape)
                    blob.data.extend(arr.astype(np.float32).ravel().tolist())
        return net

    def write(self, prototxt, caffemodel):
        """Write the deploy prototxt (no weights) and the caffemodel (binary, with weights),
        each atomically (an error never leaves a half-written file over a user's old one)."""
        for path in (prototxt, caffemodel):
            if path:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_text(prototxt, self.net_param(with_blobs=False))
        if caffemodel:
            write_binary(caffemodel, self.net_param(with_blobs=True))


class TargetError(ExportError):
    """A layer type the chosen target does not have."""

    def __init__(self, layer_type, target, why=""):
        self.layer_type = layer_type
        self.target = target
        hint = {"Permute": "target='ssd' or 'any'"}.get(layer_type, "target='any'")
        super().__init__("layer type %s is not part of target %r%s; it needs %s" % (
            layer_type, target, (" (" + why + ")") if why else "", hint))
