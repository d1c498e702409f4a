"""Upgrade a solver prototxt that uses the deprecated ``solver_type`` enum.

    python -m caffe.upgrade_solver_proto_text IN.prototxt OUT.prototxt

Same behaviour and output as Caffe's ``build/tools/upgrade_solver_proto_text``
(``solver_type: ADAM`` becomes ``type: "Adam"``); exit status 0 on success,
1 on usage or upgrade errors, 2 if IN cannot be parsed.
"""
import sys

from caffe.upgrade_cli import run_tool


def main(argv=None):
    return run_tool(argv, "upgrade_solver_proto_text",
                     "old_solver_proto_file_in solver_proto_file_out",
                     "SolverParameter", binary=False, solver=True)


if __name__ == "__main__":
    sys.exit(main())
