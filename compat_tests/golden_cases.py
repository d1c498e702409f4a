"""Runs golden cases (outputs of a real Caffe build, copied under
compat_tests/golden/) through caffe.Net and compares within the tolerances the
golden README gives."""
import json
import os
from contextlib import contextmanager

import numpy as np

import caffe

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")

# Caffe-vs-Caffe noise allowed by the golden README.
LAYER_FWD = dict(rtol=1e-4, atol=1e-5)
NET_TOL = dict(rtol=1e-3, atol=1e-4)
GRAD_TOL = dict(rtol=1e-3, atol=1e-4)


@contextmanager
def chdir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def case_names(folder):
    d = os.path.join(GOLDEN, folder)
    return sorted(f[:-5] for f in os.listdir(d) if f.endswith(".json")
                  and os.path.exists(os.path.join(d, f[:-5] + ".npz")))


def _close(actual, expected, what, tol):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape or actual.size == expected.size, \
        "%s: shape %s, expected %s" % (what, actual.shape, expected.shape)
    np.testing.assert_allclose(actual.reshape(expected.shape), expected, err_msg=what, **tol)


def _check_backward(net, ref, name, param_blob):
    """Set the golden top diffs, run backward, compare the bottom diffs
    (``diff/BLOB``) and the param diffs (``pdiff/...``; ``param_blob(key)``
    is the param blob a key names)."""
    for key in ref.files:
        if key.startswith("topdiff/"):
            net.blobs[key[8:]].diff[...] = ref[key]
    net.clear_param_diffs()
    net.backward()
    for key in ref.files:
        if key.startswith("diff/"):
            _close(net.blobs[key[5:]].diff, ref[key], "%s: %s" % (name, key), GRAD_TOL)
        if key.startswith("pdiff/"):
            _close(param_blob(key).diff, ref[key], "%s: %s" % (name, key), GRAD_TOL)


def run_layer_case(name, folder="layers"):
    """One golden layer case: forward, backward, params (see golden README)."""
    d = os.path.join(GOLDEN, folder)
    meta = json.load(open(os.path.join(d, name + ".json")))
    ref = np.load(os.path.join(d, name + ".npz"))
    phase = caffe.TRAIN if meta.get("phase", "TRAIN") == "TRAIN" else caffe.TEST
    with chdir(d):
        if meta.get("fillers_deterministic"):
            caffe.set_random_seed(1)
            fresh = caffe.Net(name + ".prototxt", phase)
            for i, blob in enumerate(fresh.layer_dict["L"].blobs):
                if "param/%d" % i in ref:
                    _close(blob.data, ref["param/%d" % i], "%s: filler param %d" % (name, i),
                           LAYER_FWD)
        net = caffe.Net(name + ".prototxt", phase, weights=name + ".caffemodel")
    layer = net.layer_dict["L"]
    for key in ref.files:
        if key.startswith("in/"):
            bname = key[3:]
            raw = "raw" + bname[1:]   # cases that feed bK through a zero Bias from rawK
            target = raw if raw in net.blobs else bname
            net.blobs[target].reshape(*ref[key].shape)
            net.blobs[target].data[...] = ref[key]
    for i, blob in enumerate(layer.blobs):
        if "param/%d" % i in ref:
            _close(blob.data, ref["param/%d" % i], "%s: param %d" % (name, i), LAYER_FWD)
    net.reshape()
    net.forward()
    for key in ref.files:
        if key.startswith("out/"):
            _close(net.blobs[key[4:]].data, ref[key], "%s: %s" % (name, key), LAYER_FWD)
        if key.startswith("param_after/"):
            i = int(key.split("/")[1])
            _close(layer.blobs[i].data, ref[key], "%s: %s" % (name, key), LAYER_FWD)
    if not meta.get("backward", True):
        return net
    def param_blob(key):   # pdiff/I
        return layer.blobs[int(key.split("/")[1])]
    _check_backward(net, ref, name, param_blob)
    return net


def run_net_case(name, folder="nets"):
    """One golden whole-net case: structure, forward, backward."""
    d = os.path.join(GOLDEN, folder)
    meta = json.load(open(os.path.join(d, name + ".json")))
    ref = np.load(os.path.join(d, name + ".npz"))
    phase = caffe.TRAIN if meta["phase"] == "TRAIN" else caffe.TEST
    with chdir(d):
        net = caffe.Net(meta.get("source", name + ".prototxt"), phase,
                        stages=meta.get("stages") or None, weights=name + ".caffemodel")
    s = meta["structure"]
    assert list(net.blobs.keys()) == s["blobs"]
    assert list(net._layer_names) == s["layers"]
    assert [l.type for l in net.layers] == s["layer_types"]
    assert {k: [list(b.shape) for b in v] for k, v in net.params.items()} == \
        {k: [list(x) for x in v] for k, v in s["params"].items()}
    assert net.inputs == s["inputs"]
    assert net.outputs == s["outputs"]
    assert dict(net.blob_loss_weights) == s["blob_loss_weights"]
    for blob, shape in meta["input_shapes_after_reshape"].items():
        net.blobs[blob].reshape(*shape)
    net.reshape()
    for key in ref.files:
        if key.startswith("in/"):
            net.blobs[key[3:]].data[...] = ref[key]
    net.forward()
    for key in ref.files:
        if key.startswith("out/"):
            _close(net.blobs[key[4:]].data, ref[key], "%s: %s" % (name, key), NET_TOL)
    def param_blob(key):   # pdiff/LAYER/I
        _, lname, i = key.split("/")
        return net.params[lname][int(i)]
    _check_backward(net, ref, name, param_blob)
    return net
