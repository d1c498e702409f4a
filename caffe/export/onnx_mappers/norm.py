"""BatchNormalization, InstanceNormalization, LayerNormalization."""
from ..mappers import norm as aten_norm
from . import ONNX


@ONNX.register("BatchNormalization")
def batch_norm(ctx, node):
    if node.attrs.get("training_mode", 0):
        ctx.refuse("BatchNormalization in training mode")
    x, scale, bias, mean, var = node.inputs[:5]
    aten_norm._batch_norm(ctx, x, scale, bias, mean, var, float(node.attrs.get("epsilon", 1e-5)))


@ONNX.register("InstanceNormalization")
def instance_norm(ctx, node):
    x, scale, bias = node.inputs[:3]
    shape = ctx.shape(x)
    out = aten_norm._normalize_rows(ctx, x, [shape[0], shape[1]],
                                    float(node.attrs.get("epsilon", 1e-5)))
    aten_norm._affine(ctx, out, scale, bias, 1, shape)


@ONNX.register("LayerNormalization")
def layer_norm(ctx, node):
    x = node.inputs[0]
    shape = ctx.shape(x)
    ax = int(node.attrs.get("axis", -1))
    ax = ax + len(shape) if ax < 0 else ax
    if ax == 0:
        ctx.refuse("LayerNormalization over the batch axis")
    if len(node.outputs) > 1 and any(node.outputs[1:]):
        ctx.refuse("LayerNormalization's mean / inv-std outputs")
    out = aten_norm._normalize_rows(ctx, x, list(shape[:ax]),
                                    float(node.attrs.get("epsilon", 1e-5)))
    scale = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] else None
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    aten_norm._affine(ctx, out, scale, bias, ax, shape)
