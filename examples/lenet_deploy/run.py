"""Run the shipped LeNet deploy net end to end, as a pycaffe user would.

    python examples/lenet_deploy/run.py [--gpu]

Builds the net from deploy.prototxt, loads lenet.caffemodel (seeded weights
from the golden reference set; the real Caffe build gave the same outputs),
draws a synthetic digit, preprocesses it with caffe.io.Transformer and prints
the class probabilities.
"""
import argparse
import os

import numpy as np

import caffe

HERE = os.path.dirname(os.path.abspath(__file__))


def synthetic_digit(size=28):
    """A white '7' on black, as an HxWx1 float image in [0, 1]."""
    img = np.zeros((size, size, 1), dtype=np.float32)
    img[5:8, 6:22, 0] = 1.0
    for r in range(8, 24):
        c = 21 - (r - 8) // 2
        img[r, c - 1:c + 2, 0] = 1.0
    return img


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
    print("net: %s" % net.name)
    print("inputs: %s  outputs: %s" % (net.inputs, net.outputs))
    for name, blob in net.blobs.items():
        print("  blob %-6s %s" % (name, tuple(blob.shape)))
    transformer = caffe.io.Transformer({"data": net.blobs["data"].data.shape})
    transformer.set_transpose("data", (2, 0, 1))
    net.blobs["data"].data[...] = transformer.preprocess("data", synthetic_digit())
    out = net.forward()
    prob = out["prob"][0]
    print("prob: %s" % np.array2string(prob, precision=4, suppress_small=True))
    top = prob.argsort()[::-1][:3]
    print("top-3 classes: %s" % ", ".join("%d (%.4f)" % (k, prob[k]) for k in top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
