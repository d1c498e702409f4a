"""gflags-style command lines, as Caffe's tools parse them.

Shared by ``python -m caffe`` (caffe/cli.py) and the dataset tools.
"""


class FlagError(ValueError):
    """Bad command line (unknown flag, bad value)."""


_GFLAGS_TYPES = {bool: 'bool', int: 'int32', float: 'double', str: 'string'}

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
                            .format(value, _GFLAGS_TYPES[typ], name)) from None
    return flags, positional


def usage_text(prog, usage, spec):
    lines = [usage.rstrip(), '', '  Flags from {}:'.format(prog)]
    for name, (typ, default, help_) in spec.items():
        d = ('"{}"'.format(default) if typ is str
             else str(default).lower() if typ is bool else str(default))
        lines.append('    -{} ({}) type: {} default: {}'.format(
            name, help_, _GFLAGS_TYPES[typ], d))
    return '\n'.join(lines) + '\n'
