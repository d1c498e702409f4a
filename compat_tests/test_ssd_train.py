"""Training SSD: the fork's own 10-step trajectory, snapshot and restore of a
tiny two-scale SSD (golden/ssd/train), and an end-to-end run of
``python -m caffe train`` on an annoset made by our convert_annoset, with the
fork's detection evaluation in the test phase."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from golden_cases import GOLDEN, chdir

import caffe

TRAIN = os.path.join(GOLDEN, "ssd", "train")
ANNOSET = os.path.join(GOLDEN, "ssd", "annoset")
TOL = dict(rtol=1e-3, atol=1e-5)


@pytest.fixture
def workdir(tmp_path):
    dst = tmp_path / "train"
    shutil.copytree(TRAIN, dst)
    for root, _, files in os.walk(dst):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    with chdir(str(dst)):
        yield dst


def _feed(net, ref):
    net.blobs["data"].data[...] = ref["in/data"]
    net.blobs["label"].reshape(*ref["in/label"].shape)
    net.blobs["label"].data[...] = ref["in/label"]


def _weights(net, prefix, ref):
    for key in ref.files:
        if key.startswith(prefix + "/"):
            _, layer, i = key.split("/")
            np.testing.assert_allclose(net.params[layer][int(i)].data, ref[key], err_msg=key,
                                       **TOL)


def test_golden_ssd_tiny_trajectory_snapshot_restore(workdir, tmp_path):
    meta = json.load(open("ssd_tiny.json"))
    ref = np.load("ssd_tiny.npz")
    solver = caffe.get_solver(meta["solver"])
    solver.net.copy_from(meta["init"])
    _feed(solver.net, ref)
    losses = []
    for _ in range(meta["iterations"]):
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    np.testing.assert_allclose(losses, ref["loss"], err_msg="loss per step", **TOL)
    _weights(solver.net, "w10", ref)
    # the fork's own snapshot, restored, 5 more steps
    resumed = caffe.get_solver(meta["solver"])
    resumed.restore(meta["snapshot"][1])
    _feed(resumed.net, ref)
    assert resumed.iter == 10
    for _ in range(5):
        resumed.step(1)
    _weights(resumed.net, "w15", ref)
    # our own snapshot holds the same state
    solver.snapshot()
    mine = caffe.get_solver(meta["solver"])
    mine.restore("snap/ssd_tiny_iter_10.solverstate")
    _feed(mine.net, ref)
    for _ in range(5):
        mine.step(1)
    _weights(mine.net, "w15", ref)


# ---------------------------------------------------------------------------
# end to end: convert_annoset -> AnnotatedData -> MultiBoxLoss / DetectionOutput
# -> DetectionEvaluate -> `caffe train` logs detection_eval
# ---------------------------------------------------------------------------
HEAD = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 2 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 16 kernel_size: 3 pad: 1 stride: 2 weight_filler { type: "xavier" } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "loc" type: "Convolution" bottom: "conv2" top: "loc"
  convolution_param { num_output: 12 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "loc_perm" type: "Permute" bottom: "loc" top: "loc_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "mbox_loc" type: "Flatten" bottom: "loc_perm" top: "mbox_loc" flatten_param { axis: 1 } }
layer { name: "conf" type: "Convolution" bottom: "conv2" top: "conf"
  convolution_param { num_output: 12 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "conf_perm" type: "Permute" bottom: "conf" top: "conf_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "mbox_conf" type: "Flatten" bottom: "conf_perm" top: "mbox_conf" flatten_param { axis: 1 } }
layer { name: "mbox_priorbox" type: "PriorBox" bottom: "conv2" bottom: "data" top: "mbox_priorbox"
  prior_box_param { min_size: 10 max_size: 24 aspect_ratio: 2 flip: false clip: false
    variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }
"""
DATA = """
layer { name: "data" type: "AnnotatedData" top: "data" top: "label" include { phase: %(phase)s }
  transform_param { mirror: %(mirror)s mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.017
    resize_param { prob: 1 resize_mode: WARP height: 32 width: 32 interp_mode: LINEAR } %(extra)s }
  data_param { source: "%(db)s" batch_size: %(batch)d backend: LMDB }
  annotated_data_param { label_map_file: "%(labelmap)s" %(samplers)s } }
"""
TAIL = """
layer { name: "mbox_loss" type: "MultiBoxLoss" bottom: "mbox_loc" bottom: "mbox_conf"
  bottom: "mbox_priorbox" bottom: "label" top: "mbox_loss" include { phase: TRAIN }
  propagate_down: true propagate_down: true propagate_down: false propagate_down: false
  loss_param { normalization: VALID }
  multibox_loss_param { num_classes: 4 overlap_threshold: 0.5 neg_pos_ratio: 3 neg_overlap: 0.5
    code_type: CENTER_SIZE match_type: PER_PREDICTION mining_type: MAX_NEGATIVE } }
layer { name: "conf_reshape" type: "Reshape" bottom: "mbox_conf" top: "conf_reshape"
  include { phase: TEST } reshape_param { shape { dim: 0 dim: -1 dim: 4 } } }
layer { name: "conf_softmax" type: "Softmax" bottom: "conf_reshape" top: "conf_softmax"
  include { phase: TEST } softmax_param { axis: 2 } }
layer { name: "conf_flat" type: "Flatten" bottom: "conf_softmax" top: "conf_flat" include { phase: TEST } }
layer { name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc" bottom: "conf_flat"
  bottom: "mbox_priorbox" top: "detection_out" include { phase: TEST }
  detection_output_param { num_classes: 4 share_location: true background_label_id: 0
    nms_param { nms_threshold: 0.45 top_k: 50 } code_type: CENTER_SIZE keep_top_k: 20
    confidence_threshold: 0.01 } }
layer { name: "detection_eval" type: "DetectionEvaluate" bottom: "detection_out" bottom: "label"
  top: "detection_eval" include { phase: TEST }
  detection_evaluate_param { num_classes: 4 background_label_id: 0 overlap_threshold: 0.5
    evaluate_difficult_gt: false } }
"""
SAMPLERS = """
    batch_sampler { max_sample: 1 max_trials: 1 }
    batch_sampler { sampler { min_scale: 0.3 max_scale: 1.0 min_aspect_ratio: 0.5 max_aspect_ratio: 2.0 }
      sample_constraint { min_jaccard_overlap: 0.5 } max_sample: 1 max_trials: 50 }"""


def _annoset(tmp_path):
    from caffe.tools.convert_annoset import convert_annoset
    db = str(tmp_path / "train_lmdb")
    convert_annoset(ANNOSET + "/", os.path.join(ANNOSET, "list.txt"), db,
                    anno_type="detection", label_map_file=os.path.join(ANNOSET, "labelmap.prototxt"),
                    encoded=True, encode_type="jpg", show_progress=False)
    return db


def test_train_tiny_ssd_end_to_end_cli(tmp_path):
    db = _annoset(tmp_path)
    common = dict(db=db, labelmap=os.path.join(ANNOSET, "labelmap.prototxt"))
    train_data = DATA % dict(common, phase="TRAIN", mirror="true", batch=4, samplers=SAMPLERS,
                             extra="emit_constraint { emit_type: CENTER }")
    test_data = DATA % dict(common, phase="TEST", mirror="false", batch=6, samplers="",
                            extra="")
    net = tmp_path / "net.prototxt"
    net.write_text('name: "tiny_ssd"\n' + train_data + test_data + HEAD + TAIL)
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "%s"\ntest_iter: 1\ntest_interval: 50\ntest_initialization: true\n'
                      'base_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: "fixed"\n'
                      'display: 10\naverage_loss: 10\nmax_iter: 50\nsnapshot: 0\n'
                      'snapshot_prefix: "%s"\nrandom_seed: 3\neval_type: "detection"\n'
                      'ap_version: "11point"\nsnapshot_after_train: false\n'
                      % (net, tmp_path / "snap"))
    env = dict(os.environ, OMP_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-m", "caffe", "train", "-solver", str(solver)],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    losses = [float(m) for m in re.findall(r"Iteration \d+ \(.*?\), loss = ([0-9.eE+-]+)", log)]
    if not losses:
        losses = [float(m) for m in re.findall(r"Iteration \d+, loss = ([0-9.eE+-]+)", log)]
    assert len(losses) >= 4, log[-3000:]
    assert losses[-1] < losses[0], losses
    evals = re.findall(r"Test net output #0: detection_eval = ([0-9.eE+-]+|nan)", log)
    assert len(evals) == 2, log[-3000:]   # test_initialization and at iteration 50
    assert all(0 <= float(v) <= 1 for v in evals)
