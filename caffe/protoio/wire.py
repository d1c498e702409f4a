"""Protobuf wire format read field by field from a file object.

Used where parsing a whole message is wrong: streaming multi-GB caffemodels
blob by blob (``caffe.dump``) and printing unknown fields the way C++
``TextFormat::Print`` does (``protoio.text``).  Positions are explicit
(``f.tell()`` against an ``end``) so a damaged length can never read past its
enclosing message.
"""
import io
import struct

import numpy as np


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf field sequence."""


def encode_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def signed(v, bits=64):
    """Two's-complement reading of a varint (int32/int64 fields)."""
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


class WireReader:
    """Reads tags, varints, length-delimited payloads and packed floats.

    ``error(message)`` builds the exception raised on malformed input, so each
    caller names its file and its kind of file in the message.
    """

    def __init__(self, f, size, error=WireError):
        self.f = f
        self.size = size
        self.error = error

    def tell(self):
        return self.f.tell()

    def varint(self):
        result = shift = 0
        f = self.f
        while True:
            b = f.read(1)
            if not b:
                raise self.error("unexpected end of data inside a varint")
            b = b[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise self.error("malformed varint at byte %d" % f.tell())

    def tag(self, end, groups=False):
        """(field number, wire type); groups (types 3/4) only when allowed."""
        pos = self.f.tell()
        t = self.varint()
        field, wt = t >> 3, t & 7
        bad = (3, 4, 6, 7) if not groups else (6, 7)
        if field == 0 or wt in bad:
            raise self.error("invalid field tag %d (wire type %d) at byte %d" % (field, wt, pos))
        return field, wt

    def length(self, end):
        n = self.varint()
        if self.f.tell() + n > end:
            raise self.error("field length %d runs past the end of its message (byte %d)"
                             % (n, self.f.tell()))
        return n

    def fixed(self, n, end):
        if self.f.tell() + n > end:
            raise self.error("truncated %d-byte field at byte %d" % (n, self.f.tell()))
        data = self.f.read(n)
        if len(data) != n:
            raise self.error("unexpected end of data at byte %d" % self.f.tell())
        return data

    def skip(self, wt, end):
        if wt == 0:
            self.varint()
        elif wt == 1:
            self.fixed(8, end)
        elif wt == 5:
            self.fixed(4, end)
        elif wt == 2:
            self.f.seek(self.length(end), 1)
        else:
            raise self.error("cannot skip wire type %d" % wt)
        if self.f.tell() > end:
            raise self.error("truncated field at byte %d" % self.f.tell())

    def raw_field(self, field, wt, end):
        """One field's bytes, tag included, for handing to protobuf's parser."""
        out = bytearray(encode_varint((field << 3) | wt))
        if wt == 0:
            out += encode_varint(self.varint())
        elif wt == 1:
            out += self.fixed(8, end)
        elif wt == 5:
            out += self.fixed(4, end)
        else:
            n = self.length(end)
            out += encode_varint(n)
            out += self.fixed(n, end)
        return bytes(out)

    def floats(self, n_bytes, dtype):
        """A packed float/double payload read straight into a new array."""
        itemsize = np.dtype(dtype).itemsize
        if n_bytes % itemsize:
            raise self.error("packed %s field of %d bytes" % (np.dtype(dtype).name, n_bytes))
        arr = np.empty(n_bytes // itemsize, dtype=dtype)
        got = self.f.readinto(memoryview(arr).cast("B"))
        if got != n_bytes:
            raise self.error("data truncated inside a packed array")
        return arr

    def float32(self, end):
        return struct.unpack("<f", self.fixed(4, end))[0]

    def float64(self, end):
        return struct.unpack("<d", self.fixed(8, end))[0]

    def records(self, end, group=None):
        """Every field up to ``end`` as raw ``(number, wire type, value)``:
        varints and fixed as ints, length-delimited as bytes, groups as lists."""
        fields = []
        while self.f.tell() < end:
            num, wt = self.tag(end, groups=True)
            if wt == 0:
                v = self.varint()
            elif wt == 1:
                v = struct.unpack("<Q", self.fixed(8, end))[0]
            elif wt == 5:
                v = struct.unpack("<I", self.fixed(4, end))[0]
            elif wt == 2:
                v = self.fixed(self.length(end), end)
            elif wt == 3:
                v = self.records(end, group=num)
            else:                                    # wt == 4: end of a group
                if group != num:
                    raise self.error("unmatched end of group %d" % num)
                return fields
            fields.append((num, wt, v))
        if group is not None:
            raise self.error("unterminated group %d" % group)
        return fields


def parse_records(data):
    """:meth:`WireReader.records` of an in-memory byte string."""
    return WireReader(io.BytesIO(data), len(data)).records(len(data))
