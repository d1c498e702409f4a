"""The bad-file corpus (#14 item 5): damaged, foreign or inconsistent inputs
raise the package's own error types naming the file (and layer / key / field),
never a raw h5py OSError, KeyError, numpy ValueError or protobuf DecodeError."""
import os

import numpy as np
import pytest

import caffe
from caffe import fillers, protoio
from caffe.layers.base import LayerError
from caffe.protoio import CaffeFileError

h5py = pytest.importorskip("h5py")

# what "the package's own error types" means here: each is raised deliberately
OWN = (CaffeFileError, LayerError, fillers.FillerError, caffe.net.NetError)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def _not_raw(exc):
    assert isinstance(exc, OWN), "%s: %s" % (type(exc).__name__, exc)


def _lmdb_with(path, values):
    from caffe.tools._db import open_db
    db = open_db(str(path), "lmdb", "w")
    txn = db.transaction()
    for i, v in enumerate(values):
        txn.put("%08d" % i, v)
    txn.commit()
    db.close()
    return str(path)


NOT_A_DATUM = b"\xff\xff\xff\xff this is not a Datum"


def test_data_layer_lmdb_first_value_not_a_datum(tmp_path):
    pytest.importorskip("lmdb")
    db = _lmdb_with(tmp_path / "db", [NOT_A_DATUM])
    net = _write(tmp_path / "net.prototxt",
                 'layer { name: "d" type: "Data" top: "data" top: "label" '
                 'data_param { source: "%s" batch_size: 2 backend: LMDB } }' % db)
    with pytest.raises(Exception) as exc:
        caffe.Net(net, caffe.TRAIN)
    _not_raw(exc.value)
    msg = str(exc.value)
    assert db in msg and "'d'" in msg and "00000000" in msg, msg


def test_compute_image_mean_value_not_a_datum(tmp_path):
    pytest.importorskip("lmdb")
    from caffe.tools import compute_image_mean as cim
    db = _lmdb_with(tmp_path / "db", [NOT_A_DATUM])
    out = str(tmp_path / "mean.binaryproto")
    with pytest.raises(cim.MeanError) as exc:
        cim.compute_image_mean(db, out)
    assert db in str(exc.value) and "00000000" in str(exc.value)
    assert not os.path.exists(out)


def _hdf5_net(tmp_path, files):
    lst = _write(tmp_path / "list.txt", "\n".join(files) + "\n")
    return _write(tmp_path / "net.prototxt",
                  'layer { name: "h" type: "HDF5Data" top: "data" top: "label" '
                  'hdf5_data_param { source: "%s" batch_size: 3 } }' % lst)


def _h5(path, data_shape, n=4):
    with h5py.File(str(path), "w") as f:
        f["data"] = np.zeros((n,) + data_shape, np.float32)
        f["label"] = np.zeros((n,), np.float32)
    return str(path)


def test_hdf5_data_files_with_mismatched_row_shapes(tmp_path):
    a = _h5(tmp_path / "a.h5", (2, 3))
    b = _h5(tmp_path / "b.h5", (2, 4))
    net = caffe.Net(_hdf5_net(tmp_path, [a, b]), caffe.TRAIN)
    with pytest.raises(Exception) as exc:
        for _ in range(4):
            net.forward()
    _not_raw(exc.value)
    msg = str(exc.value)
    assert b in msg and "'data'" in msg and "[2, 4]" in msg and "[2, 3]" in msg, msg


def test_hdf5_data_truncated_file(tmp_path):
    a = _h5(tmp_path / "a.h5", (2, 3), n=400)
    raw = open(a, "rb").read()
    with open(a, "wb") as f:
        f.write(raw[:len(raw) // 2])
    with pytest.raises(Exception) as exc:
        caffe.Net(_hdf5_net(tmp_path, [a]), caffe.TRAIN)
    _not_raw(exc.value)
    assert a in str(exc.value) and "'h'" in str(exc.value)


@pytest.mark.parametrize("filler, needle", [
    ('type: "nosuch"', "unknown filler type"),
    ('type: "uniform" min: 2 max: 1', "min <= max"),
    ('type: "gaussian" sparse: 7', "sparse 7"),
    ('type: "gaussian" std: -1', "std"),
])
def test_filler_errors_name_file_and_layer(tmp_path, filler, needle):
    net = _write(tmp_path / "net.prototxt",
                 'layer { name: "data" type: "Input" top: "data" '
                 'input_param { shape { dim: 1 dim: 4 } } }\n'
                 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                 'inner_product_param { num_output: 3 weight_filler { %s } } }' % filler)
    with pytest.raises(fillers.FillerError) as exc:
        caffe.Net(net, caffe.TEST)
    msg = str(exc.value)
    assert net in msg and "'ip'" in msg and needle in msg, msg


@pytest.mark.parametrize("content", [b"", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 3])
def test_garbage_weights_and_mean_files(tmp_path, content):
    path = str(tmp_path / "bad.bin")
    with open(path, "wb") as f:
        f.write(content)
    net = _write(tmp_path / "net.prototxt",
                 'layer { name: "data" type: "Input" top: "data" '
                 'input_param { shape { dim: 1 dim: 4 } } }\n'
                 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                 'inner_product_param { num_output: 3 } }')
    if content:
        with pytest.raises(CaffeFileError, match="bad.bin"):
            caffe.Net(net, path, caffe.TEST)
        with pytest.raises(CaffeFileError, match="bad.bin"):
            protoio.read_binary(path, protoio.schema().BlobProto())
    else:                                   # an empty file is an empty message
        caffe.Net(net, path, caffe.TEST)


@pytest.mark.parametrize("size, kernel, stride, out", [(4, 7, 1, None), (5, 7, 3, (1, 1))])
def test_pooling_window_larger_than_the_input(tmp_path, size, kernel, stride, out):
    """Caffe clips a window that only partly fits (one output); a window whose
    output size is negative is a clear error naming file, layer and field."""
    net = _write(tmp_path / "net.prototxt",
                 'layer { name: "data" type: "Input" top: "data" '
                 'input_param { shape { dim: 1 dim: 2 dim: %d dim: %d } } }\n'
                 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                 'pooling_param { pool: AVE kernel_size: %d stride: %d } }'
                 % (size, size, kernel, stride))
    if out is None:
        with pytest.raises(LayerError) as exc:
            caffe.Net(net, caffe.TEST)
        msg = str(exc.value)
        assert net in msg and "'pool'" in msg and "pooling_param.kernel_size" in msg, msg
        return
    n = caffe.Net(net, caffe.TEST)
    x = np.random.RandomState(0).rand(1, 2, size, size).astype(np.float32)
    got = n.forward(data=x)["pool"]
    assert got.shape[2:] == out
    np.testing.assert_allclose(got.ravel(), x.mean(axis=(2, 3)).ravel(), rtol=1e-6)
