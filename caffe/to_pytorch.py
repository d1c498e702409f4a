"""Caffe net -> standalone PyTorch source (and its weights).

    python -m caffe.to_pytorch deploy.prototxt [weights.caffemodel] -o model.py
        [--phase TEST|TRAIN] [--stage a,b] [--level N] [--outputs blob,blob]

Writes ``model.py`` (a ``Model(nn.Module)`` needing only torch) and, with
weights, ``model.pth`` (its state_dict, loaded by ``model.load()`` with
strict=True).  Layers with no standalone form are named in the error.
"""
import argparse
import sys

from . import _common


def _parser(prog, description):
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("prototxt", help="the net definition (deploy prototxt)")
    p.add_argument("weights", nargs="?", help="a .caffemodel or .caffemodel.h5")
    p.add_argument("--phase", default="TEST", choices=["TEST", "TRAIN", "test", "train"])
    p.add_argument("--stage", default="", help="comma-separated NetState stages")
    p.add_argument("--level", type=int, default=0, help="NetState level")
    p.add_argument("--outputs", default=None,
                   help="comma-separated blobs to return (the graph is cut to them)")
    return p


def build_module(args):
    """The CaffeModule the converters start from (shared by to_pytorch and to_onnx)."""
    from . import pytorch
    phase = _common.TRAIN if args.phase.upper() == "TRAIN" else _common.TEST
    outputs = [o for o in args.outputs.split(",") if o] if args.outputs else None
    stages = [s for s in args.stage.split(",") if s] or None
    return pytorch.load(args.prototxt, args.weights, phase=phase, outputs=outputs,
                        level=args.level, stages=stages)


def fail(prog, exc):
    print("%s: error: %s" % (prog, exc), file=sys.stderr)
    return 1


def main(argv=None):
    p = _parser("python -m caffe.to_pytorch", __doc__.strip().splitlines()[0])
    p.add_argument("-o", "--output", default="model.py", help="the .py file to write")
    args = p.parse_args(argv)
    from .pytorch.codegen import write
    try:
        module = build_module(args)
        gen, pth = write(module, args.output, source=args.prototxt,
                         with_weights=args.weights is not None)
    except (ValueError, OSError, KeyError) as exc:
        return fail("to_pytorch", exc)
    print("wrote %s%s" % (args.output, " and %s" % pth if pth else
                          " (no weights given: no .pth written)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
