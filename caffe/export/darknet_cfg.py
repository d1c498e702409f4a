"""Darknet .cfg and .weights files: sections with their line numbers, and the
weights header (major, minor, revision, seen as 32 or 64 bit) plus the floats."""
from dataclasses import dataclass, field
from typing import Dict

import numpy as np

from .errors import ExportError


@dataclass
class Section:
    kind: str                  # 'convolutional', 'maxpool', ...
    line: int                  # line of the [header] in the cfg
    options: Dict[str, str] = field(default_factory=dict)
    index: int = -1            # layer index (the [net] section is -1)

    def get(self, key, default=None, cast=str):
        if key not in self.options:
            return default
        try:
            return cast(self.options[key])
        except ValueError:
            raise ExportError("[%s] at line %d: %s=%r is not a valid %s" % (
                self.kind, self.line, key, self.options[key], cast.__name__)) from None

    def ints(self, key, default=None):
        if key not in self.options:
            return default
        return [int(v) for v in self.options[key].replace(" ", "").split(",") if v != ""]

    def floats(self, key, default=None):
        if key not in self.options:
            return default
        return [float(v) for v in self.options[key].replace(" ", "").split(",") if v != ""]


def parse_cfg(path):
    """[net] first, then one Section per layer, indexed as Darknet counts them."""
    sections = []
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#")[0].split(";")[0].strip()
            if not line:
                continue
            if line.startswith("["):
                if not line.endswith("]"):
                    raise ExportError("%s:%d: unterminated section header %r" % (path, lineno, line))
                sections.append(Section(line[1:-1].strip().lower(), lineno))
            elif "=" in line:
                if not sections:
                    raise ExportError("%s:%d: option before any [section]" % (path, lineno))
                key, value = line.split("=", 1)
                sections[-1].options[key.strip()] = value.strip()
            else:
                raise ExportError("%s:%d: expected key=value, got %r" % (path, lineno, line))
    if not sections or sections[0].kind not in ("net", "network"):
        raise ExportError("%s: the first section must be [net]" % path)
    for i, s in enumerate(sections[1:]):
        s.index = i
    return sections[0], sections[1:]


def read_weights(path):
    """(header (major, minor, revision, seen), float32 array of everything after it)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 16:
        raise ExportError("%s: %d bytes is too short for a Darknet weights header" % (
            path, len(data)))
    major, minor, revision = np.frombuffer(data[:12], dtype="<i4")
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    seen_bytes = 8 if wide else 4
    seen = int(np.frombuffer(data[12:12 + seen_bytes], dtype="<i8" if wide else "<i4")[0])
    header = (int(major), int(minor), int(revision), seen)
    body = data[12 + seen_bytes:]
    if len(body) % 4:
        raise ExportError("%s: %d bytes after the header is not a whole number of floats" % (
            path, len(body)))
    return header, np.frombuffer(body, dtype="<f4").copy()


def write_weights(path, header, arrays):
    major, minor, revision, seen = header
    wide = major * 10 + minor >= 2
    with open(path, "wb") as f:
        f.write(np.array([major, minor, revision], dtype="<i4").tobytes())
        f.write(np.array([seen], dtype="<i8" if wide else "<i4").tobytes())
        for a in arrays:
            f.write(np.asarray(a, dtype="<f4").ravel().tobytes())


class WeightReader:
    """Hands out consecutive float arrays, with a clear error when the file ends early."""

    def __init__(self, floats, path):
        self.floats = floats
        self.path = path
        self.pos = 0

    def take(self, n, section, what):
        if self.pos + n > self.floats.size:
            raise ExportError("%s ends early: [%s] (layer %d, cfg line %d) needs %d floats for "
                              "%s, %d left" % (self.path, section.kind, section.index,
                                               section.line, n, what,
                                               self.floats.size - self.pos))
        out = self.floats[self.pos:self.pos + n]
        self.pos += n
        return out
