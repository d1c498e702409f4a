"""Re-implementations of Caffe's dataset command-line tools.

    python -m caffe.tools.convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME
    python -m caffe.tools.compute_image_mean [FLAGS] INPUT_DB [OUTPUT_FILE]

This package also holds the helpers they share: a gflags-style flag parser
(``parse_flags``), glog-style log lines (``log``) and the LMDB / LevelDB
access layer (``caffe.data.db``).
"""
import logging
import sys

from .. import _common

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


_LEVELS = {'I': logging.INFO, 'W': logging.WARNING, 'E': logging.ERROR,
           'F': logging.CRITICAL}


def log(level, msg):
    """One glog-style line through caffe's shared logger (so ``GLOG_minloglevel``
    and friends apply); ``level`` is one of 'I', 'W', 'E', 'F'."""
    _common.logger.log(_LEVELS[level], '%s', msg, stacklevel=2)


def progress(total, desc, unit='img'):
    """A tqdm bar on stderr, drawn only on a terminal (see ``caffe._progress``)."""
    from .._progress import progress as bar
    return bar(total=total, desc=desc, unit=unit)
