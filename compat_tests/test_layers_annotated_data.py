"""AnnotatedData (caffe/layers/annotated_data.py) and the SSD augmentation
(caffe/ssd_augment.py): TEST phase exactly as the fork (golden annoset), TRAIN
phase by the invariants the golden json lists, over many draws."""
import os

import numpy as np
import pytest
from google.protobuf import text_format

import caffe
from caffe import ssd_augment as aug
from caffe.proto import caffe_pb2

ANNOSET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "ssd", "annoset")
GOLD = np.load(os.path.join(ANNOSET, "annotated_data.npz"))
# objects per source image, in lmdb order (list.txt: img1, img0, img2, ...)
TEST_NETS = ["anno_test_warp", "anno_test_b1_nearest", "anno_test_ssd_pascal"]


@pytest.mark.parametrize("name", TEST_NETS)
def test_golden_test_phase_exact(name, monkeypatch):
    monkeypatch.chdir(ANNOSET)
    net = caffe.Net(name + ".prototxt", caffe.TEST)
    for k in range(2):
        net.forward()
        for blob in ("data", "label"):
            want = GOLD["%s/%d/%s" % (name, k, blob)]
            got = net.blobs[blob].data
            assert got.shape == want.shape, (name, k, blob)
            np.testing.assert_array_equal(got, want, err_msg="%s/%d/%s" % (name, k, blob))


def source_object_counts():
    """Objects per record, in list.txt order (the lmdb's order)."""
    counts = []
    for line in open(os.path.join(ANNOSET, "list.txt")):
        xml = line.split()[1]
        counts.append(open(os.path.join(ANNOSET, xml)).read().count("<object>"))
    return counts


def check_batch(data, label, counts, batch_index, batch=3):
    assert data.shape == (batch, 3, 60, 80)
    rows = label.reshape(-1, 8)
    assert label.shape[:2] == (1, 1) and label.shape[3] == 8
    if (rows[:, 0] == -1).all():
        assert rows.shape == (1, 8) and (rows == -1).all()
        return 0
    items = rows[:, 0]
    assert (np.diff(items) >= 0).all() and items.min() >= 0 and items.max() < batch
    assert set(rows[:, 1].tolist()) <= {1, 2, 3}
    x1, y1, x2, y2 = rows[:, 3], rows[:, 4], rows[:, 5], rows[:, 6]
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 1).all() and (y2 <= 1).all()
    assert (x1 < x2).all() and (y1 < y2).all()
    assert set(rows[:, 7].tolist()) <= {0, 1}
    for i in range(batch):
        src = counts[(batch_index * batch + i) % len(counts)]
        assert (items == i).sum() <= src
    return len(rows)


@pytest.mark.parametrize("proto", ["anno_train_sampler_s07", "anno_train_sampler"])
def test_train_phase_invariants(proto, monkeypatch):
    monkeypatch.chdir(ANNOSET)
    counts = source_object_counts()
    caffe.set_random_seed(1701)
    net = caffe.Net(proto + ".prototxt", caffe.TRAIN)
    total = 0
    pixels = []
    for k in range(12):
        net.forward()
        total += check_batch(net.blobs["data"].data, net.blobs["label"].data, counts, k)
        pixels.append(net.blobs["data"].data.copy())
    assert total > 0
    px = np.concatenate([p.ravel() for p in pixels])
    # (pixel - mean) with mean in [104, 123]: distortion saturates in [0, 255]
    assert px.min() >= -123 and px.max() <= 255 - 104
    assert len(np.unique(np.round(px))) > 50


def test_train_phase_seed_repeats(monkeypatch):
    monkeypatch.chdir(ANNOSET)
    runs = []
    for _ in range(2):
        caffe.set_random_seed(7)
        net = caffe.Net("anno_train_sampler_s07.prototxt", caffe.TRAIN)
        out = []
        for _ in range(3):
            net.forward()
            out.append((net.blobs["data"].data.copy(), net.blobs["label"].data.copy()))
        runs.append(out)
        del net
    for (d0, l0), (d1, l1) in zip(*runs):
        np.testing.assert_array_equal(d0, d1)
        np.testing.assert_array_equal(l0, l1)


def batch_sampler(text):
    bs = caffe_pb2.BatchSampler()
    text_format.Merge(text, bs)
    return bs


def test_sampled_crops_respect_bounds_and_constraints():
    rng = np.random.RandomState(0)
    rows = np.array([[1, 0, 0.2, 0.2, 0.6, 0.7, 0], [2, 0, 0.5, 0.1, 0.9, 0.4, 0]], np.float32)
    bs = batch_sampler("sampler { min_scale: 0.3 max_scale: 0.8 min_aspect_ratio: 0.5 "
                       "max_aspect_ratio: 2.0 } sample_constraint { min_jaccard_overlap: 0.3 } "
                       "max_trials: 50")
    boxes = []
    for _ in range(40):
        boxes += aug.generate_batch_samples(rows, [bs], rng)
    assert len(boxes) > 50
    objs = rows[:, 2:6]
    for b in boxes:
        w, h = b[2] - b[0], b[3] - b[1]
        scale, ar = np.sqrt(w * h), w / h
        assert 0.3 - 1e-5 <= scale <= 0.8 + 1e-5
        assert 0.5 - 1e-4 <= ar <= 2.0 + 1e-4
        assert b[0] >= 0 and b[1] >= 0 and b[2] <= 1 + 1e-6 and b[3] <= 1 + 1e-6
        assert aug.jaccard(b, objs).max() >= 0.3
    # max_sample caps every sampler
    capped = batch_sampler("sampler { min_scale: 0.3 max_scale: 1 } max_sample: 2 max_trials: 50")
    assert len(aug.generate_batch_samples(rows, [capped], rng)) == 2


def test_crop_and_emit_constraint_keep_boxes_consistent():
    img = np.zeros((100, 200, 3), np.uint8)
    img[20:60, 40:120] = 255      # the object's pixels
    rows = np.array([[1, 0, 0.2, 0.2, 0.6, 0.6, 0], [2, 0, 0.9, 0.9, 1.0, 1.0, 0]], np.float32)
    crop_box = np.array([0.1, 0.1, 0.7, 0.8], np.float32)
    cimg, crows = aug.crop(img, rows, crop_box)
    assert cimg.shape[:2] == (70, 120)
    assert len(crows) == 1          # the second box lies outside the crop
    b = crows[0, 2:6]
    h, w = cimg.shape[:2]
    inside = cimg[int(round(b[1] * h)):int(round(b[3] * h)), int(round(b[0] * w)):int(round(b[2] * w))]
    assert inside.size and (inside == 255).all()
    emit = caffe_pb2.EmitConstraint()
    kept = aug.transform_annotation(rows, 100, 200, None, np.array([0.45, 0, 1, 1], np.float32),
                                    False, emit)
    assert kept[:, 0].tolist() == [2]   # CENTER: the first box's centre (0.4) is outside


def test_expand_keeps_box_content():
    rng = np.random.RandomState(3)
    img = (np.arange(40 * 50 * 3) % 251).astype(np.uint8).reshape(40, 50, 3)
    rows = np.array([[1, 0, 0.2, 0.25, 0.6, 0.75, 0]], np.float32)
    p = caffe_pb2.ExpansionParameter(prob=1, max_expand_ratio=3)
    for _ in range(10):
        big, brows = aug.expand(img, rows, p, [104, 117, 123], rng)
        assert big.shape[0] >= 40 and big.shape[1] >= 50
        b = brows[0, 2:6]
        H, W = big.shape[:2]
        got = big[int(round(b[1] * H)):int(round(b[3] * H)), int(round(b[0] * W)):int(round(b[2] * W))]
        want = img[10:30, 10:30]
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert (big[0, 0] == [104, 117, 123]).all() or big.shape[:2] == (40, 50) or \
            (big[0, 0] == img[0, 0]).all()


def test_distort_keeps_range_and_identity_at_zero_prob():
    rng = np.random.RandomState(5)
    img = rng.randint(0, 256, size=(30, 40, 3)).astype(np.uint8)
    p = caffe_pb2.DistortionParameter()
    out = aug.apply_distort(img, p, rng)
    np.testing.assert_array_equal(out, img)
    text_format.Merge("brightness_prob: 1 brightness_delta: 32 contrast_prob: 1 "
                      "contrast_lower: 0.5 contrast_upper: 1.5 saturation_prob: 1 "
                      "saturation_lower: 0.5 saturation_upper: 1.5 hue_prob: 1 hue_delta: 18 "
                      "random_order_prob: 1", p)
    for _ in range(10):
        out = aug.apply_distort(img, p, rng)
        assert out.dtype == np.uint8 and out.shape == img.shape
        assert not np.array_equal(out, img)


def test_mirror_flips_boxes():
    rows = np.array([[1, 0, 0.1, 0.2, 0.3, 0.4, 0]], np.float32)
    out = aug.transform_annotation(rows, 10, 10, None, np.array([0, 0, 1, 1], np.float32),
                                   True, None)
    np.testing.assert_allclose(out[0, 2:6], [0.7, 0.2, 0.9, 0.4], atol=1e-6)


def test_errors_name_layer_and_field(tmp_path, monkeypatch):
    monkeypatch.chdir(ANNOSET)
    bad = tmp_path / "bad.prototxt"
    bad.write_text(open("anno_test_warp.prototxt").read().replace(
        "batch_size: 3", "batch_size: 2").replace(
        "resize_mode: WARP", "resize_mode: FIT_SMALL_SIZE"))
    with pytest.raises(Exception, match="FIT_SMALL_SIZE"):
        caffe.Net(str(bad), caffe.TEST)
    missing = tmp_path / "missing.prototxt"
    missing.write_text(open("anno_test_warp.prototxt").read().replace(
        'source: "lmdb"', 'source: "%s"' % (tmp_path / "nope")))
    with pytest.raises(Exception, match="anno_test_warp_data"):
        caffe.Net(str(missing), caffe.TEST)


def test_train_ranks_read_their_share_of_the_records(tmp_path, monkeypatch):
    """With N solvers, TRAIN-phase rank r keeps records i % N == r (Caffe's
    DataLayer::Skip, shared with the Data layer): here a deterministic TRAIN
    net (the WARP transform only) as rank 1 of 2 sees records 1, 3, 5 of the
    single-process stream."""
    monkeypatch.chdir(ANNOSET)
    text = open("anno_test_warp.prototxt").read().replace("phase: TEST", "phase: TRAIN")
    proto = tmp_path / "anno_train_warp.prototxt"
    proto.write_text(text.replace('source: "lmdb"', 'source: "%s"' % os.path.join(ANNOSET, "lmdb"))
                     .replace('label_map_file: "labelmap.prototxt"',
                              'label_map_file: "%s"' % os.path.join(ANNOSET, "labelmap.prototxt")))
    one = caffe.Net(str(proto), caffe.TRAIN)
    one.forward()
    first = one.blobs["data"].data.copy()
    one.forward()
    stream = np.concatenate([first, one.blobs["data"].data])          # records 0..5
    try:
        caffe.set_solver_count(2)
        caffe.set_solver_rank(1)
        mine = caffe.Net(str(proto), caffe.TRAIN)
        mine.forward()
    finally:
        caffe.set_solver_count(1)
        caffe.set_solver_rank(0)
    np.testing.assert_array_equal(mine.blobs["data"].data, stream[[1, 3, 5]])
