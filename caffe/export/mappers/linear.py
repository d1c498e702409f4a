"""linear / matmul / mm / addmm with a constant weight -> InnerProduct; embedding -> Embed.

A ``flatten`` feeding a linear layer is folded: InnerProduct with axis 1 flattens
a 4-D bottom itself (the Flatten layer is then dropped as unread).
"""
import numpy as np

from ..emitters import inner_product as ip_em
from . import ATEN

_FLATTENS = ("flatten", "view", "reshape", "_unsafe_view")


def _unflattened(ctx, x):
    """The 4-D (or N-D) source of ``x`` when ``x`` only flattens it after the batch axis
    (looking through eval no-ops such as dropout, which share their input's blob)."""
    while (x.op == "call_function" and x.args and hasattr(x.args[0], "op")
           and ctx.blobs.get(x) == ctx.blobs.get(x.args[0])):
        x = x.args[0]
    target = getattr(x.target, "__name__", str(x.target)).split(".")[0]
    if x.op != "call_function" or target not in _FLATTENS:
        return x
    src = x.args[0]
    if not hasattr(src, "op") or src not in ctx.blobs or ctx.is_const(src):
        return x
    s, o = ctx.shape(src), ctx.shape(x)
    if len(s) > 2 and len(o) == 2 and s[0] == o[0] and int(np.prod(s[1:])) == o[1]:
        return src
    return x


def _inner_product(ctx, x, weight, bias):
    rank = len(ctx.shape(x))
    if rank < 2:
        ctx.refuse("a linear layer on a %d-D tensor (Caffe blobs have a batch axis)" % rank)
    src = _unflattened(ctx, x) if rank == 2 else x
    ip_em.inner_product(ctx.net, ctx.name(), ctx.bottom(src), ctx.top(), weight, bias,
                        axis=1 if src is not x else rank - 1)
    ctx.produce(ctx.top())


@ATEN.register("linear")
def linear(ctx, node):
    a = ctx.args()
    bias = ctx.const(a["bias"]) if a["bias"] is not None else None
    _inner_product(ctx, a["input"], ctx.const(a["weight"]), bias)


@ATEN.register("matmul", "mm")
def matmul(ctx, node):
    x, w = node.args[0], node.args[1]
    if ctx.is_const(x) or not ctx.is_const(w) or ctx.const(w).ndim != 2:
        ctx.refuse("matmul maps to InnerProduct only as tensor @ constant 2-D matrix")
    _inner_product(ctx, x, ctx.const(w).T.copy(), None)


@ATEN.register("addmm")
def addmm(ctx, node):
    a = ctx.args()
    if float(a.get("beta", 1)) != 1 or float(a.get("alpha", 1)) != 1:
        ctx.refuse("addmm with alpha/beta")
    bias, x, w = a["self"], a["mat1"], a["mat2"]
    if not (ctx.is_const(bias) and ctx.is_const(w)) or ctx.is_const(x):
        ctx.refuse("addmm maps to InnerProduct only as constant + tensor @ constant")
    _inner_product(ctx, x, ctx.const(w).T.copy(), ctx.const(bias).reshape(-1))


@ATEN.register("embedding")
def embedding(ctx, node):
    a = ctx.args()
    weight = ctx.const(a["weight"])
    ip_em.embed(ctx.net, ctx.name(), ctx.bottom(a["indices"]), ctx.top(), weight)
    ctx.produce(ctx.top())
