"""caffe.weights: copying weights into a Net is all-or-nothing, and damaged or
foreign weight files raise CaffeFileError naming the file (#14 items 3, 5)."""

import numpy as np
import pytest

import caffe
from caffe import weights
from caffe.protoio import CaffeFileError

NET = """
name: "two"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" } } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
"""


@pytest.fixture
def net_file(tmp_path):
    p = tmp_path / "net.prototxt"
    p.write_text(NET)
    return str(p)


def _snapshot(net):
    return {k: [b.data.copy() for b in v] for k, v in net.params.items()}


def _assert_unchanged(net, before):
    for k, v in net.params.items():
        for b, old in zip(v, before[k]):
            np.testing.assert_array_equal(b.data, old)


def _other_weights(tmp_path, net_file, text_change=None, h5=False):
    """Weights of a net like NET (optionally edited), saved to a file."""
    src = net_file
    if text_change:
        src = str(tmp_path / "other.prototxt")
        with open(src, "w") as f:
            f.write(NET.replace(*text_change))
    other = caffe.Net(src, caffe.TEST)
    for blobs in other.params.values():
        for b in blobs:
            b.data[...] = 7.0
    path = str(tmp_path / ("w.caffemodel" + (".h5" if h5 else "")))
    if h5:
        other.save_hdf5(path)
    else:
        other.save(path)
    return path


@pytest.mark.parametrize("h5", [False, True])
def test_copy_from_good_file(tmp_path, net_file, h5):
    if h5:
        pytest.importorskip("h5py")
    path = _other_weights(tmp_path, net_file, h5=h5)
    net = caffe.Net(net_file, caffe.TEST)
    net.copy_from(path)
    assert all((b.data == 7.0).all() for v in net.params.values() for b in v)


@pytest.mark.parametrize("h5", [False, True])
def test_failed_copy_from_changes_nothing(tmp_path, net_file, h5):
    """ip1 fits but ip2 does not: ip1 must not have been overwritten."""
    if h5:
        pytest.importorskip("h5py")
    path = _other_weights(tmp_path, net_file, ("num_output: 3", "num_output: 4"), h5=h5)
    net = caffe.Net(net_file, caffe.TEST)
    before = _snapshot(net)
    with pytest.raises(CaffeFileError) as exc:
        net.copy_from(path)
    assert "ip2" in str(exc.value) and path in str(exc.value)
    _assert_unchanged(net, before)


def test_truncated_caffemodel_changes_nothing(tmp_path, net_file):
    path = _other_weights(tmp_path, net_file)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) - 40])
    net = caffe.Net(net_file, caffe.TEST)
    before = _snapshot(net)
    with pytest.raises(CaffeFileError, match="w.caffemodel"):
        net.copy_from(path)
    _assert_unchanged(net, before)


def _h5_cases(tmp_path, net_file):
    h5py = pytest.importorskip("h5py")
    good = _other_weights(tmp_path, net_file, h5=True)
    raw = open(good, "rb").read()
    cases = {}
    p = str(tmp_path / "truncated.h5")
    with open(p, "wb") as f:
        f.write(raw[:len(raw) // 2])
    cases["truncated"] = (p, "truncated")
    p = str(tmp_path / "garbage.h5")
    with open(p, "wb") as f:
        f.write(b"\x89HDF\r\n\x1a\n" + b"\x00\xff" * 300)
    cases["corrupt superblock"] = (p, "HDF5")
    p = str(tmp_path / "nodata.h5")
    with h5py.File(p, "w") as f:
        f.create_dataset("weights", data=np.zeros(3))
    cases["no /data"] = (p, "/data")
    p = str(tmp_path / "strings.h5")
    with h5py.File(p, "w") as f:
        f.create_dataset("data/ip1/0", data=np.array([b"ab", b"cd"]))
    cases["string dataset"] = (p, "ip1")
    p = str(tmp_path / "group.h5")
    with h5py.File(p, "w") as f:
        f.create_group("data/ip1/0")
    cases["group for a blob"] = (p, "ip1")
    return cases


def test_damaged_hdf5_weights_raise_named_errors(tmp_path, net_file):
    for what, (path, needle) in _h5_cases(tmp_path, net_file).items():
        net = caffe.Net(net_file, caffe.TEST)
        before = _snapshot(net)
        with pytest.raises(CaffeFileError) as exc:
            net.copy_from(path)
        msg = str(exc.value)
        assert path in msg and needle in msg, (what, msg)
        _assert_unchanged(net, before)


def test_shape_fits_is_caffes_shape_equals():
    assert weights.shape_fits((1, 1, 5, 6), (5, 6))
    assert weights.shape_fits((5, 6), (5, 6))
    assert not weights.shape_fits((5, 6), (1, 1, 5, 6))
    assert not weights.shape_fits((1, 2, 5, 6), (5, 6))
