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


class FlagError(ValueError):
    """Bad command line (unknown flag, bad value)."""


_TRUE = ('true', 't', 'yes', 'y', '1')
_FALSE = ('false', 'f', 'no', 'n', '0')


def _parse_bool(name, text):
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise FlagError("illegal value '{}' specified for bool flag '{}'"
                    .format(text, name))


def parse_flags(argv, spec):
    """Parse gflags-style arguments.

    ``spec`` maps flag names to ``(type, default, help)`` with type one of
    ``bool``, ``int``, ``float``, ``str``.  Accepted forms: ``-f=v``,
    ``--f=v``, ``-f v`` (non-bool), ``-f`` / ``-nof`` (bool), and ``--`` to
    end flags.  Flags and positional arguments may be interleaved, as with
    gflags.  Returns ``(flags_dict, positionals)``; ``-help`` raises
    ``SystemExit`` after ``FlagError`` handling by the caller.
    """
    flags = {name: default for name, (_, default, _h) in spec.items()}
    positional = []
    i = 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == '--':
            positional.extend(args[i:])
            break
        if not arg.startswith('-') or arg == '-':
            positional.append(arg)
            continue
        body = arg[2:] if arg.startswith('--') else arg[1:]
        if '=' in body:
            name, value = body.split('=', 1)
            has_value = True
        else:
            name, value, has_value = body, None, False
        if name in ('help', 'helpfull', 'h'):
            raise FlagError('help')
        if name not in spec:
            if (not has_value and name.startswith('no')
                    and name[2:] in spec and spec[name[2:]][0] is bool):
                flags[name[2:]] = False
                continue
            raise FlagError("unknown command line flag '{}'".format(name))
        typ = spec[name][0]
        if typ is bool:
            flags[name] = _parse_bool(name, value) if has_value else True
            continue
        if not has_value:
            if i >= len(args):
                raise FlagError("flag '{}' is missing its argument"
                                .format(name))
            value = args[i]
            i += 1
        try:
            flags[name] = typ(value)
        except ValueError:
            raise FlagError("illegal value '{}' specified for {} flag '{}'"
                            .format(value, typ.__name__, name))
    return flags, positional


def usage_text(prog, usage, spec):
    lines = [usage.rstrip(), '', '  Flags from {}:'.format(prog)]
    for name, (typ, default, help_) in spec.items():
        d = ('"{}"'.format(default) if typ is str
             else str(default).lower() if typ is bool else str(default))
        lines.append('    -{} ({}) type: {} default: {}'.format(
            name, help_, {bool: 'bool', int: 'int32', float: 'double',
                          str: 'string'}[typ], d))
    return '\n'.join(lines) + '\n'


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
