"""Caffe's log lines for net outputs, shared by the solver (display and test
passes) and ``caffe test``: numbers as C++ ``ostream << float`` writes them
and the `` (* w = w*v loss)`` note after a loss output."""
import numpy as np


def g(x):
    """A number as C++ ``ostream << float`` writes it (6 significant digits)."""
    return "%g" % float(x)


def loss_note(weight, value):
    """`` (* w = w*v loss)`` for an output with loss weight ``w`` (float32
    product, as Caffe's Dtype), or '' for a weight of 0."""
    if not weight:
        return ""
    return " (* %s = %s loss)" % (g(weight), g(np.float32(weight) * np.float32(value)))


def output_lines(net, prefix, values=None, label=""):
    """One line per element of each output blob, numbered across outputs:
    ``<prefix>k<label>: name = v (* w = w*v loss)``; ``values`` (one list per
    output) replaces the blobs' current values (the test pass's means).
    The caller logs them (Caffe logs these from solver.cpp)."""
    k = 0
    for idx, (name, blob, weight) in enumerate(net.output_blobs()):
        vals = values[idx] if values is not None else \
            blob.data_buffer.host_readonly().reshape(-1).tolist()
        for v in vals:
            yield "%s%d%s: %s = %s%s" % (prefix, k, label, name, g(v), loss_note(weight, v))
            k += 1
