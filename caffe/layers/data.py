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
import threading

import numpy as np
import torch

from .. import _common, fillers, protoio
from .._extras import require
from ..data.db import DBError, open_db
from ..data.lists import read_image_list, read_window_file
from ..data_transformer import DataTransformer, TransformError, hwc_to_chw, load_mean_file, read_image
from ..prefetch import Prefetcher
from .base import BlobLayer, LayerError
from .registry import register_layer

logger = logging.getLogger("caffe")


class DataLayerError(LayerError, RuntimeError):
    """A data source that cannot be read; the message names layer and source."""


def _host_tensor(arr):
    if isinstance(arr, np.ndarray):
        if arr.dtype != np.float32 or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not arr.flags.writeable:
            arr = arr.copy()
        return torch.from_numpy(arr)
    return arr


def _write_top(blob, arr):
    """Reshape ``blob`` to ``arr`` and copy ``arr`` (numpy or tensor) into it."""
    t = _host_tensor(arr)
    shape = tuple(t.shape)
    if tuple(blob.shape) != shape:
        blob.reshape(*shape)
    blob.data_buffer.host().copy_(t)


def _point_top(blob, arr, shape=None):
    """Make ``blob``'s data *be* ``arr`` (Caffe's ``set_cpu_data``) in CPU mode,
    without copying; copy otherwise.  ``arr`` must not be reused afterwards."""
    t = _host_tensor(arr)
    if shape is not None:
        t = t.view(shape)
    shape = tuple(t.shape)
    if tuple(blob.shape) != shape:
        blob.reshape(*shape)
    buf = blob.data_buffer
    if _common.mode() == "cpu" and t.numel() > 0 and t.is_contiguous() \
            and t.dtype == torch.float32:
        buf.set_host_storage(t)
        return
    buf.host().copy_(t)


class _DataLayer(BlobLayer):
    """Common base: no bottoms, no backward."""

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

    def setup(self, bottom, top):
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
        self.offset = 0                 # rows passed so far, for Caffe's Skip()
        for blob, shape in zip(top, self.row_shapes):
            blob.reshape(self.batch_size, *shape)

    def _read_datasets(self, f, filename):
        """One float32 array per top, read from the open HDF5 file ``f``."""
        import h5py
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
                try:
                    arr = np.asarray(ds[()], dtype=np.float32)
                except (OSError, ValueError, TypeError) as exc:
                    raise self.data_error("cannot read dataset %r of HDF5 file %r: %s"
                                          % (name, filename, exc), self.source) from None
                if arr.ndim < 1:
                    raise self.data_error("dataset %r in HDF5 file %r must have at least 1 "
                                          "axis" % (name, filename), self.source)
                arrays.append(arr)
        return arrays

    def _load(self, filename):
        import h5py
        try:
            f = h5py.File(filename, "r")
        except (OSError, RuntimeError, ValueError) as exc:
            raise self.data_error("failed opening HDF5 file %r: %s" % (filename, exc),
                                  self.source) from None
        try:
            arrays = self._read_datasets(f, filename)
        except DataLayerError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise self.data_error("damaged HDF5 file %r (%s: %s)"
                                  % (filename, type(exc).__name__, exc), self.source) from None
        n = arrays[0].shape[0]
        for name, arr in zip(self.top_names, arrays):
            if arr.shape[0] != n:
                raise self.data_error("datasets of HDF5 file %r have different numbers of "
                                      "rows (%r has %d, %r has %d)"
                                      % (filename, self.top_names[0], n, name, arr.shape[0]),
                                      self.source)
        if n == 0:
            raise self.data_error("HDF5 file %r has no rows" % filename, self.source)
        row_shapes = [a.shape[1:] for a in arrays]
        previous = getattr(self, "row_shapes", None)
        if previous is not None and previous != row_shapes:
            for name, old, new in zip(self.top_names, previous, row_shapes):
                if old != new:
                    raise self.data_error(
                        "dataset %r of HDF5 file %r has rows of shape %s, but the files "
                        "before it had %s" % (name, filename, list(new), list(old)),
                        self.source)
        self.arrays = [a.reshape(n, -1) for a in arrays]
        self.row_shapes = row_shapes
        self.data_perm = np.arange(n)
        if self.shuffle:
            _common.numpy_rng().shuffle(self.data_perm)

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

    def _forward_skipping(self, top, size, rank):
        """Caffe's HDF5DataLayer::Skip: with N solvers in TRAIN, rank r keeps row
        number i (counted over all rows passed) when i % N == r."""
        rows = [[] for _ in top]
        for _ in range(self.batch_size):
            while self.offset % size != rank:
                self._next()
                self.offset += 1
            idx = self.data_perm[self.current_row]
            for j in range(len(top)):
                rows[j].append(self.arrays[j][idx])
            self._next()
            self.offset += 1
        for j, blob in enumerate(top):
            _write_top(blob, np.stack(rows[j]).reshape((self.batch_size,) + self.row_shapes[j]))

    def forward(self, bottom, top):
        size = _common.solver_count()
        if size > 1 and self.phase == 0:
            return self._forward_skipping(top, size, _common.solver_rank())
        bs = self.batch_size
        self.offset += bs
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


# ---------------------------------------------------------------------------
# Prefetching layers: Data, ImageData, WindowData
# ---------------------------------------------------------------------------
class _PrefetchingLayer(_DataLayer):
    """Loads batches in a background thread (``caffe.prefetch``); ``forward``
    takes the next batch from the queue and points the tops at it."""

    output_labels = True

    def _make_transformer(self):
        try:
            return DataTransformer(self.layer_param.transform_param, self.phase,
                                   where=self.where() + ", transform_param")
        except TransformError as exc:
            raise DataLayerError(str(exc)) from None

    def _start(self, loader):
        depth = int(self.layer_param.data_param.prefetch) or 1
        self._prefetcher = Prefetcher(loader, depth, name=self.name).attach(self)

    def forward(self, bottom, top):
        data, labels = self._prefetcher.get()
        _point_top(top[0], data)
        if len(top) > 1:
            _point_top(top[1], labels)

    def stop_prefetch(self):
        pf = getattr(self, "_prefetcher", None)
        if pf is not None:
            pf.stop()


def _cursor_advance(cur):
    cur.next()
    if not cur.valid():
        cur.seek_to_first()


_shared_dbs = {}
_shared_lock = threading.Lock()


class _SharedDB:
    """One open database per (path, backend) in the process, shared by every
    Data layer reading it (LMDB and LevelDB refuse a second open of the same
    environment in one process); closed when its last user closes it."""

    def __init__(self, key, db):
        self.key = key
        self.db = db
        self.users = 0

    @classmethod
    def open(cls, path, backend):
        key = (os.path.realpath(path), backend)
        with _shared_lock:
            entry = _shared_dbs.get(key)
            if entry is None:
                entry = cls(key, open_db(path, backend, "r"))
                _shared_dbs[key] = entry
            entry.users += 1
        return _DBHandle(entry)


class _DBHandle:
    def __init__(self, entry):
        self._entry = entry

    def cursor(self):
        return self._entry.db.cursor()

    def close(self):
        entry, self._entry = self._entry, None
        if entry is None:
            return
        with _shared_lock:
            entry.users -= 1
            if entry.users == 0:
                _shared_dbs.pop(entry.key, None)
                entry.db.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def rank_share(phase):
    """``(solver_count, rank)`` when this process reads only its share of the
    records (Caffe's ``DataLayer::Skip``: TRAIN phase of a multi-solver run),
    else None."""
    if phase == _common.TRAIN and _common.solver_count() > 1:
        return (_common.solver_count(), _common.solver_rank())
    return None


class _CursorLoader:
    """A database cursor read batch by batch in the prefetch thread (holding no
    reference to the layer): the initial ``rand_skip``, the per-rank record
    share (rank r of N keeps record i when i % N == r), errors naming the key,
    and closing.  Subclasses build the batch in ``load_batch``."""

    def __init__(self, db, source, batch_size, skip, keep, where):
        self.db = db
        self.source = source
        self.batch_size = batch_size
        self.skip = skip
        self.keep = keep            # (solver_count, rank) or None: Caffe's Skip()
        self.offset = 0
        self.where = where
        self.cursor = None

    def _error(self, key, message):
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        return DataLayerError("%s, source %r, key %r: %s" % (self.where, self.source, k, message))

    def _next(self):
        _cursor_advance(self.cursor)
        self.offset += 1

    def _record(self):
        """The cursor at this rank's next record (opened and skipped on first use)."""
        if self.cursor is None:
            self.cursor = self.db.cursor()
            if not self.cursor.valid():
                raise DataLayerError("%s, source %r: the database is empty"
                                     % (self.where, self.source))
            for _ in range(self.skip):
                _cursor_advance(self.cursor)
        if self.keep is not None:
            size, rank = self.keep
            while self.offset % size != rank:
                self._next()
        return self.cursor

    def close(self):
        if self.cursor is not None:
            self.cursor.close()
            self.cursor = None
        if self.db is not None:
            self.db.close()
            self.db = None


class _DBLoader(_CursorLoader):
    """Reads Datums from a database and transforms them, batch by batch."""

    def __init__(self, db, source, batch_size, transformer, skip, keep, where):
        super().__init__(db, source, batch_size, skip, keep, where)
        self.transformer = transformer
        self.Datum = protoio.schema().Datum

    def load_batch(self):
        tr = self.transformer
        items = []
        labels = np.empty(self.batch_size, dtype=np.float32)
        datum = self.Datum()
        shape = None
        for i in range(self.batch_size):
            cur = self._record()
            key = cur.key()
            try:
                protoio.parse_binary(cur.value(), datum, "the value")
            except protoio.CaffeFileError as exc:
                raise self._error(key, "not a Datum: %s" % exc) from None
            try:
                arr = tr.datum_array(datum)
            except ValueError as exc:
                raise self._error(key, str(exc)) from None
            if shape is None:
                shape = arr.shape
            elif arr.shape != shape:
                raise self._error(key, "item shape %s differs from the batch's %s"
                                  % (arr.shape, shape))
            items.append(arr)
            labels[i] = datum.label
            self._next()
        try:
            data = tr.transform_batch(items)
        except ValueError as exc:
            raise DataLayerError("%s, source %r: %s" % (self.where, self.source, exc)) from None
        return data, labels


@register_layer("Data")
class DataLayer(_PrefetchingLayer):
    """Datums from an LMDB or LevelDB database (``data_param``): raw bytes,
    float_data or encoded images (decoded with OpenCV as Caffe does), through
    the DataTransformer.  The label top is optional."""

    num_tops = (1, 2)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.data_param
        self.source = p.source
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.error("batch_size must be positive", field="data_param.batch_size")
        self.backend = "lmdb" if p.backend == 1 else "leveldb"
        self.rand_skip = int(p.rand_skip)

    def setup(self, bottom, top):
        self.output_labels = len(top) > 1
        transformer = self._make_transformer()
        try:
            db = _SharedDB.open(self.source, self.backend)
        except DBError as exc:
            raise self.data_error("cannot open the %s database: %s" % (self.backend, exc),
                                  self.source) from None
        skip = 0
        if self.rand_skip:
            skip = int(_common.numpy_rng().randint(self.rand_skip))
        # the first Datum (after the skip) gives the top shape
        cur = db.cursor()
        try:
            if not cur.valid():
                raise self.data_error("the database is empty", self.source)
            for _ in range(skip):
                _cursor_advance(cur)
            key = cur.key()
            try:
                datum = protoio.parse_binary(cur.value(), protoio.schema().Datum(),
                                             "the value")
                shape = transformer.infer_shape(transformer.datum_array(datum).shape)
            except (ValueError, protoio.CaffeFileError) as exc:
                raise self.data_error("key %r: %s" % (key.decode("utf-8", "replace"), exc),
                                      self.source) from None
        finally:
            cur.close()
        shape[0] = self.batch_size
        top[0].reshape(*shape)
        if self.output_labels:
            top[1].reshape(self.batch_size)
        self._start(_DBLoader(db, self.source, self.batch_size, transformer, skip,
                              rank_share(self.phase), self.where()))


class _ImageLoader:
    def __init__(self, lines, root, new_h, new_w, is_color, batch_size, transformer,
                 shuffle_rng, start, source, where):
        self.lines = lines
        self.root = root
        self.new_h, self.new_w = new_h, new_w
        self.is_color = is_color
        self.batch_size = batch_size
        self.transformer = transformer
        self.rng = shuffle_rng
        self.pos = start
        self.source = source
        self.where = where

    def read(self, i):
        name = self.lines[i][0]
        path = self.root + name
        img = read_image(path, self.new_h, self.new_w, self.is_color)
        if img is None:
            raise DataLayerError("%s, source %r, line %d: could not load image %r"
                                 % (self.where, self.source, i + 1, path))
        return img

    def load_batch(self):
        items = []
        labels = np.empty(self.batch_size, dtype=np.float32)
        shape = None
        n = len(self.lines)
        for i in range(self.batch_size):
            arr = hwc_to_chw(self.read(self.pos))
            if shape is None:
                shape = arr.shape
            elif arr.shape != shape:
                raise DataLayerError("%s, source %r: image %r is %s, the batch's first is %s; "
                                     "set new_height/new_width"
                                     % (self.where, self.source, self.lines[self.pos][0],
                                        arr.shape, shape))
            items.append(arr)
            labels[i] = self.lines[self.pos][1]
            self.pos += 1
            if self.pos >= n:
                self.pos = 0
                if self.rng is not None:
                    _shuffle_list(self.lines, self.rng)
        try:
            data = self.transformer.transform_batch(items)
        except ValueError as exc:
            raise DataLayerError("%s, source %r: %s" % (self.where, self.source, exc)) from None
        return data, labels


def _shuffle_list(lst, rng):
    perm = rng.permutation(len(lst))
    lst[:] = [lst[i] for i in perm]


@register_layer("ImageData")
class ImageDataLayer(_PrefetchingLayer):
    """Images listed in a text file (``image_data_param``), read with OpenCV."""

    num_tops = (2, 2)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.image_data_param
        self.source = p.source
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.error("positive batch size required", field="image_data_param.batch_size")
        self.new_height, self.new_width = int(p.new_height), int(p.new_width)
        if (self.new_height == 0) != (self.new_width == 0):
            raise self.error("new_height and new_width must be set at the same time",
                             field="image_data_param.new_height")
        self.is_color = bool(p.is_color)
        self.root_folder = p.root_folder
        self.shuffle = bool(p.shuffle)
        self.rand_skip = int(p.rand_skip)

    def setup(self, bottom, top):
        transformer = self._make_transformer()
        try:
            lines = read_image_list(self.source)
        except OSError as exc:
            raise self.data_error("cannot open the image list: %s" % exc, self.source) from None
        if not lines:
            raise self.data_error("the image list is empty", self.source)
        rng = None
        if self.shuffle:
            rng = np.random.RandomState(int(_common.numpy_rng().randint(0, 2 ** 31 - 1)))
            _shuffle_list(lines, rng)
        start = 0
        if self.rand_skip:
            skip = int(_common.numpy_rng().randint(self.rand_skip))
            if skip >= len(lines):
                raise self.data_error("not enough lines (%d) to skip %d" % (len(lines), skip),
                                      self.source)
            start = skip
        loader = _ImageLoader(lines, self.root_folder, self.new_height, self.new_width,
                              self.is_color, self.batch_size, transformer, rng, start,
                              self.source, self.where())
        img = loader.read(start)
        try:
            shape = transformer.infer_shape(hwc_to_chw(img).shape)
        except TransformError as exc:
            raise self.data_error(str(exc), self.source) from None
        shape[0] = self.batch_size
        top[0].reshape(*shape)
        top[1].reshape(self.batch_size)
        self._start(loader)


# ---------------------------------------------------------------------------
# WindowData (R-CNN)
# ---------------------------------------------------------------------------
def _cround(x):
    """C's round(): halves away from zero."""
    import math
    x = float(x)
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


class _WindowLoader:
    def __init__(self, layer, images, fg, bg, channels, mean, mean_values, rng):
        p = layer.layer_param.window_data_param
        tp = layer.layer_param.transform_param
        self.where = layer.where(layer.source)
        self.images = images
        self.fg, self.bg = fg, bg
        self.channels = channels
        self.batch_size = int(p.batch_size)
        self.scale = np.float32(p.scale)
        self.context_pad = int(p.context_pad)
        self.crop_size = int(tp.crop_size)
        self.mirror = bool(tp.mirror)
        self.fg_fraction = np.float32(p.fg_fraction)
        self.use_square = p.crop_mode == "square"
        self.cache = {}
        self.cache_images = bool(p.cache_images)
        self.mean = mean
        self.mean_values = mean_values
        self.rng = rng

    def rand(self):
        return int(self.rng.randint(0, 2 ** 32, dtype=np.uint64))

    def image(self, index):
        cv2 = require("cv2", "WindowData (reading window images)")
        if index < 0 or index >= len(self.images):
            raise DataLayerError("%s: window refers to image %d, but the file lists %d images"
                                 % (self.where, index, len(self.images)))
        path = self.images[index][1]
        if self.cache_images:
            buf = self.cache.get(index)
            if buf is None:
                try:
                    with open(path, "rb") as f:
                        buf = f.read()
                except OSError:
                    buf = b""
                self.cache[index] = buf
            img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR) if buf else None
        else:
            img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise DataLayerError("%s: could not open or find file %r" % (self.where, path))
        return img

    def load_batch(self):
        cv2 = require("cv2", "WindowData (cropping window images)")
        f32 = np.float32
        cs = self.crop_size
        bs = self.batch_size
        C = self.channels
        data = np.zeros((bs, C, cs, cs), dtype=np.float32)
        labels = np.empty(bs, dtype=np.float32)
        num_fg = int(f32(bs) * self.fg_fraction)
        item = 0
        for is_fg, count in ((0, bs - num_fg), (1, num_fg)):
            pool = self.fg if is_fg else self.bg
            for _ in range(count):
                window = pool[self.rand() % len(pool)]
                do_mirror = self.mirror and self.rand() % 2 == 1
                img = self.image(window[0])
                channels = 1 if img.ndim == 2 else img.shape[2]
                x1, y1, x2, y2 = window[3:7]
                pad_w = pad_h = 0
                out_w = out_h = cs
                if self.context_pad > 0 or self.use_square:
                    context_scale = f32(cs) / f32(cs - 2 * self.context_pad)
                    half_h = f32((y2 - y1 + 1) / 2.0)
                    half_w = f32((x2 - x1 + 1) / 2.0)
                    cx = f32(x1) + half_w
                    cy = f32(y1) + half_h
                    if self.use_square:
                        if half_h > half_w:
                            half_w = half_h
                        else:
                            half_h = half_w
                    x1 = _cround(cx - half_w * context_scale)
                    x2 = _cround(cx + half_w * context_scale)
                    y1 = _cround(cy - half_h * context_scale)
                    y2 = _cround(cy + half_h * context_scale)
                    unclipped_h = y2 - y1 + 1
                    unclipped_w = x2 - x1 + 1
                    pad_x1 = max(0, -x1)
                    pad_y1 = max(0, -y1)
                    pad_x2 = max(0, x2 - img.shape[1] + 1)
                    pad_y2 = max(0, y2 - img.shape[0] + 1)
                    x1 += pad_x1
                    x2 -= pad_x2
                    y1 += pad_y1
                    y2 -= pad_y2
                    clipped_h = y2 - y1 + 1
                    clipped_w = x2 - x1 + 1
                    scale_x = f32(cs) / f32(unclipped_w)
                    scale_y = f32(cs) / f32(unclipped_h)
                    out_w = _cround(f32(clipped_w) * scale_x)
                    out_h = _cround(f32(clipped_h) * scale_y)
                    pad_x1 = _cround(f32(pad_x1) * scale_x)
                    pad_x2 = _cround(f32(pad_x2) * scale_x)
                    pad_y1 = _cround(f32(pad_y1) * scale_y)
                    pad_y2 = _cround(f32(pad_y2) * scale_y)
                    pad_h = pad_y1
                    pad_w = pad_x2 if do_mirror else pad_x1
                    if pad_h + out_h > cs:
                        out_h = cs - pad_h
                    if pad_w + out_w > cs:
                        out_w = cs - pad_w
                if (x1 < 0 or y1 < 0 or x2 >= img.shape[1] or y2 >= img.shape[0]
                        or x2 < x1 or y2 < y1):
                    raise DataLayerError("%s: window (%d, %d, %d, %d) lies outside image %r "
                                         "(%dx%d)" % (self.where, x1, y1, x2, y2,
                                                      self.images[window[0]][1],
                                                      img.shape[1], img.shape[0]))
                crop = img[y1:y2 + 1, x1:x2 + 1]
                crop = cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
                if do_mirror:
                    crop = cv2.flip(crop, 1)
                chw = crop[None] if crop.ndim == 2 else crop.transpose(2, 0, 1)
                h, w = chw.shape[1], chw.shape[2]
                dst = data[item, :channels, pad_h:pad_h + h, pad_w:pad_w + w]
                np.copyto(dst, chw, casting="unsafe")
                if self.mean is not None:
                    mh, mw = self.mean.shape[1:]
                    off = (mw - cs) // 2
                    dst -= self.mean[:channels, off + pad_h:off + pad_h + h,
                                     off + pad_w:off + pad_w + w]
                elif self.mean_values is not None:
                    dst -= self.mean_values[:channels].reshape(-1, 1, 1)
                if self.scale != 1:
                    dst *= self.scale
                labels[item] = window[1]
                item += 1
        return data, labels


@register_layer("WindowData")
class WindowDataLayer(_PrefetchingLayer):
    """R-CNN windows (``window_data_param``): foreground and background windows
    sampled at random, warped (with context padding / square mode) to
    ``transform_param.crop_size``."""

    num_tops = (2, 2)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.window_data_param
        self.source = p.source
        if int(p.batch_size) <= 0:
            raise self.error("batch_size must be positive", field="window_data_param.batch_size")
        if int(layer_param.transform_param.crop_size) <= 0:
            raise self.error("WindowData needs a positive crop_size",
                             field="transform_param.crop_size")

    def setup(self, bottom, top):
        p = self.layer_param.window_data_param
        tp = self.layer_param.transform_param
        try:
            images, fg, bg, channels = read_window_file(p.source, p.root_folder,
                                                        p.fg_threshold, p.bg_threshold)
        except OSError as exc:
            raise self.data_error("failed to open the window file: %s" % exc,
                                  self.source) from None
        except ValueError as exc:
            raise self.data_error(str(exc), self.source) from None
        if not fg or not bg:
            raise self.data_error("needs foreground and background windows (got %d and %d)"
                                  % (len(fg), len(bg)), self.source)
        order = sorted(range(len(images)), key=lambda i: images[i][0])
        for pos, i in enumerate(order):
            if images[i][0] != pos:
                raise self.data_error("image indices must run 0..%d" % (len(images) - 1),
                                      self.source)
        images = [(images[i][0], images[i][1], images[i][2]) for i in order]
        mean = mean_values = None
        try:
            if tp.HasField("mean_file"):
                if len(tp.mean_value):
                    raise self.error("cannot specify mean_file and mean_value at the same time",
                                     field="transform_param.mean_value")
                mean = load_mean_file(tp.mean_file, self.where())
            elif len(tp.mean_value):
                mv = np.asarray(list(tp.mean_value), dtype=np.float32)
                if len(mv) != 1 and len(mv) != channels:
                    raise self.error("specify either 1 mean_value or as many as channels: %d"
                                     % channels, field="transform_param.mean_value")
                mean_values = np.broadcast_to(mv, (channels,)).copy() if len(mv) == 1 else mv
        except TransformError as exc:
            raise DataLayerError(str(exc)) from None
        rng = np.random.RandomState(int(_common.numpy_rng().randint(0, 2 ** 31 - 1)))
        cs = int(tp.crop_size)
        bs = int(p.batch_size)
        top[0].reshape(bs, channels, cs, cs)
        top[1].reshape(bs)
        self._start(_WindowLoader(self, images, fg, bg, channels, mean, mean_values, rng))


# ---------------------------------------------------------------------------
# MemoryData
# ---------------------------------------------------------------------------
@register_layer("MemoryData")
class MemoryDataLayer(_DataLayer):
    """Batches from arrays given with ``net.set_input_arrays(data, labels)``.

    As pycaffe: the arrays must be C-contiguous 4-D float32 with the layer's
    channels/height/width (labels N x 1 x 1 x 1), N a multiple of batch_size;
    forward serves rows ``pos .. pos + batch_size`` and wraps around; the tops
    point into the arrays (no copy, CPU mode) and no transformation is applied.
    """

    num_tops = (2, 2)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.memory_data_param
        self.batch_size = int(p.batch_size)
        self.channels, self.height, self.width = int(p.channels), int(p.height), int(p.width)
        self.size = self.channels * self.height * self.width
        if self.batch_size * self.size <= 0:
            raise self.error("batch_size, channels, height, and width must be specified and "
                             "positive in memory_data_param", field="memory_data_param")
        self._data = None
        self._labels = None
        self._n = 0
        self._pos = 0

    def setup(self, bottom, top):
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)

    def _check(self, arr, name, c, h, w):
        if not isinstance(arr, np.ndarray):
            raise RuntimeError("%s must be a numpy array" % name)
        if not arr.flags.c_contiguous:
            raise RuntimeError(name + " must be C contiguous")
        if arr.ndim != 4:
            raise RuntimeError(name + " must be 4-d")
        if arr.dtype != np.float32:
            raise RuntimeError(name + " must be float32")
        if arr.shape[1] != c:
            raise RuntimeError(name + " has wrong number of channels")
        if arr.shape[2] != h:
            raise RuntimeError(name + " has wrong height")
        if arr.shape[3] != w:
            raise RuntimeError(name + " has wrong width")

    def set_input_arrays(self, data, labels):
        if isinstance(labels, np.ndarray) and labels.ndim == 1:
            labels = np.ascontiguousarray(labels[:, None, None, None])
        self._check(data, "data array", self.channels, self.height, self.width)
        self._check(labels, "labels array", 1, 1, 1)
        if data.shape[0] != labels.shape[0]:
            raise RuntimeError("data and labels must have the same first dimension")
        if data.shape[0] % self.batch_size != 0:
            raise RuntimeError("first dimensions of input arrays must be a multiple of "
                               "batch size")
        self.reset(data, labels, data.shape[0])

    def reset(self, data, labels, n):
        """Caffe's Reset: serve ``n`` rows of ``data``/``labels`` from the start."""
        if n % self.batch_size != 0:
            raise RuntimeError("n must be a multiple of batch size")
        if self.layer_param.HasField("transform_param"):
            logger.warning("%s does not transform array data on Reset()", self.where())
        # keep the arrays alive (pycaffe holds references too)
        self._data = data
        self._labels = labels
        self._data_t = _host_tensor(data).view(-1)
        self._labels_t = _host_tensor(labels).view(-1)
        self._n = int(n)
        self._pos = 0

    @property
    def n(self):
        return self._n

    def forward(self, bottom, top):
        if self._data is None:
            raise self.data_error("MemoryData needs to be initialized by calling "
                                  "net.set_input_arrays(data, labels) first")
        bs, pos, size = self.batch_size, self._pos, self.size
        _point_top(top[0], self._data_t[pos * size:(pos + bs) * size],
                   (bs, self.channels, self.height, self.width))
        _point_top(top[1], self._labels_t[pos:pos + bs], (bs, 1, 1, 1))
        self._pos = (pos + bs) % self._n


# ---------------------------------------------------------------------------
# DummyData
# ---------------------------------------------------------------------------
@register_layer("DummyData")
class DummyDataLayer(_DataLayer):
    """Tops filled by fillers (``dummy_data_param``).  Constant fillers fill once
    at setup and are never refilled; other fillers refill on every forward."""

    num_tops = (1, None)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.dummy_data_param
        ntop = len(layer_param.top)
        nf = len(p.data_filler)
        if nf not in (0, 1, ntop):
            raise self.error("number of data fillers must be 0, 1 or equal to the number of "
                             "tops: %d; you specified %d data fillers" % (ntop, nf),
                             field="dummy_data_param.data_filler")
        legacy = len(p.num) or len(p.channels) or len(p.height) or len(p.width)
        self.shapes = []
        if legacy:
            if len(p.shape):
                raise self.error("both shape and legacy fields were specified",
                                 field="dummy_data_param.shape")
            for fname in ("num", "channels", "height", "width"):
                k = len(getattr(p, fname))
                if k != 1 and k != ntop:
                    raise self.error("must specify %r once, or once per top blob (%d); "
                                     "specified %d" % (fname, ntop, k),
                                     field="dummy_data_param." + fname)
            for i in range(ntop):
                self.shapes.append(tuple(
                    int(getattr(p, f)[0 if len(getattr(p, f)) == 1 else i])
                    for f in ("num", "channels", "height", "width")))
        else:
            if len(p.shape) != 1 and len(p.shape) != ntop:
                raise self.error("must specify 'shape' once, or once per top blob (%d); "
                                 "specified %d" % (ntop, len(p.shape)),
                                 field="dummy_data_param.shape")
            for i in range(ntop):
                s = p.shape[0 if len(p.shape) == 1 else i]
                self.shapes.append(tuple(int(d) for d in s.dim))
        if nf == 0:
            f = protoio.schema().FillerParameter()
            f.type = "constant"
            f.value = 0
            self.fillers = [f]
        else:
            self.fillers = list(p.data_filler)
        self.constant = [f.type == "constant" for f in self.fillers]

    def _fill(self, top, constant_pass):
        for i, blob in enumerate(top):
            fid = i if len(self.fillers) > 1 else 0
            if self.constant[fid] == constant_pass:
                try:
                    fillers.fill(blob.data_buffer.host(), self.fillers[fid],
                                 "%s, data_filler %d" % (self.where(), fid))
                except ValueError as exc:
                    raise self.error(str(exc), field="dummy_data_param.data_filler") from None

    def setup(self, bottom, top):
        for blob, shape in zip(top, self.shapes):
            blob.reshape(*shape)
        self._fill(top, True)

    def forward(self, bottom, top):
        self._fill(top, False)


# ---------------------------------------------------------------------------
# HDF5Output
# ---------------------------------------------------------------------------
def _legacy_shape(shape, where):
    if len(shape) > 4:
        raise LayerError("%s: cannot use legacy accessors on blobs with > 4 axes (shape %s)"
                         % (where, shape))
    s = tuple(shape) + (1,) * (4 - len(shape))
    return s


@register_layer("HDF5Output")
class HDF5OutputLayer(_DataLayer):
    """Writes its two bottoms to ``hdf5_output_param.file_name`` as datasets
    ``data`` and ``label`` (4-D legacy shapes, float32), as Caffe does; the
    file is created (truncated) at setup and rewritten on every forward."""

    num_bottoms = (2, 2)
    num_tops = (0, 0)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self.file_name = layer_param.hdf5_output_param.file_name

    def setup(self, bottom, top):
        import h5py
        try:
            with h5py.File(self.file_name, "w"):
                pass
        except OSError as exc:
            raise self.data_error("failed to open HDF5 file %r: %s" % (self.file_name, exc)) from exc

    def forward(self, bottom, top):
        import h5py
        if bottom[0].shape[0:1] != bottom[1].shape[0:1]:
            raise self.data_error("data blob and label blob must have the same batch size "
                                  "(%s vs %s)" % (bottom[0].shape, bottom[1].shape))
        where = self.where()
        d = bottom[0].data_buffer.host_readonly().numpy()
        l = bottom[1].data_buffer.host_readonly().numpy()
        d = d.reshape(_legacy_shape(d.shape, where))
        l = l.reshape(_legacy_shape(l.shape, where))
        with h5py.File(self.file_name, "a") as f:
            for name, arr in (("data", d), ("label", l)):
                if name in f:
                    del f[name]
                f.create_dataset(name, data=np.asarray(arr, dtype=np.float32))

    def backward(self, top, propagate_down, bottom):
        pass
