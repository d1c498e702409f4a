"""The one place that reads and writes Caffe's protobuf files.

Every module gets the schema from :func:`schema` (a fork's caffe.proto loaded
with ``caffe.proto.load`` or ``$CAFFE_PROTO`` applies everywhere), reads
prototxt/binary files through ``read_*`` (errors name the file, line, layer
and field instead of a bare protobuf traceback) and writes through
``write_*`` (atomic: a crash never leaves a truncated file). ``upgrade`` only
transforms messages; ``protoio.text`` is the C++-exact text printer and
``protoio.wire`` the streaming wire-format scanner.
"""
import os
import re

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from .. import atomic, upgrade
from .text import format_text


class CaffeFileError(RuntimeError):
    pass


def check_file(path, what="file"):
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError("expected a file name, got %r" % (path,))
    if not os.path.isfile(path):
        raise CaffeFileError("Could not open file %s (%s not found)" % (path, what))


def schema():
    """The active schema module (``caffe_pb2`` or a loaded fork's)."""
    from .. import proto
    return proto.active()


pb2 = schema


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
    return parse_binary(data, message, source=str(path))


def parse_binary(data, message, source="<bytes>"):
    """``message.ParseFromString(data)`` with an error naming ``source``."""
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        name = message.DESCRIPTOR.name
        raise CaffeFileError("Could not parse %s as a binary %s (%d bytes): %s -- the file is "
                             "truncated or not a %s" % (source, name, len(data), exc,
                                                        name)) from None
    return message


def write_binary(path, message):
    """Caffe's ``WriteProtoToBinaryFile``, atomically."""
    atomic.write_bytes(path, message.SerializeToString())


def write_text(path, message):
    """Caffe's ``WriteProtoToTextFile`` (C++ printer's exact text), atomically."""
    atomic.write_bytes(path, format_text(message).encode("utf-8", "surrogateescape"))


def read_net_param(path_or_param, binary=False, upgrade=True):
    """A NetParameter from a prototxt path (binary file when ``binary``), text
    or message, upgraded to the current format like Caffe's
    ``ReadNetParamsFrom{Text,Binary}FileOrDie``."""
    p = schema()
    if hasattr(path_or_param, "DESCRIPTOR"):
        param = p.NetParameter()
        param.CopyFrom(path_or_param)
        source = "<NetParameter>"
    elif binary:
        param = read_binary(path_or_param, p.NetParameter())
        source = str(path_or_param)
    else:
        param = read_text(path_or_param, p.NetParameter())
        source = str(path_or_param)
    if upgrade:
        upgrade_net(param, source)
    return param


def read_solver_param(path_or_param):
    """Caffe's ``ReadSolverParamsFromTextFileOrDie``: upgraded, and with the
    default ``snapshot_prefix`` derived from the file name."""
    p = schema()
    if hasattr(path_or_param, "DESCRIPTOR"):
        param = p.SolverParameter()
        param.CopyFrom(path_or_param)
        upgrade.upgrade_solver(param, "<SolverParameter>")
        return param
    check_file(path_or_param, "solver")
    param = read_text(path_or_param, p.SolverParameter())
    upgrade.upgrade_solver(param, str(path_or_param))
    upgrade.upgrade_snapshot_prefix(path_or_param, param)
    return param


def upgrade_net(param, source):
    if upgrade.net_needs_upgrade(param):
        upgrade.upgrade_net(param, source)
    return param
