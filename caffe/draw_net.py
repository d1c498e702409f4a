"""Draw a graph of a net's architecture (pycaffe's ``python/draw_net.py``).

    python -m caffe.draw_net NET.prototxt OUT.png [--rankdir LR]
                             [--phase ALL|TRAIN|TEST] [--display_lrm]

The prototxt is read as a NetParameter as written (no upgrade, no Net is
built); the output format follows the output file's extension.
"""

from argparse import ArgumentDefaultsHelpFormatter, ArgumentParser

from . import draw, protoio


def parse_args(argv=None):
    """Command-line arguments (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = ArgumentParser(description='Draw a graph of the net '
                                        'architecture.',
                            formatter_class=ArgumentDefaultsHelpFormatter)
    parser.add_argument('input_net_proto_file',
                        help='Input network prototxt file')
    parser.add_argument('output_image_file',
                        help='Output image file')
    parser.add_argument('--rankdir', default='LR',
                        help='graphviz rankdir: TB (top-bottom, vertical), '
                             'LR (left-right, horizontal), BT, RL; see '
                             'http://www.graphviz.org/doc/info/'
                             'attrs.html#k:rankdir')
    parser.add_argument('--phase', default='ALL',
                        help='Which network phase to draw: TRAIN, TEST, or '
                             'ALL (every layer regardless of phase).')
    parser.add_argument('--display_lrm', action='store_true',
                        help='Show the learning rate multipliers, when '
                             'non-zero, of the learning layers '
                             '(Convolution, Deconvolution, InnerProduct).')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    net = protoio.read_text(args.input_net_proto_file, protoio.schema().NetParameter())
    print('Drawing net to %s' % args.output_image_file)
    if args.phase == 'TRAIN':
        phase = protoio.schema().TRAIN
    elif args.phase == 'TEST':
        phase = protoio.schema().TEST
    elif args.phase == 'ALL':
        phase = None
    else:
        raise ValueError('Unknown phase: ' + args.phase)
    draw.draw_net_to_file(net, args.output_image_file, args.rankdir, phase,
                          args.display_lrm)


if __name__ == '__main__':
    main()
