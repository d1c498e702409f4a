"""Golden cases run through ``caffe.pytorch`` modules (shared by the module,
code generation and ONNX tests): build, feed the golden inputs, compare the
outputs and the autograd gradients with the golden diffs."""
import json
import os

import numpy as np
import torch
from golden_cases import GOLDEN, GRAD_TOL, LAYER_FWD, NET_TOL, case_names, chdir

import caffe
import caffe.pytorch

NET_CASES = [("nets", n) for n in case_names("nets")]
LAYER_CASES = [("layers", n) for n in case_names("layers")] + \
    [("ssd", n) for n in case_names("ssd")]


def case(folder, name):
    """(meta, ref arrays, phase, folder path) of a golden case."""
    d = os.path.join(GOLDEN, folder)
    meta = json.load(open(os.path.join(d, name + ".json")))
    ref = np.load(os.path.join(d, name + ".npz"))
    phase = caffe.TRAIN if meta.get("phase", "TRAIN") == "TRAIN" else caffe.TEST
    return meta, ref, phase, d


def load_case(folder, name, **kwargs):
    meta, ref, phase, d = case(folder, name)
    with chdir(d):
        module = caffe.pytorch.load(meta.get("source", name + ".prototxt"),
                                    name + ".caffemodel", phase=phase,
                                    stages=meta.get("stages") or None, **kwargs)
    return module, meta, ref


def case_inputs(module, ref):
    """Golden inputs by module input name (a layer case's bK may be fed through rawK)."""
    feed = {}
    for key in ref.files:
        if key.startswith("in/"):
            bname = key[3:]
            raw = "raw" + bname[1:]
            feed[raw if raw in module.inputs else bname] = torch.tensor(ref[key])
    return feed


def close(actual, expected, what, tol):
    actual = actual.detach().cpu().numpy() if hasattr(actual, "detach") else np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.size == expected.size, "%s: shape %s, expected %s" % (
        what, actual.shape, expected.shape)
    np.testing.assert_allclose(actual.reshape(expected.shape), expected, err_msg=what, **tol)


def check_forward(outputs, ref, what, tol):
    checked = 0
    for name, value in outputs.items():
        if "out/" + name in ref.files:
            close(value, ref["out/" + name], "%s: out/%s" % (what, name), tol)
            checked += 1
    return checked


def caffe_ran_backward(folder, name, module):
    """Caffe prunes backward where no loss depends on a layer, unless force_backward."""
    from caffe import protoio
    param = protoio.read_net_param(os.path.join(GOLDEN, folder, name + ".prototxt"))
    return bool(param.force_backward or module.loss_weights)


def check_case(folder, name, layer_case):
    """Forward and backward of one golden case through the module."""
    module, meta, ref = load_case(folder, name)
    fwd_tol = LAYER_FWD if layer_case else NET_TOL
    feed = case_inputs(module, ref)
    inputs = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in feed.items()}
    outputs = module(**{k: inputs[k] for k in module.inputs})
    assert check_forward(outputs, ref, name, fwd_tol) == sum(
        1 for k in outputs if "out/" + k in ref.files)
    assert any("out/" + k in ref.files for k in outputs), "%s: no output checked" % name
    if not meta.get("backward", True) or not caffe_ran_backward(folder, name, module):
        return module
    # Caffe's top diffs: golden topdiff/X, or the loss weight on loss tops.
    total = 0
    for oname, value in outputs.items():
        if "topdiff/" + oname in ref.files:
            total = total + (value * torch.tensor(ref["topdiff/" + oname])).sum()
        elif module.loss_weights.get(oname):
            total = total + value.sum() * module.loss_weights[oname]
    params = dict(module.named_parameters())
    targets = [(k, t) for k, t in inputs.items() if t.requires_grad] + \
        [(k, p) for k, p in params.items() if p.requires_grad]
    grads = torch.autograd.grad(total, [t for _, t in targets], allow_unused=True)
    got = {k: g for (k, _), g in zip(targets, grads)}
    for key in ref.files:
        if key.startswith("diff/"):
            blob = key[5:]
            raw = "raw" + blob[1:]
            src = raw if raw in inputs and layer_case else blob
            if src not in inputs:
                continue           # an inner blob's diff: covered by the param/input ones
            g = got.get(src)
            close(torch.zeros_like(inputs[src]) if g is None else g, ref[key],
                  "%s: %s" % (name, key), GRAD_TOL)
        if key.startswith("pdiff/"):
            parts = key.split("/")
            lname, i = (parts[1], int(parts[2])) if len(parts) == 3 else ("L", int(parts[1]))
            child = module.layer(lname)
            pname = child.blob_names[i]
            if pname in child._buffers:          # statistics: Caffe leaves them at zero
                assert not np.any(ref[key]), "%s: %s" % (name, key)
                continue
            p = getattr(child, pname)
            if not p.requires_grad:     # lr_mult 0: frozen in the module (force_backward
                continue                # made Caffe compute a diff it never applies)
            full = [k for k, v in params.items() if v is p]
            g = got.get(full[0]) if full else None
            close(torch.zeros_like(p) if g is None else g, ref[key], "%s: %s" % (name, key),
                  GRAD_TOL)
    return module
