"""Blob: Caffe's N-D float32 array with data and diff, as pycaffe exposes it.

Storage follows Caffe's SyncedMemory: each of ``data`` and ``diff`` owns a host
buffer and, in GPU mode, a device buffer, plus a "head" saying which side was
written last.  ``blob.data`` returns a numpy view of the host buffer (so writes
into it are seen by the next forward, and the array outlives the Net); layers
read and write the compute-side tensor through :meth:`SyncedBuffer.compute` and
:meth:`SyncedBuffer.write`.  Buffers grow only when a reshape needs more room,
as Caffe's ``Blob::Reshape`` does, so views taken earlier stay valid otherwise.
"""

import torch

from . import _common
from .limits import check_shape
from .limits import count as _count

_UNINIT, _HOST, _DEVICE, _SYNCED = 0, 1, 2, 3
_CPU = _common._CPU   # the device object compute_device() hands out in CPU mode


class SyncedBuffer:
    """One buffer (data or diff): a host copy, allocated zero-filled on first
    use, and in GPU mode a device copy; ``_head`` says which side is current.

    Once the host memory has been handed out (``host()``, i.e. ``blob.data``
    or ``blob.diff``), it is kept for as long as the count does not grow, so
    numpy views stay live (Caffe's rule) and writes copy into it.  Until then a
    write may simply adopt the written tensor as the storage: nobody can see the
    difference, and the forward pass saves a copy per top.
    """

    __slots__ = ("_host", "_dev", "_head", "_shape", "_count", "_capacity", "_hv", "_dv",
                 "_exported", "version")

    def __init__(self, shape):
        self._shape = tuple(shape)
        self._count = _count(self._shape)
        self._capacity = self._count
        self._host = None           # flat tensors, allocated on first use
        self._dev = None
        self._head = _UNINIT
        self._hv = None             # cached shaped views of _host / _dev
        self._dv = None
        self._exported = False      # host memory handed out to user code
        # Bumped by every access that may write (host(), mutable_compute(),
        # write(), zero_(), reshape): the Net compares it to decide whether a
        # layer's recorded forward still matches its bottoms and params.
        self.version = 0

    # -- shape -------------------------------------------------------------
    def reshape(self, shape):
        shape = tuple(int(d) for d in shape)
        if shape == self._shape:
            return
        self.version += 1
        count = _count(shape)
        if count > self._capacity:
            # Caffe reallocates (zero-filled) only when the count grows.
            self._host = None
            self._dev = None
            self._head = _UNINIT
            self._capacity = count
            self._exported = False
        self._shape = shape
        self._count = count
        self._hv = None
        self._dv = None

    @property
    def shape(self):
        return self._shape

    # -- storage -------------------------------------------------------------
    def _host_view(self):
        v = self._hv
        if v is None:
            if self._host is None or self._host.numel() < self._count:
                self._host = torch.zeros(max(self._capacity, self._count, 1),
                                         dtype=torch.float32)
            v = self._hv = self._host[: self._count].view(self._shape)
        return v

    def _dev_view(self):
        v = self._dv
        if v is None:
            v = self._dv = self._dev[: self._count].view(self._shape)
        return v

    def _to_host(self):
        if self._head == _DEVICE:
            self._host_view().copy_(self._dev_view())
            self._head = _SYNCED
        elif self._head == _UNINIT:
            self._head = _HOST

    def _to_device(self, device):
        dev = self._dev
        if dev is None or dev.device != device or dev.numel() < self._count:
            size = max(self._capacity, self._count, 1)
            if self._head == _DEVICE:
                new = torch.empty(size, dtype=torch.float32, device=device)
                new[: self._count].copy_(self._dev_view().reshape(-1))
            elif self._head == _UNINIT:
                new = torch.zeros(size, dtype=torch.float32, device=device)
                self._head = _DEVICE
            else:
                new = torch.empty(size, dtype=torch.float32, device=device)
                new[: self._count].copy_(self._host_view().reshape(-1))
                self._head = _SYNCED
            self._dev = new
            self._dv = None
        elif self._head == _HOST:
            self._dev_view().copy_(self._host_view())
            self._head = _SYNCED
        elif self._head == _UNINIT:
            self._dev.zero_()
            self._head = _DEVICE

    # -- host side -------------------------------------------------------------
    def host(self):
        """Host tensor of the blob's shape, for writing (marks the host as head).
        What it returns stays the storage: views of it remain live."""
        self._to_host()
        self._head = _HOST
        self._exported = True
        self.version += 1
        return self._host_view()

    def host_readonly(self):
        """Host tensor for reading only, not to be kept (the head stays where it is)."""
        self._to_host()
        return self._host_view()

    # -- compute side ------------------------------------------------------
    def compute(self, device=None):
        """Tensor on the compute device holding the current values (read access)."""
        if device is None:
            device = _common.compute_device()
        if device is _CPU or device.type == "cpu":
            if self._head == _DEVICE or self._head == _UNINIT:
                self._to_host()
            v = self._hv
            return v if v is not None else self._host_view()
        self._to_device(device)
        return self._dev_view()

    def mutable_compute(self, device=None):
        """Tensor on the compute device for writing in place (marks that side as head)."""
        t = self.compute(device)
        self.version += 1
        if t.is_cpu:
            self._head = _HOST
            self._exported = True       # written in place by its holder: keep it
        else:
            self._head = _DEVICE
        return t

    def write(self, value):
        """Set the values to ``value`` (a tensor of any shape), on its side."""
        if value.shape != self._shape:
            self.reshape(value.shape)
        self.version += 1
        if value.is_cpu:
            if not self._exported and value.dtype == torch.float32 and value.is_contiguous():
                self._host = value.reshape(-1)      # adopt it: no copy
                self._hv = value
                self._capacity = max(self._capacity, self._count)
                self._head = _HOST
                return value
            dst = self._host_view()                 # fully overwritten: no sync needed
            self._head = _HOST
        else:
            if value.dtype == torch.float32 and value.is_contiguous():
                self._dev = value.reshape(-1)       # device memory is never handed out
                self._dv = value
                self._head = _DEVICE
                return value
            dev = self._dev
            if dev is None or dev.device != value.device or dev.numel() < self._count:
                self._dev = torch.empty(max(self._capacity, self._count, 1),
                                        dtype=torch.float32, device=value.device)
                self._dv = None
            dst = self._dev_view()
            self._head = _DEVICE
        dst.copy_(value)
        return dst

    def set_host_storage(self, flat):
        """Use ``flat`` (a contiguous float32 CPU tensor of at least ``count``
        elements) as the host storage, without copying: Caffe's set_cpu_data.
        The host becomes head; any device copy is dropped."""
        if flat.dtype != torch.float32 or flat.device.type != "cpu" or not flat.is_contiguous():
            raise ValueError("set_host_storage needs a contiguous float32 CPU tensor")
        flat = flat.reshape(-1)
        self.version += 1
        if flat.numel() < self._count:
            raise ValueError("set_host_storage: %d elements for a buffer of %d"
                             % (flat.numel(), self._count))
        self._host = flat
        self._capacity = flat.numel()
        self._dev = None
        self._head = _HOST
        self._hv = None
        self._dv = None

    def zero_(self):
        """Zero the side in use (Caffe zeroes on the side that is head)."""
        self.version += 1
        if self._head == _UNINIT:
            return                          # first allocation is zero-filled
        if self._head == _DEVICE:
            self._dev_view().zero_()
        else:
            self._host_view().zero_()
            self._head = _HOST


class Blob:
    """A Caffe blob: ``data`` and ``diff`` of one shape, shared by reference."""

    # __dict__: pycaffe's Blob accepts new attributes, and client code stores
    # things on blobs.
    __slots__ = ("_data", "_diff", "__weakref__", "__dict__")

    def __init__(self, shape=()):
        shape = tuple(int(d) for d in shape)
        for d in shape:
            if d < 0:
                raise ValueError("Blob dimensions must be non-negative, got %s" % (shape,))
        check_shape(shape)
        self._data = SyncedBuffer(shape)
        self._diff = SyncedBuffer(shape)

    # -- pycaffe surface ---------------------------------------------------
    @property
    def shape(self):
        return list(self._data.shape)

    @property
    def count(self):
        return self._data._count

    def num_axes(self):
        return len(self._data.shape)

    def _legacy(self, index):
        shape = self._data.shape
        if len(shape) > 4:
            raise ValueError("Cannot use legacy accessors on Blobs with > 4 axes (shape %s)"
                             % (list(shape),))
        return shape[index] if index < len(shape) else 1

    @property
    def num(self):
        return self._legacy(0)

    @property
    def channels(self):
        return self._legacy(1)

    @property
    def height(self):
        return self._legacy(2)

    @property
    def width(self):
        return self._legacy(3)

    def reshape(self, *dims, **kwargs):
        if kwargs:
            raise RuntimeError("Blob.reshape takes no kwargs")
        if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
            dims = tuple(dims[0])
        shape = tuple(int(d) for d in dims)
        for d in shape:
            if d < 0:
                raise ValueError("Blob.reshape: negative dimension in %s" % (shape,))
        check_shape(shape)
        self._data.reshape(shape)
        self._diff.reshape(shape)

    @property
    def data(self):
        """float32 numpy view of the data, sharing memory with the blob."""
        return self._data.host().numpy()

    @property
    def diff(self):
        """float32 numpy view of the diff, sharing memory with the blob."""
        return self._diff.host().numpy()

    @property
    def _gpu_data_ptr(self):
        return self._data.mutable_compute(_common.compute_device()).data_ptr()

    @property
    def _gpu_diff_ptr(self):
        return self._diff.mutable_compute(_common.compute_device()).data_ptr()

    # -- tensor access for layers and solvers -------------------------------
    @property
    def data_buffer(self):
        return self._data

    @property
    def diff_buffer(self):
        return self._diff

    def data_tensor(self, device=None):
        return self._data.compute(device)

    def diff_tensor(self, device=None):
        return self._diff.compute(device)

    def mutable_data_tensor(self, device=None):
        return self._data.mutable_compute(device)

    def mutable_diff_tensor(self, device=None):
        return self._diff.mutable_compute(device)

    def share_data(self, other):
        """Make this blob use ``other``'s data buffer (Caffe's ShareData)."""
        self._data = other._data

    def share_diff(self, other):
        self._diff = other._diff

    def shape_equals_proto(self, proto):
        """Caffe's Blob::ShapeEquals: legacy 4-D protos compare right-aligned."""
        if proto.HasField("num") or proto.HasField("channels") or \
                proto.HasField("height") or proto.HasField("width"):
            shape = self._data.shape
            if len(shape) > 4:
                return False
            legacy = [proto.num, proto.channels, proto.height, proto.width]
            padded = [1] * (4 - len(shape)) + list(shape)
            return padded == legacy
        return list(self._data.shape) == list(proto.shape.dim)

    def __repr__(self):
        return "<caffe.Blob shape=%s>" % (self.shape,)


class BlobVec(list):
    """pycaffe's BlobVec: a list of Blobs with ``add_blob(*dims)``."""

    def add_blob(self, *dims, **kwargs):
        if kwargs:
            raise RuntimeError("add_blob takes no kwargs")
        blob = Blob(tuple(int(d) for d in dims))
        self.append(blob)
        return blob
