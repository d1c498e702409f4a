"""A per-layer summary of a net: top shapes, parameters, multiply-adds,
activation memory and the receptive field of every blob.

    python -m caffe.tools.summary deploy.prototxt [-i 1,3,224,224] [-i ...]

Shapes come from building the net with ``caffe.Net`` (so they are exactly the
runtime's).  Multiply-adds count Convolution, Deconvolution and InnerProduct
(elementwise layers are not counted, as in the published figures).  The
receptive field of a blob, per spatial axis, is ``size`` (input pixels seen
by one element), ``jump`` (input pixels between neighbouring elements) and
``start`` (centre of element 0's field, in input pixel coordinates); where
several paths meet (Eltwise, Concat) the largest field is kept and the row
says so.  ``python -m caffe train/test/time -verbose 1`` prints this table first.
"""
import sys

from ..limits import count as _count

__all__ = ["summary", "summarize", "format_summary", "LayerRow", "ReceptiveField"]


class ReceptiveField:
    """Per spatial axis: size, jump, start (tuples), or ``whole`` after a layer
    that mixes all positions (InnerProduct, global pooling)."""

    __slots__ = ("size", "jump", "start", "note")

    def __init__(self, size, jump, start, note=""):
        self.size, self.jump, self.start, self.note = tuple(size), tuple(jump), tuple(start), note

    def __repr__(self):
        return "ReceptiveField(size=%s, jump=%s, start=%s)" % (self.size, self.jump, self.start)


class LayerRow:
    __slots__ = ("name", "type", "tops", "top_shapes", "params", "macs", "memory", "fields", "note")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


# ---------------------------------------------------------------------------
# per-type rules (registries: one entry per layer type)
# ---------------------------------------------------------------------------

def _conv_macs(lp, bottoms, tops, params):
    # each output element: (C_in / group) * kernel volume multiply-adds
    return _count(tops[0]) * _count(params[0][1:]) if params else 0


def _deconv_macs(lp, bottoms, tops, params):
    # each input element is spread over (C_out / group) * kernel volume outputs
    return _count(bottoms[0]) * _count(params[0][1:]) if params else 0


def _ip_macs(lp, bottoms, tops, params):
    return _count(tops[0]) * (_count(params[0]) // max(1, lp.inner_product_param.num_output))


MACS = {"Convolution": _conv_macs, "Deconvolution": _deconv_macs, "InnerProduct": _ip_macs}


def _per_axis(values, h, w, n, default):
    """Expand a repeated field (or its _h/_w pair) to ``n`` spatial values."""
    if h is not None and w is not None and n == 2:
        return [h, w]
    vals = list(values)
    if not vals:
        return [default] * n
    return vals * n if len(vals) == 1 else vals[:n]


def _window(size, jump, start, k, s, p):
    """A sliding window of kernel k (dilated), stride s, pad p over one axis."""
    return size + (k - 1) * jump, jump * s, start + ((k - 1) / 2.0 - p) * jump


def _conv_field(lp, fields, bottoms, tops):
    cp = lp.convolution_param
    n = len(bottoms[0]) - 2
    k = _per_axis(cp.kernel_size, cp.kernel_h if cp.HasField("kernel_h") else None,
                  cp.kernel_w if cp.HasField("kernel_w") else None, n, 1)
    s = _per_axis(cp.stride, cp.stride_h if cp.HasField("stride_h") else None,
                  cp.stride_w if cp.HasField("stride_w") else None, n, 1)
    p = _per_axis(cp.pad, cp.pad_h if cp.HasField("pad_h") else None,
                  cp.pad_w if cp.HasField("pad_w") else None, n, 0)
    d = _per_axis(cp.dilation, None, None, n, 1)
    keff = [di * (ki - 1) + 1 for ki, di in zip(k, d)]
    return keff, s, p


def _slide(rule):
    def field(lp, fields, bottoms, tops):
        f = fields[0]
        if f is None:
            return None
        k, s, p = rule(lp, fields, bottoms, tops)
        axes = [_window(*args) for args in zip(f.size, f.jump, f.start, k, s, p)]
        return ReceptiveField(*zip(*axes))
    return field


def _pool_geometry(lp, fields, bottoms, tops):
    pp = lp.pooling_param
    n = len(bottoms[0]) - 2
    if pp.global_pooling:
        return list(bottoms[0][2:]), [1] * n, [0] * n
    k = [pp.kernel_h, pp.kernel_w] if pp.HasField("kernel_h") else [pp.kernel_size] * n
    s = [pp.stride_h, pp.stride_w] if pp.HasField("stride_h") else [pp.stride] * n
    p = [pp.pad_h, pp.pad_w] if pp.HasField("pad_h") else [pp.pad] * n
    return k, s, p


def _deconv_field(lp, fields, bottoms, tops):
    f = fields[0]
    if f is None:
        return None
    keff, s, p = _conv_field(lp, fields, bottoms, tops)
    axes = []
    for size, jump, start, k, st, pd in zip(f.size, f.jump, f.start, keff, s, p):
        # an output element sees at most ceil(k / s) neighbouring inputs
        j = jump / float(st)
        n = -(-k // st)
        axes.append((size + (n - 1) * jump, j, start + (pd - (k - 1) / 2.0) * j))
    return ReceptiveField(*zip(*axes))


def _crop_field(lp, fields, bottoms, tops):
    f = fields[0]
    if f is None:
        return None
    cp = lp.crop_param
    axis = cp.axis if cp.axis >= 0 else cp.axis + len(bottoms[0])
    starts = []
    for i, (start, jump) in enumerate(zip(f.start, f.jump)):
        dim = i + 2
        off = 0
        if dim >= axis and len(cp.offset):
            off = cp.offset[0] if len(cp.offset) == 1 else cp.offset[dim - axis]
        starts.append(start + off * jump)
    return ReceptiveField(f.size, f.jump, starts)


def _lrn_field(lp, fields, bottoms, tops):
    f = fields[0]
    if f is None or lp.lrn_param.norm_region != 1:        # ACROSS_CHANNELS: 1x1
        return f
    k = lp.lrn_param.local_size
    axes = [_window(size, jump, start, k, 1, (k - 1) // 2)
            for size, jump, start in zip(f.size, f.jump, f.start)]
    return ReceptiveField(*zip(*axes))


FIELDS = {"Convolution": _slide(_conv_field), "Pooling": _slide(_pool_geometry),
          "Deconvolution": _deconv_field, "Crop": _crop_field, "LRN": _lrn_field}


def _default_field(lp, fields, bottoms, tops):
    """Layers without a rule: a pointwise map when the spatial shape is kept,
    the largest field of several bottoms, nothing once positions are mixed."""
    known = [f for f in fields if f is not None]
    if not known:
        return None
    best = max(known, key=lambda f: _count(f.size))
    if len(tops) and len(tops[0]) != len(bottoms[0]):
        return None
    note = "largest of %d paths" % len(known) if len(known) > 1 and len(
        set((f.size, f.jump, f.start) for f in known)) > 1 else ""
    return ReceptiveField(best.size, best.jump, best.start, note)


# ---------------------------------------------------------------------------
# the walk
# ---------------------------------------------------------------------------
def _layer_params(net):
    params = getattr(net, "_layer_params", None)
    if params is None:
        params = list(net.to_proto().layer)
    return params


def summarize(net):
    """One :class:`LayerRow` per layer of a built ``caffe.Net``."""
    fields = {}
    rows = []
    seen_params = set()
    for lp, layer in zip(_layer_params(net), net.layers):
        bottoms = [tuple(net.blobs[b].data.shape) for b in lp.bottom]
        tops = [tuple(net.blobs[t].data.shape) for t in lp.top]
        blobs = list(getattr(layer, "blobs", []))
        params = [tuple(b.data.shape) for b in blobs]
        n_params = 0
        for b in blobs:
            if id(b) not in seen_params:          # shared parameters count once
                seen_params.add(id(b))
                n_params += _count(b.data.shape)
        macs = MACS.get(lp.type, lambda *a: 0)(lp, bottoms, tops, params)
        memory = 4 * sum(_count(s) for name, s in zip(lp.top, tops) if name not in lp.bottom)
        if not lp.bottom:
            top_fields = [ReceptiveField([1] * (len(s) - 2), [1] * (len(s) - 2),
                                         [0.0] * (len(s) - 2)) if len(s) > 2 else None
                          for s in tops]
        else:
            rule = FIELDS.get(lp.type, _default_field)
            f = rule(lp, [fields.get(b) for b in lp.bottom], bottoms, tops)
            top_fields = [f if f is not None and len(s) == len(bottoms[0]) else None
                          for s in tops]
        for name, f in zip(lp.top, top_fields):
            fields[name] = f
        notes = [f.note for f in top_fields if f is not None and f.note]
        rows.append(LayerRow(name=lp.name, type=lp.type, tops=list(lp.top), top_shapes=tops, params=n_params,
                             macs=macs, memory=memory, fields=top_fields,
                             note="; ".join(notes)))
    return rows


def _set_input_shapes(param, shapes):
    inputs = [lp for lp in param.layer if lp.type == "Input"]
    if len(shapes) > sum(max(1, len(lp.top)) for lp in inputs):
        raise ValueError("%d input shapes given (-i) but the net has %d Input tops"
                         % (len(shapes), sum(len(lp.top) for lp in inputs)))
    it = iter(shapes)
    for lp in inputs:
        for j in range(len(lp.top)):
            shape = next(it, None)
            if shape is None:
                return
            while len(lp.input_param.shape) <= j:
                lp.input_param.shape.add()
            lp.input_param.shape[j].dim[:] = list(shape)


def summary(net_file, input_shapes=None, phase=None):
    """Rows for a prototxt (path or NetParameter), inputs optionally reshaped."""
    from .. import _common, protoio
    from ..net import Net, plain_nets
    param = protoio.read_net_param(net_file)
    if input_shapes:
        _set_input_shapes(param, input_shapes)
    with plain_nets():
        net = Net(param, _common.TEST if phase is None else phase)
    return summarize(net)


def _human(n, unit=""):
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return "%.2f%s%s" % (n / scale, suffix, unit)
    return "%d%s" % (n, unit)


def _axes(values, fmt):
    vals = [fmt % v for v in values]
    return vals[0] if len(set(vals)) == 1 else "x".join(vals)


def format_summary(rows):
    header = ("layer", "type", "top shape", "params", "MACs", "memory", "rf", "jump", "start")
    body = []
    for r in rows:
        shapes = ", ".join("x".join(str(d) for d in s) for s in r.top_shapes)
        f = next((x for x in r.fields if x is not None), None)
        rf = (_axes(f.size, "%g"), _axes(f.jump, "%g"), _axes(f.start, "%g")) if f else \
            ("-", "-", "-")
        body.append((r.name, r.type, shapes, _human(r.params), _human(r.macs),
                     _human(r.memory, "B")) + rf + ((" " + r.note,) if r.note else ()))
    total = ("total", "", "", _human(sum(r.params for r in rows)),
             _human(sum(r.macs for r in rows)), _human(sum(r.memory for r in rows), "B"),
             "", "", "")
    widths = [max(len(h), max([len(b[i]) for b in body + [total]] or [0]))
              for i, h in enumerate(header)]

    def line(cells):
        out = "  ".join(c.ljust(w) for c, w in zip(cells, widths))
        return (out + "".join(cells[len(widths):])).rstrip()

    lines = [line(header), "  ".join("-" * w for w in widths)]
    lines += [line(b) for b in body]
    lines += ["  ".join("-" * w for w in widths), line(total)]
    exact = "params %d, multiply-adds %d, activation memory %d bytes" % (
        sum(r.params for r in rows), sum(r.macs for r in rows), sum(r.memory for r in rows))
    lines.append(exact)
    return "\n".join(lines)


def _parse_shape(text):
    try:
        return [int(x) for x in text.replace("x", ",").split(",") if x.strip()]
    except ValueError:
        raise ValueError("bad input shape %r: expected comma-separated integers like "
                         "1,3,224,224" % text) from None


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m caffe.tools.summary",
                                 description="Per-layer shapes, params, MACs, memory and "
                                             "receptive fields of a net.")
    ap.add_argument("prototxt")
    ap.add_argument("-i", "--input-shape", action="append", default=[],
                    help="shape of the next Input top, e.g. 1,3,224,224 (repeatable)")
    args = ap.parse_args(argv)
    try:
        rows = summary(args.prototxt, [_parse_shape(s) for s in args.input_shape])
    except Exception as exc:
        from ..protoio import CaffeFileError
        if isinstance(exc, (CaffeFileError, ValueError, OSError)):
            sys.stderr.write("summary: %s\n" % exc)
            return 1
        raise
    print(format_summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
