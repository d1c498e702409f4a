"""Fork layers (caffe/layers/detection.py): SSD golden cases from a real build
of the SSD fork, hand-computed cases, gradient checks, error messages."""
import math

import numpy as np
import pytest
import torch
from golden_cases import case_names, run_layer_case
from google.protobuf import text_format

import caffe
from caffe.layers import (
    LayerError,
    detection,  # noqa: F401  (registration)
    modules,
)
from caffe.proto import caffe_pb2


def make_layer(text, bottom_shapes, phase=0):
    lp = caffe_pb2.LayerParameter()
    text_format.Merge(text, lp)
    return modules[lp.type](lp, bottom_shapes, phase)


def run(layer, *bottoms, params=None):
    params = params if params is not None else [b.data_tensor(torch.device("cpu"))
                                                for b in layer.blobs]
    return layer.run(list(bottoms), params)


def gradcheck(layer, bottoms, which, params=()):
    """Numerical gradient check in float64 of run() w.r.t. the bottoms in ``which``."""
    bottoms = [b.double() for b in bottoms]

    def f(*xs):
        bs = list(bottoms)
        for i, x in zip(which, xs):
            bs[i] = x
        return layer.run(bs, [p.double() for p in params])[0]
    xs = tuple(bottoms[i].clone().requires_grad_(True) for i in which)
    return torch.autograd.gradcheck(f, xs, eps=1e-6, atol=1e-5)


# ---------------------------------------------------------------------------
# golden SSD cases
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", case_names("ssd"))
def test_ssd_golden(name):
    net = run_layer_case(name, folder="ssd")
    if name == "ssd_detection_output":
        rows = net.blobs["t0"].data.reshape(-1, 7)
        assert rows.shape[0] > 0 and (rows[:, 1] > 0).all()


def test_ssd_golden_case_list():
    assert len(case_names("ssd")) >= 7


# ---------------------------------------------------------------------------
# ROIPooling / PSROIPooling layers
# ---------------------------------------------------------------------------
def test_roi_pooling_layer_hand_case_and_net():
    layer = make_layer('name: "roi" type: "ROIPooling" bottom: "f" bottom: "r" top: "p" '
                       'roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 0.5 }',
                       [(1, 1, 4, 4), (2, 5)])
    assert layer.output_shapes([(1, 1, 4, 4), (2, 5)]) == [(2, 1, 2, 2)]
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    # (1, 1, 5, 5) * 0.5 -> 0.5, 2.5 -> rounded 1, 3 (half away from zero)
    rois = torch.tensor([[0, 1., 1., 5., 5.], [0, 0., 0., 4., 4.]])
    top = run(layer, x, rois)[0]
    assert top[0, 0].tolist() == [[10, 11], [14, 15]]
    assert top[1, 0].tolist() == [[5, 6], [9, 10]]
    assert gradcheck(layer, [torch.randn(1, 1, 4, 4), rois], [0])


def test_roi_pooling_in_net_backward(tmp_path):
    proto = tmp_path / "net.prototxt"
    proto.write_text("""
        force_backward: true
        layer { name: "in" type: "Input" top: "f" top: "r"
          input_param { shape { dim: 1 dim: 2 dim: 4 dim: 4 } shape { dim: 2 dim: 5 } } }
        layer { name: "roi" type: "ROIPooling" bottom: "f" bottom: "r" top: "p"
          roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 1 } }
    """)
    net = caffe.Net(str(proto), caffe.TRAIN)
    net.blobs["f"].data[...] = 1.0
    net.blobs["r"].data[...] = [[0, 0, 0, 2, 2], [0, 0, 0, 2, 2]]
    net.forward()
    assert net.blobs["p"].data.shape == (2, 2, 2, 2)
    net.blobs["p"].diff[...] = 1.0
    net.backward()
    expect = np.zeros((4, 4), np.float32)
    expect.flat[[0, 1, 4, 5]] = 2
    np.testing.assert_array_equal(net.blobs["f"].diff[0, 0], expect)
    np.testing.assert_array_equal(net.blobs["r"].diff, 0)


def test_psroi_pooling_layer():
    layer = make_layer('name: "ps" type: "PSROIPooling" bottom: "f" bottom: "r" top: "p" '
                       'psroi_pooling_param { spatial_scale: 1 output_dim: 1 group_size: 2 }',
                       [(1, 4, 4, 4), (1, 5)])
    base = torch.arange(16, dtype=torch.float32).view(4, 4)
    x = torch.stack([base + 100 * c for c in range(4)]).view(1, 4, 4, 4)
    top = run(layer, x, torch.tensor([[0, 0., 0., 3., 3.]]))[0]
    assert top.view(-1).tolist() == [2.5, 104.5, 210.5, 312.5]
    assert gradcheck(layer, [torch.randn(1, 4, 4, 4), torch.tensor([[0, 0.5, 1., 2.5, 3.]])],
                     [0])


def test_roi_layer_errors():
    with pytest.raises(LayerError, match="roi_pooling_param.pooled_h"):
        make_layer('name: "roi" type: "ROIPooling" roi_pooling_param { pooled_w: 2 }',
                   [(1, 1, 4, 4), (1, 5)])
    with pytest.raises(LayerError, match="psroi_pooling_param.output_dim"):
        make_layer('name: "ps" type: "PSROIPooling" psroi_pooling_param { spatial_scale: 1 '
                   'output_dim: 2 group_size: 2 }', [(1, 4, 4, 4), (1, 5)])
    with pytest.raises(LayerError, match="'ps'.*psroi_pooling_param.group_size"):
        make_layer('name: "ps" type: "PSROIPooling" psroi_pooling_param { spatial_scale: 1 '
                   'output_dim: 2 }', [(1, 4, 4, 4), (1, 5)])


# ---------------------------------------------------------------------------
# SmoothL1Loss
# ---------------------------------------------------------------------------
def _smooth(d, s2):
    return np.where(np.abs(d) < 1 / s2, 0.5 * s2 * d * d, np.abs(d) - 0.5 / s2)


def _dsmooth(d, s2):
    return np.where(np.abs(d) < 1 / s2, s2 * d, np.sign(d))


def test_smooth_l1_sigma_form_four_bottoms():
    rng = np.random.default_rng(0)
    shape = (3, 8, 2, 2)
    p, t = rng.standard_normal(shape), rng.standard_normal(shape)
    win = rng.integers(0, 2, shape).astype(np.float64)
    wout = rng.uniform(0.1, 1, shape)
    layer = make_layer('name: "l" type: "SmoothL1Loss" smooth_l1_loss_param { sigma: 3 }',
                       [shape] * 4)
    assert layer.is_loss
    bs = [torch.tensor(a, requires_grad=True) for a in (p, t, win, wout)]
    loss = run(layer, *bs)[0]
    d = win * (p - t)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), (wout * _smooth(d, 9)).sum() / 3, rtol=1e-10)
    g = torch.autograd.grad(loss * 2.0, bs[:2], allow_unused=True)
    expect = 2.0 / 3 * _dsmooth(d, 9) * win * wout
    np.testing.assert_allclose(g[0].numpy(), expect, rtol=1e-10)
    np.testing.assert_allclose(g[1].numpy(), -expect, rtol=1e-10)
    # the weights get no diff, as in the fork (Backward only fills bottoms 0 and 1)
    assert torch.autograd.grad(loss, bs[2:], allow_unused=True) == (None, None)
    assert gradcheck(layer, [torch.tensor(a) for a in (p, t, win, wout)], [0, 1])


def test_smooth_l1_two_bottoms_default_sigma():
    rng = np.random.default_rng(1)
    p, t = rng.standard_normal((4, 6)) * 2, rng.standard_normal((4, 6))
    layer = make_layer('name: "l" type: "SmoothL1Loss"', [(4, 6), (4, 6)])
    loss = run(layer, torch.tensor(p), torch.tensor(t))[0]
    np.testing.assert_allclose(loss.item(), _smooth(p - t, 1).sum() / 4, rtol=1e-10)
    assert gradcheck(layer, [torch.tensor(p), torch.tensor(t)], [0, 1])


def test_smooth_l1_fast_rcnn_three_bottoms():
    rng = np.random.default_rng(2)
    p, t = rng.standard_normal((5, 8)) * 2, rng.standard_normal((5, 8))
    w = rng.uniform(0, 2, (5, 8))    # non-binary weights expose the missing factor
    layer = make_layer('name: "l" type: "SmoothL1Loss"', [(5, 8)] * 3)
    bs = [torch.tensor(a, requires_grad=True) for a in (p, t, w)]
    loss = run(layer, *bs)[0]
    d = w * (p - t)
    np.testing.assert_allclose(loss.item(), _smooth(d, 1).sum() / 5, rtol=1e-10)
    g = torch.autograd.grad(loss, bs[:2])
    np.testing.assert_allclose(g[0].numpy(), _dsmooth(d, 1) / 5, rtol=1e-10)
    np.testing.assert_allclose(g[1].numpy(), -_dsmooth(d, 1) / 5, rtol=1e-10)
    # with 0/1 weights the fork's gradient is the true one
    wb = rng.integers(0, 2, (5, 8)).astype(np.float64)
    assert gradcheck(layer, [torch.tensor(p), torch.tensor(t), torch.tensor(wb)], [0, 1])


def test_smooth_l1_errors():
    with pytest.raises(LayerError, match="'l'.*smooth_l1_loss_param"):
        make_layer('name: "l" type: "SmoothL1Loss" smooth_l1_loss_param { sigma: 3 }',
                   [(2, 4)] * 3)
    with pytest.raises(LayerError, match="smooth_l1_loss_param.sigma"):
        make_layer('name: "l" type: "SmoothL1Loss" smooth_l1_loss_param { sigma: 0 }',
                   [(2, 4)] * 2)
    with pytest.raises(LayerError, match="bottom\\[1\\]"):
        make_layer('name: "l" type: "SmoothL1Loss"', [(2, 4), (2, 5)])


# ---------------------------------------------------------------------------
# Normalize, Permute
# ---------------------------------------------------------------------------
def test_normalize_hand_cases():
    x = torch.tensor([[[[3.0]], [[4.0]]]])          # (1, 2, 1, 1)
    layer = make_layer('name: "n" type: "Normalize" norm_param { across_spatial: false '
                       'channel_shared: false scale_filler { type: "constant" value: 20 } }',
                       [(1, 2, 1, 1)])
    assert tuple(layer.blobs[0].shape) == (2,)
    y = run(layer, x)[0]
    np.testing.assert_allclose(y.view(-1).numpy(), [12.0, 16.0], rtol=1e-6)
    shared = make_layer('name: "n" type: "Normalize"', [(1, 2, 1, 2)])
    assert tuple(shared.blobs[0].shape) == () and shared.blobs[0].data == 1.0
    x = torch.tensor([[[[1.0, 2.0]], [[2.0, 4.0]]]])   # across spatial: norm 5
    np.testing.assert_allclose(run(shared, x)[0].view(-1).numpy(), [0.2, 0.4, 0.4, 0.8],
                               rtol=1e-6)


def test_normalize_shared_gradcheck():
    layer = make_layer('name: "n" type: "Normalize" norm_param { across_spatial: false }',
                       [(2, 3, 2, 2)])
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: layer.run([a], [b])[0], (x, s))


def test_permute():
    layer = make_layer('name: "p" type: "Permute" permute_param { order: 0 order: 2 }',
                       [(2, 3, 4, 5)])
    assert layer.order == (0, 2, 1, 3)
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(run(layer, x)[0], x.permute(0, 2, 1, 3))
    with pytest.raises(LayerError, match="permute_param.order"):
        make_layer('name: "p" type: "Permute" permute_param { order: 0 order: 0 }',
                   [(2, 3, 4, 5)])
    with pytest.raises(LayerError, match="permute_param.order"):
        make_layer('name: "p" type: "Permute" permute_param { order: 4 }', [(2, 3, 4, 5)])


# ---------------------------------------------------------------------------
# PriorBox
# ---------------------------------------------------------------------------
def test_priorbox_hand_case():
    layer = make_layer('name: "pb" type: "PriorBox" prior_box_param { min_size: 4.7 '
                       'max_size: 9 aspect_ratio: 2 flip: true variance: 0.1 }',
                       [(1, 1, 1, 2), (1, 3, 10, 20)])
    assert layer.aspect_ratios[:2] == [1.0, 2.0] and abs(layer.aspect_ratios[2] - 0.5) < 1e-7
    assert layer.output_shapes([(1, 1, 1, 2), (1, 3, 10, 20)]) == [(1, 2, 2 * 4 * 4)]
    out = run(layer, torch.zeros(1, 1, 1, 2), torch.zeros(1, 3, 10, 20))[0].numpy()
    boxes = out[0, 0].reshape(2, 4, 4)
    # cell (0, 0): center (5, 5) with step 10; min_size truncated to 4
    np.testing.assert_allclose(boxes[0, 0], [3 / 20, 3 / 10, 7 / 20, 7 / 10], rtol=1e-6)
    s = math.sqrt(4 * 9) / 2
    np.testing.assert_allclose(boxes[0, 1], [(5 - s) / 20, (5 - s) / 10, (5 + s) / 20,
                                             (5 + s) / 10], rtol=1e-6)
    w, h = 4 * math.sqrt(2) / 2, 4 / math.sqrt(2) / 2
    np.testing.assert_allclose(boxes[1, 2], [(15 - w) / 20, (5 - h) / 10, (15 + w) / 20,
                                             (5 + h) / 10], rtol=1e-6)
    np.testing.assert_allclose(out[0, 1], 0.1)


def test_priorbox_errors():
    with pytest.raises(LayerError, match="prior_box_param.min_size"):
        make_layer('name: "pb" type: "PriorBox"', [(1, 1, 2, 2), (1, 3, 8, 8)])
    with pytest.raises(LayerError, match="prior_box_param.max_size"):
        make_layer('name: "pb" type: "PriorBox" prior_box_param { min_size: 8 max_size: 4 }',
                   [(1, 1, 2, 2), (1, 3, 8, 8)])
    with pytest.raises(LayerError, match="prior_box_param.variance"):
        make_layer('name: "pb" type: "PriorBox" prior_box_param { min_size: 8 variance: 0.1 '
                   'variance: 0.2 }', [(1, 1, 2, 2), (1, 3, 8, 8)])


# ---------------------------------------------------------------------------
# DetectionOutput
# ---------------------------------------------------------------------------
DET = ('name: "det" type: "DetectionOutput" detection_output_param { num_classes: 3 '
       'share_location: true background_label_id: 0 code_type: %s '
       'nms_param { nms_threshold: 0.5 %s } keep_top_k: %d confidence_threshold: 0.1 }')


def _det_inputs():
    priors = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.12, 0.32, 0.32], [0.6, 0.6, 0.9, 0.9]],
                      np.float32)
    prior = np.concatenate([priors.reshape(-1), np.full(12, 0.1, np.float32)])
    loc = np.zeros((1, 12), np.float32)
    conf = np.array([[0.1, 0.8, 0.1,    # prior 0: class 1
                      0.2, 0.7, 0.1,    # prior 1: class 1, overlaps prior 0 (IoU 0.67)
                      0.3, 0.05, 0.65]], np.float32)   # prior 2: class 2
    return torch.tensor(loc), torch.tensor(conf), torch.tensor(prior).view(1, 2, 12)


def test_detection_output_nms_and_rows():
    loc, conf, prior = _det_inputs()
    layer = make_layer(DET % ("CENTER_SIZE", "", -1), [(1, 12), (1, 9), (1, 2, 12)], 1)
    rows = run(layer, loc, conf, prior)[0].numpy().reshape(-1, 7)
    np.testing.assert_allclose(rows, [[0, 1, 0.8, 0.1, 0.1, 0.3, 0.3],
                                      [0, 2, 0.65, 0.6, 0.6, 0.9, 0.9]], rtol=1e-6, atol=1e-7)
    # keep_top_k 1 keeps the best-scoring detection over all classes
    layer = make_layer(DET % ("CENTER_SIZE", "", 1), [(1, 12), (1, 9), (1, 2, 12)], 1)
    rows = run(layer, loc, conf, prior)[0].numpy().reshape(-1, 7)
    assert rows.shape == (1, 7) and rows[0, 1] == 1
    # top_k 1 per class before NMS gives the same; nms 0.7 keeps both class-1 boxes
    layer = make_layer((DET % ("CENTER_SIZE", "", -1)).replace("0.5", "0.7"),
                       [(1, 12), (1, 9), (1, 2, 12)], 1)
    rows = run(layer, loc, conf, prior)[0].numpy().reshape(-1, 7)
    assert rows[:, 1].tolist() == [1, 1, 2] and rows[:, 2].tolist() == pytest.approx(
        [0.8, 0.7, 0.65])


def test_detection_output_decoding():
    loc, conf, prior = _det_inputs()
    loc[0, :4] = torch.tensor([1.0, -1.0, 0.5, 0.0])
    layer = make_layer(DET % ("CENTER_SIZE", "", -1), [(1, 12), (1, 9), (1, 2, 12)], 1)
    rows = run(layer, loc, conf, prior)[0].numpy().reshape(-1, 7)
    cx, cy = 0.1 * 1.0 * 0.2 + 0.2, 0.1 * -1.0 * 0.2 + 0.2
    w, h = math.exp(0.1 * 0.5) * 0.2, 0.2
    np.testing.assert_allclose(rows[0, 3:], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2],
                               rtol=1e-6)
    layer = make_layer(DET % ("CORNER", "", -1), [(1, 12), (1, 9), (1, 2, 12)], 1)
    rows = run(layer, loc, conf, prior)[0].numpy().reshape(-1, 7)
    np.testing.assert_allclose(rows[0, 3:], [0.2, 0.0, 0.35, 0.3], rtol=1e-6)


def test_detection_output_empty_result():
    loc, conf, prior = _det_inputs()
    layer = make_layer(DET % ("CENTER_SIZE", "", -1), [(2, 12), (2, 9), (1, 2, 12)], 1)
    out = run(layer, loc.repeat(2, 1), torch.zeros(2, 9), prior)[0].numpy()
    assert out.shape == (1, 1, 2, 7)
    np.testing.assert_array_equal(out[0, 0, :, 0], [0, 1])
    assert (out[0, 0, :, 1:] == -1).all()


def test_detection_output_eta():
    # three boxes in a row, each overlapping the next with IoU 0.6; eta lowers the threshold
    priors = np.array([[0.0, 0, 1.0, 1], [0.25, 0, 1.25, 1], [0.5, 0, 1.5, 1]], np.float32)
    prior = torch.tensor(np.concatenate([priors.reshape(-1), np.full(12, 0.1, np.float32)]))
    conf = torch.tensor([[0, 0.9, 0, 0.8, 0, 0.7]], dtype=torch.float32)
    loc = torch.zeros(1, 12)
    text = ('name: "det" type: "DetectionOutput" detection_output_param { num_classes: 2 '
            'code_type: CORNER nms_param { nms_threshold: 0.7 %s } }')
    plain = make_layer(text % "", [(1, 12), (1, 6), (1, 2, 12)], 1)
    assert run(plain, loc, conf, prior.view(1, 2, 12))[0].shape[2] == 3
    eta = make_layer(text % "eta: 0.8", [(1, 12), (1, 6), (1, 2, 12)], 1)
    # after the first kept box the threshold is 0.56 < 0.6: box 1 is dropped; box 2 (IoU
    # 1/3 with box 0) is kept
    rows = run(eta, loc, conf, prior.view(1, 2, 12))[0].numpy().reshape(-1, 7)
    assert rows[:, 2].tolist() == pytest.approx([0.9, 0.7])


def test_detection_output_errors():
    with pytest.raises(LayerError, match="detection_output_param.num_classes"):
        make_layer('name: "det" type: "DetectionOutput" detection_output_param { }',
                   [(1, 12), (1, 9), (1, 2, 12)])
    with pytest.raises(LayerError, match="detection_output_param.num_classes"):
        make_layer(DET % ("CENTER_SIZE", "", -1), [(1, 12), (1, 8), (1, 2, 12)])


# ---------------------------------------------------------------------------
# Interp, Upsample
# ---------------------------------------------------------------------------
def test_interp_zoom_matches_align_corners():
    layer = make_layer('name: "i" type: "Interp" interp_param { zoom_factor: 3 }',
                       [(2, 3, 4, 5)])
    assert layer.output_shapes([(2, 3, 4, 5)]) == [(2, 3, 10, 13)]
    x = torch.randn(2, 3, 4, 5)
    y = run(layer, x)[0]
    ref = torch.nn.functional.interpolate(x, size=(10, 13), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    assert gradcheck(layer, [x], [0])


def test_interp_sizes_and_crop():
    shrink = make_layer('name: "i" type: "Interp" interp_param { shrink_factor: 2 }',
                        [(1, 1, 9, 7)])
    assert shrink.output_shapes([(1, 1, 9, 7)]) == [(1, 1, 5, 4)]
    x = torch.arange(63, dtype=torch.float32).view(1, 1, 9, 7)
    # shrink by 2 on an odd grid samples every other pixel exactly
    np.testing.assert_allclose(run(shrink, x)[0].numpy(), x[:, :, ::2, ::2].numpy(), rtol=1e-6)
    crop = make_layer('name: "i" type: "Interp" interp_param { height: 7 width: 5 pad_beg: -1 '
                      'pad_end: -1 }', [(1, 1, 9, 7)])
    np.testing.assert_array_equal(run(crop, x)[0].numpy(), x[:, :, 1:8, 1:6].numpy())
    both = make_layer('name: "i" type: "Interp" interp_param { shrink_factor: 2 zoom_factor: 2 }',
                      [(1, 1, 9, 7)])
    assert both.output_shapes([(1, 1, 9, 7)]) == [(1, 1, 9, 7)]
    with pytest.raises(LayerError, match="interp_param.pad_beg"):
        make_layer('name: "i" type: "Interp" interp_param { zoom_factor: 2 pad_beg: 1 }',
                   [(1, 1, 9, 7)])
    with pytest.raises(LayerError, match="interp_param"):
        make_layer('name: "i" type: "Interp"', [(1, 1, 9, 7)])


def test_upsample_with_pooling_mask(tmp_path):
    proto = tmp_path / "segnet.prototxt"
    proto.write_text("""
        force_backward: true
        layer { name: "in" type: "Input" top: "data"
          input_param { shape { dim: 1 dim: 2 dim: 4 dim: 6 } } }
        layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask"
          pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
        layer { name: "up" type: "Upsample" bottom: "pool" bottom: "mask" top: "up"
          upsample_param { scale: 2 } }
    """)
    net = caffe.Net(str(proto), caffe.TRAIN)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 6)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    up = net.blobs["up"].data
    assert up.shape == (1, 2, 4, 6)
    # every 2x2 window keeps only its maximum
    win = x.reshape(1, 2, 2, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(1, 2, 2, 3, 4)
    expect = np.where(x == np.repeat(np.repeat(win.max(-1), 2, 2), 2, 3), x, 0)
    np.testing.assert_array_equal(up, expect)
    net.blobs["up"].diff[...] = np.arange(48).reshape(1, 2, 4, 6)
    net.backward()
    mask = net.blobs["mask"].data.astype(int)
    np.testing.assert_array_equal(
        net.blobs["pool"].diff,
        np.take_along_axis(np.arange(48).reshape(1, 2, 24), mask.reshape(1, 2, 6), 2)
        .reshape(1, 2, 2, 3))


def test_upsample_sizes_and_errors():
    layer = make_layer('name: "u" type: "Upsample" upsample_param { scale: 2 pad_out_h: true }',
                       [(1, 1, 3, 3), (1, 1, 3, 3)])
    assert layer.output_shapes([(1, 1, 3, 3)] * 2) == [(1, 1, 5, 6)]
    layer = make_layer('name: "u" type: "Upsample" upsample_param { upsample_h: 7 '
                       'upsample_w: 5 }', [(1, 1, 3, 3), (1, 1, 3, 3)])
    assert layer.output_shapes([(1, 1, 3, 3)] * 2) == [(1, 1, 7, 5)]
    with pytest.raises(LayerError, match="upsample_param.pad_out_h"):
        make_layer('name: "u" type: "Upsample" upsample_param { scale: 3 pad_out_h: true }',
                   [(1, 1, 3, 3)] * 2)
    with pytest.raises(LayerError, match="upsample_param.scale"):
        make_layer('name: "u" type: "Upsample" upsample_param { scale: 1 }', [(1, 1, 3, 3)] * 2)
    with pytest.raises(LayerError, match="mask shape"):
        make_layer('name: "u" type: "Upsample" upsample_param { scale: 2 }',
                   [(1, 1, 3, 3), (1, 2, 3, 3)])
    bad = make_layer('name: "u" type: "Upsample" upsample_param { scale: 2 }',
                     [(1, 1, 2, 2)] * 2)
    with pytest.raises(LayerError, match="out of range"):
        run(bad, torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 99.0))
