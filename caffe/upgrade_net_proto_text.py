"""Upgrade a legacy (V0 / V1) net prototxt to the current format.

    python -m caffe.upgrade_net_proto_text IN.prototxt OUT.prototxt

Same behaviour and output as Caffe's ``build/tools/upgrade_net_proto_text``:
the file is written even when it needed no upgrade; the exit status is 0 on
success, 1 on usage or upgrade errors, 2 if IN cannot be parsed.
"""
import sys

from caffe.upgrade_cli import run_tool


def main(argv=None):
    return run_tool(argv, "upgrade_net_proto_text",
                     "v0_net_proto_file_in net_proto_file_out",
                     "NetParameter", binary=False, solver=False)


if __name__ == "__main__":
    sys.exit(main())
