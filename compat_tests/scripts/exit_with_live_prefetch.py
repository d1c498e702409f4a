"""Exit with ImageData and encoded-LMDB Data nets alive, RUNS times.

Usage: exit_with_live_prefetch.py WORKDIR RUNS PARALLEL

Imports caffe once, then forks RUNS children (PARALLEL at a time).  Each child
builds both nets, takes one batch (so the prefetch threads are busy decoding
the next ones) and returns from the script, i.e. exits through the normal
interpreter shutdown.  Prints one line per child: its exit status and
whether it wrote anything to stderr; exits 1 unless every child exited 0
silently.
"""
import os
import sys

import cv2
import numpy as np
import torch

import caffe
from caffe.tools._db import open_db


def make_inputs(work):
    rng = np.random.RandomState(0)
    lines = []
    db = open_db(os.path.join(work, "db"), "lmdb", "w")
    txn = db.transaction()
    datum = caffe.proto.caffe_pb2.Datum()
    for i in range(16):
        img = rng.randint(0, 256, (96, 96, 3)).astype(np.uint8)
        name = "img%02d.png" % i
        cv2.imwrite(os.path.join(work, name), img)
        lines.append("%s %d" % (name, i % 3))
        datum.Clear()
        datum.encoded = True
        datum.data = cv2.imencode(".png", img)[1].tobytes()
        datum.label = i % 3
        txn.put("%08d" % i, datum.SerializeToString())
    txn.commit()
    db.close()
    with open(os.path.join(work, "list.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    net = os.path.join(work, "net.prototxt")
    with open(net, "w") as f:
        f.write('layer { name: "img" type: "ImageData" top: "a" top: "la" '
                'image_data_param { source: "%s/list.txt" root_folder: "%s/" batch_size: 2 '
                'new_height: 80 new_width: 80 shuffle: true } '
                'transform_param { mirror: true crop_size: 64 } }\n'
                'layer { name: "lmdb" type: "Data" top: "b" top: "lb" '
                'data_param { source: "%s/db" batch_size: 2 backend: LMDB prefetch: 2 } '
                'transform_param { mirror: true crop_size: 64 } }\n' % (work, work, work))
    return net


def child(net_file, errfile):
    fd = os.open(errfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    net = caffe.Net(net_file, caffe.TRAIN)
    net.forward()
    globals()["alive"] = net          # still referenced when the interpreter exits


def main():
    work, runs, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    net_file = make_inputs(work)
    torch.set_num_threads(1)          # torch's OpenMP pool does not survive fork()
    status = {}
    pending = list(range(runs))
    running = {}
    while pending or running:
        while pending and len(running) < parallel:
            k = pending.pop(0)
            errfile = os.path.join(work, "err%d.txt" % k)
            pid = os.fork()
            if pid == 0:
                child(net_file, errfile)
                return "child"
            running[pid] = (k, errfile)
        pid, st = os.wait()
        k, errfile = running.pop(pid)
        status[k] = (os.waitstatus_to_exitcode(st), open(errfile).read())
    bad = 0
    for k in sorted(status):
        rc, err = status[k]
        print("run %d rc %d%s" % (k, rc, (" stderr: " + err.strip()[:200]) if err else ""))
        bad += rc != 0 or "terminate called" in err
    return "bad" if bad else "ok"


if __name__ == "__main__":
    result = main()
    if result == "bad":
        sys.exit(1)
