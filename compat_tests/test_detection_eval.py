"""SSD detection evaluation: ComputeAP for every ap_version against what the
fork's solver logged for the golden DetectionEvaluate output, and the solver
hook (eval_type "detection") end to end on an Input-fed test net."""
import logging
import os

import numpy as np
import pytest

import caffe
from caffe import detection_eval
from caffe.solver import SolverError

GOLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "ssd",
                    "ssd_detection_evaluate.npz")


def golden_rows():
    return np.load(GOLD)["out/t0"].reshape(-1, 5)


@pytest.mark.parametrize("version", detection_eval.AP_VERSIONS)
def test_ap_matches_fork_log(version):
    ref = np.load(GOLD)
    tally = detection_eval.DetectionTally()
    tally.add(golden_rows())
    aps, m = tally.average_precisions(version)
    for label, ap in aps.items():
        assert ap == pytest.approx(float(ref["ap/%s/%d" % (version, label)]), abs=2e-6)
    assert m == pytest.approx(float(ref["map/" + version]), abs=2e-6)


def test_ap_edge_cases():
    assert detection_eval.compute_ap([], 3, [], "Integral") == 0.0
    assert detection_eval.compute_ap([(0.9, 1)], 0, [(0.9, 0)], "Integral") == 0.0
    # all detections correct, all positives found: AP 1 in every version
    tp = [(0.9, 1), (0.8, 1)]
    fp = [(0.9, 0), (0.8, 0)]
    for v in detection_eval.AP_VERSIONS:
        assert detection_eval.compute_ap(tp, 2, fp, v) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ap_version"):
        detection_eval.compute_ap(tp, 2, fp, "VOC")


def test_tally_skips_difficult_matches():
    t = detection_eval.DetectionTally()
    t.add([[-1, 1, 2, -1, -1], [0, 1, 0.9, 0, 0], [0, 1, 0.8, 1, 0]])
    assert t.true_pos == {1: [(pytest.approx(0.8), 1)]}
    assert t.num_pos == {1: 2}
    with pytest.raises(ValueError, match="width 5"):
        t.add(np.zeros((2, 7)))


NET = """
name: "deteval"
layer { name: "det" type: "Input" top: "det" top: "label"
        input_param { shape { dim: 1 dim: 1 dim: 13 dim: 7 } shape { dim: 1 dim: 1 dim: 7 dim: 8 } } }
layer { name: "w" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } }
        include { phase: TRAIN } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 1 }
        include { phase: TRAIN } }
layer { name: "loss" type: "Reduction" bottom: "ip" top: "loss" loss_weight: 1 include { phase: TRAIN } }
layer { name: "detection_eval" type: "DetectionEvaluate" bottom: "det" bottom: "label"
        top: "detection_eval" include { phase: TEST }
        detection_evaluate_param { num_classes: 4 background_label_id: 0 overlap_threshold: 0.5
                                   evaluate_difficult_gt: false } }
"""


def _solver(tmp_path, extra):
    net = tmp_path / "net.prototxt"
    net.write_text(NET)
    sp = tmp_path / "solver.prototxt"
    sp.write_text('net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 1\ntest_iter: 1\n'
                  'test_interval: 1000\n%s\n' % (net, extra))
    s = caffe.get_solver(str(sp))
    ref = np.load(GOLD)
    tn = s.test_nets[0]
    tn.blobs["det"].data[...] = ref["in/b0"]
    tn.blobs["label"].data[...] = ref["in/b1"]
    return s


@pytest.mark.parametrize("version", detection_eval.AP_VERSIONS)
def test_solver_logs_detection_eval(tmp_path, caplog, version):
    s = _solver(tmp_path, 'eval_type: "detection"\nap_version: "%s"\nshow_per_class_result: true'
                % version)
    with caplog.at_level(logging.INFO, logger="caffe"):
        s.test(0)
    text = caplog.text
    ref = float(np.load(GOLD)["map/" + version])
    line = [l for l in text.splitlines() if "Test net output #0: detection_eval = " in l]
    assert line, text
    assert float(line[-1].split("=")[-1]) == pytest.approx(ref, abs=2e-6)
    assert "class1: " in text


def test_solver_unknown_eval_type(tmp_path):
    s = _solver(tmp_path, 'eval_type: "segmentation"')
    with pytest.raises(SolverError, match="eval_type"):
        s.test(0)
