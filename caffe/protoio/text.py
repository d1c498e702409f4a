"""Protobuf text format exactly as C++ ``TextFormat::Print`` writes it.

Caffe's tools (``upgrade_net_proto_text``, snapshots of solver params) write
prototxt with the C++ printer; matching it byte for byte keeps files diffable
against real Caffe's output: ``%.6g``/``%.9g`` floats that round-trip as
float32, C escapes, unknown fields printed by number.
"""
import math
import struct

from ..proto.pytext import is_repeated
from .wire import WireError, parse_records

_ESCAPES = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x22: '\\"', 0x27: "\\'", 0x5C: "\\\\"}


def _c_escape(data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    out = []
    for b in data:
        e = _ESCAPES.get(b)
        if e is not None:
            out.append(e)
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\%03o" % b)
    return "".join(out)


def _nonfinite(v):
    if math.isnan(v):
        return "nan"
    return "inf" if v > 0 else "-inf"


def _float_text(v):
    """Shortest of %.6g / %.9g that reads back as the same float32."""
    if not math.isfinite(v):
        return _nonfinite(v)
    s = "%.6g" % v
    if struct.unpack("<f", struct.pack("<f", float(s)))[0] != v:
        s = "%.9g" % v
    return s


def _double_text(v):
    if not math.isfinite(v):
        return _nonfinite(v)
    s = "%.15g" % v
    if float(s) != v:
        s = "%.17g" % v
    return s


def _scalar_text(fd, value):
    t = fd.type
    if t == fd.TYPE_FLOAT:
        return _float_text(value)
    if t == fd.TYPE_DOUBLE:
        return _double_text(value)
    if t == fd.TYPE_BOOL:
        return "true" if value else "false"
    if t == fd.TYPE_ENUM:
        v = fd.enum_type.values_by_number.get(value)
        return v.name if v is not None else str(value)
    if t in (fd.TYPE_STRING, fd.TYPE_BYTES):
        return '"%s"' % _c_escape(value)
    return str(int(value))


def _print_unknown(fields, indent, out):
    pad = "  " * indent
    for num, wt, v in fields:
        if wt == 0:
            out.append("%s%d: %d\n" % (pad, num, v))
        elif wt == 5:
            out.append("%s%d: 0x%08x\n" % (pad, num, v))
        elif wt == 1:
            out.append("%s%d: 0x%016x\n" % (pad, num, v))
        elif wt == 3:
            out.append("%s%d {\n" % (pad, num))
            _print_unknown(v, indent + 1, out)
            out.append("%s}\n" % pad)
        else:
            sub = None
            if v:
                try:
                    sub = parse_records(v)
                except WireError:
                    sub = None
            if sub is not None:
                out.append("%s%d {\n" % (pad, num))
                _print_unknown(sub, indent + 1, out)
                out.append("%s}\n" % pad)
            else:
                out.append('%s%d: "%s"\n' % (pad, num, _c_escape(v)))


def _unknown_records(msg):
    """The message's unknown fields as raw records (empty if none)."""
    try:
        from google.protobuf import unknown_fields
        ufs = unknown_fields.UnknownFieldSet(msg)
    except Exception:  # pragma: no cover - old protobuf
        return []
    if len(ufs) == 0:
        return []
    # Re-encode the message and keep the raw records of field numbers the
    # schema does not know: simpler than walking UnknownFieldSet per wire type.
    full = msg.SerializeToString()
    try:
        records = parse_records(full)
    except WireError:
        return []
    known_numbers = set(msg.DESCRIPTOR.fields_by_number)
    return [r for r in records if r[0] not in known_numbers]


def _print_message(msg, indent, out):
    pad = "  " * indent
    for fd, value in msg.ListFields():
        repeated = is_repeated(fd)
        values = value if repeated else [value]
        if fd.type in (fd.TYPE_MESSAGE, fd.TYPE_GROUP):
            if fd.message_type.GetOptions().map_entry:
                # not used by caffe.proto; print entries as messages
                values = [_map_entry(fd, k, value[k]) for k in value]
            for v in values:
                out.append("%s%s {\n" % (pad, fd.name))
                _print_message(v, indent + 1, out)
                out.append("%s}\n" % pad)
        else:
            for v in values:
                out.append("%s%s: %s\n" % (pad, fd.name, _scalar_text(fd, v)))
    _print_unknown(_unknown_records(msg), indent, out)


def _map_entry(fd, key, value):  # pragma: no cover - caffe.proto has no maps
    from google.protobuf import message_factory
    if hasattr(message_factory, "GetMessageClass"):
        cls = message_factory.GetMessageClass(fd.message_type)
    else:   # protobuf 4.21 has no GetMessageClass
        cls = message_factory.MessageFactory().GetPrototype(fd.message_type)
    e = cls()
    e.key = key
    if hasattr(value, "DESCRIPTOR"):
        e.value.CopyFrom(value)
    else:
        e.value = value
    return e


def format_text(msg):
    """``msg`` in protobuf text format, exactly as C++ ``TextFormat::Print``
    writes it (so as Caffe's tools write prototxt files)."""
    out = []
    _print_message(msg, 0, out)
    return "".join(out)
