"""Dump the weights of a Caffe model into plain array files.

Usage::

    python -m caffe.dump MODEL.caffemodel [-o OUT] [--prototxt DEPLOY.prototxt] [--names]

The output format is chosen by the extension of ``OUT`` (default
``MODEL.caffemodel.pt``):

``.pt``    ``torch.save`` of an ordered ``{key: float32 tensor}`` dict
``.h5``    HDF5, one float32 dataset per key (``f["conv1/0"]``; a key's ``/`` makes
           nested groups, each dataset carries ``layer``, ``type``, ``index`` attributes)
``.npz``   ``numpy.savez`` layout, one ``key.npy`` member per blob (``np.load(out)["conv1/0"]``)
``.npy``   one structured record, a float32 field per key (``np.load(out)["conv1/0"]``;
           no pickle, so loading never runs code)
``.json``  ``{key: {"layer", "type", "index", "shape", "data"}}`` with ``data`` flat, C order

Keys.  Every blob of every layer is written, in file order, including the
non-learnable ones (BatchNorm's mean, variance and scale factor, all three).
The default key is ``<layer name>/<blob index>`` (``conv1/0``, ``conv1/1``,
``bn1/2``).  With ``--prototxt`` (layer types taken from that net, falling back
to the type stored in the caffemodel) or ``--names`` (types from the
caffemodel), blobs are named by layer type instead:

=====================================================  ==============================
Convolution, Deconvolution, InnerProduct, Embed, Scale  ``weight``, ``bias``
Bias                                                    ``bias``
PReLU, Normalize                                        ``weight``
BatchNorm                                               ``mean``, ``variance``, ``scale_factor``
LSTM (3 blobs)                                          ``W_xc``, ``b_c``, ``W_hc``
RNN (5 blobs)                                           ``W_xh``, ``b_h``, ``W_hh``, ``W_ho``, ``b_o``
anything else, or extra blobs                           the blob index
=====================================================  ==============================

Shapes are the shapes stored in the file: the ``shape`` field, or for V1/V0
models (``layers`` field) the legacy 4-D ``num, channels, height, width``
(so a V1 InnerProduct weight comes out ``(1, 1, N, K)``).  ``load`` reads any of
the formats back and ``copy_to_net`` puts a dump into a ``caffe.Net``,
reshaping legacy 4-D blobs the way Caffe's ``Blob::ShapeEquals`` allows.
A ``.caffemodel.h5`` (Caffe's HDF5 weights) is accepted as input too.

Memory.  The caffemodel is not parsed into a protobuf message: the file is
scanned once and each blob's float payload is read straight from the file
into its own float32 array, so the only large allocations are the output
arrays.  ``.h5``, ``.npz`` and ``.json`` are written blob by blob (one blob in
memory at a time); ``.pt`` and ``.npy`` hold all arrays once (1x the weights)
because their writers need the whole dict.

Safety.  Every output is written to a temporary file and renamed over ``OUT``
only when complete, and ``OUT`` may not be the input.  ``load`` never
unpickles: ``.pt`` goes through ``torch.load(weights_only=True)``, ``.npy``
through ``np.load(allow_pickle=False)``; an old pickled ``.npy`` dump needs
``load(path, trust=True)`` (or ``--trust``), which warns.
"""
import argparse
import json
import os
import sys
import warnings
from collections import OrderedDict

import numpy as np

from . import atomic, protoio
from .protoio.wire import WireReader, signed
from .upgrade import V1_LAYER_TYPES

FORMATS = (".pt", ".h5", ".npz", ".npy", ".json")

BLOB_NAMES = {
    "Convolution": ("weight", "bias"),
    "Deconvolution": ("weight", "bias"),
    "InnerProduct": ("weight", "bias"),
    "Embed": ("weight", "bias"),
    "Scale": ("weight", "bias"),
    "Bias": ("bias",),
    "PReLU": ("weight",),
    "Normalize": ("weight",),
    "BatchNorm": ("mean", "variance", "scale_factor"),
}
_COUNTED_NAMES = {
    ("LSTM", 3): ("W_xc", "b_c", "W_hc"),
    ("RNN", 5): ("W_xh", "b_h", "W_hh", "W_ho", "b_o"),
}

# V0 layer type strings whose names matter for naming blobs.
_V0_TYPES = {"conv": "Convolution", "innerproduct": "InnerProduct"}


INT_MAX = 2 ** 31 - 1     # Caffe's limit on a blob's count


class DumpError(RuntimeError):
    pass


def blob_names(layer_type, count):
    """Names of a layer's ``count`` blobs under the by-type scheme."""
    names = _COUNTED_NAMES.get((layer_type, count)) or BLOB_NAMES.get(layer_type, ())
    return [names[i] if i < len(names) else str(i) for i in range(count)]


# ---------------------------------------------------------------------------
# Streaming reader of binary NetParameter files
# ---------------------------------------------------------------------------
def _scanner(f, path, size):
    """A protoio wire reader whose errors are DumpErrors naming the file."""
    def bad(what):
        return DumpError("%s is not a Caffe caffemodel (binary NetParameter): %s" % (path, what))
    sc = WireReader(f, size, error=bad)
    sc.path = path
    sc.bad = bad
    return sc


class RawBlob:
    """One blob of a layer as read from the file."""
    __slots__ = ("layer", "type", "index", "shape", "data")

    def __init__(self, layer, type_, index, shape, data):
        self.layer = layer
        self.type = type_
        self.index = index
        self.shape = tuple(int(d) for d in shape)
        self.data = data


def _read_blob(sc, end, where):
    legacy = {}
    dims = []
    chunks = []          # float32 or float64 arrays, in order
    single = []          # unpacked values
    single_double = []
    while sc.f.tell() < end:
        field, wt = sc.tag(end)
        if field in (1, 2, 3, 4) and wt == 0:
            legacy[field] = signed(sc.varint(), 64)
        elif field == 5 and wt == 2:
            chunks.append(sc.floats(sc.length(end), "<f4"))
        elif field == 5 and wt == 5:
            single.append(sc.float32(end))
        elif field == 8 and wt == 2:
            chunks.append(sc.floats(sc.length(end), "<f8"))
        elif field == 8 and wt == 1:
            single_double.append(sc.float64(end))
        elif field == 7 and wt == 2:
            n = sc.length(end)
            shape_end = sc.f.tell() + n
            while sc.f.tell() < shape_end:
                f2, w2 = sc.tag(shape_end)
                if f2 == 1 and w2 == 0:
                    dims.append(signed(sc.varint()))
                elif f2 == 1 and w2 == 2:
                    n = sc.length(shape_end)
                    pend = sc.f.tell() + n
                    while sc.f.tell() < pend:
                        dims.append(signed(sc.varint()))
                else:
                    sc.skip(w2, shape_end)
        else:
            sc.skip(wt, end)              # diff, double_diff, unknown fields
    if sc.f.tell() != end:
        raise sc.bad("blob of %s overruns its message" % where)
    if single:
        chunks.append(np.asarray(single, dtype="<f4"))
    if single_double:
        chunks.append(np.asarray(single_double, dtype="<f8"))
    if not chunks:
        data = np.zeros(0, dtype=np.float32)
    elif len(chunks) == 1:
        data = chunks[0]
    else:
        data = np.concatenate([c.astype(np.float32) for c in chunks])
    if data.dtype != np.float32:
        data = data.astype(np.float32)       # double_data, or big-endian host
    if legacy:
        shape = tuple(legacy.get(k, 0) for k in (1, 2, 3, 4))
    else:
        shape = tuple(dims)
    if any(d < 0 for d in shape) or len(shape) > 32:
        raise DumpError("%s: %s has impossible dims %s" % (sc.path, where, list(shape)))
    count = 1
    for d in shape:
        count *= d
    if count > INT_MAX:
        raise DumpError("%s: %s has dims %s: %d values, more than Caffe's limit of INT_MAX "
                        "(%d)" % (sc.path, where, list(shape), count, INT_MAX))
    if data.size != count:
        if data.size == 0 and not legacy and not dims:
            shape = (0,)
        else:
            raise DumpError("%s: %s holds %d values but its shape %s needs %d (truncated "
                            "or corrupt file?)" % (sc.path, where, data.size, shape, count))
    return shape, data.reshape(shape)


def _layer_meta(raw, v1):
    """(name, type) from a layer's non-blob fields."""
    pb2 = protoio.schema()
    msg = pb2.V1LayerParameter() if v1 else pb2.LayerParameter()
    protoio.parse_binary(raw, msg, "a layer's fields")
    if v1:
        if msg.HasField("type"):
            try:
                tname = pb2.V1LayerParameter.LayerType.Name(msg.type)
            except ValueError:
                tname = str(msg.type)
            return msg.name, V1_LAYER_TYPES.get(tname, tname)
        return msg.name, ""
    return msg.name, msg.type


def _read_v0_layer(sc, end, sink, index_base):
    """A V0 ``layers { layer { ... } }`` inner message: name=1, type=2, blobs=50."""
    name, type_ = "", ""
    blobs = []
    while sc.f.tell() < end:
        field, wt = sc.tag(end)
        if field == 1 and wt == 2:
            name = sc.fixed(sc.length(end), end).decode("utf-8", "replace")
        elif field == 2 and wt == 2:
            type_ = sc.fixed(sc.length(end), end).decode("utf-8", "replace")
        elif field == 50 and wt == 2:
            n = sc.length(end)
            bend = sc.f.tell() + n
            blobs.append(_read_blob(sc, bend, "a blob of V0 layer %r" % name))
        else:
            sc.skip(wt, end)
    return name, _V0_TYPES.get(type_, type_), blobs


def _read_layer(sc, end, v1):
    blob_field = 6 if v1 else 7
    meta = bytearray()
    pending = []                     # blobs read before the layer's name is known
    v0 = None
    while sc.f.tell() < end:
        field, wt = sc.tag(end)
        if field == blob_field and wt == 2:
            n = sc.length(end)
            bend = sc.f.tell() + n
            pending.append(_read_blob(sc, bend, "blob %d of a layer" % len(pending)))
        elif v1 and field == 1 and wt == 2:
            n = sc.length(end)
            v0_end = sc.f.tell() + n
            v0 = _read_v0_layer(sc, v0_end, None, 0)
        else:
            meta += sc.raw_field(field, wt, end)
    try:
        name, type_ = _layer_meta(bytes(meta), v1)
    except Exception as exc:
        raise sc.bad("a layer's fields do not parse as a %sLayerParameter (%s)"
                     % ("V1" if v1 else "", exc)) from exc
    if v0 is not None:
        v0_name, v0_type, v0_blobs = v0
        name = name or v0_name
        type_ = type_ or v0_type
        pending = pending + v0_blobs
    return name, type_, pending


def iter_blobs(path, layer_types=None, progress=None):
    """Yield every blob of a caffemodel (or Caffe HDF5 weights file) as a ``RawBlob``,
    in file order, reading one blob at a time."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DumpError("%s: no such file" % path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        yield from _iter_hdf5(path, layer_types, progress)
        return
    found = 0
    with open(path, "rb", buffering=1 << 16) as f:
        sc = _scanner(f, path, size)
        while f.tell() < size:
            field, wt = sc.tag(size)
            if field in (100, 2) and wt == 2:
                n = sc.length(size)
                end = f.tell() + n
                name, type_, blobs = _read_layer(sc, end, v1=(field == 2))
                if layer_types and name in layer_types:
                    type_ = layer_types[name]
                for i, (shape, data) in enumerate(blobs):
                    found += 1
                    yield RawBlob(name, type_, i, shape, data)
                del blobs
                if progress is not None:
                    progress(f.tell(), size)
            elif field in (100, 2):
                raise sc.bad("field %d has wire type %d, expected a message" % (field, wt))
            else:
                sc.skip(wt, size)
    if found == 0 and size > 0 and not _has_layers(path):
        raise DumpError("%s is not a Caffe caffemodel: it parses but holds no layers "
                        "(a prototxt, solverstate or mean file?)" % path)


def _has_layers(path):
    try:
        with open(path, "rb") as f:
            sc = _scanner(f, path, os.path.getsize(path))
            while f.tell() < sc.size:
                field, wt = sc.tag(sc.size)
                if field in (100, 2) and wt == 2:
                    return True
                sc.skip(wt, sc.size)
    except DumpError:
        return False
    return False


def _iter_hdf5(path, layer_types, progress):
    try:
        yield from _iter_hdf5_unchecked(path, layer_types, progress)
    except DumpError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise DumpError("%s: damaged Caffe HDF5 weights file (%s: %s)"
                        % (path, type(exc).__name__, exc)) from None


def _iter_hdf5_unchecked(path, layer_types, progress):
    import h5py
    with h5py.File(path, "r") as h5:
        if "data" not in h5:
            raise DumpError("%s is an HDF5 file but not Caffe HDF5 weights (no /data group)"
                            % path)
        names = []

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and any(
                    isinstance(v, h5py.Dataset) for v in obj.values()):
                names.append(name)
        h5["data"].visititems(visit)
        for n, lname in enumerate(names):
            group = h5["data"][lname]
            keys = sorted((k for k in group if k.isdigit()), key=int)
            for k in keys:
                arr = np.asarray(group[k], dtype=np.float32)
                yield RawBlob(lname, (layer_types or {}).get(lname, ""), int(k), arr.shape, arr)
            if progress is not None:
                progress(n + 1, len(names))


def prototxt_layer_types(prototxt):
    param = protoio.read_net_param(prototxt)
    return OrderedDict((l.name, l.type) for l in param.layer)


def blob_key(blob, named):
    if named:
        return "%s/%s" % (blob.layer, blob_names(blob.type, blob.index + 1)[blob.index])
    return "%s/%d" % (blob.layer, blob.index)


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------
class _DictWriter:
    def __init__(self, path):
        self.path = path
        self.items = OrderedDict()

    def add(self, key, blob):
        self.items[key] = blob.data


class _PtWriter(_DictWriter):
    def close(self):
        import torch
        torch.save(OrderedDict((k, torch.from_numpy(v)) for k, v in self.items.items()),
                   self.path)


def npy_record_dtype(shapes):
    """The structured dtype of a ``.npy`` dump: one float32 field per key."""
    return np.dtype([(key, "<f4", tuple(shape)) for key, shape in shapes.items()])


class _NpyWriter(_DictWriter):
    def close(self):
        dtype = npy_record_dtype(OrderedDict((k, v.shape) for k, v in self.items.items()))
        record = np.zeros((), dtype=dtype)
        for key, arr in self.items.items():
            record[key] = arr
        self.items.clear()
        with open(self.path, "wb") as f:
            np.lib.format.write_array(f, record, allow_pickle=False)


class _H5Writer:
    def __init__(self, path):
        import h5py
        self.f = h5py.File(path, "w")
        self.f.attrs["format"] = "torchcaffe.dump"

    def add(self, key, blob):
        ds = self.f.create_dataset(key, data=blob.data)
        ds.attrs["layer"] = blob.layer
        ds.attrs["type"] = blob.type
        ds.attrs["index"] = blob.index

    def close(self):
        self.f.close()


class _NpzWriter:
    def __init__(self, path):
        import zipfile
        self.zf = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def add(self, key, blob):
        with self.zf.open(key + ".npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.ascontiguousarray(blob.data), allow_pickle=False)

    def close(self):
        self.zf.close()


class _JsonWriter:
    CHUNK = 1 << 16

    def __init__(self, path):
        self.f = open(path, "w")
        self.f.write("{")
        self.first = True

    def add(self, key, blob):
        f = self.f
        f.write("\n" if self.first else ",\n")
        self.first = False
        head = {"layer": blob.layer, "type": blob.type, "index": blob.index,
                "shape": list(blob.shape)}
        f.write(json.dumps(key) + ": " + json.dumps(head)[:-1] + ', "data": [')
        flat = blob.data.reshape(-1)
        for s in range(0, flat.size, self.CHUNK):
            if s:
                f.write(", ")
            f.write(", ".join(map(_json_float, flat[s:s + self.CHUNK].tolist())))
        f.write("]}")

    def close(self):
        self.f.write("\n}\n")
        self.f.close()


def _json_float(x):
    if x != x or x in (float("inf"), float("-inf")):
        return json.dumps(x)            # NaN / Infinity (Python's json extension)
    return repr(x)


_WRITERS = {".pt": _PtWriter, ".npy": _NpyWriter, ".h5": _H5Writer, ".npz": _NpzWriter,
            ".json": _JsonWriter}


def output_format(out):
    ext = os.path.splitext(out)[1].lower()
    if ext == ".hdf5":
        ext = ".h5"
    if ext not in _WRITERS:
        raise DumpError("%s: unknown output format %r; use one of %s"
                        % (out, ext, ", ".join(FORMATS)))
    return ext


def _progress_bar(enabled, total_label):
    """Bytes read so far, on caffe's shared tqdm bar (log lines go through it)."""
    if not enabled:
        return None, lambda: None
    from ._progress import progress as new_bar
    state = {"bar": None}

    def update(done, total):
        if state["bar"] is None:
            state["bar"] = new_bar(total=total, desc=total_label, unit="B", disable=False,
                                   unit_scale=True)
        state["bar"].update(done - state["bar"].n)

    def close():
        if state["bar"] is not None:
            state["bar"].close()
    return update, close


def dump(model, out=None, prototxt=None, names=False, progress=False):
    """Write every blob of ``model`` to ``out`` (format from its extension).
    Returns ``OrderedDict(key -> shape)`` of what was written."""
    model = os.fspath(model)
    out = os.fspath(out) if out is not None else model + ".pt"
    ext = output_format(out)
    types = prototxt_layer_types(prototxt) if prototxt else None
    named = bool(prototxt) or names
    update, close_bar = _progress_bar(progress, os.path.basename(model))
    for src, what in ((model, "model"), (prototxt, "--prototxt")):
        if src is not None and os.path.exists(out) and atomic.same_file(src, out):
            raise DumpError("%s: the output is the %s file itself; refusing to overwrite "
                            "the input" % (out, what))
    written = OrderedDict()
    try:
        with atomic.atomic_path(out) as tmp:
            writer = _WRITERS[ext](tmp)
            try:
                for blob in iter_blobs(model, types, update):
                    key = blob_key(blob, named)
                    if key in written:
                        raise DumpError("%s: two blobs map to the key %r (duplicate layer "
                                        "names?)" % (model, key))
                    writer.add(key, blob)
                    written[key] = blob.shape
                    blob.data = None          # drop it unless the writer keeps it
            except BaseException:
                try:
                    writer.close()
                except Exception:
                    pass
                raise
            writer.close()
    finally:
        close_bar()
    return written


# ---------------------------------------------------------------------------
# Reading dumps back
# ---------------------------------------------------------------------------
def load(path, trust=False):
    """A dump file as ``OrderedDict(key -> float32 ndarray)``.

    Nothing is unpickled unless ``trust=True`` (only for old pickled ``.npy``
    dumps from a source you trust: unpickling can run arbitrary code)."""
    path = os.fspath(path)
    ext = output_format(path)
    if not os.path.isfile(path):
        raise DumpError("%s: no such file" % path)
    try:
        arrays = _LOADERS[ext](path, trust)
    except DumpError:
        raise
    except Exception as exc:             # a damaged or foreign file, whatever the library
        raise DumpError("%s: cannot read it as a %s dump (%s: %s)"
                        % (path, ext, type(exc).__name__, exc)) from None
    out = OrderedDict()
    for key, arr in arrays.items():
        if not isinstance(key, str):
            raise DumpError("%s: key %r is not a string" % (path, key))
        arr = np.asarray(arr)
        if arr.dtype.kind not in "fiub":
            raise DumpError("%s: %r holds %s values, not numbers" % (path, key, arr.dtype))
        out[key] = arr.astype(np.float32, copy=False)
    return out


def _load_pt(path, trust):
    import torch
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DumpError("%s: not a {key: tensor} dict" % path)
    return OrderedDict((k, v.numpy()) for k, v in obj.items())


def _load_npy(path, trust):
    try:
        record = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise
        if not trust:
            raise DumpError("%s: a pickled .npy (an old dump, or not a dump); loading it could "
                            "run arbitrary code. Re-dump the caffemodel, or pass trust=True / "
                            "--trust if you trust where the file came from" % path) from None
        warnings.warn("%s: unpickling a .npy file because trust=True was given" % path,
                      stacklevel=3)
        obj = np.load(path, allow_pickle=True).item()
        if not isinstance(obj, dict):
            raise DumpError("%s: the pickled object is not a dict" % path) from None
        return OrderedDict(obj)
    if record.dtype.names is None or record.shape != ():
        raise DumpError("%s: not a caffe.dump .npy (expected one structured record, found a "
                        "%s array of shape %s)" % (path, record.dtype, record.shape))
    return OrderedDict((k, record[k]) for k in record.dtype.names)


def _load_npz(path, trust):
    with np.load(path, allow_pickle=False) as z:
        return OrderedDict((k, z[k]) for k in z.files)


def _load_h5(path, trust):
    import h5py
    out = OrderedDict()
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                if obj.dtype.kind not in "fiub":
                    raise DumpError("%s: dataset %r holds %s values, not numbers"
                                    % (path, name, obj.dtype))
                out[name] = np.asarray(obj, dtype=np.float32)
        f.visititems(visit)
    return out


def _load_json(path, trust):
    with open(path) as f:
        obj = json.load(f)
    if not isinstance(obj, dict):
        raise DumpError("%s: not a caffe.dump JSON object" % path)
    out = OrderedDict()
    for k, v in obj.items():
        if not isinstance(v, dict) or "data" not in v or "shape" not in v:
            raise DumpError("%s: entry %r lacks data/shape" % (path, k))
        out[k] = np.asarray(v["data"], dtype=np.float32).reshape(v["shape"])
    return out


_LOADERS = {".pt": _load_pt, ".npy": _load_npy, ".npz": _load_npz, ".h5": _load_h5,
            ".json": _load_json}


def _legacy_compatible(src, dst):
    """Caffe's ShapeEquals for legacy shapes: right-aligned, missing axes are 1."""
    if tuple(src) == tuple(dst):
        return True
    if len(src) != 4 or len(dst) > 4:
        return False
    padded = (1,) * (4 - len(dst)) + tuple(dst)
    return tuple(src) == padded


def copy_to_net(net, source, trust=False):
    """Copy a dump (path or mapping) into ``net`` by layer name; returns the keys used.
    Everything is checked before the first blob is written."""
    arrays = load(source, trust=trust) if not isinstance(source, dict) else source
    layers = net.layer_dict
    used = []
    writes = []
    for key, arr in arrays.items():
        lname, _, suffix = key.rpartition("/")
        layer = layers.get(lname)
        if layer is None or not len(getattr(layer, "blobs", [])):
            continue
        blobs = layer.blobs
        if suffix.isdigit():
            idx = int(suffix)
        else:
            names = blob_names(getattr(layer, "type", ""), len(blobs))
            if suffix not in names:
                raise DumpError("%s: layer %r (type %s) has no blob named %r"
                                % (key, lname, getattr(layer, "type", "?"), suffix))
            idx = names.index(suffix)
        if idx >= len(blobs):
            raise DumpError("%s: layer %r has only %d blobs" % (key, lname, len(blobs)))
        target = blobs[idx]
        arr = np.asarray(arr, dtype=np.float32)
        if not _legacy_compatible(arr.shape, tuple(target.shape)):
            raise DumpError("%s: shape %s does not fit layer %r blob %d of shape %s"
                            % (key, arr.shape, lname, idx, tuple(target.shape)))
        writes.append((target, arr.reshape(target.shape)))
        used.append(key)
    for target, arr in writes:
        target.data[...] = arr
    return used


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m caffe.dump",
        description="Dump every blob of a Caffe model into .pt/.h5/.npz/.npy/.json "
                    "(keys layer/index, or layer/weight, layer/bias... with --prototxt).")
    parser.add_argument("model", help="binary .caffemodel (V2 or V1) or Caffe .caffemodel.h5")
    parser.add_argument("-o", "--output", default=None,
                        help="output file; its extension picks the format "
                             "(default MODEL.pt, i.e. MODEL.caffemodel.pt)")
    parser.add_argument("--prototxt", default=None,
                        help="net prototxt: name blobs by layer type (weight, bias, ...)")
    parser.add_argument("--names", action="store_true",
                        help="name blobs by the layer types stored in the caffemodel")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show a progress bar")
    bar.add_argument("-q", "--quiet", dest="progress", action="store_false",
                     help="no progress bar and no summary")
    args = parser.parse_args(argv)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    out = args.output or args.model + ".pt"
    try:
        written = dump(args.model, out, prototxt=args.prototxt, names=args.names,
                       progress=progress)
    except (DumpError, OSError) as exc:
        sys.stderr.write("caffe.dump: error: %s\n" % exc)
        return 1
    if args.progress is not False:
        for key, shape in written.items():
            print("%-40s %s" % (key, "x".join(str(d) for d in shape) or "scalar"))
        print("wrote %d blobs to %s" % (len(written), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
