"""Optional packages (``require``: one clear error naming the extra to install),
the CuPy/torch CUDA match and pycaffe's ``Timer`` (``caffe.NCCL`` lives in
caffe.distributed)."""
import importlib
import time

from . import _common

# module -> (pip package, extra of torchcaffe that installs it; None: a core dependency)
PACKAGES = {
    "skimage": ("scikit-image", "data"),
    "cv2": ("opencv-python-headless", "data"),
    "lmdb": ("lmdb", "data"),
    "plyvel": ("plyvel", "leveldb"),
    "pydot": ("pydot", "draw"),
    "grpc_tools": ("grpcio-tools", "proto"),
    "cupy": ("cupy-cuda12x or cupy-cuda13x", "gpu-cuda12] or [gpu-cuda13"),
    "tqdm": ("tqdm", None),
    "h5py": ("h5py", None),
}


class MissingExtraError(ImportError):
    """An optional package is not installed (or is installed but broken)."""


def install_hint(module):
    pip_name, extra = PACKAGES.get(module.split(".")[0], (module, None))
    if extra is None:
        return 'pip install %s (a dependency of torchcaffe)' % pip_name
    return 'pip install "torchcaffe[%s]"' % extra


def require(module, purpose, alternatives=()):
    """Import ``module`` for ``purpose`` (e.g. "caffe.io.load_image (reading images)").

    Missing: raises MissingExtraError saying what needs it and which extra installs it.
    Present but failing to import (a missing shared library, a broken dependency):
    says so, with the original error, instead of calling it "not installed".
    The error is raised without the ImportError chained to it.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            problem = _broken(module, exc)
        else:
            pip_name = PACKAGES.get(top, (top, None))[0]
            also = "".join(" (or %s)" % a for a in alternatives)
            problem = ("%s needs the Python package %s%s, which is not installed: %s"
                       % (purpose, pip_name, also, install_hint(top)))
    except Exception as exc:     # ImportError, OSError from a shared library, ...
        problem = _broken(module, exc)
    raise MissingExtraError(problem) from None


def _broken(module, exc):
    return ("%s is installed but fails to import (%s: %s); reinstall it (%s) or fix "
            "its dependencies" % (module, type(exc).__name__, exc, install_hint(module)))


def cuda_mismatch():
    """A message when CuPy was built for another CUDA major version than torch
    (their kernels then cannot share a process); None when they match or either is
    absent."""
    try:
        import torch
        torch_cuda = torch.version.cuda
        if not torch_cuda:
            return None
        cupy = importlib.import_module("cupy")
        cupy_cuda = cupy.cuda.runtime.runtimeGetVersion() // 1000
    except Exception:
        return None
    if int(torch_cuda.split(".")[0]) != int(cupy_cuda):
        return ("CuPy is built for CUDA %d but torch for CUDA %s: install the matching "
                'extra, pip install "torchcaffe[gpu-cuda%s]"'
                % (cupy_cuda, torch_cuda, torch_cuda.split(".")[0]))
    return None


class Timer:
    """Caffe's wall-clock Timer (``caffe.Timer``): ``start()``, ``stop()`` and ``ms``.

    In CPU mode Caffe reports whole milliseconds (boost's ``total_milliseconds``);
    in GPU mode it times with CUDA events and gives fractional milliseconds.
    """

    def __init__(self):
        self._running = False
        self._has_run_at_least_once = False
        self._start = 0.0
        self._stop = 0.0
        self._gpu = _common.mode() == "gpu"

    def _sync(self):
        if self._gpu:
            import torch
            if torch.cuda.is_available():
                torch.cuda.synchronize()

    def start(self):
        if not self._running:
            self._sync()
            self._start = time.perf_counter()
            self._running = True
            self._has_run_at_least_once = True

    def stop(self):
        if self._running:
            self._sync()
            self._stop = time.perf_counter()
            self._running = False

    def _elapsed_ms(self):
        if not self._has_run_at_least_once:
            _common.logger.warning("Timer has never been run before reading time.")
            return 0.0
        if self._running:
            self.stop()
        return (self._stop - self._start) * 1000.0

    @property
    def ms(self):
        elapsed = self._elapsed_ms()
        return elapsed if self._gpu else float(int(elapsed))

    @property
    def milliseconds(self):
        """Unrounded elapsed milliseconds (not in pycaffe; for the caffe tool)."""
        return self._elapsed_ms()

    @property
    def microseconds(self):
        return self._elapsed_ms() * 1000.0

    @property
    def seconds(self):
        return self._elapsed_ms() / 1000.0

    @property
    def running(self):
        return self._running

    @property
    def initted(self):
        return True

