"""What pycaffe's own python/caffe/test/test_net.py checks, restated: arrays
outlive the net, forward/backward (whole and partial), clearing param diffs,
inputs/outputs, top/bottom names, save/load (binary and HDF5), NetState level
and stage rules, set_input_arrays with MemoryData, reshape; plus the golden
HDF5 weights written by Caffe's save_hdf5."""
import json
import os
from collections import OrderedDict

import numpy as np
import pytest
from golden_cases import GOLDEN, NET_TOL, chdir

import caffe

NUM_OUTPUT = 13


def _simple_net_text(num_output):
    # the net of pycaffe's test_net.py (after test_net.cpp), written out again
    return """name: 'testnet' force_backward: true
layer { type: 'DummyData' name: 'data' top: 'data' top: 'label'
  dummy_data_param { num: 5 channels: 2 height: 3 width: 4
                     num: 5 channels: 1 height: 1 width: 1
                     data_filler { type: 'gaussian' std: 1 }
                     data_filler { type: 'constant' } } }
layer { type: 'Convolution' name: 'conv' bottom: 'data' top: 'conv'
  convolution_param { num_output: 11 kernel_size: 2 pad: 3
                      weight_filler { type: 'gaussian' std: 1 }
                      bias_filler { type: 'constant' value: 2 } }
  param { decay_mult: 1 } param { decay_mult: 0 } }
layer { type: 'InnerProduct' name: 'ip' bottom: 'conv' top: 'ip_blob'
  inner_product_param { num_output: %d
                        weight_filler { type: 'gaussian' std: 2.5 }
                        bias_filler { type: 'constant' value: -3 } } }
layer { type: 'SoftmaxWithLoss' name: 'loss' bottom: 'ip_blob' bottom: 'label'
  top: 'loss' }
""" % num_output


@pytest.fixture
def net_file(tmp_path):
    p = tmp_path / "simple.prototxt"
    p.write_text(_simple_net_text(NUM_OUTPUT))
    return str(p)


@pytest.fixture
def net(net_file):
    n = caffe.Net(net_file, caffe.TRAIN)
    n.blobs["label"].data[...] = np.random.randint(NUM_OUTPUT, size=n.blobs["label"].data.shape)
    return n


def test_arrays_outlive_the_net(net):
    params = [b for blobs in net.params.values() for b in blobs]
    blobs = list(net.blobs.values())
    arrays = [b.data for b in params + blobs] + [b.diff for b in params + blobs]
    del net, params, blobs
    import gc
    gc.collect()
    total = sum(float(a.sum()) for a in arrays)
    assert np.isfinite(total)


def test_layer_dict(net):
    assert list(net.layer_dict.keys()) == list(net._layer_names)
    for i, name in enumerate(net._layer_names):
        assert net.layer_dict[name].type == net.layers[i].type
    assert [l.type for l in net.layers] == ["DummyData", "Convolution", "InnerProduct",
                                            "SoftmaxWithLoss"]


def test_forward_backward_runs(net):
    out = net.forward()
    assert set(out) == {"loss"} and out["loss"].shape == ()
    diffs = net.backward()
    assert diffs == {}          # no net inputs
    assert np.abs(net.blobs["data"].diff).sum() > 0       # force_backward


def test_forward_partial_matches_manual_inner_product(net):
    conv = net.blobs["conv"]
    sample = np.random.uniform(size=conv.data.shape).astype(np.float32)
    conv.data[:] = sample
    out = net.forward(start="ip", end="ip")
    assert "ip_blob" in out
    w, b = net.params["ip"][0].data, net.params["ip"][1].data
    manual = np.array([w.dot(sample[i].reshape(-1)) + b for i in range(sample.shape[0])])
    np.testing.assert_allclose(net.blobs["ip_blob"].data, manual, rtol=1e-3, atol=1e-5)


def test_backward_partial_matches_manual_inner_product(net):
    net.forward()
    ip = net.blobs["ip_blob"]
    sample = np.random.uniform(size=ip.data.shape).astype(np.float32)
    ip.diff[:] = sample
    out = net.backward(start="ip", end="ip")
    assert "conv" in out
    w = net.params["ip"][0].data
    manual = np.array([w.T.dot(sample[i]) for i in range(sample.shape[0])])
    np.testing.assert_allclose(net.blobs["conv"].diff,
                               manual.reshape(net.blobs["conv"].data.shape),
                               rtol=1e-3, atol=1e-5)


def test_clear_param_diffs(net):
    net.forward()
    net.backward()
    diff = net.params["conv"][0].diff
    assert diff.max() > 0
    net.clear_param_diffs()
    assert (diff == 0).all()


def test_inputs_outputs(net):
    assert net.inputs == []
    assert net.outputs == ["loss"]


def test_top_bottom_names(net):
    assert net.top_names == OrderedDict([("data", ["data", "label"]), ("conv", ["conv"]),
                                         ("ip", ["ip_blob"]), ("loss", ["loss"])])
    assert net.bottom_names == OrderedDict([("data", []), ("conv", ["data"]), ("ip", ["conv"]),
                                            ("loss", ["ip_blob", "label"])])


def _same_params(a, b):
    assert list(a.params) == list(b.params)
    for name in a.params:
        for i in range(len(a.params[name])):
            assert np.abs(a.params[name][i].data - b.params[name][i].data).sum() == 0


def test_save_and_load(net, net_file, tmp_path):
    path = str(tmp_path / "w.caffemodel")
    net.save(path)
    legacy = caffe.Net(net_file, path, caffe.TRAIN)        # legacy constructor
    named = caffe.Net(net_file, caffe.TRAIN, weights=path)
    _same_params(net, legacy)
    _same_params(net, named)
    fresh = caffe.Net(net_file, caffe.TRAIN)
    fresh.copy_from(path)
    _same_params(net, fresh)


def test_save_and_load_hdf5(net, net_file, tmp_path):
    path = str(tmp_path / "w.caffemodel.h5")
    net.save_hdf5(path)
    other = caffe.Net(net_file, caffe.TRAIN)
    other.load_hdf5(path)
    _same_params(net, other)
    import h5py
    with h5py.File(path, "r") as f:
        assert sorted(f["data"].keys()) == ["conv", "ip"]
        assert f["data/conv/0"].shape == (11, 2, 2, 2)


# ---------------------------------------------------------------------------
# Golden HDF5 weights written by Caffe's Net::ToHDF5
# ---------------------------------------------------------------------------
def _golden_resnet(net_from):
    d = os.path.join(GOLDEN, "nets")
    meta = json.load(open(os.path.join(d, "mini_resnet.json")))
    ref = np.load(os.path.join(d, "mini_resnet.npz"))
    phase = caffe.TRAIN if meta["phase"] == "TRAIN" else caffe.TEST
    with chdir(d):
        net = net_from(meta.get("source", "mini_resnet.prototxt"), phase)
    for blob, shape in meta["input_shapes_after_reshape"].items():
        net.blobs[blob].reshape(*shape)
    net.reshape()
    net.blobs["data"].data[...] = ref["in/data"]
    net.forward()
    for key in ref.files:
        if key.startswith("out/"):
            np.testing.assert_allclose(net.blobs[key[4:]].data, ref[key], err_msg=key,
                                       **NET_TOL)


def test_golden_hdf5_load_hdf5():
    def make(src, phase):
        n = caffe.Net(src, phase)
        n.load_hdf5("mini_resnet.caffemodel.h5")
        return n
    _golden_resnet(make)


def test_golden_hdf5_weights_argument():
    _golden_resnet(lambda src, phase: caffe.Net(src, phase,
                                                weights="mini_resnet.caffemodel.h5"))


# ---------------------------------------------------------------------------
# NetState rules (test_net.py's TestLevels / TestStages / TestAllInOne)
# ---------------------------------------------------------------------------
def _ip(name, rules=""):
    return ('layer { name: "%s" type: "InnerProduct" bottom: "data" top: "%s" %s '
            'inner_product_param { num_output: 1 } }\n' % (name, name, rules))


DUMMY = ('layer { name: "data" type: "DummyData" top: "data" '
         'dummy_data_param { shape { dim: 1 dim: 1 dim: 10 dim: 10 } } }\n')

LEVELS_NET = (DUMMY + _ip("NoLevel") + _ip("Level0Only", "include { min_level: 0 max_level: 0 }")
              + _ip("Level1Only", "include { min_level: 1 max_level: 1 }")
              + _ip("Level>=0", "include { min_level: 0 }")
              + _ip("Level>=1", "include { min_level: 1 }"))

STAGES_NET = (DUMMY + _ip("A", 'include { stage: "A" }') + _ip("B", 'include { stage: "B" }')
              + _ip("AorB", 'include { stage: "A" } include { stage: "B" }')
              + _ip("AandB", 'include { stage: "A" stage: "B" }'))

ALL_IN_ONE_NET = """
layer { name: "train_data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 1 dim: 1 dim: 10 dim: 10 } shape { dim: 1 dim: 1 dim: 1 dim: 1 } }
  include { phase: TRAIN stage: "train" } }
layer { name: "val_data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 1 dim: 1 dim: 10 dim: 10 } shape { dim: 1 dim: 1 dim: 1 dim: 1 } }
  include { phase: TEST stage: "val" } }
layer { name: "deploy_data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 1 dim: 10 dim: 10 } }
  include { phase: TEST stage: "deploy" } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
  include: { phase: TRAIN stage: "train" } include: { phase: TEST stage: "val" } }
layer { name: "pred" type: "Softmax" bottom: "ip" top: "pred"
  include: { phase: TEST stage: "deploy" } }
"""


def _write(tmp_path, text):
    p = tmp_path / "net.prototxt"
    p.write_text(text)
    return str(p)


def _non_data_blobs(net):
    return [b for b in net.blobs.keys() if "data" not in b]


@pytest.mark.parametrize("level, expected", [
    (0, ["NoLevel", "Level0Only", "Level>=0"]),
    (1, ["NoLevel", "Level1Only", "Level>=0", "Level>=1"]),
])
def test_levels(tmp_path, level, expected):
    path = _write(tmp_path, LEVELS_NET)
    net = caffe.Net(path, caffe.TEST, level=level) if level else caffe.Net(path, caffe.TEST)
    assert _non_data_blobs(net) == expected


@pytest.mark.parametrize("stages, expected", [
    (["A"], ["A", "AorB"]),
    (["B"], ["B", "AorB"]),
    (["A", "B"], ["A", "B", "AorB", "AandB"]),
])
def test_stages(tmp_path, stages, expected):
    net = caffe.Net(_write(tmp_path, STAGES_NET), caffe.TEST, stages=stages)
    assert _non_data_blobs(net) == expected


@pytest.mark.parametrize("phase, stage, outputs", [
    (caffe.TRAIN, "train", ["loss"]),
    (caffe.TEST, "val", ["loss"]),
    (caffe.TEST, "deploy", ["pred"]),
])
def test_all_in_one(tmp_path, phase, stage, outputs):
    net = caffe.Net(_write(tmp_path, ALL_IN_ONE_NET), phase, stages=[stage])
    assert list(net.blobs["data"].shape) == [1, 1, 10, 10]
    assert net.outputs == outputs
    if stage == "deploy":
        assert net.inputs == ["data"]


# ---------------------------------------------------------------------------
# set_input_arrays (MemoryData) and reshape
# ---------------------------------------------------------------------------
MEMORY_NET = """name: "mem"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
  memory_data_param { batch_size: 2 channels: 3 height: 4 width: 5 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "constant" value: 1 } } }
layer { name: "silence" type: "Silence" bottom: "label" }
"""


def _has_memory_data():
    return "MemoryData" in caffe.layer_type_list()


@pytest.mark.skipif(not _has_memory_data(), reason="MemoryData layer not registered yet")
def test_set_input_arrays(tmp_path):
    net = caffe.Net(_write(tmp_path, MEMORY_NET), caffe.TEST)
    data = np.arange(4 * 3 * 4 * 5, dtype=np.float32).reshape(4, 3, 4, 5)
    labels = np.arange(4, dtype=np.float32)
    net.set_input_arrays(data, labels)          # 1-D labels become (N,1,1,1)
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, data[:2])
    np.testing.assert_array_equal(net.blobs["label"].data.reshape(-1), labels[:2])
    np.testing.assert_allclose(net.blobs["ip"].data[:, 0], data[:2].reshape(2, -1).sum(1))
    net.forward()                               # the next batch
    np.testing.assert_array_equal(net.blobs["data"].data, data[2:])
    net.forward()                               # and round again
    np.testing.assert_array_equal(net.blobs["data"].data, data[:2])
    with pytest.raises(RuntimeError, match="multiple of"):
        net.set_input_arrays(data[:3], labels[:3])      # not a multiple of batch_size


def test_set_input_arrays_needs_memory_data(net):
    with pytest.raises(RuntimeError, match="MemoryData"):
        net.set_input_arrays(np.zeros((5, 2, 3, 4), np.float32), np.zeros(5, np.float32))


def test_reshape_propagates(tmp_path):
    text = """name: "r"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" } } }
"""
    net = caffe.Net(_write(tmp_path, text), caffe.TEST)
    assert net.blobs["conv"].data.shape == (2, 4, 6, 6)
    net.blobs["data"].reshape(1, 3, 10, 12)
    net.reshape()
    assert net.blobs["conv"].data.shape == (1, 4, 8, 10)
    net.blobs["data"].reshape(3, 3, 5, 5)
    net.blobs["data"].data[...] = 1
    out = net.forward()
    assert out["conv"].shape == (3, 4, 3, 3)


def test_backward_partial_without_forward(net):
    # pycaffe's test_backward_start_end: no forward before the backward
    ip = net.blobs["ip_blob"]
    sample = np.random.uniform(size=ip.data.shape).astype(np.float32)
    ip.diff[:] = sample
    out = net.backward(start="ip", end="ip")
    w = net.params["ip"][0].data
    np.testing.assert_allclose(out["conv"].reshape(len(sample), -1), sample.dot(w),
                               rtol=1e-3, atol=1e-5)


def test_client_code_can_set_attributes(net, tmp_path):
    # py-faster-rcnn's test_net.py: net.name = <caffemodel basename>, read back
    assert net.name == "testnet"
    net.name = "vgg16_faster_rcnn_iter_70000"
    assert net.name == "vgg16_faster_rcnn_iter_70000"
    assert "testnet" in repr(net)               # the net itself is unchanged
    net.phase = "mine"
    assert net.phase == "mine"
    net._something = 3
    blob = net.blobs["data"]
    blob.my_tag = "roi"
    assert net.blobs["data"].my_tag == "roi"
    layer = net.layers[0]
    layer.set_roidb = lambda roidb: roidb
    assert net.layers[0].set_roidb(5) == 5
    assert net.layer_dict["data"].set_roidb(6) == 6
    (tmp_path / "solver.prototxt").write_text(
        'net: "%s" base_lr: 0.01 lr_policy: "fixed" max_iter: 1\n'
        % os.path.join(str(tmp_path), "simple.prototxt"))
    solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
    solver.output_dir = "out"
    assert solver.output_dir == "out"
    solver.net.layers[0].set_roidb = "x"
    assert solver.net.layers[0].set_roidb == "x"
    # what pycaffe itself makes read-only stays read-only
    with pytest.raises(AttributeError):
        net.blobs = {}
    with pytest.raises(AttributeError):
        blob.shape = (1,)
