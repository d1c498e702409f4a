"""Caffe's protobuf schema.

``from caffe.proto import caffe_pb2`` works as in pycaffe: by default
``caffe_pb2`` is the module generated from the shipped ``caffe.proto`` (BVLC
master plus the layer parameters of the common forks), and needs only
``protobuf`` at run time.

Users with their own fork's ``caffe.proto`` can compile it at run time::

    import caffe.proto
    pb2 = caffe.proto.load('/path/to/fork/caffe.proto')   # needs grpcio-tools

or set the environment variable ``CAFFE_PROTO=/path/to/fork/caffe.proto``.
From then on the fork's module *is* the schema everywhere: the attribute
``caffe.proto.caffe_pb2`` (so ``from caffe.proto import caffe_pb2``) returns
it, and the package's own modules get their schema from :func:`active` (via
``caffe.protoio.schema``) at call time, never from an import-time binding.

A loaded schema lives in its own descriptor pool, so it never clashes with the
shipped ``caffe_pb2`` (both use package ``caffe``) and several can coexist.
"""
import hashlib
import importlib
import os
import sys
import tempfile
import threading
import types

__all__ = ["caffe_pb2", "load", "active", "shipped", "reset", "ProtoCompileError"]

ENV_VAR = "CAFFE_PROTO"

_lock = threading.RLock()
_cache = {}          # (abspath, mtime_ns, size) -> module
_loaded = None       # module set by load(), or None
_env_loaded = None   # (path, module) loaded from $CAFFE_PROTO


class ProtoCompileError(RuntimeError):
    """protoc rejected a user caffe.proto (message includes protoc's output)."""


_shipped = None      # the generated caffe_pb2 module, once imported


def shipped():
    """The module generated from the shipped caffe.proto, whatever is active.

    Imported lazily so that ``python -m caffe.proto.regenerate`` works even
    when caffe_pb2.py is missing or stale."""
    global _shipped
    if _shipped is None:
        mod = importlib.import_module(__name__ + ".caffe_pb2")
        from . import pytext
        pytext.install(mod)
        _shipped = mod
    return _shipped


class _ProtoPackage(types.ModuleType):
    """This package's module type: ``caffe_pb2`` is the *active* schema.

    The import system sets ``caffe_pb2`` on the package when it imports the
    generated submodule; that assignment records the shipped module and never
    hides a loaded fork."""

    @property
    def caffe_pb2(self):
        return active()

    @caffe_pb2.setter
    def caffe_pb2(self, module):
        global _shipped
        if _shipped is None and getattr(module, "__name__", "") == __name__ + ".caffe_pb2":
            from . import pytext
            pytext.install(module)
            _shipped = module


sys.modules[__name__].__class__ = _ProtoPackage


def _build_module(fds_bytes, proto_path, modname):
    """Build a generated-code-like module from a serialized FileDescriptorSet."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.internal import builder

    fds = descriptor_pb2.FileDescriptorSet.FromString(fds_bytes)
    pool = descriptor_pool.DescriptorPool()
    for fdp in fds.file:               # --include_imports: dependencies first
        pool.Add(fdp)
    target = fds.file[-1].name
    file_desc = pool.FindFileByName(target)

    mod = types.ModuleType(modname)
    mod.__file__ = proto_path
    mod.__doc__ = "Schema compiled at run time from %s" % proto_path
    g = mod.__dict__
    g["DESCRIPTOR"] = file_desc
    g["POOL"] = pool
    g["SOURCE_PROTO"] = proto_path
    builder.BuildMessageAndEnumDescriptors(file_desc, g)
    builder.BuildTopDescriptorsAndMessages(file_desc, modname, g)
    from . import pytext
    pytext.install(mod)
    return mod


def _compile(path):
    from . import regenerate
    with tempfile.TemporaryDirectory(prefix="caffe_user_proto_") as tmp:
        out = os.path.join(tmp, "schema.desc")
        try:
            regenerate.run_protoc(path, ["--include_imports",
                                         "--descriptor_set_out=" + out])
        except regenerate.ProtoCompileError as e:
            raise ProtoCompileError(str(e)) from None
        with open(out, "rb") as f:
            return f.read()


def load(path):
    """Compile a user's (fork) caffe.proto and make it the active schema.

    Returns a module that behaves like a generated ``caffe_pb2`` (message
    classes, enums, enum values as attributes, ``DESCRIPTOR``). The result is
    cached per file path and modification time. Requires grpcio-tools.
    """
    global _loaded
    mod = _get_module(path)
    with _lock:
        _loaded = mod
    return mod


def _get_module(path):
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError("caffe.proto not found: %s" % path)
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    with _lock:
        mod = _cache.get(key)
        if mod is None:
            fds = _compile(path)     # MissingExtraError names grpcio-tools and the file
            digest = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
            stem = os.path.splitext(os.path.basename(path))[0]
            stem = "".join(c if c.isalnum() else "_" for c in stem)
            modname = "%s._user_%s_%s_pb2" % (__name__, stem, digest)
            mod = _build_module(fds, path, modname)
            sys.modules[modname] = mod
            _cache[key] = mod
        return mod


def active():
    """The schema module to parse user files with.

    The module from the last :func:`load` call if any; else the one named by
    ``$CAFFE_PROTO`` if set; else the shipped ``caffe_pb2``.
    """
    global _env_loaded
    if _loaded is not None:
        return _loaded
    env = os.environ.get(ENV_VAR)
    if env:
        with _lock:
            if _env_loaded is None or _env_loaded[0] != env:
                mod = _get_module(env)
                _env_loaded = (env, mod)
                return mod
            return _env_loaded[1]
    return shipped()


def reset():
    """Forget any schema set by :func:`load` (``$CAFFE_PROTO`` still applies)."""
    global _loaded, _env_loaded
    with _lock:
        _loaded = None
        _env_loaded = None
