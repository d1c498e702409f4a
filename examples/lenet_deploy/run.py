"""Classify sample digits with the shipped, trained LeNet, as a pycaffe user would.

    python examples/lenet_deploy/run.py [--gpu]

Builds the net from deploy.prototxt, loads lenet.caffemodel, draws one sample
of each digit 0-9 in the style of examples/lenet_synthetic (seven-segment
glyphs with random size, slant and noise, from a seed the training set did not
use), preprocesses them with caffe.io.Transformer and prints what the net
says for each.

lenet.caffemodel was trained once with the recipe in examples/lenet_synthetic:

    cd examples/lenet_synthetic
    python train.py --iters 2000 --save ../lenet_deploy/lenet.caffemodel

(2000 SGD iterations of batch 64 on 2000 synthetic digits, lenet_solver.prototxt,
random_seed 1: test accuracy 0.978 on the 500 test digits.)
"""
import argparse
import os
import sys

import numpy as np

import caffe

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE_SEED = 2026


def sample_digits(seed=SAMPLE_SEED):
    """One HxWx1 float image in [0, 1] per digit 0-9, drawn as the training data is."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lenet_synthetic"))
    from make_data import draw_digit
    rng = np.random.RandomState(seed)
    return [draw_digit(d, rng)[:, :, None] for d in range(10)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="run in GPU mode")
    args = parser.parse_args(argv)
    if args.gpu:
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    net = caffe.Net(os.path.join(HERE, "deploy.prototxt"),
                    os.path.join(HERE, "lenet.caffemodel"), caffe.TEST)
    print("net: %s  inputs: %s  outputs: %s" % (net.name, net.inputs, net.outputs))
    for name, blob in net.blobs.items():
        print("  blob %-6s %s" % (name, tuple(blob.shape)))
    transformer = caffe.io.Transformer({"data": net.blobs["data"].data.shape})
    transformer.set_transpose("data", (2, 0, 1))
    correct = 0
    for digit, image in enumerate(sample_digits()):
        net.blobs["data"].data[...] = transformer.preprocess("data", image)
        prob = net.forward()["prob"][0]
        guess = int(prob.argmax())
        correct += guess == digit
        print("digit %d -> class %d (p=%.3f)%s" % (digit, guess, prob[guess],
                                                    "" if guess == digit else "  WRONG"))
    print("%d/10 sample digits classified correctly" % correct)
    return 0 if correct == 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
