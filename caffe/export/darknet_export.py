"""Darknet -> Caffe: parse the cfg, read the weights in file order, map each
section, write, and verify every layer against OpenCV's independent Darknet
reader (``cv2.dnn.readNetFromDarknet``)."""
import numpy as np

from .. import verification
from . import darknet_cfg
from . import verify as verify_mod
from .builder import NetBuilder, TargetError
from .darknet_context import DarknetContext
from .darknet_mappers import SECTIONS
from .emitters import input as input_em
from .errors import ExportError, VerificationError
from .report import ExportReport


def export(cfg, weights, prototxt, caffemodel=None, *, target="bvlc", verify=True, rtol=1e-4,
           inputs=None, batch=1):
    net_section, sections = darknet_cfg.parse_cfg(cfg)
    c = net_section.get("channels", 3, int)
    h = net_section.get("height", 416, int)
    w = net_section.get("width", 416, int)
    header, reader = None, None
    if weights:
        header, floats = darknet_cfg.read_weights(weights)
        reader = darknet_cfg.WeightReader(floats, weights)
    net = NetBuilder(net_section.options.get("name", "darknet"), target)
    ctx = DarknetContext(net, cfg, reader, c, h, w)
    ctx.input_shape = (batch, c, h, w)
    input_em.input_layer(net, "data", "data", ctx.input_shape)
    for s in sections:
        ctx.node = s
        mapper = SECTIONS.get(s.kind)
        if mapper is None:
            ctx.refuse("no Caffe mapping for this section (supported: %s)" % ", ".join(
                SECTIONS.names()))
        try:
            mapper(ctx, s)
        except TargetError as exc:
            ctx.refuse(str(exc))
        if len(ctx.outputs) != s.index + 1:
            raise ExportError("internal: section %d produced no blob" % s.index)
    if reader is not None and reader.pos != reader.floats.size:
        raise ExportError("%s has %d floats left after the last layer: the cfg does not match "
                          "the weights" % (weights, reader.floats.size - reader.pos))
    finals = [b for b, _ in ctx.finals] or [ctx.outputs[-1]]
    net.outputs = finals
    net.prune()
    net.write(prototxt, caffemodel if weights else None)
    report = ExportReport(str(prototxt), str(caffemodel) if weights else None, target, ["data"],
                          finals, len(net.layers), header=header,
                          layer_weights=ctx.layer_weights)
    if verify and weights:
        x = inputs if inputs is not None else np.random.RandomState(0).rand(
            *ctx.input_shape).astype(np.float32)
        expected = opencv_layer_outputs(cfg, weights, x, len(sections))
        expected = {i: v for i, v in expected.items()
                    if sections[i].kind not in ("yolo", "region")}   # OpenCV decodes these
        names = {i: ctx.outputs[i] for i in expected}
        caffe_net = verify_mod.run_caffe(prototxt, caffemodel, {"data": x})
        rows = []
        for i, ref in expected.items():
            blob = names[i]
            got = caffe_net.blobs[blob].data if blob in caffe_net.blobs else {}
            row = verification.compare_named({"%d:%s" % (i, blob): ref},
                                             {"%d:%s" % (i, blob): got} if blob in
                                             caffe_net.blobs else {})[0]
            rows.append(row)
        rows += _compare_decoded(cfg, weights, x, caffe_net, ctx.finals)
        report.rows, report.rtol, report.verified = rows, rtol, True
        out_rows = [r for r in rows if r.name.split(":", 1)[1].split("/")[0] in finals]
        report.outputs = [r.name for r in out_rows] or report.outputs
        report.ok = verification.verdict(rows, rtol, names=[r.name for r in out_rows])
        if not report.ok:
            raise VerificationError("the Caffe net does not reproduce OpenCV's Darknet reader "
                                    "within rtol %g:\n%s" % (rtol, report.table), report)
    return report


def _compare_decoded(cfg, weights, x, caffe_net, finals):
    """Rows for our Yolo / Region tops against OpenCV's decoded outputs (in order).
    OpenCV runs NMS inside its region layer, so for Region only the boxes and the
    objectness (columns 0-4) are compared."""
    import cv2
    ours = [(b, s) for b, s in finals if b == "%s_%d" % (s.kind, s.index)]   # decoded tops
    if not ours:
        return []
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    names = [n for n in net.getLayerNames() if n.startswith(("yolo", "detection_out"))]
    net.setInput(np.ascontiguousarray(x, dtype=np.float32))
    outs = net.forward(names)
    rows = []
    for (blob, s), ref in zip(ours, outs):
        ref = np.asarray(ref)
        got = caffe_net.blobs[blob].data.reshape(ref.shape)
        if s.kind == "region":
            ref, got, blob = ref[:, :5], got[:, :5], blob + "/boxes"
        rows += verification.compare_named({"%d:%s" % (s.index, blob): ref},
                                           {"%d:%s" % (s.index, blob): got})
    return rows


_OPENCV_SUBLAYERS = ("bn", "leaky", "relu", "relu6", "mish", "swish", "logistic", "sigmoid",
                     "tanh", "elu", "selu", "gelu", "hardswish", "hardsigmoid")


def opencv_layer_outputs(cfg, weights, x, count):
    """{darknet layer index: output} from OpenCV's Darknet importer.  OpenCV splits a
    layer into e.g. conv_7, bn_7, leaky_8 (activations carry the next number), so
    layers are grouped by their primary name and the group's last layer is taken."""
    try:
        import cv2
    except ImportError as exc:
        raise ExportError("verification needs OpenCV 4 (opencv-python-headless<5) for its "
                          "independent Darknet reader; pass verify=False to skip") from exc
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        raise ExportError("cv2 %s has no readNetFromDarknet; install opencv-python-headless<5 "
                          "or pass verify=False" % cv2.__version__)
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    net.enableFusion(False)   # every layer's own output, not a fused one
    last, current = {}, None
    for name in net.getLayerNames():
        prefix, _, number = name.rpartition("_")
        if not number.isdigit():
            continue
        if prefix not in _OPENCV_SUBLAYERS:
            current = int(number)
        if current is not None and current < count and not prefix.startswith(
                ("yolo", "region")):
            last[current] = name
    wanted = sorted(last)
    net.setInput(np.ascontiguousarray(x, dtype=np.float32))
    outs = net.forward([last[i] for i in wanted])
    return {i: np.asarray(o) for i, o in zip(wanted, outs)}
