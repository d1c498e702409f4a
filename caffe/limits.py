"""Caffe's limits on blob shapes, checked before anything is allocated.

Caffe aborts when a blob's count exceeds INT_MAX (``Blob::Reshape``); here the
check raises :class:`BlobShapeError` instead, and a blob whose float32 data
alone would not fit in this machine's memory is refused the same way, so a
typo like ``num_output: 1000000`` fails at Net construction, naming the layer
and blob, not after minutes of filling weights or deep inside the allocator.
"""
import math
import os

INT_MAX = 2 ** 31 - 1
MAX_AXES = 32                     # Caffe's kMaxBlobAxes
FLT_MAX = 3.4028234663852886e38   # float32's largest value (Caffe's FLT_MAX)
FLT_MIN = 1.1754943508222875e-38  # float32's smallest normal value (Caffe's FLT_MIN)


def count(shape, start=0, end=None):
    """Product of ``shape[start:end]`` (1 for an empty range), as Blob::count."""
    return int(math.prod(int(d) for d in tuple(shape)[start:end]))


class BlobShapeError(ValueError):
    """A blob shape Caffe cannot hold or this machine cannot allocate."""


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):     # not POSIX: no check
        return None


PHYSICAL_MEMORY = _physical_memory()


def check_shape(shape, what="blob"):
    """Raise BlobShapeError unless ``shape`` is one Caffe (and this machine) can hold."""
    shape = tuple(shape)
    if len(shape) > MAX_AXES:
        raise BlobShapeError("%s: %d axes, more than Caffe's limit of %d"
                             % (what, len(shape), MAX_AXES))
    count = 1
    for d in shape:
        if d < 0:
            raise BlobShapeError("%s: negative dimension in shape %s" % (what, list(shape)))
        count *= int(d)
    if count > INT_MAX:
        raise BlobShapeError("%s: shape %s has %d elements, more than Caffe's limit of "
                             "INT_MAX (%d)" % (what, list(shape), count, INT_MAX))
    if PHYSICAL_MEMORY is not None and 4 * count > PHYSICAL_MEMORY:
        raise BlobShapeError("%s: shape %s needs %.1f GiB for its data alone, more than this "
                             "machine's %.1f GiB of memory" % (what, list(shape),
                                                               4 * count / 2 ** 30,
                                                               PHYSICAL_MEMORY / 2 ** 30))
    return count
