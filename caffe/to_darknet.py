"""Caffe -> Darknet: ``caffe.to_darknet(prototxt, caffemodel, cfg, weights)`` and
``python -m caffe.to_darknet deploy.prototxt [w.caffemodel] -o out/name`` (cfg + weights)
for nets Darknet can express (conv + BatchNorm/Scale + leaky/relu/relu6/logistic/tanh,
max / global average pooling, route, shortcut, nearest upsample, connected, softmax)."""
import argparse
import sys

from .export.cli import make_module_callable


def to_darknet(prototxt, caffemodel, cfg, weights=None, *, header=(0, 2, 0, 0)):
    """Write ``cfg`` (and ``weights`` when a caffemodel is given); returns the sections."""
    from .export import darknet_writer
    return darknet_writer.write(prototxt, caffemodel, cfg, weights, header)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m caffe.to_darknet",
                                     description="Convert a Caffe net to a Darknet cfg + weights.")
    parser.add_argument("prototxt")
    parser.add_argument("caffemodel", nargs="?")
    parser.add_argument("-o", "--output", required=True,
                        help="output prefix: writes PREFIX.cfg (and PREFIX.weights)")
    args = parser.parse_args(argv)
    from .export import ExportError
    try:
        sections = to_darknet(args.prototxt, args.caffemodel, args.output + ".cfg",
                              args.output + ".weights" if args.caffemodel else None)
    except ExportError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    print("wrote %s.cfg (%d layers)%s" % (args.output, len(sections),
                                         " and %s.weights" % args.output if args.caffemodel
                                         else ""))
    return 0


if __name__ != "__main__":
    make_module_callable(__name__, to_darknet)

if __name__ == "__main__":
    sys.exit(main())
