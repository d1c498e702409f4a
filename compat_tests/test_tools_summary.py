"""caffe.tools.summary: shapes as caffe.Net builds them, published receptive
fields and MAC counts, fields checked against gradients, and ``-verbose 1``."""
import logging
import os

import numpy as np
import pytest

import caffe
from caffe import cli, protoio
from caffe.tools import summary as sm

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "models")


def _row(rows, name):
    return next(r for r in rows if r.name == name)


def test_caffenet_published_values():
    rows = sm.summary(os.path.join(MODELS, "caffenet_deploy.prototxt"), [[1, 3, 227, 227]])
    f = _row(rows, "pool5").fields[0]
    assert f.size == (195, 195) and f.jump == (32, 32)
    assert _row(rows, "conv1").fields[0].size == (11, 11)
    macs = sum(r.macs for r in rows)
    assert abs(macs - 724e6) / 724e6 < 0.01
    assert sum(r.params for r in rows) == 60965224
    assert _row(rows, "fc6").fields[0] is None            # positions mixed: no field


def test_vgg16_published_values():
    rows = sm.summary(os.path.join(MODELS, "vgg16_deploy.prototxt"), [[1, 3, 224, 224]])
    f = _row(rows, "pool5").fields[0]
    assert f.size == (212, 212) and f.jump == (32, 32)
    assert abs(sum(r.macs for r in rows) - 15.47e9) / 15.47e9 < 0.01


def test_shapes_equal_net_and_multi_path_note():
    path = os.path.join(MODELS, "googlenet_deploy.prototxt")
    rows = sm.summary(path, [[1, 3, 224, 224]])
    net = caffe.Net(path, caffe.TEST)
    net.blobs["data"].reshape(1, 3, 224, 224)
    net.reshape()
    for r in rows:
        assert r.top_shapes == [tuple(net.blobs[t].data.shape) for t in net.top_names[r.name]]
    assert "largest of 4 paths" in _row(rows, "inception_3a/output").note
    text = sm.format_summary(rows)
    assert "inception_5b/output" in text and text.splitlines()[-1].startswith("params 69")


FIELD_NET = """
name: "fields" force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 61 dim: 67 } } }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1" convolution_param { num_output: 2 kernel_h: 3 kernel_w: 5 stride: 2 pad: 1 weight_filler { type: "constant" value: 1 } } }
layer { name: "p1" type: "Pooling" bottom: "c1" top: "p1" pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "c2" type: "Convolution" bottom: "p1" top: "c2" convolution_param { num_output: 2 kernel_size: 3 dilation: 2 pad: 2 weight_filler { type: "constant" value: 1 } } }
layer { name: "d1" type: "Deconvolution" bottom: "c2" top: "d1" convolution_param { num_output: 2 kernel_size: 4 stride: 2 pad: 1 weight_filler { type: "constant" value: 1 } } }
layer { name: "cr" type: "Crop" bottom: "c1" bottom: "d1" top: "cr" crop_param { offset: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "cr" bottom: "d1" top: "sum" }
"""


def _extent(net, blob, index):
    """Input pixels (per axis: lo, hi) whose gradient reaches one element of ``blob``."""
    for b in net.blobs.values():
        b.diff[...] = 0
    net.forward()
    net.blobs[blob].diff[(0, 0) + index] = 1
    net.backward(start=[n for n, ts in net.top_names.items() if blob in ts][-1])
    nz = np.nonzero(net.blobs["data"].diff[0, 0])
    return [(int(a.min()), int(a.max())) for a in nz]


@pytest.mark.parametrize("blob", ["c1", "p1", "c2", "d1", "cr", "sum"])
def test_fields_match_gradient_extent(blob):
    param = protoio.parse_text(FIELD_NET, protoio.pb2().NetParameter(), "<test>")
    rows = sm.summary(param)
    field = {t: f for r in rows for t, f in zip(r.tops, r.fields)}[blob]
    net = caffe.Net(param, caffe.TEST)
    net.blobs["data"].data[...] = 1
    shape = net.blobs[blob].data.shape
    index = tuple(s // 2 for s in shape[2:])
    ext = _extent(net, blob, index)
    for axis, (lo, hi) in enumerate(ext):
        size = field.size[axis]
        centre = field.start[axis] + index[axis] * field.jump[axis]
        assert hi - lo + 1 <= size + 1e-9
        if blob in ("c1", "p1", "c2"):                     # exact for sliding windows
            assert hi - lo + 1 == size
            assert (lo + hi) / 2.0 == pytest.approx(centre)
        else:                          # after deconv: centres alternate by half a step
            assert abs((lo + hi) / 2.0 - centre) <= 0.5 * field.jump[axis]
            assert hi - lo + 1 == size


def test_command_line_and_verbose_flag(capsys):
    path = os.path.join(MODELS, "caffenet_deploy.prototxt")
    assert sm.main([path, "-i", "1,3,227,227"]) == 0
    out = capsys.readouterr().out
    assert "pool5" in out and "195" in out and "multiply-adds 724406816" in out
    assert sm.main([path, "-i", "1,3,a"]) == 1
    assert "bad input shape" in capsys.readouterr().err
    mini = os.path.join(HERE, "golden", "nets", "mini_resnet.prototxt")
    log = logging.getLogger("caffe")
    old = log.handlers[:]
    try:
        rc = cli.main(["time", "-model", mini, "-iterations", "1", "-verbose", "1"])
    finally:
        log.handlers = old
    assert rc == 0
    out = capsys.readouterr().out
    assert "res2" in out and "largest of 2 paths" in out
