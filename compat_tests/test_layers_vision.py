"""Vision layers (Convolution, Deconvolution, Im2col, Pooling, LRN, SPP) against
real Caffe's outputs and gradients, numerical gradients, and parameter edge cases."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from golden_cases import run_layer_case
from google.protobuf import text_format
from layer_testing import load_case

from caffe.layers import vision
from caffe.layers.base import LayerError
from caffe.layers.registry import modules
from caffe.proto import caffe_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden", "layers")

CASES = ["conv_1x1", "conv_3d", "conv_basic", "conv_depthwise", "conv_rect_group_nobias",
         "conv_xavier_msra", "deconv_basic", "deconv_bilinear", "deconv_group", "im2col",
         "lrn_across", "lrn_within", "pool_ave_ceil", "pool_ave_global", "pool_ave_pad",
         "pool_max_ceil", "pool_max_global", "pool_max_mask", "pool_max_pad",
         "pool_max_padclip", "spp_max"]

FWD = dict(rtol=1e-4, atol=1e-5)
GRAD = dict(rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _build(layer_param, bottom_shapes, phase=0):
    cls = modules.builtin(layer_param.type)
    return cls(layer_param, bottom_shapes, phase)


def _case_layer(name, load_params=True):
    net, lp, meta, data = load_case(name)
    bottoms = [torch.from_numpy(data["in/" + b]) for b in lp.bottom]
    layer = _build(lp, [tuple(b.shape) for b in bottoms], 0 if meta["phase"] == "TRAIN" else 1)
    if load_params:
        for i, blob in enumerate(layer.blobs):
            blob.data[...] = data["param/%d" % i]
    return layer, lp, meta, data, bottoms


def _lp(text):
    lp = caffe_pb2.LayerParameter()
    text_format.Merge(text, lp)
    return lp


# ---------------------------------------------------------------------------
# golden cases, standalone
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_golden_standalone(name):
    layer, lp, meta, data, bottoms = _case_layer(name)
    params = [b.data_tensor(torch.device("cpu")).clone().requires_grad_(True)
              for b in layer.blobs]
    xs = [b.clone().requires_grad_(True) for b in bottoms]
    tops = layer.run(xs, params)
    assert len(tops) == len(lp.top)
    for t, tname in zip(tops, lp.top):
        want = data["out/" + tname]
        assert tuple(t.shape) == want.shape, tname
        np.testing.assert_allclose(t.detach().numpy(), want, **FWD)
    # shape inference on meta tensors agrees
    assert layer.output_shapes([tuple(b.shape) for b in bottoms]) == \
        [data["out/" + t].shape for t in lp.top]
    # backward: the mask top (Pooling's 2nd) carries no gradient in Caffe
    outs, gouts = [], []
    for t, tname in zip(tops, lp.top):
        if t.requires_grad:
            outs.append(t)
            gouts.append(torch.from_numpy(data["topdiff/" + tname]))
    wrt = xs + params
    grads = torch.autograd.grad(outs, wrt, gouts, allow_unused=True)
    for i, bname in enumerate(lp.bottom):
        g = grads[i] if grads[i] is not None else torch.zeros_like(xs[i])
        np.testing.assert_allclose(g.numpy(), data["diff/" + bname], **GRAD)
    for i in range(len(params)):
        g = grads[len(xs) + i]
        np.testing.assert_allclose(g.numpy(), data["pdiff/%d" % i], **GRAD)


@pytest.mark.parametrize("name", [c for c in CASES
                                  if json.load(open(os.path.join(GOLDEN, c + ".json")))
                                  ["fillers_deterministic"]])
def test_golden_fillers_deterministic(name):
    layer, lp, meta, data, bottoms = _case_layer(name, load_params=False)
    assert len(layer.blobs) == len([k for k in data if k.startswith("param/")])
    for i, blob in enumerate(layer.blobs):
        np.testing.assert_allclose(blob.data, data["param/%d" % i], rtol=1e-6, atol=1e-7)


def _has_params(name):
    model = caffe_pb2.NetParameter()
    with open(os.path.join(GOLDEN, name + ".caffemodel"), "rb") as f:
        model.ParseFromString(f.read())
    return any(l.name == "L" and len(l.blobs) for l in model.layer)


@pytest.mark.parametrize("name", [c for c in CASES if _has_params(c)])
def test_golden_embedded_weights(name):
    """Weights embedded in the LayerParameter (as a caffemodel gives them) are used."""
    _, lp, meta, data = load_case(name)
    model = caffe_pb2.NetParameter()
    with open(os.path.join(GOLDEN, name + ".caffemodel"), "rb") as f:
        model.ParseFromString(f.read())
    src = [l for l in model.layer if l.name == "L"]
    lp = caffe_pb2.LayerParameter()
    lp.CopyFrom(load_case(name)[1])
    lp.blobs.extend(src[0].blobs)
    layer = _build(lp, [data["in/" + b].shape for b in lp.bottom])
    for i, blob in enumerate(layer.blobs):
        np.testing.assert_array_equal(blob.data, data["param/%d" % i])


@pytest.mark.parametrize("name", CASES)
def test_golden_through_net(name):
    run_layer_case(name)


# ---------------------------------------------------------------------------
# numerical gradients (float64)
# ---------------------------------------------------------------------------
def _gradcheck(layer, shapes, seed=0, positive=False, params=True):
    g = torch.Generator().manual_seed(seed)
    xs = []
    for s in shapes:
        x = torch.randn(s, generator=g, dtype=torch.float64)
        if positive:
            x = x.abs() + 0.1
        xs.append(x.requires_grad_(True))
    ps = [torch.randn(tuple(b.shape), generator=g, dtype=torch.float64).requires_grad_(params)
          for b in layer.blobs]
    nx = len(xs)

    def f(*args):
        tops = layer.run(list(args[:nx]), list(args[nx:]))
        return tuple(t for t in tops if t.is_floating_point() and t.requires_grad)

    assert torch.autograd.gradcheck(f, tuple(xs + ps), eps=1e-6, atol=1e-6, rtol=1e-5)


GRADCHECK_LAYERS = {
    "conv": ('name: "c" type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 '
             'pad: 1 stride: 2 }', [(2, 2, 5, 6)]),
    "conv_group_dil_rect": ('name: "c" type: "Convolution" convolution_param { num_output: 4 '
                            'kernel_h: 3 kernel_w: 2 dilation: 2 group: 2 stride_h: 1 stride_w: 2 '
                            'pad_h: 2 pad_w: 1 }', [(1, 4, 7, 6)]),
    "conv_3d": ('name: "c" type: "Convolution" convolution_param { num_output: 2 kernel_size: 2 '
                'kernel_size: 1 kernel_size: 3 pad: 1 }', [(1, 2, 3, 4, 4)]),
    "conv_two_bottoms": ('name: "c" type: "Convolution" convolution_param { num_output: 3 '
                         'kernel_size: 2 }', [(1, 2, 4, 4), (1, 2, 4, 4)]),
    "conv_axis2": ('name: "c" type: "Convolution" convolution_param { num_output: 2 '
                   'kernel_size: 3 axis: 2 }', [(2, 3, 2, 5)]),
    "conv_nd4": ('name: "c" type: "Convolution" convolution_param { num_output: 2 '
                 'kernel_size: 2 group: 2 }', [(1, 2, 3, 3, 3, 3)]),
    "deconv": ('name: "d" type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 3 '
               'stride: 2 pad: 1 group: 2 dilation: 2 }', [(1, 2, 3, 4)]),
    "deconv_3d": ('name: "d" type: "Deconvolution" convolution_param { num_output: 2 '
                  'kernel_size: 2 stride: 2 }', [(1, 2, 2, 3, 2)]),
    "im2col": ('name: "i" type: "Im2col" convolution_param { kernel_size: 3 stride: 2 pad: 1 '
               'dilation: 2 }', [(1, 2, 6, 5)]),
    "im2col_3d": ('name: "i" type: "Im2col" convolution_param { kernel_size: 2 pad: 1 }',
                  [(1, 2, 3, 3, 2)]),
    "pool_max": ('name: "p" type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 '
                 'pad: 1 }', [(2, 2, 7, 6)]),
    "pool_max_bigpad": ('name: "p" type: "Pooling" pooling_param { pool: MAX kernel_size: 3 '
                        'stride: 2 pad: 2 }', [(1, 2, 5, 6)]),
    "pool_ave": ('name: "p" type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 '
                 'pad: 1 }', [(2, 2, 7, 6)]),
    "pool_ave_bigpad": ('name: "p" type: "Pooling" pooling_param { pool: AVE kernel_h: 3 '
                        'kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 2 pad_w: 1 }',
                        [(1, 2, 5, 7)]),
    "pool_ave_global": ('name: "p" type: "Pooling" pooling_param { pool: AVE '
                        'global_pooling: true }', [(2, 3, 4, 5)]),
    "spp": ('name: "s" type: "SPP" spp_param { pyramid_height: 3 }', [(2, 2, 7, 9)]),
    "spp_ave": ('name: "s" type: "SPP" spp_param { pyramid_height: 2 pool: AVE }',
                [(1, 2, 5, 6)]),
    "lrn_across": ('name: "l" type: "LRN" lrn_param { local_size: 3 alpha: 0.7 beta: 0.6 '
                   'k: 2 }', [(2, 5, 3, 3)]),
    "lrn_within": ('name: "l" type: "LRN" lrn_param { local_size: 3 alpha: 0.7 beta: 0.6 '
                   'norm_region: WITHIN_CHANNEL }', [(2, 2, 4, 4)]),
}


@pytest.mark.parametrize("key", sorted(GRADCHECK_LAYERS))
def test_gradcheck(key):
    text, shapes = GRADCHECK_LAYERS[key]
    lp = _lp(text)
    for i in range(len(shapes)):
        lp.bottom.append("b%d" % i)
        lp.top.append("t%d" % i)
    if lp.type in ("Pooling", "SPP", "LRN", "Im2col"):
        del lp.top[1:]
    layer = _build(lp, shapes)
    _gradcheck(layer, shapes)


def test_gradcheck_stochastic_test_phase():
    lp = _lp('name: "p" type: "Pooling" bottom: "b" top: "t" '
             'pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }')
    layer = _build(lp, [(1, 2, 5, 4)], phase=1)
    _gradcheck(layer, [(1, 2, 5, 4)], positive=True)


# ---------------------------------------------------------------------------
# references written independently of the implementation
# ---------------------------------------------------------------------------
def _caffe_pool_ref(x, method, kh, kw, sh, sw, ph, pw, ceil=True):
    """Direct loops over Caffe's pooling definition (numpy, float64)."""
    n, c, H, W = x.shape
    rnd = np.ceil if ceil else np.floor
    oh = int(rnd((H + 2 * ph - kh) / sh)) + 1
    ow = int(rnd((W + 2 * pw - kw) / sw)) + 1
    if ph or pw:
        if (oh - 1) * sh >= H + ph:
            oh -= 1
        if (ow - 1) * sw >= W + pw:
            ow -= 1
    out = np.zeros((n, c, oh, ow))
    mask = np.full((n, c, oh, ow), -1.0)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            if method == "MAX":
                he, we = min(hs + kh, H), min(ws + kw, W)
                hs, ws = max(hs, 0), max(ws, 0)
                for a in range(n):
                    for b in range(c):
                        best, idx = -3.4028234663852886e38, -1
                        for h in range(hs, he):
                            for w in range(ws, we):
                                if x[a, b, h, w] > best:
                                    best, idx = x[a, b, h, w], h * W + w
                        out[a, b, i, j], mask[a, b, i, j] = best, idx
            else:
                he, we = min(hs + kh, H + ph), min(ws + kw, W + pw)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, H), min(we, W)
                with np.errstate(invalid="ignore"):  # an empty window: Caffe gives 0/0
                    out[:, :, i, j] = x[:, :, hs:he, ws:we].sum((2, 3)) / size
    return out, mask


POOL_GEOMS = [
    # kh, kw, sh, sw, ph, pw, H, W
    (3, 3, 2, 2, 0, 0, 7, 7),
    (3, 3, 2, 2, 1, 1, 6, 8),
    (2, 2, 2, 2, 1, 1, 5, 5),
    (3, 3, 2, 2, 2, 2, 5, 6),      # pad > kernel/2: beyond what torch accepts
    (3, 2, 3, 1, 1, 0, 8, 5),      # rectangular
    (1, 1, 2, 2, 0, 0, 6, 6),      # kernel < stride, no pad: Caffe keeps the last window
    (3, 3, 3, 3, 0, 0, 2, 2),      # kernel larger than the input
    (4, 4, 3, 3, 2, 2, 9, 7),
]


# FLOOR rounding with a kernel larger than the padded input has no output: not a case.
@pytest.mark.parametrize("geom,round_mode",
                         [(g, r) for g in POOL_GEOMS for r in ("CEIL", "FLOOR")
                          if not (r == "FLOOR" and g[7 - 1] + 2 * g[4] < g[0])])
@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_pooling_against_loops(geom, method, round_mode):
    kh, kw, sh, sw, ph, pw, H, W = geom
    lp = _lp('name: "p" type: "Pooling" bottom: "b" top: "t" %s pooling_param { pool: %s '
             'kernel_h: %d kernel_w: %d stride_h: %d stride_w: %d pad_h: %d pad_w: %d '
             'round_mode: %s }' % ('top: "m"' if method == "MAX" else "", method,
                                   kh, kw, sh, sw, ph, pw, round_mode))
    layer = _build(lp, [(2, 3, H, W)])
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    want, wmask = _caffe_pool_ref(x.double().numpy(), method, kh, kw, sh, sw, ph, pw,
                                  ceil=round_mode == "CEIL")
    tops = layer.run([x], [])
    np.testing.assert_allclose(tops[0].numpy(), want, rtol=1e-5, atol=1e-6)
    if method == "MAX":
        np.testing.assert_array_equal(tops[1].numpy(), wmask)
    assert layer.output_shapes([(2, 3, H, W)])[0] == want.shape


def test_max_pool_first_max_wins_in_backward():
    lp = _lp('name: "p" type: "Pooling" bottom: "b" top: "t" top: "m" '
             'pooling_param { pool: MAX kernel_size: 2 stride: 1 }')
    layer = _build(lp, [(1, 1, 2, 3)])
    x = torch.tensor([[[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]]], requires_grad=True)
    y, m = layer.run([x], [])
    np.testing.assert_array_equal(m.numpy().ravel(), [0, 1])
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
    np.testing.assert_array_equal(g.numpy().ravel(), [1, 1, 0, 0, 0, 0])
    # the same with explicit padding beyond kernel/2 (the non-native path)
    lp = _lp('name: "p" type: "Pooling" bottom: "b" top: "t" '
             'pooling_param { pool: MAX kernel_size: 3 stride: 3 pad: 2 }')
    layer = _build(lp, [(1, 1, 2, 3)])
    (y,) = layer.run([x], [])
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert g.sum().item() == y.numel()
    assert g[0, 0, 0, 0].item() >= 1


def test_stochastic_pooling():
    lp = _lp('name: "p" type: "Pooling" bottom: "b" top: "t" '
             'pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 }')
    x = torch.rand(2, 3, 7, 6) + 0.01
    # TEST: probability-weighted average over the (clipped) window
    test_layer = _build(lp, [tuple(x.shape)], phase=1)
    (y,) = test_layer.run([x], [])
    assert tuple(y.shape) == (2, 3, 3, 3)
    xn = x.double().numpy()
    for i in range(3):
        for j in range(3):
            win = xn[:, :, 2 * i:min(2 * i + 3, 7), 2 * j:min(2 * j + 3, 6)]
            want = (win ** 2).sum((2, 3)) / win.sum((2, 3))
            np.testing.assert_allclose(y[:, :, i, j].numpy(), want, rtol=1e-5)
    # TRAIN: every output is one of its window's values, drawn from torch's RNG
    train_layer = _build(lp, [tuple(x.shape)], phase=0)
    torch.manual_seed(3)
    xg = x.clone().requires_grad_(True)
    (y1,) = train_layer.run([xg], [])
    for i in range(3):
        for j in range(3):
            win = xn[:, :, 2 * i:min(2 * i + 3, 7), 2 * j:min(2 * j + 3, 6)].reshape(2, 3, -1)
            got = y1[:, :, i, j].detach().numpy()[..., None]
            assert (np.abs(win - got) < 1e-7).any(-1).all()
    (g,) = torch.autograd.grad(y1, xg, torch.ones_like(y1))
    assert abs(g.sum().item() - y1.numel()) < 1e-6
    torch.manual_seed(3)
    (y2,) = train_layer.run([x], [])
    assert torch.equal(y1.detach(), y2)
    # sampling follows the values: a window with one non-zero cell always picks it
    z = torch.zeros(1, 1, 2, 2)
    z[0, 0, 1, 0] = 5.0
    lp2 = _lp('name: "p" type: "Pooling" bottom: "b" top: "t" '
              'pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }')
    for _ in range(5):
        assert _build(lp2, [(1, 1, 2, 2)]).run([z], [])[0].item() == 5.0


def test_stochastic_sampling_frequencies():
    lp = _lp('name: "p" type: "Pooling" bottom: "b" top: "t" '
             'pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }')
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2).expand(1, 4000, 2, 2).contiguous()
    torch.manual_seed(0)
    (y,) = _build(lp, [tuple(x.shape)]).run([x], [])
    freq = [(y == v).float().mean().item() for v in (1.0, 2.0, 3.0, 4.0)]
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.03)


def test_conv_matches_im2col_gemm():
    """Convolution with groups, dilation, rectangular geometry equals im2col + GEMM."""
    lp = _lp('name: "c" type: "Convolution" bottom: "b" top: "t" convolution_param { '
             'num_output: 6 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2 '
             'dilation: 2 group: 3 }')
    layer = _build(lp, [(2, 3, 9, 7)])
    ic = _build(_lp('name: "i" type: "Im2col" bottom: "b" top: "t" convolution_param { '
                    'kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2 '
                    'dilation: 2 }'), [(2, 1, 9, 7)])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 7, generator=g, dtype=torch.float64)
    w = torch.randn(6, 1, 3, 2, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    (y,) = layer.run([x], [w, b])
    for grp in range(3):
        (cols,) = ic.run([x[:, grp:grp + 1]], [])
        want = torch.einsum("ok,nkhw->nohw", w[2 * grp:2 * grp + 2].reshape(2, -1), cols) \
            + b[2 * grp:2 * grp + 2].view(1, -1, 1, 1)
        torch.testing.assert_close(y[:, 2 * grp:2 * grp + 2], want)
    assert tuple(y.shape) == (2, 6, 4, 9)


def test_conv_3d_and_nd_shapes():
    lp = _lp('name: "c" type: "Convolution" bottom: "b" top: "t" convolution_param { '
             'num_output: 2 kernel_size: 3 kernel_size: 1 kernel_size: 2 stride: 1 stride: 2 '
             'stride: 1 pad: 1 pad: 0 pad: 0 }')
    layer = _build(lp, [(1, 3, 4, 5, 6)])
    assert layer.blobs[0].shape == [2, 3, 3, 1, 2]
    assert layer.output_shapes([(1, 3, 4, 5, 6)]) == [(1, 2, 4, 3, 5)]
    # 4 spatial axes: generic path agrees with summing 3-D convs
    lp = _lp('name: "c" type: "Convolution" bottom: "b" top: "t" convolution_param { '
             'num_output: 2 kernel_size: 2 }')
    layer = _build(lp, [(1, 1, 3, 3, 3, 3)])
    x = torch.randn(1, 1, 3, 3, 3, 3, dtype=torch.float64)
    w = torch.randn(2, 1, 2, 2, 2, 2, dtype=torch.float64)
    b = torch.zeros(2, dtype=torch.float64)
    (y,) = layer.run([x], [w, b])
    want = torch.zeros(1, 2, 2, 2, 2, 2, dtype=torch.float64)
    for o in range(2):
        for d0 in range(2):
            want[:, :, o] += F.conv3d(x[:, :, o + d0], w[:, :, d0])
    torch.testing.assert_close(y, want)
    # 0 spatial axes (axis = last): an inner product
    lp = _lp('name: "c" type: "Convolution" bottom: "b" top: "t" convolution_param { '
             'num_output: 4 axis: -1 }')
    layer = _build(lp, [(5, 6)])
    assert layer.blobs[0].shape == [4, 6]
    x = torch.randn(5, 6)
    w = torch.randn(4, 6)
    b = torch.randn(4)
    (y,) = layer.run([x], [w, b])
    torch.testing.assert_close(y, x @ w.t() + b)


def test_conv_axis_and_force_nd():
    lp = _lp('name: "c" type: "Convolution" bottom: "b" top: "t" convolution_param { '
             'num_output: 3 kernel_size: 2 axis: 2 force_nd_im2col: true }')
    layer = _build(lp, [(2, 4, 5, 6)])
    assert layer.blobs[0].shape == [3, 5, 2]
    x = torch.randn(2, 4, 5, 6)
    w, b = torch.randn(3, 5, 2), torch.randn(3)
    (y,) = layer.run([x], [w, b])
    want = F.conv1d(x.reshape(8, 5, 6), w, b).reshape(2, 4, 3, 5)
    torch.testing.assert_close(y, want)


def test_deconv_shapes_and_adjoint():
    lp = _lp('name: "d" type: "Deconvolution" bottom: "b" top: "t" convolution_param { '
             'num_output: 4 kernel_h: 4 kernel_w: 3 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0 '
             'dilation: 1 group: 2 bias_term: false }')
    layer = _build(lp, [(1, 2, 5, 4)])
    assert layer.blobs[0].shape == [2, 2, 4, 3]
    assert len(layer.blobs) == 1
    # out = stride*(in-1) + dilation*(k-1)+1 - 2*pad
    assert layer.output_shapes([(1, 2, 5, 4)]) == [(1, 4, 2 * 4 + 4 - 2, 3 * 3 + 3)]
    # deconvolution is the adjoint of the convolution with the same weights
    conv = _build(_lp('name: "c" type: "Convolution" bottom: "b" top: "t" convolution_param { '
                      'num_output: 2 kernel_h: 4 kernel_w: 3 stride_h: 2 stride_w: 3 pad_h: 1 '
                      'pad_w: 0 group: 2 bias_term: false }'), [(1, 4, 10, 12)])
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 2, 4, 3, generator=g, dtype=torch.float64)
    x = torch.randn(1, 2, 5, 4, generator=g, dtype=torch.float64)
    z = torch.randn(1, 4, 10, 12, generator=g, dtype=torch.float64)
    (dx,) = layer.run([x], [w])
    (cz,) = conv.run([z], [w])
    torch.testing.assert_close((dx * z).sum(), (x * cz).sum())


def test_bilinear_deconv_upsamples():
    lp = _lp('name: "up" type: "Deconvolution" bottom: "b" top: "t" convolution_param { '
             'num_output: 2 kernel_size: 4 stride: 2 pad: 1 group: 2 bias_term: false '
             'weight_filler { type: "bilinear" } }')
    layer = _build(lp, [(1, 2, 4, 4)])
    x = torch.ones(1, 2, 4, 4)
    y = layer(x)
    assert tuple(y.shape) == (1, 2, 8, 8)
    # interior of a constant image stays constant
    np.testing.assert_allclose(y[:, :, 1:-1, 1:-1].detach().numpy(), 1.0, rtol=1e-6)


def test_lrn_formulas():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 4, 5, generator=g, dtype=torch.float64)
    n, alpha, beta, k = 5, float(np.float32(0.3)), 0.75, 2.0  # proto floats are float32
    layer = _build(_lp('name: "l" type: "LRN" bottom: "b" top: "t" lrn_param { local_size: 5 '
                       'alpha: 0.3 beta: 0.75 k: 2 }'), [tuple(x.shape)])
    (y,) = layer.run([x], [])
    xn = x.numpy()
    scale = np.full_like(xn, k)
    for c in range(6):
        for cc in range(max(0, c - 2), min(6, c + 3)):
            scale[:, c] += alpha / n * xn[:, cc] ** 2
    np.testing.assert_allclose(y.numpy(), xn * scale ** -beta, rtol=1e-10)
    torch.testing.assert_close(y, F.local_response_norm(x, n, alpha, beta, k))
    # WITHIN_CHANNEL: k is ignored, divisor local_size^2 counting padded cells
    layer = _build(_lp('name: "l" type: "LRN" bottom: "b" top: "t" lrn_param { local_size: 3 '
                       'alpha: 0.3 beta: 0.75 k: 2 norm_region: WITHIN_CHANNEL }'),
                   [tuple(x.shape)])
    (y,) = layer.run([x], [])
    padded = np.pad(xn ** 2, ((0, 0), (0, 0), (1, 1), (1, 1)))
    s = np.zeros_like(xn)
    for i in range(3):
        for j in range(3):
            s += padded[:, :, i:i + 4, j:j + 5]
    np.testing.assert_allclose(y.numpy(), xn * (1 + alpha * s / 9) ** -beta, rtol=1e-10)


def test_spp_levels_and_height_one():
    lp = _lp('name: "s" type: "SPP" bottom: "b" top: "t" spp_param { pyramid_height: 3 }')
    layer = _build(lp, [(2, 3, 10, 13)])
    assert layer.output_shapes([(2, 3, 10, 13)]) == [(2, 3 * (1 + 4 + 16))]
    x = torch.randn(2, 3, 10, 13)
    (y,) = layer.run([x], [])
    np.testing.assert_allclose(y[:, :3].numpy(), x.amax((2, 3)).numpy())
    # level 1: kernel ceil(10/2)=5, ceil(13/2)=7, pad (0, 1)
    want, _ = _caffe_pool_ref(x.double().numpy(), "MAX", 5, 7, 5, 7, 0, 1)
    np.testing.assert_allclose(y[:, 3:15].numpy(), want.reshape(2, -1), rtol=1e-6)
    # pyramid_height 1 keeps the 4-D pooling output (Caffe's SPP special case)
    layer = _build(_lp('name: "s" type: "SPP" bottom: "b" top: "t" spp_param { '
                       'pyramid_height: 1 pool: AVE }'), [(2, 3, 10, 13)])
    (y,) = layer.run([x], [])
    assert tuple(y.shape) == (2, 3, 1, 1)
    np.testing.assert_allclose(y.numpy()[:, :, 0, 0], x.mean((2, 3)).numpy(), rtol=1e-5)


def test_pool_reshape_changes_geometry():
    lp = _lp('name: "p" type: "Pooling" bottom: "b" top: "t" pooling_param { pool: AVE '
             'global_pooling: true }')
    layer = _build(lp, [(1, 2, 4, 4)])
    x = torch.randn(1, 2, 7, 3)
    (y,) = layer.run([x], [])
    assert tuple(y.shape) == (1, 2, 1, 1)
    np.testing.assert_allclose(y.numpy()[..., 0, 0], x.mean((2, 3)).numpy(), rtol=1e-5)


def test_layers_run_on_meta_and_float64():
    for key, (text, shapes) in GRADCHECK_LAYERS.items():
        lp = _lp(text)
        for i in range(len(shapes)):
            lp.bottom.append("b%d" % i)
            lp.top.append("t%d" % i)
        if lp.type in ("Pooling", "SPP", "LRN", "Im2col"):
            del lp.top[1:]
        layer = _build(lp, shapes)
        meta = layer.output_shapes(shapes)
        tops = layer.run([torch.randn(s, dtype=torch.float64) for s in shapes],
                         [torch.randn(tuple(b.shape), dtype=torch.float64) for b in layer.blobs])
        assert [tuple(t.shape) for t in tops] == meta, key
        assert all(t.dtype == torch.float64 for t in tops)


# ---------------------------------------------------------------------------
# invalid parameters
# ---------------------------------------------------------------------------
BAD = [
    ('type: "Convolution" convolution_param { num_output: 2 }', (1, 3, 5, 5),
     "convolution_param.kernel_size"),
    ('type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 group: 2 }',
     (1, 4, 5, 5), "convolution_param.num_output"),
    ('type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 group: 2 }',
     (1, 3, 5, 5), "convolution_param.group"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 kernel_h: 3 '
     'kernel_w: 3 }', (1, 3, 5, 5), "convolution_param.kernel_size"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_h: 3 kernel_w: 3 }',
     (1, 3, 5, 5, 5), "convolution_param.kernel_h"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_h: 3 }', (1, 3, 5, 5),
     "convolution_param.kernel_size"),
    ('type: "Convolution" convolution_param { kernel_size: 3 }', (1, 3, 5, 5),
     "convolution_param.num_output"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 kernel_size: 3 }',
     (1, 3, 5, 5, 5), "convolution_param.kernel_size"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 stride: 0 }',
     (1, 3, 5, 5), "convolution_param.stride"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 pad: 1 pad_h: 1 }',
     (1, 3, 5, 5), "convolution_param.pad"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 dilation: 1 '
     'dilation: 1 dilation: 1 }', (1, 3, 5, 5), "convolution_param.dilation"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 axis: 4 }',
     (1, 3, 5, 5), "convolution_param.axis"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 9 }', (1, 3, 5, 5),
     "convolution_param.kernel_size"),
    ('type: "Deconvolution" convolution_param { num_output: 3 kernel_size: 2 group: 2 }',
     (1, 4, 5, 5), "convolution_param.num_output"),
    ('type: "Deconvolution" convolution_param { num_output: 2 }', (1, 4, 5, 5),
     "convolution_param.kernel_size"),
    ('type: "Im2col" convolution_param { stride: 2 }', (1, 3, 5, 5),
     "convolution_param.kernel_size"),
    ('type: "Pooling" pooling_param { pool: MAX }', (1, 3, 5, 5), "pooling_param.kernel_size"),
    ('type: "Pooling" pooling_param { kernel_size: 2 kernel_h: 2 kernel_w: 2 }', (1, 3, 5, 5),
     "pooling_param.kernel_size"),
    ('type: "Pooling" pooling_param { kernel_h: 2 }', (1, 3, 5, 5), "pooling_param.kernel_h"),
    ('type: "Pooling" pooling_param { global_pooling: true kernel_size: 2 }', (1, 3, 5, 5),
     "pooling_param.kernel_size"),
    ('type: "Pooling" pooling_param { global_pooling: true stride: 2 }', (1, 3, 5, 5),
     "pooling_param.global_pooling"),
    ('type: "Pooling" pooling_param { kernel_size: 2 pad: 2 }', (1, 3, 5, 5),
     "pooling_param.pad"),
    ('type: "Pooling" pooling_param { kernel_size: 3 pad: 1 pool: STOCHASTIC }', (1, 3, 5, 5),
     "pooling_param.pad"),
    ('type: "Pooling" pooling_param { kernel_size: 3 pad: 1 pad_h: 1 }', (1, 3, 5, 5),
     "pooling_param.pad"),
    ('type: "Pooling" pooling_param { kernel_size: 3 stride_h: 1 }', (1, 3, 5, 5),
     "pooling_param.stride"),
    ('type: "Pooling" pooling_param { kernel_size: 3 stride: 0 }', (1, 3, 5, 5),
     "pooling_param.stride"),
    ('type: "Pooling" top: "m" pooling_param { kernel_size: 3 pool: AVE }', (1, 3, 5, 5),
     "pooling_param.pool"),
    ('type: "LRN" lrn_param { local_size: 4 }', (1, 3, 5, 5), "lrn_param.local_size"),
    ('type: "SPP" spp_param { }', (1, 3, 5, 5), "spp_param.pyramid_height"),
]


@pytest.mark.parametrize("text,shape,field", BAD)
def test_invalid_parameters(text, shape, field):
    lp = _lp('name: "bad_layer" bottom: "b" top: "t" ' + text)
    with pytest.raises(LayerError) as ei:
        _build(lp, [shape])
    msg = str(ei.value)
    assert "bad_layer" in msg and field in msg, msg


@pytest.mark.parametrize("text,shape", [
    ('type: "Pooling" pooling_param { kernel_size: 2 }', (3, 5, 5)),
    ('type: "LRN" lrn_param { }', (1, 3, 5, 5, 5)),
])
def test_invalid_bottom_rank(text, shape):
    lp = _lp('name: "bad_layer" bottom: "b" top: "t" ' + text)
    with pytest.raises(LayerError, match="bad_layer"):
        _build(lp, [shape])


def test_conv_mismatched_bottoms_and_embedded_weight_shape():
    lp = _lp('name: "bad_layer" type: "Convolution" bottom: "a" bottom: "b" top: "x" top: "y" '
             'convolution_param { num_output: 2 kernel_size: 1 }')
    with pytest.raises(LayerError, match="bad_layer"):
        _build(lp, [(1, 3, 5, 5), (1, 3, 4, 5)])
    lp = _lp('name: "bad_layer" type: "Convolution" bottom: "a" top: "x" '
             'convolution_param { num_output: 2 kernel_size: 1 bias_term: false }')
    lp.blobs.add().shape.dim.extend([2, 3, 1, 1])
    lp.blobs[0].data.extend([0.0] * 6)
    lp.blobs.add().shape.dim.extend([2])
    lp.blobs[1].data.extend([0.0] * 2)
    with pytest.raises(LayerError, match="bad_layer"):
        _build(lp, [(1, 3, 5, 5)])


def test_registered_types():
    for t in ("Convolution", "Deconvolution", "Im2col", "Pooling", "LRN", "SPP"):
        assert modules.builtin(t) is not None
    assert modules.builtin("Pooling") is vision.PoolingLayer
