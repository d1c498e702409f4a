"""Progress bars for long operations (tqdm), on stderr and only on a terminal.

Tools call ``progress(total, desc)`` and use the bar as tqdm's (``update``,
``close``, or ``with``).  When stderr is piped or redirected the bar is disabled,
so logs stay plain text.  While a bar is drawn, caffe's log lines are written
through it (``tqdm.write``), so a log line never lands in the middle of a bar.
"""
import sys

from . import _common
from ._extras import require

_open_bars = []


def _write_through_bars(line):
    _tqdm().write(line, file=sys.stderr)


def _tqdm():
    return require("tqdm", "tqdm", "progress bars of the tools and of `caffe train`").tqdm


def progress(total=None, desc=None, unit="it", file=None, disable=None, **kwargs):
    """A tqdm bar on ``file`` (default stderr); ``disable=None`` draws it only when
    that stream is a terminal."""
    tqdm = _tqdm()
    stream = sys.stderr if file is None else file
    if disable is None:
        isatty = getattr(stream, "isatty", None)
        disable = not (callable(isatty) and isatty())
    bar = tqdm(total=total, desc=desc, unit=unit, file=stream, disable=disable,
               dynamic_ncols=True, leave=False, **kwargs)
    if not disable:
        _open_bars.append(bar)
        _common._log_state["line_writer"] = _write_through_bars
        close = bar.close

        def close_and_release():
            close()
            if bar in _open_bars:
                _open_bars.remove(bar)
            if not _open_bars:
                _common._log_state["line_writer"] = None
        bar.close = close_and_release
    return bar


class TrainingBar:
    """``caffe train``'s bar: the iterations between two ``display`` lines (or to
    ``max_iter`` without display), fed by the solver's ``on_gradients_ready`` callback."""

    def __init__(self, solver, file=None, disable=None):
        self.solver = solver
        param = solver.param
        self.every = int(param.display) or max(int(param.max_iter), 1)
        self.bar = progress(total=self.every, desc="Iteration", unit="iter", file=file,
                            disable=disable)
        solver.add_callback(lambda: None, self._ready)

    def _ready(self):
        if self.bar.disable:
            return
        it = self.solver.iter
        done = it % self.every + 1
        if done == 1:
            self.bar.reset(total=self.every)      # a display line: restart the rate clock
        self.bar.set_description("Iteration %d" % (it - it % self.every), refresh=False)
        self.bar.n = done
        self.bar.refresh()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
        return False
