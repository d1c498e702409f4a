"""Moving weights between Blobs and Caffe's files: BlobProto, binary
caffemodels (V1 and V2 layers) and Caffe's HDF5 weight layout.

Copies are transactional: :func:`plan_copy` reads and checks the whole file
(layer blob counts, shapes, value counts, dtypes) and returns a
:class:`CopyPlan`; only ``plan.apply()`` touches the net.  A file that fails
any check leaves every weight as it was.
"""
import contextlib
import logging

import numpy as np
import torch

from . import atomic, protoio
from .limits import count as _count
from .protoio import CaffeFileError

logger = logging.getLogger("caffe")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def proto_shape(proto):
    """A BlobProto's shape; legacy 4-D (num/channels/height/width) when set."""
    if proto.HasField("num") or proto.HasField("channels") or \
            proto.HasField("height") or proto.HasField("width"):
        return (proto.num, proto.channels, proto.height, proto.width)
    return tuple(proto.shape.dim)


def proto_array(proto, diff=False):
    """float32 array of a BlobProto's data (double_data when that is what it holds)."""
    if diff:
        values = proto.double_diff if len(proto.double_diff) else proto.diff
    else:
        values = proto.double_data if len(proto.double_data) else proto.data
    return np.asarray(values, dtype=np.float32)



def shape_fits(src, dst):
    """Caffe's ``Blob::ShapeEquals``: equal, or a legacy 4-D source whose
    right-aligned dims match with missing leading axes 1."""
    src, dst = tuple(int(d) for d in src), tuple(int(d) for d in dst)
    if src == dst:
        return True
    if len(src) != 4 or len(dst) > 4:
        return False
    return src == (1,) * (4 - len(dst)) + dst


def _mismatch(where, src, dst):
    return CaffeFileError(
        "%s: shape mismatch. Source param shape is %s; target param shape is %s. To learn "
        "this layer's parameters from scratch rather than copying from a saved net, rename "
        "the layer." % (where, _fmt_shape(src), _fmt_shape(dst)))


def checked_proto_arrays(proto, target_shape, where):
    """(data, diff or None) of ``proto`` as arrays of ``target_shape``, or a
    CaffeFileError naming ``where`` when the shape or the value count is wrong."""
    src = proto_shape(proto)
    legacy = any(proto.HasField(k) for k in ("num", "channels", "height", "width"))
    if not (shape_fits(src, target_shape) if legacy else tuple(src) == tuple(target_shape)):
        raise _mismatch(where, src, target_shape)
    count = _count(target_shape)
    values = proto_array(proto)
    if values.size != count:
        raise CaffeFileError("%s: the blob holds %d values but its shape %s needs %d (truncated "
                             "or corrupt file?)" % (where, values.size, _fmt_shape(src), count))
    diff = None
    if len(proto.diff) == count or len(proto.double_diff) == count:
        diff = proto_array(proto, diff=True).reshape(tuple(target_shape))
    return values.reshape(tuple(target_shape)), diff


def blob_from_proto(blob, proto, where, reshape=False):
    """Copy ``proto`` into ``blob``; shapes must match as Caffe's ShapeEquals says."""
    if reshape:
        target = tuple(int(d) for d in proto_shape(proto))
        data, diff = checked_proto_arrays(proto, target, where)
        blob.reshape(*target)
    else:
        data, diff = checked_proto_arrays(proto, tuple(blob.shape), where)
    _write_blob(blob, data, diff)


def _write_blob(blob, data, diff=None):
    blob.data_buffer.host().copy_(torch.from_numpy(np.ascontiguousarray(data))
                                  .view(tuple(blob.shape)))
    if diff is not None:
        blob.diff_buffer.host().copy_(torch.from_numpy(np.ascontiguousarray(diff))
                                      .view(tuple(blob.shape)))


def blob_to_proto(blob, proto, write_diff=False):
    proto.Clear()
    proto.shape.dim.extend(blob.shape)
    proto.data.extend(blob.data_buffer.host_readonly().reshape(-1).tolist())
    if write_diff:
        proto.diff.extend(blob.diff_buffer.host_readonly().reshape(-1).tolist())
    return proto


def _fmt_shape(shape):
    return " ".join(str(d) for d in shape) + " (%d)" % _count(shape)


def is_hdf5(path):
    with open(path, "rb") as f:
        return f.read(8) == _HDF5_MAGIC


def source_layers(net_param):
    """(name, blobs) of every layer in a weights NetParameter, V2 and V1 alike."""
    for layer in net_param.layer:
        yield layer.name, layer.blobs
    for layer in net_param.layers:
        yield layer.name, layer.blobs


# ---------------------------------------------------------------------------
# Transactional copies into a Net
# ---------------------------------------------------------------------------
def _net_layers(net):
    """(name, blobs, owned flags) per layer of ``net``."""
    for name, layer, owned in zip(net._layer_names, net._layers, net._param_owned):
        yield name, getattr(layer, "blobs", []), owned


class CopyPlan:
    """Checked weights waiting to be written: ``apply()`` cannot fail on the file."""

    def __init__(self, source):
        self.source = source
        self.writes = []            # (blob, data array, diff array or None)
        self.ignored = []           # source layer names the net lacks

    def apply(self):
        for name in self.ignored:
            logger.info("Ignoring source layer %s", name)
        for blob, data, diff in self.writes:
            _write_blob(blob, data, diff)


def plan_copy(net, filename):
    """Read and check a binary caffemodel or Caffe HDF5 weights file for ``net``."""
    protoio.check_file(filename, "weights")
    if is_hdf5(filename):
        return plan_copy_hdf5(net, filename)
    weights = protoio.read_net_param(filename, binary=True, upgrade=False)
    return plan_copy_proto(net, weights, source=str(filename))


def plan_copy_proto(net, weights, source="<NetParameter>"):
    plan = CopyPlan(source)
    targets = {name: blobs for name, blobs, _ in _net_layers(net)}
    for name, blobs in source_layers(weights):
        target = targets.get(name)
        if target is None:
            plan.ignored.append(name)
            continue
        if len(blobs) != len(target):
            raise CaffeFileError("%s: incompatible number of blobs for layer %r: the file "
                                 "has %d, the net expects %d"
                                 % (source, name, len(blobs), len(target)))
        for j, proto in enumerate(blobs):
            data, diff = checked_proto_arrays(
                proto, tuple(target[j].shape),
                "%s: cannot copy param %d weights from layer %r" % (source, j, name))
            plan.writes.append((target[j], data, diff))
    return plan


def copy_from_proto(net, weights, source="<NetParameter>"):
    plan_copy_proto(net, weights, source).apply()


def copy_from(net, filename):
    plan_copy(net, filename).apply()


# ---------------------------------------------------------------------------
# Caffe's HDF5 weights: /data/<layer>/<index> (and /diff/... with snapshot_diff)
# ---------------------------------------------------------------------------
def h5_open(path, what, mode="r"):
    """``h5py.File`` whose failures (truncated, corrupt, not HDF5) name the file."""
    import h5py
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise CaffeFileError("%s: cannot read it as an HDF5 %s (%s) -- the file is truncated, "
                             "corrupt or not HDF5" % (path, what, exc)) from None


@contextlib.contextmanager
def h5_errors(path, what):
    """Turn whatever h5py raises on a damaged file (OSError, RuntimeError,
    KeyError, ValueError... at any call, not only at open) into CaffeFileError."""
    try:
        yield
    except CaffeFileError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise CaffeFileError("%s: damaged HDF5 %s (%s: %s)"
                             % (path, what, type(exc).__name__, exc)) from None


def h5_array(node, where, dtype=np.float32):
    """A dataset's values as ``dtype``; a group, an object/string dataset or a
    damaged chunk raises CaffeFileError naming ``where``."""
    import h5py
    if not isinstance(node, h5py.Dataset):
        raise CaffeFileError("%s: expected a dataset, found a %s" % (where, type(node).__name__))
    kind = node.dtype.kind
    if kind not in "fiub":
        raise CaffeFileError("%s: dataset of type %s, expected numbers" % (where, node.dtype))
    try:
        return np.asarray(node[()], dtype=dtype)
    except (OSError, ValueError, TypeError) as exc:
        raise CaffeFileError("%s: cannot read the dataset (%s)" % (where, exc)) from None


def _h5_get(group, key, where):
    try:
        return group[key]
    except (KeyError, OSError, ValueError) as exc:
        raise CaffeFileError("%s: cannot read %r (%s)" % (where, key, exc)) from None


def plan_copy_hdf5(net, filename):
    import h5py
    plan = CopyPlan(str(filename))
    with h5_errors(filename, "weights file"), h5_open(filename, "weights file") as f:
        if "data" not in f or not isinstance(f["data"], h5py.Group):
            raise CaffeFileError("%s: not a Caffe HDF5 weights file (no /data group)"
                                 % filename)
        data = f["data"]
        for name, blobs, owned in _net_layers(net):
            if name not in data:
                plan.ignored.append(name)       # Caffe logs the net's layer here
                continue
            group = _h5_get(data, name, "%s: /data" % filename)
            if not isinstance(group, h5py.Group):
                raise CaffeFileError("%s: /data/%s is not a group of blobs" % (filename, name))
            n_src = len(group.keys())
            for j, blob in enumerate(blobs):
                key = str(j)
                if key not in group:
                    if not owned[j]:
                        continue
                    raise CaffeFileError("%s: incompatible number of blobs for layer %r: the "
                                         "file has %d, the net expects %d"
                                         % (filename, name, n_src, len(blobs)))
                where = "%s: /data/%s/%s (param %d of layer %r)" % (filename, name, key, j, name)
                arr = h5_array(_h5_get(group, key, where), where)
                if tuple(arr.shape) != tuple(blob.shape):
                    raise CaffeFileError(
                        "%s: cannot copy param %d weights from layer %r; shape mismatch. "
                        "Source param shape is %s; target param shape is %s"
                        % (filename, j, name, list(arr.shape), blob.shape))
                plan.writes.append((blob, arr, None))
            if n_src > len(blobs):
                raise CaffeFileError("%s: incompatible number of blobs for layer %r: the file "
                                     "has %d, the net expects %d"
                                     % (filename, name, n_src, len(blobs)))
    return plan


def load_hdf5(net, filename):
    protoio.check_file(filename, "weights")
    plan_copy_hdf5(net, filename).apply()


def save_hdf5(net, filename, write_diff=False):
    """Caffe's ``Net::ToHDF5`` layout, written atomically."""
    import h5py
    with atomic.atomic_path(filename) as tmp:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            diff = f.create_group("diff") if write_diff else None
            for name, blobs, owned in _net_layers(net):
                if not len(blobs):
                    continue
                g = data.create_group(name)
                gd = diff.create_group(name) if diff is not None else None
                for j, blob in enumerate(blobs):
                    if not owned[j]:
                        continue
                    g.create_dataset(str(j), data=blob.data_buffer.host_readonly().numpy())
                    if gd is not None:
                        gd.create_dataset(str(j), data=blob.diff_buffer.host_readonly().numpy())
