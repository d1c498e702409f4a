"""pycaffe's ``Timer`` (``caffe.NCCL`` lives in caffe.distributed)."""
import time
import warnings

from . import _common


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
            warnings.warn("Timer has never been run before reading time.", RuntimeWarning,
                          stacklevel=3)
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

