"""Process-wide Caffe state: mode (CPU/GPU), device, random seed, logging.

pycaffe keeps these as globals of the C++ ``Caffe`` singleton; we keep them as
module globals so every Net and Blob sees the same mode.
"""
import logging
import os
import random
import sys
import tempfile
import threading
import time

import numpy as np
import torch

TRAIN = 0
TEST = 1

_state = {
    "mode": "cpu",
    "device_id": 0,
    "seed": None,
    "warned_no_cuda": False,
    "solver_count": 1,
    "solver_rank": 0,
    "multiprocess": False,
}
_np_rng = np.random.RandomState()

logger = logging.getLogger("caffe")


def set_mode_cpu():
    _state["mode"] = "cpu"


def set_mode_gpu():
    """Switch to GPU mode; without CUDA warn once and keep running on the CPU."""
    if not torch.cuda.is_available():
        if not _state["warned_no_cuda"]:
            logger.warning("caffe.set_mode_gpu(): CUDA is not available; running on the CPU")
            _state["warned_no_cuda"] = True
        _state["mode"] = "cpu"
        return
    _state["mode"] = "gpu"


def set_device(device_id):
    _state["device_id"] = int(device_id)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(device_id))


def mode():
    return _state["mode"]


def compute_device():
    """The torch device layers compute on right now."""
    if _state["mode"] == "gpu":
        return torch.device("cuda", _state["device_id"])
    return _CPU


_CPU = torch.device("cpu")


def set_random_seed(seed):
    """Reseed every generator Caffe semantics depend on (fillers, dropout, shuffling)."""
    seed = int(seed)
    _state["seed"] = seed
    torch.manual_seed(seed)
    _np_rng.seed(seed % (2 ** 32))
    random.seed(seed)


def numpy_rng():
    """The numpy RandomState used for data shuffling and mirroring."""
    return _np_rng


# ---------------------------------------------------------------------------
# Logging: glog's format and environment variables, on Python's logging
# ---------------------------------------------------------------------------
# Every module logs to ``logging.getLogger("caffe")``; one handler set up here
# writes Caffe's glog lines.  Records still propagate, so a program's own
# logging configuration (or pytest's caplog) sees them too.

_SEVERITY = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.CRITICAL}


class _GlogFormatter(logging.Formatter):
    """``I1202 04:50:59.123456  1234 net.py:647] message`` as glog writes it."""

    def format(self, record):
        no = record.levelno
        lvl = "F" if no >= logging.CRITICAL else "E" if no >= logging.ERROR else \
            "W" if no >= logging.WARNING else "I"
        ct = time.localtime(record.created)
        stamp = time.strftime("%m%d %H:%M:%S", ct) + ".%06d" % int((record.created % 1) * 1e6)
        tid = threading.get_native_id()       # glog prints the thread id
        text = "%s%s %5d %s:%d] %s" % (lvl, stamp, tid, record.filename, record.lineno,
                                        record.getMessage())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when the record arrives (redirections and
    captures made after ``import caffe`` included), through the open progress bars
    if there are any, so a log line never lands in the middle of a bar."""

    def emit(self, record):
        try:
            msg = self.format(record)
            writer = _log_state["line_writer"]
            if writer is not None:
                writer(msg)
            else:
                stream = sys.stderr
                if stream is None:
                    return
                stream.write(msg + "\n")
                stream.flush()
        except Exception:
            self.handleError(record)


def _env_int(name, default):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        sys.stderr.write("caffe: ignoring %s=%r (not an integer); using %d\n"
                         % (name, raw, default))
        return default


def _env_bool(name):
    """gflags' bool environment values; None when unset."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    return raw.strip().lower() in ("1", "true", "t", "yes", "y")


_log_state = {"handlers": [], "line_writer": None, "file": None}


def _log_file_name(log_dir):
    """glog's ``<program>.<host>.<user>.log.INFO.<yyyymmdd-hhmmss>.<pid>``."""
    import getpass
    import socket
    try:
        user = getpass.getuser()
    except Exception:
        user = "invalid-user"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prog = os.path.basename(sys.argv[0] or "python") if sys.argv else "python"
    return os.path.join(log_dir, "%s.%s.%s.log.INFO.%s.%d" % (
        prog or "python", socket.gethostname(), user, stamp, os.getpid()))


def configure_logging(minloglevel=None, logtostderr=None):
    """(Re)build the ``caffe`` logger from glog's environment variables.

    ``GLOG_minloglevel`` (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL) drops lower severities;
    ``GLOG_v=N`` shows ``vlog(n <= N, ...)`` lines; ``GLOG_logtostderr=0`` (or
    ``GLOG_log_dir``) writes every line to a glog-named file in ``GLOG_log_dir`` (default
    the temp folder) and only ``GLOG_stderrthreshold`` (default 2, ERROR) and above to
    stderr, unless ``GLOG_alsologtostderr=1``.  Unset, everything goes to stderr, as
    pycaffe does before glog is initialised and as Caffe's tools do.
    Arguments override the environment (``caffe.init_log``).
    """
    level = _env_int("GLOG_minloglevel", 0) if minloglevel is None else int(minloglevel)
    level = min(max(level, 0), 3)
    verbose = max(_env_int("GLOG_v", 0), 0)
    to_stderr = _env_bool("GLOG_logtostderr") if logtostderr is None else bool(logtostderr)
    log_dir = os.environ.get("GLOG_log_dir") or None
    also = bool(_env_bool("GLOG_alsologtostderr"))
    threshold = min(max(_env_int("GLOG_stderrthreshold", 2), 0), 3)

    for h in _log_state["handlers"]:
        logger.removeHandler(h)
        h.close()
    _log_state["handlers"] = []
    _log_state["file"] = None
    base = _SEVERITY[level]
    logger.setLevel(base - verbose if level == 0 and verbose else base)

    to_file = to_stderr is False or (to_stderr is None and log_dir is not None)
    stderr_handler = _StderrHandler(logging.NOTSET if not to_file or also
                                    else max(_SEVERITY[threshold], base))
    handlers = [stderr_handler]
    if to_file:
        path = _log_file_name(log_dir or tempfile.gettempdir())
        fh = logging.FileHandler(path, delay=True, encoding="utf-8")
        _log_state["file"] = path
        handlers.append(fh)
    for h in handlers:
        h.setFormatter(_GlogFormatter())
        logger.addHandler(h)
    _log_state["handlers"] = handlers


def log_file():
    """The file glog-style logging writes to, or None when it writes to stderr only."""
    return _log_state["file"]


def init_log(level=None, stderr=None):
    """pycaffe's ``caffe.init_log([level[, stderr]])``: minimum severity (0 INFO,
    1 WARNING, 2 ERROR, 3 FATAL; default: ``GLOG_minloglevel``) and whether to log to
    stderr instead of a file (default: ``GLOG_logtostderr``)."""
    configure_logging(level, stderr)


def vlog(verbosity, message, *args):
    """glog's ``VLOG(n)``: an INFO line shown only when ``GLOG_v >= n``."""
    logger.log(logging.INFO - int(verbosity), message, *args)


def log(message):
    logger.info(message)


def solver_count():
    return _state["solver_count"]


def set_solver_count(n):
    _state["solver_count"] = int(n)


def solver_rank():
    return _state["solver_rank"]


def set_solver_rank(r):
    _state["solver_rank"] = int(r)


def set_multiprocess(flag):
    _state["multiprocess"] = bool(flag)


def has_nccl():
    """True when torch.distributed is there: ``caffe.NCCL`` runs on it."""
    import torch.distributed as dist
    return dist.is_available()


class _RootSolverOnly(logging.Filter):
    """Caffe's LOG_IF(INFO, root_solver()): ranks > 0 log warnings and errors only."""

    def filter(self, record):
        return record.levelno >= logging.WARNING or _state["solver_rank"] == 0


logger.addFilter(_RootSolverOnly())


configure_logging()
