"""Data layers (Data, ImageData, HDF5Data, HDF5Output, MemoryData, WindowData,
DummyData): golden outputs of BVLC Caffe (compat_tests/golden/data), round
trips through convert_imageset, LeNet's train_test form, errors, prefetching."""
import gc
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import h5py  # noqa: E402

import caffe  # noqa: E402
from caffe.layers.base import LayerError  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from caffe.tools._db import open_db  # noqa: E402

DATA = os.path.join(HERE, "golden", "data")
GOLD = np.load(os.path.join(DATA, "data_layers.npz"))
NETS = json.load(open(os.path.join(DATA, "data_layers.json")))["nets"]
data_mod = sys.modules["caffe.layers.data"]


def write_net(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def seeded_runs(proto, seed, top, n=3):
    """Twice: caffe.set_random_seed(seed), a TRAIN net from ``proto``, and the
    first ``n`` batches of ``top`` (copies)."""
    runs = []
    for _ in range(2):
        caffe.set_random_seed(seed)
        net = caffe.Net(proto, caffe.TRAIN)
        runs.append([net.forward()[top].copy() for _ in range(n)])
    return runs


def write_lmdb(path, datums):
    db = open_db(str(path), "lmdb", "w")
    txn = db.transaction()
    for i, d in enumerate(datums):
        txn.put("%08d" % i, d if isinstance(d, bytes) else d.SerializeToString())
    txn.commit()
    db.close()


def raw_datum(arr, label):
    d = caffe_pb2.Datum()
    d.channels, d.height, d.width = arr.shape
    d.data = np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    d.label = label
    return d


# ---------------------------------------------------------------------------
# golden
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NETS)
def test_golden_data_nets(name, monkeypatch):
    monkeypatch.chdir(DATA)
    net = caffe.Net(name + ".prototxt", caffe.TEST)
    if name == "memorydata":
        net.set_input_arrays(GOLD["memory_in"], GOLD["memory_labels"])
    for k in range(3):
        net.forward()
        keys = [key for key in GOLD.files if key.startswith("%s/%d/" % (name, k))]
        assert keys
        for key in keys:
            blob = key.split("/")[-1]
            got = net.blobs[blob].data
            want = GOLD[key]
            assert got.shape == want.shape, key
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=key)


def test_golden_raw_lmdb_contents(monkeypatch, tmp_path):
    """Data layer with no transformation returns the raw images, wrapping around."""
    monkeypatch.chdir(DATA)
    path = write_net(os.path.join(str(tmp_path), "raw_plain.prototxt"),
                     'layer { name: "d" type: "Data" top: "data" top: "label" '
                     'data_param { source: "raw_lmdb" batch_size: 4 backend: LMDB } }')
    net = caffe.Net(path, caffe.TEST)
    raw = GOLD["raw_images"]
    order = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]
    for k in range(3):
        net.forward()
        idx = order[4 * k:4 * k + 4]
        np.testing.assert_array_equal(net.blobs["data"].data, raw[idx].astype(np.float32))
        np.testing.assert_array_equal(net.blobs["label"].data, np.array(idx, np.float32))


# ---------------------------------------------------------------------------
# Data: convert_imageset round trip, encoded, float_data, options
# ---------------------------------------------------------------------------
def make_images(folder, n=7, h=9, w=11, seed=0):
    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    lines, imgs = [], []
    for i in range(n):
        img = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
        cv2.imwrite(os.path.join(folder, "im%d.png" % i), img)
        lines.append("im%d.png %d" % (i, i % 3))
        imgs.append(img)
    with open(os.path.join(folder, "list.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return imgs


@pytest.mark.parametrize("encoded", [False, True])
def test_convert_imageset_lmdb_read_back_identically(tmp_path, encoded):
    imgs = make_images(str(tmp_path / "imgs"))
    db = str(tmp_path / "db")
    cmd = [sys.executable, "-m", "caffe.tools.convert_imageset", str(tmp_path / "imgs") + "/",
           str(tmp_path / "imgs" / "list.txt"), db]
    if encoded:
        cmd[3:3] = ["--encoded", "--encode_type=png"]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    net = caffe.Net(write_net(tmp_path / "n.prototxt",
                              'layer { name: "d" type: "Data" top: "data" top: "label" '
                              'data_param { source: "%s" batch_size: 3 backend: LMDB } }' % db),
                    caffe.TEST)
    order = list(range(7)) * 2
    for k in range(4):
        net.forward()
        idx = order[3 * k:3 * k + 3]
        want = np.stack([imgs[i].transpose(2, 0, 1) for i in idx]).astype(np.float32)
        np.testing.assert_array_equal(net.blobs["data"].data, want)
        np.testing.assert_array_equal(net.blobs["label"].data, [i % 3 for i in idx])


def test_data_float_data_no_label_and_transform(tmp_path):
    rng = np.random.RandomState(3)
    vals = rng.randn(5, 2, 4, 4).astype(np.float32)
    datums = []
    for i in range(5):
        d = caffe_pb2.Datum()
        d.channels, d.height, d.width = 2, 4, 4
        d.float_data.extend(vals[i].ravel().tolist())
        d.label = i
        datums.append(d)
    write_lmdb(tmp_path / "db", datums)
    net = caffe.Net(write_net(tmp_path / "n.prototxt",
                              'layer { name: "d" type: "Data" top: "data" '
                              'transform_param { scale: 2 crop_size: 2 mean_value: 1 '
                              'mean_value: -1 } data_param { source: "%s" batch_size: 2 '
                              'backend: LMDB } }' % (tmp_path / "db")), caffe.TEST)
    assert list(net.blobs) == ["data"]
    assert net.blobs["data"].data.shape == (2, 2, 2, 2)
    mv = np.array([1, -1], np.float32).reshape(1, 2, 1, 1)
    for k in range(3):
        net.forward()
        idx = [(2 * k) % 5, (2 * k + 1) % 5]
        want = (vals[idx][:, :, 1:3, 1:3] - mv) * np.float32(2)
        np.testing.assert_array_equal(net.blobs["data"].data, want)


def test_data_rand_skip_and_seed(tmp_path):
    write_lmdb(tmp_path / "db", [raw_datum(np.full((1, 2, 2), i, np.uint8), i)
                                 for i in range(10)])
    proto = write_net(tmp_path / "n.prototxt",
                      'layer { name: "d" type: "Data" top: "data" top: "label" '
                      'data_param { source: "%s" batch_size: 4 backend: LMDB rand_skip: 9 } }'
                      % (tmp_path / "db"))
    firsts = []
    for seed in (1, 1, 2, 3, 4, 5):
        caffe.set_random_seed(seed)
        net = caffe.Net(proto, caffe.TEST)
        net.forward()
        lab = net.blobs["label"].data.astype(int).tolist()
        s = lab[0]
        assert lab == [(s + j) % 10 for j in range(4)]
        firsts.append(s)
    assert firsts[0] == firsts[1]
    assert len(set(firsts)) > 1


def test_data_train_crop_mirror_reproducible(tmp_path):
    rng = np.random.RandomState(0)
    write_lmdb(tmp_path / "db", [raw_datum(rng.randint(0, 256, (3, 8, 8)), i) for i in range(6)])
    proto = write_net(tmp_path / "n.prototxt",
                      'layer { name: "d" type: "Data" top: "data" top: "label" '
                      'transform_param { crop_size: 5 mirror: true } '
                      'data_param { source: "%s" batch_size: 6 backend: LMDB } }'
                      % (tmp_path / "db"))
    runs = seeded_runs(proto, 11, "data")
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0], runs[0][1])


@pytest.mark.skipif(not __import__("importlib").util.find_spec("plyvel"),
                    reason="LevelDB needs the optional plyvel package")
def test_data_leveldb(tmp_path):
    db = open_db(str(tmp_path / "ldb"), "leveldb", "w")
    txn = db.transaction()
    for i in range(3):
        txn.put("%03d" % i, raw_datum(np.full((1, 2, 2), i, np.uint8), i).SerializeToString())
    txn.commit()
    db.close()
    net = caffe.Net(write_net(tmp_path / "n.prototxt",
                              'layer { name: "d" type: "Data" top: "data" top: "label" '
                              'data_param { source: "%s" batch_size: 2 } }' % (tmp_path / "ldb")),
                    caffe.TEST)
    net.forward()
    np.testing.assert_array_equal(net.blobs["label"].data, [0, 1])
    net.forward()
    np.testing.assert_array_equal(net.blobs["label"].data, [2, 0])


def test_two_nets_share_one_lmdb(tmp_path):
    write_lmdb(tmp_path / "db", [raw_datum(np.full((1, 1, 1), i, np.uint8), i) for i in range(3)])
    proto = write_net(tmp_path / "n.prototxt",
                      'layer { name: "d" type: "Data" top: "data" top: "label" '
                      'data_param { source: "%s" batch_size: 2 backend: LMDB } }'
                      % (tmp_path / "db"))
    a = caffe.Net(proto, caffe.TRAIN)
    b = caffe.Net(proto, caffe.TEST)
    a.forward()
    b.forward()
    a.forward()
    np.testing.assert_array_equal(a.blobs["label"].data, [2, 0])
    np.testing.assert_array_equal(b.blobs["label"].data, [0, 1])


# ---------------------------------------------------------------------------
# LeNet train_test form
# ---------------------------------------------------------------------------
LENET = """name: "LeNet"
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  data_param { source: "%(train)s" batch_size: 16 backend: LMDB } }
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.00390625 }
  data_param { source: "%(test)s" batch_size: 10 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 8 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 16 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 64 weight_filler { type: "xavier" }
    bias_filler { type: "constant" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 10 weight_filler { type: "xavier" }
    bias_filler { type: "constant" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""


def synthetic_digit(digit, rng):
    img = np.zeros((28, 28), np.uint8)
    cv2.putText(img, str(digit), (4 + rng.randint(0, 4), 24 - rng.randint(0, 4)),
                cv2.FONT_HERSHEY_SIMPLEX, 0.9, 255, 2)
    return img


@pytest.fixture(scope="module")
def lenet_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lenet")
    rng = np.random.RandomState(0)
    for split, n in (("train", 200), ("test", 50)):
        labels = rng.randint(0, 10, size=n)
        write_lmdb(d / ("mnist_%s_lmdb" % split),
                   [raw_datum(synthetic_digit(int(l), rng)[None], int(l)) for l in labels])
    proto = write_net(d / "lenet_train_test.prototxt",
                      LENET % {"train": d / "mnist_train_lmdb", "test": d / "mnist_test_lmdb"})
    return d, proto


def test_lenet_train_test_builds_and_forwards(lenet_dir):
    d, proto = lenet_dir
    train = caffe.Net(proto, caffe.TRAIN)
    test = caffe.Net(proto, caffe.TEST)
    assert train.blobs["data"].data.shape == (16, 1, 28, 28)
    assert test.blobs["data"].data.shape == (10, 1, 28, 28)
    assert "accuracy" in test.blobs and "accuracy" not in train.blobs
    out = train.forward()
    assert np.isfinite(out["loss"])
    assert train.blobs["data"].data.max() <= 1.0 and train.blobs["data"].data.max() > 0.5
    train.backward()
    out = test.forward()
    assert 0 <= out["accuracy"] <= 1


def test_lenet_sgd_lowers_loss(lenet_dir):
    try:
        from caffe import SGDSolver  # noqa: F401
    except Exception as exc:   # the solvers land separately
        pytest.skip("caffe.SGDSolver not available: %s" % exc)
    d, proto = lenet_dir
    solver_file = d / "solver.prototxt"
    with open(solver_file, "w") as f:
        f.write('net: "%s"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\n'
                'lr_policy: "fixed"\nmax_iter: 1000\ndisplay: 0\nsnapshot_prefix: "%s"\n'
                'random_seed: 1\ntest_iter: 5\ntest_interval: 100000\n'
                % (proto, d / "snap"))
    caffe.set_random_seed(1)
    solver = caffe.SGDSolver(str(solver_file))
    losses = []
    for _ in range(60):
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])


# ---------------------------------------------------------------------------
# ImageData
# ---------------------------------------------------------------------------
def test_imagedata_shuffle_seeded_and_wraps(tmp_path):
    imgs = make_images(str(tmp_path), n=5, h=4, w=4)
    proto = write_net(tmp_path / "n.prototxt",
                      'layer { name: "d" type: "ImageData" top: "data" top: "label" '
                      'image_data_param { source: "%s" root_folder: "%s/" batch_size: 5 '
                      'shuffle: true } }' % (tmp_path / "list.txt", tmp_path))
    seqs = seeded_runs(proto, 5, "data", n=2)
    for batches in seqs:
        for b in batches:   # each epoch is a permutation of the images
            keys = sorted(x.tobytes() for x in b)
            assert keys == sorted(i.transpose(2, 0, 1).astype(np.float32).tobytes()
                                  for i in imgs)
    for a, b in zip(*seqs):
        np.testing.assert_array_equal(a, b)


def test_imagedata_rand_skip(tmp_path):
    make_images(str(tmp_path), n=6, h=3, w=3)
    proto = write_net(tmp_path / "n.prototxt",
                      'layer { name: "d" type: "ImageData" top: "data" top: "label" '
                      'image_data_param { source: "%s" root_folder: "%s/" batch_size: 2 '
                      'rand_skip: 5 } }' % (tmp_path / "list.txt", tmp_path))
    starts = set()
    for seed in range(6):
        caffe.set_random_seed(seed)
        net = caffe.Net(proto, caffe.TEST)
        net.forward()
        starts.add(tuple(net.blobs["label"].data.astype(int)))
    assert len(starts) > 1


# ---------------------------------------------------------------------------
# HDF5Data / HDF5Output
# ---------------------------------------------------------------------------
def test_hdf5data_files_rows_multiple_tops_shuffle(tmp_path):
    files = []
    for f in range(3):
        p = tmp_path / ("f%d.h5" % f)
        with h5py.File(p, "w") as h:
            h["x"] = np.arange(4 * 2, dtype=np.float64).reshape(4, 2) + 100 * f
            h["y"] = (np.arange(4) + 10 * f).astype(np.int32)
            h["z"] = np.zeros((4, 1, 2, 3), np.float32) + f
        files.append(str(p))
    with open(tmp_path / "list.txt", "w") as fl:
        fl.write("\n".join(files) + "\n")
    proto = write_net(tmp_path / "n.prototxt",
                      'layer { name: "d" type: "HDF5Data" top: "y" top: "x" top: "z" '
                      'hdf5_data_param { source: "%s" batch_size: 5 } }' % (tmp_path / "list.txt"))
    net = caffe.Net(proto, caffe.TEST)
    assert net.blobs["z"].data.shape == (5, 1, 2, 3)
    seen = []
    for _ in range(6):
        net.forward()
        seen.extend(net.blobs["y"].data.astype(int).tolist())
        np.testing.assert_array_equal(net.blobs["x"].data[:, 0] % 100 // 2,
                                      net.blobs["y"].data % 10)
    assert seen == ([0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23] * 3)[:30]
    proto_s = write_net(tmp_path / "s.prototxt",
                        'layer { name: "d" type: "HDF5Data" top: "y" top: "x" '
                        'hdf5_data_param { source: "%s" batch_size: 12 shuffle: true } }'
                        % (tmp_path / "list.txt"))
    runs = seeded_runs(proto_s, 9, "y")
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
        assert sorted(a.astype(int).tolist()) == [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]


def test_hdf5output_writes_data_and_label(tmp_path):
    out = tmp_path / "out.h5"
    proto = write_net(tmp_path / "n.prototxt",
                      'layer { name: "in" type: "Input" top: "a" top: "b" input_param { '
                      'shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 } } }\n'
                      'layer { name: "o" type: "HDF5Output" bottom: "a" bottom: "b" '
                      'hdf5_output_param { file_name: "%s" } }' % out)
    net = caffe.Net(proto, caffe.TEST)
    a = np.random.RandomState(0).rand(3, 2, 4).astype(np.float32)
    net.blobs["a"].data[...] = a
    net.blobs["b"].data[...] = [1, 2, 3]
    net.forward()
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["data"][()], a.reshape(3, 2, 4, 1))
        np.testing.assert_array_equal(f["label"][()], np.array([1, 2, 3], np.float32)
                                      .reshape(3, 1, 1, 1))
        assert f["data"].dtype == np.float32


# ---------------------------------------------------------------------------
# MemoryData
# ---------------------------------------------------------------------------
MEMORY = ('layer { name: "d" type: "MemoryData" top: "data" top: "label" '
          'memory_data_param { batch_size: 2 channels: 3 height: 4 width: 5 } }')


def test_memorydata_zero_copy_and_cycle(tmp_path):
    net = caffe.Net(write_net(tmp_path / "n.prototxt", MEMORY), caffe.TEST)
    assert net.blobs["label"].data.shape == (2,)
    data = np.random.RandomState(0).rand(6, 3, 4, 5).astype(np.float32)
    labels = np.arange(6, dtype=np.float32)
    net.set_input_arrays(data, labels)
    for k in range(4):
        net.forward()
        pos = (2 * k) % 6
        np.testing.assert_array_equal(net.blobs["data"].data, data[pos:pos + 2])
        np.testing.assert_array_equal(net.blobs["label"].data.ravel(), labels[pos:pos + 2])
        assert net.blobs["label"].data.shape == (2, 1, 1, 1)
    assert np.shares_memory(net.blobs["data"].data, data)
    data[0:2] = -1      # the blob points into the user's array, as in Caffe
    np.testing.assert_array_equal(net.blobs["data"].data, -1)


def test_memorydata_errors(tmp_path):
    net = caffe.Net(write_net(tmp_path / "n.prototxt", MEMORY), caffe.TEST)
    with pytest.raises(data_mod.DataLayerError, match="set_input_arrays"):
        net.forward()
    good = np.zeros((4, 3, 4, 5), np.float32)
    lab = np.zeros(4, np.float32)
    cases = [
        (np.zeros((4, 3, 4, 5), np.float64), lab, "data array must be float32"),
        (np.zeros((4, 3, 4, 5, 1), np.float32), lab, "data array must be 4-d"),
        (np.zeros((4, 5, 4, 3), np.float32).transpose(0, 3, 2, 1), lab,
         "data array must be C contiguous"),
        (np.zeros((4, 2, 4, 5), np.float32), lab, "wrong number of channels"),
        (np.zeros((4, 3, 3, 5), np.float32), lab, "wrong height"),
        (np.zeros((4, 3, 4, 6), np.float32), lab, "wrong width"),
        (good, np.zeros(3, np.float32), "same first dimension"),
        (np.zeros((3, 3, 4, 5), np.float32), np.zeros(3, np.float32), "multiple of batch size"),
        (good, np.zeros(4, np.float64), "labels array must be float32"),
    ]
    for d, l, msg in cases:
        with pytest.raises(RuntimeError, match=msg):
            net.set_input_arrays(d, l)
    with pytest.raises(ValueError, match="memory_data_param"):
        caffe.Net(write_net(tmp_path / "bad.prototxt",
                            'layer { name: "d" type: "MemoryData" top: "data" top: "label" '
                            'memory_data_param { batch_size: 2 channels: 3 } }'), caffe.TEST)


def test_set_input_arrays_needs_memorydata_first(tmp_path):
    net = caffe.Net(write_net(tmp_path / "n.prototxt",
                              'layer { name: "i" type: "Input" top: "x" '
                              'input_param { shape { dim: 1 } } }'), caffe.TEST)
    with pytest.raises(RuntimeError, match="MemoryData"):
        net.set_input_arrays(np.zeros((1, 1, 1, 1), np.float32), np.zeros(1, np.float32))


# ---------------------------------------------------------------------------
# DummyData
# ---------------------------------------------------------------------------
def test_dummydata_refill_rules_and_legacy_dims(tmp_path):
    net = caffe.Net(write_net(tmp_path / "n.prototxt",
                              'layer { name: "d" type: "DummyData" top: "c" top: "g" top: "u" '
                              'dummy_data_param { num: 2 channels: 3 height: 1 height: 2 '
                              'height: 3 width: 4 '
                              'data_filler { type: "constant" value: 3 } '
                              'data_filler { type: "gaussian" std: 2 } '
                              'data_filler { type: "uniform" min: -1 max: 0 } } }'), caffe.TEST)
    assert net.blobs["c"].data.shape == (2, 3, 1, 4)
    assert net.blobs["g"].data.shape == (2, 3, 2, 4)
    assert net.blobs["u"].data.shape == (2, 3, 3, 4)
    # non-constant fillers are not run at setup (Caffe's refill quirk)
    assert not net.blobs["g"].data.any()
    np.testing.assert_array_equal(net.blobs["c"].data, 3)
    net.blobs["c"].data[...] = 7       # constant tops are never refilled
    net.forward()
    g1 = net.blobs["g"].data.copy()
    assert net.blobs["u"].data.min() >= -1 and net.blobs["u"].data.max() <= 0
    net.forward()
    np.testing.assert_array_equal(net.blobs["c"].data, 7)
    assert not np.array_equal(g1, net.blobs["g"].data)


@pytest.mark.parametrize("ftype", ["constant", "uniform", "gaussian", "positive_unitball",
                                   "xavier", "msra", "bilinear"])
def test_dummydata_every_filler(tmp_path, ftype):
    net = caffe.Net(write_net(tmp_path / "n.prototxt",
                              'layer { name: "d" type: "DummyData" top: "a" top: "b" '
                              'dummy_data_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } '
                              'data_filler { type: "%s" value: 1 } } }' % ftype), caffe.TEST)
    net.forward()
    for b in ("a", "b"):
        assert net.blobs[b].data.shape == (2, 3, 4, 4)
        assert np.isfinite(net.blobs[b].data).all() and net.blobs[b].data.any()


def test_dummydata_errors(tmp_path):
    bad = [
        ('dummy_data_param { shape { dim: 1 } shape { dim: 1 } shape { dim: 1 } }', "shape"),
        ('dummy_data_param { shape { dim: 1 } num: 1 channels: 1 height: 1 width: 1 }',
         "both shape and legacy"),
        ('dummy_data_param { num: 1 }', "channels"),
        ('dummy_data_param { shape { dim: 1 } data_filler { } data_filler { } '
         'data_filler { } }', "data fillers"),
    ]
    for i, (param, msg) in enumerate(bad):
        with pytest.raises(ValueError, match=msg):
            caffe.Net(write_net(tmp_path / ("b%d.prototxt" % i),
                                'layer { name: "d" type: "DummyData" top: "a" top: "b" %s }'
                                % param), caffe.TEST)


# ---------------------------------------------------------------------------
# WindowData
# ---------------------------------------------------------------------------
def test_windowdata(tmp_path):
    rng = np.random.RandomState(0)
    lines = []
    imgs = []
    for i in range(2):
        img = rng.randint(0, 256, size=(20, 24, 3)).astype(np.uint8)
        cv2.imwrite(str(tmp_path / ("w%d.png" % i)), img)
        imgs.append(img)
        lines += ["# %d" % i, "w%d.png" % i, "3", "20", "24", "3",
                  "%d 0.9 2 3 12 15" % (i + 1),
                  "0 0.1 0 0 23 19",
                  "%d 0.4 1 1 5 5" % (i + 1)]      # neither fg nor bg: ignored
    with open(tmp_path / "windows.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    proto = write_net(tmp_path / "n.prototxt",
                      'layer { name: "d" type: "WindowData" top: "data" top: "label" '
                      'transform_param { crop_size: 8 mean_value: 10 } '
                      'window_data_param { source: "%s" root_folder: "%s/" batch_size: 8 '
                      'fg_fraction: 0.25 bg_threshold: 0.3 } }' % (tmp_path / "windows.txt", tmp_path))
    caffe.set_random_seed(0)
    net = caffe.Net(proto, caffe.TRAIN)
    assert net.blobs["data"].data.shape == (8, 3, 8, 8)
    net.forward()
    lab = net.blobs["label"].data
    assert (lab[:6] == 0).all() and set(lab[6:].astype(int)) <= {1, 2}
    data = net.blobs["data"].data
    for k in range(8):
        if lab[k] == 0:
            cands = [cv2.resize(im[0:20, 0:24], (8, 8)) for im in imgs]
        else:
            im = imgs[int(lab[k]) - 1]
            cands = [cv2.resize(im[3:16, 2:13], (8, 8))]
        wants = [c.transpose(2, 0, 1).astype(np.float32) - 10 for c in cands]
        assert any(np.array_equal(data[k], w) for w in wants)
    # context padding and square mode run and keep the shape
    proto2 = write_net(tmp_path / "n2.prototxt",
                       'layer { name: "d" type: "WindowData" top: "data" top: "label" '
                       'transform_param { crop_size: 8 mirror: true } '
                       'window_data_param { source: "%s" root_folder: "%s/" batch_size: 4 '
                       'context_pad: 2 crop_mode: "square" cache_images: true } }'
                       % (tmp_path / "windows.txt", tmp_path))
    net2 = caffe.Net(proto2, caffe.TRAIN)
    net2.forward()
    assert net2.blobs["data"].data.shape == (4, 3, 8, 8)


# ---------------------------------------------------------------------------
# errors and prefetching
# ---------------------------------------------------------------------------
def test_errors_name_layer_and_source(tmp_path):
    cases = [
        ('layer { name: "dl" type: "Data" top: "data" data_param { source: "%s" '
         'batch_size: 1 backend: LMDB } }' % (tmp_path / "nope_lmdb"), "nope_lmdb"),
        ('layer { name: "dl" type: "ImageData" top: "data" top: "label" image_data_param { '
         'source: "%s" batch_size: 1 } }' % (tmp_path / "nolist.txt"), "nolist.txt"),
        ('layer { name: "dl" type: "HDF5Data" top: "data" hdf5_data_param { source: "%s" '
         'batch_size: 1 } }' % (tmp_path / "nolist.txt"), "nolist.txt"),
        ('layer { name: "dl" type: "WindowData" top: "data" top: "label" transform_param { '
         'crop_size: 2 } window_data_param { source: "%s" batch_size: 1 } }'
         % (tmp_path / "nowin.txt"), "nowin.txt"),
    ]
    for i, (text, src) in enumerate(cases):
        with pytest.raises(LayerError) as ei:
            caffe.Net(write_net(tmp_path / ("e%d.prototxt" % i), text), caffe.TEST)
        assert "'dl'" in str(ei.value) and src in str(ei.value)


def test_missing_image_and_hdf5_dataset(tmp_path):
    make_images(str(tmp_path), n=3, h=3, w=3)
    with open(tmp_path / "list2.txt", "w") as f:
        f.write("im0.png 0\nim1.png 1\nmissing.png 2\n")
    proto = write_net(tmp_path / "n.prototxt",
                      'layer { name: "img" type: "ImageData" top: "data" top: "label" '
                      'image_data_param { source: "%s" root_folder: "%s/" batch_size: 2 } }'
                      % (tmp_path / "list2.txt", tmp_path))
    net = caffe.Net(proto, caffe.TEST)
    net.forward()
    t0 = time.time()
    with pytest.raises(data_mod.DataLayerError) as ei:
        net.forward()
    assert time.time() - t0 < 10
    msg = str(ei.value)
    assert "missing.png" in msg and "list2.txt" in msg and "'img'" in msg
    with pytest.raises(data_mod.DataLayerError):   # stays failed, never hangs
        net.forward()
    # unreadable first image: raised at construction
    with open(tmp_path / "list3.txt", "w") as f:
        f.write("missing.png 2\n")
    with pytest.raises(data_mod.DataLayerError, match="missing.png"):
        caffe.Net(write_net(tmp_path / "n3.prototxt",
                            'layer { name: "img" type: "ImageData" top: "data" top: "label" '
                            'image_data_param { source: "%s" batch_size: 2 } }'
                            % (tmp_path / "list3.txt")), caffe.TEST)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["data"] = np.zeros((2, 3), np.float32)
    with open(tmp_path / "h5.txt", "w") as f:
        f.write(str(tmp_path / "a.h5") + "\n")
    with pytest.raises(data_mod.DataLayerError) as ei:
        caffe.Net(write_net(tmp_path / "h.prototxt",
                            'layer { name: "h" type: "HDF5Data" top: "data" top: "label" '
                            'hdf5_data_param { source: "%s" batch_size: 2 } }'
                            % (tmp_path / "h5.txt")), caffe.TEST)
    assert "'label'" in str(ei.value) and "h5.txt" in str(ei.value)


def test_corrupt_record_raises_in_caller_with_key(tmp_path):
    good = raw_datum(np.zeros((1, 2, 2), np.uint8), 0)
    bad = caffe_pb2.Datum()
    bad.channels, bad.height, bad.width = 1, 2, 2
    bad.data = b"\x00\x01"            # 2 bytes for 4 pixels
    write_lmdb(tmp_path / "db", [good, good, good, bad])
    net = caffe.Net(write_net(tmp_path / "n.prototxt",
                              'layer { name: "d" type: "Data" top: "data" top: "label" '
                              'data_param { source: "%s" batch_size: 2 backend: LMDB } }'
                              % (tmp_path / "db")), caffe.TEST)
    net.forward()
    with pytest.raises(data_mod.DataLayerError) as ei:
        net.forward()
    assert "00000003" in str(ei.value) and str(tmp_path / "db") in str(ei.value)


def test_prefetch_threads_stop_when_net_is_collected(tmp_path):
    write_lmdb(tmp_path / "db", [raw_datum(np.zeros((1, 2, 2), np.uint8), 0)] * 3)
    proto = write_net(tmp_path / "n.prototxt",
                      'layer { name: "d" type: "Data" top: "data" top: "label" '
                      'data_param { source: "%s" batch_size: 2 backend: LMDB } }'
                      % (tmp_path / "db"))

    def prefetch_threads():
        return [t for t in threading.enumerate() if t.name.startswith("caffe-")]

    gc.collect()
    before = len(prefetch_threads())
    net = caffe.Net(proto, caffe.TEST)
    net.forward()
    assert len(prefetch_threads()) == before + 1
    del net
    gc.collect()
    deadline = time.time() + 5
    while len(prefetch_threads()) > before and time.time() < deadline:
        time.sleep(0.02)
    assert len(prefetch_threads()) == before
    assert not data_mod._shared_dbs


def test_prefetch_overlaps_compute():
    from caffe.prefetch import Prefetcher

    class Slow:
        def __init__(self):
            self.i = 0

        def load_batch(self):
            time.sleep(0.05)
            self.i += 1
            return self.i

    pf = Prefetcher(Slow(), depth=3)
    time.sleep(0.3)               # "compute" while the queue fills
    t0 = time.time()
    got = [pf.get() for _ in range(3)]
    assert got == [1, 2, 3] and time.time() - t0 < 0.1
    pf.stop()
    assert not pf.alive
