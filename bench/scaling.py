"""Data-parallel scaling: 1 process vs N processes (caffe.distributed).

    python bench/scaling.py [--procs 2] [--batch 32] [--iters 20] [--warmup 3] [--rounds 3] [--threads 1] [--gpu]

The net is LeNet (conv20-pool-conv50-pool-ip500-relu-ip10-SoftmaxWithLoss) fed
by a Data layer from a synthetic LMDB, trained with momentum SGD; every rank
has batch ``--batch`` (so N ranks process N times the images per iteration,
Caffe's multi-GPU convention).  Both runs are launched the same way (spawned
processes, one per rank).  On the CPU each rank is one "device" of
``--threads`` torch threads (default 1), so N ranks use N times the cores, as
N GPUs would; ``--threads 0`` gives every run the same cores instead (cores/N
per rank), which on a loaded machine mostly measures thread contention.  With
``--gpu`` rank r uses GPU r (NCCL).  Printed:
images/s of each configuration (timed on rank 0 between barriers, after warm-up;
best of ``--rounds`` runs taken alternately) and the efficiency
ips(N) / (N * ips(1)).
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import caffe  # noqa: E402
from caffe import distributed  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402

NET = """name: "LeNetScaling"
layer { name: "mnist" type: "Data" top: "data" top: "label"
  transform_param { scale: 0.00390625 }
  data_param { source: "%(source)s" batch_size: %(batch)d backend: LMDB } }
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


def make_data(folder, n):
    from caffe.tools._db import open_db
    rng = np.random.RandomState(0)
    db = open_db(os.path.join(folder, "train_lmdb"), "lmdb", "w")
    txn = db.transaction()
    for i in range(n):
        d = caffe_pb2.Datum(channels=1, height=28, width=28, label=int(rng.randint(10)))
        d.data = rng.randint(0, 256, (1, 28, 28)).astype(np.uint8).tobytes()
        txn.put("%08d" % i, d.SerializeToString())
    txn.commit()
    db.close()
    return os.path.join(folder, "train_lmdb")


def make_solver(folder, source, batch):
    net = os.path.join(folder, "net.prototxt")
    with open(net, "w") as f:
        f.write(NET % {"source": source, "batch": batch})
    path = os.path.join(folder, "solver.prototxt")
    with open(path, "w") as f:
        f.write('net: "%s"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\n'
                'lr_policy: "fixed"\nmax_iter: 100000\ndisplay: 0\nrandom_seed: 1\n'
                'snapshot_prefix: "%s"\n' % (net, os.path.join(folder, "snap")))
    return path


def _worker(rank, solver_file, warmup, iters, threads, gpu, out):
    import torch
    torch.set_num_threads(threads)
    if gpu:
        caffe.set_device(rank)
        caffe.set_mode_gpu()
    world = distributed.init_from_env()
    solver = caffe.get_solver(solver_file)
    if world:
        nccl = caffe.NCCL(solver)
        nccl.bcast()
        solver.add_callback(nccl)
        solver.net.after_backward(nccl)

    def sync():
        if gpu:
            torch.cuda.synchronize()
        if world:
            import torch.distributed as dist
            dist.barrier()

    solver.step(warmup)
    sync()
    t0 = time.perf_counter()
    solver.step(iters)
    sync()
    elapsed = time.perf_counter() - t0
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"seconds": elapsed}, f)
    distributed.shutdown()


def measure(nprocs, solver_file, args, folder):
    out = os.path.join(folder, "result_%d.json" % nprocs)
    cores = os.cpu_count() or 1
    threads = args.threads if args.threads > 0 else max(1, cores // nprocs)
    failed = distributed.spawn(_worker, nprocs, (solver_file, args.warmup, args.iters, threads,
                                                 args.gpu, out))
    if failed:
        raise SystemExit("scaling run with %d processes failed: %s" % (nprocs, failed))
    with open(out) as f:
        seconds = json.load(f)["seconds"]
    return nprocs * args.batch * args.iters / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="alternated runs; best of each")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per rank (0: cores / ranks)")
    ap.add_argument("--gpu", action="store_true", help="rank r on GPU r, NCCL")
    args = ap.parse_args()
    if args.gpu:
        import torch
        if torch.cuda.device_count() < args.procs:
            raise SystemExit("--gpu needs %d GPUs, found %d"
                             % (args.procs, torch.cuda.device_count()))
    with tempfile.TemporaryDirectory() as folder:
        n_records = args.batch * args.procs * (args.iters + args.warmup + 1)
        source = make_data(folder, n_records)
        solver_file = make_solver(folder, source, args.batch)
        ones, ns = [], []
        for _ in range(args.rounds):      # alternated, so background load hits both alike
            ones.append(measure(1, solver_file, args, folder))
            ns.append(measure(args.procs, solver_file, args, folder))
        ips1, ipsn = max(ones), max(ns)
    where = "GPU" if args.gpu else "CPU (%d cores)" % (os.cpu_count() or 1)
    print("scaling on %s, LeNet, batch %d per rank, %d iterations"
          % (where, args.batch, args.iters))
    print("  1 process : %9.1f images/s   (runs: %s)" % (ips1, ", ".join("%.1f" % x for x in ones)))
    print("  %d processes: %9.1f images/s   (runs: %s)" % (args.procs, ipsn,
                                                          ", ".join("%.1f" % x for x in ns)))
    print("  speed-up %.2fx, efficiency %.0f%% (ips(N) / (N * ips(1)))"
          % (ipsn / ips1, 100.0 * ipsn / (args.procs * ips1)))


if __name__ == "__main__":
    main()
