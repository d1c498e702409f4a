"""Conv, ConvTranspose -> Convolution / Deconvolution; Gemm, MatMul -> InnerProduct."""
from ..emitters import conv as conv_em
from ..emitters import inner_product as ip_em
from ..mappers.conv import _transposed, fold_pad
from . import ONNX


def spatial_pads(ctx, node, nd):
    """ONNX pads (begin..., end...) as one symmetric pad per axis, or a refusal."""
    auto = node.attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID"):
        ctx.refuse("auto_pad=%s (give explicit pads)" % auto)
    pads = list(node.attrs.get("pads", [0] * (2 * nd)))
    begin, end = pads[:nd], pads[nd:]
    return begin, end


@ONNX.register("Conv")
def conv(ctx, node):
    weight = ctx.const(node.inputs[1])
    nd = weight.ndim - 2
    bias = ctx.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    begin, end = spatial_pads(ctx, node, nd)
    if begin != end:
        ctx.refuse("asymmetric pads %s (Caffe pads both sides equally)" % (begin + end))
    x, pad = fold_pad(ctx, node.inputs[0], begin, "convolution")
    conv_em.convolution(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), weight, bias,
                        node.attrs.get("strides", [1] * nd), pad,
                        node.attrs.get("dilations", [1] * nd), int(node.attrs.get("group", 1)))
    ctx.produce(ctx.top())


@ONNX.register("ConvTranspose")
def conv_transpose(ctx, node):
    weight = ctx.const(node.inputs[1])
    nd = weight.ndim - 2
    bias = ctx.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if "output_shape" in node.attrs:
        ctx.refuse("output_shape (give pads and output_padding)")
    begin, end = spatial_pads(ctx, node, nd)
    if begin != end:
        ctx.refuse("asymmetric pads %s" % (begin + end))
    _transposed(ctx, node.inputs[0], weight, bias, node.attrs.get("strides", [1] * nd), begin,
                node.attrs.get("output_padding", [0] * nd), node.attrs.get("group", 1),
                node.attrs.get("dilations", [1] * nd))


@ONNX.register("Gemm")
def gemm(ctx, node):
    a = node.attrs
    if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0:
        ctx.refuse("Gemm with transA or alpha != 1")
    w = ctx.const(node.inputs[1])
    w = w if a.get("transB", 0) else w.T.copy()
    bias = None
    if len(node.inputs) > 2 and node.inputs[2]:
        bias = ctx.const(node.inputs[2]) * float(a.get("beta", 1.0))
        if bias.size != w.shape[0]:
            ctx.refuse("Gemm bias of shape %s (InnerProduct has one bias per output)" % (
                bias.shape,))
        bias = bias.reshape(-1)
    x = node.inputs[0]
    ip_em.inner_product(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), w, bias, axis=1)
    ctx.produce(ctx.top())


@ONNX.register("MatMul")
def matmul(ctx, node):
    x, w = node.inputs
    if ctx.is_const(x) or not ctx.is_const(w) or ctx.const(w).ndim != 2:
        ctx.refuse("MatMul maps to InnerProduct only as tensor x constant 2-D matrix")
    rank = len(ctx.shape(x))
    ip_em.inner_product(ctx.net, ctx.name(), ctx.bottom(x), ctx.top(), ctx.const(w).T.copy(),
                        None, axis=rank - 1)
    ctx.produce(ctx.top())
