"""Data-parallel training (caffe.distributed) on CPU with Gloo, 2 processes.

Caffe's multi-GPU contract: N ranks with batch B see, iteration by iteration,
the records one process with batch N*B sees (rank r keeps record i when
i % N == r), and the all-reduced, 1/N-scaled gradients make every rank take
the update that one process takes.  So a 2-process run must end at the weights
of a single-process run with twice the batch (LeNet on LMDB).  With BatchNorm
the batch statistics are per rank, so there the reference is the same two
ranks simulated in one process (each net on its own half, gradients averaged
by hand).  Every multi-process run is a real one: ``caffe train -gpu 0,1``
(CPU fallback), ``torchrun``, a BVLC ``train.py``-style script on caffe.NCCL,
and a run whose second rank dies.
"""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import caffe
from caffe import distributed
from caffe.proto import caffe_pb2
from caffe.tools._db import open_db

ITERS = 4

LENET = """name: "LeNet"
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  data_param { source: "%(source)s" batch_size: %(batch)d backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 6 kernel_size: 5 weight_filler { type: "xavier" }
    bias_filler { type: "constant" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 8 kernel_size: 5 weight_filler { type: "xavier" }
    bias_filler { type: "constant" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 32 weight_filler { type: "xavier" }
    bias_filler { type: "constant" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 10 weight_filler { type: "xavier" }
    bias_filler { type: "constant" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

BN_NET = """name: "HDF5BN"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param { source: "%(source)s" batch_size: %(batch)d } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 12 bias_term: false
    weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn1" type: "BatchNorm" bottom: "ip1" top: "ip1" }
layer { name: "scale1" type: "Scale" bottom: "ip1" top: "ip1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

SGD = ('type: "SGD" base_lr: 0.02 momentum: 0.9 weight_decay: 0.0005 lr_policy: "step" '
       'gamma: 0.5 stepsize: 2')
ADAM = 'type: "Adam" base_lr: 0.01 momentum: 0.9 momentum2: 0.999 delta: 1e-8 lr_policy: "fixed"'


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    rng = np.random.RandomState(7)
    db = open_db(str(d / "train_lmdb"), "lmdb", "w")
    txn = db.transaction()
    for i in range(96):
        datum = caffe_pb2.Datum(channels=1, height=28, width=28, label=int(rng.randint(10)))
        datum.data = rng.randint(0, 256, (1, 28, 28)).astype(np.uint8).tobytes()
        txn.put("%08d" % i, datum.SerializeToString())
    txn.commit()
    db.close()
    import h5py
    with h5py.File(d / "train.h5", "w") as f:
        f["data"] = rng.randn(40, 5).astype(np.float32)
        f["label"] = rng.randint(0, 3, 40).astype(np.float32)
    _write(d / "h5list.txt", str(d / "train.h5") + "\n")
    return d


def make_solver(d, name, net, solver, batch, extra="", iters=ITERS):
    """A solver file (and its net file) for ``net`` with per-rank ``batch``."""
    source = d / ("train_lmdb" if net is LENET else "h5list.txt")
    net_file = _write(d / ("%s_net.prototxt" % name), net % {"source": source, "batch": batch})
    return _write(d / ("%s_solver.prototxt" % name),
                  'net: "%s"\n%s\niter_size: 2\nmax_iter: %d\ndisplay: 1\nrandom_seed: 3\n'
                  'snapshot_prefix: "%s"\n%s\n'
                  % (net_file, solver, iters, d / name, extra))


@pytest.fixture(autouse=True)
def _single_process():
    caffe.set_solver_count(1)
    caffe.set_solver_rank(0)
    yield
    caffe.set_solver_count(1)
    caffe.set_solver_rank(0)


def params_of(net):
    return {(name, i): b.data.copy() for name, blobs in net.params.items()
            for i, b in enumerate(blobs)}


def snapshot_params(net_file, model):
    return params_of(caffe.Net(net_file, caffe.TRAIN, weights=model))


def assert_params_equal(got, want, rtol=1e-5):
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=1e-6 * max(
            1.0, float(np.abs(want[key]).max())), err_msg=str(key))


def train_single(solver_file, iters=ITERS):
    solver = caffe.get_solver(solver_file)
    solver.step(iters)
    return params_of(solver.net)


def train_simulated(solver_file, n=2, iters=ITERS):
    """N ranks in one process: each solver reads its own share (its rank set
    while it runs), rank 0's initial weights everywhere, gradients summed and
    scaled by 1/N by hand before every rank's update."""
    caffe.set_solver_count(n)
    solvers = []
    for r in range(n):
        caffe.set_solver_rank(r)
        solvers.append(caffe.get_solver(solver_file))
    root = solvers[0].net.learnable_params
    for s in solvers[1:]:
        for mine, theirs in zip(s.net.learnable_params, root):
            mine.data[...] = theirs.data
    iter_size = solvers[0].param.iter_size
    for _ in range(iters):
        for r, s in enumerate(solvers):
            caffe.set_solver_rank(r)
            s.net.clear_param_diffs()
            for _ in range(iter_size):
                s.net._forward(0, len(s.net.layers) - 1)
                s.net._backward(len(s.net.layers) - 1, 0)
        for k in range(len(root)):
            total = sum(s.net.learnable_params[k].diff for s in solvers)
            for s in solvers:
                s.net.learnable_params[k].diff[...] = total * np.float32(1.0 / n)
        for r, s in enumerate(solvers):
            caffe.set_solver_rank(r)
            s.apply_update()
    caffe.set_solver_rank(0)
    return params_of(solvers[0].net)


def run(args, timeout=120, env=None):
    full = dict(os.environ)
    full.update(env or {})
    full.setdefault("CAFFE_DIST_TIMEOUT", "60")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        full.pop(k, None)
    t0 = time.time()
    proc = subprocess.run([sys.executable] + args, capture_output=True, text=True,
                          timeout=timeout, env=full)
    return proc, time.time() - t0


# ---------------------------------------------------------------------------
# in-process semantics
# ---------------------------------------------------------------------------
def test_hdf5_rows_are_split_by_rank(data_dir):
    net_file = _write(data_dir / "split_net.prototxt", BN_NET % {
        "source": data_dir / "h5list.txt", "batch": 3})
    caffe.set_solver_count(2)
    rows = {}
    for r in range(2):
        caffe.set_solver_rank(r)
        net = caffe.Net(net_file, caffe.TRAIN)
        batches = []
        for _ in range(15):             # 45 rows per rank: wraps the 40-row file
            net.forward(end="data")
            batches.append(net.blobs["data"].data.copy())
        rows[r] = np.concatenate(batches)
    import h5py
    with h5py.File(data_dir / "train.h5", "r") as f:
        all_rows = np.asarray(f["data"])
    order = np.arange(90) % 40
    np.testing.assert_array_equal(rows[0], all_rows[order[0::2]])
    np.testing.assert_array_equal(rows[1], all_rows[order[1::2]])
    test = caffe.Net(net_file, caffe.TEST)          # TEST reads every row on every rank
    test.forward(end="data")
    np.testing.assert_array_equal(test.blobs["data"].data, all_rows[:3])


def test_simulated_ranks_equal_double_batch_for_lenet(data_dir):
    """The hand-averaged reference itself agrees with batch 2B (no BatchNorm)."""
    single = train_single(make_solver(data_dir, "ref2b", LENET, SGD, 8))
    sim = train_simulated(make_solver(data_dir, "refsim", LENET, SGD, 4))
    assert_params_equal(sim, single)


def test_non_root_rank_neither_tests_nor_snapshots(data_dir, tmp_path):
    solver_file = make_solver(data_dir, "quiet", BN_NET, SGD, 4,
                              'snapshot: 1\ntest_iter: 1\ntest_interval: 1\n'
                              'test_initialization: true')
    caffe.set_solver_count(2)
    caffe.set_solver_rank(1)
    solver = caffe.get_solver(solver_file)
    solver.param.snapshot_prefix = str(tmp_path / "r1")
    calls = []
    solver.test_all = lambda: calls.append("test")
    solver.step(2)
    solver.solve()
    assert calls == [] and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# real process groups
# ---------------------------------------------------------------------------
def test_cli_gpu_flag_two_processes_equal_double_batch_sgd(data_dir):
    solver_file = make_solver(data_dir, "cli", LENET, SGD, 4)
    proc, took = run(["-m", "caffe", "train", "-solver", solver_file, "-gpu", "0,1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    # only rank 0 logs: each iteration's display line appears once
    assert proc.stderr.count("Iteration 2, lr = ") == 1, proc.stderr[-3000:]
    net_file = str(data_dir / "cli_net.prototxt")
    got = snapshot_params(net_file, str(data_dir / ("cli_iter_%d.caffemodel" % ITERS)))
    want = train_single(make_solver(data_dir, "cli2b", LENET, SGD, 8))
    assert_params_equal(got, want)
    # resume in a single process from the two-process snapshot
    state = str(data_dir / ("cli_iter_%d.solverstate" % ITERS))
    single = caffe.get_solver(make_solver(data_dir, "cli2b", LENET, SGD, 8))
    single.step(ITERS)
    resumed = caffe.get_solver(make_solver(data_dir, "cliresume", LENET, SGD, 8))
    resumed.restore(state)
    assert resumed.iter == ITERS
    assert_params_equal(params_of(resumed.net), params_of(single.net))


def test_single_process_snapshot_resumes_in_two_processes(data_dir):
    """The other direction of "resume across process counts": a snapshot of one
    process with batch 2B continues under `caffe train -snapshot ... -gpu 0,1`
    (batch B per rank) exactly as one process restoring it continues (both
    restart the data from the first record, as Caffe does after a restore)."""
    first = caffe.get_solver(make_solver(data_dir, "one2b", LENET, SGD, 8))
    first.step(ITERS)
    first.snapshot()
    state = str(data_dir / ("one2b_iter_%d.solverstate" % ITERS))
    two = make_solver(data_dir, "resume2", LENET, SGD, 4, iters=2 * ITERS)
    proc, _ = run(["-m", "caffe", "train", "-solver", two, "-snapshot", state, "-gpu", "0,1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = snapshot_params(str(data_dir / "resume2_net.prototxt"),
                          str(data_dir / ("resume2_iter_%d.caffemodel" % (2 * ITERS))))
    one = caffe.get_solver(make_solver(data_dir, "resume1", LENET, SGD, 8, iters=2 * ITERS))
    one.restore(state)
    one.step(ITERS)
    assert one.iter == 2 * ITERS
    assert_params_equal(got, params_of(one.net))


def test_torchrun_two_processes_adam_hdf5_batchnorm(data_dir):
    solver_file = make_solver(data_dir, "trun", BN_NET, ADAM, 4)
    proc, took = run(["-m", "torch.distributed.run", "--nproc_per_node", "2",
                      "--master_port", str(distributed.free_port()),
                      "-m", "caffe", "train", "-solver", solver_file])
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = snapshot_params(str(data_dir / "trun_net.prototxt"),
                          str(data_dir / ("trun_iter_%d.caffemodel" % ITERS)))
    want = train_simulated(make_solver(data_dir, "trunsim", BN_NET, ADAM, 4))
    assert_params_equal(got, want)


TRAIN_PY = """
import sys
from multiprocessing import get_context
import caffe

def solve(proto, uid, rank, out, die_at):
    caffe.set_solver_count(2)
    caffe.set_solver_rank(rank)
    caffe.set_multiprocess(True)
    solver = caffe.get_solver(proto)
    nccl = caffe.NCCL(solver, uid)
    nccl.bcast()
    solver.add_callback(nccl)
    if solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)
    if rank == 1 and die_at >= 0:
        solver.step(die_at)
        import os
        os._exit(3)
    solver.step(solver.param.max_iter)
    if rank == 0:
        solver.net.save(out)

if __name__ == "__main__":
    proto, out, die_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uid = caffe.NCCL.new_uid()
    ctx = get_context("spawn")
    procs = [ctx.Process(target=solve, args=(proto, uid, r, out, die_at)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    sys.exit(max(p.exitcode for p in procs))
"""


def test_bvlc_train_py_style_nccl_layer_wise(data_dir):
    script = _write(data_dir / "train_py.py", TRAIN_PY)
    solver_file = make_solver(data_dir, "nccl", BN_NET, SGD, 4)
    out = str(data_dir / "nccl_out.caffemodel")
    proc, took = run([script, solver_file, out, "-1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = snapshot_params(str(data_dir / "nccl_net.prototxt"), out)
    want = train_simulated(make_solver(data_dir, "ncclsim", BN_NET, SGD, 4))
    assert_params_equal(got, want)


def test_a_dead_rank_fails_the_run_within_the_timeout(data_dir):
    script = _write(data_dir / "train_py.py", TRAIN_PY)
    solver_file = make_solver(data_dir, "dead", BN_NET, SGD, 4, iters=100000)
    proc, took = run([script, solver_file, str(data_dir / "dead.caffemodel"), "2"],
                     env={"CAFFE_DIST_TIMEOUT": "5"}, timeout=90)
    assert proc.returncode != 0
    assert "caffe distributed:" in proc.stderr and "rank 0 of 2" in proc.stderr, \
        proc.stderr[-3000:]


FULL = pytest.mark.skipif(not os.environ.get("CAFFE_TEST_DIST_FULL"),
                          reason="slow multi-process case (~30 s): set CAFFE_TEST_DIST_FULL=1")


@FULL
def test_a_hung_rank_fails_the_others_after_the_timeout(data_dir):
    script = _write(data_dir / "train_py_hang.py", TRAIN_PY.replace(
        "        os._exit(3)", "        import time; time.sleep(10); os._exit(3)"))
    solver_file = make_solver(data_dir, "hang", BN_NET, SGD, 4, iters=100000)
    proc, took = run([script, solver_file, str(data_dir / "hang.caffemodel"), "2"],
                     env={"CAFFE_DIST_TIMEOUT": "3"}, timeout=90)
    assert proc.returncode != 0
    assert "rank 0 of 2" in proc.stderr and "Timed out" in proc.stderr, proc.stderr[-3000:]


@FULL
def test_ptcaffe_solver_fields_form_the_group(data_dir):
    port = distributed.free_port()
    files = [make_solver(data_dir, "pt%d" % r, LENET, SGD, 4,
                         'distributed_master: "127.0.0.1:%d"\ndistributed_worldsize: 2\n'
                         'distributed_rank: %d' % (port, r)) for r in range(2)]
    env = dict(os.environ, CAFFE_DIST_TIMEOUT="60")
    procs = [subprocess.Popen([sys.executable, "-m", "caffe", "train", "-solver", f],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for f in files]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    got = snapshot_params(str(data_dir / "pt0_net.prototxt"),
                          str(data_dir / ("pt0_iter_%d.caffemodel" % ITERS)))
    assert not os.path.exists(data_dir / ("pt1_iter_%d.caffemodel" % ITERS))   # rank 1: none
    want = train_single(make_solver(data_dir, "pt2b", LENET, SGD, 8))
    assert_params_equal(got, want)


def test_ptcaffe_fields_need_a_master(data_dir):
    solver_file = make_solver(data_dir, "nomaster", LENET, SGD, 4, "distributed_worldsize: 2")
    with pytest.raises(ValueError, match="distributed_master"):
        caffe.get_solver(solver_file)
