"""net_spec as the SSD fork's model_libs.py / ssd_pascal.py use it: NetSpec
keys/vals/update/del, nested SSD parameters (batch_sampler lists,
resize/distort/expand/emit params), Python-2 style integral floats, and the
generated train/test nets loading and running in caffe.Net."""
import os

import numpy as np
import pytest

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

ANNOSET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "ssd", "annoset")


def test_netspec_fork_methods():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3)
    n.relu = L.ReLU(n.conv, in_place=True)
    assert n.keys() == ["data", "conv", "relu"]
    assert n.vals()[1] is n.conv
    n.update("conv", {"num_output": 6, "pad": 1})
    proto = n.to_proto()
    assert proto.layer[1].convolution_param.num_output == 6
    assert proto.layer[1].convolution_param.pad == [1]
    del n["relu"]
    assert "relu" not in n and n.keys() == ["data", "conv"]


def test_integral_floats_for_integer_fields():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8.0, 8]))       # 16 / 2 in Python 3
    n.conv = L.Convolution(n.data, num_output=32 / 4, kernel_size=3)
    proto = n.to_proto()
    assert list(proto.layer[0].input_param.shape[0].dim) == [1, 3, 8, 8]
    assert proto.layer[1].convolution_param.num_output == 8
    n.bad = L.Convolution(n.data, num_output=7.5, kernel_size=3)
    with pytest.raises(TypeError):
        n.to_proto()


def ssd_net(train, batch=2):
    """A small net written the way ssd_pascal.py writes its nets."""
    n = caffe.NetSpec()
    transform = {
        "mirror": train, "mean_value": [104, 117, 123],
        "resize_param": {"prob": 1, "resize_mode": P.Resize.WARP, "height": 32, "width": 32,
                         "interp_mode": [P.Resize.LINEAR, P.Resize.AREA] if train
                         else [P.Resize.LINEAR]},
    }
    kwargs = {}
    if train:
        transform["emit_constraint"] = {"emit_type": caffe_pb2.EmitConstraint.CENTER}
        transform["distort_param"] = {"brightness_prob": 0.5, "brightness_delta": 32}
        transform["expand_param"] = {"prob": 0.5, "max_expand_ratio": 2.0}
        kwargs["batch_sampler"] = [
            {"sampler": {}, "max_trials": 1, "max_sample": 1},
            {"sampler": {"min_scale": 0.3, "max_scale": 1.0, "min_aspect_ratio": 0.5,
                         "max_aspect_ratio": 2.0},
             "sample_constraint": {"min_jaccard_overlap": 0.5}, "max_trials": 50,
             "max_sample": 1}]
    n.data, n.label = L.AnnotatedData(
        name="data", data_param=dict(batch_size=batch, backend=P.Data.LMDB,
                                     source=os.path.join(ANNOSET, "lmdb")),
        annotated_data_param=dict(label_map_file=os.path.join(ANNOSET, "labelmap.prototxt"),
                                  **kwargs),
        ntop=2, transform_param=transform)
    n.conv = L.Convolution(n.data, num_output=8, kernel_size=3, pad=1, stride=4,
                           weight_filler=dict(type="xavier"))
    n.loc = L.Convolution(n.conv, num_output=2 * 4, kernel_size=3, pad=1,
                          weight_filler=dict(type="xavier"))
    n.loc_perm = L.Permute(n.loc, order=[0, 2, 3, 1])
    n.mbox_loc = L.Flatten(n.loc_perm, axis=1)
    n.conf = L.Convolution(n.conv, num_output=2 * 4, kernel_size=3, pad=1,
                           weight_filler=dict(type="xavier"))
    n.conf_perm = L.Permute(n.conf, order=[0, 2, 3, 1])
    n.mbox_conf = L.Flatten(n.conf_perm, axis=1)
    n.mbox_priorbox = L.PriorBox(n.conv, n.data, min_size=[12.0], aspect_ratio=[2], flip=False,
                                 clip=False, variance=[0.1, 0.1, 0.2, 0.2], step=4.0)
    if train:
        n.mbox_loss = L.MultiBoxLoss(
            n.mbox_loc, n.mbox_conf, n.mbox_priorbox, n.label,
            multibox_loss_param=dict(num_classes=4, share_location=True,
                                     match_type=P.MultiBoxLoss.PER_PREDICTION,
                                     overlap_threshold=0.5, neg_pos_ratio=3.0,
                                     code_type=P.PriorBox.CENTER_SIZE,
                                     mining_type=P.MultiBoxLoss.MAX_NEGATIVE),
            loss_param=dict(normalization=P.Loss.VALID),
            include=dict(phase=caffe_pb2.Phase.Value("TRAIN")),
            propagate_down=[True, True, False, False])
    else:
        n.conf_reshape = L.Reshape(n.mbox_conf, shape=dict(dim=[0, -1, 4]))
        n.conf_softmax = L.Softmax(n.conf_reshape, axis=2)
        n.conf_flatten = L.Flatten(n.conf_softmax, axis=1)
        n.detection_out = L.DetectionOutput(
            n.mbox_loc, n.conf_flatten, n.mbox_priorbox,
            detection_output_param=dict(num_classes=4, share_location=True,
                                        background_label_id=0,
                                        nms_param=dict(nms_threshold=0.45, top_k=40),
                                        keep_top_k=20, confidence_threshold=0.01,
                                        code_type=P.PriorBox.CENTER_SIZE),
            include=dict(phase=caffe_pb2.Phase.Value("TEST")))
        n.detection_eval = L.DetectionEvaluate(
            n.detection_out, n.label,
            detection_evaluate_param=dict(num_classes=4, background_label_id=0,
                                          overlap_threshold=0.5, evaluate_difficult_gt=False),
            include=dict(phase=caffe_pb2.Phase.Value("TEST")))
    return n.to_proto()


def test_ssd_pascal_style_nets_load_and_run(tmp_path):
    for train in (True, False):
        proto = ssd_net(train)
        path = tmp_path / ("train.prototxt" if train else "test.prototxt")
        path.write_text(str(proto))
        if train:
            dl = proto.layer[0]
            assert len(dl.annotated_data_param.batch_sampler) == 2
            assert dl.transform_param.resize_param.interp_mode == [1, 2]
            assert list(proto.layer[-1].propagate_down) == [True, True, False, False]
        caffe.set_random_seed(5)
        net = caffe.Net(str(path), caffe.TRAIN if train else caffe.TEST)
        net.forward()
        if train:
            assert np.isfinite(net.blobs["mbox_loss"].data)
        else:
            rows = net.blobs["detection_eval"].data.reshape(-1, 5)
            assert rows[:3, 0].tolist() == [-1, -1, -1]


def test_fork_python_modules_import_through_caffe(tmp_path):
    """With a fork's python/ on PYTHONPATH after ours, ``from caffe.model_libs
    import *`` (ssd_pascal.py's first line) finds the fork's module while every
    module this package has stays ours."""
    import subprocess
    import sys
    fork = tmp_path / "fork" / "python" / "caffe"
    fork.mkdir(parents=True)
    (fork / "__init__.py").write_text("raise RuntimeError('the fork package must not load')\n")
    (fork / "model_libs.py").write_text("from caffe import layers as L\n"
                                        "def Body(n):\n    n.relu = L.ReLU(n.data)\n")
    (fork / "net_spec.py").write_text("raise RuntimeError('ours must win')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(caffe.__file__)))
    code = ("import caffe\nfrom caffe.model_libs import *\nn = caffe.NetSpec()\n"
            "n.data = caffe.layers.Input(shape=dict(dim=[1, 2]))\nBody(n)\n"
            "print(n.keys())\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, str(tmp_path / "fork" / "python")]))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "['data', 'relu']" in r.stdout
