"""Int8 calibration tables (ncnn format) for a Caffe model.

    python -m caffe.tools.int8_calibrate --proto deploy.prototxt --model w.caffemodel \\
        --images DIR --mean 104 117 123 --norm 1.0 [--group 1] --output model.table

For every Convolution and InnerProduct layer:

* weight scales ``127 / max|w|`` -- one for the whole layer, or with ``--group 1``
  one per convolution group (output channels split evenly), 0 where max|w| < 1e-4;
* the scale ``127 / T`` of its input activations, where T is chosen as TensorRT
  does: a 2048-bin histogram of the input's values over ``[0, max]`` collected
  over the calibration images, then the clipping bin (from 128 on) whose
  128-level quantised distribution has the smallest KL divergence from the
  clipped reference distribution (bin 0, mostly ReLU zeros, is left out).

The table lists ``<layer>_param_0 s1 [s2 ...]`` lines, then ``<layer> scale``
lines, as ncnn's int8 tools read it.  Images are read in sorted order, so the
result is deterministic.  Where this differs from the seed script: the last
merged bin really covers the tail of the clipped range (the seed drops its last
element by slicing to -1).
"""
import argparse
import os
import sys
from collections import OrderedDict

import numpy as np

__all__ = ["kl_threshold_bin", "weight_scales", "calibrate", "write_table", "read_table"]

QUANTIZE_NUM = 127
NUM_BINS = 2048
TARGET_BINS = 128
TARGET_TYPES = ("Convolution", "InnerProduct")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _kl(p, q):
    """KL(p || q) of two unnormalised non-negative histograms without zeros."""
    p = p / p.sum()
    q = q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def kl_threshold_bin(hist, target_bins=TARGET_BINS, floor=1e-4):
    """Index (in ``hist[1:]``) of the clipping bin with the smallest KL divergence.

    For each candidate ``t`` the reference ``p`` is the first ``t`` bins with
    everything beyond folded into bin ``t - 1``; the candidate ``q`` merges those
    ``t`` bins into ``target_bins`` groups (the last group takes the remainder)
    and spreads each group's mass evenly over its non-empty bins.  Empty bins
    get ``floor`` in both before the divergence is taken.
    """
    hist = np.asarray(hist, dtype=np.float64)[1:]
    n = hist.size
    if n <= target_bins:
        raise ValueError("need more than %d histogram bins, got %d" % (target_bins + 1, n + 1))
    tail = np.cumsum(hist[::-1])[::-1]          # tail[t] = sum(hist[t:])
    best, best_t = None, target_bins
    for t in range(target_bins, n):
        p = hist[:t].copy()
        p[t - 1] += tail[t]
        nonzero = p != 0
        step = t // target_bins
        group = np.minimum(np.arange(t) // step, target_bins - 1)
        sums = np.bincount(group, weights=hist[:t], minlength=target_bins)
        counts = np.bincount(group, weights=nonzero, minlength=target_bins)
        per = np.divide(sums, counts, out=np.zeros_like(sums), where=counts != 0)
        q = np.where(nonzero, per[group], 0.0)
        p[p == 0] = floor
        q[q == 0] = floor
        kl = _kl(p, q)
        if best is None or kl < best:
            best, best_t = kl, t
    return best_t


def weight_scales(weight, groups=1):
    """``127 / max|w|`` per group of output channels (0 below 1e-4)."""
    out = []
    for part in np.array_split(np.asarray(weight, dtype=np.float64), groups):
        m = float(np.max(np.abs(part))) if part.size else 0.0
        out.append(0.0 if m < 1e-4 else QUANTIZE_NUM / m)
    return out


def _images(folder):
    if not os.path.isdir(folder):
        raise ValueError("--images %s: not a directory" % folder)
    files = []
    for root, _, names in os.walk(folder):
        files += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_EXTS)]
    if not files:
        raise ValueError("--images %s: no image files (%s)" % (folder, ", ".join(IMAGE_EXTS)))
    return sorted(files)


def calibrate(proto, model, images, mean, norm=1.0, group=False, progress=True):
    """``(weight scales, activation scales)``: two ordered dicts keyed by layer."""
    from .. import _common
    from .. import io as cio
    from ..net import Net, plain_nets
    from . import progress as bar
    with plain_nets():              # every layer's activations are read
        net = Net(proto, _common.TEST, weights=model)
    if not net.inputs:
        raise ValueError("%s: the net has no Input layer to feed images into" % proto)
    data = net.inputs[0]
    shape = net.blobs[data].data.shape
    net.blobs[data].reshape(1, *shape[1:])
    net.reshape()
    layers = [(i, lp) for i, lp in enumerate(net._layer_params) if lp.type in TARGET_TYPES]
    if not layers:
        raise ValueError("%s: no Convolution or InnerProduct layer to calibrate" % proto)
    wscales = OrderedDict()
    for _, lp in layers:
        groups = lp.convolution_param.group if (group and lp.type == "Convolution") else 1
        wscales[lp.name] = weight_scales(net.params[lp.name][0].data, groups)

    t = cio.Transformer({data: net.blobs[data].data.shape})
    t.set_transpose(data, (2, 0, 1))
    t.set_raw_scale(data, 255)
    if shape[1] == 3:
        t.set_channel_swap(data, (2, 1, 0))
    if mean is not None:
        t.set_mean(data, np.asarray(mean, dtype=np.float32))
    t.set_input_scale(data, norm)
    files = _images(images)
    inputs = {}                                   # layer index -> its bottom, as seen

    def grab(index):
        if index in wanted:
            inputs[index] = net._blobs[net._bottom_id_lists[index][0]].data[0].ravel()

    wanted = {i: lp.name for i, lp in layers}
    net.before_forward(grab)
    maxima = {i: 0.0 for i in wanted}
    hists = {i: np.zeros(NUM_BINS) for i in wanted}

    def run(image_file):
        image = cio.load_image(image_file, color=shape[1] == 3)
        net.blobs[data].data[...] = t.preprocess(data, image)
        net.forward()

    for stage in ("range", "histogram"):
        b = bar(len(files), "int8 %s" % stage) if progress else None
        for f in files:
            run(f)
            for i, x in inputs.items():
                if stage == "range":
                    maxima[i] = max(maxima[i], float(np.max(np.abs(x))))
                elif maxima[i] > 0:
                    hists[i] += np.histogram(x, bins=NUM_BINS, range=(0, maxima[i]))[0]
            if b is not None:
                b.update(1)
        if b is not None:
            b.close()
    ascales = OrderedDict()
    for i, name in wanted.items():
        if maxima[i] == 0 or hists[i][1:].sum() == 0:
            ascales[name] = 0.0              # input never positive: nothing to scale
            continue
        interval = maxima[i] / NUM_BINS
        threshold = (kl_threshold_bin(hists[i]) + 0.5) * interval
        ascales[name] = QUANTIZE_NUM / threshold
    return wscales, ascales


def write_table(path, wscales, ascales):
    lines = ["%s_param_0 %s" % (name, " ".join(repr(float(s)) for s in scales))
             for name, scales in wscales.items()]
    lines += ["%s %s" % (name, repr(float(s))) for name, s in ascales.items()]
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def read_table(path):
    """``(weight scales, activation scales)`` from an ncnn calibration table."""
    wscales, ascales = OrderedDict(), OrderedDict()
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError("%s:%d: expected '<name> <scale> ...'" % (path, lineno))
            values = [float(v) for v in parts[1:]]
            if parts[0].endswith("_param_0"):
                wscales[parts[0][:-len("_param_0")]] = values
            else:
                ascales[parts[0]] = values[0]
    return wscales, ascales


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m caffe.tools.int8_calibrate",
                                 description="ncnn int8 calibration table (KL thresholds)")
    ap.add_argument("--proto", required=True, help="deploy prototxt")
    ap.add_argument("--model", required=True, help="caffemodel")
    ap.add_argument("--images", required=True, help="folder of calibration images")
    ap.add_argument("--mean", type=float, nargs="+", default=None, help="per-channel means")
    ap.add_argument("--norm", type=float, default=1.0, help="scale after the mean")
    ap.add_argument("--group", type=int, default=0, help="1: one weight scale per conv group")
    ap.add_argument("--output", default="calibration.table")
    args = ap.parse_args(argv)
    from ..protoio import CaffeFileError
    try:
        w, a = calibrate(args.proto, args.model, args.images, args.mean, args.norm,
                         bool(args.group))
    except (CaffeFileError, ValueError, OSError) as exc:
        sys.stderr.write("int8_calibrate: %s\n" % exc)
        return 1
    write_table(args.output, w, a)
    sys.stderr.write("int8_calibrate: wrote %d layers to %s\n" % (len(a), args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
