"""Data files pycaffe ships under ``caffe/imagenet``.

``ilsvrc_2012_mean.npy`` is the default ``--mean_file`` of ``python -m caffe.classify``
and ``python -m caffe.detect``.  BVLC Caffe's file is the ILSVRC 2012 training-set
mean image (3 x 256 x 256, BGR).  The file shipped here is a stand-in with the
same shape, dtype (float64) and channel order whose every pixel is the
well-known per-channel BGR mean (104.0069879317889, 116.66876761696767,
122.6789143406786): the average of the real image over height and width,
without its spatial variation.  ``mean_file()`` gives its path and
``write_mean_file(path)`` regenerates it.
"""
import os

import numpy as np

BGR_MEAN = (104.0069879317889, 116.66876761696767, 122.6789143406786)
MEAN_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ilsvrc_2012_mean.npy")


def ilsvrc_2012_mean():
    """The stand-in mean as a (3, 256, 256) float64 array."""
    return np.tile(np.asarray(BGR_MEAN, dtype=np.float64)[:, None, None], (1, 256, 256))


def mean_file():
    return MEAN_FILE


def write_mean_file(path=MEAN_FILE):
    np.save(path, ilsvrc_2012_mean())
    return path
