"""Bad input gets an error naming the file, the layer and the field."""
import os

import pytest
from golden_cases import GOLDEN

import caffe

LENET = os.path.join(GOLDEN, "nets", "lenet.prototxt")
LENET_W = os.path.join(GOLDEN, "nets", "lenet.caffemodel")

GOOD = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 4 } }
"""


def write(tmp_path, text, name="net.prototxt"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_misspelt_field_names_file_layer_and_field(tmp_path):
    path = write(tmp_path, GOOD.replace("num_output", "num_ouput"))
    with pytest.raises(Exception) as exc:
        caffe.Net(path, caffe.TEST)
    msg = str(exc.value)
    assert path in msg and "'ip'" in msg and "num_ouput" in msg


def test_unknown_layer_type_says_how_to_register(tmp_path):
    path = write(tmp_path, GOOD.replace('"InnerProduct"', '"NoSuchLayer"'))
    with pytest.raises(KeyError) as exc:
        caffe.Net(path, caffe.TEST)
    msg = str(exc.value)
    assert "NoSuchLayer" in msg and "'ip'" in msg and "caffe.modules" in msg and path in msg


def test_bottom_nobody_produces(tmp_path):
    path = write(tmp_path, GOOD.replace('bottom: "data"', 'bottom: "dta"'))
    with pytest.raises(ValueError) as exc:
        caffe.Net(path, caffe.TEST)
    msg = str(exc.value)
    assert "dta" in msg and "'ip'" in msg and path in msg


def test_weight_blob_of_wrong_shape(tmp_path):
    text = open(LENET).read().replace("num_output: 500", "num_output: 499")
    path = write(tmp_path, text)
    with pytest.raises(RuntimeError) as exc:
        caffe.Net(path, LENET_W, caffe.TEST)
    msg = str(exc.value)
    assert "ip1" in msg and "shape mismatch" in msg and "500 800" in msg and "499 800" in msg


def test_truncated_caffemodel(tmp_path):
    data = open(LENET_W, "rb").read()
    bad = tmp_path / "trunc.caffemodel"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError) as exc:
        caffe.Net(LENET, str(bad), caffe.TEST)
    assert str(bad) in str(exc.value)


def test_missing_files():
    with pytest.raises(RuntimeError) as exc:
        caffe.Net("/nonexistent/deploy.prototxt", caffe.TEST)
    assert "/nonexistent/deploy.prototxt" in str(exc.value)
    with pytest.raises(RuntimeError) as exc:
        caffe.Net(LENET, "/nonexistent/w.caffemodel", caffe.TEST)
    assert "/nonexistent/w.caffemodel" in str(exc.value)


def test_invalid_layer_parameter_names_layer_and_field(tmp_path):
    text = GOOD.replace("inner_product_param { num_output: 4 }",
                        "inner_product_param { num_output: 4 axis: 7 }")
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as exc:
        caffe.Net(path, caffe.TEST)
    assert "'ip'" in str(exc.value)


def test_top_produced_twice(tmp_path):
    text = GOOD + """layer { name: "ip2" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 4 } }"""
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as exc:
        caffe.Net(path, caffe.TEST)
    assert "multiple sources" in str(exc.value) and "'ip2'" in str(exc.value)


def test_wrong_bottom_count(tmp_path):
    text = GOOD.replace('bottom: "data" top: "ip"', 'top: "ip"')
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as exc:
        caffe.Net(path, caffe.TEST)
    assert "'ip'" in str(exc.value) and "bottom" in str(exc.value)
