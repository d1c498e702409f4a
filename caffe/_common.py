"""Process-wide Caffe state: mode (CPU/GPU), device, random seed, logging.

pycaffe keeps these as globals of the C++ ``Caffe`` singleton; we keep them as
module globals so every Net and Blob sees the same mode.
"""
import logging
import random
import sys
import warnings

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
            warnings.warn("caffe.set_mode_gpu(): CUDA is not available; running on the CPU",
                          RuntimeWarning, stacklevel=2)
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


class _GlogFormatter(logging.Formatter):
    def format(self, record):
        import time as _t
        lvl = record.levelname[0]
        ct = _t.localtime(record.created)
        stamp = _t.strftime("%m%d %H:%M:%S", ct) + ".%06d" % int((record.created % 1) * 1e6)
        where = "%s:%d" % (record.filename, record.lineno)
        return "%s%s %5d %s] %s" % (lvl, stamp, record.process % 100000, where, record.getMessage())


_log_initialized = False


def init_log(level=0, stderr=True):
    """glog-style logging to stderr; level 0=INFO, 1=WARNING, 2=ERROR, 3=FATAL."""
    global _log_initialized
    levels = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.CRITICAL}
    logger.setLevel(levels.get(int(level), logging.INFO))
    if not _log_initialized:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_GlogFormatter())
        logger.addHandler(handler)
        _log_initialized = True


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
