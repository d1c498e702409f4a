"""One verification routine shared by every converter and by ``caffe.compare``.

Each converter (Caffe → PyTorch module / code / ONNX, PyTorch → Caffe, ONNX →
Caffe, Darknet ↔ Caffe) ends the same way: two runs of "the same" model give
named arrays, and the user wants one line per blob saying how far apart they
are, then a verdict.  Keeping that in one place means every tool prints the
same table and applies the same tolerance rule.

>>> rows = compare_named({"prob": ref}, {"prob": out})
>>> print(format_table(rows))
>>> ok = verdict(rows, rtol=1e-4)
"""
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional

import numpy as np


@dataclass
class BlobDiff:
    """How far one blob of the candidate is from the reference."""

    name: str
    shape: tuple
    max_abs: float
    max_rel: float
    cosine: float
    note: str = ""

    def within(self, rtol, atol=0.0):
        """Caffe-style check: every element within ``atol + rtol * scale``.

        ``max_rel`` is relative to the reference's largest magnitude, so a blob
        that is mostly zeros (ReLU outputs) is not failed on noise near zero.
        """
        if self.note:
            return False
        return self.max_abs <= atol or self.max_rel <= rtol


def _as_array(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def diff_arrays(name, reference, candidate):
    """One :class:`BlobDiff` for two arrays (anything ``np.asarray`` takes, or tensors)."""
    ref = _as_array(reference)
    out = _as_array(candidate)
    if ref.shape != out.shape:
        if ref.size == out.size:
            out = out.reshape(ref.shape)
        else:
            return BlobDiff(name, tuple(ref.shape), float("inf"), float("inf"), float("nan"),
                            note="shape %s vs %s" % (tuple(ref.shape), tuple(out.shape)))
    if ref.size == 0:
        return BlobDiff(name, tuple(ref.shape), 0.0, 0.0, 1.0)
    if not np.all(np.isfinite(out)) and not np.array_equal(np.isnan(ref), np.isnan(out)):
        return BlobDiff(name, tuple(ref.shape), float("inf"), float("inf"), float("nan"),
                        note="non-finite values")
    delta = np.abs(ref - out)
    max_abs = float(np.nanmax(delta))
    scale = float(np.nanmax(np.abs(ref)))
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    a = ref.ravel()
    b = out.ravel()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(np.dot(a, b) / norm) if norm > 0 else (1.0 if max_abs == 0 else 0.0)
    return BlobDiff(name, tuple(ref.shape), max_abs, max_rel, cosine)


def compare_named(reference: Mapping, candidate: Mapping,
                  names: Optional[Iterable[str]] = None) -> List[BlobDiff]:
    """Rows for ``names`` (default: the reference's keys, in order).

    A name the candidate lacks gets a row with a note instead of being skipped,
    so a missing output can never pass silently.
    """
    rows = []
    for name in (list(names) if names is not None else list(reference)):
        if name not in candidate:
            rows.append(BlobDiff(name, tuple(np.shape(_as_array(reference[name]))),
                                 float("inf"), float("inf"), float("nan"), note="missing"))
            continue
        rows.append(diff_arrays(name, reference[name], candidate[name]))
    return rows


def format_table(rows: List[BlobDiff], title: str = "") -> str:
    """The table every converter prints: name | shape | max abs | max rel | cosine."""
    header = ("name", "shape", "max abs", "max rel", "cosine")
    body = []
    for r in rows:
        body.append((r.name, "x".join(str(d) for d in r.shape) or "scalar",
                     "%.3g" % r.max_abs, "%.3g" % r.max_rel,
                     ("%.6f" % r.cosine) + ("  (%s)" % r.note if r.note else "")))
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(header)]

    def line(cells):
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [title] if title else []
    out.append(line(header))
    out.append("-+-".join("-" * w for w in widths))
    out.extend(line(b) for b in body)
    return "\n".join(out)


def verdict(rows: List[BlobDiff], rtol: float, atol: float = 0.0,
            names: Optional[Iterable[str]] = None) -> bool:
    """True when every row (or every row named in ``names``) is within tolerance."""
    wanted = None if names is None else set(names)
    return all(r.within(rtol, atol) for r in rows if wanted is None or r.name in wanted)


def worst(rows: List[BlobDiff]) -> Dict[str, float]:
    """The largest max-abs and max-rel over the rows (for one-line summaries)."""
    finite = [r for r in rows if not r.note]
    return {
        "max_abs": max((r.max_abs for r in finite), default=0.0),
        "max_rel": max((r.max_rel for r in finite), default=0.0),
        "failed": [r.name for r in rows if r.note],
    }
