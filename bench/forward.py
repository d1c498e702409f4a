"""Net.forward against an equivalent hand-written torch.nn module, CPU.

    python bench/forward.py [--repeat N]
    python bench/forward.py --optimised [caffenet,googlenet,resnet50,mobilenet]

The second form is the "optimised" comparison: net.optimize_for_inference()
against hand-written eager PyTorch at batch 1 and 16 (pt/opt > 1: faster).

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
import weakref

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import best_of, median_of  # noqa: E402

# Net construction logs (pycaffe's default) would bury the tables.
os.environ.setdefault("GLOG_minloglevel", "2")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

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


_BN_STATS = weakref.WeakKeyDictionary()    # net -> {bn name: (mean, var)}


def _bn(net, bn, scale, x):
    """Caffe's BatchNorm + Scale as a PyTorch user writes it: one F.batch_norm,
    with the running statistics divided by Caffe's scale factor once (a user's
    module holds them as buffers)."""
    stats = _BN_STATS.setdefault(net, {})
    if bn not in stats:
        p = net.params[bn]
        sf = float(p[2].data[0])
        f = 0.0 if sf == 0 else 1.0 / sf
        stats[bn] = torch.from_numpy(p[0].data * f), torch.from_numpy(p[1].data * f)
    mean, var = stats[bn]
    g, b = W(net, scale, 0), W(net, scale, 1)
    return F.batch_norm(x, mean, var, g, b, False, 0.0, 1e-5)


class ResNet50(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def cbr(self, x, conv, bn, scale, stride=1, pad=0, relu=True):
        x = F.conv2d(x, W(self.net, conv), None, stride, pad)
        x = _bn(self.net, bn, scale, x)
        return F.relu(x) if relu else x

    def forward(self, x):
        x = self.cbr(x, "conv1", "bn_conv1", "scale_conv1", 2, 3)
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        for stage, blocks in ((2, 3), (3, 4), (4, 6), (5, 3)):
            for b in range(blocks):
                t = "%d%s" % (stage, "abcdef"[b])
                s = 2 if (b == 0 and stage > 2) else 1
                short = x if b else self.cbr(x, "res%s_branch1" % t, "bn%s_branch1" % t,
                                             "scale%s_branch1" % t, s, relu=False)
                y = self.cbr(x, "res%s_branch2a" % t, "bn%s_branch2a" % t, "scale%s_branch2a" % t, s)
                y = self.cbr(y, "res%s_branch2b" % t, "bn%s_branch2b" % t, "scale%s_branch2b" % t,
                             1, 1)
                y = self.cbr(y, "res%s_branch2c" % t, "bn%s_branch2c" % t, "scale%s_branch2c" % t,
                             relu=False)
                x = F.relu(short + y)
        x = F.avg_pool2d(x, 7, 1).flatten(1)
        return F.softmax(F.linear(x, W(self.net, "fc1000"), W(self.net, "fc1000", 1)), dim=1)


class MobileNet(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        n = self.net
        x = F.relu(_bn(n, "conv1/bn", "conv1/scale", F.conv2d(x, W(n, "conv1"), None, 2, 1)))
        c = 32
        plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
            [(1024, 2), (1024, 1)]
        for i, (out, s) in enumerate(plan):
            dw, sep = "conv%d/dw" % (i + 2), "conv%d/sep" % (i + 2)
            x = F.relu(_bn(n, dw + "/bn", dw + "/scale", F.conv2d(x, W(n, dw), None, s, 1, 1, c)))
            x = F.relu(_bn(n, sep + "/bn", sep + "/scale", F.conv2d(x, W(n, sep))))
            c = out
        x = F.adaptive_avg_pool2d(x, 1)
        x = F.conv2d(x, W(n, "fc7"), W(n, "fc7", 1))
        return F.softmax(x, dim=1)


class GoogLeNet(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def c(self, x, name, pad=0, stride=1):
        return F.relu(F.conv2d(x, W(self.net, name), W(self.net, name, 1), stride, pad))

    def forward(self, x):
        x = self.c(x, "conv1/7x7_s2", 3, 2)
        x = F.local_response_norm(F.max_pool2d(x, 3, 2, ceil_mode=True), 5, 1e-4, 0.75)
        x = self.c(self.c(x, "conv2/3x3_reduce"), "conv2/3x3", 1)
        x = F.max_pool2d(F.local_response_norm(x, 5, 1e-4, 0.75), 3, 2, ceil_mode=True)
        for tag in ("3a", "3b", "pool", "4a", "4b", "4c", "4d", "4e", "pool", "5a", "5b"):
            if tag == "pool":
                x = F.max_pool2d(x, 3, 2, ceil_mode=True)
                continue
            p = "inception_%s/" % tag
            b1 = self.c(x, p + "1x1")
            b2 = self.c(self.c(x, p + "3x3_reduce"), p + "3x3", 1)
            b3 = self.c(self.c(x, p + "5x5_reduce"), p + "5x5", 2)
            b4 = self.c(F.max_pool2d(x, 3, 1, 1, ceil_mode=True), p + "pool_proj")
            x = torch.cat([b1, b2, b3, b4], 1)
        x = F.avg_pool2d(x, 7, 1).flatten(1)
        x = F.linear(x, W(self.net, "loss3/classifier"), W(self.net, "loss3/classifier", 1))
        return F.softmax(x, dim=1)


TORCH_MODULES = {"lenet": LeNet, "cifar10_quick": Cifar10Quick, "caffenet": CaffeNet,
                 "googlenet": GoogLeNet, "resnet50": ResNet50, "mobilenet": MobileNet}
# deploy nets of the optimised-path comparison (compat_tests/models, written by make_models.py)
OPT_MODELS = {"caffenet": (3, 227, 227), "googlenet": (3, 224, 224),
              "resnet50": (3, 224, 224), "mobilenet": (3, 224, 224)}
TEST_MODELS = os.path.join(os.path.dirname(HERE), "compat_tests", "models")


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


def param_shapes(net):
    return {name: [list(b.shape) for b in blobs] for name, blobs in net.params.items()}


class _Shapes:
    """Stand-in for a Net when the torch module is built without one."""

    def __init__(self, shapes):
        self.params = {k: [_Blob(s) for s in v] for k, v in shapes.items()}


class _Blob:
    def __init__(self, shape=None, data=None):
        self.data = torch.randn(*shape).numpy() if data is None else data


class _WeightCopy:
    """Stand-in for a Net holding copies of its weights: the hand-written module
    then shares no memory with the net (no live views of the net's weights,
    which an optimised net would have to watch)."""

    def __init__(self, net):
        self.params = {k: [_Blob(data=b.data.copy()) for b in v] for k, v in net.params.items()}


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


def _plausible_weights(net):
    """Random weights with BatchNorm statistics of a trained net (var > 0)."""
    rng = torch.Generator().manual_seed(0)
    for name, blobs in net.params.items():
        kind = net.layer_dict[name].type
        for j, b in enumerate(blobs):
            shape = b.data.shape
            if kind == "BatchNorm":
                b.data[...] = [torch.randn(shape, generator=rng) * 0.1,
                               torch.rand(shape, generator=rng) + 0.5, torch.ones(shape)][j].numpy()
            elif kind == "Scale":
                b.data[...] = (torch.rand(shape, generator=rng) * 0.5 + 0.25 if j == 0 else
                               torch.randn(shape, generator=rng) * 0.1).numpy()
            elif j == 0 and len(shape) > 1:
                fan = float(torch.tensor(shape[1:]).prod())
                b.data[...] = (torch.randn(shape, generator=rng) * (2.0 / fan) ** 0.5).numpy()
            else:
                b.data[...] = (torch.randn(shape, generator=rng) * 0.01).numpy()


def optimised(models, repeat, rounds=3, batches=(1, 16)):
    """Net.forward after net.optimize_for_inference() against the hand-written
    eager module, same weights and inputs, medians of interleaved rounds."""
    import caffe
    caffe.set_mode_cpu()
    print("%-10s %5s %10s %10s %10s %9s %9s %9s" % (
        "model", "batch", "torch ms", "caffe ms", "opt ms", "caffe/pt", "pt/opt", "max rel"))
    results = []
    for model in models:
        for batch in batches:
            shape = OPT_MODELS[model]
            net = caffe.Net(os.path.join(TEST_MODELS, "%s_deploy.prototxt" % model), caffe.TEST)
            net.blobs["data"].reshape(batch, *shape)
            net.reshape()
            _plausible_weights(net)
            x = torch.randn(batch, *shape)
            net.blobs["data"].data[...] = x.numpy()
            mod = TORCH_MODULES[model](_WeightCopy(net)).eval()
            with torch.no_grad():
                ref = mod(x).reshape(batch, -1)
            net.forward()
            plain = torch.from_numpy(net.blobs["prob"].data.copy()).reshape(batch, -1)
            fast = caffe.Net(os.path.join(TEST_MODELS, "%s_deploy.prototxt" % model), caffe.TEST)
            fast.blobs["data"].reshape(batch, *shape)
            fast.reshape()
            fast.share_with(net)
            fast.blobs["data"].data[...] = x.numpy()
            fast.optimize_for_inference()
            fast.forward()
            out = torch.from_numpy(fast.blobs["prob"].data.copy()).reshape(batch, -1)
            err = float((out - plain).abs().max() / plain.abs().max())
            t_pt, t_caffe, t_opt = [], [], []
            for _ in range(rounds):
                with torch.no_grad():
                    t_pt.append(median_of(lambda: mod(x), repeat))  # noqa: B023 (called at once)
                t_caffe.append(median_of(net.forward, repeat))
                t_opt.append(median_of(fast.forward, repeat))
            t_pt, t_caffe, t_opt = (sorted(t)[len(t) // 2] for t in (t_pt, t_caffe, t_opt))
            print("%-10s %5d %10.1f %10.1f %10.1f %9.2f %9.2f %9.1e   (%s; torch vs caffe %.1e)"
                  % (model, batch, t_pt * 1e3, t_caffe * 1e3, t_opt * 1e3, t_caffe / t_pt,
                     t_pt / t_opt, err, fast._inference.kind, float((ref - plain).abs().max())))
            results.append(dict(model=model, batch=batch, speedup=t_pt / t_opt, err=err))
    return results


def machine():
    """One line naming what the numbers were measured on."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return "%s, %d CPU(s), torch %s (%s kernels, %d threads)" % (
        model, os.cpu_count() or 0, torch.__version__, torch.backends.cpu.get_cpu_capability(),
        torch.get_num_threads())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--models", default="lenet,cifar10_quick,caffenet")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--optimised", nargs="?", const="caffenet,googlenet,resnet50,mobilenet",
                        help="compare net.optimize_for_inference() with eager PyTorch on "
                             "these models (default: caffenet,googlenet,resnet50,mobilenet)")
    args = parser.parse_args(argv)
    print(machine())
    if args.optimised:
        return optimised(args.optimised.split(","), max(3, args.repeat // 2))
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
            t_caffe = best_of(net.forward, repeat, warmup=2)
            with torch.no_grad():
                t_torch = best_of(lambda: mod(x), repeat, warmup=2)  # noqa: B023 (called at once)
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
