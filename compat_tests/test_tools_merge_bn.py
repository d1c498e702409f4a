"""caffe.tools.merge_bn / merge_scale / split_scale: folded nets compute what
the originals compute (checked with caffe.Net), and no foldable layer is left."""
import os
import subprocess
import sys

import numpy as np

import caffe
from caffe import folding
from caffe.tools import merge_bn as mb
from caffe.verification import verdict, worst

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden", "nets")
MODELS = os.path.join(HERE, "models")


def _types(param):
    return [lp.type for lp in param.layer]


def _check(result, orig_param, orig_weights, rtol=1e-4):
    rows = mb.verify(orig_param, orig_weights, result.param, result.weights)
    assert verdict(rows, rtol), worst(rows)
    return rows


def _real_bn_stats(weights, param, seed=1):
    """Caffe-trained-looking BatchNorm blobs: running sums times a moving-average
    factor, small means and variances spread over decades; He-scaled convs."""
    rng = np.random.RandomState(seed)
    sf = np.float32(999.982)
    for lp in param.layer:
        blobs = weights.get(lp.name)
        if lp.type == "BatchNorm":
            c = blobs[0].shape
            blobs[0] = (rng.randn(*c) * 0.3 * sf).astype(np.float32)
            blobs[1] = (np.exp(rng.uniform(np.log(1e-3), np.log(4.0), c)) * sf).astype(np.float32)
            blobs[2] = np.array([sf], np.float32)
        elif lp.type == "Scale":                 # keeps residual sums bounded
            blobs[0] = rng.uniform(0.1, 0.4, blobs[0].shape).astype(np.float32)
        elif lp.type == "Convolution":
            w = blobs[0]
            fan_in = np.prod(w.shape[1:])
            blobs[0] = (rng.randn(*w.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return weights


def test_folding_maths_matches_caffe_formulas():
    rng = np.random.RandomState(0)
    mean, var = rng.randn(4), rng.uniform(0.1, 2, 4)
    a, b = folding.bn_affine(mean * 10, var * 10, np.array([10.0]), 1e-5)
    x = rng.randn(4)
    assert np.allclose(a * x + b, (x - mean) / np.sqrt(var + 1e-5))
    a0, b0 = folding.bn_affine(mean, var, np.array([0.0]), 1e-5)   # zero factor: zero stats
    assert np.allclose(a0, 1 / np.sqrt(1e-5)) and np.allclose(b0, 0)
    g, h = rng.randn(4), rng.randn(4)
    a2, b2 = folding.compose((a, b), (g, h))
    assert np.allclose(a2 * x + b2, g * (a * x + b) + h)


def test_mini_resnet_golden():
    proto = os.path.join(GOLDEN, "mini_resnet.prototxt")
    weights = mb.load_weights(os.path.join(GOLDEN, "mini_resnet.caffemodel"))
    orig = mb._test_net(proto)
    result = mb.merge_bn(proto, weights)
    assert "BatchNorm" not in _types(result.param)
    assert "Scale" not in _types(result.param)
    assert result.param.layer[1].convolution_param.bias_term
    _check(result, orig, weights)


def test_resnet50_real_statistics():
    param = mb._test_net(os.path.join(MODELS, "resnet50_deploy.prototxt"))
    param.layer[0].input_param.shape[0].dim[:] = [1, 3, 32, 32]
    for lp in param.layer:                       # a quarter of the widths: a fast test
        if lp.type == "Convolution":
            lp.convolution_param.num_output //= 4
    for lp in param.layer:                       # a 32x32 input: global average pooling
        if lp.name == "pool5":
            lp.pooling_param.Clear()
            lp.pooling_param.pool = 1
            lp.pooling_param.global_pooling = True
    weights = _real_bn_stats(mb.random_weights(param), param)
    result = mb.merge_bn(param, weights)
    assert _types(result.param).count("BatchNorm") == 0
    assert _types(result.param).count("Scale") == 0
    assert _types(param).count("BatchNorm") == 53
    rows = _check(result, param, weights)
    assert any(r.name == "res5c" for r in rows)           # intermediate blobs compared too


NET_FALLBACKS = """
name: "fallbacks"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "c2" type: "Convolution" bottom: "data" top: "c2" convolution_param { num_output: 5 kernel_size: 1 bias_term: false } }
layer { name: "cat" type: "Concat" bottom: "c1" bottom: "c2" top: "cat" }
layer { name: "bn_cat" type: "BatchNorm" bottom: "cat" top: "bn_cat" }
layer { name: "sc_cat" type: "Scale" bottom: "bn_cat" top: "bn_cat" scale_param { bias_term: true } }
layer { name: "c3" type: "Convolution" bottom: "bn_cat" top: "c3" convolution_param { num_output: 6 kernel_size: 3 } }
layer { name: "relu3" type: "ReLU" bottom: "c3" top: "r3" }
layer { name: "bn_split" type: "BatchNorm" bottom: "c3" top: "bn_split" }
layer { name: "sum" type: "Eltwise" bottom: "bn_split" bottom: "r3" top: "sum" }
layer { name: "dc" type: "Deconvolution" bottom: "sum" top: "dc" convolution_param { num_output: 4 kernel_size: 2 stride: 2 group: 2 bias_term: false } }
layer { name: "bn_dc" type: "BatchNorm" bottom: "dc" top: "dc" }
layer { name: "bias_dc" type: "Bias" bottom: "dc" top: "dc" }
layer { name: "ip" type: "InnerProduct" bottom: "dc" top: "ip" inner_product_param { num_output: 7 } }
layer { name: "bn_ip" type: "BatchNorm" bottom: "ip" top: "ip_bn" }
layer { name: "sc_ip" type: "Scale" bottom: "ip_bn" top: "ip_out" }
layer { name: "ipt" type: "InnerProduct" bottom: "ip_out" top: "ipt" inner_product_param { num_output: 3 transpose: true bias_term: false } }
layer { name: "bn_ipt" type: "BatchNorm" bottom: "ipt" top: "ipt" batch_norm_param { eps: 0.001 } }
layer { name: "bn_train" type: "BatchNorm" bottom: "ipt" top: "ipt" include { phase: TRAIN } batch_norm_param { use_global_stats: false } }
layer { name: "bn_batch" type: "BatchNorm" bottom: "data" top: "data_bn" batch_norm_param { use_global_stats: false } }
"""


def _net_param(text):
    from caffe import protoio
    return mb._test_net(protoio.parse_text(text, protoio.pb2().NetParameter(), "<test>"))


def test_fallbacks_concat_split_deconv_innerproduct():
    param = _net_param(NET_FALLBACKS)
    assert "bn_train" not in [lp.name for lp in param.layer]        # TRAIN-only rule dropped
    weights = _real_bn_stats(mb.random_weights(param), param)
    result = mb.merge_bn(param, weights)
    layers = {lp.name: lp for lp in result.param.layer}
    # after Concat: one Scale (with bias) that also took in the Scale after it
    assert layers["bn_cat"].type == "Scale" and layers["bn_cat"].scale_param.bias_term
    assert "sc_cat" not in layers
    # c3's output is read by ReLU and BatchNorm: not folded, replaced by Scale
    assert layers["bn_split"].type == "Scale"
    # Deconvolution with groups takes BatchNorm and Bias; InnerProduct (also transposed) too
    assert "bn_dc" not in layers and "bias_dc" not in layers
    assert layers["dc"].convolution_param.bias_term
    assert "bn_ip" not in layers and "sc_ip" not in layers and layers["ip"].top[0] == "ip_out"
    assert "bn_ipt" not in layers and layers["ipt"].inner_product_param.bias_term
    # batch statistics cannot be folded: kept, and said so
    assert layers["bn_batch"].type == "BatchNorm"
    assert any("bn_batch" in n and "use_global_stats" in n for n in result.notes)
    _check(result, param, weights)


def test_merge_scale_split_scale_round_trip():
    param = _net_param(NET_FALLBACKS)
    weights = _real_bn_stats(mb.random_weights(param), param)
    bn = mb.merge_bn(param, weights)
    split = mb.split_scale(bn.param, bn.weights)
    types = _types(split.param)
    assert all(not lp.scale_param.bias_term for lp in split.param.layer if lp.type == "Scale")
    assert types.count("Bias") == 2
    _check(split, param, weights)
    merged = mb.merge_scale(split.param, split.weights)
    # the Scale after Concat and the one after a shared blob stay; Bias folds into them
    assert "Bias" not in _types(merged.param)
    _check(merged, param, weights)
    # a lone Scale after a Convolution folds away
    lone = _net_param(NET_FALLBACKS.replace('type: "BatchNorm" bottom: "dc"', 'type: "Scale" '
                                            'bottom: "dc"'))
    w = mb.random_weights(lone)
    out = mb.merge_scale(lone, w)
    assert "bn_dc" not in [lp.name for lp in out.param.layer]
    _check(out, lone, w)


def test_structure_only_mode_matches_weight_mode():
    param = _net_param(NET_FALLBACKS)
    weights = _real_bn_stats(mb.random_weights(param), param)
    with_w = mb.merge_bn(param, weights)
    only = mb.merge_bn(param)
    assert only.weights is None
    assert str(only.param) == str(with_w.param)


def test_command_line_both_modes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proto = os.path.join(GOLDEN, "mini_resnet.prototxt")
    model = os.path.join(GOLDEN, "mini_resnet.caffemodel")
    assert mb.main([proto, model, "o.prototxt", "o.caffemodel"]) == 0
    err = capsys.readouterr().err
    assert "max rel diff" in err and "folded BatchNorm 'bn1'" in err
    net = caffe.Net(str(tmp_path / "o.prototxt"), str(tmp_path / "o.caffemodel"), caffe.TEST)
    ref = caffe.Net(proto, model, caffe.TEST)
    x = np.random.RandomState(3).randn(*ref.blobs["data"].data.shape).astype(np.float32)
    a = ref.forward(data=x)["prob"].copy()
    b = net.forward(data=x)["prob"]
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    assert mb.main([proto, "p.prototxt"]) == 0
    assert "random weights" in capsys.readouterr().err
    text = (tmp_path / "p.prototxt").read_text()
    assert "BatchNorm" not in text and "bias_term: true" in text
    # never overwrite the input weights; bad input names the problem
    assert mb.main([proto, model, "q.prototxt", model]) == 2
    assert "refusing" in capsys.readouterr().err
    assert mb.main(["missing.prototxt", "q.prototxt"]) == 1
    assert "missing.prototxt" in capsys.readouterr().err
    assert not os.path.exists("q.prototxt")


def test_python_m_entry_point(tmp_path):
    proto = os.path.join(GOLDEN, "mini_resnet.prototxt")
    r = subprocess.run([sys.executable, "-m", "caffe.tools.split_scale", proto, "s.prototxt"],
                       cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'type: "Bias"' in (tmp_path / "s.prototxt").read_text()
