"""ExportReport: what an exporter wrote and how well the Caffe net reproduces the source."""
from dataclasses import dataclass, field
from typing import List, Optional

from .. import verification


@dataclass
class ExportReport:
    prototxt: str
    caffemodel: Optional[str]
    target: str
    inputs: List[str]
    outputs: List[str]
    layers: int
    rows: List[verification.BlobDiff] = field(default_factory=list)
    rtol: float = 1e-4
    verified: bool = False
    ok: bool = True
    notes: List[str] = field(default_factory=list)
    header: Optional[tuple] = None        # Darknet weights header (major, minor, revision, seen)
    layer_weights: dict = field(default_factory=dict)   # Darknet layer -> arrays, file order

    @property
    def table(self):
        return verification.format_table(self.rows) if self.rows else "(not verified)"

    def summary(self):
        head = "wrote %s%s: %d layers, target %s, inputs %s, outputs %s" % (
            self.prototxt, (" and " + self.caffemodel) if self.caffemodel else "", self.layers,
            self.target, ", ".join(self.inputs), ", ".join(self.outputs))
        if not self.verified:
            return head + " (not verified)"
        worst = verification.worst([r for r in self.rows if r.name in self.outputs])
        return head + "\nverification %s: outputs within rtol %g (worst max rel %.3g)" % (
            "PASSED" if self.ok else "FAILED", self.rtol, worst["max_rel"]) \
            if self.ok else head + "\nverification FAILED: outputs differ beyond rtol %g" % (
                self.rtol)

    def __str__(self):
        return self.summary() + ("\n" + self.table if self.rows else "")
