"""The caffe tool (tools/caffe.cpp) as ``python -m caffe`` / ``caffe.cli:main``:
flag parsing, test/time/device_query output as Caffe prints it, and train on
the shipped examples/lenet_synthetic example."""
import logging
import os
import re
import shutil
import subprocess
import sys

import pytest
from golden_cases import GOLDEN, chdir

import caffe
from caffe import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETS = os.path.join(GOLDEN, "nets")
EXAMPLE = os.path.join(ROOT, "examples", "lenet_synthetic")


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def run_caffe():
    """Run cli.main in-process; returns (status, log messages)."""
    def run(*argv):
        log = logging.getLogger("caffe")
        h = _Collect()
        cli._common.init_log(0)
        old_handlers, old_level = log.handlers[:], log.level
        log.handlers = [h]           # the glog handler may hold a closed capture stream
        try:
            rc = cli.main(list(argv))
        finally:
            log.handlers = old_handlers
            log.setLevel(old_level)
            caffe.set_mode_cpu()
        return rc, h.lines
    return run


def test_flag_parsing_styles():
    flags, pos = cli.parse_flags(["test", "-model=a.prototxt", "--weights", "w.caffemodel",
                                  "-iterations", "7", "--level=2", "-stage", "x,y"])
    assert pos == ["test"]
    assert flags["model"] == "a.prototxt" and flags["weights"] == "w.caffemodel"
    assert flags["iterations"] == 7 and flags["level"] == 2
    assert cli.get_stages(flags) == ["x", "y"]
    defaults, _ = cli.parse_flags([])
    assert defaults["iterations"] == 50 and defaults["sigint_effect"] == "stop"
    assert defaults["sighup_effect"] == "snapshot"
    assert cli.get_stages(defaults) == [""]      # boost::split("") gives one empty stage
    with pytest.raises(cli.CommandError, match="unknown command line flag 'nope'"):
        cli.parse_flags(["-nope=1"])
    with pytest.raises(cli.CommandError, match="int32 flag 'iterations'"):
        cli.parse_flags(["-iterations=x"])


def test_usage_and_unknown_command(capsys, run_caffe):
    rc, _ = run_caffe()
    assert rc == 1
    assert "usage: caffe <command> <args>" in capsys.readouterr().err
    rc, _ = run_caffe("frobnicate")
    assert rc == 1
    assert "Unknown action: frobnicate" in capsys.readouterr().err


def test_test_command_prints_batches_and_means(run_caffe):
    with chdir(NETS):
        rc, lines = run_caffe("test", "-model", "lenet.prototxt", "-weights", "lenet.caffemodel",
                              "-iterations", "2")
        net = caffe.Net("lenet.prototxt", caffe.TEST, weights="lenet.caffemodel")
    assert rc == 0
    net.forward()
    probs = net.blobs["prob"].data.reshape(-1)
    batch0 = [l for l in lines if l.startswith("Batch 0, prob = ")]
    batch1 = [l for l in lines if l.startswith("Batch 1, prob = ")]
    assert len(batch0) == len(batch1) == probs.size
    assert float(batch0[3].split("= ")[1]) == pytest.approx(float(probs[3]), rel=1e-5)
    assert "Running for 2 iterations." in lines
    assert "Loss: 0" in lines
    means = [l for l in lines if l.startswith("prob = ")]
    assert len(means) == probs.size
    assert "(*" not in means[0]           # no loss weight on a Softmax output


def test_test_command_loss_weight_suffix(run_caffe, tmp_path):
    # a loss output is reported with Caffe's "(* w = w*mean loss)"
    with chdir(NETS):
        rc, lines = run_caffe("test", "--model=siamese.prototxt", "--weights=siamese.caffemodel",
                              "--iterations=1")
    assert rc == 0
    losses = [l for l in lines if re.match(r"^\w+ = \S+ \(\* 1 = \S+ loss\)$", l)]
    assert losses, lines[-5:]


def test_test_command_needs_weights(run_caffe):
    rc, lines = run_caffe("test", "-model", os.path.join(NETS, "lenet.prototxt"))
    assert rc == 1
    assert any("Need model weights to score." in l for l in lines)


def test_time_command_output(run_caffe):
    with chdir(NETS):
        rc, lines = run_caffe("time", "-model", "lenet.prototxt", "-iterations", "2")
    assert rc == 0
    for layer in ("data", "conv1", "pool1", "ip2", "prob"):
        assert any(re.match(r"^ *%s\tforward: [0-9.e+-]+ ms\.$" % layer, l) for l in lines), layer
        assert any(re.match(r"^ *%s\tbackward: [0-9.e+-]+ ms\.$" % layer, l) for l in lines)
    assert any(l == "     conv1\tforward: " + l.split("forward: ")[1] for l in lines
               if "conv1\tforward" in l)          # setw(10) right alignment
    for head in ("Average Forward pass: ", "Average Backward pass: ",
                 "Average Forward-Backward: ", "Total Time: "):
        assert any(l.startswith(head) and l.endswith(" ms.") for l in lines), head
    assert "Iteration: 2 forward-backward time: " in "\n".join(lines)
    assert lines.index("*** Benchmark begins ***") < lines.index("*** Benchmark ends ***")


def test_time_phase_flag(run_caffe):
    rc, lines = run_caffe("time", "-model", os.path.join(NETS, "lenet.prototxt"),
                          "-iterations", "1", "-phase", "TEST")
    assert rc == 0
    rc, lines = run_caffe("time", "-model", os.path.join(NETS, "lenet.prototxt"),
                          "-phase", "VAL")
    assert rc == 1 and any('phase must be "TRAIN" or "TEST"' in l for l in lines)


def test_device_query(run_caffe):
    rc, lines = run_caffe("device_query")     # no -gpu: Caffe's CHECK
    assert rc == 1 and lines == ["Check failed: FLAGS_gpu.size() > 0 (0 vs. 0) "
                                 "Need a device ID to query."]
    import torch
    if torch.cuda.is_available():
        rc, lines = run_caffe("device_query", "-gpu", "0")
        assert rc == 0 and any(l.startswith("Name:") for l in lines)
    else:
        rc, lines = run_caffe("device_query", "-gpu", "0")
        assert rc == 1


def test_python_dash_m_caffe_subprocess():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "caffe", "test", "-model", "lenet.prototxt",
                        "-weights", "lenet.caffemodel", "-iterations", "1"], cwd=NETS,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    # glog-style lines on stderr, as Caffe writes them
    assert re.search(r"^I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] Batch 0, prob = ",
                     r.stderr, re.M)


# ---------------------------------------------------------------------------
# train (needs caffe.get_solver and the shipped example)
# ---------------------------------------------------------------------------
def _has_solver():
    try:
        caffe.get_solver  # noqa: B018 (the attribute look-up is the check)
        return True
    except AttributeError:
        return False


needs_solver = pytest.mark.skipif(not _has_solver(),
                                  reason="caffe.get_solver (caffe/solver.py) is not there yet")
needs_example = pytest.mark.skipif(not os.path.exists(os.path.join(EXAMPLE, "make_data.py")),
                                   reason="examples/lenet_synthetic is not there yet")


@pytest.fixture
def example_dir(tmp_path):
    for f in ("lenet_train_test.prototxt", "lenet_solver.prototxt"):
        shutil.copy(os.path.join(EXAMPLE, f), str(tmp_path / f))
    sys.path.insert(0, EXAMPLE)
    try:
        import make_data
        make_data.make(str(tmp_path))
    finally:
        sys.path.remove(EXAMPLE)
    text = open(str(tmp_path / "lenet_solver.prototxt")).read()
    for old, new in (("max_iter: 300", "max_iter: 20"), ("test_interval: 100", "test_interval: 10"),
                     ("test_iter: 5", "test_iter: 2"), ("display: 20", "display: 5"),
                     ('snapshot_prefix: "snapshots/lenet_synthetic"', 'snapshot_prefix: "snap"')):
        assert old in text, old
        text = text.replace(old, new)
    with open(str(tmp_path / "solver.prototxt"), "w") as f:
        f.write(text)
    return tmp_path


@needs_solver
@needs_example
def test_train_test_time_on_example(run_caffe, example_dir):
    with chdir(str(example_dir)):
        rc, lines = run_caffe("train", "-solver", "solver.prototxt")
        assert rc == 0, lines[-5:]
        assert "Use CPU." in lines and "Starting Optimization" in lines
        assert lines[-1] == "Optimization Done."
        assert any(re.match(r"Iteration 15 .*loss = ", l) for l in lines)
        assert any(l.strip().startswith("Test net output #0: accuracy = ") for l in lines)
        assert os.path.exists("snap_iter_20.caffemodel")
        assert os.path.exists("snap_iter_20.solverstate")
        # score and time the trained model on the same example
        rc, lines = run_caffe("test", "-model", "lenet_train_test.prototxt",
                              "-weights", "snap_iter_20.caffemodel", "-iterations", "2")
        assert rc == 0
        assert any(l.startswith("Batch 1, accuracy = ") for l in lines)
        assert any(re.match(r"^loss = \S+ \(\* 1 = \S+ loss\)$", l) for l in lines)
        rc, lines = run_caffe("time", "-model", "lenet_train_test.prototxt", "-iterations", "1")
        assert rc == 0 and any(l.startswith("Average Forward pass: ") for l in lines)
        # finetune from weights (comma list), and resume from the snapshot
        rc, lines = run_caffe("train", "-solver", "solver.prototxt",
                              "-weights", "snap_iter_20.caffemodel,snap_iter_20.caffemodel")
        assert rc == 0
        assert sum(l == "Finetuning from snap_iter_20.caffemodel" for l in lines) >= 2
        rc, lines = run_caffe("train", "-solver", "solver.prototxt",
                              "-snapshot", "snap_iter_20.solverstate")
        assert rc == 0 and "Resuming from snap_iter_20.solverstate" in lines
        rc, lines = run_caffe("train", "-solver", "solver.prototxt",
                              "-snapshot", "snap_iter_20.solverstate",
                              "-weights", "snap_iter_20.caffemodel")
        assert rc == 1 and any("but not both" in l for l in lines)
        rc, lines = run_caffe("train", "-solver", "solver.prototxt", "-sigint_effect", "bogus")
        assert rc == 1 and any('Invalid signal effect "bogus"' in l for l in lines)


@needs_solver
@needs_example
def test_train_sigint_stop_and_sighup_snapshot(run_caffe, example_dir):
    import signal
    with chdir(str(example_dir)):
        solver_calls = {"n": 0}
        real_get_solver = caffe.get_solver

        def get_solver(param):
            s = real_get_solver(param)

            def on_start():
                solver_calls["n"] += 1
                if s.iter == 3:
                    os.kill(os.getpid(), signal.SIGHUP)
                if s.iter == 6:
                    os.kill(os.getpid(), signal.SIGINT)
            s.add_callback(on_start, lambda: None)
            return s
        caffe.get_solver = get_solver
        try:
            rc, lines = run_caffe("train", "-solver", "solver.prototxt")
        finally:
            caffe.get_solver = real_get_solver
        assert rc == 0
        assert "Optimization stopped early." in lines
        assert solver_calls["n"] == 7                  # iterations 0..6, stopped after 6
        # SIGHUP arrived before iteration 3 ran: snapshot of the state after 3 updates
        assert os.path.exists("snap_iter_3.caffemodel")
        assert not os.path.exists("snap_iter_4.caffemodel")
        assert os.path.exists("snap_iter_7.caffemodel")  # snapshot_after_train on stop


@needs_solver
def test_train_needs_solver_flag(run_caffe):
    rc, lines = run_caffe("train")
    assert rc == 1 and any("Need a solver definition to train." in l for l in lines)


_TINY_SOLVER = """
net_param {
  layer { name: "d" type: "DummyData" top: "x" top: "y"
          dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 1 }
                             data_filler { type: "gaussian" } } }
  layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
          inner_product_param { num_output: 1 weight_filler { type: "gaussian" } } }
  layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "y" top: "loss" }
}
base_lr: 0.01 lr_policy: "fixed" max_iter: 3 display: 1
snapshot_prefix: "%s"
"""


def test_train_creates_snapshot_folder_first(tmp_path, run_caffe):
    """Caffe checks snapshot_prefix before training; we create its folder and log
    it, so a run never fails at its final snapshot."""
    solver = tmp_path / "solver.prototxt"
    solver.write_text(_TINY_SOLVER % (tmp_path / "out" / "sub" / "tiny"))
    rc, lines = run_caffe("train", "-solver", str(solver))
    assert rc == 0, lines
    created = [i for i, l in enumerate(lines) if l.startswith("Created snapshot folder ")]
    start = lines.index("Starting Optimization")
    assert created and created[0] < start
    assert (tmp_path / "out" / "sub" / "tiny_iter_3.caffemodel").exists()
    # a prefix under a file cannot be created: the error comes before any iteration
    (tmp_path / "afile").write_text("")
    solver.write_text(_TINY_SOLVER % (tmp_path / "afile" / "x" / "tiny"))
    rc, lines = run_caffe("train", "-solver", str(solver))
    assert rc == 1 and "Cannot write to snapshot prefix" in lines[-1]
    assert not any(l.startswith("Iteration") for l in lines)
