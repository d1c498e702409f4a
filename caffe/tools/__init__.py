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


def run_tool(prog, usage, spec, argv, min_args, max_args, run, errors):
    """A dataset tool's ``main``: parse the command line (usage errors exit 1),
    call ``run(flags, args)``, and turn ``errors`` into one fatal log line and
    exit code 1, as Caffe's tools end on a failed CHECK."""
    parsed = parse_command_line(prog, usage, spec, argv, min_args, max_args)
    if parsed is None:
        return 1
    try:
        run(*parsed)
    except errors as e:
        log('F', str(e))
        return 1
    return 0


def log(level, msg):
    """One glog-style line through caffe's shared logger (so ``GLOG_minloglevel``
    and friends apply); ``level`` is one of 'I', 'W', 'E', 'F'."""
    _common.logger.log(_LEVELS[level], '%s', msg, stacklevel=2)


def progress(total, desc, unit='img'):
    """A tqdm bar on stderr, drawn only on a terminal (see ``caffe._progress``)."""
    from .._progress import progress as bar
    return bar(total=total, desc=desc, unit=unit)


def guess_encoding(fname, encode_type, encoded):
    """The image encoding Caffe's dataset tools store: ``encode_type``, or with
    ``encoded`` and none given, the file's extension (warned when it has none)."""
    if encoded and not encode_type:
        dot = fname.rfind('.')
        if dot < 0:
            log('W', "Failed to guess the encoding of '{}'".format(fname))
        return fname[dot + 1:].lower()
    return encode_type


class RecordWriter:
    """The write loop of Caffe's dataset tools: records keyed
    ``%08d_<file name>``, a commit and a "Processed N files." line every 1000
    records and once at the end, a progress bar over the list; the database
    (and bar) are closed whatever happens, the last commit only on success."""

    EVERY = 1000

    def __init__(self, db, total, desc, show_progress=True):
        self._db = db
        self._txn = db.transaction()
        self._bar = progress(total, desc) if show_progress else None
        self.count = 0

    def __enter__(self):
        return self

    def step(self):
        """One list entry handled (written or skipped)."""
        if self._bar is not None:
            self._bar.update(1)

    def put(self, line_id, fname, message):
        key = '%08d_%s' % (line_id, fname)
        self._txn.put(key.encode('utf-8', 'surrogateescape'), message.SerializeToString())
        self.count += 1
        if self.count % self.EVERY == 0:
            self._commit()

    def _commit(self):
        self._txn.commit()
        log('I', 'Processed {} files.'.format(self.count))

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None and self.count % self.EVERY != 0:
                self._commit()
        finally:
            if self._bar is not None:
                self._bar.close()
            self._db.close()
        return False
