"""Regenerate ``caffe_pb2.py`` from ``caffe.proto`` with grpcio-tools' protoc.

Run from anywhere::

    python -m caffe.proto.regenerate

Only needed after editing ``caffe.proto``. The generated module is committed so
that the package works with nothing but ``protobuf`` installed.

Recent protoc releases emit a hard runtime check
(``runtime_version.ValidateProtobufRuntimeVersion``) that refuses to import the
module under any protobuf runtime older than protoc itself. The body of the
generated code only uses ``google.protobuf.internal.builder``, present since
protobuf 3.20, so this script removes that check to keep ``caffe_pb2`` usable
with protobuf >= 4.21.
"""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "caffe.proto")
OUTPUT = os.path.join(HERE, "caffe_pb2.py")

_MISSING = ('grpcio-tools is required to compile {what}: pip install "torchcaffe[proto]" '
            '(or pip install grpcio-tools)')


class ProtoCompileError(RuntimeError):
    """protoc rejected a .proto file; the message carries protoc's output."""


def have_protoc():
    try:
        import grpc_tools.protoc  # noqa: F401
    except Exception:        # missing, or present but broken (see run_protoc's error)
        return False
    return True


def _well_known_include():
    import grpc_tools
    return os.path.join(os.path.dirname(os.path.abspath(grpc_tools.__file__)), "_proto")


def run_protoc(proto_file, out_args):
    """Run grpcio-tools' protoc on ``proto_file`` with extra output arguments.

    Runs in a subprocess so that protoc's diagnostics can be captured.
    Raises ImportError (naming the file, suggesting pip install grpcio-tools)
    if grpcio-tools is missing, ProtoCompileError if protoc fails.
    """
    proto_file = os.path.abspath(proto_file)
    if not os.path.isfile(proto_file):
        raise FileNotFoundError("proto file not found: %s" % proto_file)
    if not have_protoc():
        from .._extras import MissingExtraError, require
        # missing or broken: require says which; else (protoc unusable) the generic hint
        require("grpc_tools.protoc", "compiling %s" % proto_file)
        raise MissingExtraError(_MISSING.format(what=proto_file))
    cmd = [sys.executable, "-m", "grpc_tools.protoc",
           "-I" + os.path.dirname(proto_file),
           "-I" + _well_known_include()] + list(out_args) + [proto_file]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout or "").strip()
        raise ProtoCompileError("protoc failed to compile %s:\n%s"
                                % (proto_file, msg or "(no output, exit status %d)"
                                   % proc.returncode))
    return proc


_VALIDATE_RE = re.compile(
    r"from google\.protobuf import runtime_version as _runtime_version\n")
_CALL_RE = re.compile(
    r"_runtime_version\.ValidateProtobufRuntimeVersion\(\n(?:[^\n]*\n)*?\)\n")


def relax_version_check(source):
    """Drop protoc's hard runtime-version check from generated code."""
    source = _CALL_RE.sub(
        "# (protoc's runtime version check removed by caffe/proto/regenerate.py)\n",
        source)
    source = _VALIDATE_RE.sub("", source)
    return source


def generate(proto_file=PROTO, output=OUTPUT):
    with tempfile.TemporaryDirectory(prefix="caffe_proto_") as tmp:
        run_protoc(proto_file, ["--python_out=" + tmp])
        stem = os.path.splitext(os.path.basename(proto_file))[0]
        with open(os.path.join(tmp, stem + "_pb2.py")) as f:
            source = f.read()
    source = relax_version_check(source)
    with open(output, "w") as f:
        f.write(source)
    return output


def main(argv=None):
    try:
        out = generate()
    except ImportError as e:
        sys.stderr.write("%s\n" % e)
        return 2
    except ProtoCompileError as e:
        sys.stderr.write("%s\n" % e)
        return 1
    print("wrote %s" % out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
