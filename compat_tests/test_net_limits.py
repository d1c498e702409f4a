"""Impossible shapes fail at Net construction, before any allocation or
filling, naming the layer, blob and shape (#14 item 4)."""
import time

import pytest

import caffe
from caffe import limits

INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { %s } } }\n'


def _net(tmp_path, text):
    p = tmp_path / "net.prototxt"
    p.write_text(text)
    return str(p)


def test_param_over_int_max_named_before_filling(tmp_path):
    path = _net(tmp_path, INPUT % "dim: 1 dim: 100000" +
                'layer { name: "huge" type: "InnerProduct" bottom: "data" top: "ip" '
                'inner_product_param { num_output: 100000 weight_filler { type: "xavier" } } }')
    t = time.perf_counter()
    with pytest.raises(ValueError) as exc:
        caffe.Net(path, caffe.TEST)
    assert time.perf_counter() - t < 5          # no filling 40 GB first
    msg = str(exc.value)
    assert "'huge'" in msg and "param blob 0" in msg and "[100000, 100000]" in msg \
        and "INT_MAX" in msg and path in msg, msg


def test_top_over_int_max_named(tmp_path):
    path = _net(tmp_path, INPUT % "dim: 1 dim: 3 dim: 8 dim: 8" +
                'layer { name: "up" type: "Deconvolution" bottom: "data" top: "up" '
                'convolution_param { num_output: 4096 kernel_size: 1 stride: 8192 } }')
    with pytest.raises(ValueError) as exc:
        caffe.Net(path, caffe.TEST)
    msg = str(exc.value)
    assert "'up'" in msg and "top blob 'up'" in msg and "INT_MAX" in msg, msg


def test_input_over_int_max_named(tmp_path):
    path = _net(tmp_path, INPUT % "dim: 100000 dim: 100000")
    with pytest.raises(ValueError) as exc:
        caffe.Net(path, caffe.TEST)
    msg = str(exc.value)
    assert "'data'" in msg and "[100000, 100000]" in msg and "INT_MAX" in msg, msg


def test_blob_larger_than_memory_named(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "PHYSICAL_MEMORY", 1 << 20)      # pretend 1 MiB of RAM
    path = _net(tmp_path, INPUT % "dim: 1 dim: 1024" +
                'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                'inner_product_param { num_output: 1024 } }')
    with pytest.raises(ValueError) as exc:
        caffe.Net(path, caffe.TEST)
    msg = str(exc.value)
    assert "'ip'" in msg and "GiB" in msg and "memory" in msg, msg


@pytest.mark.parametrize("layer", [
    'layer { name: "pool" type: "Pooling" bottom: "data" top: "data" '
    'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }',
    'layer { name: "ipl" type: "InnerProduct" bottom: "data" top: "data" '
    'inner_product_param { num_output: 5 } }',
])
def test_in_place_layer_that_changes_shape_is_rejected(tmp_path, layer):
    path = _net(tmp_path, INPUT % "dim: 2 dim: 3 dim: 4 dim: 4" + layer)
    with pytest.raises(ValueError) as exc:
        caffe.Net(path, caffe.TEST)
    msg = str(exc.value)
    name = layer.split('"')[1]
    assert "'%s'" % name in msg and "in-place" in msg and "[2, 3, 4, 4]" in msg, msg


def test_blob_api_limits():
    with pytest.raises(limits.BlobShapeError, match="INT_MAX"):
        caffe.Blob((2 ** 16, 2 ** 16))
    b = caffe.Blob((2, 3))
    with pytest.raises(limits.BlobShapeError, match="INT_MAX"):
        b.reshape(2 ** 31)
    assert b.shape == [2, 3]


@pytest.mark.parametrize("param, field", [("kernel_size: 2147483648 stride: 2", "kernel_size"),
                                          ("kernel_size: 2 stride: 2147483648", "stride")])
def test_pooling_values_beyond_int_are_named(tmp_path, param, field):
    path = _net(tmp_path, INPUT % "dim: 1 dim: 2 dim: 4 dim: 4" +
                'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                'pooling_param { pool: MAX %s } }' % param)
    with pytest.raises(ValueError) as exc:
        caffe.Net(path, caffe.TEST)
    msg = str(exc.value)
    assert "'pool'" in msg and "pooling_param." + field in msg and "2147483648" in msg, msg
