"""conv1d/2d/3d, conv_transpose*, aten.convolution -> Convolution / Deconvolution."""
from ..emitters import conv as conv_em
from . import ATEN
from ._util import ints, slice_keep


def fold_pad(ctx, x, pad, what):
    """If ``x`` is a pending zero ``F.pad``, add it to ``pad`` and read its source."""
    pending = ctx.pending.get(x)
    if pending is None:
        return x, pad
    if pending.value != 0:
        ctx.refuse("F.pad with value %r before a %s cannot be folded (Caffe pads with "
                   "zeros)" % (pending.value, what))
    pads = pending.pads[-len(pad):]
    if len(pending.pads) > len(pad) and any(p != (0, 0) for p in pending.pads[:-len(pad)]):
        ctx.refuse("F.pad pads a non-spatial axis; only spatial padding folds into a %s" % what)
    if any(b != a for b, a in pads):
        ctx.refuse("asymmetric F.pad %s cannot be folded into a %s (Caffe pads both sides "
                   "equally)" % (pending.pads, what))
    return pending.source, [p + b for p, (b, _) in zip(pad, pads)]


def _spatial_padding(ctx, padding, weight_shape, dilation):
    nd = len(weight_shape) - 2
    if isinstance(padding, str):
        if padding == "valid":
            return [0] * nd
        pads = []
        for k, d in zip(weight_shape[2:], dilation):
            total = d * (k - 1)
            if total % 2:
                ctx.refuse("padding='same' with an even kernel pads one side more; Caffe "
                           "pads both sides equally")
            pads.append(total // 2)
        return pads
    return ints(padding, nd)


@ATEN.register("conv1d", "conv2d", "conv3d")
def conv(ctx, node):
    a = ctx.args()
    weight = ctx.const(a["weight"])
    nd = weight.ndim - 2
    bias = ctx.const(a["bias"]) if a["bias"] is not None else None
    dilation = ints(a["dilation"], nd)
    pad = _spatial_padding(ctx, a["padding"], weight.shape, dilation)
    x, pad = fold_pad(ctx, a["input"], pad, "convolution")
    conv_em.convolution(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), weight, bias,
                        ints(a["stride"], nd), pad, dilation, int(a["groups"]))
    ctx.produce(ctx.top())


def _transposed(ctx, x, weight, bias, stride, pad, output_padding, groups, dilation):
    nd = weight.ndim - 2
    stride, pad = ints(stride, nd), ints(pad, nd)
    output_padding, dilation = ints(output_padding, nd), ints(dilation, nd)
    for p, op in zip(pad, output_padding):
        if op > p:
            ctx.refuse("output_padding %s larger than padding %s: Caffe's Deconvolution "
                       "cannot add rows at the end" % (output_padding, pad))
    # Deconvolution with pad (p - op) gives op extra rows at the start; slice them off.
    caffe_pad = [p - op for p, op in zip(pad, output_padding)]
    top = ctx.top()
    raw = top if not any(output_padding) else top + "/full"
    conv_em.convolution(ctx.net, ctx.name(), ctx.bottom(x), raw, weight, bias, stride,
                        caffe_pad, dilation, int(groups), transposed=True)
    cur = list(ctx.shape(ctx.node))
    for i, op in enumerate(output_padding):
        cur[2 + i] += op
    blob = raw
    for i, op in enumerate(output_padding):
        if op:
            ax = 2 + i
            last = all(not o for o in output_padding[i + 1:])
            out = top if last else "%s/crop%d" % (top, ax)
            blob = slice_keep(ctx, blob, cur, ax, op, cur[ax], out, ctx.name("crop%d" % ax))
            cur[ax] -= op
    ctx.produce(top)


@ATEN.register("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def conv_transpose(ctx, node):
    a = ctx.args()
    bias = ctx.const(a["bias"]) if a["bias"] is not None else None
    _transposed(ctx, a["input"], ctx.const(a["weight"]), bias, a["stride"], a["padding"],
                a["output_padding"], a["groups"], a["dilation"])


@ATEN.register("convolution", "_convolution")
def convolution(ctx, node):
    a = ctx.args()
    weight = ctx.const(a["weight"])
    bias = ctx.const(a["bias"]) if a["bias"] is not None else None
    if a["transposed"]:
        _transposed(ctx, a["input"], weight, bias, a["stride"], a["padding"],
                    a["output_padding"], a["groups"], a["dilation"])
        return
    nd = weight.ndim - 2
    x, pad = fold_pad(ctx, a["input"], ints(a["padding"], nd), "convolution")
    conv_em.convolution(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), weight, bias,
                        ints(a["stride"], nd), pad, ints(a["dilation"], nd), int(a["groups"]))
    ctx.produce(ctx.top())
