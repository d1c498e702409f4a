"""PyTorch -> Caffe: ``caffe.from_pytorch(model, example_inputs, prototxt, caffemodel)``
and ``python -m caffe.from_pytorch 'pkg.module:factory' --input-shape 1,3,224,224 -o out/name``.

The model is captured with ``torch.export`` (nothing in torch is patched), each
ATen op is mapped to Caffe layers with their parameters filled in exactly, both
files are written, and -- unless ``verify=False`` -- the written net is run with
``caffe.Net`` and every mapped blob is compared with PyTorch's value.
"""
import argparse
import importlib
import os
import sys

from .export.cli import make_module_callable, run_and_report


def from_pytorch(model, example_inputs, prototxt, caffemodel=None, *, target="bvlc",
                 input_names=None, output_names=None, verify=True, rtol=1e-4, merge_bn=False,
                 name=None):
    """Export ``model`` (an nn.Module; eval mode is used) and return an
    :class:`~caffe.export.ExportReport`.  Raises
    :class:`~caffe.export.UnsupportedOpError` naming the op, module path and
    source line for anything Caffe cannot express (for this ``target``), and
    :class:`~caffe.export.VerificationError` when the outputs differ beyond ``rtol``.
    """
    from .export import pytorch
    return pytorch.export(model, example_inputs, prototxt, caffemodel, target=target,
                          input_names=input_names, output_names=output_names, verify=verify,
                          rtol=rtol, merge_bn=merge_bn, name=name)


def _load_factory(spec):
    if ":" not in spec:
        raise SystemExit("model must be 'package.module:factory' (got %r)" % spec)
    mod_name, attr = spec.split(":", 1)
    sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(mod_name)
    finally:
        sys.path.pop(0)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _calibration_batch(directory, shape):
    """Images of ``directory`` resized to ``shape`` (N,C,H,W) scaled to [0, 1]."""
    import numpy as np

    from . import io as caffe_io
    files = sorted(f for f in os.listdir(directory)
                   if f.lower().endswith((".jpg", ".jpeg", ".png", ".bmp", ".ppm")))
    if not files:
        raise SystemExit("no images in %s" % directory)
    n, c, h, w = shape
    batch = []
    for f in files[:n]:
        im = caffe_io.load_image(os.path.join(directory, f), color=(c == 3))
        im = caffe_io.resize_image(im, (h, w))
        batch.append(im.transpose(2, 0, 1))
    while len(batch) < n:
        batch.append(batch[len(batch) % len(files)])
    return np.stack(batch).astype(np.float32)


def main(argv=None):
    import torch
    parser = argparse.ArgumentParser(prog="python -m caffe.from_pytorch",
                                     description="Export a PyTorch model to Caffe files.")
    parser.add_argument("model", help="'package.module:factory' returning an nn.Module")
    parser.add_argument("--input-shape", action="append", required=True,
                        help="e.g. 1,3,224,224 (repeat for several inputs)")
    parser.add_argument("--weights", help="state_dict (.pth) to load into the model")
    parser.add_argument("-o", "--output", required=True,
                        help="output prefix: writes PREFIX.prototxt and PREFIX.caffemodel")
    parser.add_argument("--target", default="bvlc", choices=("bvlc", "ssd", "any"))
    parser.add_argument("--merge-bn", action="store_true", help="fold BatchNorm into conv")
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--calibration-images", help="verify on images of this folder "
                        "(first input) instead of random noise")
    args = parser.parse_args(argv)
    model = _load_factory(args.model)()
    if args.weights:
        model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    shapes = [tuple(int(d) for d in s.split(",")) for s in args.input_shape]
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(s, generator=gen) for s in shapes]
    if args.calibration_images:
        inputs[0] = torch.from_numpy(_calibration_batch(args.calibration_images, shapes[0]))
    return run_and_report(from_pytorch, model, tuple(inputs), args.output + ".prototxt",
                          args.output + ".caffemodel", target=args.target,
                          verify=not args.no_verify, rtol=args.rtol, merge_bn=args.merge_bn)


if __name__ != "__main__":
    make_module_callable(__name__, from_pytorch)

if __name__ == "__main__":
    sys.exit(main())
