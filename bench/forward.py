"""Net.forward against an equivalent hand-written torch.nn module, CPU.

    python bench/forward.py [--repeat N]

For LeNet, CIFAR-10 quick and a CaffeNet-shaped deploy net at batch 1 and 16,
prints the time ratio caffe.Net.forward / torch module (same weights, same
inputs, measured in the same run; target <= 1.10) and the peak memory of each,
measured in a fresh subprocess per variant (peak resident memory, sampled, of
building the model with its weights and running two forwards, over the
process's memory after its imports; target <= 1.2x).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {
    "lenet": ("lenet_deploy.prototxt", (1, 28, 28)),
    "cifar10_quick": ("cifar10_quick.prototxt", (3, 32, 32)),
    "caffenet": ("caffenet_deploy.prototxt", (3, 227, 227)),
}


def W(net, name, i=0):
    return torch.from_numpy(net.params[name][i].data)   # no copy: fair memory baseline


class LeNet(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.w = {k: (W(net, k, 0), W(net, k, 1)) for k in ("conv1", "conv2", "ip1", "ip2")}

    def forward(self, x):
        w = self.w
        x = F.max_pool2d(F.conv2d(x, *w["conv1"]), 2, 2, ceil_mode=True)
        x = F.max_pool2d(F.conv2d(x, *w["conv2"]), 2, 2, ceil_mode=True)
        x = F.relu(F.linear(x.flatten(1), *w["ip1"]))
        return F.softmax(F.linear(x, *w["ip2"]), dim=1)


class Cifar10Quick(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.w = {k: (W(net, k, 0), W(net, k, 1)) for k in ("conv1", "conv2", "conv3", "ip1", "ip2")}

    def forward(self, x):
        w = self.w
        x = F.relu(F.max_pool2d(F.conv2d(x, *w["conv1"], padding=2), 3, 2, ceil_mode=True))
        x = F.avg_pool2d(F.relu(F.conv2d(x, *w["conv2"], padding=2)), 3, 2, ceil_mode=True)
        x = F.avg_pool2d(F.relu(F.conv2d(x, *w["conv3"], padding=2)), 3, 2, ceil_mode=True)
        x = F.linear(F.linear(x.flatten(1), *w["ip1"]), *w["ip2"])
        return F.softmax(x, dim=1)


class CaffeNet(nn.Module):
    def __init__(self, net):
        super().__init__()
        names = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
        self.w = {k: (W(net, k, 0), W(net, k, 1)) for k in names}

    def forward(self, x):
        w = self.w
        x = F.relu(F.conv2d(x, *w["conv1"], stride=4))
        x = F.local_response_norm(F.max_pool2d(x, 3, 2, ceil_mode=True), 5, 1e-4, 0.75)
        x = F.relu(F.conv2d(x, *w["conv2"], padding=2, groups=2))
        x = F.local_response_norm(F.max_pool2d(x, 3, 2, ceil_mode=True), 5, 1e-4, 0.75)
        x = F.relu(F.conv2d(x, *w["conv3"], padding=1))
        x = F.relu(F.conv2d(x, *w["conv4"], padding=1, groups=2))
        x = F.relu(F.conv2d(x, *w["conv5"], padding=1, groups=2))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True).flatten(1)
        x = F.relu(F.linear(x, *w["fc6"]))
        x = F.relu(F.linear(x, *w["fc7"]))
        return F.softmax(F.linear(x, *w["fc8"]), dim=1)


TORCH_MODULES = {"lenet": LeNet, "cifar10_quick": Cifar10Quick, "caffenet": CaffeNet}


def build(model, batch, torch_module=True):
    import caffe
    caffe.set_mode_cpu()
    caffe.set_random_seed(0)
    proto, shape = MODELS[model]
    net = caffe.Net(os.path.join(HERE, "models", proto), caffe.TEST)
    net.blobs["data"].reshape(batch, *shape)
    net.reshape()
    x = torch.randn(batch, *shape)
    net.blobs["data"].data[...] = x.numpy()
    mod = TORCH_MODULES[model](net).eval() if torch_module else None
    return net, mod, x


def time_it(fn, repeat):
    fn()
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def param_shapes(net):
    return {name: [list(b.shape) for b in blobs] for name, blobs in net.params.items()}


class _Shapes:
    """Stand-in for a Net when the torch module is built without one."""

    def __init__(self, shapes):
        self.params = {k: [_Blob(s) for s in v] for k, v in shapes.items()}


class _Blob:
    def __init__(self, shape):
        self.data = torch.randn(*shape).numpy()


_CHILD = """
import json, os, sys, threading, time, torch
sys.path.insert(0, %(here)r)
import caffe, forward as b
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE
peak = [0]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.0005)
model, batch, which = %(model)r, %(batch)d, %(which)r
proto, shape = b.MODELS[model]
base = rss()
thread = threading.Thread(target=sample, daemon=True)
thread.start()
if which == "caffe":
    net, _, _ = b.build(model, batch, torch_module=False)
    net.forward(); net.forward()
else:
    mod = b.TORCH_MODULES[model](b._Shapes(json.loads(%(shapes)r)))
    x = torch.randn(batch, *shape)
    with torch.no_grad():
        mod(x); mod(x)
peak[0] = max(peak[0], rss())
stop.set(); thread.join()
print((peak[0] - base) / 2.0 ** 20)
"""


def measure_memory(model, batch, which, shapes):
    """Peak resident memory (MB, sampled every 0.5 ms) of building the model
    and running two forwards, in a fresh subprocess, over its RSS after imports."""
    code = _CHILD % dict(here=HERE, model=model, batch=batch, which=which,
                         shapes=json.dumps(shapes))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--models", default="lenet,cifar10_quick,caffenet")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args(argv)
    print("%-14s %5s %12s %12s %7s %10s %10s %7s" % ("model", "batch", "caffe ms", "torch ms",
                                                     "ratio", "caffe MB", "torch MB", "mem x"))
    results = []
    for model in args.models.split(","):
        for batch in (1, 16):
            net, mod, x = build(model, batch)
            with torch.no_grad():
                ref = mod(x)
            out = net.forward()["prob"]
            err = float((torch.from_numpy(out) - ref).abs().max())
            repeat = args.repeat if model != "caffenet" else max(3, args.repeat // 3)
            t_caffe = time_it(net.forward, repeat)
            with torch.no_grad():
                t_torch = time_it(lambda: mod(x), repeat)
            if args.no_memory:
                m_caffe = m_torch = float("nan")
            else:
                shapes = param_shapes(net)
                m_caffe = measure_memory(model, batch, "caffe", shapes)
                m_torch = measure_memory(model, batch, "torch", shapes)
            ratio = t_caffe / t_torch
            mem = m_caffe / m_torch if m_torch > 0 else float("nan")
            print("%-14s %5d %12.3f %12.3f %7.2f %10.1f %10.1f %7.2f   (max |diff| %.1e)"
                  % (model, batch, t_caffe * 1e3, t_torch * 1e3, ratio, m_caffe, m_torch, mem,
                     err))
            results.append(dict(model=model, batch=batch, ratio=ratio, mem_ratio=mem))
    return results


if __name__ == "__main__":
    main()
