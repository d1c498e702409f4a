"""caffe.io against golden outputs of BVLC pycaffe (compat_tests/golden/io)."""
import ast
import io as _pyio
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import caffe.io as cio  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402

GOLD = os.path.join(HERE, 'golden', 'io')
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope='module')
def g():
    return np.load(os.path.join(GOLD, 'io.npz'))


def p(name):
    return os.path.join(GOLD, name)


def close(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------- images ---

def test_load_rgb(g):
    im = cio.load_image(p('rgb.png'))
    assert im.dtype == np.float32
    close(im, g['load_rgb'])


def test_load_gray_as_color(g):
    close(cio.load_image(p('gray.png')), g['load_gray_as_color'])


def test_load_gray(g):
    close(cio.load_image(p('gray.png'), color=False), g['load_gray'])


def test_load_file_like(g):
    with open(p('rgb.png'), 'rb') as f:
        data = f.read()
    close(cio.load_image(_pyio.BytesIO(data)), g['load_rgb'])


def test_load_color_as_gray_shape():
    im = cio.load_image(p('rgb.png'), color=False)
    assert im.shape == (23, 31, 1) and im.dtype == np.float32
    assert 0 <= im.min() and im.max() <= 1


def test_load_jpeg_cat(g):
    im = cio.load_image(p('cat.jpg'))
    assert im.shape == (360, 480, 3)
    np.testing.assert_allclose(im.astype(np.float64).sum(), 235427.27235681936,
                               rtol=1e-5)
    close(im.flat[g['cat_idx']], g['cat_sample'])


def test_resize(g):
    im = g['load_rgb']
    close(cio.resize_image(im, (13, 17)), g['resize_13x17'])
    close(cio.resize_image(im, (13, 17), interp_order=0),
          g['resize_13x17_nearest'])
    close(cio.resize_image(im, (40, 50)), g['resize_40x50'])


def test_resize_constant_and_other_channels():
    c = np.full((5, 6, 3), 0.25, np.float32)
    out = cio.resize_image(c, (7, 8))
    assert out.shape == (7, 8, 3) and out.dtype == np.float32
    assert np.all(out == 0.25)
    four = np.random.RandomState(0).rand(6, 8, 4).astype(np.float32)
    out = cio.resize_image(four, (12, 16))
    assert out.shape == (12, 16, 4) and out.dtype == np.float32
    from scipy.ndimage import zoom
    close(out, zoom(four, (2.0, 2.0, 1), order=1).astype(np.float32))


def test_fallbacks_without_skimage(g, monkeypatch):
    """Without scikit-image the PIL/OpenCV + scipy paths give the same
    numbers."""
    monkeypatch.setattr(cio, '_skio', None)
    monkeypatch.setattr(cio, 'skimage', None)
    monkeypatch.setattr(cio, '_sk_resize', None)
    close(cio.load_image(p('rgb.png')), g['load_rgb'])
    close(cio.load_image(p('gray.png')), g['load_gray_as_color'])
    close(cio.load_image(p('gray.png'), False), g['load_gray'])
    with open(p('rgb.png'), 'rb') as f:
        close(cio.load_image(f), g['load_rgb'])
    im = g['load_rgb']
    close(cio.resize_image(im, (13, 17)), g['resize_13x17'])
    close(cio.resize_image(im, (13, 17), 0), g['resize_13x17_nearest'])
    close(cio.resize_image(im, (40, 50)), g['resize_40x50'])
    import skimage.io
    ref = skimage.io.imread(p('rgb.png'), as_gray=True).astype(np.float32)
    close(cio.load_image(p('rgb.png'), color=False), ref[:, :, None])


def test_gray_fallback_opencv(g, monkeypatch):
    monkeypatch.setattr(cio, '_skio', None)
    monkeypatch.setattr(cio, 'skimage', None)
    import builtins
    real_import = builtins.__import__

    def no_pil(name, *a, **k):
        if name == 'PIL' or name.startswith('PIL.'):
            raise ImportError('no PIL')
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, '__import__', no_pil)
    close(cio.load_image(p('rgb.png')), g['load_rgb'])
    close(cio.load_image(p('gray.png'), False), g['load_gray'])


# ------------------------------------------------------------ transformer ---

def make_transformer(g):
    t = cio.Transformer({'data': (2, 3, 11, 13)})
    t.set_transpose('data', (2, 0, 1))
    t.set_channel_swap('data', (2, 1, 0))
    t.set_raw_scale('data', 255)
    t.set_mean('data', np.array([104, 117, 123]))
    t.set_input_scale('data', 0.5)
    return t


def test_preprocess_deprocess(g):
    t = make_transformer(g)
    out = t.preprocess('data', g['load_rgb'])
    assert out.dtype == np.float32
    close(out, g['preprocess'])
    close(t.deprocess('data', out), g['deprocess'])


def test_preprocess_mean_image(g):
    t = cio.Transformer({'data': (2, 3, 11, 13)})
    t.set_transpose('data', (2, 0, 1))
    t.set_mean('data', g['mean_image'])
    close(t.preprocess('data', g['load_rgb']), g['preprocess_mean_image'])


def test_set_mean_resizes_other_shapes():
    t = cio.Transformer({'data': (1, 3, 4, 5)})
    m = np.arange(3 * 8 * 10, dtype=np.float32).reshape(3, 8, 10)
    t.set_mean('data', m)
    assert t.mean['data'].shape == (3, 4, 5)
    assert m.min() <= t.mean['data'].min() <= t.mean['data'].max() <= m.max()
    g1 = cio.Transformer({'data': (1, 1, 4, 5)})
    g1.set_mean('data', np.ones((4, 5), np.float32))
    assert g1.mean['data'].shape == (4, 5)
    # pycaffe quirk kept on purpose: a 2-D mean of another size is
    # transposed as if it were 3-D, which numpy refuses
    with pytest.raises(ValueError):
        g1.set_mean('data', np.arange(8 * 10.0).reshape(8, 10))
    t.set_mean('data', np.array([1.0, 2.0, 3.0]))
    assert t.mean['data'].shape == (3, 1, 1)


def test_transformer_errors():
    t = cio.Transformer({'data': (1, 3, 4, 5)})
    with pytest.raises(Exception, match='nope is not one of the net inputs'):
        t.preprocess('nope', np.zeros((4, 5, 3)))
    with pytest.raises(Exception, match='Transpose order needs to have'):
        t.set_transpose('data', (1, 0))
    with pytest.raises(Exception, match='Channel swap needs to have'):
        t.set_channel_swap('data', (1, 0))
    with pytest.raises(ValueError, match='Mean channels incompatible'):
        t.set_mean('data', np.zeros(4))
    with pytest.raises(ValueError, match='Mean shape invalid'):
        t.set_mean('data', np.zeros((1, 1, 3, 4, 5)))
    for setter in ('set_raw_scale', 'set_input_scale'):
        with pytest.raises(Exception, match='is not one of the net inputs'):
            getattr(t, setter)('x', 1.0)


def test_preprocess_no_resize_when_dims_match():
    t = cio.Transformer({'data': (1, 3, 4, 5)})
    t.set_transpose('data', (2, 0, 1))
    x = np.random.RandomState(1).rand(4, 5, 3)
    out = t.preprocess('data', x)
    close(out, x.transpose(2, 0, 1).astype(np.float32))


# --------------------------------------------------------------- oversample -

def test_oversample(g):
    im = g['load_rgb']
    out = cio.oversample([im, im[::-1]], (7, 9))
    assert out.dtype == np.float32
    close(out, g['oversample_7x9'])


# ------------------------------------------------------------------ protos --

def test_blobproto_bytes(g):
    blob = cio.array_to_blobproto(g['blob_array'])
    assert blob.SerializeToString() == g['blobproto_bytes'].tobytes()


def test_datum_bytes(g):
    d = cio.array_to_datum(g['datum_array'], 7)
    assert d.SerializeToString() == g['datum_bytes'].tobytes()
    f = cio.array_to_datum(g['float_datum_array'], 2)
    assert f.SerializeToString() == g['float_datum_bytes'].tobytes()


def test_blobproto_roundtrip(g):
    a = g['blob_array']
    diff = a * 2
    blob = cio.array_to_blobproto(a, diff)
    back = cio.blobproto_to_array(blob)
    assert back.dtype == np.float64 and back.shape == a.shape
    close(back, a)
    close(cio.blobproto_to_array(blob, return_diff=True), diff)
    blob2 = caffe_pb2.BlobProto()
    blob2.ParseFromString(g['blobproto_bytes'].tobytes())
    close(cio.blobproto_to_array(blob2), a)


def test_blobproto_legacy_and_scalar():
    b = caffe_pb2.BlobProto()
    b.num, b.channels, b.height, b.width = 1, 2, 1, 3
    b.data.extend(range(6))
    assert cio.blobproto_to_array(b).shape == (1, 2, 1, 3)
    b = caffe_pb2.BlobProto()
    b.data.append(3.5)
    s = cio.blobproto_to_array(b)
    assert s.shape == () and float(s) == 3.5
    b.data.append(1.0)
    with pytest.raises(ValueError):
        cio.blobproto_to_array(b)


def test_golden_mean_binaryproto():
    with open(os.path.join(HERE, 'golden', 'data', 'mean.binaryproto'),
              'rb') as f:
        b = caffe_pb2.BlobProto.FromString(f.read())
    m = cio.blobproto_to_array(b)
    ref = np.load(os.path.join(HERE, 'golden', 'data',
                               'data_layers.npz'))['mean_from_tool']
    close(m.astype(np.float32), ref)


def test_blobprotovector_roundtrip():
    rs = np.random.RandomState(3)
    arrays = [rs.rand(2, 3).astype(np.float32), rs.rand(4),
              rs.rand(1, 2, 3, 4)]
    s = cio.arraylist_to_blobprotovector_str(arrays)
    assert isinstance(s, bytes)
    back = cio.blobprotovector_str_to_arraylist(s)
    assert len(back) == 3
    for a, b in zip(arrays, back):
        assert b.dtype == np.float64
        close(b, a.astype(np.float64))


def test_datum_roundtrip(g):
    a = g['datum_array']
    d = cio.array_to_datum(a, 7)
    assert d.label == 7 and (d.channels, d.height, d.width) == a.shape
    back = cio.datum_to_array(d)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, a)
    back[0, 0, 0] = 1  # writable, like np.fromstring's copy

    f = g['float_datum_array']
    d = cio.array_to_datum(f)
    back = cio.datum_to_array(d)
    assert back.dtype == np.float64
    close(back, f.astype(np.float64))
    d2 = caffe_pb2.Datum.FromString(g['float_datum_bytes'].tobytes())
    assert d2.label == 2
    close(cio.datum_to_array(d2), f.astype(np.float64))


def test_datum_label_none_size():
    a = np.zeros((1, 2, 2), np.uint8)
    without = cio.array_to_datum(a)
    with_label = cio.array_to_datum(a, 0)
    assert not without.HasField('label')
    assert with_label.HasField('label')
    assert without.ByteSize() < with_label.ByteSize()


def test_array_to_datum_bad_shape():
    with pytest.raises(ValueError, match='Incorrect array shape.'):
        cio.array_to_datum(np.zeros((2, 3)))
    with pytest.raises(ValueError, match='Incorrect array shape.'):
        cio.array_to_datum(np.zeros((1, 2, 3, 4)))


# ------------------------------------------------------------ import cost --

def test_io_does_not_import_torch_statically():
    src = open(os.path.join(ROOT, 'caffe', 'io.py')).read()
    names = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            names.update(a.name.split('.')[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split('.')[0])
    assert 'torch' not in names


def test_io_module_import_without_torch():
    """caffe/io.py loaded on its own (caffe package body skipped) pulls in
    neither torch nor the rest of the package."""
    code = (
        "import sys, types, importlib.util\n"
        "pkg = types.ModuleType('caffe'); pkg.__path__ = [%r]\n"
        "sys.modules['caffe'] = pkg\n"
        "spec = importlib.util.spec_from_file_location('caffe.io', %r)\n"
        "m = importlib.util.module_from_spec(spec)\n"
        "sys.modules['caffe.io'] = m; spec.loader.exec_module(m)\n"
        "assert m.caffe_pb2 is not None\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print('ok')\n" % (os.path.join(ROOT, 'caffe'),
                           os.path.join(ROOT, 'caffe', 'io.py')))
    r = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert 'ok' in r.stdout
