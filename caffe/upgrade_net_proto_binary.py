"""Upgrade a legacy (V0 / V1) binary net, e.g. a model-zoo caffemodel.

    python -m caffe.upgrade_net_proto_binary IN.caffemodel OUT.caffemodel

Same behaviour as Caffe's ``build/tools/upgrade_net_proto_binary``: the
weights are kept as they are (legacy num/channels/height/width blobs stay
legacy); exit status 0 on success, 1 on usage or upgrade errors, 2 if IN
cannot be parsed.
"""
import sys

from caffe.upgrade_cli import run_tool


def main(argv=None):
    return run_tool(argv, "upgrade_net_proto_binary",
                     "v0_net_proto_file_in net_proto_file_out",
                     "NetParameter", binary=True, solver=False)


if __name__ == "__main__":
    sys.exit(main())
