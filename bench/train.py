"""solver.step against an equivalent hand-written PyTorch training loop, CPU.

    python bench/train.py [--batch 64] [--steps 10] [--rounds 7] [--threads N]

The net is LeNet (conv20-pool-conv50-pool-ip500-relu-ip10-SoftmaxWithLoss,
lr_mult 1/2 for weights/biases as in BVLC's example) fed by an Input layer
with one fixed batch.  The solver is SGD with momentum 0.9 and weight decay
5e-4; the PyTorch loop does the same forward (F.conv2d ...), loss.backward()
and the same momentum-SGD math written by hand in place (Caffe's form: the
learning rate folded into the history), on the same initial weights.  Both are
timed in the same run, interleaved step by step (so background load hits both
alike); the ratio printed is median time(solver.step(1)) / median time(torch
step) over single steps taken alternately, target <= 1.15.  Before timing, one
step of each from the same weights is compared (they must agree).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from google.protobuf import text_format  # noqa: E402

import caffe  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402

NET = """
name: "LeNetBench"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: %(batch)d dim: 1 dim: 28 dim: 28 } shape { dim: %(batch)d } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 1 } param { lr_mult: 2 }
        convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        param { lr_mult: 1 } param { lr_mult: 2 }
        convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
        param { lr_mult: 1 } param { lr_mult: 2 }
        inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        param { lr_mult: 1 } param { lr_mult: 2 }
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 0.0005
LAYERS = ("conv1", "conv2", "ip1", "ip2")


def make_solver(batch):
    param = caffe_pb2.SolverParameter()
    text_format.Parse(NET % {"batch": batch}, param.net_param)
    param.base_lr = LR
    param.momentum = MOMENTUM
    param.weight_decay = WEIGHT_DECAY
    param.lr_policy = "fixed"
    param.max_iter = 10 ** 9
    param.display = 0
    param.snapshot_after_train = False
    param.random_seed = 1
    return caffe.get_solver(param)


class TorchLoop:
    """Hand-written training step: same net, same momentum SGD (Caffe's form)."""

    def __init__(self, net, x, y):
        self.x, self.y = x, y
        self.params = []
        self.lr_mult, self.decay_mult = [], []
        for name in LAYERS:
            for j, mult in ((0, 1.0), (1, 2.0)):
                p = torch.from_numpy(net.params[name][j].data.copy()).requires_grad_(True)
                self.params.append(p)
                self.lr_mult.append(mult)
                self.decay_mult.append(1.0)
        self.history = [torch.zeros_like(p) for p in self.params]

    def forward(self):
        c1w, c1b, c2w, c2b, i1w, i1b, i2w, i2b = self.params
        h = F.max_pool2d(F.conv2d(self.x, c1w, c1b), 2, 2, ceil_mode=True)
        h = F.max_pool2d(F.conv2d(h, c2w, c2b), 2, 2, ceil_mode=True)
        h = F.relu(F.linear(h.flatten(1), i1w, i1b))
        return F.cross_entropy(F.linear(h, i2w, i2b), self.y)

    def step(self):
        for p in self.params:
            p.grad = None
        loss = self.forward()
        loss.backward()
        with torch.no_grad():
            for p, h, lm, dm in zip(self.params, self.history, self.lr_mult, self.decay_mult):
                g = p.grad
                g.add_(p, alpha=WEIGHT_DECAY * dm)
                h.mul_(MOMENTUM).add_(g, alpha=LR * lm)
                p.sub_(h)
        return float(loss.detach())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    caffe.set_mode_cpu()

    solver = make_solver(args.batch)
    net = solver.net
    rng = np.random.RandomState(0)
    x = rng.rand(args.batch, 1, 28, 28).astype(np.float32)
    y = rng.randint(0, 10, size=args.batch)
    net.blobs["data"].data[...] = x
    net.blobs["label"].data[...] = y
    loop = TorchLoop(net, torch.from_numpy(x), torch.from_numpy(y).long())

    # same math: one step each from the same weights
    solver.step(1)
    loop.step()
    err = max(float(np.max(np.abs(net.params[n][j].data - loop.params[2 * i + j].detach().numpy())))
              for i, n in enumerate(LAYERS) for j in (0, 1))
    if err > 1e-4:
        raise SystemExit("solver.step and the hand-written loop disagree (max |dw| %g)" % err)

    for _ in range(3):                       # warm-up
        solver.step(1)
        loop.step()
    # Interleave single steps so background load hits both alike; per-step medians
    # and minima are robust to the remaining noise.
    t_solver, t_torch = [], []
    for _ in range(args.rounds * args.steps):
        t0 = time.perf_counter()
        solver.step(1)
        t1 = time.perf_counter()
        loop.step()
        t2 = time.perf_counter()
        t_solver.append(t1 - t0)
        t_torch.append(t2 - t1)
    ratio = statistics.median(t_solver) / statistics.median(t_torch)
    ratio_min = min(t_solver) / min(t_torch)
    result = dict(batch=args.batch, threads=torch.get_num_threads(), steps=len(t_solver),
                  solver_step_ms=statistics.median(t_solver) * 1e3,
                  torch_step_ms=statistics.median(t_torch) * 1e3, ratio=ratio,
                  ratio_of_minima=ratio_min, first_step_max_abs_diff=err)
    # Where the time goes: the net's forward+backward vs torch's, the update vs the hand one.
    parts = {k: [] for k in ("net_fb", "torch_fb", "solver_update", "hand_update")}
    for _ in range(args.rounds * args.steps // 2):
        t0 = time.perf_counter()
        net.clear_param_diffs()
        net.forward_backward()
        t1 = time.perf_counter()
        solver.apply_update()
        t2 = time.perf_counter()
        for q in loop.params:
            q.grad = None
        loop.forward().backward()
        t3 = time.perf_counter()
        with torch.no_grad():
            for q, h, lm, dm in zip(loop.params, loop.history, loop.lr_mult, loop.decay_mult):
                g = q.grad
                g.add_(q, alpha=WEIGHT_DECAY * dm)
                h.mul_(MOMENTUM).add_(g, alpha=LR * lm)
                q.sub_(h)
        t4 = time.perf_counter()
        for k, v in zip(parts, (t1 - t0, t3 - t2, t2 - t1, t4 - t3)):
            parts[k].append(v)
    med = {k: statistics.median(v) * 1e3 for k, v in parts.items()}
    result.update({k + "_ms": v for k, v in med.items()})
    result["fb_ratio"] = med["net_fb"] / med["torch_fb"]
    result["update_ratio"] = med["solver_update"] / med["hand_update"]
    if args.json:
        print(json.dumps(result))
    else:
        print("LeNet batch %d, %d threads, %d interleaved steps: solver.step %.2f ms, torch loop "
              "%.2f ms (medians); ratio %.3f (target <= 1.15), ratio of minima %.3f; one-step "
              "weight diff %.2g" % (args.batch, result["threads"], result["steps"],
                                    result["solver_step_ms"], result["torch_step_ms"], ratio,
                                    ratio_min, err))
        print("  breakdown (medians): Net.forward_backward %.2f ms vs torch forward+backward %.2f "
              "ms (x%.3f); apply_update %.3f ms vs hand update %.3f ms (x%.3f)"
              % (med["net_fb"], med["torch_fb"], result["fb_ratio"], med["solver_update"],
                 med["hand_update"], result["update_ratio"]))
    return result


if __name__ == "__main__":
    main()
