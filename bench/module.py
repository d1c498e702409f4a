"""caffe.pytorch module, eager and torch.compile'd, against caffe.Net.forward (CPU).

    python bench/module.py [--repeat N] [--models lenet,cifar10_quick,caffenet]
                           [--batches 1,16] [--no-compile]

For each model and batch: the best-of-N forward time of caffe.Net, of the
module in eager mode (under no_grad) and of torch.compile(module) (default
inductor backend; its one-off compile time is printed separately), all in one
run with the same weights and inputs, and the ratios module/Net and
compiled/Net (below 1 means faster than the Net).  There is no target yet.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from _timing import best_of  # noqa: E402

import caffe  # noqa: E402
import caffe.pytorch  # noqa: E402

MODELS = {
    "lenet": "lenet_deploy.prototxt",
    "cifar10_quick": "cifar10_quick.prototxt",
    "caffenet": "caffenet_deploy.prototxt",
}


def run(model, batch, repeat, compile_too):
    path = os.path.join(HERE, "models", MODELS[model])
    caffe.set_random_seed(0)
    net = caffe.Net(path, caffe.TEST)          # filler weights: the same on both sides
    name = net.inputs[0]
    shape = (batch,) + tuple(net.blobs[name].shape[1:])
    net.blobs[name].reshape(*shape)
    net.reshape()
    x = np.random.RandomState(0).rand(*shape).astype(np.float32)
    net.blobs[name].data[...] = x
    module = net.to_pytorch().eval()
    xt = torch.from_numpy(x)
    row = {"net": best_of(net.forward, repeat, warmup=1)}
    with torch.no_grad():
        out = module(xt)
        ref = net.blobs[net.outputs[0]].data
        assert np.allclose(out[net.outputs[0]].numpy(), ref, rtol=1e-4, atol=1e-6)
        row["eager"] = best_of(lambda: module(xt), repeat, warmup=1)
        if compile_too:
            compiled = torch.compile(module)
            t0 = time.perf_counter()
            compiled(xt)
            row["compile_s"] = time.perf_counter() - t0
            row["compiled"] = best_of(lambda: compiled(xt), repeat, warmup=1)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--models", default="lenet,cifar10_quick,caffenet")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    print("%-14s %5s %10s %10s %8s %10s %9s %10s"
          % ("model", "batch", "Net ms", "eager ms", "eager/Net", "compiled ms",
             "comp/Net", "compile s"))
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            r = run(model, batch, args.repeat, not args.no_compile)
            comp = ("%10.2f %9.2f %10.1f" % (r["compiled"] * 1e3, r["compiled"] / r["net"],
                                             r["compile_s"]) if "compiled" in r else
                    "%10s %9s %10s" % ("-", "-", "-"))
            print("%-14s %5d %10.2f %10.2f %8.2f %s"
                  % (model, batch, r["net"] * 1e3, r["eager"] * 1e3, r["eager"] / r["net"],
                     comp), flush=True)


if __name__ == "__main__":
    main()
