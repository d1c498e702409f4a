"""Solver.restore is transactional (#14 item 3): a state file that does not fit
this solver and net is rejected, naming the blob, before iteration, history or
weights change; damaged state files raise CaffeFileError naming the file."""
import numpy as np
import pytest

import caffe
from caffe.protoio import CaffeFileError

NET = """
name: "r"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: %d weight_filler { type: "gaussian" } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "ip" top: "loss" }
"""


def _solver(tmp_path, tag, fmt="BINARYPROTO", outputs=3, kind="SGD"):
    net = tmp_path / ("%s.prototxt" % tag)
    net.write_text(NET % outputs)
    sp = tmp_path / ("%s_solver.prototxt" % tag)
    momentum = "momentum: 0.9\n" if kind in ("SGD", "Adam") else ""
    sp.write_text('net: "%s"\ntype: "%s"\nbase_lr: 0.01\nlr_policy: "fixed"\n%ssnapshot_format: %s\n'
                  'snapshot_prefix: "%s"\n' % (net, kind, momentum, fmt, tmp_path / tag))
    return caffe.get_solver(str(sp))


def _state(solver):
    return (solver.iter, [h.cpu().numpy().copy() for h in solver._history],
            {k: [b.data.copy() for b in v] for k, v in solver.net.params.items()})


def _assert_same(solver, state):
    it, hist, params = state
    assert solver.iter == it
    for h, old in zip(solver._history, hist):
        np.testing.assert_array_equal(h.cpu().numpy(), old)
    for k, v in solver.net.params.items():
        for b, old in zip(v, params[k]):
            np.testing.assert_array_equal(b.data, old)


def _snapshot_after_steps(tmp_path, tag, fmt, outputs=3, kind="SGD", steps=2):
    s = _solver(tmp_path, tag, fmt, outputs, kind)
    s.net.blobs["data"].data[...] = 1.0
    s.step(steps)
    s.snapshot()
    ext = ".solverstate" + (".h5" if fmt == "HDF5" else "")
    return str(tmp_path / ("%s_iter_%d%s" % (tag, steps, ext)))


@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_restore_roundtrip(tmp_path, fmt):
    if fmt == "HDF5":
        pytest.importorskip("h5py")
    path = _snapshot_after_steps(tmp_path, "a", fmt)
    s = _solver(tmp_path, "b", fmt)
    s.restore(path)
    assert s.iter == 2


@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_history_of_other_shape_is_rejected_naming_the_blob(tmp_path, fmt):
    """The state (and its learned net) come from a net with 5 outputs."""
    if fmt == "HDF5":
        pytest.importorskip("h5py")
    path = _snapshot_after_steps(tmp_path, "big", fmt, outputs=5)
    s = _solver(tmp_path, "small", fmt, outputs=3)
    s.step(1)
    before = _state(s)
    with pytest.raises(CaffeFileError) as exc:
        s.restore(path)
    msg = str(exc.value)
    assert path in msg and "history blob 0" in msg and "'ip'" in msg, msg
    _assert_same(s, before)


def test_learned_net_mismatch_changes_nothing(tmp_path):
    """History fits (same shapes) but the learned net file is damaged."""
    path = _snapshot_after_steps(tmp_path, "a", "BINARYPROTO")
    model = str(tmp_path / "a_iter_2.caffemodel")
    data = open(model, "rb").read()
    with open(model, "wb") as f:
        f.write(data[:len(data) - 10])
    s = _solver(tmp_path, "b", "BINARYPROTO")
    s.step(1)
    before = _state(s)
    with pytest.raises(CaffeFileError, match="a_iter_2.caffemodel"):
        s.restore(path)
    _assert_same(s, before)


def test_history_of_another_solver_type_is_rejected(tmp_path):
    path = _snapshot_after_steps(tmp_path, "adam", "BINARYPROTO", kind="Adam")
    s = _solver(tmp_path, "sgd", "BINARYPROTO", kind="SGD")
    before = _state(s)
    with pytest.raises(CaffeFileError, match="Incorrect length of history blobs"):
        s.restore(path)
    _assert_same(s, before)


def test_damaged_hdf5_states_raise_named_errors(tmp_path):
    h5py = pytest.importorskip("h5py")
    good = _snapshot_after_steps(tmp_path, "a", "HDF5")
    raw = open(good, "rb").read()
    cases = []
    p = str(tmp_path / "trunc.solverstate.h5")
    with open(p, "wb") as f:
        f.write(raw[:len(raw) // 2])
    cases.append(p)
    p = str(tmp_path / "noiter.solverstate.h5")
    with h5py.File(p, "w") as f:
        f.create_dataset("current_step", data=np.array([0], np.int32))
    cases.append(p)
    p = str(tmp_path / "strhist.solverstate.h5")
    with h5py.File(p, "w") as f:
        f.create_dataset("iter", data=np.array([3], np.int32))
        f.create_dataset("current_step", data=np.array([0], np.int32))
        f.create_dataset("history/0", data=np.array([b"x"]))
        f.create_dataset("history/1", data=np.zeros(3, np.float32))
    cases.append(p)
    s = _solver(tmp_path, "b", "HDF5")
    before = _state(s)
    for p in cases:
        with pytest.raises(CaffeFileError) as exc:
            s.restore(p)
        assert p in str(exc.value)
        _assert_same(s, before)
