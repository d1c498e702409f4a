"""Per-blob comparison of a Caffe net with its PyTorch or ONNX counterpart.

    python -m caffe.compare deploy.prototxt weights.caffemodel --pytorch model.py
    python -m caffe.compare deploy.prototxt weights.caffemodel --onnx model.onnx
        [--input file.npy | --input blob=file.npy ...] [--seed N] [--rtol R]

Both sides get the same input (random with a seed, or the given arrays); one
line per blob shows max abs diff, max rel diff and cosine similarity, then a
verdict; the exit code is 0 when every compared blob is within tolerance.

Blobs a layer overwrites in place (``conv1`` through an in-place ReLU) are
compared at each layer that writes them: ``conv1`` is the convolution's value,
``conv1@relu1`` the value after the ReLU -- comparing only the final ``conv1``
against a PyTorch model's convolution output is the classic false alarm.

From Python, ``compare(net, module, inputs, name_map=None)``: ``module`` is a
``caffe.pytorch`` module, a generated Model, or your own nn.Module, with
``name_map = {caffe blob (or blob@layer): submodule path}`` naming the
submodules whose outputs stand for Caffe blobs (captured with forward hooks).
"""
import argparse
import importlib.util
import os
import sys
from collections import OrderedDict

import numpy as np
import torch

from .verification import compare_named, format_table, verdict, worst

DEFAULT_RTOL = 1e-4


class Comparison:
    """Rows (one :class:`caffe.verification.BlobDiff` per blob) and the verdict."""

    def __init__(self, rows, rtol, atol):
        self.rows = rows
        self.rtol = rtol
        self.atol = atol
        self.ok = bool(rows) and verdict(rows, rtol, atol)

    def table(self, title=""):
        summary = worst(self.rows)
        lines = [format_table(self.rows, title),
                 "%s: %d blob(s) compared, worst max rel %.3g (rtol %g)%s"
                 % ("PASS" if self.ok else "FAIL", len(self.rows), summary["max_rel"],
                    self.rtol, "; failed: " + ", ".join(summary["failed"])
                    if summary["failed"] else "")]
        return "\n".join(lines)


def _array(value):
    if hasattr(value, "detach"):
        return value.detach().cpu().float().numpy().copy()
    return np.array(value, dtype=np.float32, copy=True)


def reference_run(net, inputs):
    """Run ``net`` on ``inputs``; values of every layer's tops right after it ran.

    Returns ``(steps, final)``: ``steps`` is ``[(layer, type, top, key, array)]``
    where ``key`` is the blob name for the layer that first writes it and
    ``blob@layer`` for later in-place writers; ``final`` the blobs after forward.
    """
    for name, value in inputs.items():
        blob = net.blobs[name]
        arr = _array(value)
        if tuple(blob.shape) != arr.shape:
            blob.reshape(*arr.shape)
    if inputs:
        net.reshape()
    for name, value in inputs.items():
        net.blobs[name].data[...] = _array(value)
    names = list(net._layer_names)
    tops = list(net.top_names.values())
    types = [l.type for l in net.layers]
    steps = []
    written = set()

    def snapshot(i):
        for t in tops[i]:
            key = t if t not in written else "%s@%s" % (t, names[i])
            written.add(t)
            steps.append((names[i], types[i], t, key, net.blobs[t].data.copy()))

    net.after_forward(snapshot)
    try:
        net.forward()
    finally:
        net._after_forward.remove(snapshot)
    final = OrderedDict((n, b.data.copy()) for n, b in net.blobs.items())
    return steps, final


def _hook_outputs(module, paths):
    """Forward hooks capturing the first output of each submodule path."""
    captured = {}
    handles = []
    for key, path in paths.items():
        try:
            sub = module.get_submodule(path)
        except AttributeError:
            raise KeyError("name_map: %r names no submodule of %s (for blob %r)"
                           % (path, type(module).__name__, key)) from None

        def hook(mod, args, out, key=key):
            if isinstance(out, (list, tuple)):
                out = out[0]
            captured[key] = out
        handles.append(sub.register_forward_hook(hook))
    return captured, handles


def compare(net, module, inputs, name_map=None, rtol=DEFAULT_RTOL, atol=0.0):
    """Compare ``net`` (the reference) with ``module`` on the same ``inputs``.

    ``inputs``: ``{input blob: array}`` (or a sequence in ``net.inputs`` order).
    Rows cover the outputs ``module`` returns (a dict keyed by blob name, or a
    tensor/tuple in ``net.outputs`` order), every layer of a ``caffe.pytorch``
    module, the submodules of a generated Model named after Caffe layers, and
    the ``name_map`` entries.  Returns a :class:`Comparison`.
    """
    if not isinstance(inputs, dict):
        inputs = OrderedDict(zip(net.inputs, inputs))
    steps, final = reference_run(net, inputs)
    first_key = {}
    by_key = OrderedDict()
    for lname, _ltype, _top, key, arr in steps:
        by_key[key] = arr
        first_key.setdefault(lname, key)
    ref = OrderedDict()
    cand = OrderedDict()
    handles = []
    layer_hooks = []
    try:
        from .pytorch.module import CaffeModule
        if isinstance(module, CaffeModule):
            layer_hooks = _hook_caffe_module(module, steps, cand, handles)
        else:
            layer_hooks = _hook_by_layer_name(module, steps, cand, handles)
        mapped = {}
        if name_map:
            for key, path in name_map.items():
                blob = key.split("@")[0]
                if key not in by_key and blob not in final:
                    raise KeyError("name_map: %r is not a blob of the net" % key)
                mapped[key] = path
            captured, hs = _hook_outputs(module, mapped)
            handles += hs
        tensors = {k: torch.as_tensor(_array(v)) for k, v in inputs.items()}
        with torch.no_grad():
            out = module(**tensors) if _takes_names(module) else \
                module(*[tensors[n] for n in net.inputs])
    finally:
        for h in handles:
            h.remove()
    if name_map:
        for key in mapped:
            if key in captured:
                ref[key] = by_key.get(key, final.get(key))
                cand[key] = captured[key]
    for key in layer_hooks:
        if key in cand and key not in ref:
            ref[key] = by_key[key]
    outputs = _outputs_dict(out, net.outputs)
    for name, value in outputs.items():
        if name in final:
            ref["%s (output)" % name] = final[name]
            cand["%s (output)" % name] = value
    cand = {k: v for k, v in cand.items() if k in ref}
    rows = compare_named(ref, cand)
    return Comparison(rows, rtol, atol)


def _takes_names(module):
    return hasattr(module, "inputs") and callable(module)


def _outputs_dict(out, names):
    if isinstance(out, dict):
        return out
    if isinstance(out, torch.Tensor):
        out = [out]
    return OrderedDict(zip(names, out))


def _hook_caffe_module(module, steps, cand, handles):
    """Capture every top of every layer child of a caffe.pytorch module."""
    keys_of = {}
    for lname, _ltype, _top, key, _arr in steps:
        keys_of.setdefault(lname, []).append(key)
    wanted = []
    for lname, keys in keys_of.items():
        if lname not in module.layer_children:
            continue
        child = module.layer(lname)

        def hook(mod, args, out, keys=keys):
            for k, v in zip(keys, out):
                cand[k] = v
        handles.append(child.register_forward_hook(hook))
        wanted += keys
    return wanted


def _hook_by_layer_name(module, steps, cand, handles):
    """Generated Models (and look-alikes): a child named after a Caffe layer that
    is called produces that layer's first top."""
    from .pytorch.naming import python_identifier
    wanted = []
    children = dict(module.named_children())
    seen = set()
    for lname, _ltype, _top, key, _arr in steps:
        if lname in seen:
            continue
        seen.add(lname)
        attr = python_identifier(lname, set())
        child = children.get(attr)
        if child is None:
            continue

        def hook(mod, args, out, key=key):
            if isinstance(out, (list, tuple)):
                out = out[0]
            if isinstance(out, torch.Tensor):
                cand[key] = out
        handles.append(child.register_forward_hook(hook))
        wanted.append(key)
    return wanted


def compare_onnx(net, path, inputs, rtol=DEFAULT_RTOL, atol=0.0):
    """Compare ``net`` with an ONNX file in onnxruntime (outputs only)."""
    from .pytorch.onnx_export import run_onnx
    if not isinstance(inputs, dict):
        inputs = OrderedDict(zip(net.inputs, inputs))
    _, final = reference_run(net, inputs)
    got = run_onnx(path, {k: _array(v) for k, v in inputs.items()})
    ref = OrderedDict()
    cand = OrderedDict()
    for name in net.outputs:
        ref["%s (output)" % name] = final[name]
        if name in got:
            cand["%s (output)" % name] = got[name]
    return Comparison(compare_named(ref, cand), rtol, atol)


def load_generated(path):
    """Import a generated model.py and return its Model with weights (``load()``)."""
    spec = importlib.util.spec_from_file_location(
        "caffe_generated_%s" % os.path.splitext(os.path.basename(path))[0], path)
    if spec is None:
        raise ValueError("%s: not a Python file" % path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if hasattr(mod, "load"):
        return mod.load()
    if hasattr(mod, "Model"):
        return mod.Model()
    raise ValueError("%s: defines neither load() nor Model" % path)


def random_inputs(net, seed):
    """Uniform [0, 1) arrays of the net's input shapes (valid as labels, too)."""
    rng = np.random.RandomState(seed)
    return OrderedDict((n, rng.uniform(0, 1, net.blobs[n].shape).astype(np.float32))
                       for n in net.inputs)


def _read_inputs(net, specs, seed):
    inputs = random_inputs(net, seed)
    positional = [s for s in specs if "=" not in s]
    named = [s.split("=", 1) for s in specs if "=" in s]
    if len(positional) > len(net.inputs):
        raise ValueError("%d --input files for %d net inputs (%s)"
                         % (len(positional), len(net.inputs), ", ".join(net.inputs)))
    for name, path in list(zip(net.inputs, positional)) + named:
        if name not in inputs:
            raise ValueError("--input %s=...: the net has no input %r (inputs: %s)"
                             % (name, name, ", ".join(net.inputs)))
        inputs[name] = np.load(path).astype(np.float32)
    return inputs


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m caffe.compare",
                                description="Compare a Caffe net with PyTorch or ONNX, "
                                            "blob by blob.")
    p.add_argument("prototxt")
    p.add_argument("weights", nargs="?")
    side = p.add_mutually_exclusive_group(required=True)
    side.add_argument("--pytorch", help="a generated model.py (with its .pth next to it)")
    side.add_argument("--onnx", help="an ONNX file, run in onnxruntime")
    side.add_argument("--module", action="store_true",
                      help="the caffe.pytorch module built from the same files")
    p.add_argument("--input", action="append", default=[],
                   help="file.npy (in net.inputs order) or blob=file.npy; default random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL)
    p.add_argument("--atol", type=float, default=0.0)
    p.add_argument("--phase", default="TEST", choices=["TEST", "TRAIN", "test", "train"])
    args = p.parse_args(argv)
    import caffe

    from .net import plain_nets
    phase = caffe.TRAIN if args.phase.upper() == "TRAIN" else caffe.TEST
    try:
        with plain_nets():          # every blob is compared
            net = caffe.Net(args.prototxt, phase, weights=args.weights)
        inputs = _read_inputs(net, args.input, args.seed)
        if args.onnx:
            result = compare_onnx(net, args.onnx, inputs, args.rtol, args.atol)
            title = "caffe.Net vs %s (onnxruntime)" % args.onnx
        else:
            if args.pytorch:
                module = load_generated(args.pytorch)
                title = "caffe.Net vs %s" % args.pytorch
            else:
                from . import pytorch
                module = pytorch.load(args.prototxt, args.weights, phase=phase)
                title = "caffe.Net vs caffe.pytorch module"
            module.train(phase == caffe.TRAIN)
            result = compare(net, module, inputs, rtol=args.rtol, atol=args.atol)
    except (ValueError, OSError, KeyError, ImportError) as exc:
        print("compare: error: %s" % exc, file=sys.stderr)
        return 2
    print(result.table(title))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
