"""Reading and writing Caffe's protobuf files, with errors that name the file,
the layer and the field instead of a bare protobuf traceback."""
import os
import re

from google.protobuf import text_format
from google.protobuf.message import DecodeError


class CaffeFileError(RuntimeError):
    pass


def check_file(path, what="file"):
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError("expected a file name, got %r" % (path,))
    if not os.path.isfile(path):
        raise CaffeFileError("Could not open file %s (%s not found)" % (path, what))


def pb2():
    from . import proto
    return proto.active()


_LAYER_NAME = re.compile(r'\bname\s*:\s*"([^"]*)"')


def _layer_at_line(text, lineno, col=1):
    """Name of the top-level ``layer``/``layers`` block enclosing a position."""
    lines = text.splitlines(True)
    offset = sum(len(l) for l in lines[:max(lineno - 1, 0)]) + max(col - 1, 0)
    depth = 0
    block_start = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":                      # skip string literals
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch == "{":
            if depth == 0:
                m = re.search(r"(layers?)\s*:?\s*$", text[max(0, i - 20):i])
                block_start = i if m else None
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                if block_start is not None and block_start <= offset <= i:
                    break
                block_start = None
        i += 1
    if block_start is None or block_start > offset:
        return None
    # the block's own name: a `name:` at depth 1 of that block
    depth = 0
    for m in re.finditer(r'[{}]|\bname\s*:\s*"([^"]*)"', text[block_start:]):
        tok = m.group(0)
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0:
                break
        elif depth == 1:
            return m.group(1)
    return None


def parse_text(text, message, source="<string>"):
    """Merge prototxt ``text`` into ``message``; errors name file, line, layer and field."""
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as exc:
        msg = str(exc)
        m = re.match(r"(\d+):(\d+)\s*:\s*(.*)", msg)
        line = int(m.group(1)) if m else None
        detail = m.group(3) if m else msg
        where = source
        if line is not None:
            where += ":%d:%s" % (line, m.group(2))
            layer = _layer_at_line(text, line, int(m.group(2)))
            if layer is not None:
                where += " (layer %r)" % layer
        field = re.search(r'no field named "([^"]+)"', detail)
        if field:
            detail += " -- unknown field %r, check its spelling against caffe.proto" % field.group(1)
        raise CaffeFileError("Error parsing text-format %s: %s: %s"
                             % (message.DESCRIPTOR.full_name, where, detail)) from None
    return message


def read_text(path, message):
    check_file(path)
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        text = f.read()
    return parse_text(text, message, source=str(path))


def read_binary(path, message):
    check_file(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise CaffeFileError("Could not parse %s as a binary %s (%d bytes): %s -- the file is "
                             "truncated or not a %s" % (path, message.DESCRIPTOR.name, len(data),
                                                        exc, message.DESCRIPTOR.name)) from None
    return message


def write_binary(path, message):
    with open(path, "wb") as f:
        f.write(message.SerializeToString())


def write_text(path, message):
    with open(path, "w") as f:
        f.write(text_format.MessageToString(message))


def read_net_param(path_or_param):
    """A NetParameter from a prototxt path, text, or message, upgraded to V2."""
    p = pb2()
    if hasattr(path_or_param, "DESCRIPTOR"):
        param = p.NetParameter()
        param.CopyFrom(path_or_param)
        source = "<NetParameter>"
    else:
        param = read_text(path_or_param, p.NetParameter())
        source = str(path_or_param)
    upgrade_net(param, source)
    return param


def upgrade_net(param, source):
    try:
        from . import upgrade
    except ImportError:  # pragma: no cover - upgrade module always ships
        return param
    if upgrade.net_needs_upgrade(param):
        upgrade.upgrade_net(param, source)
    return param
