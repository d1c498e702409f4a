"""caffe.data_transformer.DataTransformer against a direct transcription of
Caffe's per-element formula, plus its checks and random choices."""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import cv2  # noqa: E402

import caffe  # noqa: E402
from caffe.data_transformer import DataTransformer, TransformError, load_mean_file  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402

DATA = os.path.join(HERE, "golden", "data")
TRAIN, TEST = 0, 1


def tparam(**kw):
    p = caffe_pb2.TransformationParameter()
    for k, v in kw.items():
        if k == "mean_value":
            p.mean_value.extend(v)
        else:
            setattr(p, k, v)
    return p


def reference(x, scale, mean, mean_values, h_off, w_off, oh, ow, mirror):
    """Element by element, as data_transformer.cpp's Transform(Datum)."""
    c_n = x.shape[0]
    out = np.zeros((c_n, oh, ow), np.float32)
    scale = np.float32(scale)
    for c in range(c_n):
        for h in range(oh):
            for w in range(ow):
                v = np.float32(x[c, h_off + h, w_off + w])
                if mean is not None:
                    v = (v - np.float32(mean[c, h_off + h, w_off + w])) * scale
                elif mean_values is not None:
                    m = mean_values[0] if len(mean_values) == 1 else mean_values[c]
                    v = (v - np.float32(m)) * scale
                else:
                    v = v * scale
                out[c, h, (ow - 1 - w) if mirror else w] = v
    return out


def write_mean(path, mean):
    blob = caffe_pb2.BlobProto()
    blob.num, blob.channels, blob.height, blob.width = (1,) + mean.shape
    blob.data.extend(mean.ravel().tolist())
    with open(path, "wb") as f:
        f.write(blob.SerializeToString())


@pytest.mark.parametrize("crop", [0, 3, 4])
@pytest.mark.parametrize("meankind", ["none", "file", "one", "per_channel"])
def test_test_phase_matches_reference(tmp_path, crop, meankind):
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, size=(3, 6, 7)).astype(np.uint8)
    kw = dict(scale=0.37)
    mean = mv = None
    if crop:
        kw["crop_size"] = crop
    if meankind == "file":
        mean = (rng.rand(3, 6, 7) * 255).astype(np.float32)
        write_mean(str(tmp_path / "m.binaryproto"), mean)
        kw["mean_file"] = str(tmp_path / "m.binaryproto")
    elif meankind == "one":
        mv = [101.5]
        kw["mean_value"] = mv
    elif meankind == "per_channel":
        mv = [10.25, 120.0, 7.0]
        kw["mean_value"] = mv
    t = DataTransformer(tparam(**kw), TEST)
    out = t.transform(x)
    oh, ow = (crop, crop) if crop else (6, 7)
    h_off, w_off = ((6 - crop) // 2, (7 - crop) // 2) if crop else (0, 0)
    ref = reference(x, 0.37, mean, mv, h_off, w_off, oh, ow, False)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ref)
    # the batch form gives the same
    batch = t.transform_batch(np.stack([x, x]))
    np.testing.assert_array_equal(batch[1], ref)


def test_float_data_datum():
    d = caffe_pb2.Datum()
    d.channels, d.height, d.width = 2, 3, 4
    vals = np.linspace(-1.5, 3.25, 24).astype(np.float32)
    d.float_data.extend(vals.tolist())
    t = DataTransformer(tparam(scale=2.0, mean_value=[0.5]), TEST)
    out = t.transform(d)
    np.testing.assert_array_equal(out, (vals.reshape(2, 3, 4) - np.float32(0.5)) * np.float32(2))


def test_train_crop_and_mirror_are_caffe_windows_and_reproducible():
    rng = np.random.RandomState(1)
    x = rng.randint(0, 256, size=(2, 9, 10)).astype(np.uint8)
    p = tparam(crop_size=5, mirror=True, mean_value=[3, 4])
    caffe.set_random_seed(7)
    t = DataTransformer(p, TRAIN)
    outs = t.transform_batch(np.stack([x] * 40))
    seen_offsets, mirrors = set(), 0
    for o in outs:
        found = False
        for m in (False, True):
            for h in range(5):
                for w in range(6):
                    ref = reference(x, 1, None, [3, 4], h, w, 5, 5, m)
                    if np.array_equal(o, ref):
                        found = True
                        seen_offsets.add((h, w))
                        mirrors += m
        assert found
    assert len(seen_offsets) > 3 and 0 < mirrors < 40
    caffe.set_random_seed(7)
    again = DataTransformer(p, TRAIN).transform_batch(np.stack([x] * 40))
    np.testing.assert_array_equal(outs, again)


def test_test_phase_mirror_is_random_too():
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    caffe.set_random_seed(3)
    t = DataTransformer(tparam(mirror=True), TEST)
    outs = t.transform_batch(np.stack([x] * 30))
    flipped = [np.array_equal(o, x[:, :, ::-1]) for o in outs]
    plain = [np.array_equal(o, x) for o in outs]
    assert all(a or b for a, b in zip(flipped, plain))
    assert any(flipped) and any(plain)


def test_mean_file_cropped_with_the_image(tmp_path):
    rng = np.random.RandomState(2)
    x = rng.randint(0, 256, size=(1, 6, 6)).astype(np.uint8)
    mean = rng.rand(1, 6, 6).astype(np.float32) * 100
    write_mean(str(tmp_path / "m.binaryproto"), mean)
    t = DataTransformer(tparam(crop_size=2, mean_file=str(tmp_path / "m.binaryproto")), TEST)
    np.testing.assert_array_equal(t.transform(x), reference(x, 1, mean, None, 2, 2, 2, 2, False))


def test_golden_mean_file_loads_as_caffe():
    mean = load_mean_file(os.path.join(DATA, "mean.binaryproto"))
    gold = np.load(os.path.join(DATA, "data_layers.npz"))["mean_from_tool"]
    np.testing.assert_array_equal(mean, gold[0].astype(np.float32))


def test_opencv_image_is_hwc_bgr():
    img = np.random.RandomState(4).randint(0, 256, size=(5, 6, 3)).astype(np.uint8)
    t = DataTransformer(tparam(scale=0.5), TEST)
    np.testing.assert_array_equal(t.transform(img), img.transpose(2, 0, 1) * np.float32(0.5))
    grey = img[:, :, 0].copy()
    np.testing.assert_array_equal(t.transform(grey), grey[None] * np.float32(0.5))


def test_encoded_datum_decoding_flags():
    img = np.random.RandomState(5).randint(0, 256, size=(4, 5, 3)).astype(np.uint8)
    d = caffe_pb2.Datum()
    d.data = cv2.imencode(".png", img)[1].tobytes()
    d.encoded = True
    np.testing.assert_array_equal(DataTransformer(tparam(), TEST).transform(d),
                                  img.transpose(2, 0, 1))
    grey = DataTransformer(tparam(force_gray=True), TEST).transform(d)
    assert grey.shape == (1, 4, 5)
    np.testing.assert_array_equal(
        grey[0], cv2.imdecode(np.frombuffer(d.data, np.uint8), cv2.IMREAD_GRAYSCALE))
    assert DataTransformer(tparam(force_gray=True), TEST).infer_blob_shape(d) == [1, 1, 4, 5]
    with pytest.raises(TransformError, match="force_color and force_gray"):
        DataTransformer(tparam(force_gray=True, force_color=True), TEST).transform(d)


def test_blob_transform_one_draw_for_the_batch():
    x = np.random.RandomState(6).rand(3, 2, 5, 5).astype(np.float32) * 10
    t = DataTransformer(tparam(crop_size=3, mean_value=[1, 2], scale=0.5), TEST)
    out = t.transform_blob_array(x)
    ref = (x - np.array([1, 2], np.float32).reshape(1, 2, 1, 1))[:, :, 1:4, 1:4] * np.float32(0.5)
    np.testing.assert_array_equal(out, ref)


def test_errors(tmp_path):
    with pytest.raises(TransformError, match="mean_file and mean_value"):
        DataTransformer(tparam(mean_file="x", mean_value=[1]), TEST)
    with pytest.raises(TransformError, match="mean_file"):
        DataTransformer(tparam(mean_file=str(tmp_path / "missing.binaryproto")), TEST)
    t = DataTransformer(tparam(mean_value=[1, 2]), TEST)
    with pytest.raises(TransformError, match="as many as channels"):
        t.transform(np.zeros((3, 4, 4), np.uint8))
    t = DataTransformer(tparam(crop_size=5), TEST)
    with pytest.raises(TransformError, match="crop_size"):
        t.transform(np.zeros((1, 4, 4), np.uint8))
    mean = np.zeros((1, 3, 3), np.float32)
    write_mean(str(tmp_path / "m.binaryproto"), mean)
    t = DataTransformer(tparam(mean_file=str(tmp_path / "m.binaryproto")), TEST)
    with pytest.raises(TransformError, match="does not match"):
        t.transform(np.zeros((1, 4, 4), np.uint8))
