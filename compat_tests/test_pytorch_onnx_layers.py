"""Detection, segmentation and Darknet layers through caffe.pytorch and ONNX.

For each layer: the module against ``caffe.Net`` (forward, and the bottom
diffs of ``Net.backward`` against autograd where the layer has a backward),
then the ONNX file in onnxruntime against the module -- on the traced inputs
and on a second, different set, so that a value frozen by tracing fails.
Training-only layers without an ONNX form must be refused by name."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' and 'test' extras")

from pytorch_cases import case_inputs, load_case

import caffe
import caffe.pytorch
from caffe import to_onnx
from caffe.pytorch import ModuleBuildError, onnx_export

ROI_INPUT = ('layer { name: "in" type: "Input" top: "f" top: "rois" input_param { '
             'shape { dim: 2 dim: %d dim: 10 dim: 12 } shape { dim: %d dim: 5 } } }\n')

NETS = {
    "interp_zoom_crop": (
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 '
        'dim: 5 dim: 7 } } }\n'
        'layer { name: "L" type: "Interp" bottom: "x" top: "y" interp_param { zoom_factor: 3 '
        'pad_beg: -1 pad_end: -1 } }'),
    "interp_shrink_zoom": (
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 '
        'dim: 9 dim: 8 } } }\n'
        'layer { name: "L" type: "Interp" bottom: "x" top: "y" interp_param { shrink_factor: 2 '
        'zoom_factor: 3 } }'),
    "interp_size_and_like": (
        'layer { name: "in" type: "Input" top: "x" top: "ref" input_param { shape { dim: 1 '
        'dim: 2 dim: 4 dim: 6 } shape { dim: 1 dim: 1 dim: 7 dim: 3 } } }\n'
        'layer { name: "L" type: "Interp" bottom: "x" top: "y" interp_param { height: 9 '
        'width: 11 } }\n'
        'layer { name: "L2" type: "Interp" bottom: "x" bottom: "ref" top: "y2" }'),
    "upsample_scale_pad": (
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 '
        'dim: 7 dim: 8 } } }\n'
        'layer { name: "p" type: "Pooling" bottom: "x" top: "pool" top: "mask" pooling_param '
        '{ pool: MAX kernel_size: 2 stride: 2 } }\n'
        'layer { name: "L" type: "Upsample" bottom: "pool" bottom: "mask" top: "up" '
        'upsample_param { scale: 2 pad_out_h: true } }'),
    "upsample_fixed_size": (
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 '
        'dim: 6 dim: 5 } } }\n'
        'layer { name: "p" type: "Pooling" bottom: "x" top: "pool" top: "mask" pooling_param '
        '{ pool: MAX kernel_size: 3 stride: 2 } }\n'
        'layer { name: "L" type: "Upsample" bottom: "pool" bottom: "mask" top: "up" '
        'upsample_param { upsample_h: 6 upsample_w: 5 } }'),
    "silence_with_interp": (       # no code emitter for Interp: the module is traced
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 '
        'dim: 4 dim: 4 } } }\n'
        'layer { name: "i" type: "Interp" bottom: "x" top: "y" interp_param { zoom_factor: 2 } }\n'
        'layer { name: "s" type: "Sigmoid" bottom: "x" top: "s" }\n'
        'layer { name: "L" type: "Silence" bottom: "s" }'),
    "silence_generated": (         # every layer has an emitter: the generated Model is traced
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
        'layer { name: "r" type: "ReLU" bottom: "x" top: "r" }\n'
        'layer { name: "s" type: "Sigmoid" bottom: "x" top: "s" }\n'
        'layer { name: "L" type: "Silence" bottom: "s" }'),
    "yolo": (
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 16 '
        'dim: 3 dim: 4 } } }\n'
        'layer { name: "L" type: "Yolo" bottom: "x" top: "boxes" top: "act" yolo_param { '
        'anchors: [10, 14, 23, 27, 37, 58] mask: [1, 2] classes: 3 net_width: 32 '
        'net_height: 32 scale_x_y: 1.05 thresh: 0.2 } }'),
    "region_softmax": (
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 16 '
        'dim: 3 dim: 4 } } }\n'
        'layer { name: "L" type: "Region" bottom: "x" top: "boxes" top: "act" region_param { '
        'anchors: [1, 1.5, 2.2, 3] num: 2 classes: 3 thresh: 0.1 } }'),
    "region_logistic": (
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 24 '
        'dim: 5 dim: 2 } } }\n'
        'layer { name: "L" type: "Region" bottom: "x" top: "boxes" region_param { '
        'anchors: [1, 1.5, 2.2, 3, 0.5, 0.7] num: 3 classes: 3 softmax: false } }'),
    "roi_pooling": (ROI_INPUT % (3, 7) +
                    'layer { name: "L" type: "ROIPooling" bottom: "f" bottom: "rois" top: "p" '
                    'roi_pooling_param { pooled_h: 3 pooled_w: 2 spatial_scale: 0.5 } }'),
    "psroi_pooling": (ROI_INPUT % (18, 7) +
                      'layer { name: "L" type: "PSROIPooling" bottom: "f" bottom: "rois" '
                      'top: "p" psroi_pooling_param { spatial_scale: 0.5 output_dim: 2 '
                      'group_size: 3 } }'),
}


def _rois(rs, count, images=2):
    """Boxes in input pixels, some outside the map, some with .5 coordinates."""
    b = rs.randint(0, images, (count, 1))
    xy = np.round(rs.uniform(-4, 28, (count, 4)) * 2) / 2
    lo, hi = np.minimum(xy[:, :2], xy[:, 2:]), np.maximum(xy[:, :2], xy[:, 2:])
    rois = np.concatenate([b, lo, hi], 1).astype(np.float32)
    rois[0] = [0, 30, 30, 40, 40]          # entirely outside: empty bins
    return rois


def _feed(shapes, seed, rois_count=None):
    rs = np.random.RandomState(seed)
    feed = {}
    for name, shape in shapes.items():
        if name == "rois":
            feed[name] = _rois(rs, rois_count or shape[0], images=shapes["f"][0])
        else:
            feed[name] = rs.randn(*shape).astype(np.float32)
    if "f" in feed:                           # a plane of ReLU zeros and a negative plane
        feed["f"][0, 0] = np.maximum(feed["f"][0, 0], 0) * (rs.rand(10, 12) > 0.7)
        feed["f"][1, 1] = -np.abs(feed["f"][1, 1]) - 0.25
    return feed


def _build(tmp_path, key):
    path = tmp_path / (key + ".prototxt")
    path.write_text('name: "%s"\nforce_backward: true\n%s\n' % (key, NETS[key]))
    return str(path)


def _net_forward_backward(path, feed, top_diffs):
    net = caffe.Net(path, caffe.TEST)
    for k, v in feed.items():
        net.blobs[k].reshape(*v.shape)
        net.blobs[k].data[...] = v
    net.reshape()
    net.forward()
    out = {k: net.blobs[k].data.copy() for k in net.outputs}
    for k, d in top_diffs.items():
        net.blobs[k].diff[...] = d
    net.backward()
    return out, {k: net.blobs[k].diff.copy() for k in feed}


@pytest.mark.parametrize("key", sorted(NETS))
def test_module_matches_the_net_forward_and_backward(tmp_path, key):
    path = _build(tmp_path, key)
    module = caffe.pytorch.load(path)
    feed = _feed(module.input_shapes, 0)
    inputs = {k: torch.tensor(v, requires_grad=(k != "rois")) for k, v in feed.items()}
    outputs = module(**inputs)
    rs = np.random.RandomState(5)
    top_diffs = {k: rs.randn(*v.shape).astype(np.float32) for k, v in outputs.items()}
    expected, diffs = _net_forward_backward(path, feed, top_diffs)
    assert list(outputs) == list(expected)
    for k, v in outputs.items():
        np.testing.assert_allclose(v.detach().numpy(), expected[k], rtol=1e-5, atol=1e-6,
                                   err_msg=k)
    total = sum((v * torch.tensor(top_diffs[k])).sum() for k, v in outputs.items())
    wrt = [k for k in inputs if inputs[k].requires_grad]
    grads = torch.autograd.grad(total, [inputs[k] for k in wrt], allow_unused=True)
    for k, g in zip(wrt, grads):
        g = torch.zeros_like(inputs[k]) if g is None else g
        np.testing.assert_allclose(g.numpy(), diffs[k], rtol=1e-5, atol=1e-5, err_msg=k)
    assert any(np.abs(diffs[k]).max() > 0 for k in wrt)     # the check compared something


def _onnx_vs_module(module, path, feed):
    with torch.no_grad():
        expected = module(**{k: torch.tensor(v) for k, v in feed.items()})
    got = onnx_export.run_onnx(path, feed)
    assert list(got) == list(expected)
    for k, v in expected.items():
        np.testing.assert_allclose(got[k], v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
        assert np.abs(v.numpy()).max() > 0, k


@pytest.mark.parametrize("key", sorted(NETS))
def test_onnx_matches_the_module_on_traced_and_other_inputs(tmp_path, key):
    module = caffe.pytorch.load(_build(tmp_path, key))
    module.eval()
    out = str(tmp_path / (key + ".onnx"))
    traced = _feed(module.input_shapes, 0)
    onnx_export.export(onnx_export.exportable_model(module), out,
                       inputs={k: torch.tensor(v) for k, v in traced.items()})
    _onnx_vs_module(module, out, traced)
    _onnx_vs_module(module, out, _feed(module.input_shapes, 1))


@pytest.mark.parametrize("key", ["roi_pooling", "psroi_pooling"])
def test_roi_layers_export_with_a_dynamic_roi_count(tmp_path, key):
    module = caffe.pytorch.load(_build(tmp_path, key))
    module.eval()
    out = str(tmp_path / (key + ".onnx"))
    onnx_export.export(module, out, dynamic_batch=True,
                       inputs={k: torch.tensor(v)
                               for k, v in _feed(module.input_shapes, 0).items()})
    import onnx
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert ("MaxRoiPool" in ops) == (key == "roi_pooling")
    for seed, count in ((2, 11), (3, 2)):
        _onnx_vs_module(module, out, _feed(module.input_shapes, seed, rois_count=count))
    assert module.layer("L").export_form is None        # the ONNX form is for the export only


def test_roi_pooling_form_refuses_a_scale_onnx_cannot_take(tmp_path):
    path = tmp_path / "roi0.prototxt"
    path.write_text(NETS["roi_pooling"].replace("spatial_scale: 0.5", "spatial_scale: 0"))
    module = caffe.pytorch.load(str(path))
    with pytest.raises(ModuleBuildError, match="^ROIPooling layer 'L': spatial_scale 0: ONNX "
                                               "MaxRoiPool needs spatial_scale > 0$"):
        onnx_export.export(module, str(tmp_path / "roi0.onnx"))
    assert module.layer("L").export_form is None


def test_roi_pooling_negative_bins_are_within_rounding_and_zero_bins_exact(tmp_path):
    module = caffe.pytorch.load(_build(tmp_path, "roi_pooling"))
    module.eval()
    out = str(tmp_path / "roi.onnx")
    feed = _feed(module.input_shapes, 4)
    feed["f"][0] = np.maximum(feed["f"][0], 0) * (np.random.RandomState(0).rand(3, 10, 12) > .9)
    feed["rois"][1:] = [[1, 0, 0, 23, 19], [1, 3, 3, 8, 8], [0, 0, 0, 5, 5], [0, 2, 4, 20, 16],
                        [1, 10, 1, 10, 1], [0, 1, 1, 1, 1]]
    onnx_export.export(module, out, inputs={k: torch.tensor(v) for k, v in feed.items()})
    with torch.no_grad():
        expected = module(**{k: torch.tensor(v) for k, v in feed.items()})["p"].numpy()
    got = onnx_export.run_onnx(out, feed)["p"]
    assert (expected < 0).sum() > 10 and (expected == 0).sum() > 10
    zero_or_positive = expected >= 0
    np.testing.assert_array_equal(got[zero_or_positive], expected[zero_or_positive])
    scale = np.abs(feed["f"]).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=4 * np.finfo(np.float32).eps * scale)


def test_command_line_exports_interp_with_dynamic_batch(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert to_onnx.main([_build(tmp_path, "interp_zoom_crop"), "-o", str(out),
                         "--dynamic-batch"]) == 0, capsys.readouterr().err
    assert "module vs onnxruntime (batch + 1)" in capsys.readouterr().out and out.exists()


OHEM = """name: "ohem"
layer { name: "in" type: "Input" top: "rois" top: "loss" top: "labels" top: "w"
  input_param { shape { dim: 6 dim: 5 } shape { dim: 6 dim: 1 } shape { dim: 6 dim: 1 }
                shape { dim: 6 dim: 4 } } }
layer { name: "L" type: "BoxAnnotatorOHEM" bottom: "rois" bottom: "loss" bottom: "labels"
  bottom: "w" top: "labels_ohem" top: "w_ohem" box_annotator_ohem_param { roi_per_img: 2 } }
"""


def test_box_annotator_ohem_module_matches_the_net(tmp_path):
    path = tmp_path / "ohem.prototxt"
    path.write_text(OHEM)
    rs = np.random.RandomState(0)
    feed = {"rois": np.c_[[1, 0, 0, 1, 0, 1], rs.rand(6, 4)].astype(np.float32),
            "loss": rs.rand(6, 1).astype(np.float32),
            "labels": rs.randint(1, 5, (6, 1)).astype(np.float32),
            "w": rs.rand(6, 4).astype(np.float32)}
    net = caffe.Net(str(path), caffe.TRAIN)
    for k, v in feed.items():
        net.blobs[k].data[...] = v
    net.forward()
    module = caffe.pytorch.load(str(path), phase=caffe.TRAIN)
    out = module(**{k: torch.tensor(v) for k, v in feed.items()})
    for k in ("labels_ohem", "w_ohem"):
        np.testing.assert_array_equal(out[k].numpy(), net.blobs[k].data)
    assert (out["labels_ohem"].numpy() == -1).sum() == 2      # 4 + 2 rois, 2 kept per image


@pytest.mark.parametrize("layer_type", ["MultiBoxLoss", "DetectionEvaluate", "BoxAnnotatorOHEM"])
def test_training_layers_are_refused_by_name(tmp_path, capsys, layer_type):
    if layer_type == "BoxAnnotatorOHEM":
        path = tmp_path / "ohem.prototxt"
        path.write_text(OHEM)
        module = caffe.pytorch.load(str(path), phase=caffe.TRAIN)
        feed = None
    else:
        name = {"MultiBoxLoss": "ssd_mbox_default",
                "DetectionEvaluate": "ssd_detection_evaluate"}[layer_type]
        module, _, ref = load_case("ssd", name)
        feed = {k: v for k, v in case_inputs(module, ref).items() if k in module.inputs}
    assert module.layer_types["L"] == layer_type
    out = tmp_path / "x.onnx"
    with pytest.raises(ModuleBuildError,
                       match="cannot be exported to ONNX: layer 'L' \\(type %s\\): \\w+"
                       % layer_type):
        onnx_export.export(onnx_export.exportable_model(module), str(out), inputs=feed)
    assert not out.exists()
    if layer_type == "BoxAnnotatorOHEM":
        assert to_onnx.main([str(tmp_path / "ohem.prototxt"), "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert "to_onnx: error:" in err and "BoxAnnotatorOHEM" in err and not out.exists()
