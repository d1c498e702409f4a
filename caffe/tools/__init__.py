"""Re-implementations of Caffe's dataset command-line tools.

    python -m caffe.tools.convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME
    python -m caffe.tools.compute_image_mean [FLAGS] INPUT_DB [OUTPUT_FILE]

This package also holds the helpers they share: a gflags-style flag parser
(``parse_flags``), glog-style log lines (``log``) and the LMDB / LevelDB
access layer (``caffe.tools._db``).
"""
import os
import sys
import time

__all__ = ['parse_flags', 'FlagError', 'log', 'progress']


from .._flags import FlagError, parse_flags, usage_text  # noqa: F401  (the tools' API)


def parse_command_line(prog, usage, spec, argv, min_args, max_args=None):
    """A tool's command line: ``(flags, positionals)`` from ``argv``
    (``sys.argv[1:]`` when None), or None after writing the error (if any)
    and the usage to stderr: on a bad flag, ``-help``, or a positional count
    outside ``[min_args, max_args]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        flags, args = parse_flags(argv, spec)
    except FlagError as e:
        if str(e) != 'help':
            sys.stderr.write('ERROR: {}\n'.format(e))
        sys.stderr.write(usage_text(prog, usage, spec))
        return None
    if len(args) < min_args or (max_args is not None and len(args) > max_args):
        sys.stderr.write(usage_text(prog, usage, spec))
        return None
    return flags, args


def log(level, msg, source=None):
    """Write one glog-style line (``I0123 12:34:56.789012 pid file:line] msg``)
    to stderr.  ``level`` is one of 'I', 'W', 'E', 'F'."""
    frame = sys._getframe(1)
    if source is None:
        source = os.path.basename(frame.f_code.co_filename)
    now = time.time()
    tm = time.localtime(now)
    stamp = time.strftime('%m%d %H:%M:%S', tm) + '.%06d' % int(
        (now % 1) * 1e6)
    sys.stderr.write('{}{} {} {}:{}] {}\n'.format(
        level, stamp, os.getpid(), source, frame.f_lineno, msg))
    sys.stderr.flush()


class _SimpleBar:
    """Minimal progress bar on stderr, used when tqdm is not installed.
    Only drawn on a terminal."""

    def __init__(self, total, desc):
        self.total = total
        self.desc = desc
        self.n = 0
        self.enabled = sys.stderr.isatty() and total > 0
        self._last = 0.0

    def update(self, k=1):
        self.n += k
        if not self.enabled:
            return
        now = time.time()
        if now - self._last < 0.1 and self.n < self.total:
            return
        self._last = now
        frac = self.n / float(self.total)
        width = 30
        full = int(frac * width)
        sys.stderr.write('\r{}: [{}{}] {}/{}'.format(
            self.desc, '#' * full, '.' * (width - full), self.n, self.total))
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write('\n')
            sys.stderr.flush()


def progress(total, desc):
    """A progress bar with ``update(k)`` and ``close()``: tqdm when
    installed, else a simple one on stderr."""
    try:
        from tqdm import tqdm
    except Exception:
        return _SimpleBar(total, desc)
    return tqdm(total=total, desc=desc, unit='img', disable=None,
                file=sys.stderr)
