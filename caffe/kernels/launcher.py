"""Compiles the ``.cu`` sources of this package with CuPy at first use and
launches their kernels on PyTorch's current CUDA stream.

CuPy is optional: :func:`cupy_available` is false when it is missing (or no
CUDA device is usable), and callers then use the PyTorch paths.
"""
import logging
import os
import threading

import numpy as np

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
THREADS = 256
MAX_BLOCKS = 65535

_lock = threading.Lock()
_modules = {}          # (source file, device index) -> cupy.RawModule
_functions = {}        # (source file, device index, name) -> cupy.RawKernel
_cupy_state = None     # None: not probed yet; False: unusable; else the module


def source_path(name):
    """Absolute path of kernel source ``name`` (e.g. ``"roi_pooling.cu"``)."""
    return os.path.join(SOURCE_DIR, name)


def read_source(name):
    with open(source_path(name)) as f:
        return f.read()


def _cupy():
    global _cupy_state
    if _cupy_state is None:
        import torch

        from .._extras import MissingExtraError, cuda_mismatch, require
        _cupy_state = False
        if not torch.cuda.is_available():
            return _cupy_state
        try:
            cupy = require("cupy", "the CUDA kernels")
            mismatch = cuda_mismatch()
            if mismatch:
                raise MissingExtraError(mismatch)
            if cupy.cuda.runtime.getDeviceCount() > 0:
                _cupy_state = cupy
        except MissingExtraError as exc:
            # not installed: quietly the PyTorch paths; broken or mismatched: say so once
            if "not installed" not in str(exc):
                logging.getLogger("caffe").warning("%s; the CUDA kernels use their PyTorch "
                                                   "paths", exc)
        except Exception as exc:     # CUDA driver errors
            logging.getLogger("caffe").warning("CuPy cannot use the GPU (%s); the CUDA "
                                               "kernels use their PyTorch paths", exc)
    return _cupy_state


def cupy_available():
    """True when CuPy imports and sees a CUDA device."""
    return bool(_cupy())


def use_kernels(*tensors):
    """Whether the CUDA kernels should run for these tensors."""
    return all(t.is_cuda for t in tensors) and cupy_available()


def get_function(source, name, device_index):
    """The compiled kernel ``name`` from ``source`` on a device (cached)."""
    key = (source, device_index, name)
    fn = _functions.get(key)
    if fn is not None:
        return fn
    cupy = _cupy()
    if not cupy:
        from .._extras import MissingExtraError, install_hint
        raise MissingExtraError("running the CUDA kernel %s:%s needs CuPy matching torch's "
                                "CUDA and a CUDA device: %s" % (source, name,
                                                                install_hint("cupy")))
    with _lock:
        mkey = (source, device_index)
        mod = _modules.get(mkey)
        if mod is None:
            with cupy.cuda.Device(device_index):
                mod = cupy.RawModule(code=read_source(source), options=("--std=c++14",))
                mod.compile()
            _modules[mkey] = mod
        with cupy.cuda.Device(device_index):
            fn = mod.get_function(name)
        _functions[key] = fn
    return fn


def ptr(tensor):
    """A device pointer argument for a contiguous CUDA tensor."""
    return np.uint64(tensor.data_ptr())


def i32(v):
    return np.int32(v)


def i64(v):
    return np.int64(v)


def f32(v):
    return np.float32(v)


def launch(source, name, n, args, device):
    """Run kernel ``name`` over ``n`` grid-stride items on ``device``'s
    current PyTorch stream; ``args`` are already typed (see ptr/i32/...)."""
    if n <= 0:
        return
    import torch
    cupy = _cupy()
    index = device.index if device.index is not None else torch.cuda.current_device()
    fn = get_function(source, name, index)
    blocks = int(min((n + THREADS - 1) // THREADS, MAX_BLOCKS))
    stream = torch.cuda.current_stream(index).cuda_stream
    with cupy.cuda.Device(index), cupy.cuda.ExternalStream(stream):
        fn((blocks,), (THREADS,), tuple(args))


def launch_roi_forward(source, name, x, spatial_scale, a, b, rois, top, aux):
    """The forward pass of an ROI-pooling kernel (``roi_pool_forward``,
    ``psroi_pool_forward``): one thread per element of ``top``, the arguments
    ``(n, x, spatial_scale, C, H, W, a, b, rois, top, aux)``, ``x`` a
    contiguous float32 (N, C, H, W) tensor, ``aux`` int32 like ``top``."""
    _, C, H, W = x.shape
    n = top.numel()
    launch(source, name, n,
           (i64(n), ptr(x), f32(spatial_scale), i32(C), i32(H), i32(W), i32(a), i32(b),
            ptr(rois), ptr(top), ptr(aux)),
           x.device)
