"""Fold BatchNorm / Scale / Bias layers into the layer before them, for deployment.

    python -m caffe.tools.merge_bn in.prototxt [in.caffemodel] out.prototxt [out.caffemodel]
    python -m caffe.tools.merge_scale ...   (lone Scale / Bias layers)
    python -m caffe.tools.split_scale ...   (Scale with bias -> Scale + Bias)

The net is taken in its TEST phase (layers that only exist in TRAIN are
dropped: the result is a deploy net).  A BatchNorm whose input comes only
from a Convolution / Deconvolution / InnerProduct is folded into it, together
with the Scale and Bias layers that follow; a BatchNorm that has nothing to
fold into (after a Concat, an Eltwise, an input, a blob read by several
layers) becomes one Scale layer with a bias.  With weights the result is
checked with ``caffe.Net`` on random inputs; without weights (prototxt-only)
the check runs on random weights, so the rewritten structure is verified too.
"""
import os
import sys
from collections import OrderedDict, defaultdict

import numpy as np

from .. import folding, protoio
from ..weights import is_hdf5, proto_array, proto_shape, source_layers

__all__ = ["merge_bn", "merge_scale", "split_scale", "load_weights", "save_weights",
           "verify", "MergeResult"]

DEFAULT_RTOL = 1e-4


class MergeResult:
    """What a fold produced: the new net, its weights (or None), and notes."""

    def __init__(self, param, weights, notes):
        self.param = param
        self.weights = weights
        self.notes = notes
        self.rows = None           # verification rows, once verified

    def __repr__(self):
        return "<MergeResult %d layers, %d notes>" % (len(self.param.layer), len(self.notes))


# ---------------------------------------------------------------------------
# weights files <-> {layer name: [arrays]}
# ---------------------------------------------------------------------------
def load_weights(path):
    """``{layer name: [float32 arrays]}`` from a binary caffemodel or Caffe HDF5 file."""
    protoio.check_file(path, "weights")
    out = OrderedDict()
    if is_hdf5(path):
        import h5py
        with h5py.File(path, "r") as f:
            if "data" not in f:
                raise protoio.CaffeFileError("%s: not a Caffe HDF5 weights file" % path)
            for name, group in f["data"].items():
                keys = sorted(group.keys(), key=int)
                out[name] = [np.asarray(group[k], dtype=np.float32) for k in keys]
        return out
    param = protoio.read_binary(path, protoio.pb2().NetParameter())
    for name, blobs in source_layers(param):
        out[name] = [proto_array(b).reshape(proto_shape(b)) for b in blobs]
    return out


def save_weights(param, weights, path):
    """Write ``param``'s layers with ``weights`` as a binary caffemodel (atomically)."""
    out = protoio.pb2().NetParameter()
    out.CopyFrom(param)
    for lp in out.layer:
        del lp.blobs[:]
        for arr in weights.get(lp.name, []):
            arr = np.asarray(arr, dtype=np.float32)
            bp = lp.blobs.add()
            bp.shape.dim.extend(arr.shape)
            bp.data.extend(arr.reshape(-1).tolist())
    _atomic(path, lambda tmp: protoio.write_binary(tmp, out))


def _atomic(path, write):
    tmp = "%s.tmp%d" % (path, os.getpid())
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _test_net(net_param):
    """The TEST-phase layers of ``net_param`` (a path, text or message), upgraded."""
    from ..net import filter_net
    param = protoio.read_net_param(net_param)
    param.state.phase = 1
    source = net_param if isinstance(net_param, str) else "<NetParameter>"
    out = filter_net(param, source)
    for lp in out.layer:
        del lp.include[:]
        del lp.exclude[:]
        del lp.blobs[:]
    return out


# ---------------------------------------------------------------------------
# the graph walk shared by the three rewrites
# ---------------------------------------------------------------------------
def _producers(layers):
    """``(producer, readers)``: producer[(i, j)] is the (layer, top) whose output
    bottom j of layer i reads (None for a net input); readers[(p, t)] lists
    the layers that read that particular version of the blob."""
    last = {}
    producer = {}
    readers = defaultdict(list)
    for i, lp in enumerate(layers):
        for j, name in enumerate(lp.bottom):
            src = last.get(name)
            producer[(i, j)] = src
            if src is not None:
                readers[src].append(i)
        for j, name in enumerate(lp.top):
            last[name] = (i, j)
    return producer, readers


def _absorbs(target):
    """Whether ``target`` can take in a following affine map."""
    if target.type == "Scale":
        return folding.affine_reason(target) is None and not any(p.name for p in target.param)
    return folding.target_reason(target) is None


def _fold(param, weights, anchors, fallback, source):
    layers = [lp for lp in param.layer]
    weights = None if weights is None else OrderedDict(
        (k, list(v)) for k, v in weights.items())
    notes = []
    refused = set()
    absorbed = set()            # layers that took in an anchor: their followers fold too
    changed = True
    while changed:
        changed = False
        producer, readers = _producers(layers)
        for i, lp in enumerate(layers):
            if lp.type not in folding.AFFINE_TYPES:
                continue
            src = producer.get((i, 0)) if len(lp.bottom) == 1 else None
            target = layers[src[0]] if src is not None else None
            anchor = lp.type in anchors
            if not anchor and (target is None or target.name not in absorbed):
                continue
            reason = folding.affine_reason(lp)
            if reason:
                if lp.name not in refused:
                    refused.add(lp.name)
                    notes.append("kept %s %r: %s" % (lp.type, lp.name, reason))
                continue
            if weights is not None and lp.name not in weights:
                raise folding.FoldError("%s: layer %r (%s) has no weights in the weights file"
                                        % (source, lp.name, lp.type))
            if (target is not None and src[1] == 0 and len(target.top) == 1
                    and readers[src] == [i] and len(lp.top) == 1 and _absorbs(target)):
                if weights is not None:
                    if target.name not in weights:
                        raise folding.FoldError("%s: layer %r (%s) has no weights in the "
                                                "weights file" % (source, target.name,
                                                                  target.type))
                    old = weights[target.name]
                    new = folding.fold_layer_weights(
                        target, old, folding.affine_of(lp, weights[lp.name]))
                    if len(new) > len(old):
                        folding.set_bias_term(target)
                    weights[target.name] = new
                    del weights[lp.name]
                elif ((lp.type != "Scale" or lp.scale_param.bias_term)
                      and not folding.bias_term(target)):
                    folding.set_bias_term(target)     # structure only: the map has an offset
                target.top[0] = lp.top[0]
                notes.append("folded %s %r into %s %r" % (lp.type, lp.name, target.type,
                                                          target.name))
                absorbed.add(target.name)
                del layers[i]
                changed = True
                break
            if lp.type == "BatchNorm" and fallback:
                scale = protoio.pb2().LayerParameter()
                scale.name = lp.name
                scale.type = "Scale"
                scale.bottom.extend(lp.bottom)
                scale.top.extend(lp.top)
                scale.scale_param.bias_term = True
                if weights is not None:
                    a, b = folding.affine_of(lp, weights[lp.name])
                    weights[lp.name] = [np.asarray(a, np.float32), np.asarray(b, np.float32)]
                why = ("its input is not the only use of a Convolution/Deconvolution/"
                       "InnerProduct output" if target is None or _absorbs(target)
                       else "%s %r cannot absorb it" % (target.type, target.name))
                notes.append("replaced BatchNorm %r by a Scale layer (%s)" % (lp.name, why))
                absorbed.add(lp.name)
                layers[i] = scale
                changed = True
                break
    out = protoio.pb2().NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    for lp in layers:
        out.layer.add().CopyFrom(lp)
    return MergeResult(out, weights, notes)


def merge_bn(net_param, weights=None, source=None):
    """Fold BatchNorm (+ the Scale / Bias after it) into the preceding
    Convolution / Deconvolution / InnerProduct; a BatchNorm with nothing to
    fold into becomes a Scale layer.  ``weights``: ``{layer: [arrays]}`` or a
    path (None: rewrite the structure only)."""
    return _run(net_param, weights, ("BatchNorm",), True, source)


def merge_scale(net_param, weights=None, source=None):
    """Fold lone Scale and Bias layers into the preceding Convolution /
    Deconvolution / InnerProduct / Scale."""
    return _run(net_param, weights, ("Scale", "Bias"), False, source)


def _run(net_param, weights, anchors, fallback, source):
    source = source or (net_param if isinstance(net_param, str) else "<NetParameter>")
    param = _test_net(net_param)
    if isinstance(weights, str):
        weights = load_weights(weights)
    return _fold(param, weights, anchors, fallback, source)


def split_scale(net_param, weights=None, source=None):
    """Split every Scale layer with ``bias_term`` into a Scale without bias and
    an in-place Bias layer (named ``<scale>_bias``) after it."""
    param = _test_net(net_param)
    if isinstance(weights, str):
        weights = load_weights(weights)
    weights = None if weights is None else OrderedDict(
        (k, list(v)) for k, v in weights.items())
    names = set(lp.name for lp in param.layer)
    out = protoio.pb2().NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    notes = []
    for lp in param.layer:
        new = out.layer.add()
        new.CopyFrom(lp)
        if lp.type != "Scale" or not lp.scale_param.bias_term:
            continue
        if len(lp.bottom) != 1:
            notes.append("kept Scale %r: its factors come from a bottom blob" % lp.name)
            continue
        new.scale_param.bias_term = False
        new.scale_param.ClearField("bias_filler")
        del new.param[1:]
        bias = out.layer.add()
        bias.name = lp.name + "_bias"
        while bias.name in names:
            bias.name += "_"
        names.add(bias.name)
        bias.type = "Bias"
        bias.bottom.append(lp.top[0])
        bias.top.append(lp.top[0])
        bias.bias_param.axis = lp.scale_param.axis
        bias.bias_param.num_axes = lp.scale_param.num_axes
        if len(lp.param) > 1:
            bias.param.add().CopyFrom(lp.param[1])
        if weights is not None:
            if lp.name not in weights:
                raise folding.FoldError("%s: layer %r (Scale) has no weights in the weights "
                                        "file" % (source or "<net>", lp.name))
            blobs = weights[lp.name]
            weights[lp.name] = [blobs[0]]
            weights[bias.name] = [blobs[1]]
        notes.append("split Scale %r into Scale + Bias %r" % (lp.name, bias.name))
    return MergeResult(out, weights, notes)


# ---------------------------------------------------------------------------
# verification with caffe.Net
# ---------------------------------------------------------------------------
def _net_with(param, weights):
    from .. import _common
    from ..net import Net, plain_nets
    with plain_nets():              # verification reads the merged blobs
        net = Net(param, _common.TEST)
    for name, arrays in weights.items():
        if name not in net.params:
            continue
        for blob, arr in zip(net.params[name], arrays):
            blob.data[...] = np.asarray(arr, dtype=np.float32).reshape(blob.data.shape)
    return net


def random_weights(param, seed=0):
    """Plausible random weights for every layer of ``param``: BatchNorm with
    positive variances and a scale factor of 1, Scale factors near 1."""
    from .. import _common
    from ..net import Net, plain_nets
    with plain_nets():
        net = Net(param, _common.TEST)
    rng = np.random.RandomState(seed)
    types = {lp.name: lp.type for lp in param.layer}
    out = OrderedDict()
    for name, blobs in net.params.items():
        arrays = []
        for j, blob in enumerate(blobs):
            shape = blob.data.shape
            if types.get(name) == "BatchNorm":
                arr = [rng.randn(*shape) * 0.5, rng.uniform(0.5, 2.0, shape), np.ones(shape)][j]
            elif types.get(name) == "Scale" and j == 0:
                arr = rng.uniform(0.5, 1.5, shape)
            else:
                arr = rng.randn(*shape) * (0.1 if j == 0 else 0.5)
            arrays.append(np.asarray(arr, dtype=np.float32))
        out[name] = arrays
    return out


def verify(orig_param, orig_weights, new_param, new_weights, seed=0):
    """Verification rows (``caffe.verification``) of the new net's outputs
    against the original's, on the same random inputs."""
    from ..verification import compare_named
    a = _net_with(orig_param, orig_weights)
    b = _net_with(new_param, new_weights)
    rng = np.random.RandomState(seed)
    feed = {name: rng.randn(*a.blobs[name].data.shape).astype(np.float32) for name in a.inputs}
    a.forward(**feed)
    b.forward(**{k: v for k, v in feed.items() if k in b.inputs})
    # every blob both nets name holds the same final value (in-place chains
    # included); the outputs are always among them
    names = [n for n in a.blobs if n in b.blobs and n not in a.inputs]
    names += [n for n in a.outputs if n not in names]
    return compare_named({n: a.blobs[n].data for n in names},
                         {n: b.blobs[n].data for n in names if n in b.blobs})


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------
_TOOLS = {"merge_bn": merge_bn, "merge_scale": merge_scale, "split_scale": split_scale}


def main(argv=None, tool="merge_bn"):
    from ..verification import format_table, verdict, worst
    argv = sys.argv[1:] if argv is None else list(argv)
    usage = ("usage: python -m caffe.tools.%s in.prototxt [in.caffemodel] out.prototxt "
             "[out.caffemodel]" % tool)
    if len(argv) not in (2, 4) or any(a in ("-h", "--help", "-help") for a in argv):
        sys.stderr.write(usage + "\n")
        return 0 if argv and argv[0] in ("-h", "--help", "-help") else 2
    if len(argv) == 4:
        in_proto, in_model, out_proto, out_model = argv
    else:
        (in_proto, out_proto), in_model, out_model = argv, None, None
    if in_model and os.path.abspath(out_model) == os.path.abspath(in_model):
        sys.stderr.write("%s: refusing to overwrite the input weights %s\n" % (tool, in_model))
        return 2
    try:
        orig = _test_net(in_proto)
        weights = load_weights(in_model) if in_model else None
        checked_weights = weights
        if weights is None:
            try:
                checked_weights = random_weights(orig)
            except Exception as exc:        # data layers without their sources, ...
                sys.stderr.write("%s: cannot build the net to verify it (%s); writing the "
                                 "rewritten prototxt unverified\n" % (tool, exc))
        result = _TOOLS[tool](orig, checked_weights, source=in_proto)
        for note in result.notes:
            sys.stderr.write("%s: %s\n" % (tool, note))
        if checked_weights is not None:
            try:
                rows = verify(orig, checked_weights, result.param, result.weights)
            except Exception as exc:
                rows = None
                sys.stderr.write("%s: cannot verify with caffe.Net (%s)\n" % (tool, exc))
            if rows is not None:
                sys.stderr.write(format_table(rows, "verification on random inputs%s:" % (
                    "" if weights is not None else " and random weights")) + "\n")
                w = worst(rows)
                sys.stderr.write("%s: max rel diff %.3g\n" % (tool, w["max_rel"]))
                if not verdict(rows, DEFAULT_RTOL):
                    sys.stderr.write("%s: FAILED: outputs differ by more than %g relative; "
                                     "nothing written\n" % (tool, DEFAULT_RTOL))
                    return 1
    except (folding.FoldError, protoio.CaffeFileError, ValueError, OSError) as exc:
        sys.stderr.write("%s: %s\n" % (tool, exc))
        return 1
    _atomic(out_proto, lambda tmp: protoio.write_text(tmp, result.param))
    if out_model:
        save_weights(result.param, result.weights, out_model)
    sys.stderr.write("%s: wrote %s%s\n" % (tool, out_proto,
                                           (" and " + out_model) if out_model else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
