"""``python -m caffe run`` (ptcaffe's run): per-iteration outputs, no averages;
``-input`` feeds an array or an image to a deploy net."""
import logging
import os

import numpy as np

import caffe
from caffe import cli

HERE = os.path.dirname(os.path.abspath(__file__))
MINI = os.path.join(HERE, "golden", "nets", "mini_resnet")


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _run(*argv):
    log = logging.getLogger("caffe")
    h = _Collect()
    cli._common.init_log(0)
    old, level = log.handlers[:], log.level
    log.handlers = [h]
    try:
        rc = cli.main(list(argv))
    finally:
        log.handlers = old
        log.setLevel(level)
    return rc, h.lines


def _values(lines, batch, name):
    prefix = "Batch %d, %s = " % (batch, name)
    return np.array([float(x[len(prefix):]) for x in lines if x.startswith(prefix)])


def test_run_with_npy_input(tmp_path):
    x = np.random.RandomState(0).randn(2, 3, 16, 16).astype(np.float32)
    np.save(str(tmp_path / "x.npy"), x)
    rc, lines = _run("run", "-model", MINI + ".prototxt", "-weights", MINI + ".caffemodel",
                     "-iterations", "2", "-input", str(tmp_path / "x.npy"))
    assert rc == 0
    net = caffe.Net(MINI + ".prototxt", MINI + ".caffemodel", caffe.TEST)
    ref = net.forward(data=x)["prob"].ravel()
    for i in (0, 1):
        assert np.allclose(_values(lines, i, "prob"), ref, rtol=1e-5, atol=1e-6)
    assert not any(line.startswith("prob = ") for line in lines)        # no averages


def test_run_with_image_and_preprocessing(tmp_path):
    from PIL import Image
    img = np.random.RandomState(1).randint(0, 256, (20, 18, 3)).astype(np.uint8)
    Image.fromarray(img).save(str(tmp_path / "a.png"))
    rc, lines = _run("run", "-model", MINI + ".prototxt", "-weights", MINI + ".caffemodel",
                     "-iterations", "1", "-input", str(tmp_path / "a.png"),
                     "-mean_value", "104,117,123", "-scale", "0.5")
    assert rc == 0
    got = _values(lines, 0, "prob")
    assert got.size == 5                                       # batch of one image
    net = caffe.Net(MINI + ".prototxt", MINI + ".caffemodel", caffe.TEST)
    t = caffe.io.Transformer({"data": (1, 3, 16, 16)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", np.array([104, 117, 123], np.float32))
    t.set_input_scale("data", 0.5)
    data = t.preprocess("data", caffe.io.load_image(str(tmp_path / "a.png")))[np.newaxis]
    net.blobs["data"].reshape(*data.shape)
    net.reshape()
    ref = net.forward(data=data)["prob"].ravel()
    assert np.allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_run_data_layer_net(tmp_path):
    proto = tmp_path / "d.prototxt"
    proto.write_text("""
layer { name: "d" type: "DummyData" top: "x" dummy_data_param { shape { dim: 2 dim: 3 }
  data_filler { type: "constant" value: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 1
  weight_filler { type: "constant" value: 1 } } }
""")
    rc, lines = _run("run", "-model", str(proto), "-iterations", "3")
    assert rc == 0
    for i in range(3):
        assert list(_values(lines, i, "y")) == [6.0, 6.0]
    rc, lines = _run("run", "-model", str(proto), "-input", str(tmp_path / "nope.npy"))
    assert rc == 1 and any("nope.npy" in line for line in lines)
