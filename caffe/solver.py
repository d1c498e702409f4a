"""Caffe's solvers: the training loop, learning-rate policies, update rules,
testing, logging, snapshots and restore, with Caffe's semantics and numbers.

``caffe.SGDSolver(path)`` (and Nesterov/AdaGrad/RMSProp/AdaDelta/Adam) build
the train net and the test nets the SolverParameter describes; ``step(n)``
runs Caffe's ``Solver::Step``; ``solve()`` runs ``Solver::Solve``.  Each update
rule is Caffe's own (the learning rate is folded into the SGD momentum
history, Adam adds epsilon to the uncorrected sqrt(v), ...), done in place on
the parameters' compute-device tensors; ``torch.optim`` is not used.

Log lines go to ``logging.getLogger("caffe")`` in Caffe's words, so logs can
be grepped and compared with those of ``caffe train``.
"""
import contextlib
import logging
import math
import os
import time

import numpy as np
import torch
from google.protobuf import text_format

from . import _common, atomic, distributed, protoio, selectors
from . import weights as weight_io
from ._outputs import g as _g
from ._outputs import output_lines
from .net import Net, plain_nets
from .protoio import CaffeFileError
from .weights import proto_array, proto_shape, shape_fits

logger = logging.getLogger("caffe")

_f32 = np.float32


class SolverError(ValueError):
    """An invalid SolverParameter or solver state (Caffe aborts on these)."""


def _f(x):
    """Round a Python number to float32 and back (Caffe's ``Dtype`` arithmetic)."""
    return float(_f32(x))


# ---------------------------------------------------------------------------
# Reading the SolverParameter
# ---------------------------------------------------------------------------
def _read_solver_param(param_file):
    """A SolverParameter from a prototxt path (upgraded, default snapshot_prefix)
    or a copy of a SolverParameter message."""
    try:
        return protoio.read_solver_param(param_file)
    except ValueError as exc:           # upgrade conflicts (solver_type vs type)
        raise SolverError(str(exc)) from None


def _is_root():
    """Caffe's ``root_solver()``: rank 0 tests, displays and snapshots."""
    return _common.solver_rank() == 0


# ---------------------------------------------------------------------------
# Solver base: nets, the training loop, testing, snapshots
# ---------------------------------------------------------------------------
class Solver:
    """Caffe's ``Solver``: owns the train net and the test nets and runs the
    training loop.  The update itself is the subclass's (see SGDSolver)."""

    type = None

    def __init__(self, param_file):
        param = _read_solver_param(param_file)
        self._source = (str(param_file) if not hasattr(param_file, "DESCRIPTOR")
                        else "<SolverParameter>")
        self._init(param)

    # -- construction --------------------------------------------------------
    def _init(self, param):
        logger.info("Initializing solver from parameters: \n%s",
                    text_format.MessageToString(param))
        self._param = param
        self._callbacks = []
        self._requested_early_exit = False
        self._losses = []
        self._smoothed_loss = 0.0
        self._iterations_last = 0
        self._timer_start = time.perf_counter()
        if param.average_loss < 1:
            raise SolverError("%s: average_loss should be non-negative (got %d)"
                              % (self._source, param.average_loss))
        self._nccl = None
        try:                        # torchrun's RANK/WORLD_SIZE, or ptcaffe's fields
            if distributed.init_from_env() is None:
                distributed.from_solver_param(param)
        except distributed.DistributedError as exc:
            raise SolverError("%s: %s" % (self._source, exc)) from None
        self._check_snapshot_write_permissions()
        if param.random_seed >= 0:
            _common.set_random_seed(param.random_seed + _common.solver_rank())
        self._init_train_net()
        self._init_test_nets()
        logger.info("Solver scaffolding done.")
        self._iter = 0
        self._current_step = 0
        self._check_param()
        self._presolve()
        if _common.solver_count() > 1 and distributed.is_initialized():
            distributed.attach(self)

    def _check_param(self):
        pass

    def _presolve(self):
        pass

    def _load_weights(self, net, model_list):
        for name in model_list.split(","):
            name = name.strip()
            logger.info("Finetuning from %s", name)
            net.copy_from(name)

    def _init_train_net(self):
        p = self._param
        fields = ("net", "net_param", "train_net", "train_net_param")
        given = [f for f in fields if p.HasField(f)]
        if not given:
            raise SolverError("%s: SolverParameter must specify a train net using one of these "
                              "fields: %s" % (self._source, ", ".join(fields)))
        if len(given) > 1:
            raise SolverError("%s: SolverParameter must not contain more than one of these "
                              "fields specifying a train_net: %s (found %s)"
                              % (self._source, ", ".join(fields), ", ".join(given)))
        pb2 = protoio.pb2()
        if p.HasField("train_net_param"):
            logger.info("Creating training net specified in train_net_param.")
            net_param = pb2.NetParameter()
            net_param.CopyFrom(p.train_net_param)
        elif p.HasField("train_net"):
            logger.info("Creating training net from train_net file: %s", p.train_net)
            net_param = protoio.read_net_param(p.train_net)
        elif p.HasField("net_param"):
            logger.info("Creating training net specified in net_param.")
            net_param = pb2.NetParameter()
            net_param.CopyFrom(p.net_param)
        else:
            logger.info("Creating training net from net file: %s", p.net)
            net_param = protoio.read_net_param(p.net)
        state = pb2.NetState()
        state.phase = _common.TRAIN
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        net_param.state.CopyFrom(state)
        tasks = selectors.solver_tasks(p, self._source)
        self._tasks = selectors.build(self, net_param, tasks) if tasks else None
        self._net = self._tasks.nets[0] if tasks else Net(net_param)
        for w in p.weights:
            for net in (self._tasks.nets if tasks else [self._net]):
                self._load_weights(net, w)

    def _init_test_nets(self):
        p = self._param
        pb2 = protoio.pb2()
        self._test_labels = []
        if getattr(p, "test_iters", ""):      # (a fork schema may lack the field)
            return self._init_task_test_nets()
        has_net_param = p.HasField("net_param")
        has_net_file = p.HasField("net")
        if has_net_param and has_net_file:
            raise SolverError("%s: Both net_param and net_file may not be specified."
                              % self._source)
        n_specific = len(p.test_net_param) + len(p.test_net)
        if has_net_param or has_net_file:
            if len(p.test_iter) < n_specific:
                raise SolverError("%s: test_iter must be specified for each test network "
                                  "(%d test_iter for %d test nets)"
                                  % (self._source, len(p.test_iter), n_specific))
        elif len(p.test_iter) != n_specific:
            raise SolverError("%s: test_iter must be specified for each test network "
                              "(%d test_iter for %d test nets)"
                              % (self._source, len(p.test_iter), n_specific))
        n_instances = max(len(p.test_iter), n_specific)
        if len(p.test_state) and len(p.test_state) != n_instances:
            raise SolverError("%s: test_state must be unspecified or specified once per test "
                              "net (%d test_state for %d test nets)"
                              % (self._source, len(p.test_state), n_instances))
        if n_instances and p.test_interval <= 0:
            raise SolverError("%s: test_interval must be > 0 when there are test nets (got %d)"
                              % (self._source, p.test_interval))
        sources, params = [], []
        for tp in p.test_net_param:
            np_ = pb2.NetParameter()
            np_.CopyFrom(tp)
            sources.append("test_net_param")
            params.append(np_)
        for tf in p.test_net:
            sources.append("test_net file: " + tf)
            params.append(protoio.read_net_param(tf))
        remaining = len(p.test_iter) - len(params)
        if has_net_param:
            for _ in range(remaining):
                np_ = pb2.NetParameter()
                np_.CopyFrom(p.net_param)
                sources.append("net_param")
                params.append(np_)
        if has_net_file:
            for _ in range(remaining):
                sources.append("net file: " + p.net)
                params.append(protoio.read_net_param(p.net))
        self._test_nets = []
        for i, net_param in enumerate(params):
            state = pb2.NetState()
            state.phase = _common.TEST
            state.MergeFrom(net_param.state)
            if len(p.test_state):
                state.MergeFrom(p.test_state[i])
            net_param.state.CopyFrom(state)
            logger.info("Creating test net (#%d) specified by %s", i, sources[i])
            with plain_nets():      # test nets keep Caffe's plain forward
                net = Net(net_param)
            for w in p.weights:
                self._load_weights(net, w)
            self._test_nets.append(net)
        self._test_iter_counts = list(p.test_iter)
        self._test_labels = [None] * len(self._test_nets)

    def _init_task_test_nets(self):
        """Multi-task: one TEST net per task (its stage), run ``test_iters`` times."""
        p = self._param
        if self._tasks is None:
            raise SolverError("%s: test_iters needs selectors (one count per task)"
                              % self._source)
        counts = selectors.test_iters(p, self._tasks.tasks, self._source)
        if len(p.test_iter) or len(p.test_net) or len(p.test_net_param):
            raise SolverError("%s: with selectors, give test_iters (one per task) instead of "
                              "test_iter / test_net" % self._source)
        if p.test_interval <= 0:
            raise SolverError("%s: test_interval must be > 0 when there are test nets (got %d)"
                              % (self._source, p.test_interval))
        pb2 = protoio.pb2()
        if p.HasField("net_param"):
            base = pb2.NetParameter()
            base.CopyFrom(p.net_param)
        elif p.HasField("net"):
            base = protoio.read_net_param(p.net)
        else:
            raise SolverError("%s: test_iters needs the train/test net in net or net_param"
                              % self._source)
        self._test_nets = []
        for task in self._tasks.tasks:
            net_param = pb2.NetParameter()
            net_param.CopyFrom(base)
            state = pb2.NetState()
            state.phase = _common.TEST
            state.MergeFrom(base.state)
            state.stage.append(task)
            net_param.state.CopyFrom(state)
            logger.info("Creating test net (#%d) for task %s", len(self._test_nets), task)
            with plain_nets():      # test nets keep Caffe's plain forward
                net = Net(net_param)
            for w in p.weights:
                self._load_weights(net, w)
            self._test_nets.append(net)
        self._test_iter_counts = counts
        self._test_labels = list(self._tasks.tasks)

    def _check_snapshot_write_permissions(self):
        p = self._param
        if not p.snapshot or not _is_root():
            return
        if not p.HasField("snapshot_prefix"):
            raise SolverError("%s: In solver params, snapshot is specified but snapshot_prefix "
                              "is not" % self._source)
        probe = self._snapshot_filename(".tempfile", it=0)
        try:
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError:
            raise SolverError("Cannot write to snapshot prefix '%s'.  Make sure that the "
                              "directory exists and is writable." % p.snapshot_prefix) from None

    # -- pycaffe properties ----------------------------------------------------
    @property
    def net(self):
        return self._net

    @property
    def test_nets(self):
        return list(self._test_nets)

    @property
    def iter(self):
        return self._iter

    @property
    def tasks(self):
        """The multi-task state (caffe.selectors.MultiTask), None without selectors."""
        return self._tasks

    @property
    def param(self):
        """The live SolverParameter (``solver.param.base_lr = x`` changes later updates)."""
        return self._param

    def add_callback(self, on_start, on_gradients_ready=None):
        """Register ``on_start()`` and ``on_gradients_ready()`` callables (or one
        object with those two methods, as pycaffe's NCCL overload)."""
        if on_gradients_ready is None and hasattr(on_start, "on_gradients_ready"):
            obj = on_start
            on_start, on_gradients_ready = obj.on_start, obj.on_gradients_ready
        if not callable(on_start) or not callable(on_gradients_ready):
            raise TypeError("add_callback(on_start, on_gradients_ready) needs two callables")
        self._callbacks.append((on_start, on_gradients_ready))

    def share_weights(self, net):
        """Make ``net`` use the train net's weights (Caffe's ShareTrainedLayersWith)."""
        net.share_with(self._net)

    # -- the training loop -----------------------------------------------------
    def step(self, iters):
        p = self._param
        iters = int(iters)
        start_iter = self._iter
        stop_iter = self._iter + iters
        average_loss = p.average_loss
        self._losses = []
        self._smoothed_loss = 0.0
        self._timer_start = time.perf_counter()
        net = self._net
        test_interval = p.test_interval
        display_every = p.display
        iter_size = p.iter_size
        callbacks = self._callbacks
        root = _is_root()
        while self._iter < stop_iter:
            if self._tasks is not None:        # one task's net per iteration
                net = self._net = self._tasks.next_net()
            net.clear_param_diffs()
            if root and test_interval and self._iter % test_interval == 0 and \
                    (self._iter > 0 or p.test_initialization):
                self.test_all()
                if self._requested_early_exit:
                    break
            for on_start, _ in callbacks:
                on_start()
            display = bool(display_every) and self._iter % display_every == 0
            loss = 0.0
            for _ in range(iter_size):
                loss += net.forward_backward()
            loss /= iter_size
            self._update_smoothed_loss(loss, start_iter, average_loss)
            if display:
                self._log_train(display_every)
            for _, on_ready in callbacks:
                on_ready()
            self.apply_update()
            if root and p.snapshot and self._iter % p.snapshot == 0:
                self.snapshot()
            if self._requested_early_exit:
                break

    def _log_train(self, display_every):
        now = time.perf_counter()
        lapse = now - self._timer_start
        per_s = (self._iter - self._iterations_last) / (lapse if lapse else 1.0)
        logger.info("Iteration %d (%s iter/s, %ss/%d iters), loss = %s", self._iter,
                    _g(per_s), _g(lapse), display_every, _g(self._smoothed_loss))
        self._timer_start = now
        self._iterations_last = self._iter
        self._log_outputs(self._net, "    Train net output #", None)

    @staticmethod
    def _log_outputs(net, prefix, values, label=""):
        for line in output_lines(net, prefix, values, label):
            logger.info("%s", line)

    def _update_smoothed_loss(self, loss, start_iter, average_loss):
        losses = self._losses
        if len(losses) < average_loss:
            losses.append(loss)
            n = len(losses)
            self._smoothed_loss = (self._smoothed_loss * (n - 1) + loss) / n
        else:
            idx = (self._iter - start_iter) % average_loss
            self._smoothed_loss += (loss - losses[idx]) / average_loss
            losses[idx] = loss

    def solve(self, resume_file=None):
        p = self._param
        logger.info("Solving %s", self._net.name)
        logger.info("Learning Rate Policy: %s", p.lr_policy)
        self._requested_early_exit = False
        if resume_file is not None:
            logger.info("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        start_iter = self._iter
        self.step(p.max_iter - self._iter)
        if not _is_root():          # Caffe's workers only Step
            return
        if p.snapshot_after_train and (not p.snapshot or self._iter % p.snapshot != 0):
            self.snapshot()
        if self._requested_early_exit:
            logger.info("Optimization stopped early.")
            return
        if p.display and self._iter % p.display == 0:
            loss = self._net.forward_prefilled()
            self._update_smoothed_loss(loss, start_iter, p.average_loss)
            logger.info("Iteration %d, loss = %s", self._iter, _g(self._smoothed_loss))
        if p.test_interval and self._iter % p.test_interval == 0:
            self.test_all()
        logger.info("Optimization Done.")

    # -- testing ---------------------------------------------------------------
    def test_all(self):
        for i in range(len(self._test_nets)):
            if self._requested_early_exit:
                break
            self.test(i)

    def test(self, test_net_id=0):
        p = self._param
        if p.eval_type == "detection":   # the SSD fork's TestDetection
            from . import detection_eval
            detection_eval.test_detection(self, test_net_id)
            return
        if p.eval_type != "classification":
            raise SolverError("Unknown evaluation type: %r (solver field eval_type: "
                              "\"classification\" or \"detection\")" % p.eval_type)
        logger.info("Iteration %d, Testing net (#%d)", self._iter, test_net_id)
        net = self._test_nets[test_net_id]
        net.share_with(self._net)
        n_iter = self._test_iter_counts[test_net_id]
        task = self._test_labels[test_net_id]
        scores = None
        loss = 0.0
        for _ in range(n_iter):
            iter_loss = net.forward_prefilled()
            if p.test_compute_loss:
                loss += iter_loss
            vals = [blob.data_buffer.host_readonly().reshape(-1).double()
                    for _, blob, _ in net.output_blobs()]
            if scores is None:
                scores = [v.clone() for v in vals]
            else:
                for s, v in zip(scores, vals):
                    s += v
        if p.test_compute_loss:
            loss /= n_iter
            logger.info("Test loss: %s", _g(loss))
        if scores is None:
            return
        means = [(s / n_iter).float().tolist() for s in scores]
        self._log_outputs(net, "    Test net output #", means, " (%s)" % task if task else "")

    # -- update: subclasses ---------------------------------------------------
    def apply_update(self):  # pragma: no cover - every concrete solver overrides
        raise NotImplementedError("Solver.apply_update: use a concrete solver class")

    def snapshot_solver_state(self, model_filename):  # pragma: no cover
        raise NotImplementedError

    # -- snapshots ---------------------------------------------------------------
    def _snapshot_filename(self, ext, it=None):
        return "%s_iter_%d%s" % (self._param.snapshot_prefix,
                                 self._iter if it is None else it, ext)

    def snapshot(self):
        p = self._param
        fmt = p.snapshot_format
        pb2 = protoio.pb2()
        if fmt == pb2.SolverParameter.BINARYPROTO:
            model_filename = self._snapshot_filename(".caffemodel")
            logger.info("Snapshotting to binary proto file %s", model_filename)
            protoio.write_binary(model_filename, (self._tasks or self._net).to_proto(
                p.snapshot_diff))
        elif fmt == pb2.SolverParameter.HDF5:
            model_filename = self._snapshot_filename(".caffemodel.h5")
            logger.info("Snapshotting to HDF5 file %s", model_filename)
            (self._tasks or self._net).save_hdf5(model_filename, p.snapshot_diff)
        else:
            raise SolverError("Unsupported snapshot format: %r" % fmt)
        self.snapshot_solver_state(model_filename)

    def restore(self, state_file):
        state_file = str(state_file)
        protoio.check_file(state_file, "solver state")
        if state_file.endswith(".h5"):
            self._restore_hdf5(state_file)
        else:
            self._restore_binary(state_file)
        if self._tasks is not None:
            selectors.restore(self, state_file)


# ---------------------------------------------------------------------------
# SGD and its family
# ---------------------------------------------------------------------------
class SGDSolver(Solver):
    """Caffe's SGDSolver: lr policies, clipping, iter_size normalisation,
    L1/L2 regularisation, momentum SGD (lr folded into the history)."""

    type = "SGD"
    _n_history_sets = 1

    def _presolve(self):
        net = self._tasks if self._tasks is not None else self._net
        self._params = net.learnable_params
        self._lr_mults = [float(x) for x in net.params_lr]
        self._decay_mults = [float(x) for x in net.params_weight_decay]
        self._lr_groups = self._groups(self._lr_mults)
        self._decay_groups = self._groups(self._decay_mults)
        self._dev = _common.compute_device()
        self._history = []
        for _ in range(self._n_history_sets):
            for b in self._params:
                self._history.append(torch.zeros(tuple(b.shape), dtype=torch.float32,
                                                 device=self._dev))

    @staticmethod
    def _groups(mults):
        """Param indices grouped by multiplier, so one foreach op serves each group."""
        groups = {}
        for i, m in enumerate(mults):
            groups.setdefault(m, []).append(i)
        return [(m, idx) for m, idx in groups.items()]

    # -- learning rate -------------------------------------------------------
    def get_learning_rate(self):
        p = self._param
        policy = p.lr_policy
        it = self._iter
        base_lr = float(_f32(p.base_lr))
        gamma = _f32(p.gamma)
        if policy == "fixed":
            rate = base_lr
        elif policy == "step":
            if p.stepsize <= 0:
                raise SolverError("lr_policy step needs stepsize > 0 (got %d)" % p.stepsize)
            self._current_step = it // p.stepsize
            self._check_gamma()
            # pow(float, int) is computed in double, as C++ promotes it
            rate = base_lr * math.pow(float(gamma), self._current_step)
        elif policy == "exp":
            self._check_gamma()
            rate = base_lr * math.pow(float(gamma), it)
        elif policy == "inv":
            self._check_gamma()
            rate = base_lr * _f(math.pow(float(_f32(1) + gamma * _f32(it)),
                                         -float(_f32(p.power))))
        elif policy == "multistep":
            if self._current_step < len(p.stepvalue) and \
                    it >= p.stepvalue[self._current_step]:
                self._current_step += 1
                logger.info("MultiStep Status: Iteration %d, step = %d", it,
                            self._current_step)
            self._check_gamma()
            rate = base_lr * math.pow(float(gamma), self._current_step)
        elif policy == "poly":
            frac = _f32(1) - _f32(it) / _f32(p.max_iter)
            rate = base_lr * _f(math.pow(float(frac), float(_f32(p.power))))
        elif policy == "sigmoid":
            self._check_gamma()
            if p.stepsize <= 0:
                raise SolverError("lr_policy sigmoid needs stepsize > 0 (got %d)" % p.stepsize)
            e = _f(math.exp(float(-gamma * (_f32(it) - _f32(p.stepsize)))))
            rate = base_lr * _f(_f32(1) / (_f32(1) + _f32(e)))
        else:
            raise SolverError("Unknown learning rate policy: %s" % policy)
        return _f(rate)

    def _check_gamma(self):
        if self._param.gamma < 0:
            raise SolverError("lr_policy %s needs gamma >= 0 (got %s)"
                              % (self._param.lr_policy, _g(self._param.gamma)))

    @property
    def lr(self):
        return self.get_learning_rate()

    # -- ApplyUpdate ---------------------------------------------------------
    def _ensure_device(self, dev):
        if dev != self._dev:
            self._history = [h.to(dev) for h in self._history]
            self._dev = dev

    def apply_update(self):
        if self._tasks is None:
            return self._apply_update()
        dev = _common.compute_device()
        if dev != self._dev:
            self._ensure_device(dev)
        with self._only(self._tasks.active_indices):
            return self._apply_update()

    @contextlib.contextmanager
    def _only(self, idx):
        """Update only the params ``idx`` (multi-task: the running task's), with
        their history; the others, momentum and decay included, stay put."""
        names = ("_params", "_lr_mults", "_decay_mults", "_history")
        saved = {k: getattr(self, k) for k in names + ("_lr_groups", "_decay_groups")}
        n = len(self._params)
        self._params = [saved["_params"][i] for i in idx]
        self._lr_mults = [saved["_lr_mults"][i] for i in idx]
        self._decay_mults = [saved["_decay_mults"][i] for i in idx]
        self._history = [saved["_history"][s * n + i] for s in range(self._n_history_sets)
                         for i in idx]
        self._lr_groups = self._groups(self._lr_mults)
        self._decay_groups = self._groups(self._decay_mults)
        try:
            yield
        finally:
            for k, v in saved.items():
                setattr(self, k, v)

    def _apply_update(self):
        p = self._param
        rate = self.get_learning_rate()
        if p.display and self._iter % p.display == 0:
            logger.info("Iteration %d, lr = %s", self._iter, _g(rate))
        dev = _common.compute_device()
        if dev != self._dev:
            self._ensure_device(dev)
        params = self._params
        if not params:
            self._iter += 1
            return
        diffs = [b.diff_buffer.mutable_compute(dev) for b in params]
        if p.clip_gradients >= 0:
            self._clip_gradients(diffs, p.clip_gradients)
        if p.iter_size > 1:
            torch._foreach_mul_(diffs, _f(_f32(1) / _f32(p.iter_size)))
        datas = [b.data_buffer.mutable_compute(dev) for b in params]
        wd = _f32(p.weight_decay)
        if wd:
            reg = p.regularization_type
            if reg not in ("L2", "L1"):
                raise SolverError("Unknown regularization type: %s" % reg)
            for mult, idx in self._decay_groups:
                local_decay = _f(wd * _f32(mult))
                if not local_decay:
                    continue
                g_sub = [diffs[i] for i in idx]
                if reg == "L2":
                    torch._foreach_add_(g_sub, [datas[i] for i in idx], alpha=local_decay)
                else:
                    torch._foreach_add_(g_sub, torch._foreach_sign([datas[i] for i in idx]),
                                        alpha=local_decay)
        self._compute_update(diffs, rate)
        torch._foreach_sub_(datas, diffs)
        self._iter += 1

    def _clip_gradients(self, diffs, clip):
        sumsq = 0.0
        for g in diffs:
            sumsq += float(torch.dot(g.reshape(-1), g.reshape(-1)))
        norm = _f(math.sqrt(_f(sumsq)))
        clip = _f(clip)
        if norm > clip:
            scale = _f(_f32(clip) / _f32(norm))
            logger.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale "
                        "factor %s", _g(norm), _g(clip), _g(scale))
            torch._foreach_mul_(diffs, scale)

    def _local_rates(self, rate):
        r = _f32(rate)
        return [_f(r * _f32(m)) for m in self._lr_mults]

    def _compute_update(self, diffs, rate):
        # h = momentum * h + local_rate * g;  g = h   (Caffe folds lr into the history)
        momentum = _f(self._param.momentum)
        hist = self._history
        r = _f32(rate)
        torch._foreach_mul_(hist, momentum)
        for mult, idx in self._lr_groups:
            lr = _f(r * _f32(mult))
            torch._foreach_add_([hist[i] for i in idx], [diffs[i] for i in idx], alpha=lr)
        torch._foreach_copy_(diffs, hist)

    # -- solver state ----------------------------------------------------------
    def snapshot_solver_state(self, model_filename):
        pb2 = protoio.pb2()
        if self._param.snapshot_format == pb2.SolverParameter.HDF5:
            self._snapshot_state_hdf5(model_filename)
        else:
            self._snapshot_state_binary(model_filename)

    def _snapshot_state_binary(self, model_filename):
        pb2 = protoio.pb2()
        state = pb2.SolverState()
        state.iter = self._iter
        state.learned_net = model_filename
        state.current_step = self._current_step
        if self._tasks is not None:
            state.selector_seed, state.selector_position = self._tasks.state()
        for h in self._history:
            bp = state.history.add()
            bp.shape.dim.extend(list(h.shape))
            bp.data.extend(h.detach().cpu().reshape(-1).tolist())
        filename = self._snapshot_filename(".solverstate")
        logger.info("Snapshotting solver state to binary proto file %s", filename)
        protoio.write_binary(filename, state)

    def _snapshot_state_hdf5(self, model_filename):
        import h5py
        filename = self._snapshot_filename(".solverstate.h5")
        logger.info("Snapshotting solver state to HDF5 file %s", filename)
        with atomic.atomic_path(filename) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("iter", data=np.array([self._iter], dtype=np.int32))
            f.create_dataset("learned_net", data=np.bytes_(model_filename.encode("utf-8")))
            f.create_dataset("current_step", data=np.array([self._current_step],
                                                           dtype=np.int32))
            if self._tasks is not None:
                f.create_dataset("selector_state", data=np.array(self._tasks.state(),
                                                                 dtype=np.int64))
            g = f.create_group("history")
            for i, h in enumerate(self._history):
                g.create_dataset(str(i), data=h.detach().cpu().numpy())

    # -- restore: read and check everything, then change the solver ------------------
    def _param_label(self, i):
        """Which learnable param history blob ``i`` belongs to, for error messages."""
        n = len(self._params)
        k = i % n if n else i
        for lname, blobs in self._net.params.items():
            for j, b in enumerate(blobs):
                if k < n and b is self._params[k]:
                    return "layer %r param %d" % (lname, j)
        return "learnable param %d" % k

    def _checked_history(self, items, state_file):
        """``items``: (array, stored shape) per history blob in file order.
        Returns the arrays shaped like this solver's history, or raises
        CaffeFileError naming the blob before anything was changed."""
        if len(items) != len(self._history):
            raise CaffeFileError("%s: Incorrect length of history blobs: the file has %d, the %s "
                                 "solver needs %d" % (state_file, len(items), self.type,
                                                      len(self._history)))
        out = []
        for i, (arr, shape) in enumerate(items):
            target = tuple(self._history[i].shape)
            arr = np.asarray(arr, dtype=np.float32)
            if not shape_fits(shape, target) or arr.size != int(np.prod(target)):
                raise CaffeFileError(
                    "%s: history blob %d (%s) has shape %s with %d values; the %s solver "
                    "needs shape %s" % (state_file, i, self._param_label(i), list(shape),
                                        arr.size, self.type, list(target)))
            out.append(arr.reshape(target))
        return out

    def _commit_restore(self, it, current_step, history, plan):
        if plan is not None:
            plan.apply()
        logger.info("SGDSolver: restoring history")
        for i, arr in enumerate(history):
            self._history[i] = torch.from_numpy(arr.copy()).to(self._dev)
        self._iter = it
        self._current_step = current_step

    def _plan_learned_net(self, learned, state_file):
        protoio.check_file(learned, "learned_net of %s" % state_file)
        return weight_io.plan_copy(self._net, learned)

    def _restore_binary(self, state_file):
        state = protoio.read_binary(state_file, protoio.schema().SolverState())
        history = self._checked_history(
            [(proto_array(bp), proto_shape(bp)) for bp in state.history], state_file)
        plan = None
        if state.HasField("learned_net"):
            plan = self._plan_learned_net(state.learned_net, state_file)
        self._commit_restore(state.iter, state.current_step, history, plan)

    def _restore_hdf5(self, state_file):
        import h5py
        with weight_io.h5_errors(state_file, "solver state"), \
                weight_io.h5_open(state_file, "solver state") as f:
            def scalar(key):
                if key not in f:
                    raise CaffeFileError("%s: not a Caffe HDF5 solver state (no /%s)"
                                         % (state_file, key))
                arr = weight_io.h5_array(f[key], "%s: /%s" % (state_file, key), np.int64)
                if arr.size != 1:
                    raise CaffeFileError("%s: /%s holds %d values, expected one"
                                         % (state_file, key, arr.size))
                return int(arr.reshape(-1)[0])
            it = scalar("iter")
            current_step = scalar("current_step")
            learned = None
            if "learned_net" in f:
                node = f["learned_net"]
                if not isinstance(node, h5py.Dataset) or node.dtype.kind not in "SUO":
                    raise CaffeFileError("%s: /learned_net is not a string" % state_file)
                learned = node[()]
                if isinstance(learned, np.ndarray):
                    learned = learned.reshape(-1)[0] if learned.size else b""
                if isinstance(learned, bytes):
                    learned = learned.decode("utf-8", "replace")
                if not isinstance(learned, str):
                    raise CaffeFileError("%s: /learned_net is not a string" % state_file)
                learned = learned.rstrip("\x00")
            if "history" not in f or not isinstance(f["history"], h5py.Group):
                raise CaffeFileError("%s: Error reading history (no /history group)" % state_file)
            hist = f["history"]
            keys = list(hist.keys())
            if sorted(keys) != sorted(str(i) for i in range(len(keys))):
                raise CaffeFileError("%s: /history holds %s; expected datasets 0..%d"
                                     % (state_file, sorted(keys), len(keys) - 1))
            items = []
            for i in range(len(keys)):
                arr = weight_io.h5_array(hist[str(i)], "%s: /history/%d" % (state_file, i))
                items.append((arr, arr.shape))
        history = self._checked_history(items, state_file)
        plan = self._plan_learned_net(learned, state_file) if learned else None
        self._commit_restore(it, current_step, history, plan)


class NesterovSolver(SGDSolver):
    type = "Nesterov"

    def _compute_update(self, diffs, rate):
        momentum = _f(self._param.momentum)
        one_plus = _f(_f32(1) + _f32(momentum))
        hist = self._history
        for i, (g, lr) in enumerate(zip(diffs, self._local_rates(rate))):
            h = hist[i]
            prev = h.clone()
            h.mul_(momentum).add_(g, alpha=lr)
            torch.mul(h, one_plus, out=g)
            g.sub_(prev, alpha=momentum)


class AdaGradSolver(SGDSolver):
    type = "AdaGrad"

    def _check_param(self):
        if self._param.momentum != 0:
            raise SolverError("Momentum cannot be used with AdaGrad.")

    def _compute_update(self, diffs, rate):
        delta = _f(self._param.delta)
        hist = self._history
        for i, (g, lr) in enumerate(zip(diffs, self._local_rates(rate))):
            h = hist[i]
            h.addcmul_(g, g)
            g.div_(torch.sqrt(h).add_(delta)).mul_(lr)


class RMSPropSolver(SGDSolver):
    type = "RMSProp"

    def _check_param(self):
        p = self._param
        if p.momentum != 0:
            raise SolverError("Momentum cannot be used with RMSProp.")
        if not (0 <= p.rms_decay < 1):
            raise SolverError("rms_decay should lie between 0 and 1 (got %s)" % _g(p.rms_decay))

    def _compute_update(self, diffs, rate):
        p = self._param
        decay = _f(p.rms_decay)
        one_minus = _f(_f32(1) - _f32(decay))
        delta = _f(p.delta)
        hist = self._history
        for i, (g, lr) in enumerate(zip(diffs, self._local_rates(rate))):
            h = hist[i]
            h.mul_(decay).addcmul_(g, g, value=one_minus)
            g.div_(torch.sqrt(h).add_(delta)).mul_(lr)


class AdaDeltaSolver(SGDSolver):
    type = "AdaDelta"
    _n_history_sets = 2

    def _compute_update(self, diffs, rate):
        p = self._param
        momentum = _f(p.momentum)
        one_minus = _f(_f32(1) - _f32(momentum))
        delta = _f(p.delta)
        hist = self._history
        n = len(diffs)
        for i, (g, lr) in enumerate(zip(diffs, self._local_rates(rate))):
            h, h2 = hist[i], hist[n + i]
            h.mul_(momentum).addcmul_(g, g, value=one_minus)
            ratio = torch.add(h2, delta)
            ratio.div_(torch.add(h, delta)).sqrt_()
            g.mul_(ratio)
            h2.mul_(momentum).addcmul_(g, g, value=one_minus)
            g.mul_(lr)


class AdamSolver(SGDSolver):
    type = "Adam"
    _n_history_sets = 2

    def _compute_update(self, diffs, rate):
        p = self._param
        beta1 = _f(p.momentum)
        beta2 = _f(p.momentum2)
        eps = _f(p.delta)
        t = self._iter + 1
        correction = _f(math.sqrt(float(_f32(1)) - math.pow(beta2, t))
                        / (1.0 - math.pow(beta1, t)))
        one_m1 = _f(_f32(1) - _f32(beta1))
        one_m2 = _f(_f32(1) - _f32(beta2))
        hist = self._history
        n = len(diffs)
        for i, (g, lr) in enumerate(zip(diffs, self._local_rates(rate))):
            m, v = hist[i], hist[n + i]
            m.mul_(beta1).add_(g, alpha=one_m1)
            v.mul_(beta2).addcmul_(g, g, value=one_m2)
            denom = torch.sqrt(v).add_(eps)
            torch.div(m, denom, out=g)
            g.mul_(_f(_f32(lr) * _f32(correction)))


# ---------------------------------------------------------------------------
# get_solver
# ---------------------------------------------------------------------------
_SOLVERS = {
    "SGD": SGDSolver,
    "Nesterov": NesterovSolver,
    "AdaGrad": AdaGradSolver,
    "RMSProp": RMSPropSolver,
    "AdaDelta": AdaDeltaSolver,
    "Adam": AdamSolver,
}


def solver_type_list():
    return sorted(_SOLVERS)


def get_solver(param_file):
    """The solver the file's ``type`` (or legacy ``solver_type``) names."""
    param = _read_solver_param(param_file)
    cls = _SOLVERS.get(param.type)
    if cls is None:
        raise SolverError("Unknown solver type: %s (known types: %s)"
                          % (param.type, ", ".join(solver_type_list())))
    return cls(param) if hasattr(param_file, "DESCRIPTOR") else _construct(cls, param,
                                                                          param_file)


def _construct(cls, param, source):
    solver = cls.__new__(cls)
    solver._source = str(source)
    solver._init(param)
    return solver
