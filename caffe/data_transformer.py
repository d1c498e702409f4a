"""Caffe's DataTransformer: crop, mirror, mean subtraction and scaling of
Datums, OpenCV images and blobs, with Caffe's exact float32 numerics.

For one item (channels ``c``, rows ``h``, columns ``w`` of the output)::

    out[c, h, w'] = (x[c, h_off + h, w_off + w] - mean) * scale

where ``w' = width - 1 - w`` when the item is mirrored, ``mean`` is the mean
file's value at the same (uncropped) position or the channel's mean value,
and the subtraction and product are float32 operations as in C++.  Random
choices are drawn in Caffe's order (mirror first, then the crop's row and
column offsets) from the transformer's own generator, seeded from
``caffe._common.numpy_rng()`` when it is created, so
``caffe.set_random_seed`` makes them reproducible even when batches are
loaded in a background thread.

The batch methods (:meth:`DataTransformer.transform_batch`) transform a stack
of equally sized items at once with numpy, which is what the data layers use.
"""
import numpy as np

from . import _common

TRAIN, TEST = 0, 1


class TransformError(ValueError):
    """Invalid transformation parameters or an item that does not fit them."""


def load_mean_file(path, where="transform_param"):
    """A binaryproto mean as a float32 ``(C, H, W)`` array (Blob::FromProto)."""
    from . import protoio
    from .protoio import CaffeFileError
    try:
        protoio.check_file(path, "mean file")
        blob = protoio.read_binary(path, protoio.pb2().BlobProto())
    except (CaffeFileError, OSError) as exc:
        raise TransformError("%s: cannot read mean_file %r: %s" % (where, path, exc)) from None
    if len(blob.double_data) and not len(blob.data):
        values = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    else:
        values = np.asarray(blob.data, dtype=np.float32)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(blob.shape.dim)
    if len(shape) > 4:
        raise TransformError("%s: mean_file %r has %d axes; at most 4 are supported"
                             % (where, path, len(shape)))
    if int(np.prod(shape)) != values.size:
        raise TransformError("%s: mean_file %r holds %d values for shape %s"
                             % (where, path, values.size, shape))
    legacy = (1,) * (4 - len(shape)) + tuple(shape)
    return values.reshape(legacy[1:]).copy()


def _cv2(purpose):
    from ._extras import require
    return require("cv2", purpose)


def decode_image(buf, flag):
    """``cv2.imdecode`` of bytes; None when it cannot be decoded."""
    cv2 = _cv2("decoding encoded Datums")
    if not len(buf):
        return None                 # cv2.imdecode asserts on an empty buffer
    try:
        return cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), flag)
    except cv2.error:
        return None


def read_image(filename, height=0, width=0, is_color=True):
    """Caffe's ReadImageToCVMat: HWC uint8 BGR (or HW grey), resized with
    INTER_LINEAR when both ``height`` and ``width`` are positive; None when the
    file cannot be read."""
    cv2 = _cv2("ImageData (reading image files)")
    img = cv2.imread(filename, cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    if height > 0 and width > 0:
        img = cv2.resize(img, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
    return img


def hwc_to_chw(img):
    """OpenCV image (HW or HWC) as a CHW array view."""
    if img.ndim == 2:
        return img[None]
    return img.transpose(2, 0, 1)


class DataTransformer:
    """``DataTransformer(transform_param, phase, where=...)``; see the module doc."""

    def __init__(self, param, phase, where="transform_param", rng=None):
        self.param = param
        self.phase = int(phase)
        self.where = where
        self.scale = np.float32(param.scale)
        self.mirror = bool(param.mirror)
        self.crop_size = int(param.crop_size)
        self.force_color = bool(param.force_color)
        self.force_gray = bool(param.force_gray)
        self.mean = None
        self.mean_values = None
        if param.HasField("mean_file"):
            if len(param.mean_value):
                raise TransformError("%s: cannot specify mean_file and mean_value at the "
                                     "same time" % where)
            self.mean = load_mean_file(param.mean_file, where)
        elif len(param.mean_value):
            self.mean_values = np.asarray(list(param.mean_value), dtype=np.float32)
        self.needs_rand = self.mirror or (self.phase == TRAIN and self.crop_size > 0)
        self.rng = rng
        if self.rng is None:
            self.init_rand()

    def init_rand(self):
        """Seed this transformer's generator from the global one (InitRand)."""
        if self.needs_rand:
            seed = int(_common.numpy_rng().randint(0, 2 ** 31 - 1))
            self.rng = np.random.RandomState(seed)
        else:
            self.rng = None

    def rand(self, n):
        return int(self.rng.randint(n))

    # -- decoding ------------------------------------------------------------
    def decode_flag(self):
        cv2 = _cv2("decoding encoded Datums")
        if self.force_color and self.force_gray:
            raise TransformError("%s: cannot set both force_color and force_gray" % self.where)
        if self.force_color:
            return cv2.IMREAD_COLOR
        if self.force_gray:
            return cv2.IMREAD_GRAYSCALE
        return cv2.IMREAD_UNCHANGED

    def datum_array(self, datum, flag=None):
        """The CHW array a Datum holds: decoded (uint8) when encoded, else its
        bytes (uint8) or its float_data (float32).  Raises TransformError (a ValueError) when the
        Datum is inconsistent or cannot be decoded."""
        if datum.encoded:
            img = decode_image(datum.data, self.decode_flag() if flag is None else flag)
            if img is None:
                raise TransformError("could not decode the encoded Datum")
            if img.dtype != np.uint8:
                raise TransformError("image data type must be unsigned byte, got %s" % img.dtype)
            return hwc_to_chw(img)
        c, h, w = datum.channels, datum.height, datum.width
        if c <= 0:
            raise TransformError("Datum has %d channels" % c)
        n = c * h * w
        if len(datum.data):
            if len(datum.data) != n:
                raise TransformError("Datum holds %d bytes for %dx%dx%d" % (len(datum.data), c, h, w))
            return np.frombuffer(datum.data, dtype=np.uint8).reshape(c, h, w)
        if len(datum.float_data) != n:
            raise TransformError("Datum holds %d float_data values for %dx%dx%d"
                             % (len(datum.float_data), c, h, w))
        return np.asarray(datum.float_data, dtype=np.float32).reshape(c, h, w)

    # -- shapes ----------------------------------------------------------------
    def infer_shape(self, chw_shape):
        """Output shape ``[1, C, H', W']`` for an input item of shape (C, H, W)."""
        c, h, w = chw_shape
        if c <= 0:
            raise TransformError("%s: input has %d channels" % (self.where, c))
        cs = self.crop_size
        if h < cs or w < cs:
            raise TransformError("%s: crop_size %d is larger than the input (%dx%d)"
                                 % (self.where, cs, h, w))
        return [1, c, cs or h, cs or w]

    def infer_blob_shape(self, datum_or_image):
        """InferBlobShape of a Datum or an OpenCV image."""
        if hasattr(datum_or_image, "channels") and hasattr(datum_or_image, "encoded"):
            return self.infer_shape(self.datum_array(datum_or_image).shape)
        return self.infer_shape(hwc_to_chw(np.asarray(datum_or_image)).shape)

    # -- checks ------------------------------------------------------------------
    def _check(self, c, h, w):
        cs = self.crop_size
        if h < cs or w < cs:
            raise TransformError("%s: crop_size %d is larger than the input (%dx%d)"
                                 % (self.where, cs, h, w))
        if self.mean is not None and self.mean.shape != (c, h, w):
            raise TransformError("%s: mean_file shape %s does not match the input %s"
                                 % (self.where, self.mean.shape, (c, h, w)))
        mv = self.mean_values
        if mv is not None and len(mv) != 1 and len(mv) != c:
            raise TransformError("%s: specify either 1 mean_value or as many as channels: %d "
                                 "(got %d)" % (self.where, c, len(mv)))

    def _draw(self, h, w):
        """(mirror, h_off, w_off) for one item, drawn in Caffe's order."""
        do_mirror = self.mirror and self.rand(2) == 1
        cs = self.crop_size
        if cs:
            if self.phase == TRAIN:
                h_off = self.rand(h - cs + 1)
                w_off = self.rand(w - cs + 1)
            else:
                h_off = (h - cs) // 2
                w_off = (w - cs) // 2
        else:
            h_off = w_off = 0
        return do_mirror, h_off, w_off

    # -- transforms ----------------------------------------------------------------
    def transform_batch(self, items, out=None):
        """Transform a batch: ``items`` is an (N, C, H, W) array (uint8 or
        float32) or a list of CHW arrays of one shape.  Returns float32
        (N, C, H', W'), written into ``out`` when given."""
        if isinstance(items, np.ndarray) and items.ndim == 4:
            batch = items
        else:
            batch = np.stack(items)
        n, c, h, w = batch.shape
        self._check(c, h, w)
        cs = self.crop_size
        oh, ow = (cs, cs) if cs else (h, w)
        if out is None:
            out = np.empty((n, c, oh, ow), dtype=np.float32)
        mean = self.mean
        mv = self.mean_values
        if mv is not None:
            mv = (np.broadcast_to(mv, (c,)) if len(mv) == 1 else mv).reshape(c, 1, 1)
        scale = self.scale
        if not self.needs_rand:
            # one crop for all, no mirror: fully vectorised
            h_off, w_off = ((h - cs) // 2, (w - cs) // 2) if cs else (0, 0)
            src = batch[:, :, h_off:h_off + oh, w_off:w_off + ow]
            self._apply(src, mean, mv, h_off, w_off, oh, ow, scale, out)
            return out
        for i in range(n):
            do_mirror, h_off, w_off = self._draw(h, w)
            src = batch[i, :, h_off:h_off + oh, w_off:w_off + ow]
            self._apply(src, mean, mv, h_off, w_off, oh, ow, scale, out[i])
            if do_mirror:
                out[i] = out[i][:, :, ::-1]
        return out

    @staticmethod
    def _apply(src, mean, mv, h_off, w_off, oh, ow, scale, out):
        np.copyto(out, src, casting="unsafe")
        if mean is not None:
            np.subtract(out, mean[:, h_off:h_off + oh, w_off:w_off + ow], out=out)
        elif mv is not None:
            np.subtract(out, mv, out=out)
        if scale != 1:
            np.multiply(out, scale, out=out)

    def transform(self, item, out=None):
        """Transform one item: a Datum, an OpenCV image (HW or HWC uint8) or a
        CHW array.  Returns float32 (C, H', W')."""
        if hasattr(item, "encoded") and hasattr(item, "channels"):
            if not item.encoded and (self.force_color or self.force_gray):
                _common.logger.error("force_color and force_gray only for encoded datum")
            arr = self.datum_array(item)
        else:
            arr = np.asarray(item)
            if arr.dtype == np.uint8 and arr.ndim in (2, 3) and (
                    arr.ndim == 2 or arr.shape[2] <= 4):
                arr = hwc_to_chw(arr)
        res = self.transform_batch(arr[None], None if out is None else out[None])
        return res[0]

    def transform_blob_array(self, batch):
        """Caffe's Transform(Blob*, Blob*): one mirror draw and one crop for the
        whole (N, C, H, W) float batch."""
        batch = np.asarray(batch, dtype=np.float32)
        n, c, h, w = batch.shape
        self._check(c, h, w)
        do_mirror, h_off, w_off = self._draw(h, w)
        cs = self.crop_size
        oh, ow = (cs, cs) if cs else (h, w)
        x = batch.copy()
        if self.mean is not None:
            x -= self.mean
        if self.mean_values is not None:
            mv = self.mean_values
            x -= (mv if len(mv) > 1 else np.broadcast_to(mv, (c,))).reshape(1, c, 1, 1)
        out = np.ascontiguousarray(x[:, :, h_off:h_off + oh, w_off:w_off + ow])
        if do_mirror:
            out = np.ascontiguousarray(out[:, :, :, ::-1])
        if self.scale != 1:
            out *= self.scale
        return out
