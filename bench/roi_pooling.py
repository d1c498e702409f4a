"""ROIPooling / PSROIPooling on py-faster-rcnn's and R-FCN's test workload.

    python bench/roi_pooling.py [--repeat N] [--rois R]

Workload: VGG-16 conv5_3 of a 600x1000 image (1 x 512 x 38 x 63), 300 random
proposals, spatial_scale 1/16, 7x7 bins (py-faster-rcnn's ``im_detect``); for
PSROIPooling R-FCN's class map (21 classes x 7 x 7 channels) with the same
proposals.  Prints, measured in this run, the time of our CPU path, of the
padded vectorised path the package used before (``previous``), of a plain
NumPy loop (``numpy``), and on a CUDA machine with CuPy the kernel's, each
as a ratio ``other / ours`` (> 1: ours is faster).  Results of every variant
are checked equal to ours before timing.
"""
import argparse
import importlib
import os
import sys

import numpy as np
import torch

from caffe.kernels import launcher

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import best_of  # noqa: E402

# The package re-exports functions under the modules' names: import the modules.
roi_mod = importlib.import_module("caffe.kernels.roi_pooling")
psroi_mod = importlib.import_module("caffe.kernels.psroi_pooling")

FLT_MAX = roi_mod.FLT_MAX


def proposals(n, height=600, width=1000, seed=0):
    """Random boxes like RPN proposals: any size from a few pixels to the image."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, width - 16, n)
    y1 = rng.uniform(0, height - 16, n)
    x2 = x1 + rng.uniform(8, width - x1)
    y2 = y1 + rng.uniform(8, height - y1)
    return np.stack([np.zeros(n), x1, y1, x2, y2], 1).astype(np.float32)


# -- the CPU path the package had before: every bin padded to the largest bin --
def previous_roi_forward(features, rois, ph, pw, ss):
    N, C, H, W = features.shape
    R = rois.shape[0]
    batch, hs, he, ws, we = roi_mod.roi_geometry(rois, ss, ph, pw)
    hs, he, ws, we = hs.clamp(0, H), he.clamp(0, H), ws.clamp(0, W), we.clamp(0, W)
    kh = max(int((he - hs).max()), 1)
    kw = max(int((we - ws).max()), 1)
    ih = hs[:, :, None] + torch.arange(kh)
    iw = ws[:, :, None] + torch.arange(kw)
    vh, vw = ih < he[:, :, None], iw < we[:, :, None]
    ih, iw = ih.clamp(0, H - 1), iw.clamp(0, W - 1)
    cidx = torch.arange(C)
    top = features.new_zeros((R, C, ph, pw))
    argmax = torch.full((R, C, ph, pw), -1, dtype=torch.int32)
    step = max(1, (1 << 25) // (C * ph * pw * kh * kw))
    for s in range(0, R, step):
        e = min(R, s + step)
        vals = features[batch[s:e, None, None, None, None, None], cidx[None, :, None, None, None, None],
                        ih[s:e, None, :, None, :, None], iw[s:e, None, None, :, None, :]]
        valid = vh[s:e, None, :, None, :, None] & vw[s:e, None, None, :, None, :]
        vals = torch.where(valid, vals, torch.tensor(-float("inf")))
        best, pos = vals.reshape(e - s, C, ph, pw, kh * kw).max(dim=-1)
        h = hs[s:e, None, :, None] + torch.div(pos, kw, rounding_mode="floor")
        w = ws[s:e, None, None, :] + pos % kw
        idx = (h * W + w).to(torch.int32)
        empty = ((he[s:e] <= hs[s:e])[:, :, None] | (we[s:e] <= ws[s:e])[:, None, :])[:, None]
        low = best <= -FLT_MAX
        top[s:e] = torch.where(empty, 0.0, torch.where(low, -FLT_MAX, best))
        argmax[s:e] = torch.where(empty | low, -1, idx)
    return top, argmax


def previous_roi_backward(top_diff, argmax, rois, shape):
    N, C, H, W = shape
    grad = top_diff.new_zeros((N * C * H * W,))
    batch = rois[:, 0].to(torch.int64)
    plane = (batch[:, None] * C + torch.arange(C)[None]) * (H * W)
    target = plane[:, :, None, None] + argmax.to(torch.int64)
    valid = argmax >= 0
    grad.index_add_(0, target[valid], top_diff[valid])
    return grad.view(N, C, H, W)


# -- straightforward NumPy loops, the reference a user would write ------------
def numpy_roi_forward(x, geometry, ph, pw):
    batch, hs, he, ws, we = (t.numpy() for t in geometry)
    R, C = len(batch), x.shape[1]
    W = x.shape[3]
    top = np.zeros((R, C, ph, pw), np.float32)
    argmax = np.full((R, C, ph, pw), -1, np.int32)
    for r in range(R):
        for i in range(ph):
            for j in range(pw):
                win = x[batch[r], :, hs[r, i]:he[r, i], ws[r, j]:we[r, j]]
                if win.size == 0:
                    continue
                flat = win.reshape(C, -1)
                pos = flat.argmax(1)
                top[r, :, i, j] = flat[np.arange(C), pos]
                argmax[r, :, i, j] = (hs[r, i] + pos // win.shape[2]) * W + ws[r, j] + pos % win.shape[2]
    return top, argmax


def numpy_roi_backward(g, argmax, batch, shape):
    N, C, H, W = shape
    out = np.zeros((N, C, H * W), np.float32)
    for r in range(g.shape[0]):
        valid = argmax[r] >= 0
        c = np.broadcast_to(np.arange(C)[:, None, None], argmax[r].shape)[valid]
        np.add.at(out[batch[r]], (c, argmax[r][valid]), g[r][valid])
    return out.reshape(shape)


def numpy_psroi_forward(x, geometry, dim, k):
    batch, hs, he, ws, we = (t.numpy() for t in geometry)
    top = np.zeros((len(batch), dim, k, k), np.float32)
    for r in range(len(batch)):
        for i in range(k):
            for j in range(k):
                area = (he[r, i] - hs[r, i]) * (we[r, j] - ws[r, j])
                if area <= 0:
                    continue
                chans = (np.arange(dim) * k + i) * k + j
                win = x[batch[r], chans, hs[r, i]:he[r, i], ws[r, j]:we[r, j]]
                top[r, :, i, j] = win.sum((1, 2)) / area
    return top


def numpy_psroi_backward(g, geometry, shape, dim, k):
    batch, hs, he, ws, we = (t.numpy() for t in geometry)
    out = np.zeros(shape, np.float32)
    for r in range(len(batch)):
        for i in range(k):
            for j in range(k):
                area = (he[r, i] - hs[r, i]) * (we[r, j] - ws[r, j])
                if area <= 0:
                    continue
                chans = (np.arange(dim) * k + i) * k + j
                out[batch[r], chans, hs[r, i]:he[r, i], ws[r, j]:we[r, j]] += \
                    (g[r, :, i, j] / area)[:, None, None]
    return out


def report(title, ours, others):
    print("%-28s ours %8.1f ms" % (title, ours * 1e3), end="")
    for name, t in others:
        print("   %s %8.1f ms (%.1fx)" % (name, t * 1e3, t / ours), end="")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rois", type=int, default=300)
    args = ap.parse_args()
    torch.manual_seed(0)
    rois_np = proposals(args.rois)
    rois = torch.from_numpy(rois_np)
    ss, ph, pw = 1.0 / 16, 7, 7
    x = torch.randn(1, 512, 38, 63)
    shape = tuple(x.shape)
    print("torch %s, %d threads; %d rois on %s" % (torch.__version__, torch.get_num_threads(),
                                                  args.rois, "x".join(map(str, shape))))

    top, argmax = roi_mod._forward_torch(x, rois, ph, pw, ss)
    geometry = roi_mod.roi_geometry(rois, ss, ph, pw)
    batch, hs, he, ws, we = geometry
    H, W = shape[2:]
    clipped = (batch, hs.clamp(0, H), he.clamp(0, H), ws.clamp(0, W), we.clamp(0, W))
    prev = previous_roi_forward(x, rois, ph, pw, ss)
    ref = numpy_roi_forward(x.numpy(), clipped, ph, pw)
    for got in (prev, ref):
        np.testing.assert_array_equal(np.asarray(got[0]), top.numpy())
        np.testing.assert_array_equal(np.asarray(got[1]), argmax.numpy())
    others = [("previous", best_of(lambda: previous_roi_forward(x, rois, ph, pw, ss), args.repeat)),
              ("numpy", best_of(lambda: numpy_roi_forward(x.numpy(), clipped, ph, pw), 1))]
    if launcher.use_kernels(x.cuda() if torch.cuda.is_available() else x):
        xc, rc = x.cuda(), rois.cuda()

        def cuda_run():
            roi_mod.roi_pooling_forward(xc, rc, ph, pw, ss)
            torch.cuda.synchronize()
        others.append(("cupy kernel", best_of(cuda_run, args.repeat)))
    report("ROIPooling forward", best_of(lambda: roi_mod._forward_torch(x, rois, ph, pw, ss),
                                           args.repeat), others)

    g = torch.randn(top.shape)
    ours_b = roi_mod._backward_torch(g, argmax, rois, shape)
    np.testing.assert_allclose(previous_roi_backward(g, argmax, rois, shape).numpy(),
                               ours_b.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(numpy_roi_backward(g.numpy(), argmax.numpy(), batch.numpy(), shape),
                               ours_b.numpy(), rtol=1e-5, atol=1e-5)
    others = [("previous", best_of(lambda: previous_roi_backward(g, argmax, rois, shape),
                                     args.repeat)),
              ("numpy", best_of(lambda: numpy_roi_backward(g.numpy(), argmax.numpy(),
                                                             batch.numpy(), shape), 1))]
    report("ROIPooling backward", best_of(lambda: roi_mod._backward_torch(g, argmax, rois, shape),
                                            args.repeat), others)

    dim, k = 21, 7
    xp = torch.randn(1, dim * k * k, 38, 63)
    pshape = tuple(xp.shape)
    ptop, _ = psroi_mod._forward_torch(xp, rois, dim, k, ss)
    pgeom = psroi_mod.psroi_geometry(rois, ss, k, H, W)
    np.testing.assert_allclose(numpy_psroi_forward(xp.numpy(), pgeom, dim, k), ptop.numpy(),
                               rtol=1e-4, atol=1e-5)
    report("PSROIPooling forward",
           best_of(lambda: psroi_mod._forward_torch(xp, rois, dim, k, ss), args.repeat),
           [("numpy", best_of(lambda: numpy_psroi_forward(xp.numpy(), pgeom, dim, k), 1))])
    pg = torch.randn(ptop.shape)
    pb = psroi_mod._backward_torch(pg, rois, pshape, dim, k, ss)
    np.testing.assert_allclose(numpy_psroi_backward(pg.numpy(), pgeom, pshape, dim, k), pb.numpy(),
                               rtol=1e-4, atol=1e-5)
    report("PSROIPooling backward",
           best_of(lambda: psroi_mod._backward_torch(pg, rois, pshape, dim, k, ss), args.repeat),
           [("numpy", best_of(lambda: numpy_psroi_backward(pg.numpy(), pgeom, pshape, dim, k),
                                1))])


if __name__ == "__main__":
    main()
