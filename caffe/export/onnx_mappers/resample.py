"""Resize / Upsample (nearest or linear by an integer factor) and Pad (folded)."""
from ..context import PendingPad
from ..mappers import resample as aten_rs
from . import ONNX


def _mode(node):
    m = node.attrs.get("mode", b"nearest")
    return m.decode() if isinstance(m, bytes) else m


@ONNX.register("Resize", "Upsample")
def resize(ctx, node):
    x = node.inputs[0]
    s_in, s_out = ctx.shape(x), ctx.shape(ctx.node)
    if len(s_in) != 4 or s_in[:2] != s_out[:2]:
        ctx.refuse("resizing other than the H, W axes of a 4-D tensor")
    factors = []
    for i in (2, 3):
        if s_out[i] % s_in[i]:
            ctx.refuse("resizing %s to %s is not by an integer factor" % (s_in[2:], s_out[2:]))
        factors.append(s_out[i] // s_in[i])
    mode = _mode(node)
    ctm = node.attrs.get("coordinate_transformation_mode", b"half_pixel")
    ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
    if mode == "nearest":
        aten_rs.nearest(ctx, x, s_in, factors)
    elif mode == "linear" and (node.op_type == "Resize" and ctm in ("half_pixel",
                                                                      "pytorch_half_pixel")):
        aten_rs.bilinear(ctx, x, s_in, factors)
    else:
        ctx.refuse("%s resize with coordinate_transformation_mode %s (only nearest, and "
                   "linear with half_pixel, map to a Deconvolution)" % (mode, ctm))


@ONNX.register("Pad")
def pad(ctx, node):
    mode = node.attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        ctx.refuse("%s padding (only zero padding folds into Caffe's conv / pool)" % mode)
    pads = node.attrs.get("pads")
    if pads is None:
        pads = [int(v) for v in ctx.const(node.inputs[1])]
    value = 0.0
    if len(node.inputs) > 2 and node.inputs[2]:
        value = float(ctx.const(node.inputs[2]).reshape(-1)[0])
    value = float(node.attrs.get("value", value))
    n = len(pads) // 2
    if any(p < 0 for p in pads):
        ctx.refuse("negative pads (cropping)")
    ctx.pending[ctx.node.name] = PendingPad(node.inputs[0], list(zip(pads[:n], pads[n:])), value)
    ctx.dynamic.add(ctx.node.name)
