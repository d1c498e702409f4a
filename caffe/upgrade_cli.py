"""The three ``upgrade_*_proto_*`` console tools: read with protoio, upgrade,
write with protoio (atomically), logging through caffe's glog handler."""
import logging
import sys

from . import protoio, upgrade

log = logging.getLogger("caffe")


def run_tool(argv, prog, usage, what, binary, solver):
    """Shared body of the tools; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # glog-style lines on stderr come from caffe._common's handler (GLOG_* honoured)
    if len(args) != 2:
        log.error("Usage: %s %s", prog, usage)
        return 1
    src, dst = args
    pb2 = protoio.schema()
    msg = pb2.SolverParameter() if solver else pb2.NetParameter()
    kind = "binary" if binary else "text"
    try:
        if binary:
            protoio.read_binary(src, msg)
        else:
            protoio.read_text(src, msg)
    except (OSError, protoio.CaffeFileError) as exc:
        log.error("Failed to parse input %s file as %s: %s (%s)",
                  kind, msg.DESCRIPTOR.name, src, exc)
        return 2
    success = True
    needs = upgrade.solver_needs_upgrade(msg) if solver else upgrade.net_needs_upgrade(msg)
    if needs:
        try:
            if solver:
                success = upgrade.upgrade_solver_as_needed(src, msg)
            else:
                success = upgrade.upgrade_net_as_needed(src, msg)
        except ValueError as exc:
            log.error("%s", exc)
            return 1
        if not success:
            log.error("Encountered error(s) while upgrading prototxt; "
                      "see details above.")
    else:
        log.error("File already in latest proto format: %s", src)
    if binary:
        protoio.write_binary(dst, msg)
    else:
        protoio.write_text(dst, msg)
    log.info("Wrote upgraded %s %s proto to %s", what, kind, dst)
    return 0 if success else 1
