"""Data-parallel training on torch.distributed, with Caffe's multi-GPU semantics.

Caffe trains on N GPUs with N solvers, one per device, each with its own net and
its own share of the data (Data/HDF5Data keep record i on rank i % N).  The root
solver's parameters are broadcast before training; after every backward the
gradients are summed over the solvers and scaled by 1/N (NCCL's callback), and
then every solver runs the same update.  Only the root tests, displays and
snapshots.  Here each solver is a process of a torch.distributed group: NCCL on
GPUs, Gloo on CPUs (``CAFFE_DIST_BACKEND`` overrides).  The transport is
torch.distributed's; nothing here moves bytes by itself.

Entry points: :func:`init_from_env` (torchrun's RANK/WORLD_SIZE/LOCAL_RANK/
MASTER_ADDR), :func:`spawn` (``caffe train -gpu 0,1``), and pycaffe's
:class:`NCCL` (``caffe.NCCL(solver, uid)``, BVLC's ``python/train.py``).
A collective that waits longer than the timeout (``CAFFE_DIST_TIMEOUT``
seconds, default 1800) fails with :class:`DistributedError`, as does one whose
peer died, so a lost rank never hangs the others forever.
"""
import datetime
import logging
import os
import socket
import tempfile
import uuid

import torch

from . import _common

logger = logging.getLogger("caffe")

DEFAULT_TIMEOUT_S = 1800.0


class DistributedError(RuntimeError):
    """A process group could not be formed, or a peer died or timed out."""


def _dist():
    import torch.distributed as dist
    if not dist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed; multi-process "
                               "training is not available")
    return dist


def timeout_seconds(timeout=None):
    """The collective timeout: the argument, else ``CAFFE_DIST_TIMEOUT``, else 1800 s."""
    if timeout is None:
        text = os.environ.get("CAFFE_DIST_TIMEOUT", "")
        if not text:
            return DEFAULT_TIMEOUT_S
        try:
            timeout = float(text)
        except ValueError:
            raise DistributedError("CAFFE_DIST_TIMEOUT=%r is not a number of seconds"
                                   % text) from None
    timeout = float(timeout)
    if timeout <= 0:
        raise DistributedError("the distributed timeout must be positive (got %s s)" % timeout)
    return timeout


def default_backend():
    """``CAFFE_DIST_BACKEND`` if set, else NCCL in GPU mode with CUDA, else Gloo."""
    forced = os.environ.get("CAFFE_DIST_BACKEND", "").strip().lower()
    if forced:
        if forced not in ("gloo", "nccl", "mpi", "ucc"):
            raise DistributedError("CAFFE_DIST_BACKEND=%r: use gloo, nccl, mpi or ucc" % forced)
        return forced
    if _common.mode() == "gpu" and torch.cuda.is_available():
        return "nccl"
    return "gloo"


def is_initialized():
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def init(rank, world_size, init_method="env://", backend=None, timeout=None):
    """Join (or form) the process group and make this process solver ``rank`` of
    ``world_size`` (``caffe.solver_rank()`` / ``caffe.solver_count()``)."""
    dist = _dist()
    rank, world_size = int(rank), int(world_size)
    if not 0 <= rank < world_size:
        raise DistributedError("rank %d is not in [0, %d)" % (rank, world_size))
    if not dist.is_initialized():
        backend = backend or default_backend()
        seconds = timeout_seconds(timeout)
        try:
            dist.init_process_group(backend, init_method=init_method, rank=rank,
                                    world_size=world_size,
                                    timeout=datetime.timedelta(seconds=seconds))
        except Exception as exc:
            raise DistributedError("rank %d of %d could not join the %s process group at %s "
                                   "within %g s: %s" % (rank, world_size, backend, init_method,
                                                        seconds, exc)) from None
    elif dist.get_world_size() != world_size or dist.get_rank() != rank:
        raise DistributedError("the process group is rank %d of %d, but Caffe was asked for "
                               "rank %d of %d" % (dist.get_rank(), dist.get_world_size(),
                                                  rank, world_size))
    _common.set_solver_count(world_size)
    _common.set_solver_rank(rank)
    _common.set_multiprocess(True)


def env_world():
    """(rank, world_size, local_rank) from torchrun's environment, or None."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise DistributedError("RANK=%r / WORLD_SIZE=%r / LOCAL_RANK=%r are not integers"
                               % (os.environ.get("RANK"), os.environ.get("WORLD_SIZE"),
                                  os.environ.get("LOCAL_RANK"))) from None
    return rank, world, local


def init_from_env(backend=None, timeout=None):
    """Join torchrun's group when its environment says WORLD_SIZE > 1.  Returns
    (rank, world_size, local_rank), or None for a single-process run."""
    world = env_world()
    if world is None or world[1] <= 1:
        return None
    rank, size, local = world
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise DistributedError("RANK/WORLD_SIZE are set but MASTER_ADDR/MASTER_PORT are not: "
                               "launch with torchrun or set all four")
    init(rank, size, "env://", backend, timeout)
    return rank, size, local


def from_solver_param(param, backend=None, timeout=None):
    """Join the group ptcaffe-style solver fields describe (``distributed_backend``,
    ``distributed_master``, ``distributed_worldsize``, ``distributed_rank``), if
    they ask for more than one process."""
    fields = [f.name for f in param.DESCRIPTOR.fields]
    if "distributed_worldsize" not in fields or param.distributed_worldsize <= 1:
        return None
    master = param.distributed_master
    if not master:
        raise DistributedError("solver: distributed_worldsize is %d but distributed_master "
                               "(tcp://host:port) is empty" % param.distributed_worldsize)
    if "://" not in master:
        master = "tcp://" + master
    init(param.distributed_rank, param.distributed_worldsize, master,
         backend or (param.distributed_backend.lower() or None), timeout)
    return param.distributed_rank, param.distributed_worldsize


def shutdown():
    if is_initialized():
        _dist().destroy_process_group()


def free_port():
    """A TCP port free on this host right now (for a local rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_uid():
    """pycaffe's ``NCCL.new_uid()``: a rendezvous every process of this host can
    join, here a fresh file for torch.distributed's FileStore.  Returned as
    ``bytes``, the type pycaffe's uid has on Python 3 (scripts pickle it to
    their worker processes as it is)."""
    path = os.path.join(tempfile.gettempdir(), "caffe-nccl-%s" % uuid.uuid4().hex)
    return ("file://" + path).encode()


def _failed(what, exc):
    rank, count = _common.solver_rank(), _common.solver_count()
    return DistributedError("caffe distributed: %s failed on rank %d of %d (a peer died, "
                            "hung past the %g s timeout, or left the group): %s"
                            % (what, rank, count, timeout_seconds(), exc))


def _bucketed(tensors, op, bucket_bytes=25 << 20):
    """Run ``op(flat)`` over the tensors packed into flat buckets, then copy back."""
    bucket, size = [], 0
    for t in tensors:
        bucket.append(t)
        size += t.numel() * t.element_size()
        if size >= bucket_bytes:
            _run_bucket(bucket, op)
            bucket, size = [], 0
    if bucket:
        _run_bucket(bucket, op)


def _run_bucket(bucket, op):
    if len(bucket) == 1:
        flat = bucket[0].reshape(-1)
        if flat.data_ptr() == bucket[0].data_ptr() and bucket[0].is_contiguous():
            op(flat)
            return
    flat = torch.cat([t.reshape(-1) for t in bucket])
    op(flat)
    offset = 0
    for t in bucket:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view(t.shape))
        offset += n


class NCCL:
    """pycaffe's ``caffe.NCCL(solver, uid)`` on torch.distributed.

    ``bcast()`` copies the root's parameters to every solver; as a solver
    callback (``solver.add_callback(nccl)``) it all-reduces the gradients
    (sum, then 1/N) before each update.  Registered with
    ``solver.net.after_backward(nccl)`` it starts each layer's reduction as
    soon as that layer's backward is done (Caffe's ``layer_wise_reduce``),
    overlapping communication with the backward of earlier layers; the sums
    are the same either way.  If no group exists yet it forms one from
    ``uid`` (see :func:`new_uid`) with ``caffe.solver_rank()`` of
    ``caffe.solver_count()``.
    """

    def __init__(self, solver, uid=None):
        self.solver = solver
        self.uid = uid
        # a solver made inside a process group already has its NCCL (attach()):
        # a second one (BVLC train.py's) must not reduce again
        self._duplicate = getattr(solver, "_nccl", None) is not None
        if self._duplicate:
            return
        if not is_initialized():
            if _common.solver_count() <= 1:
                raise DistributedError("caffe.NCCL needs caffe.set_solver_count(N > 1) and "
                                       "caffe.set_solver_rank(r) first (or a process group)")
            init(_common.solver_rank(), _common.solver_count(),
                 uid.decode() if isinstance(uid, bytes) else (uid or "env://"))
        self._net = solver.net
        self._params = self._net.learnable_params
        self._tasks = getattr(solver, "tasks", None)     # multi-task: the running task's
        self._layer_params = self._layer_param_map()
        self._pending = []
        self._layer_wise_done = False

    @staticmethod
    def new_uid():
        return new_uid()

    def _layer_param_map(self):
        """Layer index -> the learnable params whose gradient is complete once
        that layer's backward ran (a shared param: at its first user)."""
        index = {id(b): i for i, b in enumerate(self._params)}
        first = {}
        for li, layer in enumerate(self._net.layers):
            for b in layer.blobs:
                k = index.get(id(b))
                if k is not None and k not in first:
                    first[k] = li
        by_layer = {}
        for k, li in sorted(first.items()):
            by_layer.setdefault(li, []).append(k)
        return by_layer

    def _device(self):
        return _common.compute_device()

    def bcast(self):
        """Copy rank 0's parameters to every rank (Caffe's NCCL::Broadcast)."""
        if self._duplicate:
            return
        dist = _dist()
        dev = self._device()
        params = self._tasks.learnable_params if self._tasks is not None else self._params
        datas = [b.data_buffer.mutable_compute(dev) for b in params]
        try:
            _bucketed(datas, lambda flat: dist.broadcast(flat, src=0))
        except RuntimeError as exc:
            raise _failed("broadcasting the parameters", exc) from None

    # -- solver callback ---------------------------------------------------
    def on_start(self):
        pass

    def on_gradients_ready(self):
        """Sum the gradients over the ranks and scale by 1/N."""
        if self._duplicate:
            return
        dist = _dist()
        n = _common.solver_count()
        if self._layer_wise_done:
            self._layer_wise_done = False
            return
        dev = self._device()
        params = self._tasks.active_params() if self._tasks is not None else self._params
        diffs = [b.diff_buffer.mutable_compute(dev) for b in params]
        if not diffs:
            return
        try:
            _bucketed(diffs, lambda flat: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
        except RuntimeError as exc:
            raise _failed("all-reducing the gradients at iteration %d"
                          % getattr(self.solver, "iter", -1), exc) from None
        torch._foreach_mul_(diffs, 1.0 / n)

    # -- layer-wise reduction (net.after_backward) ----------------------------
    def __call__(self, layer_id):
        if self._duplicate:
            return
        dist = _dist()
        ks = self._layer_params.get(layer_id)
        if ks:
            dev = self._device()
            diffs = [self._params[k].diff_buffer.mutable_compute(dev) for k in ks]
            flat = torch.cat([d.reshape(-1) for d in diffs])
            try:
                work = dist.all_reduce(flat, op=dist.ReduceOp.SUM, async_op=True)
            except RuntimeError as exc:
                raise _failed("all-reducing layer %d's gradients" % layer_id, exc) from None
            self._pending.append((work, flat, diffs))
        if layer_id == 0:
            self._finish_layer_wise()

    def _finish_layer_wise(self):
        n = _common.solver_count()
        pending, self._pending = self._pending, []
        for work, flat, diffs in pending:
            try:
                work.wait()
            except RuntimeError as exc:
                raise _failed("all-reducing the gradients", exc) from None
            flat.mul_(1.0 / n)
            offset = 0
            for d in diffs:
                d.copy_(flat[offset:offset + d.numel()].view(d.shape))
                offset += d.numel()
        self._layer_wise_done = True


def attach(solver):
    """Make a solver built inside a process group data-parallel: broadcast rank
    0's weights, all-reduce every iteration's gradients (layer-wise when the
    solver's ``layer_wise_reduce`` is set).  Done by the Solver constructor, so
    ``caffe.get_solver`` under torchrun trains across the group by itself."""
    nccl = NCCL(solver)
    nccl.bcast()
    solver.add_callback(nccl)
    if solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)
    solver._nccl = nccl
    return nccl


# ---------------------------------------------------------------------------
# Local launcher (``caffe train -gpu 0,1``)
# ---------------------------------------------------------------------------
def _spawned(index, fn, world_size, args):
    os.environ["RANK"] = str(index)
    os.environ["LOCAL_RANK"] = str(index)
    os.environ["WORLD_SIZE"] = str(world_size)
    fn(index, *args)


def spawn(fn, nprocs, args=()):
    """Run ``fn(rank, *args)`` in ``nprocs`` fresh processes that find each other
    through a rendezvous on this host (torchrun's variables, so each one takes
    the torchrun path).  When one fails the others are stopped.  Returns None
    on success, else a message naming the failed rank."""
    import torch.multiprocessing as mp
    saved = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT")}
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(free_port())
    try:
        mp.start_processes(_spawned, args=(fn, nprocs, tuple(args)), nprocs=nprocs,
                           join=True, start_method="spawn")
    except mp.ProcessRaisedException as exc:
        return "rank %d of %d failed: %s" % (exc.error_index, nprocs,
                                             str(exc).strip().splitlines()[-1])
    except mp.ProcessExitedException as exc:
        return "rank %d of %d exited with code %s" % (exc.error_index, nprocs, exc.exit_code)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return None
