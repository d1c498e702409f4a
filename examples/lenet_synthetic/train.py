"""Train LeNet on synthetic digits with pycaffe's solver API.

    python examples/lenet_synthetic/train.py [--iters N] [--get-solver] [--gpu]

Makes the data (make_data.py) if it is not there, then trains
lenet_train_test.prototxt with lenet_solver.prototxt: by default through
``caffe.SGDSolver`` stepping by hand (the 01-learning-lenet notebook's loop),
with ``--get-solver`` through ``caffe.get_solver(...).solve()``, which also
runs the test net every ``test_interval`` iterations and logs its accuracy.
As in Caffe, the paths inside the prototxt files are relative to the working
directory, so the script works from its own folder.
"""
import argparse
import logging
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _prepare(workdir):
    sys.path.insert(0, HERE)
    import make_data
    if not (os.path.exists(os.path.join(workdir, "train.h5"))
            and os.path.exists(os.path.join(workdir, "test.h5"))):
        make_data.make(workdir)
    os.makedirs(os.path.join(workdir, "snapshots"), exist_ok=True)


def _test_accuracy(solver):
    net = solver.test_nets[0]
    solver.share_weights(net)
    acc = []
    for _ in range(solver.param.test_iter[0]):
        net.forward()
        acc.append(float(net.blobs["accuracy"].data))
    return float(np.mean(acc))


def save_deploy(train_net, path):
    """Copy the trained layers into the deploy net (Input + Softmax instead of the
    data, accuracy and loss layers) and write its caffemodel: what
    examples/lenet_deploy/lenet.caffemodel was made with."""
    import caffe
    deploy = caffe.Net(os.path.join(os.path.dirname(HERE), "lenet_deploy", "deploy.prototxt"),
                       caffe.TEST)
    for name, blobs in deploy.params.items():
        for dst, src in zip(blobs, train_net.params[name]):
            dst.data[...] = src.data
    deploy.save(path)


def train_sgd(iters, workdir=HERE, return_solver=False):
    """``caffe.SGDSolver`` stepped by hand; returns (losses per iteration, test accuracy)
    and, with ``return_solver``, the solver."""
    import caffe
    old = os.getcwd()
    os.chdir(workdir)
    try:
        _prepare(workdir)
        solver = caffe.SGDSolver("lenet_solver.prototxt")
        losses = []
        for _ in range(iters):
            solver.step(1)
            losses.append(float(solver.net.blobs["loss"].data))
        if return_solver:
            return losses, _test_accuracy(solver), solver
        return losses, _test_accuracy(solver)
    finally:
        os.chdir(old)


def train_get_solver(iters, workdir=HERE, test_interval=None):
    """``caffe.get_solver`` + ``solve()``: the solver itself tests and logs accuracy.
    Returns (losses logged by display, test accuracies logged, solver)."""
    import caffe
    from caffe.solver import _read_solver_param
    old = os.getcwd()
    os.chdir(workdir)
    try:
        _prepare(workdir)
        param = _read_solver_param("lenet_solver.prototxt")
        param.max_iter = iters
        param.display = 1
        if test_interval is not None:
            param.test_interval = test_interval
        param.snapshot_after_train = False
        lines = []

        class Grab(logging.Handler):
            def emit(self, record):
                lines.append(record.getMessage())
        log = logging.getLogger("caffe")
        grab = Grab(logging.INFO)
        log.addHandler(grab)
        level = log.level
        log.setLevel(logging.INFO)
        try:
            solver = caffe.get_solver(param)
            solver.solve()
        finally:
            log.removeHandler(grab)
            log.setLevel(level)
        import re
        pattern = re.compile(r"^Iteration \d+(?: \([^)]*\))?, loss = (\S+)$")
        losses = [float(m.group(1)) for m in map(pattern.match, lines) if m]
        accs = [float(ln.rsplit("= ", 1)[1]) for ln in lines
                if ln.startswith("    Test net output #0: accuracy = ")]
        return losses, accs, solver
    finally:
        os.chdir(old)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--get-solver", action="store_true",
                    help="use caffe.get_solver(...).solve() with the test net")
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--save", metavar="CAFFEMODEL",
                    help="after training, write the weights as a deploy caffemodel "
                         "(examples/lenet_deploy/deploy.prototxt's layers)")
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    import caffe
    caffe.init_log()
    if args.gpu:
        caffe.set_mode_gpu()
    if args.get_solver:
        losses, accs, _ = train_get_solver(args.iters)
        print("loss %.4f -> %.4f; test accuracy %s" % (losses[0], losses[-1],
                                                        ", ".join("%.3f" % a for a in accs)))
    else:
        losses, acc, solver = train_sgd(args.iters, return_solver=True)
        k = max(1, min(10, len(losses) // 5))
        print("loss (mean of %d) %.4f -> %.4f; test accuracy %.3f"
              % (k, np.mean(losses[:k]), np.mean(losses[-k:]), acc))
        if args.save:
            save_deploy(solver.net, args.save)
            print("wrote %s" % args.save)


if __name__ == "__main__":
    main()
