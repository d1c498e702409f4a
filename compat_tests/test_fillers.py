"""caffe.fillers against Caffe's include/caffe/filler.hpp semantics.

Random fillers are checked by their statistics (Caffe's draws come from boost's
generators, so only the distributions can match), bilinear by exact values,
and reproducibility under caffe._common.set_random_seed.
"""
import math
import os

import numpy as np
import pytest
import torch

from caffe import _common
from caffe.fillers import FillerError, fill
from caffe.proto import caffe_pb2

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "layers")
FAN_IN, FAN_OUT, AVERAGE = 0, 1, 2


def filler(**kw):
    p = caffe_pb2.FillerParameter()
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def filled(shape, **kw):
    t = torch.empty(shape, dtype=torch.float32)
    out = fill(t, filler(**kw))
    assert out is t
    return t


def test_variance_norm_enum_numbers():
    assert caffe_pb2.FillerParameter.FAN_IN == FAN_IN
    assert caffe_pb2.FillerParameter.FAN_OUT == FAN_OUT
    assert caffe_pb2.FillerParameter.AVERAGE == AVERAGE


# -- constant -------------------------------------------------------------------
def test_default_filler_is_constant_zero():
    t = torch.full((3, 4), 7.0)
    fill(t, caffe_pb2.FillerParameter())
    assert torch.equal(t, torch.zeros(3, 4))


@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4, 5)])
def test_constant(shape):
    t = filled(shape, type="constant", value=-0.3)
    assert torch.equal(t, torch.full(shape, np.float32(-0.3).item()))


# -- uniform ----------------------------------------------------------------------
def test_uniform_default_range_and_stats():
    t = filled((200, 500), type="uniform")
    assert t.min() >= 0 and t.max() <= 1
    assert abs(t.mean().item() - 0.5) < 0.01
    assert abs(t.var().item() - 1 / 12.) < 0.003


def test_uniform_custom_range():
    t = filled((200, 500), type="uniform", min=-3, max=-1)
    assert t.min() >= -3 and t.max() <= -1
    assert abs(t.mean().item() + 2) < 0.02
    assert abs(t.var().item() - 4 / 12.) < 0.01


# -- gaussian (dense and sparse) ---------------------------------------------------
def test_gaussian_stats():
    t = filled((200, 500), type="gaussian", mean=1.5, std=0.2)
    assert abs(t.mean().item() - 1.5) < 0.005
    assert abs(t.std().item() - 0.2) < 0.005
    t = filled((200, 500), type="gaussian")  # defaults N(0, 1)
    assert abs(t.mean().item()) < 0.01 and abs(t.std().item() - 1) < 0.01


def test_gaussian_sparse():
    # Each element is kept with probability sparse / shape(0).
    t = filled((10, 20000), type="gaussian", std=2, sparse=3)
    nz = t != 0
    assert abs(nz.float().mean().item() - 0.3) < 0.01
    assert abs(t[nz].std().item() - 2) < 0.05
    t = filled((10, 400), type="gaussian", sparse=0)
    assert torch.count_nonzero(t) == 0
    t = filled((10, 400), type="gaussian", sparse=10)  # probability 1: dense
    assert torch.count_nonzero(t) == t.numel()
    t = filled((10, 400), type="gaussian", sparse=-1)  # the default: dense
    assert torch.count_nonzero(t) == t.numel()


def test_gaussian_sparse_probability_above_one_is_an_error():
    # Caffe: caffe_rng_bernoulli CHECKs p <= 1.
    with pytest.raises((FillerError, RuntimeError, ValueError)):
        filled((2, 10), type="gaussian", sparse=3)


@pytest.mark.parametrize("kind", ["constant", "uniform", "positive_unitball", "xavier", "msra",
                                  "bilinear"])
def test_sparse_only_for_gaussian(kind):
    with pytest.raises(FillerError, match="sparse"):
        filled((2, 2, 3, 3), type=kind, sparse=2)


def test_unknown_filler_type():
    with pytest.raises(FillerError, match="nonesuch"):
        filled((2, 3), type="nonesuch")


# -- positive_unitball --------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3, 2, 2), (7, 5), (6,)])
def test_positive_unitball(shape):
    t = filled(shape, type="positive_unitball")
    assert (t >= 0).all() and (t <= 1).all()
    rows = t.reshape(shape[0], -1).double().sum(dim=1)
    np.testing.assert_allclose(rows.numpy(), 1.0, rtol=1e-5)


# -- xavier / msra ------------------------------------------------------------------
def _fans(shape):
    count = int(np.prod(shape))
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    return fan_in, fan_out


def _n(shape, norm):
    fan_in, fan_out = _fans(shape)
    return {FAN_IN: fan_in, FAN_OUT: fan_out, AVERAGE: (fan_in + fan_out) / 2.0}[norm]


SHAPES = [(64, 32, 5, 5), (300, 400), (40000,)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("norm", [FAN_IN, FAN_OUT, AVERAGE])
def test_xavier(shape, norm):
    n = _n(shape, norm)
    scale = math.sqrt(3.0 / n)
    t = filled(shape, type="xavier", variance_norm=norm)
    # Caffe's xavier: U(-scale, scale), variance 1/n.
    assert t.abs().max().item() <= scale * (1 + 1e-6)
    assert t.abs().max().item() > scale * 0.99
    assert abs(t.mean().item()) < 0.02 * scale
    np.testing.assert_allclose(t.double().var().item(), 1.0 / n, rtol=0.03)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("norm", [FAN_IN, FAN_OUT, AVERAGE])
def test_msra(shape, norm):
    n = _n(shape, norm)
    std = math.sqrt(2.0 / n)
    t = filled(shape, type="msra", variance_norm=norm)
    assert abs(t.mean().item()) < 0.02 * std
    np.testing.assert_allclose(t.double().std().item(), std, rtol=0.02)
    # Gaussian, not uniform: some values lie beyond sqrt(3)*std.
    assert t.abs().max().item() > math.sqrt(3) * std


def test_xavier_default_is_fan_in_not_glorot():
    # (num_output=10, fan_in=1000): Caffe's default uses fan_in only.
    t = filled((10, 1000), type="xavier")
    scale = math.sqrt(3.0 / 1000)
    assert t.abs().max().item() <= scale * (1 + 1e-6)
    assert t.abs().max().item() > scale * 0.99


# -- bilinear ------------------------------------------------------------------------
def caffe_bilinear(shape):
    """Caffe's loop, in float32 like its Dtype arithmetic."""
    k = shape[3]
    f = int(math.ceil(k / 2.0))
    c = np.float32((k - 1) / (2.0 * f))
    out = np.empty(int(np.prod(shape)), np.float32)
    ff = np.float32(f)
    for i in range(out.size):
        x = np.float32(i % k)
        y = np.float32((i // k) % shape[2])
        out[i] = (np.float32(1) - abs(x / ff - c)) * (np.float32(1) - abs(y / ff - c))
    return out.reshape(shape)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7, 8, 16])
def test_bilinear_values(k):
    shape = (3, 2, k, k)
    t = filled(shape, type="bilinear")
    np.testing.assert_allclose(t.numpy(), caffe_bilinear(shape), rtol=1e-6, atol=1e-7)


def test_bilinear_known_kernels():
    t = filled((1, 1, 4, 4), type="bilinear")
    w = np.array([0.25, 0.75, 0.75, 0.25], np.float32)
    np.testing.assert_array_equal(t[0, 0].numpy(), np.outer(w, w))
    t = filled((1, 1, 3, 3), type="bilinear")
    w = np.array([0.5, 1.0, 0.5], np.float32)
    np.testing.assert_array_equal(t[0, 0].numpy(), np.outer(w, w))


def test_bilinear_matches_golden_deconv_when_available():
    path = os.path.join(GOLDEN, "deconv_bilinear.npz")
    if not os.path.exists(path):
        pytest.skip("golden deconv_bilinear case not copied")
    ref = np.load(path)["param/0"]
    t = filled(ref.shape, type="bilinear")
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 5), (1, 1, 1, 3, 3)])
def test_bilinear_needs_4d_square(shape):
    with pytest.raises(FillerError, match="bilinear"):
        filled(shape, type="bilinear")


# -- reproducibility -------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(type="uniform", min=-1, max=2),
                                dict(type="gaussian", std=0.5),
                                dict(type="gaussian", sparse=2),
                                dict(type="positive_unitball"),
                                dict(type="xavier", variance_norm=AVERAGE),
                                dict(type="msra", variance_norm=FAN_OUT)])
def test_reproducible_under_seed(kw):
    shape = (8, 4, 3, 3)
    _common.set_random_seed(1701)
    a = filled(shape, **kw)
    b = filled(shape, **kw)
    _common.set_random_seed(1701)
    c = filled(shape, **kw)
    _common.set_random_seed(1702)
    d = filled(shape, **kw)
    assert torch.equal(a, c)
    assert not torch.equal(a, b)
    assert not torch.equal(a, d)


def test_fill_float64_tensor():
    t = torch.empty(4, 5, dtype=torch.float64)
    fill(t, filler(type="xavier"))
    assert t.dtype == torch.float64 and t.abs().max() <= math.sqrt(3 / 5.)
