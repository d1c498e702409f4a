"""Helpers the layer test files share: reading one golden layer case
(compat_tests/golden/layers/NAME.{prototxt,json,npz}) for running its layer
"L" standalone.  Running a case through caffe.Net is golden_cases.run_layer_case."""
import json
import os

import numpy as np
from google.protobuf import text_format

from caffe.proto import caffe_pb2

GOLDEN_LAYERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "layers")


def load_case(name):
    """``(net, lp, meta, data)``: the case's NetParameter, its layer "L", the
    .json metadata and the .npz arrays as a dict."""
    net = caffe_pb2.NetParameter()
    with open(os.path.join(GOLDEN_LAYERS, name + ".prototxt")) as f:
        text_format.Merge(f.read(), net)
    with open(os.path.join(GOLDEN_LAYERS, name + ".json")) as f:
        meta = json.load(f)
    data = dict(np.load(os.path.join(GOLDEN_LAYERS, name + ".npz")))
    lp = [l for l in net.layer if l.name == "L"][0]
    return net, lp, meta, data
