"""caffe.kernels: ROIPooling / PSROIPooling.

* the CUDA sources compile with ``nvcc -ptx`` (skipped without nvcc);
* the same sources, compiled as host C++ with g++ (tiny stand-ins for the
  CUDA built-ins, one "thread" walking the grid-stride loop), are run on the
  CPU and compared with the vectorised PyTorch path on random and hand-made
  cases -- so the kernels' logic is tested without a GPU;
* hand-computed cases (half-pixel rounding, empty bins, boxes off the map,
  first maximum), numerical gradient checks;
* on a machine with CUDA and CuPy, the GPU path against the CPU path.
"""
import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from caffe import kernels
from caffe.kernels import (
    psroi_pooling,
    psroi_pooling_backward,
    psroi_pooling_forward,
    roi_pooling,
    roi_pooling_backward,
    roi_pooling_forward,
)

KERNEL_FILES = kernels.KERNEL_SOURCES


# ---------------------------------------------------------------------------
# nvcc
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", KERNEL_FILES)
def test_cuda_sources_compile_with_nvcc(name, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed here: the CUDA sources cannot be compiled")
    out = tmp_path / (name + ".ptx")
    res = subprocess.run([nvcc, "-ptx", "-arch=sm_80", "--std=c++14",
                          kernels.source_path(name), "-o", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ptx = out.read_text()
    entries = {"roi_pooling.cu": ("roi_pool_forward", "roi_pool_backward"),
               "psroi_pooling.cu": ("psroi_pool_forward", "psroi_pool_backward")}[name]
    for e in entries:
        assert ".entry %s" % e in ptx or ".entry %s(" % e in ptx, e


# ---------------------------------------------------------------------------
# the .cu files compiled for the host
# ---------------------------------------------------------------------------
HARNESS = r"""
#include <math.h>
struct tc_dim3 { unsigned int x, y, z; };
static const tc_dim3 blockIdx = {0, 0, 0};
static const tc_dim3 threadIdx = {0, 0, 0};
static const tc_dim3 blockDim = {1, 1, 1};
static const tc_dim3 gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
static inline float atomicAdd(float* p, float v) { float old = *p; *p = old + v; return old; }
#include "roi_pooling.cu"
#include "psroi_pooling.cu"
"""


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed: cannot run the kernel sources on the host")
    d = tmp_path_factory.mktemp("hostkernels")
    src = d / "harness.cpp"
    src.write_text(HARNESS)
    lib = d / "libtckernels.so"
    res = subprocess.run([gxx, "-O1", "-ffp-contract=off", "-shared", "-fPIC",
                          "-I", os.path.dirname(kernels.source_path("roi_pooling.cu")),
                          str(src), "-o", str(lib)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    so = ctypes.CDLL(str(lib))
    P, I, L, F = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong, ctypes.c_float
    so.roi_pool_forward.argtypes = [L, P, F, I, I, I, I, I, P, P, P]
    so.roi_pool_backward.argtypes = [L, P, P, I, F, I, I, I, I, I, P, P]
    so.psroi_pool_forward.argtypes = [L, P, F, I, I, I, I, I, P, P, P]
    so.psroi_pool_backward.argtypes = [L, P, F, I, I, I, I, I, P, P]
    return so


def _p(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def host_roi_forward(so, x, rois, ph, pw, ss):
    x = np.ascontiguousarray(x, np.float32)
    rois = np.ascontiguousarray(rois, np.float32)
    N, C, H, W = x.shape
    R = rois.shape[0]
    top = np.zeros((R, C, ph, pw), np.float32)
    am = np.zeros((R, C, ph, pw), np.int32)
    so.roi_pool_forward(top.size, _p(x), ss, C, H, W, ph, pw, _p(rois), _p(top), _p(am))
    return top, am


def host_roi_backward(so, g, am, rois, shape, ss):
    g = np.ascontiguousarray(g, np.float32)
    am = np.ascontiguousarray(am, np.int32)
    rois = np.ascontiguousarray(rois, np.float32)
    N, C, H, W = shape
    out = np.zeros(shape, np.float32)
    so.roi_pool_backward(out.size, _p(g), _p(am), rois.shape[0], ss, C, H, W, g.shape[2],
                         g.shape[3], _p(rois), _p(out))
    return out


def host_psroi_forward(so, x, rois, dim, k, ss):
    x = np.ascontiguousarray(x, np.float32)
    rois = np.ascontiguousarray(rois, np.float32)
    N, C, H, W = x.shape
    top = np.zeros((rois.shape[0], dim, k, k), np.float32)
    mc = np.zeros(top.shape, np.int32)
    so.psroi_pool_forward(top.size, _p(x), ss, C, H, W, k, dim, _p(rois), _p(top), _p(mc))
    return top, mc


def host_psroi_backward(so, g, rois, shape, dim, k, ss):
    g = np.ascontiguousarray(g, np.float32)
    rois = np.ascontiguousarray(rois, np.float32)
    N, C, H, W = shape
    out = np.zeros(shape, np.float32)
    so.psroi_pool_backward(g.size, _p(g), ss, C, H, W, k, dim, _p(rois), _p(out))
    return out


def random_rois(rng, R, N, img_h, img_w, margin=20.0):
    b = rng.integers(0, N, size=R).astype(np.float32)
    x = rng.uniform(-margin, img_w + margin, size=(R, 2)).astype(np.float32)
    y = rng.uniform(-margin, img_h + margin, size=(R, 2)).astype(np.float32)
    rois = np.stack([b, x.min(1), y.min(1), x.max(1), y.max(1)], 1)
    # a few exact half-pixel coordinates, inverted and degenerate boxes
    rois[0, 1:] = [2.5, 3.5, 10.5, 7.5]
    rois[1, 1:] = [-1.5, -2.5, 0.5, 1.5]
    rois[2, 1:] = [12.0, 9.0, 3.0, 2.0]
    rois[3, 1:] = [5.0, 5.0, 5.0, 5.0]
    return rois


ROI_CONFIGS = [
    # N, C, H, W, ph, pw, ss, img scale, R
    (2, 3, 9, 11, 3, 2, 1.0, 1, 12),
    (1, 4, 14, 10, 7, 7, 0.0625, 16, 20),
    (3, 2, 6, 8, 2, 3, 0.5, 2, 15),
    (1, 2, 5, 5, 6, 6, 0.125, 8, 10),   # more bins than pixels: empty bins
]


@pytest.mark.parametrize("cfg", ROI_CONFIGS)
def test_roi_pooling_host_kernel_matches_torch(host_kernels, cfg):
    N, C, H, W, ph, pw, ss, up, R = cfg
    rng = np.random.default_rng(sum(cfg[:6]))
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    x[:, :, ::2, ::3] = 0.5          # ties: the first maximum must win
    rois = random_rois(rng, R, N, H * up, W * up)
    top_k, am_k = host_roi_forward(host_kernels, x, rois, ph, pw, ss)
    top_t, am_t = roi_pooling_forward(torch.from_numpy(x), torch.from_numpy(rois), ph, pw, ss)
    np.testing.assert_array_equal(am_t.numpy(), am_k)
    np.testing.assert_array_equal(top_t.numpy(), top_k)
    g = rng.standard_normal(top_k.shape).astype(np.float32)
    gx_k = host_roi_backward(host_kernels, g, am_k, rois, x.shape, ss)
    gx_t = roi_pooling_backward(torch.from_numpy(g), am_t, torch.from_numpy(rois), x.shape)
    np.testing.assert_allclose(gx_t.numpy(), gx_k, rtol=1e-6, atol=1e-6)


ROI_MODULE = __import__("caffe.kernels.roi_pooling", fromlist=["_forward_torch"])


@pytest.fixture(params=["range-max tables", "per-roi windows"])
def roi_cpu_path(request, monkeypatch):
    """Run a test through each CPU forward path (the tables are skipped when
    they would exceed the memory budget, so a zero budget forces the loop)."""
    if request.param == "per-roi windows":
        monkeypatch.setattr(ROI_MODULE, "TABLE_BUDGET_BYTES", 0)
    return request.param


@pytest.mark.parametrize("cfg", ROI_CONFIGS + [
    (2, 8, 38, 50, 7, 7, 0.0625, 16, 60),      # py-faster-rcnn sized bins, big and tiny rois
    (1, 3, 23, 17, 1, 1, 0.25, 4, 10),          # one bin spanning the whole roi
])
def test_roi_pooling_both_cpu_paths_match_the_kernel_exactly(host_kernels, roi_cpu_path, cfg):
    N, C, H, W, ph, pw, ss, up, R = cfg
    rng = np.random.default_rng(sum(cfg[:6]) + 7)
    # few distinct values: ties everywhere; special values Caffe's ``>`` skips
    x = rng.integers(-3, 4, size=(N, C, H, W)).astype(np.float32)
    x.flat[rng.choice(x.size, 9, replace=False)] = np.nan
    x.flat[rng.choice(x.size, 5, replace=False)] = -np.inf
    x.flat[rng.choice(x.size, 5, replace=False)] = -np.finfo(np.float32).max
    x[0, 0] = -np.inf                                    # a plane with no winner at all
    rois = random_rois(rng, R, N, H * up, W * up)
    top_k, am_k = host_roi_forward(host_kernels, x, rois, ph, pw, ss)
    top_t, am_t = roi_pooling_forward(torch.from_numpy(x), torch.from_numpy(rois), ph, pw, ss)
    np.testing.assert_array_equal(am_t.numpy(), am_k)
    np.testing.assert_array_equal(top_t.numpy(), top_k)
    g = rng.standard_normal(top_k.shape).astype(np.float32)
    gx_k = host_roi_backward(host_kernels, g, am_k, rois, x.shape, ss)
    gx_t = roi_pooling_backward(torch.from_numpy(g), am_t, torch.from_numpy(rois), x.shape)
    np.testing.assert_array_equal(gx_t.numpy(), gx_k)   # same summation order


def test_roi_pooling_float64_uses_the_per_roi_path_with_same_numbers():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((1, 2, 9, 9)))
    rois = torch.tensor([[0, 0, 0, 8, 8], [0, 2, 1, 5, 7]], dtype=torch.float32)
    top64, am64 = roi_pooling_forward(x, rois, 3, 3, 1.0)
    top32, am32 = roi_pooling_forward(x.float(), rois, 3, 3, 1.0)
    assert top64.dtype == torch.float64
    np.testing.assert_array_equal(am64.numpy(), am32.numpy())
    np.testing.assert_allclose(top64.numpy(), top32.numpy(), rtol=1e-6)


PS_CONFIGS = [
    # N, dim, k, H, W, ss, img scale, R
    (2, 2, 3, 9, 11, 1.0, 1, 12),
    (1, 3, 2, 14, 10, 0.0625, 16, 20),
    (2, 1, 4, 5, 6, 0.5, 2, 15),
]


@pytest.mark.parametrize("cfg", PS_CONFIGS)
def test_psroi_pooling_host_kernel_matches_torch(host_kernels, cfg):
    N, dim, k, H, W, ss, up, R = cfg
    rng = np.random.default_rng(sum(cfg[:5]))
    x = rng.standard_normal((N, dim * k * k, H, W)).astype(np.float32)
    rois = random_rois(rng, R, N, H * up, W * up)
    top_k, mc_k = host_psroi_forward(host_kernels, x, rois, dim, k, ss)
    top_t, mc_t = psroi_pooling_forward(torch.from_numpy(x), torch.from_numpy(rois), dim, k, ss)
    np.testing.assert_array_equal(mc_t.numpy(), mc_k)
    np.testing.assert_allclose(top_t.numpy(), top_k, rtol=1e-5, atol=1e-6)
    g = rng.standard_normal(top_k.shape).astype(np.float32)
    gx_k = host_psroi_backward(host_kernels, g, rois, x.shape, dim, k, ss)
    gx_t = psroi_pooling_backward(torch.from_numpy(g), torch.from_numpy(rois), x.shape, dim, k,
                                  ss)
    np.testing.assert_allclose(gx_t.numpy(), gx_k, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# hand-computed ROIPooling
# ---------------------------------------------------------------------------
def _arange_map():
    return torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)


def test_roi_pooling_rounds_half_away_from_zero():
    # 0.5 -> 1 and 2.5 -> 3 (C round); torch.round would give 0 and 2
    top, am = roi_pooling_forward(_arange_map(), torch.tensor([[0, 0.5, 0.5, 2.5, 2.5]]), 1, 1)
    assert top.item() == 15 and am.item() == 15
    top, am = roi_pooling_forward(_arange_map(), torch.tensor([[0, 0.5, 0.5, 1.4, 1.4]]), 1, 1)
    assert top.item() == 5 and am.item() == 5
    # scale first, then round: 3 * 0.5 = 1.5 -> 2
    top, am = roi_pooling_forward(_arange_map(), torch.tensor([[0, 3.0, 3.0, 3.0, 3.0]]), 1, 1,
                                  0.5)
    assert top.item() == 10 and am.item() == 10
    # negative halves go down: -1.5 -> -2; the box is clipped to the map
    top, am = roi_pooling_forward(_arange_map(), torch.tensor([[0, -1.5, -1.5, 0.4, 0.4]]), 1, 1)
    assert top.item() == 0 and am.item() == 0


def test_roi_pooling_overlapping_bins_and_empty_bins():
    x = _arange_map()
    # w = h = 3, bin 1.5: bins [0,2) and [1,3) overlap
    top, am = roi_pooling_forward(x, torch.tensor([[0, 0., 0., 2., 2.]]), 2, 2)
    assert top.view(-1).tolist() == [5, 6, 9, 10]
    assert am.view(-1).tolist() == [5, 6, 9, 10]
    # box partly off the map: bin (1,1) lies outside -> 0 and argmax -1
    top, am = roi_pooling_forward(x, torch.tensor([[0, 2., 2., 6., 6.]]), 2, 2)
    assert top.view(-1).tolist() == [15, 0, 0, 0]
    assert am.view(-1).tolist() == [15, -1, -1, -1]
    # box entirely off the map
    top, am = roi_pooling_forward(x, torch.tensor([[0, 10., 10., 12., 12.]]), 2, 2)
    assert top.abs().sum() == 0 and (am == -1).all()
    # malformed box (x2 < x1) is 1x1 at (x1, y1)
    top, am = roi_pooling_forward(x, torch.tensor([[0, 2., 1., 0., 0.]]), 1, 1)
    assert top.item() == 6 and am.item() == 6


def test_roi_pooling_first_maximum_and_backward():
    x = torch.full((1, 1, 4, 4), 7.0)
    rois = torch.tensor([[0, 0., 0., 2., 2.], [0, 0., 0., 2., 2.]])
    top, am = roi_pooling_forward(x, rois, 2, 2)
    assert am[0].view(-1).tolist() == [0, 1, 4, 5]
    g = roi_pooling_backward(torch.ones_like(top), am, rois, x.shape)
    expect = torch.zeros(16)
    expect[[0, 1, 4, 5]] = 2
    assert torch.equal(g.view(-1), expect)


def test_roi_pooling_batch_index_truncates():
    x = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    top, _ = roi_pooling_forward(x, torch.tensor([[1.9, 0., 0., 3., 3.]]), 1, 1)
    assert top.item() == 1.0


def test_roi_pooling_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 9, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0., 0., 7., 7.], [1, 2.5, 1.5, 12., 20.], [0, 3., 3., 3., 3.],
                         [1, -4., -4., 3., 2.], [0, 30., 30., 40., 40.]])
    assert torch.autograd.gradcheck(lambda t: roi_pooling(t, rois, 3, 2, 0.5), (x,), eps=1e-6,
                                    atol=1e-5)


# ---------------------------------------------------------------------------
# hand-computed PSROIPooling
# ---------------------------------------------------------------------------
def _ps_map():
    base = torch.arange(16, dtype=torch.float32).view(4, 4)
    return torch.stack([base + 100 * c for c in range(4)]).view(1, 4, 4, 4)


def test_psroi_pooling_hand_cases():
    x = _ps_map()
    top, mc = psroi_pooling_forward(x, torch.tensor([[0, 0., 0., 3., 3.]]), 1, 2, 1.0)
    assert top.view(-1).tolist() == [2.5, 104.5, 210.5, 312.5]
    assert mc.view(-1).tolist() == [0, 1, 2, 3]
    # round first, then scale: 0.5 -> 1 -> 0.5 and (2.5 -> 3) + 1 -> 2; bins [0,2) and [1,2)
    top, _ = psroi_pooling_forward(x, torch.tensor([[0, 0.5, 0.5, 2.5, 2.5]]), 1, 2, 0.5)
    assert top.view(-1).tolist() == [2.5, 103.0, 204.5, 305.0]
    # off the map: every bin is empty
    top, _ = psroi_pooling_forward(x, torch.tensor([[0, 50., 50., 60., 60.]]), 1, 2, 1.0)
    assert top.abs().sum() == 0
    # backward spreads top_diff / area over the bin of its channel
    rois = torch.tensor([[0, 0., 0., 3., 3.]])
    g = psroi_pooling_backward(torch.tensor([[[[4., 8.], [0., 0.]]]]), rois, x.shape, 1, 2, 1.0)
    assert g[0, 0, :2, :2].eq(1).all() and g[0, 1, :2, 2:].eq(2).all()
    assert g.sum() == 12


def test_psroi_pooling_gradcheck():
    torch.manual_seed(1)
    x = torch.randn(2, 2 * 9, 7, 8, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0., 0., 13., 13.], [1, 2.5, 1.5, 9., 14.], [0, 3., 3., 3., 3.],
                         [1, -4., -4., 3., 2.], [0, 30., 30., 40., 40.]])
    assert torch.autograd.gradcheck(lambda t: psroi_pooling(t, rois, 2, 3, 0.5), (x,),
                                    eps=1e-6, atol=1e-5)


def test_invalid_arguments():
    x = torch.zeros(1, 4, 4, 4)
    with pytest.raises(ValueError, match="pooled"):
        roi_pooling_forward(x, torch.zeros(1, 5), 0, 2)
    with pytest.raises(ValueError, match="rois"):
        roi_pooling_forward(x, torch.zeros(1, 4), 2, 2)
    with pytest.raises(ValueError, match="output_dim"):
        psroi_pooling_forward(x, torch.zeros(1, 5), 2, 2)


# ---------------------------------------------------------------------------
# launcher and GPU
# ---------------------------------------------------------------------------
def test_launcher_falls_back_without_cuda():
    x = torch.zeros(1, 1, 2, 2)
    from caffe.kernels import launcher
    assert not launcher.use_kernels(x)   # CPU tensors never take the CUDA path
    for name in KERNEL_FILES:
        assert "extern \"C\" __global__" in kernels.read_source(name)


@pytest.mark.skipif(not (torch.cuda.is_available() and kernels.cupy_available()),
                    reason="needs a CUDA device and CuPy")
def test_cuda_kernels_match_cpu():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.randn(2, 4 * 4, 12, 14)
    rois = torch.from_numpy(random_rois(rng, 30, 2, 12 * 8, 14 * 8))
    t_cpu, a_cpu = roi_pooling_forward(x, rois, 4, 4, 0.125)
    t_gpu, a_gpu = roi_pooling_forward(x.cuda(), rois.cuda(), 4, 4, 0.125)
    assert torch.equal(t_gpu.cpu(), t_cpu) and torch.equal(a_gpu.cpu(), a_cpu)
    g = torch.randn_like(t_cpu)
    np.testing.assert_allclose(
        roi_pooling_backward(g.cuda(), a_gpu, rois.cuda(), x.shape, 4, 4, 0.125).cpu(),
        roi_pooling_backward(g, a_cpu, rois, x.shape), rtol=1e-5, atol=1e-6)
    p_cpu, _ = psroi_pooling_forward(x, rois, 4, 2, 0.125)
    p_gpu, _ = psroi_pooling_forward(x.cuda(), rois.cuda(), 4, 2, 0.125)
    np.testing.assert_allclose(p_gpu.cpu(), p_cpu, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(p_cpu)
    np.testing.assert_allclose(
        psroi_pooling_backward(g.cuda(), rois.cuda(), x.shape, 4, 2, 0.125).cpu(),
        psroi_pooling_backward(g, rois, x.shape, 4, 2, 0.125), rtol=1e-5, atol=1e-5)
