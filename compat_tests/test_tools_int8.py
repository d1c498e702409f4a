"""caffe.tools.int8_calibrate: the KL threshold search against a plain
loop-by-loop implementation, exact weight scales, and the ncnn table."""

import numpy as np
import pytest

import caffe
from caffe.tools import int8_calibrate as ic


def reference_threshold_bin(hist, target=128):
    """TensorRT's search written out one bin at a time."""
    h = [float(v) for v in hist[1:]]
    best_kl, best_t = None, None
    for t in range(target, len(h)):
        p = h[:t]
        p[t - 1] += sum(h[t:])
        step = t // target
        q = [0.0] * t
        for j in range(target):
            lo = j * step
            hi = t if j == target - 1 else lo + step
            total = sum(h[lo:hi])
            nonempty = [k for k in range(lo, hi) if p[k] != 0]
            for k in nonempty:
                q[k] = total / len(nonempty)
        p = [v if v != 0 else 1e-4 for v in p]
        q = [v if v != 0 else 1e-4 for v in q]
        sp, sq = sum(p), sum(q)
        kl = 0.0
        for a, b in zip(p, q):
            kl += (a / sp) * np.log((a / sp) / (b / sq))
        if best_kl is None or kl < best_kl:
            best_kl, best_t = kl, t
    return best_t


def _hist(values, bins=600):
    values = np.abs(values)
    return np.histogram(values, bins=bins, range=(0, values.max()))[0]


@pytest.mark.parametrize("kind", ["gauss", "laplace_outliers", "relu_sparse", "bimodal"])
def test_kl_search_matches_reference(kind):
    rng = np.random.RandomState(len(kind))
    if kind == "gauss":
        v = rng.randn(20000)
    elif kind == "laplace_outliers":
        v = np.concatenate([rng.laplace(size=20000), rng.uniform(20, 40, 30)])
    elif kind == "relu_sparse":
        v = np.maximum(rng.randn(20000) * 3, 0)
        v[rng.rand(v.size) < 0.3] = 0
    else:
        v = np.concatenate([rng.randn(10000), 8 + rng.randn(3000)])
    hist = _hist(v)
    assert ic.kl_threshold_bin(hist) == reference_threshold_bin(hist)


def test_kl_search_needs_enough_bins():
    with pytest.raises(ValueError):
        ic.kl_threshold_bin(np.ones(100))


def test_weight_scales_exact():
    w = np.zeros((4, 2, 3, 3), np.float32)
    w[0, 0, 0, 0] = -2.0
    w[1, 1, 1, 1] = 0.5
    w[3, 0, 2, 2] = 4.0
    assert ic.weight_scales(w, 1) == [127 / 4.0]
    assert ic.weight_scales(w, 2) == [127 / 2.0, 127 / 4.0]
    w[2:] = 0
    assert ic.weight_scales(w, 2)[1] == 0.0


NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" convolution_param { num_output: 4 kernel_size: 3 group: 2 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "fc" type: "InnerProduct" bottom: "conv2" top: "fc" inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
"""


def test_table_end_to_end(tmp_path):
    from PIL import Image
    proto = tmp_path / "tiny.prototxt"
    proto.write_text(NET)
    net = caffe.Net(str(proto), caffe.TEST)
    model = str(tmp_path / "tiny.caffemodel")
    net.save(model)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.RandomState(0)
    for k in range(3):
        Image.fromarray(rng.randint(0, 256, (16, 14, 3)).astype(np.uint8)).save(
            str(images / ("img%d.png" % k)))
    out = str(tmp_path / "tiny.table")
    argv = ["--proto", str(proto), "--model", model, "--images", str(images),
            "--mean", "104", "117", "123", "--norm", "0.017", "--group", "1", "--output", out]
    assert ic.main(argv) == 0
    text = open(out).read().splitlines()
    assert [line.split()[0] for line in text] == [
        "conv1_param_0", "conv2_param_0", "fc_param_0", "conv1", "conv2", "fc"]
    wscales, ascales = ic.read_table(out)
    assert wscales["conv2"] == ic.weight_scales(net.params["conv2"][0].data, 2)
    assert len(wscales["conv1"]) == 1 and len(wscales["fc"]) == 1
    assert all(v > 0 for v in ascales.values())
    out2 = str(tmp_path / "again.table")
    assert ic.main(argv[:-1] + [out2]) == 0
    assert open(out2).read() == open(out).read()          # deterministic
    assert ic.main(argv[:4] + ["--images", str(tmp_path / "none")] + argv[6:]) == 1
