"""Synthetic handwritten-like digits for the LeNet training example.

    python make_data.py [--train N] [--test N] [--out DIR]

Draws the ten digits as seven-segment glyphs on a 28x28 canvas with random
position, size, stroke width, slant and noise, and writes Caffe's HDF5Data
input: ``train.h5``/``test.h5`` (datasets ``data`` N x 1 x 28 x 28 float32 in
[0, 1) scaled by 0.00390625 as the MNIST example does, and ``label`` N float32)
plus the list files ``train_h5.txt``/``test_h5.txt`` that name them.
"""
import argparse
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

#        a  b  c  d  e  f  g      (segments: top, upper right, lower right,
SEGMENTS = {                     #  bottom, lower left, upper left, middle)
    0: (1, 1, 1, 1, 1, 1, 0),
    1: (0, 1, 1, 0, 0, 0, 0),
    2: (1, 1, 0, 1, 1, 0, 1),
    3: (1, 1, 1, 1, 0, 0, 1),
    4: (0, 1, 1, 0, 0, 1, 1),
    5: (1, 0, 1, 1, 0, 1, 1),
    6: (1, 0, 1, 1, 1, 1, 1),
    7: (1, 1, 1, 0, 0, 0, 0),
    8: (1, 1, 1, 1, 1, 1, 1),
    9: (1, 1, 1, 1, 0, 1, 1),
}


def draw_digit(digit, rng, size=28):
    img = np.zeros((size, size), dtype=np.float32)
    h = rng.randint(14, 21)                  # glyph height
    w = rng.randint(8, 13)                   # glyph width
    t = rng.randint(2, 4)                    # stroke width
    top = rng.randint(1, size - h - 1)
    left = rng.randint(3, size - w - 3)
    slant = rng.uniform(-0.25, 0.25)
    mid = top + h // 2
    a, b, c, d, e, f, g = SEGMENTS[digit]

    def hline(r):
        img[r:r + t, left:left + w] = 1.0

    def vline(r0, r1, col):
        img[r0:r1, col:col + t] = 1.0

    if a:
        hline(top)
    if g:
        hline(mid - t // 2)
    if d:
        hline(top + h - t)
    if f:
        vline(top, mid + 1, left)
    if b:
        vline(top, mid + 1, left + w - t)
    if e:
        vline(mid, top + h, left)
    if c:
        vline(mid, top + h, left + w - t)
    # slant: shift each row horizontally
    out = np.zeros_like(img)
    for r in range(size):
        shift = int(round(slant * (r - mid)))
        out[r] = np.roll(img[r], shift)
    out *= rng.uniform(0.7, 1.0)
    out += rng.uniform(0, 0.15, size=out.shape).astype(np.float32)
    return np.clip(out, 0, 1) * (255.0 * 0.00390625)


def make_set(n, rng):
    labels = rng.randint(0, 10, size=n)
    data = np.stack([draw_digit(int(k), rng) for k in labels])[:, None, :, :]
    return data.astype(np.float32), labels.astype(np.float32)


def write(out_dir, name, data, labels):
    import h5py
    path = os.path.join(out_dir, name + ".h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("label", data=labels)
    with open(os.path.join(out_dir, name + "_h5.txt"), "w") as f:
        f.write(name + ".h5\n")
    return path


def make(out_dir=HERE, n_train=2000, n_test=500, seed=0):
    rng = np.random.RandomState(seed)
    write(out_dir, "train", *make_set(n_train, rng))
    write(out_dir, "test", *make_set(n_test, rng))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args(argv)
    make(args.out, args.train, args.test)
    print("wrote train.h5 (%d) and test.h5 (%d) in %s" % (args.train, args.test, args.out))


if __name__ == "__main__":
    main()
