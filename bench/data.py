"""Data-layer throughput against a bare lmdb + cv2 loop, measured in the same run.

    python bench/data.py [--images N] [--batch B] [--epochs E] [--size S]

Builds two temporary LMDBs of synthetic images (raw uint8 Datums and
JPEG-encoded Datums, S x S x 3) and, for each, times

* ``bare``:  a plain loop -- lmdb cursor, ``Datum.ParseFromString``,
  ``np.frombuffer`` / ``cv2.imdecode``, then the same transformation
  (random crop, random mirror, mean subtraction, scale) into a float32 batch;
* ``Data``:  ``caffe.Net`` holding one Data layer with the same
  transform_param (TRAIN phase, prefetch on), ``net.forward()`` per batch;

and prints images/s for both and their ratio (target >= 0.8).  A second line
per database shows the overlap: ``net.forward()`` followed by a simulated
compute step of the same length as one bare batch, against the serial sum.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import lmdb  # noqa: E402

import caffe  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from caffe.tools._db import open_db  # noqa: E402

MEAN = (104.0, 117.0, 123.0)
SCALE = 0.017


def build_db(path, n, size, encoded, seed=0):
    rng = np.random.RandomState(seed)
    base = rng.randint(0, 256, size=(16, size, size, 3)).astype(np.uint8)
    db = open_db(path, "lmdb", "w")
    txn = db.transaction()
    for i in range(n):
        img = np.roll(base[i % 16], i, axis=1)
        d = caffe_pb2.Datum()
        d.label = i % 10
        if encoded:
            d.data = cv2.imencode(".jpg", img)[1].tobytes()
            d.encoded = True
        else:
            d.channels, d.height, d.width = 3, size, size
            d.data = np.ascontiguousarray(img.transpose(2, 0, 1)).tobytes()
        txn.put("%08d" % i, d.SerializeToString())
        if len(txn) >= 1000:
            txn.commit()
    txn.commit()
    db.close()


def bare_loop(path, batch, n_batches, crop):
    """The plain loop a user would write: lmdb, protobuf, cv2, numpy."""
    env = lmdb.open(path, readonly=True, lock=False, readahead=False)
    txn = env.begin(buffers=False)
    cur = txn.cursor()
    cur.first()
    rng = np.random.RandomState(0)
    mean = np.asarray(MEAN, np.float32).reshape(3, 1, 1)
    scale = np.float32(SCALE)
    datum = caffe_pb2.Datum()
    t0 = time.perf_counter()
    for _ in range(n_batches):
        out = np.empty((batch, 3, crop, crop), np.float32)
        labels = np.empty(batch, np.float32)
        for i in range(batch):
            datum.ParseFromString(cur.value())
            if datum.encoded:
                img = cv2.imdecode(np.frombuffer(datum.data, np.uint8), cv2.IMREAD_UNCHANGED)
                chw = img.transpose(2, 0, 1)
            else:
                chw = np.frombuffer(datum.data, np.uint8).reshape(
                    datum.channels, datum.height, datum.width)
            mirror = rng.randint(2)
            h = rng.randint(chw.shape[1] - crop + 1)
            w = rng.randint(chw.shape[2] - crop + 1)
            x = chw[:, h:h + crop, w:w + crop]
            if mirror:
                x = x[:, :, ::-1]
            np.subtract(x, mean, out=out[i], casting="unsafe")
            out[i] *= scale
            labels[i] = datum.label
            if not cur.next():
                cur.first()
    dt = time.perf_counter() - t0
    env.close()
    return dt


def net_proto(path, batch, crop):
    return ('layer { name: "d" type: "Data" top: "data" top: "label" '
            'transform_param { crop_size: %d mirror: true scale: %r mean_value: %r '
            'mean_value: %r mean_value: %r } '
            'data_param { source: "%s" batch_size: %d backend: LMDB } }'
            % ((crop, SCALE) + MEAN + (path, batch)))


def data_layer(proto_file, n_batches, compute_s=0.0):
    net = caffe.Net(proto_file, caffe.TRAIN)
    net.forward()                     # first batch: thread started, queue warming
    t0 = time.perf_counter()
    for _ in range(n_batches):
        net.forward()
        if compute_s:
            spin_until = time.perf_counter() + compute_s
            time.sleep(compute_s)      # a GIL-free "compute" step
            while time.perf_counter() < spin_until:
                pass
    dt = time.perf_counter() - t0
    del net
    return dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args(argv)
    crop = args.size * 7 // 8
    n_batches = args.images * args.epochs // args.batch
    n_img = n_batches * args.batch
    tmp = tempfile.mkdtemp(prefix="caffe_bench_data_")
    try:
        print("images %dx%dx3 -> crop %d, batch %d, %d batches (%d images) per measurement"
              % (args.size, args.size, crop, args.batch, n_batches, n_img))
        for kind, encoded in (("raw", False), ("jpeg", True)):
            path = os.path.join(tmp, kind)
            build_db(path, args.images, args.size, encoded)
            proto = os.path.join(tmp, kind + ".prototxt")
            with open(proto, "w") as f:
                f.write(net_proto(path, args.batch, crop))
            bare_loop(path, args.batch, 2, crop)       # warm the page cache
            t_bare = bare_loop(path, args.batch, n_batches, crop)
            t_layer = data_layer(proto, n_batches)
            bare_ips, layer_ips = n_img / t_bare, n_img / t_layer
            print("%-4s  bare lmdb+cv2: %9.0f img/s   Data layer (prefetch): %9.0f img/s   "
                  "ratio %.2f" % (kind, bare_ips, layer_ips, layer_ips / bare_ips))
            per_batch = t_bare / n_batches
            t_overlap = data_layer(proto, n_batches, compute_s=per_batch)
            print("      with %.1f ms simulated compute per batch: %.2f s overlapped vs "
                  "%.2f s serial (load + compute)"
                  % (per_batch * 1e3, t_overlap, 2 * t_bare))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
