"""Multi-task training with task selectors (ptcaffe's ``selectors``), on Caffe's NetState.

A solver with ``selectors: "cls,reg"`` trains one net on several tasks.  A layer
belongs to a task through Caffe's own ``include { stage: "cls" }`` or ptcaffe's
``selector: "cls"`` (comma-separated for several tasks); unmarked layers are
shared.  Each task gets its own train net (the train NetState plus the task's
stage), and same-named layers of those nets share their parameters, data and
diffs.  Each iteration picks one task (``selector_policy``: ORDERED round robin,
or RANDOM seeded with the solver's ``random_seed``, optionally weighted by
``selector_weights``) and runs only that net, so only the shared trunk and that
task's branch run forward/backward, only its data layer advances and only its
parameters are updated (momentum and decay included); the others stay put.
The pick count is saved in the solver state so a restored run continues the
same task sequence.
"""
import numpy as np

from . import _common


class SelectorError(ValueError):
    """A bad selectors / selector_policy / selector_weights / test_iters setting."""


def _has(msg, field):
    return field in msg.DESCRIPTOR.fields_by_name


def layer_tasks(layer):
    """The tasks ptcaffe's ``selector`` field names on a LayerParameter (empty: shared)."""
    if not _has(layer, "selector") or not layer.selector:
        return set()
    return {t.strip() for t in layer.selector.split(",") if t.strip()}


def layer_selected(layer, state):
    """Whether a layer's ``selector`` admits the NetState: one of its tasks is a stage."""
    tasks = layer_tasks(layer)
    return not tasks or bool(tasks & set(state.stage))


def _split(text, what, source):
    items = [t.strip() for t in text.split(",")]
    if any(not t for t in items):
        raise SelectorError("%s: %s %r has an empty entry" % (source, what, text))
    return items


def solver_tasks(param, source):
    """The task names of ``selectors``, or [] when the solver is single-task."""
    if not _has(param, "selectors") or not param.selectors.strip():
        return []
    tasks = _split(param.selectors, "selectors", source)
    if len(set(tasks)) != len(tasks):
        raise SelectorError("%s: selectors %r names a task twice" % (source, param.selectors))
    return tasks


def test_iters(param, tasks, source):
    """Per-task test iterations from ``test_iters: "10,20"`` ([] when absent)."""
    if not param.test_iters:
        return []
    items = _split(param.test_iters, "test_iters", source)
    try:
        counts = [int(t) for t in items]
    except ValueError:
        raise SelectorError("%s: test_iters %r must be integers" % (source, param.test_iters)) \
            from None
    if len(counts) != len(tasks):
        raise SelectorError("%s: test_iters %r gives %d counts for %d selectors (%s)"
                            % (source, param.test_iters, len(counts), len(tasks),
                               ",".join(tasks)))
    if any(c <= 0 for c in counts):
        raise SelectorError("%s: test_iters %r must be positive" % (source, param.test_iters))
    return counts


class TaskSchedule:
    """Which task runs at each iteration: a pure function of (policy, seed, picks made)."""

    def __init__(self, tasks, policy, weights, seed):
        self.tasks = list(tasks)
        self.policy = policy
        self.seed = int(seed)
        self.weights = weights
        self.position = 0
        self._rng = np.random.RandomState(self.seed % (2 ** 32))

    def _draw(self):
        if self.policy == "ORDERED":
            return self.position % len(self.tasks)
        return int(self._rng.choice(len(self.tasks), p=self.weights))

    def next(self):
        k = self._draw()
        self.position += 1
        return k

    def restore(self, seed, position):
        """Replay to ``position`` picks from ``seed`` (a snapshot's selector state)."""
        self.seed = int(seed)
        self._rng = np.random.RandomState(self.seed % (2 ** 32))
        self.position = 0
        for _ in range(int(position)):
            self.next()


def make_schedule(param, tasks, source):
    pb2 = type(param)
    policy = pb2.SelectorPolicy.Name(param.selector_policy)
    weights = None
    if len(param.selector_weights):
        if policy != "RANDOM":
            raise SelectorError("%s: selector_weights apply to selector_policy RANDOM only"
                                % source)
        w = np.asarray(list(param.selector_weights), dtype=np.float64)
        if len(w) != len(tasks) or (w < 0).any() or w.sum() <= 0:
            raise SelectorError("%s: selector_weights needs %d non-negative weights, not all "
                                "zero (got %s)" % (source, len(tasks), list(w)))
        weights = w / w.sum()
    if param.random_seed >= 0:
        seed = param.random_seed
    else:
        seed = _shared_random_seed()
    return TaskSchedule(tasks, policy, weights, seed)


def _shared_random_seed():
    """A fresh seed, rank 0's on every rank (all ranks must run the same task)."""
    import os

    import torch
    seed = torch.tensor([int.from_bytes(os.urandom(4), "little") >> 1], dtype=torch.int64)
    if _common.solver_count() > 1:
        from . import distributed
        if distributed.is_initialized():
            import torch.distributed as dist
            dist.broadcast(seed, src=0)
    return int(seed.item())


class MultiTask:
    """The task nets of one solver, their shared parameters and the schedule."""

    def __init__(self, tasks, nets, schedule):
        self.tasks = tasks
        self.nets = nets
        self.schedule = schedule
        self.active = 0
        self._share_parameters()
        self._collect_parameters()

    def _share_parameters(self):
        owners = {}
        for net in self.nets:
            for name, layer in zip(net._layer_names, net.layers):
                blobs = list(layer.blobs)
                if name not in owners:
                    owners[name] = blobs
                    continue
                theirs = owners[name]
                if len(theirs) != len(blobs) or any(a.shape != b.shape
                                                    for a, b in zip(blobs, theirs)):
                    raise SelectorError("layer %r has different parameters in two task nets"
                                        % name)
                for a, b in zip(blobs, theirs):
                    a.share_data(b)
                    a.share_diff(b)

    def _collect_parameters(self):
        """The union of the task nets' learnable params (first owner of each layer's
        blob j), with each task's indices into it."""
        keys, self.learnable_params, self.params_lr, self.params_weight_decay = {}, [], [], []
        self.task_indices = []
        for net in self.nets:
            owner = {id(b): k for k, b in enumerate(net.learnable_params)}
            lrs, decays = net.params_lr, net.params_weight_decay
            mine = []
            for name, layer in zip(net._layer_names, net.layers):
                for j, b in enumerate(layer.blobs):
                    k = owner.get(id(b))
                    if k is None:
                        continue
                    key = (name, j)
                    if key not in keys:
                        keys[key] = len(self.learnable_params)
                        self.learnable_params.append(b)
                        self.params_lr.append(lrs[k])
                        self.params_weight_decay.append(decays[k])
                    if keys[key] not in mine:
                        mine.append(keys[key])
            self.task_indices.append(sorted(mine))

    # -- training ------------------------------------------------------------
    def next_net(self):
        self.active = self.schedule.next()
        return self.nets[self.active]

    @property
    def active_indices(self):
        return self.task_indices[self.active]

    def active_params(self):
        return [self.learnable_params[i] for i in self.active_indices]

    # -- snapshots -------------------------------------------------------------
    def to_proto(self, write_diff=False):
        """One NetParameter with every task net's layers (each layer once)."""
        seen, out = set(), None
        for net in self.nets:
            proto = net.to_proto(write_diff)
            if out is None:
                out = type(proto)()
                out.CopyFrom(proto)
                del out.layer[:]
            for layer in proto.layer:
                if layer.name not in seen:
                    seen.add(layer.name)
                    out.layer.add().CopyFrom(layer)
        return out

    def save_hdf5(self, filename, write_diff=False):
        import h5py
        with h5py.File(filename, "w") as f:
            groups = [f.create_group("data")] + ([f.create_group("diff")] if write_diff else [])
            for net in self.nets:
                for name, layer in zip(net._layer_names, net.layers):
                    if not len(layer.blobs) or name in groups[0]:
                        continue
                    for g, attr in zip(groups, ("data", "diff")):
                        sub = g.create_group(name)
                        for j, b in enumerate(layer.blobs):
                            sub.create_dataset(str(j), data=getattr(b, attr))

    def copy_from(self, filename):
        for net in self.nets:
            net.copy_from(filename)

    def state(self):
        return self.schedule.seed, self.schedule.position


def build(solver, net_param, tasks):
    """A MultiTask for ``tasks`` from the solver's train NetParameter (state set)."""
    from .net import Net
    p = solver.param
    nets = []
    for task in tasks:
        np_ = type(net_param)()
        np_.CopyFrom(net_param)
        np_.state.stage.append(task)
        nets.append(Net(np_))
    return MultiTask(tasks, nets, make_schedule(p, tasks, solver._source))


def restore(solver, state_file):
    """After ``solver.restore``: the snapshot's selector state, and its learned
    weights in every task net (the solver loaded them into one)."""
    import logging

    from . import protoio
    tasks = solver.tasks
    seed_pos, learned = None, ""
    if str(state_file).endswith(".h5"):
        import h5py
        with h5py.File(state_file, "r") as f:
            if "selector_state" in f:
                seed_pos = [int(x) for x in np.asarray(f["selector_state"]).reshape(-1)[:2]]
            if "learned_net" in f:
                value = f["learned_net"][()]
                if isinstance(value, np.ndarray):
                    value = value.reshape(-1)[0]
                learned = (value.decode("utf-8") if isinstance(value, bytes)
                           else str(value)).rstrip("\x00")
    else:
        state = protoio.read_binary(state_file, protoio.pb2().SolverState())
        if state.HasField("selector_position"):
            seed_pos = (state.selector_seed, state.selector_position)
        learned = state.learned_net
    if learned:
        tasks.copy_from(learned)
    if seed_pos is None:
        logging.getLogger("caffe").warning(
            "%s has no selector state: continuing the task sequence from iteration %d",
            state_file, solver.iter)
        seed_pos = (tasks.schedule.seed, solver.iter)
    tasks.schedule.restore(*seed_pos)
