"""Caffe net -> ONNX, checked in onnxruntime.

    python -m caffe.to_onnx deploy.prototxt weights.caffemodel -o model.onnx
        [--opset N] [--dynamic-batch] [--outputs blob,blob] [--no-check]

Exports the ``caffe.pytorch`` module with ``torch.onnx.export``; then, when
onnxruntime is installed, runs the file and the module on the same random input
and prints the per-blob table: a file that disagrees is not kept (exit 1).
"""
import os
import sys

from .to_pytorch import _parser, build_module, fail

RTOL = 1e-4


def main(argv=None):
    p = _parser("python -m caffe.to_onnx", __doc__.strip().splitlines()[0])
    p.add_argument("-o", "--output", default="model.onnx")
    p.add_argument("--opset", type=int, default=None)
    p.add_argument("--dynamic-batch", action="store_true",
                   help="make axis 0 of every input and output dynamic")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")
    args = p.parse_args(argv)
    from .pytorch import onnx_export
    from .verification import compare_named, format_table, verdict
    opset = args.opset or onnx_export.DEFAULT_OPSET
    tmp = args.output + ".tmp"
    try:
        module = build_module(args)
        module.eval()
        onnx_export.export(onnx_export.exportable_model(module), tmp, opset=opset,
                           dynamic_batch=args.dynamic_batch)
        if not args.no_check:
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                print("to_onnx: onnxruntime not installed: the file is not checked "
                      "(pip install 'torchcaffe[onnx]')", file=sys.stderr)
            else:
                import torch
                batches = [None, 2] if args.dynamic_batch else [None]
                for batch in batches:
                    inputs = onnx_export.example_inputs(module, seed=1)
                    if batch is not None:     # one more item than the traced batch
                        inputs = tuple(torch.cat([t, t[:1]]) if t.dim() else t
                                       for t in inputs)
                    feed = dict(zip(module.inputs, inputs))
                    with torch.no_grad():
                        ref = module(**feed)
                    rows = compare_named(ref, onnx_export.run_onnx(tmp, feed))
                    print(format_table(rows, "module vs onnxruntime%s"
                                       % ("" if batch is None else " (batch + 1)")))
                    if not verdict(rows, rtol=RTOL):
                        os.remove(tmp)
                        return fail("to_onnx", "the ONNX file disagrees with the module "
                                               "(rtol %g): not written" % RTOL)
        os.replace(tmp, args.output)
    except (ValueError, OSError, KeyError, ImportError) as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        return fail("to_onnx", exc)
    print("wrote %s (opset %d%s)" % (args.output, opset,
                                     ", dynamic batch" if args.dynamic_batch else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
