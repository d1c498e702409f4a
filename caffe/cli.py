"""The ``caffe`` command-line tool (BVLC ``tools/caffe.cpp``) on torchcaffe.

    caffe <command> <args>        (or: python -m caffe <command> <args>)

commands:
  train           train or finetune a model
  test            score a model
  device_query    show GPU diagnostic information
  time            benchmark model execution time

Flags are gflags style: ``-flag=value``, ``-flag value``, ``--flag=value`` or
``--flag value``.  Output goes to stderr in glog's format, with the same
messages as Caffe (``Batch 0, accuracy = 1``, ``conv1\tforward: 0.2 ms.``, ...),
so log parsers written for Caffe keep working.
"""
import logging
import os
import signal
import sys

from . import _common, _flags
from ._outputs import g as _g
from ._outputs import loss_note

logger = logging.getLogger("caffe")

USAGE = """command line brew
usage: caffe <command> <args>

commands:
  train           train or finetune a model
  test            score a model
  device_query    show GPU diagnostic information
  time            benchmark model execution time
  run             forward a net, printing its outputs every iteration"""

# name -> (kind, default, help); kinds: str, int
FLAGS = {
    "gpu": ("str", "", "Optional; run in GPU mode on given device IDs separated by ','."
                       "Use '-gpu all' to run on all available GPUs. The effective training "
                       "batch size is multiplied by the number of devices."),
    "solver": ("str", "", "The solver definition protocol buffer text file."),
    "model": ("str", "", "The model definition protocol buffer text file."),
    "phase": ("str", "", "Optional; network phase (TRAIN or TEST). Only used for 'time'."),
    "level": ("int", 0, "Optional; network level."),
    "stage": ("str", "", "Optional; network stages (not to be confused with phase), "
                         "separated by ','."),
    "snapshot": ("str", "", "Optional; the snapshot solver state to resume training."),
    "selector": ("str", "", "Optional; multi-task nets (solver selectors): the task whose "
                            "branch to score (added to the stages). Only used for 'test'."),
    "weights": ("str", "", "Optional; the pretrained weights to initialize finetuning, "
                           "separated by ','. Cannot be set simultaneously with snapshot."),
    "iterations": ("int", 50, "The number of iterations to run."),
    "input": ("str", "", "Optional; for 'run': a .npy array or an image fed to the net's "
                         "first input (images as caffe.classify prepares them)."),
    "mean_value": ("str", "", "Optional; for 'run' with an image: per-channel means, "
                              "separated by ','."),
    "scale": ("str", "1", "Optional; for 'run' with an image: input scale applied after the "
                          "mean."),
    "raw_scale": ("str", "255", "Optional; for 'run' with an image: scale of the [0, 1] "
                                "image before the mean."),
    "channel_swap": ("str", "2,1,0", "Optional; for 'run' with an image: channel order "
                                     "(RGB -> BGR by default)."),
    "verbose": ("int", 0, "Optional; 1 prints the net summary (shapes, params, MACs, memory, "
                          "receptive fields) before running."),
    "sigint_effect": ("str", "stop", "Optional; action to take when a SIGINT signal is "
                                     "received: snapshot, stop or none."),
    "sighup_effect": ("str", "snapshot", "Optional; action to take when a SIGHUP signal is "
                                         "received: snapshot, stop or none."),
}


_SPEC = {name: ({"str": str, "int": int}[kind], default, help_)
         for name, (kind, default, help_) in FLAGS.items()}


class CommandError(Exception):
    """A Caffe CHECK/LOG(FATAL) failure: message printed, exit status 1."""


def _check(cond, message):
    if not cond:
        raise CommandError(message)


# ---------------------------------------------------------------------------
# gflags-style parsing
# ---------------------------------------------------------------------------
def parse_flags(argv):
    """``(flags dict, positional args)``; raises CommandError on a bad flag.
    ``-help`` and ``-version`` set the flags of those names."""
    argv = list(argv)
    extra = {}
    for name, aliases in (("help", ("help", "helpfull", "helpshort")), ("version", ("version",))):
        for alias in aliases:
            for form in ("-" + alias, "--" + alias):
                while form in argv:
                    argv.remove(form)
                    extra[name] = True
    try:
        flags, positional = _flags.parse_flags(argv, _SPEC)
    except _flags.FlagError as exc:
        raise CommandError("ERROR: %s" % exc) from None
    flags.update(extra)
    return flags, positional


def usage_text():
    return _flags.usage_text("tools/caffe.cpp", USAGE, dict(sorted(_SPEC.items()))).rstrip("\n")


# ---------------------------------------------------------------------------
# helpers shared by the commands
# ---------------------------------------------------------------------------
def get_gpus(flags):
    value = flags["gpu"]
    if value == "all":
        import torch
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return list(range(n))
    if value:
        try:
            return [int(s) for s in value.split(",")]
        except ValueError:
            raise CommandError("bad -gpu value %r: use device ids separated by ',' or 'all'"
                               % value) from None
    return []


def get_phase(flags, default):
    if flags["phase"] == "":
        return default
    if flags["phase"] == "TRAIN":
        return _common.TRAIN
    if flags["phase"] == "TEST":
        return _common.TEST
    raise CommandError('phase must be "TRAIN" or "TEST"')


def get_stages(flags):
    # boost::split of "" yields one empty stage; Caffe passes it on, so do we
    return flags["stage"].split(",")


def _use_device(gpus, what):
    import torch
    if gpus:
        logger.info("Use GPU with device ID %d", gpus[0])
        if torch.cuda.is_available():
            logger.info("GPU device name: %s", torch.cuda.get_device_name(gpus[0]))
        from . import set_device, set_mode_gpu
        set_device(gpus[0])
        set_mode_gpu()
    else:
        logger.info("Use CPU.")
        _common.set_mode_cpu()


def _print_summary(flags, net):
    """``-verbose 1``: the caffe.tools.summary table of ``net`` on stdout."""
    if flags.get("verbose"):
        from .tools.summary import format_summary, summarize
        print(format_summary(summarize(net)))
        sys.stdout.flush()


def _weight_files(spec):
    if os.path.exists(spec) or "," not in spec:
        return [spec]
    return [s.strip() for s in spec.split(",")]


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------
def device_query(flags):
    _check(len(flags["gpu"]) > 0, "Check failed: FLAGS_gpu.size() > 0 (0 vs. 0) "
                                  "Need a device ID to query.")
    logger.info("Querying GPUs %s", flags["gpu"])
    gpus = get_gpus(flags)
    if not gpus:
        return 0
    import torch
    if not torch.cuda.is_available():
        raise CommandError("Cannot query GPUs %s: no CUDA device is available to torch"
                           % flags["gpu"])
    for dev in gpus:
        torch.cuda.set_device(dev)
        p = torch.cuda.get_device_properties(dev)
        rows = [("Device id", dev),
                ("Major revision number", p.major),
                ("Minor revision number", p.minor),
                ("Name", p.name),
                ("Total global memory", p.total_memory)]
        for label, attr in (("Total shared memory per block", "shared_memory_per_block"),
                            ("Total registers per block", "regs_per_multiprocessor"),
                            ("Warp size", "warp_size"),
                            ("Maximum threads per block", "max_threads_per_block"),
                            ("Clock rate", "clock_rate"),
                            ("Number of multiprocessors", "multi_processor_count")):
            if hasattr(p, attr):
                rows.append((label, getattr(p, attr)))
        for label, value in rows:
            logger.info("%-31s%s", label + ":", value)
    return 0


def test(flags):
    from .net import Net
    _check(len(flags["model"]) > 0, "Check failed: FLAGS_model.size() > 0 (0 vs. 0) "
                                     "Need a model definition to score.")
    _check(len(flags["weights"]) > 0, "Check failed: FLAGS_weights.size() > 0 (0 vs. 0) "
                                       "Need model weights to score.")
    stages = get_stages(flags)
    if flags["selector"]:
        stages = [s for s in stages if s] + [flags["selector"]]
    _use_device(get_gpus(flags), "test")
    net = Net(flags["model"], _common.TEST, level=flags["level"], stages=stages)
    for w in _weight_files(flags["weights"]):
        net.copy_from(w)
    _print_summary(flags, net)
    iterations = flags["iterations"]
    logger.info("Running for %d iterations.", iterations)
    outputs = net.output_blobs()
    scores = []
    score_output = []
    loss = 0.0
    for i in range(iterations):
        loss += net.forward_prefilled()
        idx = 0
        for j, (name, blob, _) in enumerate(outputs):
            values = blob.data.reshape(-1)
            for v in values.tolist():
                if i == 0:
                    scores.append(v)
                    score_output.append(j)
                else:
                    scores[idx] += v
                logger.info("Batch %d, %s = %s", i, name, _g(v))
                idx += 1
    if iterations:
        loss /= iterations
    logger.info("Loss: %s", _g(loss))
    for k, total in enumerate(scores):
        name, _, weight = outputs[score_output[k]]
        mean = total / iterations
        logger.info("%s = %s%s", name, _g(mean), loss_note(weight, mean))
    return 0


def time_(flags):
    from ._extras import Timer
    from .net import Net, plain_nets
    _check(len(flags["model"]) > 0, "Check failed: FLAGS_model.size() > 0 (0 vs. 0) "
                                     "Need a model definition to time.")
    phase = get_phase(flags, _common.TRAIN)
    stages = get_stages(flags)
    _use_device(get_gpus(flags), "time")
    with plain_nets():              # per-layer forward and backward times
        net = Net(flags["model"], phase, level=flags["level"], stages=stages)
    _print_summary(flags, net)
    iterations = flags["iterations"]
    logger.info("Performing Forward")
    initial_loss = net.forward_prefilled()
    logger.info("Initial loss: %s", _g(initial_loss))
    logger.info("Performing Backward")
    n = len(net.layers)
    net.backward_from_to(n - 1, 0)
    logger.info("*** Benchmark begins ***")
    logger.info("Testing for %d iterations.", iterations)
    gpu = _common.mode() == "gpu"

    # Caffe's CPU Timer reports whole microseconds / milliseconds
    def us(t):
        v = t.microseconds
        return v if gpu else float(int(v))

    def ms(t):
        v = t.milliseconds
        return v if gpu else float(int(v))

    total_timer = Timer()
    total_timer.start()
    forward_timer = Timer()
    backward_timer = Timer()
    timer = Timer()
    fwd_layer = [0.0] * n
    bwd_layer = [0.0] * n
    forward_time = 0.0
    backward_time = 0.0
    for j in range(iterations):
        iter_timer = Timer()
        iter_timer.start()
        forward_timer.start()
        for i in range(n):
            timer.start()
            net.forward_from_to(i, i)
            fwd_layer[i] += us(timer)
        forward_time += us(forward_timer)
        backward_timer.start()
        for i in range(n - 1, -1, -1):
            timer.start()
            net.backward_from_to(i, i)
            bwd_layer[i] += us(timer)
        backward_time += us(backward_timer)
        logger.info("Iteration: %d forward-backward time: %s ms.", j + 1, _g(ms(iter_timer)))
    iters = max(iterations, 1)
    logger.info("Average time per layer: ")
    for i, name in enumerate(net.layer_names):
        logger.info("%10s\tforward: %s ms.", name, _g(fwd_layer[i] / 1000 / iters))
        logger.info("%10s\tbackward: %s ms.", name, _g(bwd_layer[i] / 1000 / iters))
    total_timer.stop()
    logger.info("Average Forward pass: %s ms.", _g(forward_time / 1000 / iters))
    logger.info("Average Backward pass: %s ms.", _g(backward_time / 1000 / iters))
    logger.info("Average Forward-Backward: %s ms.", _g(ms(total_timer) / iters))
    logger.info("Total Time: %s ms.", _g(ms(total_timer)))
    logger.info("*** Benchmark ends ***")
    return 0


_EFFECTS = ("stop", "snapshot", "none")


def _requested_action(value):
    if value not in _EFFECTS:
        raise CommandError('Invalid signal effect "%s" was specified' % value)
    return value


class SignalHandler:
    """Caffe's SignalHandler: SIGINT/SIGHUP become solver actions (stop, snapshot,
    none), acted on between iterations as Caffe's solver polls them."""

    def __init__(self, sigint_effect, sighup_effect):
        self.effects = {signal.SIGINT: sigint_effect}
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = sighup_effect
        self.pending = []
        self.old = {}

    def __enter__(self):
        for sig in self.effects:
            try:
                self.old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:          # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self.old.items():
            signal.signal(sig, old)
        return False

    def _on_signal(self, signum, frame):
        self.pending.append(self.effects[signum])

    def attach(self, solver):
        """Poll pending actions from the solver's callbacks: a snapshot is taken
        after the update of the iteration the signal arrived in; stop ends the
        run after that update (and its regular snapshot), as in Caffe."""
        def on_start():
            while "snapshot" in self.pending:
                self.pending.remove("snapshot")
                solver.snapshot()

        def on_gradients_ready():
            if "stop" in self.pending:
                self.pending = [p for p in self.pending if p != "stop"]
                if hasattr(solver, "_requested_early_exit"):
                    solver._requested_early_exit = True
                else:           # pragma: no cover - every solver has the flag
                    raise KeyboardInterrupt
            self.pending = [p for p in self.pending if p != "none"]
        solver.add_callback(on_start, on_gradients_ready)


def _read_solver_param(path):
    from . import protoio
    try:
        return protoio.read_solver_param(path)
    except ValueError as exc:           # upgrade conflicts (solver_type vs type)
        raise CommandError(str(exc)) from None


def _prepare_snapshot_folder(param):
    """Caffe's CheckSnapshotWritePermissions, before any iteration runs: the folder of
    ``snapshot_prefix`` is created if missing (and logged), and must be writable, so
    a run never fails at its final snapshot."""
    if not (param.snapshot or param.snapshot_after_train):
        return
    prefix = param.snapshot_prefix
    folder = os.path.dirname(prefix) or "."
    if not os.path.isdir(folder):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise CommandError("Cannot write to snapshot prefix '%s' (creating folder %s: %s)."
                               "  Make sure that the directory exists and is writeable."
                               % (prefix, folder, exc.strerror or exc)) from None
        logger.info("Created snapshot folder %s", folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError("Cannot write to snapshot prefix '%s'.  Make sure that the "
                           "directory exists and is writeable." % prefix)


def train(flags):
    _check(len(flags["solver"]) > 0, "Check failed: FLAGS_solver.size() > 0 (0 vs. 0) "
                                      "Need a solver definition to train.")
    _check(not flags["snapshot"] or not flags["weights"],
           "Check failed: !FLAGS_snapshot.size() || !FLAGS_weights.size() Give a snapshot to "
           "resume training or weights to finetune but not both.")
    try:
        import caffe
        get_solver = caffe.get_solver
    except (ImportError, AttributeError) as exc:
        raise CommandError("caffe train needs caffe.get_solver, which is not available: %s"
                           % exc) from None
    stages = get_stages(flags)
    param = _read_solver_param(flags["solver"])
    param.train_state.level = flags["level"]
    param.train_state.stage.extend(stages)
    pb2 = type(param)
    if not flags["gpu"] and param.HasField("solver_mode") and \
            param.solver_mode == pb2.GPU:
        flags["gpu"] = str(param.device_id) if param.HasField("device_id") else "0"
    gpus = get_gpus(flags)
    from . import distributed
    world = distributed.env_world()
    if (world is None or world[1] <= 1) and len(gpus) > 1:
        return _spawn_training(flags, gpus)
    try:
        return _train_in_this_process(flags, param, gpus, world, get_solver)
    except distributed.DistributedError as exc:
        raise CommandError(str(exc)) from None


def _train_in_this_process(flags, param, gpus, world, get_solver):
    """One solver: a single-process run, or one rank of a torchrun / ``-gpu``
    group (its device is ``gpus[LOCAL_RANK]``; Gloo on the CPU without CUDA)."""
    import torch

    import caffe

    from . import distributed
    rank = None
    if world is not None and world[1] > 1:
        rank, size, local = world
        device = None
        if gpus and torch.cuda.is_available():
            device = gpus[local] if local < len(gpus) else local
        elif gpus:
            logger.warning("CUDA is not available: rank %d trains on the CPU", rank)
        gpus = [device] if device is not None else []
    if not gpus:
        logger.info("Use CPU.")
        _common.set_mode_cpu()
    else:
        logger.info("Using GPUs %s", ", ".join(str(g) for g in gpus))
        for g in gpus:
            if torch.cuda.is_available() and g < torch.cuda.device_count():
                logger.info("GPU %d: %s", g, torch.cuda.get_device_name(g))
        param.device_id = gpus[0]
        caffe.set_device(gpus[0])
        caffe.set_mode_gpu()
    if rank is not None:
        distributed.init_from_env()
    handler = SignalHandler(_requested_action(flags["sigint_effect"]),
                            _requested_action(flags["sighup_effect"]))
    if flags["snapshot"]:
        param.ClearField("weights")
    elif flags["weights"]:
        param.ClearField("weights")
        param.weights.append(flags["weights"])
    _prepare_snapshot_folder(param)
    solver = get_solver(param)
    _print_summary(flags, solver.net)
    handler.attach(solver)
    if flags["snapshot"]:
        logger.info("Resuming from %s", flags["snapshot"])
        solver.restore(flags["snapshot"])
    logger.info("Starting Optimization")
    from ._progress import TrainingBar
    # the bar on the root rank only, as the INFO lines
    bar = TrainingBar(solver, disable=True if _common.solver_rank() > 0 else None)
    try:
        with handler, bar:
            solver.solve()
    finally:
        distributed.shutdown()
    logger.info("Optimization Done.")
    return 0


def _spawn_training(flags, gpus):
    """``caffe train -gpu 0,1``: one process per device, joined through a local
    rendezvous; any rank failing fails the run."""
    import torch

    from . import distributed
    if not torch.cuda.is_available():
        logger.warning("CUDA is not available: -gpu %s trains %d processes on the CPU (Gloo)",
                       flags["gpu"], len(gpus))
    logger.info("Using GPUs %s", ", ".join(str(g) for g in gpus))
    failed = distributed.spawn(_train_worker, len(gpus), (dict(flags),))
    if failed:
        raise CommandError(failed)
    logger.info("Optimization Done.")
    return 0


def _train_worker(rank, flags):
    """A rank spawned by ``caffe train -gpu``: the torchrun path, in-process."""
    _common.init_log()                  # GLOG_* from the parent's environment
    code = train(flags)
    if code:
        sys.exit(code)


def _floats(text, flag):
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CommandError("-%s: expected numbers separated by ',', got %r" % (flag, text)) from None


def _input_array(flags, net):
    """The array ``-input`` names, shaped for the net's first input."""
    import numpy as np
    path = flags["input"]
    _check(os.path.isfile(path), "-input %s: no such file" % path)
    _check(len(net.inputs) > 0, "-input given but the net %s has no Input layer"
           % flags["model"])
    name = net.inputs[0]
    shape = net.blobs[name].data.shape
    if path.endswith(".npy"):
        arr = np.load(path).astype(np.float32)
        if arr.ndim == len(shape) - 1:
            arr = arr[np.newaxis]
        return name, arr
    from . import io as cio
    _check(len(shape) == 4, "-input %s: an image needs a 4-D net input, %r is %s"
           % (path, name, list(shape)))
    image = cio.load_image(path, color=shape[1] == 3)
    image = cio.resize_image(image, shape[2:])
    t = cio.Transformer({name: shape})
    t.set_transpose(name, (2, 0, 1))
    if shape[1] == 3:
        t.set_channel_swap(name, [int(x) for x in _floats(flags["channel_swap"],
                                                          "channel_swap")])
    t.set_raw_scale(name, _floats(flags["raw_scale"], "raw_scale")[0])
    if flags["mean_value"]:
        mean = _floats(flags["mean_value"], "mean_value")
        _check(len(mean) in (1, shape[1]), "-mean_value: %d values for %d channels"
               % (len(mean), shape[1]))
        t.set_mean(name, np.array(mean * (shape[1] if len(mean) == 1 else 1), np.float32))
    t.set_input_scale(name, _floats(flags["scale"], "scale")[0])
    return name, t.preprocess(name, image)[np.newaxis]


def run(flags):
    """ptcaffe's ``run``: forward ``-iterations`` times, logging every output
    value of every iteration (``caffe test`` without the averages)."""
    from .net import Net
    _check(len(flags["model"]) > 0, "Check failed: FLAGS_model.size() > 0 (0 vs. 0) "
                                     "Need a model definition to run.")
    _use_device(get_gpus(flags), "run")
    net = Net(flags["model"], get_phase(flags, _common.TEST), level=flags["level"],
              stages=get_stages(flags))
    for w in _weight_files(flags["weights"]) if flags["weights"] else []:
        net.copy_from(w)
    if flags["input"]:
        name, arr = _input_array(flags, net)
        blob = net.blobs[name]
        if tuple(arr.shape) != tuple(blob.data.shape):
            blob.reshape(*arr.shape)
            net.reshape()
        blob.data[...] = arr
    _print_summary(flags, net)
    iterations = flags["iterations"]
    logger.info("Running for %d iterations.", iterations)
    names = net.outputs
    for i in range(iterations):
        loss = net.forward_prefilled()
        for name in names:
            for v in net.blobs[name].data.reshape(-1).tolist():
                logger.info("Batch %d, %s = %s", i, name, _g(v))
        if any(net.blob_loss_weights[n] for n in names):
            logger.info("Batch %d, loss = %s", i, _g(loss))
    return 0


COMMANDS = {"train": train, "test": test, "device_query": device_query, "time": time_,
            "run": run}


def main(argv=None):
    """Entry point of the ``caffe`` console script and ``python -m caffe``."""
    if argv is None:
        argv = sys.argv[1:]
    try:
        flags, positional = parse_flags(list(argv))
    except CommandError as exc:
        sys.stderr.write("%s\n" % exc)
        return 1
    if flags.get("version"):
        from . import __version__
        print("caffe version %s" % __version__)
        return 0
    if flags.get("help") or len(positional) != 1:
        sys.stderr.write("caffe: %s\n" % usage_text())
        return 0 if flags.get("help") else 1
    command = positional[0]
    fn = COMMANDS.get(command)
    if fn is None:
        sys.stderr.write("Unknown action: %s\nAvailable caffe actions:\t%s\n"
                         % (command, "\t".join(sorted(COMMANDS))))
        return 1
    try:
        return fn(flags)
    except CommandError as exc:
        logger.error("%s", exc)
        return 1
    except Exception as exc:
        from .protoio import CaffeFileError
        if isinstance(exc, (CaffeFileError, OSError, ValueError)):
            logger.error("%s", exc)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
