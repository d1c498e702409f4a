"""Optional packages: a missing one gives one clear error naming the extra to
install and what it is for (no chained traceback); a present but broken one says
so instead of "not installed"."""
import os
import subprocess
import sys

import pytest

import caffe
from caffe._extras import MissingExtraError, install_hint, require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_missing_module_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)        # import cv2 -> not installed
    with pytest.raises(MissingExtraError) as ei:
        require("cv2", "ImageData (reading image files)")
    msg = str(ei.value)
    assert msg.startswith("ImageData (reading image files) needs the Python package "
                          "opencv-python-headless")
    assert 'pip install "torchcaffe[data]"' in msg and "not installed" in msg
    assert ei.value.__cause__ is None and ei.value.__suppress_context__
    assert isinstance(ei.value, ImportError)             # old `except ImportError` still works


def test_broken_module_says_broken(tmp_path, monkeypatch):
    pkg = tmp_path / "lmdb"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import _lmdb_native_part_that_is_gone\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lmdb", raising=False)
    with pytest.raises(MissingExtraError) as ei:
        require("lmdb", "the lmdb backend")
    msg = str(ei.value)
    assert "lmdb is installed but fails to import" in msg
    assert "_lmdb_native_part_that_is_gone" in msg and "not installed" not in msg
    assert 'pip install "torchcaffe[data]"' in msg
    # a shared library that cannot load (OSError) is "broken" too
    (pkg / "__init__.py").write_text("raise OSError('libfoo.so: cannot open')\n")
    monkeypatch.delitem(sys.modules, "lmdb", raising=False)
    with pytest.raises(MissingExtraError, match="fails to import .OSError: libfoo.so"):
        require("lmdb", "the lmdb backend")
    monkeypatch.delitem(sys.modules, "lmdb", raising=False)


def test_hints():
    assert install_hint("pydot") == 'pip install "torchcaffe[draw]"'
    assert install_hint("grpc_tools.protoc") == 'pip install "torchcaffe[proto]"'
    assert "gpu-cuda12" in install_hint("cupy") and "gpu-cuda13" in install_hint("cupy")
    assert install_hint("tqdm") == "pip install tqdm (a dependency of torchcaffe)"


def test_load_image_without_any_reader_is_one_clear_error(tmp_path):
    """caffe.io.load_image with scikit-image, Pillow and OpenCV all missing: the
    user sees one line naming the extra, not a chain of ImportErrors."""
    img = tmp_path / "x.png"
    img.write_bytes(b"\x89PNG not really")
    code = ("import sys\n"
            "for m in ('skimage', 'PIL', 'cv2'): sys.modules[m] = None\n"
            "import caffe.io\n"
            "caffe.io.load_image(%r)\n" % str(img))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               GLOG_minloglevel="2")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("caffe._extras.MissingExtraError: caffe.io.load_image")
    assert 'pip install "torchcaffe[data]"' in last and "Pillow" in last
    assert "During handling of the above exception" not in r.stderr


def test_encoded_datum_and_window_data_name_the_extra(monkeypatch):
    from caffe import data_transformer
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(MissingExtraError, match=r"decoding encoded Datums needs .*torchcaffe\[data\]"):
        data_transformer.decode_image(b"\xff\xd8", 1)
    with pytest.raises(MissingExtraError, match="ImageData"):
        data_transformer.read_image("x.jpg")


def test_db_backend_error_names_the_extra(tmp_path, monkeypatch):
    from caffe.tools._db import DBError, open_db
    monkeypatch.setitem(sys.modules, "plyvel", None)
    with pytest.raises(DBError, match=r'plyvel.*torchcaffe\[leveldb\]"; or use -backend lmdb'):
        open_db(str(tmp_path / "db"), "leveldb", "w")


def test_proto_load_with_broken_grpc_tools(tmp_path, monkeypatch):
    proto = tmp_path / "fork.proto"
    proto.write_text('syntax = "proto2";\nmessage X { optional int32 a = 1; }\n')
    fake = tmp_path / "fake"
    (fake / "grpc_tools").mkdir(parents=True)
    (fake / "grpc_tools" / "__init__.py").write_text("")
    (fake / "grpc_tools" / "protoc.py").write_text(
        "from google.protobuf import does_not_exist\n")
    monkeypatch.syspath_prepend(str(fake))
    for m in ("grpc_tools", "grpc_tools.protoc"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    with pytest.raises(MissingExtraError) as ei:
        caffe.proto.load(str(proto))
    assert "grpc_tools.protoc is installed but fails to import" in str(ei.value)
    for m in ("grpc_tools", "grpc_tools.protoc"):
        monkeypatch.delitem(sys.modules, m, raising=False)


def test_cuda_mismatch_is_none_without_cuda():
    import torch

    from caffe._extras import cuda_mismatch
    if torch.version.cuda:
        pytest.skip("a CUDA torch build: the mismatch check needs CuPy here")
    assert cuda_mismatch() is None


def _fake_cupy(cuda_version):
    import types
    runtime = types.SimpleNamespace(runtimeGetVersion=lambda: cuda_version,
                                    getDeviceCount=lambda: 1)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def test_cupy_built_for_another_cuda_is_reported(monkeypatch, caplog):
    """torch for CUDA 12 with a CuPy for CUDA 13: the kernels are not used and the
    log says which extra matches torch."""
    import torch

    from caffe._extras import cuda_mismatch
    from caffe.kernels import launcher
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(13000))
    msg = cuda_mismatch()
    assert msg.startswith("CuPy is built for CUDA 13 but torch for CUDA 12.6")
    assert 'pip install "torchcaffe[gpu-cuda12]"' in msg
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(12040))
    assert cuda_mismatch() is None
    # the launcher: a mismatched CuPy is logged once and not used
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(13000))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(launcher, "_cupy_state", None)
    with caplog.at_level("WARNING", logger="caffe"):
        assert launcher.cupy_available() is False
    assert "CuPy is built for CUDA 13" in caplog.text and "PyTorch paths" in caplog.text
    # not installed at all: quietly the PyTorch paths
    caplog.clear()
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(launcher, "_cupy_state", None)
    with caplog.at_level("WARNING", logger="caffe"):
        assert launcher.cupy_available() is False
    assert caplog.text == ""
    monkeypatch.setattr(launcher, "_cupy_state", None)
