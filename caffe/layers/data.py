"""Data layers: Data, ImageData, HDF5Data, HDF5Output, MemoryData, WindowData,
DummyData.

They are Blob layers (``setup``/``reshape``/``forward``/``backward`` on Blob
lists, like Caffe's C++ data layers).  Random choices (shuffling, mirroring,
crop offsets) draw from ``caffe._common.numpy_rng()`` so
``caffe.set_random_seed`` makes them reproducible.  Layers that read from disk
(Data, ImageData, WindowData) load batches in a background thread with a
bounded queue (``caffe.prefetch``), as Caffe's BasePrefetchingDataLayer does.
"""
import logging
import os

import numpy as np
import torch

from .. import _common
from .base import BlobLayer
from .registry import register_layer

logger = logging.getLogger("caffe")


class DataLayerError(RuntimeError):
    """A data source that cannot be read; the message names layer and source."""


def _write_top(blob, arr):
    """Reshape ``blob`` to ``arr`` and copy ``arr`` (numpy or tensor) into it."""
    shape = tuple(arr.shape)
    if tuple(blob.shape) != shape:
        blob.reshape(*shape)
    if isinstance(arr, np.ndarray):
        arr = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    blob.data_buffer.host().copy_(arr)


class _DataLayer(BlobLayer):
    """Common base: no bottoms, no backward."""

    _caffe_blob_layer = True
    num_bottoms = (0, 0)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.top_names = list(layer_param.top)

    def where(self, source=None):
        w = "layer %r (type %s)" % (self.name, self.layer_param.type)
        if source is not None:
            w += ", source %r" % (source,)
        return w

    def data_error(self, message, source=None):
        return DataLayerError("%s: %s" % (self.where(source), message))

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


# ---------------------------------------------------------------------------
# HDF5Data
# ---------------------------------------------------------------------------
@register_layer("HDF5Data")
class HDF5DataLayer(_DataLayer):
    """Rows of the datasets named by the tops, from a list of HDF5 files.

    As Caffe: the source lists file names (whitespace separated); every top
    reads the dataset of its own name (cast to float32, at least 1-D); rows
    are served ``batch_size`` at a time, moving to the next file at the end of
    one and wrapping around after the last; ``shuffle`` permutes the file
    order on every pass and the rows of a file each time it is (re)entered.
    """

    num_tops = (1, None)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.hdf5_data_param
        if layer_param.HasField("transform_param"):
            raise self.error("HDF5Data does not transform data", field="transform_param")
        self.source = p.source
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.error("batch_size must be positive", field="hdf5_data_param.batch_size")
        self.shuffle = bool(p.shuffle)
        try:
            with open(self.source, "r") as f:
                self.files = f.read().split()
        except OSError as exc:
            raise self.data_error("failed to open the list of HDF5 files: %s" % exc,
                                  self.source) from None
        if not self.files:
            raise self.data_error("must have at least 1 HDF5 filename listed", self.source)
        self.file_perm = np.arange(len(self.files))
        if self.shuffle:
            _common.numpy_rng().shuffle(self.file_perm)
        self.current_file = 0
        self._load(self.files[self.file_perm[0]])
        self.current_row = 0

    def _load(self, filename):
        import h5py
        try:
            f = h5py.File(filename, "r")
        except OSError as exc:
            raise self.data_error("failed opening HDF5 file %r: %s" % (filename, exc),
                                  self.source) from None
        arrays = []
        with f:
            for name in self.top_names:
                if name not in f:
                    raise self.data_error("HDF5 file %r has no dataset %r (one per top)"
                                          % (filename, name), self.source)
                ds = f[name]
                if not isinstance(ds, h5py.Dataset):
                    raise self.data_error("%r in HDF5 file %r is not a dataset"
                                          % (name, filename), self.source)
                if ds.dtype.kind not in "fiub":
                    raise self.data_error("dataset %r in HDF5 file %r has unsupported type %s"
                                          % (name, filename, ds.dtype), self.source)
                arr = np.asarray(ds[()], dtype=np.float32)
                if arr.ndim < 1:
                    raise self.data_error("dataset %r in HDF5 file %r must have at least 1 "
                                          "axis" % (name, filename), self.source)
                arrays.append(arr)
        n = arrays[0].shape[0]
        for name, arr in zip(self.top_names, arrays):
            if arr.shape[0] != n:
                raise self.data_error("datasets of HDF5 file %r have different numbers of "
                                      "rows (%r has %d, %r has %d)"
                                      % (filename, self.top_names[0], n, name, arr.shape[0]),
                                      self.source)
        if n == 0:
            raise self.data_error("HDF5 file %r has no rows" % filename, self.source)
        self.arrays = [a.reshape(n, -1) for a in arrays]
        self.row_shapes = [a.shape[1:] for a in arrays]
        self.data_perm = np.arange(n)
        if self.shuffle:
            _common.numpy_rng().shuffle(self.data_perm)

    def setup(self, bottom, top):
        for blob, shape in zip(top, self.row_shapes):
            blob.reshape(self.batch_size, *shape)

    def _next(self):
        self.current_row += 1
        if self.current_row == self.arrays[0].shape[0]:
            if len(self.files) > 1:
                self.current_file += 1
                if self.current_file == len(self.files):
                    self.current_file = 0
                    if self.shuffle:
                        _common.numpy_rng().shuffle(self.file_perm)
                self._load(self.files[self.file_perm[self.current_file]])
            self.current_row = 0
            if self.shuffle:
                _common.numpy_rng().shuffle(self.data_perm)

    def forward(self, bottom, top):
        bs = self.batch_size
        # whole runs of rows within the current file are gathered at once
        batches = [[] for _ in top]
        got = 0
        while got < bs:
            n = self.arrays[0].shape[0]
            take = min(bs - got, n - self.current_row)
            idx = self.data_perm[self.current_row:self.current_row + take]
            for j in range(len(top)):
                batches[j].append(self.arrays[j][idx])
            got += take
            # advance: all but the last step stay inside the file
            self.current_row += take - 1
            self._next()
        for j, blob in enumerate(top):
            arr = batches[j][0] if len(batches[j]) == 1 else np.concatenate(batches[j])
            _write_top(blob, arr.reshape((bs,) + self.row_shapes[j]))
