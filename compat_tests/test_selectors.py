"""Multi-task training with task selectors (caffe.selectors).

A two-task net (shared trunk; a classification branch and a regression
branch, each with its own HDF5Data) trained with ``selectors`` must follow,
step for step, the trajectory computed here by hand: the same net run one task
at a time (Caffe's NetState stage), momentum SGD with weight decay applied in
numpy to that task's parameters only.
"""
import logging

import numpy as np
import pytest

import caffe
from caffe import selectors

NET = """name: "TwoTasks"
layer { name: "cls_data" type: "HDF5Data" top: "data" top: "label"
  include { phase: TRAIN stage: "cls" } hdf5_data_param { source: "%(d)s/cls.txt" batch_size: 4 } }
layer { name: "reg_data" type: "HDF5Data" top: "data" top: "target" selector: "reg"
  include { phase: TRAIN } hdf5_data_param { source: "%(d)s/reg.txt" batch_size: 3 } }
layer { name: "cls_test" type: "HDF5Data" top: "data" top: "label"
  include { phase: TEST stage: "cls" } hdf5_data_param { source: "%(d)s/cls.txt" batch_size: 5 } }
layer { name: "reg_test" type: "HDF5Data" top: "data" top: "target" selector: "reg"
  include { phase: TEST } hdf5_data_param { source: "%(d)s/reg.txt" batch_size: 6 } }
layer { name: "trunk" type: "InnerProduct" bottom: "data" top: "feat"
  param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 0.3 }
    bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "feat" top: "feat" }
layer { name: "cls_head" type: "InnerProduct" bottom: "feat" top: "cls_out"
  include { stage: "cls" }
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "cls_loss" type: "SoftmaxWithLoss" bottom: "cls_out" bottom: "label"
  top: "cls_loss" include { stage: "cls" } }
layer { name: "reg_head" type: "InnerProduct" bottom: "feat" top: "reg_out" selector: "reg"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "reg_loss" type: "EuclideanLoss" bottom: "reg_out" bottom: "target"
  top: "reg_loss" selector: "reg" }
"""

SOLVER = """net: "%(d)s/net.prototxt"
base_lr: 0.05 momentum: 0.9 weight_decay: 0.001 lr_policy: "step" gamma: 0.5 stepsize: 7
iter_size: 2 max_iter: 20 display: 0 random_seed: 11
snapshot_prefix: "%(d)s/snap"
selectors: "cls,reg"
%(extra)s
"""


@pytest.fixture
def task_dir(tmp_path):
    import h5py
    rng = np.random.RandomState(3)
    with h5py.File(tmp_path / "cls.h5", "w") as f:
        f["data"] = rng.randn(30, 5).astype(np.float32)
        f["label"] = rng.randint(0, 3, 30).astype(np.float32)
    with h5py.File(tmp_path / "reg.h5", "w") as f:
        f["data"] = rng.randn(24, 5).astype(np.float32)
        f["target"] = rng.randn(24, 2).astype(np.float32)
    for name in ("cls", "reg"):
        (tmp_path / ("%s.txt" % name)).write_text(str(tmp_path / ("%s.h5" % name)) + "\n")
    (tmp_path / "net.prototxt").write_text(NET % {"d": tmp_path})
    return tmp_path


def solver_file(d, extra="", name="solver.prototxt"):
    path = d / name
    path.write_text(SOLVER % {"d": d, "extra": extra})
    return str(path)


def weights_of(solver):
    """(layer, j) -> array over every task net of the solver."""
    out = {}
    for net in solver.tasks.nets:
        for name, blobs in net.params.items():
            for j, b in enumerate(blobs):
                out[(name, j)] = b.data.copy()
    return out


def hand_trajectory(d, start, tasks, iters):
    """Momentum SGD + weight decay by hand, one task net at a time."""
    nets = {t: caffe.Net(str(d / "net.prototxt"), caffe.TRAIN, stages=[t]) for t in ("cls", "reg")}
    w = {k: v.copy() for k, v in start.items()}
    h = {k: np.zeros_like(v) for k, v in start.items()}
    lr_mult = {0: 1.0, 1: 2.0}
    decay_mult = {("trunk", 1): 0.0}
    for it in range(iters):
        net = nets[tasks[it]]
        for name, blobs in net.params.items():
            for j, b in enumerate(blobs):
                b.data[...] = w[(name, j)]
                b.diff[...] = 0
        for _ in range(2):                       # iter_size
            net.forward()
            net.backward()
        rate = np.float32(0.05 * 0.5 ** (it // 7))
        for name, blobs in net.params.items():
            for j, b in enumerate(blobs):
                k = (name, j)
                mult = lr_mult[j] if name == "trunk" else 1.0
                g = b.diff / np.float32(2) + np.float32(0.001 * decay_mult.get(k, 1.0)) * w[k]
                h[k] = np.float32(0.9) * h[k] + rate * np.float32(mult) * g
                w[k] = w[k] - h[k]
    return w


def assert_weights(got, want):
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=str(k))


def test_ordered_selectors_follow_the_hand_computed_alternation(task_dir):
    caffe.set_random_seed(11)
    solver = caffe.get_solver(solver_file(task_dir, 'selector_policy: ORDERED'))
    start = weights_of(solver)
    solver.step(20)
    want = hand_trajectory(task_dir, start, ["cls", "reg"] * 10, 20)
    assert_weights(weights_of(solver), want)


def test_untouched_branch_neither_reads_nor_moves(task_dir):
    """With momentum history on the regression head, a classification iteration
    still leaves that head and the regression data cursor where they were."""
    solver = caffe.get_solver(solver_file(task_dir))
    cls_net, reg_net = solver.tasks.nets

    def state():
        return {"reg_head": reg_net.params["reg_head"][0].data.copy(),
                "cls_head": cls_net.params["cls_head"][0].data.copy(),
                "trunk": cls_net.params["trunk"][0].data.copy(),
                "reg_rows": reg_net.layers[list(reg_net._layer_names).index("reg_data")].offset,
                "cls_rows": cls_net.layers[list(cls_net._layer_names).index("cls_data")].offset}

    solver.step(1)                          # cls
    before = state()
    solver.step(1)                          # reg
    after = state()
    assert after["reg_rows"] == before["reg_rows"] + 6 and after["cls_rows"] == before["cls_rows"]
    assert np.array_equal(after["cls_head"], before["cls_head"])
    assert not np.array_equal(after["reg_head"], before["reg_head"])
    solver.step(1)                          # cls: momentum must not move the regression head
    last = state()
    assert np.array_equal(last["reg_head"], after["reg_head"])
    assert last["reg_rows"] == after["reg_rows"] and last["cls_rows"] == after["cls_rows"] + 8
    assert not np.array_equal(last["trunk"], after["trunk"])
    # one trunk, seen by both task nets
    assert np.array_equal(cls_net.params["trunk"][0].data, reg_net.params["trunk"][0].data)


def test_random_policy_follows_the_seeded_sequence_and_restores(task_dir):
    extra = 'selector_policy: RANDOM\nselector_weights: 1\nselector_weights: 3'
    solver = caffe.get_solver(solver_file(task_dir, extra))
    seen = []
    for _ in range(6):
        solver.step(1)
        seen.append(solver.tasks.active)
    rng = np.random.RandomState(11)
    assert seen == [int(rng.choice(2, p=[0.25, 0.75])) for _ in range(6)]
    solver.snapshot()
    at_snapshot = weights_of(solver)
    later = []
    for _ in range(5):
        solver.step(1)
        later.append(solver.tasks.active)
    resumed = caffe.get_solver(solver_file(task_dir, extra))
    resumed.restore(str(task_dir / "snap_iter_6.solverstate"))
    assert_weights(weights_of(resumed), at_snapshot)   # every branch's weights restored
    again = []
    for _ in range(5):
        resumed.step(1)
        again.append(resumed.tasks.active)
    assert again == later        # (data restarts from the first record, as in Caffe)


def test_each_task_is_tested_with_its_own_iterations(task_dir, caplog):
    solver = caffe.get_solver(solver_file(
        task_dir, 'test_iters: "2,3"\ntest_interval: 2\ntest_initialization: true'))
    with caplog.at_level(logging.INFO, logger="caffe"):
        solver.step(1)
    text = caplog.text
    assert "Test net output #0 (cls): cls_loss = " in text
    assert "Test net output #0 (reg): reg_loss = " in text
    test_nets = solver.test_nets
    assert [n.layers[0].batch_size for n in test_nets] == [5, 6]
    assert [n.layers[0].current_row for n in test_nets] == [10, 18]


def test_bad_selector_settings_name_the_field(task_dir):
    with pytest.raises(ValueError, match="test_iters"):
        caffe.get_solver(solver_file(task_dir, 'test_iters: "2"\ntest_interval: 2'))
    with pytest.raises(ValueError, match="selector_weights"):
        caffe.get_solver(solver_file(task_dir, 'selector_weights: 1\nselector_weights: 2'))
    path = solver_file(task_dir)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace('selectors: "cls,reg"', 'selectors: "cls,cls"'))
    with pytest.raises(ValueError, match="twice"):
        caffe.get_solver(path)


def test_layer_selector_field_is_a_stage_rule(task_dir):
    reg = caffe.Net(str(task_dir / "net.prototxt"), caffe.TRAIN, stages=["reg"])
    cls = caffe.Net(str(task_dir / "net.prototxt"), caffe.TRAIN, stages=["cls"])
    assert "reg_head" in reg.params and "cls_head" not in reg.params
    assert "cls_head" in cls.params and "reg_head" not in cls.params
    assert selectors.layer_tasks(caffe.proto.caffe_pb2.LayerParameter(selector="a, b")) == \
        {"a", "b"}


def test_caffe_test_scores_one_task_with_selector(task_dir, caplog):
    from caffe import cli
    solver = caffe.get_solver(solver_file(task_dir))
    solver.step(2)
    solver.snapshot()
    model = str(task_dir / "snap_iter_2.caffemodel")
    with caplog.at_level(logging.INFO, logger="caffe"):
        code = cli.main(["test", "-model", str(task_dir / "net.prototxt"), "-weights", model,
                         "-selector", "reg", "-iterations", "2"])
    assert code == 0
    assert "reg_loss = " in caplog.text and "cls_loss = " not in caplog.text
    assert "Ignoring source layer cls_head" in caplog.text     # the cls branch is not built
