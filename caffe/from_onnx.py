"""ONNX -> Caffe: ``caffe.from_onnx("model.onnx", prototxt, caffemodel)`` and
``python -m caffe.from_onnx model.onnx -o out/name``.

ONNX nodes go through the same Caffe layer emitters as the PyTorch exporter;
verification compares every written blob with onnxruntime's value.
"""
import argparse
import sys

from .export.cli import make_module_callable, run_and_report


def from_onnx(model, prototxt, caffemodel=None, *, target="bvlc", example_inputs=None,
              verify=True, rtol=1e-4, merge_bn=False, name=None):
    """Convert ``model`` (path or onnx.ModelProto); returns an ExportReport.
    ``example_inputs``: {input name: array} (default: seeded random inputs)."""
    from .export import onnx_export
    return onnx_export.export(model, prototxt, caffemodel, target=target,
                              example_inputs=example_inputs, verify=verify, rtol=rtol,
                              merge_bn=merge_bn, name=name)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m caffe.from_onnx",
                                     description="Convert an ONNX model to Caffe files.")
    parser.add_argument("model", help="model.onnx")
    parser.add_argument("-o", "--output", required=True,
                        help="output prefix: writes PREFIX.prototxt and PREFIX.caffemodel")
    parser.add_argument("--target", default="bvlc", choices=("bvlc", "ssd", "any"))
    parser.add_argument("--merge-bn", action="store_true")
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args(argv)
    return run_and_report(from_onnx, args.model, args.output + ".prototxt",
                          args.output + ".caffemodel", target=args.target,
                          verify=not args.no_verify, rtol=args.rtol, merge_bn=args.merge_bn)


if __name__ != "__main__":
    make_module_callable(__name__, from_onnx)

if __name__ == "__main__":
    sys.exit(main())
