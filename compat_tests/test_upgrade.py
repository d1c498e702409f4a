"""Legacy-format upgrades (caffe.upgrade and the three upgrade_* console tools)
against BVLC Caffe's behaviour (golden/legacy, produced by Caffe itself)."""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from google.protobuf import text_format  # noqa: E402

from caffe import (  # noqa: E402  # noqa: E402
    protoio,
    upgrade,
    upgrade_net_proto_binary,
    upgrade_net_proto_text,
    upgrade_solver_proto_text,  # noqa: E402
)
from caffe.proto import caffe_pb2  # noqa: E402

LEGACY = os.path.join(HERE, "golden", "legacy")
V1_TXT = os.path.join(LEGACY, "lenet_v1.prototxt")
V1_MODEL = os.path.join(LEGACY, "lenet_v1.caffemodel")
UPGRADED_TXT = os.path.join(LEGACY, "lenet_v1_upgraded.prototxt")


def net_from_text(text):
    return text_format.Parse(text, caffe_pb2.NetParameter())


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------
# V1 prototxt: byte-exact tool output
# --------------------------------------------------------------------------

def test_text_tool_output_is_byte_identical(tmp_path):
    out = tmp_path / "up.prototxt"
    assert upgrade_net_proto_text.main([V1_TXT, str(out)]) == 0
    assert read_bytes(out) == read_bytes(UPGRADED_TXT)


def test_text_tool_as_module(tmp_path):
    out = tmp_path / "up.prototxt"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "caffe.upgrade_net_proto_text", V1_TXT, str(out)],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert read_bytes(out) == read_bytes(UPGRADED_TXT)
    assert "deprecated V1LayerParameter" in r.stderr
    assert "Wrote upgraded NetParameter text proto to" in r.stderr


def test_upgrade_api_matches_golden():
    net = text_format.Parse(open(V1_TXT).read(), caffe_pb2.NetParameter())
    assert upgrade.net_needs_upgrade(net)
    assert upgrade.upgrade_net(net, V1_TXT) is True
    assert protoio.format_text(net) == open(UPGRADED_TXT).read()
    assert not upgrade.net_needs_upgrade(net)
    assert upgrade.upgrade_net(net, V1_TXT) is False
    # the printer agrees with parsing the golden file back
    golden = text_format.Parse(open(UPGRADED_TXT).read(), caffe_pb2.NetParameter())
    assert golden == net


def test_text_tool_already_latest(tmp_path, caplog):
    out = tmp_path / "same.prototxt"
    with caplog.at_level(logging.INFO, logger="caffe"):
        assert upgrade_net_proto_text.main([UPGRADED_TXT, str(out)]) == 0
    assert "File already in latest proto format: " + UPGRADED_TXT in caplog.text
    assert read_bytes(out) == read_bytes(UPGRADED_TXT)


def test_tool_usage_and_parse_errors(tmp_path):
    assert upgrade_net_proto_text.main([V1_TXT]) == 1
    bad = tmp_path / "bad.prototxt"
    bad.write_text("layer { nme: 'x' }\n")
    assert upgrade_net_proto_text.main([str(bad), str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
    assert upgrade_net_proto_binary.main([str(tmp_path / "missing"), str(tmp_path / "o")]) == 2


def test_logs_caffe_messages(caplog):
    net = text_format.Parse(open(V1_TXT).read(), caffe_pb2.NetParameter())
    with caplog.at_level(logging.INFO, logger="caffe"):
        upgrade.upgrade_net(net, "lenet_v1.prototxt")
    msgs = [r.getMessage() for r in caplog.records]
    assert ("Attempting to upgrade input file specified using deprecated "
            "V1LayerParameter: lenet_v1.prototxt") in msgs
    assert "Successfully upgraded file specified using deprecated V1LayerParameter" in msgs
    assert ("Attempting to upgrade input file specified using deprecated "
            "input fields: lenet_v1.prototxt") in msgs
    assert any(r.levelno == logging.WARNING and "input layers and not input fields"
               in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------
# V1 caffemodel
# --------------------------------------------------------------------------

def test_v1_caffemodel_upgrade_keeps_blobs():
    orig = caffe_pb2.NetParameter.FromString(read_bytes(V1_MODEL))
    assert len(orig.layers) > 0 and len(orig.layer) == 0
    net = caffe_pb2.NetParameter()
    net.CopyFrom(orig)
    assert upgrade.upgrade_net(net, V1_MODEL)
    assert len(net.layers) == 0
    assert [l.name for l in net.layer] == [l.name for l in orig.layers]
    assert [l.type for l in net.layer] == ["Convolution", "InnerProduct", "InnerProduct"]
    for new, old in zip(net.layer, orig.layers):
        assert len(new.blobs) == len(old.blobs) == 2
        for nb, ob in zip(new.blobs, old.blobs):
            assert (nb.num, nb.channels, nb.height, nb.width) == \
                (ob.num, ob.channels, ob.height, ob.width)
            assert len(nb.shape.dim) == 0
            np.testing.assert_array_equal(np.array(nb.data), np.array(ob.data))
    conv = net.layer[0]
    assert (conv.blobs[0].num, conv.blobs[0].channels, conv.blobs[0].height,
            conv.blobs[0].width) == (4, 1, 3, 3)
    assert (conv.blobs[1].num, conv.blobs[1].channels, conv.blobs[1].height,
            conv.blobs[1].width) == (1, 1, 1, 4)


def test_binary_tool(tmp_path):
    out = tmp_path / "up.caffemodel"
    assert upgrade_net_proto_binary.main([V1_MODEL, str(out)]) == 0
    net = caffe_pb2.NetParameter.FromString(read_bytes(out))
    assert not upgrade.net_needs_upgrade(net)
    assert [l.type for l in net.layer] == ["Convolution", "InnerProduct", "InnerProduct"]
    assert net.layer[1].blobs[0].height == 6 and net.layer[1].blobs[0].width == 100
    # running it again: already latest, output identical
    out2 = tmp_path / "up2.caffemodel"
    assert upgrade_net_proto_binary.main([str(out), str(out2)]) == 0
    assert read_bytes(out) == read_bytes(out2)


def test_v1_param_specs():
    net = net_from_text("""
      layers { name: "a" type: CONVOLUTION bottom: "x" top: "y"
               param: "w" param: "b" blob_share_mode: PERMISSIVE
               blobs_lr: 1 blobs_lr: 2 blobs_lr: 3 weight_decay: 1
               loss_weight: 0.5
               include { phase: TRAIN } exclude { stage: "deploy" }
               convolution_param { num_output: 2 kernel_size: 1 } }
      layers { name: "n" type: NONE }
      layers { name: "l" type: SOFTMAX_LOSS bottom: "y" bottom: "t" top: "loss"
               loss_param { ignore_label: 3 } }
      layers { name: "t" type: TANH }
      layers { name: "i2c" type: IM2COL }
    """)
    assert upgrade.upgrade_net(net, "p.prototxt")
    a = net.layer[0]
    assert [(p.name, p.lr_mult) for p in a.param] == [("w", 1), ("b", 2), ("", 3)]
    assert a.param[0].HasField("share_mode")
    assert a.param[0].share_mode == caffe_pb2.ParamSpec.PERMISSIVE
    assert not a.param[1].HasField("share_mode")
    assert a.param[0].decay_mult == 1 and not a.param[1].HasField("decay_mult")
    assert list(a.loss_weight) == [0.5]
    assert a.include[0].phase == caffe_pb2.TRAIN
    assert list(a.exclude[0].stage) == ["deploy"]
    assert a.convolution_param.num_output == 2
    assert net.layer[1].HasField("type") and net.layer[1].type == ""
    assert net.layer[2].type == "SoftmaxWithLoss"
    assert net.layer[2].loss_param.ignore_label == 3
    assert net.layer[3].type == "TanH"
    assert net.layer[4].type == "Im2col"


def test_v1_type_table_is_complete():
    names = caffe_pb2.V1LayerParameter.LayerType.keys()
    assert set(names) == set(upgrade.V1_LAYER_TYPES)


def test_v1_data_transform_upgrade():
    net = net_from_text("""
      layers { name: "d" type: DATA top: "data" top: "label"
               data_param { source: "db" batch_size: 4 scale: 0.00390625
                            mean_file: "m.binaryproto" crop_size: 7 mirror: true } }
      layers { name: "w" type: WINDOW_DATA top: "data2" window_data_param { mirror: false } }
      layers { name: "plain" type: DATA top: "data3" }
    """)
    assert upgrade.net_needs_data_upgrade(net)
    upgrade.upgrade_net(net)
    d = net.layer[0]
    assert d.type == "Data"
    assert d.data_param.source == "db" and d.data_param.batch_size == 4
    for f in ("scale", "mean_file", "crop_size", "mirror"):
        assert not d.data_param.HasField(f)
    assert d.transform_param.scale == pytest.approx(0.00390625)
    assert d.transform_param.mean_file == "m.binaryproto"
    assert d.transform_param.crop_size == 7 and d.transform_param.mirror is True
    w = net.layer[1]
    assert w.transform_param.HasField("mirror") and w.transform_param.mirror is False
    # like Caffe, every DATA layer ends up with (possibly empty) sub-messages
    plain = net.layer[2]
    assert plain.HasField("data_param") and plain.HasField("transform_param")
    text = protoio.format_text(plain)
    assert "data_param {\n}\n" in text and "transform_param {\n}\n" in text


# --------------------------------------------------------------------------
# V0
# --------------------------------------------------------------------------

V0_NET = """
name: "v0net"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
force_backward: true
layers {
  layer { name: "src" type: "data" source: "train_db" batchsize: 16 scale: 0.5
          meanfile: "mean.binaryproto" cropsize: 6 mirror: true rand_skip: 3 }
  top: "img" top: "label"
}
layers {
  layer { name: "pad1" type: "padding" pad: 2 }
  bottom: "data" top: "pad1"
}
layers {
  layer { name: "conv1" type: "conv" num_output: 5 kernelsize: 3 stride: 2 group: 1
          biasterm: false
          weight_filler { type: "gaussian" std: 0.01 }
          bias_filler { type: "constant" value: 0.1 }
          blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 }
  bottom: "pad1" top: "conv1"
}
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers {
  layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 1 pad: 1 }
  bottom: "conv1" top: "pool1"
}
layers {
  layer { name: "norm1" type: "lrn" local_size: 3 alpha: 0.0001 beta: 0.75 k: 2 }
  bottom: "pool1" top: "norm1"
}
layers {
  layer { name: "fc" type: "innerproduct" num_output: 10 }
  bottom: "norm1" top: "fc"
}
layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.3 } bottom: "fc" top: "fc" }
layers { layer { name: "cat" type: "concat" concat_dim: 1 } bottom: "fc" bottom: "fc" top: "cat" }
layers {
  layer { name: "imgs" type: "images" source: "list.txt" shuffle_images: true
          new_height: 32 new_width: 30 batchsize: 2 }
  top: "im" top: "iml"
}
layers {
  layer { name: "win" type: "window_data" source: "w.txt" det_fg_threshold: 0.6
          det_bg_threshold: 0.4 det_fg_fraction: 0.3 det_context_pad: 16
          det_crop_mode: "square" batchsize: 8 }
  top: "wd" top: "wl"
}
layers {
  layer { name: "out" type: "hdf5_output" hdf5_output_param { file_name: "o.h5" } }
  bottom: "fc" bottom: "label"
}
layers { layer { name: "loss" type: "softmax_loss" } bottom: "fc" bottom: "label" top: "loss" }
"""


def test_v0_upgrade():
    net = net_from_text(V0_NET)
    assert upgrade.net_needs_v0_to_v1_upgrade(net)
    assert upgrade.upgrade_net_as_needed("v0.prototxt", net) is True
    assert len(net.layers) == 0 and len(net.input) == 0 and len(net.input_dim) == 0
    assert net.name == "v0net" and net.force_backward is True
    L = {l.name: l for l in net.layer}
    names = [l.name for l in net.layer]
    assert names == ["input", "src", "conv1", "relu1", "pool1", "norm1", "fc", "drop", "cat",
                     "imgs", "win", "out", "loss"]          # padding layer folded away
    assert list(L["input"].top) == ["data"]
    assert list(L["input"].input_param.shape[0].dim) == [1, 3, 8, 8]
    src = L["src"]
    assert src.type == "Data"
    assert (src.data_param.source, src.data_param.batch_size, src.data_param.rand_skip) == \
        ("train_db", 16, 3)
    tp = src.transform_param
    assert (tp.scale, tp.mean_file, tp.crop_size, tp.mirror) == \
        (0.5, "mean.binaryproto", 6, True)
    conv = L["conv1"]
    assert conv.type == "Convolution"
    assert list(conv.bottom) == ["data"]                     # re-pointed past the padding
    cp = conv.convolution_param
    assert cp.num_output == 5 and list(cp.kernel_size) == [3] and list(cp.stride) == [2]
    assert list(cp.pad) == [2] and cp.group == 1 and cp.bias_term is False
    assert cp.weight_filler.type == "gaussian"
    assert cp.weight_filler.std == pytest.approx(0.01)
    assert cp.bias_filler.value == pytest.approx(0.1)
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    assert L["relu1"].type == "ReLU"
    pp = L["pool1"].pooling_param
    assert L["pool1"].type == "Pooling"
    assert (pp.pool, pp.kernel_size, pp.stride, pp.pad) == \
        (caffe_pb2.PoolingParameter.AVE, 2, 1, 1)
    lrn = L["norm1"].lrn_param
    assert L["norm1"].type == "LRN" and lrn.local_size == 3
    assert lrn.alpha == pytest.approx(1e-4) and lrn.beta == 0.75 and lrn.k == 2
    assert L["fc"].type == "InnerProduct" and L["fc"].inner_product_param.num_output == 10
    assert L["drop"].dropout_param.dropout_ratio == pytest.approx(0.3)
    assert L["cat"].type == "Concat" and L["cat"].concat_param.concat_dim == 1
    im = L["imgs"].image_data_param
    assert L["imgs"].type == "ImageData"
    assert (im.source, im.shuffle, im.new_height, im.new_width, im.batch_size) == \
        ("list.txt", True, 32, 30, 2)
    wd = L["win"].window_data_param
    assert L["win"].type == "WindowData"
    assert wd.fg_threshold == pytest.approx(0.6) and wd.bg_threshold == pytest.approx(0.4)
    assert wd.fg_fraction == pytest.approx(0.3) and wd.context_pad == 16
    assert wd.crop_mode == "square" and wd.batch_size == 8
    assert L["out"].type == "HDF5Output"
    assert L["out"].hdf5_output_param.file_name == "o.h5"
    assert L["loss"].type == "SoftmaxWithLoss"
    assert not upgrade.net_needs_upgrade(net)


def test_v0_misplaced_field_logs_and_continues(caplog, tmp_path):
    text = """
      input: "x"
      layers { layer { name: "r" type: "relu" num_output: 3 kernelsize: 2 } bottom: "x" top: "y" }
    """
    net = net_from_text(text)
    with caplog.at_level(logging.INFO, logger="caffe"):
        assert upgrade.upgrade_net_as_needed("bad.prototxt", net) is False
    assert "Unknown parameter num_output for layer type relu" in caplog.text
    assert "Unknown parameter kernelsize for layer type relu" in caplog.text
    assert "had one or more problems upgrading V0NetParameter" in caplog.text
    assert net.layer[0].type == "ReLU"                  # still upgraded
    assert not net.layer[0].HasField("convolution_param")
    # the text tool writes the file and exits with status 1, as Caffe's does
    src = tmp_path / "bad.prototxt"
    src.write_text(text)
    out = tmp_path / "out.prototxt"
    assert upgrade_net_proto_text.main([str(src), str(out)]) == 1
    assert out.exists()


def test_v0_errors():
    with pytest.raises(ValueError, match=r"v0\.prototxt.*'what'.*Unknown layer name: frobnicate"):
        upgrade.upgrade_net(net_from_text(
            'layers { layer { name: "what" type: "frobnicate" } }'), "v0.prototxt")
    with pytest.raises(ValueError, match=r"v0\.prototxt.*'fc'.*Padding layer input to "
                                         r"non-convolutional"):
        upgrade.upgrade_net(net_from_text("""
          input: "x"
          layers { layer { name: "p" type: "padding" pad: 1 } bottom: "x" top: "p" }
          layers { layer { name: "fc" type: "innerproduct" } bottom: "p" top: "fc" }
        """), "v0.prototxt")
    with pytest.raises(ValueError, match=r"v0\.prototxt.*'c'.*Unknown blob input nope"):
        upgrade.upgrade_net(net_from_text("""
          layers { layer { name: "c" type: "conv" } bottom: "nope" top: "c" }
        """), "v0.prototxt")


# --------------------------------------------------------------------------
# V1 / V2 errors
# --------------------------------------------------------------------------

def test_mixed_layer_and_layers_is_an_error():
    net = net_from_text("""
      layer { name: "a" type: "ReLU" }
      layers { name: "b" type: RELU }
    """)
    with pytest.raises(ValueError, match=r"mixed\.prototxt.*both 'layer' and 'layers'"):
        upgrade.upgrade_net(net, "mixed.prototxt")


def test_v1_with_leftover_v0_layer_is_logged(caplog):
    # a V1 layer carrying a V0 `layer` message goes through the V0 upgrade
    # first, as in Caffe; the result is a clean V2 net
    net = net_from_text("""
      input: "x" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2
      layers { name: "a" type: RELU bottom: "x" top: "y" layer { name: "a" type: "relu" } }
    """)
    with caplog.at_level(logging.INFO, logger="caffe"):
        assert upgrade.upgrade_net_as_needed("m.prototxt", net) is True
    assert [l.type for l in net.layer] == ["Input", "ReLU"]


# --------------------------------------------------------------------------
# input fields
# --------------------------------------------------------------------------

def test_input_dim_several_inputs():
    net = net_from_text("""
      input: "a" input: "b"
      input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4
      input_dim: 5 input_dim: 6 input_dim: 7 input_dim: 8
      layer { name: "c" type: "Concat" bottom: "a" bottom: "b" top: "c" }
    """)
    assert upgrade.net_needs_input_upgrade(net)
    assert upgrade.upgrade_net(net)
    inp = net.layer[0]
    assert (inp.name, inp.type, list(inp.top)) == ("input", "Input", ["a", "b"])
    assert [list(s.dim) for s in inp.input_param.shape] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert net.layer[1].name == "c"
    assert len(net.input) == len(net.input_dim) == len(net.input_shape) == 0


def test_input_shape_form():
    net = net_from_text("""
      input: "data" input_shape { dim: 10 dim: 3 }
      input: "label" input_shape { dim: 10 }
      layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" }
    """)
    assert upgrade.upgrade_net(net)
    assert [l.name for l in net.layer] == ["input", "ip"]
    assert list(net.layer[0].top) == ["data", "label"]
    assert [list(s.dim) for s in net.layer[0].input_param.shape] == [[10, 3], [10]]
    assert protoio.format_text(net.layer[0]) == (
        'name: "input"\ntype: "Input"\ntop: "data"\ntop: "label"\n'
        'input_param {\n  shape {\n    dim: 10\n    dim: 3\n  }\n'
        '  shape {\n    dim: 10\n  }\n}\n')


def test_bare_input_is_dropped():
    # caffemodels written by old Caffe carry `input` without dims
    net = net_from_text('input: "data" layer { name: "r" type: "ReLU" }')
    assert upgrade.upgrade_net(net)
    assert [l.name for l in net.layer] == ["r"] and len(net.input) == 0


def test_input_dim_count_mismatch():
    net = net_from_text('input: "a" input: "b" input_dim: 1 input_dim: 2 input_dim: 3 '
                        'input_dim: 4')
    with pytest.raises(ValueError, match=r"dims\.prototxt.*2 input blob\(s\) need 8 input_dim"):
        upgrade.upgrade_net(net, "dims.prototxt")


# --------------------------------------------------------------------------
# BatchNorm
# --------------------------------------------------------------------------

def test_batch_norm_upgrade():
    net = net_from_text("""
      layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x"
              param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 name: "s" } }
      layer { name: "bn2" type: "BatchNorm" bottom: "x" top: "x" param { lr_mult: 1 } }
      layer { name: "bn3" type: "BatchNorm" bottom: "x" top: "x" }
    """)
    assert upgrade.net_needs_batch_norm_upgrade(net)
    assert upgrade.upgrade_net(net, "bn.prototxt")
    bn = net.layer[0]
    assert len(bn.param) == 3
    for p in bn.param:
        assert p.HasField("lr_mult") and p.lr_mult == 0
        assert p.HasField("decay_mult") and p.decay_mult == 0
    assert bn.param[2].name == "s"
    assert net.layer[1].param[0].lr_mult == 1        # not 3 params: untouched
    assert len(net.layer[2].param) == 0
    # three specs remain, so Caffe keeps reporting it as upgradable; it is idempotent
    before = net.SerializeToString()
    upgrade.upgrade_net(net)
    assert net.SerializeToString() == before


# --------------------------------------------------------------------------
# Solver
# --------------------------------------------------------------------------

@pytest.mark.parametrize("enum_name,type_name", sorted(upgrade.SOLVER_TYPES.items()))
def test_solver_type_upgrade(enum_name, type_name):
    sp = text_format.Parse("base_lr: 0.01 solver_type: %s" % enum_name,
                           caffe_pb2.SolverParameter())
    assert upgrade.solver_needs_upgrade(sp)
    assert upgrade.upgrade_solver(sp) is True
    assert sp.type == type_name and not sp.HasField("solver_type")
    assert not upgrade.solver_needs_upgrade(sp)
    assert upgrade.upgrade_solver(sp) is False


def test_solver_type_conflict():
    sp = text_format.Parse('solver_type: ADAM type: "SGD"', caffe_pb2.SolverParameter())
    with pytest.raises(ValueError, match=r"s\.prototxt.*cannot be both specified"):
        upgrade.upgrade_solver(sp, "s.prototxt")
    same = text_format.Parse('solver_type: ADAM type: "Adam"', caffe_pb2.SolverParameter())
    assert upgrade.upgrade_solver(same)
    assert same.type == "Adam" and not same.HasField("solver_type")


def test_solver_tool(tmp_path):
    src = tmp_path / "solver.prototxt"
    src.write_text('net: "train.prototxt"\nbase_lr: 0.01\nmomentum: 0.9\n'
                   'lr_policy: "step"\nsolver_type: NESTEROV\nweight_decay: 0.0005\n'
                   'max_iter: 100\n')
    out = tmp_path / "new.prototxt"
    assert upgrade_solver_proto_text.main([str(src), str(out)]) == 0
    # C++ TextFormat order: field numbers; floats as %g shortest round trip
    assert out.read_text() == ('base_lr: 0.01\nmax_iter: 100\nlr_policy: "step"\n'
                               'momentum: 0.9\nweight_decay: 0.0005\n'
                               'net: "train.prototxt"\ntype: "Nesterov"\n')
    bad = tmp_path / "bad.prototxt"
    bad.write_text('solver_type: SGD type: "Adam"\n')
    assert upgrade_solver_proto_text.main([str(bad), str(tmp_path / "o")]) == 1


def test_snapshot_prefix(tmp_path):
    sp = caffe_pb2.SolverParameter()
    upgrade.upgrade_snapshot_prefix(str(tmp_path / "solver.prototxt"), sp)
    assert sp.snapshot_prefix == str(tmp_path / "solver")
    sp.snapshot_prefix = str(tmp_path)
    upgrade.upgrade_snapshot_prefix("x/lenet_solver.prototxt", sp)
    assert sp.snapshot_prefix == os.path.join(str(tmp_path), "lenet_solver")


# --------------------------------------------------------------------------
# Text printer details (C++ TextFormat::Print compatibility)
# --------------------------------------------------------------------------

def test_text_printer_formats():
    lp = caffe_pb2.LayerParameter()
    lp.name = 'q"\\\n\x01é'
    lp.loss_weight.extend([1.0, 0.1, 1e-5, 1.0 / 3, 123456789.0, float("inf"), float("-inf")])
    lp.propagate_down.append(False)
    lp.phase = caffe_pb2.TEST
    text = protoio.format_text(lp)
    assert text == ('name: "q\\"\\\\\\n\\001\\303\\251"\n'
                    'loss_weight: 1\nloss_weight: 0.1\nloss_weight: 1e-05\n'
                    'loss_weight: 0.333333343\nloss_weight: 123456792\n'
                    'loss_weight: inf\nloss_weight: -inf\n'
                    'phase: TEST\n'
                    'propagate_down: false\n')
    assert text_format.Parse(text, caffe_pb2.LayerParameter()).name == lp.name


def test_text_printer_unknown_fields():
    bp = caffe_pb2.BlobProto()
    bp.num = 2
    raw = bp.SerializeToString() + bytes([0xF8, 0x06, 0x07])  # field 111 varint 7
    msg = caffe_pb2.BlobProto.FromString(raw)
    assert protoio.format_text(msg) == "num: 2\n111: 7\n"


# --------------------------------------------------------------------------
# Net loads the legacy files
# --------------------------------------------------------------------------

def test_net_forward_legacy_v1():
    import caffe
    if not hasattr(caffe, "Net"):
        pytest.skip("caffe.Net is not available yet")
    net = caffe.Net(V1_TXT, caffe.TEST, weights=V1_MODEL)
    golden = np.load(os.path.join(LEGACY, "legacy_v1.npz"))
    assert list(net._layer_names) == ["input", "conv1", "pool1", "ip1", "relu1", "drop1",
                                      "ip2", "prob"]
    for name in ("conv1", "ip1", "ip2"):
        for i in range(2):
            np.testing.assert_allclose(net.params[name][i].data,
                                       golden["param/%s/%d" % (name, i)], rtol=1e-6, atol=0)
    net.blobs["data"].data[...] = golden["in/data"]
    out = net.forward()
    np.testing.assert_allclose(out["prob"], golden["out/prob"], rtol=1e-3, atol=1e-4)
    for key in golden.files:
        if key.startswith("out/"):
            np.testing.assert_allclose(net.blobs[key[4:]].data, golden[key],
                                       rtol=1e-3, atol=1e-4, err_msg=key)
