"""caffe.io: array <-> protobuf conversion, image loading and input
preprocessing, with the semantics of BVLC pycaffe's ``caffe.io``.

This module deliberately depends only on numpy (plus optional image
libraries) so it can be imported without torch.

Image back ends, in order of preference:
  * scikit-image (``skimage.io.imread`` / ``skimage.transform.resize``),
    exactly what pycaffe uses;
  * otherwise an equivalent built on PIL (or OpenCV) for reading and on
    ``scipy.ndimage`` for resizing, which reproduces scikit-image's numbers;
  * ``scipy.ndimage.zoom`` for images whose channel count is not 1 or 3
    (as pycaffe), with an OpenCV fallback when scipy is missing.
"""
import numpy as np

from caffe import protoio

try:
    import skimage
    import skimage.io as _skio
    from skimage.transform import resize as _sk_resize
except Exception:  # pragma: no cover - exercised when skimage is absent
    skimage = None
    _skio = None
    _sk_resize = None

try:
    from scipy import ndimage as _ndi
    from scipy.ndimage import zoom
except Exception:  # pragma: no cover
    _ndi = None
    zoom = None


__all__ = [
    'blobproto_to_array', 'array_to_blobproto',
    'arraylist_to_blobprotovector_str', 'blobprotovector_str_to_arraylist',
    'array_to_datum', 'datum_to_array', 'Transformer', 'load_image',
    'resize_image', 'oversample',
]


def _pb():
    """The active schema (a loaded fork's caffe.proto applies here too)."""
    return protoio.schema()


def __getattr__(name):
    # pycaffe's io module exposes ``caffe_pb2``: give the active schema
    if name == "caffe_pb2":
        return protoio.schema()
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


# ---------------------------------------------------------------------------
# proto / datum / ndarray conversion
# ---------------------------------------------------------------------------

def blobproto_to_array(blob, return_diff=False):
    """Return the data (or, with ``return_diff=True``, the diff) of a
    ``BlobProto`` as a float64 array.  A blob that carries any of the legacy
    ``num/channels/height/width`` fields is shaped 4-D from them, otherwise by
    ``shape.dim``."""
    # float64, as pycaffe gives with the protobuf versions it was written for
    # (newer protobuf containers would otherwise convert to float32)
    values = np.array(blob.diff if return_diff else blob.data,
                      dtype=np.float64)
    legacy = any(blob.HasField(f)
                 for f in ('num', 'channels', 'height', 'width'))
    if legacy:
        return values.reshape(blob.num, blob.channels, blob.height,
                              blob.width)
    return values.reshape(blob.shape.dim)


def array_to_blobproto(arr, diff=None):
    """Build a ``BlobProto`` (N-D ``shape``) from ``arr`` and, optionally,
    ``diff``.  No check that the two shapes agree, as in pycaffe."""
    blob = _pb().BlobProto()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(np.asarray(arr).astype(float).flat)
    if diff is not None:
        blob.diff.extend(np.asarray(diff).astype(float).flat)
    return blob


def arraylist_to_blobprotovector_str(arraylist):
    """Serialize a list of arrays as a ``BlobProtoVector`` (bytes)."""
    vec = _pb().BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(a) for a in arraylist])
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(str):  # noqa: A002 (pycaffe's name)
    """Parse serialized ``BlobProtoVector`` bytes into a list of arrays."""
    vec = protoio.parse_binary(str, _pb().BlobProtoVector(), "BlobProtoVector bytes")
    return [blobproto_to_array(b) for b in vec.blobs]


def array_to_datum(arr, label=None):
    """Make a ``Datum`` from a 3-D (C, H, W) array: uint8 arrays go to the
    ``data`` bytes, anything else to ``float_data``.  ``label`` is only set
    when given."""
    if arr.ndim != 3:
        raise ValueError('Incorrect array shape.')
    datum = _pb().Datum()
    datum.channels, datum.height, datum.width = arr.shape
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(float).flat)
    if label is not None:
        datum.label = label
    return datum


def datum_to_array(datum):
    """(C, H, W) array of a ``Datum``: uint8 from ``data`` when it is not
    empty, else float64 from ``float_data``.  The label is not returned."""
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    return np.array(datum.float_data).astype(float).reshape(shape)


# ---------------------------------------------------------------------------
# Pre-processing
# ---------------------------------------------------------------------------

class Transformer:
    """Prepare inputs for a Net (and undo it).

    ``inputs`` maps input blob names to their shapes (N, C, H, W).  Each
    setter configures one step of :meth:`preprocess`, which applies, in
    order: cast to float32, resize to (H, W), transpose, channel swap,
    raw scale, mean subtraction, input scale.
    """

    def __init__(self, inputs):
        self.inputs = inputs
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    # pycaffe names this with two leading underscores (name-mangled); keep it
    def __check_input(self, in_):
        if in_ not in self.inputs:
            raise Exception('{} is not one of the net inputs: {}'.format(
                in_, self.inputs))

    def preprocess(self, in_, data):
        """Turn an (H', W', K) image into a (K, H, W) float32 Net input."""
        self.__check_input(in_)
        out = data.astype(np.float32, copy=False)
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        target_hw = self.inputs[in_][2:]
        if out.shape[:2] != target_hw:
            out = resize_image(out, target_hw)
        if transpose is not None:
            out = out.transpose(transpose)
        if channel_swap is not None:
            out = out[channel_swap, :, :]
        if raw_scale is not None:
            out *= raw_scale
        if mean is not None:
            out -= mean
        if input_scale is not None:
            out *= input_scale
        return out

    def deprocess(self, in_, data):
        """Invert :meth:`preprocess` (apart from the resize)."""
        self.__check_input(in_)
        out = data.copy().squeeze()
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        if input_scale is not None:
            out /= input_scale
        if mean is not None:
            out += mean
        if raw_scale is not None:
            out /= raw_scale
        if channel_swap is not None:
            out = out[np.argsort(channel_swap), :, :]
        if transpose is not None:
            out = out.transpose(np.argsort(transpose))
        return out

    def set_transpose(self, in_, order):
        """Axis order applied to the input, e.g. (2, 0, 1) for HWC -> CHW."""
        self.__check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise Exception('Transpose order needs to have the same number of '
                            'dimensions as the input.')
        self.transpose[in_] = order

    def set_channel_swap(self, in_, order):
        """Channel order taken after the transpose, e.g. (2, 1, 0) for
        RGB -> BGR."""
        self.__check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise Exception('Channel swap needs to have the same number of '
                            'dimensions as the input channels.')
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_, scale):
        """Multiply the raw input by ``scale`` (before mean subtraction),
        e.g. 255 to map [0, 1] images to [0, 255]."""
        self.__check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """Mean to subtract: per channel (1-D, length C) or elementwise
        (2-D / 3-D; resized to the input's H x W when its shape differs)."""
        self.__check_input(in_)
        ms = mean.shape
        if mean.ndim == 1:
            if ms[0] != self.inputs[in_][1]:
                raise ValueError('Mean channels incompatible with input.')
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if len(ms) == 2:
                ms = (1,) + ms
            if len(ms) != 3:
                raise ValueError('Mean shape invalid')
            if ms != self.inputs[in_][1:]:
                in_shape = self.inputs[in_][1:]
                lo, hi = mean.min(), mean.max()
                unit = (mean - lo) / (hi - lo)
                mean = resize_image(unit.transpose((1, 2, 0)),
                                    in_shape[1:]).transpose((2, 0, 1)) \
                    * (hi - lo) + lo
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Multiply the preprocessed input by ``scale`` (after the mean)."""
        self.__check_input(in_)
        self.input_scale[in_] = scale


# ---------------------------------------------------------------------------
# Image IO
# ---------------------------------------------------------------------------

def _uint_to_float(img):
    """skimage.img_as_float for the integer images readers return."""
    if img.dtype.kind == 'u':
        return np.multiply(img, 1.0 / np.iinfo(img.dtype).max,
                           dtype=np.float64)
    if img.dtype.kind == 'i':
        out = np.multiply(img, 1.0 / np.iinfo(img.dtype).max,
                          dtype=np.float64)
        np.maximum(out, -1.0, out=out)
        return out
    if img.dtype == bool:
        return img.astype(np.float64)
    if img.dtype.kind == 'f' and img.dtype.itemsize < 4:
        return img.astype(np.float32)
    return img


def _read_pixels(filename):
    """Decode an image to an (H, W) / (H, W, C) array in RGB(A) order
    without scikit-image: PIL when available, else OpenCV."""
    try:
        from PIL import Image
    except Exception:
        Image = None
    if Image is not None:
        im = Image.open(filename)
        im.load()
        mode = im.mode
        if mode == 'P':
            im = im.convert('RGBA' if 'transparency' in im.info else 'RGB')
        elif mode in ('CMYK', 'YCbCr', 'LAB', 'HSV'):
            im = im.convert('RGB')
        elif mode == '1':
            im = im.convert('L')
        arr = np.asarray(im)
        if arr.dtype == np.int32 and mode.startswith('I'):
            arr = arr.astype(np.uint16) if arr.max(initial=0) < 65536 else arr
        return arr
    from ._extras import require
    cv2 = require('cv2', 'caffe.io.load_image (reading image files)',
                  alternatives=('scikit-image', 'Pillow'))
    if hasattr(filename, 'read'):
        buf = np.frombuffer(filename.read(), dtype=np.uint8)
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    else:
        arr = cv2.imread(str(filename), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise IOError('Could not read image {}'.format(filename))
    if arr.ndim == 3:
        if arr.shape[2] == 3:
            arr = arr[:, :, ::-1]
        elif arr.shape[2] == 4:
            arr = arr[:, :, [2, 1, 0, 3]]
    return np.ascontiguousarray(arr)


def _rgb_to_gray(img):
    """skimage's imread(as_gray=True) conversion for a colour array."""
    img = _uint_to_float(img)
    if img.shape[2] == 4:
        # alpha-blend on a white background, as skimage.color.rgba2rgb
        alpha = img[..., 3:4]
        img = np.clip(img[..., :3] * alpha + (1 - alpha), 0, 1)
    coeffs = np.array([0.2125, 0.7154, 0.0721], dtype=img.dtype)
    return img[..., :3] @ coeffs


def _imread(filename, as_gray):
    if _skio is not None:
        return _skio.imread(filename, as_gray=as_gray)
    img = _read_pixels(filename)
    if as_gray and img.ndim > 2:
        img = _rgb_to_gray(img)
    return img


def load_image(filename, color=True):
    """Load an image as float32 in [0, 1]: (H, W, 3) RGB when ``color``,
    else (H, W, 1) intensity.  Grey images are tiled to 3 channels for
    colour, an alpha channel is dropped.  ``filename`` may be a path or a
    binary file-like object."""
    raw = _imread(filename, not color)
    if skimage is not None:
        img = skimage.img_as_float(raw).astype(np.float32)
    else:
        img = np.asarray(_uint_to_float(raw)).astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


# scipy >= 1.6 names skimage's 'constant' padding 'grid-constant'
_GRID_CONSTANT = 'grid-constant'


def _skimage_style_resize(im, new_dims, order):
    """skimage.transform.resize(im, new_dims, order=order, mode='constant')
    (anti-aliasing on down-sampling, grid_mode zoom, clipping to the input
    range) built on scipy.ndimage."""
    im = np.asarray(im)
    if im.dtype == np.float16:
        im = im.astype(np.float32)
    out_shape = tuple(int(d) for d in new_dims)
    if len(out_shape) == im.ndim - 1:
        out_shape = out_shape + (im.shape[-1],)
    if im.dtype.kind != 'f':
        im = _uint_to_float(im)
    factors = np.divide(im.shape, out_shape)
    if any(o < i for o, i in zip(out_shape, im.shape)):
        sigma = np.maximum(0, (factors - 1) / 2)
        filtered = _ndi.gaussian_filter(im, sigma, cval=0.0,
                                        mode=_GRID_CONSTANT)
    else:
        filtered = im
    out = _ndi.zoom(filtered, [1 / f for f in factors], order=order,
                    mode=_GRID_CONSTANT, cval=0.0, grid_mode=True)
    lo, hi = np.min(im), np.max(im)
    if not np.isnan(lo):
        np.clip(out, lo, hi, out=out)
    return out


def _cv2_resize(im, new_dims, order):
    from ._extras import require
    cv2 = require('cv2', 'caffe.io.resize_image (resizing images)',
                  alternatives=('scikit-image',))
    interp = cv2.INTER_NEAREST if order == 0 else (
        cv2.INTER_LINEAR if order == 1 else cv2.INTER_CUBIC)
    h, w = int(new_dims[0]), int(new_dims[1])
    src = np.ascontiguousarray(im, dtype=np.float32)
    if src.ndim == 3 and src.shape[2] > 4:
        return np.stack([cv2.resize(src[:, :, k], (w, h),
                                    interpolation=interp)
                         for k in range(src.shape[2])], axis=2)
    out = cv2.resize(src, (w, h), interpolation=interp)
    if out.ndim == 2 and src.ndim == 3:
        out = out[:, :, np.newaxis]
    return out


def resize_image(im, new_dims, interp_order=1):
    """Resize an (H, W, K) image to ``new_dims`` = (height, width), keeping
    K; returns float32.  1- and 3-channel images use skimage's resize on the
    min-max normalised image; other channel counts use scipy's zoom."""
    if im.shape[-1] == 1 or im.shape[-1] == 3:
        im_min, im_max = im.min(), im.max()
        if im_max > im_min:
            unit = (im - im_min) / (im_max - im_min)
            if _sk_resize is not None:
                resized = _sk_resize(unit, new_dims, order=interp_order,
                                     mode='constant')
            elif _ndi is not None:
                resized = _skimage_style_resize(unit, new_dims, interp_order)
            else:
                resized = _cv2_resize(unit, new_dims, interp_order)
            resized_im = resized * (im_max - im_min) + im_min
        else:
            ret = np.empty((new_dims[0], new_dims[1], im.shape[-1]),
                           dtype=np.float32)
            ret.fill(im_min)
            return ret
    else:
        scale = tuple(np.array(new_dims, dtype=float)
                      / np.array(im.shape[:2]))
        if zoom is not None:
            resized_im = zoom(im, scale + (1,), order=interp_order)
        else:
            resized_im = _cv2_resize(im, new_dims, interp_order)
    return resized_im.astype(np.float32)


def oversample(images, crop_dims):
    """Ten crops per image: the four corners and the centre, then the same
    five mirrored left-right.  Returns (10 * N, h, w, K) float32."""
    im_shape = np.array(images[0].shape)
    crop_dims = np.array(crop_dims)
    center = im_shape[:2] / 2.0

    boxes = np.empty((5, 4), dtype=int)
    k = 0
    for top in (0, im_shape[0] - crop_dims[0]):
        for left in (0, im_shape[1] - crop_dims[1]):
            boxes[k] = (top, left, top + crop_dims[0], left + crop_dims[1])
            k += 1
    # float corner coordinates truncate when stored in the int array
    boxes[4] = np.tile(center, (1, 2)) + np.concatenate(
        [-crop_dims / 2.0, crop_dims / 2.0])
    boxes = np.tile(boxes, (2, 1))

    crops = np.empty((10 * len(images), crop_dims[0], crop_dims[1],
                      im_shape[-1]), dtype=np.float32)
    n = 0
    for im in images:
        for y0, x0, y1, x1 in boxes:
            crops[n] = im[y0:y1, x0:x1, :]
            n += 1
        crops[n - 5:n] = crops[n - 5:n, :, ::-1, :]
    return crops
