"""Solvers against real Caffe: golden training trajectories, restore of Caffe's
own .solverstate/.solverstate.h5 files, the training log's lines, and
snapshot round trips of the package's own files."""
import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
from golden_cases import GOLDEN, chdir

import caffe
from caffe.solver import _read_solver_param

SOLVERS = os.path.join(GOLDEN, "solvers")
TOL = dict(rtol=1e-3, atol=1e-5)
CASES = sorted(f[:-5] for f in os.listdir(SOLVERS) if f.endswith(".json"))
CLASSES = {"SGD": "SGDSolver", "Nesterov": "NesterovSolver", "AdaGrad": "AdaGradSolver",
           "RMSProp": "RMSPropSolver", "AdaDelta": "AdaDeltaSolver", "Adam": "AdamSolver"}


@pytest.fixture
def workdir(tmp_path):
    """A writable copy of golden/solvers as the CWD (paths in the files are relative)."""
    dst = tmp_path / "solvers"
    shutil.copytree(SOLVERS, dst)
    for root, _dirs, files in os.walk(dst):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    with chdir(str(dst)):
        yield dst


def _weights(net, prefix, ref):
    for key in ref.files:
        if not key.startswith(prefix + "/"):
            continue
        _, layer, i = key.split("/")
        np.testing.assert_allclose(net.params[layer][int(i)].data, ref[key], err_msg=key, **TOL)


def test_all_cases_present():
    assert len(CASES) == 9, CASES


@pytest.mark.parametrize("name", CASES)
def test_golden_trajectory(workdir, name):
    meta = json.load(open(name + ".json"))
    ref = np.load(name + ".npz")
    solver = caffe.get_solver(meta["solver"])
    stype = _read_solver_param(meta["solver"]).type
    assert type(solver).__name__ == CLASSES[stype]
    solver.net.copy_from(meta["init"])
    losses = []
    for _ in range(meta["iterations"]):
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    assert solver.iter == 10
    np.testing.assert_allclose(losses, ref["loss"], err_msg="loss per step", **TOL)
    _weights(solver.net, "w10", ref)

    # restore real Caffe's snapshot into a fresh solver and go on for 5 steps
    state = meta["snapshot"][1]
    resumed = caffe.get_solver(meta["solver"])
    resumed.restore(state)
    assert resumed.iter == 10
    for _ in range(5):
        resumed.step(1)
    assert resumed.iter == 15
    _weights(resumed.net, "w15", ref)


@pytest.mark.parametrize("name", CASES)
def test_own_snapshot_matches_caffe_state(workdir, name, tmp_path):
    """Our snapshot after 10 steps holds what Caffe's does (iter, current_step, history)."""
    meta = json.load(open(name + ".json"))
    param = _read_solver_param(meta["solver"])
    param.snapshot_prefix = str(tmp_path / ("ours_" + name))
    solver = caffe.get_solver(param)
    solver.net.copy_from(meta["init"])
    solver.step(10)
    solver.snapshot()
    pb2 = caffe.proto.caffe_pb2
    if param.snapshot_format == pb2.SolverParameter.HDF5:
        import h5py
        with h5py.File(param.snapshot_prefix + "_iter_10.solverstate.h5", "r") as ours, \
                h5py.File(meta["snapshot"][1], "r") as theirs:
            for key in ("iter", "current_step"):
                assert np.asarray(ours[key]).tolist() == np.asarray(theirs[key]).tolist()
                assert ours[key].dtype == theirs[key].dtype and ours[key].shape == theirs[key].shape
            assert ours["learned_net"].dtype.kind == "S"
            assert len(ours["history"]) == len(theirs["history"])
            for k in theirs["history"]:
                np.testing.assert_allclose(ours["history"][k][()], theirs["history"][k][()],
                                           err_msg=k, **TOL)
        weights = param.snapshot_prefix + "_iter_10.caffemodel.h5"
    else:
        ours = pb2.SolverState()
        ours.ParseFromString(open(param.snapshot_prefix + "_iter_10.solverstate", "rb").read())
        theirs = pb2.SolverState()
        theirs.ParseFromString(open(meta["snapshot"][1], "rb").read())
        assert ours.iter == theirs.iter == 10
        assert ours.current_step == theirs.current_step
        assert ours.learned_net == param.snapshot_prefix + "_iter_10.caffemodel"
        assert len(ours.history) == len(theirs.history)
        for a, b in zip(ours.history, theirs.history):
            assert list(a.shape.dim) == list(b.shape.dim)
            np.testing.assert_allclose(np.array(a.data), np.array(b.data), **TOL)
            assert len(a.diff) == 0
        weights = param.snapshot_prefix + "_iter_10.caffemodel"
    net = caffe.Net("solver_net.prototxt", caffe.TRAIN, weights=weights)
    ref = np.load(name + ".npz")
    _weights(net, "w10", ref)


@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
@pytest.mark.parametrize("stype", ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"])
def test_snapshot_round_trip(workdir, tmp_path, fmt, stype):
    """A package snapshot restores to the same state: resuming gives the same weights
    as training straight through."""
    base = {"SGD": "sgd_l1_multistep", "Nesterov": "nesterov_inv", "AdaGrad": "adagrad",
            "RMSProp": "rmsprop_exp", "AdaDelta": "adadelta", "Adam": "adam"}[stype]
    param = _read_solver_param(base + ".solver.prototxt")
    param.snapshot_prefix = str(tmp_path / "rt")
    param.snapshot_format = getattr(caffe.proto.caffe_pb2.SolverParameter, fmt)
    straight = caffe.get_solver(param)
    straight.net.copy_from("solver_init.caffemodel")
    straight.step(7)
    straight.snapshot()
    ext = ".solverstate.h5" if fmt == "HDF5" else ".solverstate"
    state = str(tmp_path / ("rt_iter_7" + ext))
    assert os.path.exists(state)
    model = str(tmp_path / ("rt_iter_7.caffemodel" + (".h5" if fmt == "HDF5" else "")))
    assert os.path.exists(model)
    resumed = caffe.get_solver(param)
    resumed.restore(state)
    assert resumed.iter == 7
    assert resumed._current_step == straight._current_step
    assert len(resumed._history) == len(straight._history)
    for a, b in zip(resumed._history, straight._history):
        np.testing.assert_array_equal(a.cpu().numpy(), b.cpu().numpy())
    for name in straight.net.params:
        for a, b in zip(resumed.net.params[name], straight.net.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
    assert resumed.lr == straight.lr
    # and training goes on from there exactly as from the same state reached directly
    again = caffe.get_solver(param)
    again.net.copy_from("solver_init.caffemodel")
    again.step(7)
    again_cont = caffe.get_solver(param)
    again_cont.restore(state)
    resumed.step(3)
    again_cont.step(3)
    for name in resumed.net.params:
        for a, b in zip(resumed.net.params[name], again_cont.net.params[name]):
            np.testing.assert_array_equal(a.data, b.data)


# ---------------------------------------------------------------------------
# The training log
# ---------------------------------------------------------------------------
_GLOG = re.compile(r"^[IWEF]\d{8} \d\d:\d\d:\d\d\.\d+\s+\d+ ([\w.]+):\d+\] (.*)$")
_SOLVER_SOURCES = ("solver.cpp", "sgd_solver.cpp")
_NUM = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?")


def _normalise(line):
    line = re.sub(r"\([^()]*iter/s[^()]*\)", "(TIMING)", line)   # wall-clock numbers
    line = re.sub(r"file (\S*/)?", "file ", line)                  # paths
    return line


def _same(ours, theirs):
    a, b = _normalise(ours), _normalise(theirs)
    if _NUM.sub("#", a) != _NUM.sub("#", b):
        return False
    for x, y in zip(_NUM.findall(a), _NUM.findall(b)):
        if not np.isclose(float(x), float(y), rtol=1e-4, atol=1e-6):
            return False
    return True


def _golden_solver_lines():
    lines = []
    for raw in open(os.path.join(SOLVERS, "logged.train.log")):
        m = _GLOG.match(raw.rstrip("\n"))
        if m and m.group(1) in _SOLVER_SOURCES:
            lines.append(m.group(2))
    return lines


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        if os.path.basename(record.pathname) == "solver.py":
            self.lines.append(record.getMessage().split("\n")[0])


def test_training_log_matches_caffe(workdir):
    param = _read_solver_param("logged.solver")
    param.weights.append("solver_init.caffemodel")   # what `caffe train -weights` does
    log = logging.getLogger("caffe")
    cap = _Capture()
    old_level = log.level
    log.setLevel(logging.INFO)
    log.addHandler(cap)
    try:
        solver = caffe.get_solver(param)
        solver.solve()
    finally:
        log.removeHandler(cap)
        log.setLevel(old_level)
    golden = _golden_solver_lines()
    assert len(cap.lines) == len(golden), "\n".join(cap.lines)
    for ours, theirs in zip(cap.lines, golden):
        assert _same(ours, theirs), "%r != %r" % (ours, theirs)
    # the snapshots it wrote are the ones Caffe wrote, and hold the same state
    pb2 = caffe.proto.caffe_pb2
    for it in (5, 10):
        ours = pb2.SolverState()
        ours.ParseFromString(open("snap/logged_iter_%d.solverstate" % it, "rb").read())
        theirs = pb2.SolverState()
        theirs.ParseFromString(open(os.path.join(SOLVERS, "snap/logged_iter_%d.solverstate"
                                                 % it), "rb").read())
        assert ours.iter == theirs.iter and ours.learned_net == theirs.learned_net
        assert ours.current_step == theirs.current_step
        for a, b in zip(ours.history, theirs.history):
            np.testing.assert_allclose(np.array(a.data), np.array(b.data), **TOL)


def test_training_log_words(workdir):
    """The user-visible lines, as users grep them (glog formatter included)."""
    import io
    param = _read_solver_param("logged.solver")
    param.snapshot = 0
    param.snapshot_after_train = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(caffe._common._GlogFormatter())
    log = logging.getLogger("caffe")
    old_level = log.level
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        solver = caffe.get_solver(param)
        solver.net.copy_from("solver_init.caffemodel")
        solver.step(3)
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    text = stream.getvalue()
    assert re.search(r"\] Iteration 0, Testing net \(#0\)", text)
    assert re.search(r"\]     Test net output #0: acc = ", text)
    assert re.search(r"\] Iteration 2 \([^)]*iter/s, [^)]*s/2 iters\), loss = ", text)
    assert re.search(r"\]     Train net output #0: loss = \S+ \(\* 1 = \S+ loss\)", text)
    assert re.search(r"\] Iteration 2, lr = 0.05", text)


# ---------------------------------------------------------------------------
# The shipped example: LeNet on synthetic digits
# ---------------------------------------------------------------------------
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "examples", "lenet_synthetic")


@pytest.fixture
def lenet_dir(tmp_path):
    import importlib.util
    for f in ("lenet_solver.prototxt", "lenet_train_test.prototxt"):
        shutil.copy(os.path.join(EXAMPLE, f), str(tmp_path))
    spec = importlib.util.spec_from_file_location("lenet_make_data",
                                                  os.path.join(EXAMPLE, "make_data.py"))
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    make_data.make(str(tmp_path), n_train=1280, n_test=500)
    spec = importlib.util.spec_from_file_location("lenet_train",
                                                  os.path.join(EXAMPLE, "train.py"))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    return str(tmp_path), train


def test_example_lenet_sgdsolver_trains(lenet_dir):
    workdir, train = lenet_dir
    losses, acc = train.train_sgd(40, workdir)
    assert len(losses) == 40 and all(np.isfinite(losses))
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last < first - 0.2, (first, last)
    assert acc > 0.2          # ten classes: chance is 0.1


def test_example_lenet_get_solver_reports_accuracy(lenet_dir):
    workdir, train = lenet_dir
    losses, accs, solver = train.train_get_solver(40, workdir, test_interval=20)
    assert type(solver).__name__ == "SGDSolver" and solver.iter == 40
    assert len(losses) == 41                          # display 1, plus Solve's final forward
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.2, losses
    assert len(accs) == 3                             # iterations 0, 20, 40
    assert accs[-1] > accs[0] and accs[-1] > 0.2, accs
