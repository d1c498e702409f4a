"""Darknet -> Caffe: ``caffe.from_darknet("yolo.cfg", "yolo.weights", prototxt, caffemodel)``
and ``python -m caffe.from_darknet model.cfg [model.weights] -o out/name``.

Sections go through the same Caffe layer emitters as the PyTorch and ONNX
exporters; with weights, every layer is compared with OpenCV's Darknet reader.
"""
import argparse
import sys

from .export.cli import make_module_callable, run_and_report


def from_darknet(cfg, weights, prototxt, caffemodel=None, *, target="bvlc", verify=True,
                 rtol=1e-4, inputs=None):
    """Convert; ``weights=None`` writes only the prototxt.  Returns an ExportReport."""
    from .export import darknet_export
    return darknet_export.export(cfg, weights, prototxt, caffemodel, target=target,
                                 verify=verify, rtol=rtol, inputs=inputs)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m caffe.from_darknet",
                                     description="Convert a Darknet cfg (+ weights) to Caffe.")
    parser.add_argument("cfg")
    parser.add_argument("weights", nargs="?")
    parser.add_argument("-o", "--output", required=True,
                        help="output prefix: writes PREFIX.prototxt (and PREFIX.caffemodel)")
    parser.add_argument("--target", default="bvlc", choices=("bvlc", "ssd", "any"))
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args(argv)
    return run_and_report(from_darknet, args.cfg, args.weights, args.output + ".prototxt",
                          args.output + ".caffemodel", target=args.target,
                          verify=not args.no_verify, rtol=args.rtol)


if __name__ != "__main__":
    make_module_callable(__name__, from_darknet)

if __name__ == "__main__":
    sys.exit(main())
