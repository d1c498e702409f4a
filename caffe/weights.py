"""Moving weights between Blobs and Caffe's files: BlobProto, binary
caffemodels (V1 and V2 layers) and Caffe's HDF5 weight layout."""
import numpy as np
import torch

from .protoio import CaffeFileError


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


def blob_from_proto(blob, proto, where, reshape=False):
    """Copy ``proto`` into ``blob``; shapes must match as Caffe's ShapeEquals says."""
    if reshape:
        blob.reshape(*proto_shape(proto))
    elif not blob.shape_equals_proto(proto):
        raise CaffeFileError(
            "%s: shape mismatch. Source param shape is %s; target param shape is %s. To learn "
            "this layer's parameters from scratch rather than copying from a saved net, rename "
            "the layer." % (where, _fmt_shape(proto_shape(proto)), _fmt_shape(blob.shape)))
    values = proto_array(proto)
    if values.size != blob.count:
        raise CaffeFileError("%s: the blob holds %d values but its shape %s needs %d (truncated "
                             "or corrupt file?)" % (where, values.size,
                                                    _fmt_shape(proto_shape(proto)), blob.count))
    blob.data_buffer.host().copy_(torch.from_numpy(values).view(tuple(blob.shape)))
    if len(proto.diff) == blob.count or len(proto.double_diff) == blob.count:
        blob.diff_buffer.host().copy_(torch.from_numpy(proto_array(proto, diff=True))
                                      .view(tuple(blob.shape)))


def blob_to_proto(blob, proto, write_diff=False):
    proto.Clear()
    proto.shape.dim.extend(blob.shape)
    proto.data.extend(blob.data_buffer.host_readonly().reshape(-1).tolist())
    if write_diff:
        proto.diff.extend(blob.diff_buffer.host_readonly().reshape(-1).tolist())
    return proto


def _fmt_shape(shape):
    return " ".join(str(d) for d in shape) + " (%d)" % int(np.prod(shape) if len(shape) else 1)


def is_hdf5(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def source_layers(net_param):
    """(name, blobs) of every layer in a weights NetParameter, V2 and V1 alike."""
    for layer in net_param.layer:
        yield layer.name, layer.blobs
    for layer in net_param.layers:
        yield layer.name, layer.blobs
