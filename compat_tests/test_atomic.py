"""Atomic writes (#14 item 2): a crash at any moment leaves the old complete
file or the new complete file under the final name, never a truncated one."""
import os
import random
import signal
import stat
import sys
import time

import numpy as np
import pytest
import torch

import caffe
from caffe import atomic

NET = """
name: "big"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1024 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 1024 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "ip" top: "loss" }
"""


def test_atomic_open_replaces_only_when_complete(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(str(path)) as f:
            f.write(b"new but ")
            raise RuntimeError("crash while writing")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]          # no temporary left behind
    with atomic.atomic_open(str(path)) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_atomic_write_keeps_permissions(tmp_path):
    path = tmp_path / "f.bin"
    atomic.write_bytes(str(path), b"x")
    umask = os.umask(0o22)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    os.chmod(path, 0o640)
    atomic.write_bytes(str(path), b"y")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def _solver(tmp_path, fmt):
    net = tmp_path / "net.prototxt"
    net.write_text(NET)
    sp = tmp_path / ("solver_%s.prototxt" % fmt)
    sp.write_text('net: "%s"\nbase_lr: 0.01\nlr_policy: "fixed"\nmomentum: 0.9\nsnapshot_format: %s\n'
                  'snapshot_prefix: "%s"\n' % (net, fmt, tmp_path / ("snap_" + fmt)))
    return caffe.SGDSolver(str(sp))


def _fill(solver, value):
    for blobs in solver.net.params.values():
        for b in blobs:
            b.data[...] = value
    for h in solver._history:
        h.fill_(value)


def _check_intact(solver, model, state):
    """Both files load completely, and each is one write's content (a constant)."""
    solver.restore(state)                 # raises on a truncated state or model
    values = set()
    for blobs in solver.net.params.values():
        for b in blobs:
            values.update(np.unique(b.data).tolist())
    hist = set()
    for h in solver._history:
        hist.update(np.unique(h.cpu().numpy()).tolist())
    assert len(values) == 1 and len(hist) == 1, (model, values, hist)
    return values.pop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to kill a writer cheaply")
@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_kill_9_during_snapshot_leaves_previous_snapshot_loadable(tmp_path, fmt):
    """A child keeps snapshotting (same iteration, so the same file names) with
    new values; it is SIGKILLed at random moments, 12 times per format."""
    if fmt == "HDF5":
        pytest.importorskip("h5py")
    solver = _solver(tmp_path, fmt)
    ext = ".caffemodel" if fmt == "BINARYPROTO" else ".caffemodel.h5"
    model = str(tmp_path / ("snap_%s_iter_0%s" % (fmt, ext)))
    state = str(tmp_path / ("snap_%s_iter_0.solverstate%s" % (fmt, "" if ext == ".caffemodel"
                                                              else ".h5")))
    _fill(solver, 0.0)
    start = time.perf_counter()
    solver.snapshot()
    one_snapshot = time.perf_counter() - start      # kills land within ~2.5 snapshots
    # torch's OpenMP pool does not survive fork(): keep the child's torch work inline
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torn = _kill_trials(solver, model, state, tmp_path, random.Random(1234 + len(fmt)),
                            2.5 * one_snapshot)
    finally:
        torch.set_num_threads(threads)
    print("%s: %d of 12 kills landed mid-write" % (fmt, torn))


def _wait_for_replacement(path, inode, timeout):
    """Until ``path`` is a new file (an atomic write renames a new inode in)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.stat(path).st_ino != inode:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    raise AssertionError("the snapshotting child wrote nothing in %g s" % timeout)


def _kill_trials(solver, model, state, tmp_path, rng, window):
    value = 0
    torn = 0
    written = 0                        # trials whose child completed a snapshot
    for trial in range(12):
        value += 1
        sys.stdout.flush()
        before = os.stat(state).st_ino
        pid = os.fork()
        if pid == 0:                                  # child: snapshot forever
            try:
                v = value
                while True:
                    v += 1000
                    _fill(solver, float(v))
                    solver.snapshot()
            finally:
                os._exit(0)
        if trial % 3 == 2:
            # Every third child first completes one snapshot (its files replaced),
            # so that a loaded machine cannot make every kill land before any write.
            _wait_for_replacement(state, before, timeout=60.0)
        time.sleep(rng.uniform(0.0, window))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        torn += any(n.endswith(".partial") for n in os.listdir(tmp_path))
        got = _check_intact(solver, model, state)
        assert got == 0.0 or 1 <= got % 1000 <= value, got
        written += got % 1000 == value
        for n in os.listdir(tmp_path):                # stale temporaries of killed writers
            if n.endswith(".partial"):
                os.remove(os.path.join(tmp_path, n))
    assert written >= 3, "the child snapshotted in only %d trials" % written
    return torn
