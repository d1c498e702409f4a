"""caffe.to_pytorch for layer types no golden case covers (or covers in one
setting only): small nets written here are generated, and one fresh
interpreter with ``caffe`` blocked runs every file; the outputs must equal
the caffe.pytorch module's (<= 1e-5 relative)."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_pytorch_codegen import RUNNER

import caffe
import caffe.pytorch
from caffe.pytorch.codegen import CodegenError, generate, write

RNG = np.random.RandomState(3)


def rand(*shape):
    return RNG.randn(*shape).astype(np.float32)


def net(inputs, layers):
    """Prototxt text: one Input layer with ``inputs`` {name: shape}, then ``layers``."""
    tops = " ".join('top: "%s"' % n for n in inputs)
    shapes = " ".join("shape { %s }" % " ".join("dim: %d" % d for d in s)
                      for s in inputs.values())
    return ('name: "t"\nlayer { name: "in" type: "Input" %s input_param { %s } }\n%s\n'
            % (tops, shapes, layers))


def feed_of(**arrays):
    return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}


ROIS = np.array([[0, 0, 0, 7, 7], [1, 2, 1, 5, 6], [0, 3.4, 2.5, 3.6, 2.5],
                 [1, -3, -2, 20, 30], [0, 6, 6, 2, 2]], np.float32)

CASES = {}


def case(name, layers, phase=caffe.TEST, **arrays):
    feed = feed_of(**arrays)
    CASES[name] = (net({k: v.shape for k, v in feed.items()}, layers), feed, phase)


# -- segmentation: Interp, Pooling's mask top + Upsample
case("interp_zoom", 'layer { name: "L" type: "Interp" bottom: "x" top: "y" '
     'interp_param { zoom_factor: 3 } }', x=rand(2, 3, 5, 4))
case("interp_shrink_pad", 'layer { name: "L" type: "Interp" bottom: "x" top: "y" '
     'interp_param { shrink_factor: 2 pad_beg: -1 pad_end: -1 } }', x=rand(1, 2, 9, 8))
case("interp_shrink_zoom", 'layer { name: "L" type: "Interp" bottom: "x" top: "y" '
     'interp_param { shrink_factor: 2 zoom_factor: 3 } }', x=rand(1, 2, 9, 8))
case("interp_size", 'layer { name: "L" type: "Interp" bottom: "x" top: "y" '
     'interp_param { height: 7 width: 1 } }', x=rand(1, 2, 3, 5))
case("interp_like", 'layer { name: "L" type: "Interp" bottom: "x" bottom: "ref" top: "y" }',
     x=rand(2, 2, 4, 4), ref=rand(2, 1, 11, 6))
case("pool_mask_upsample", '''
layer { name: "pool" type: "Pooling" bottom: "x" top: "p" top: "mask"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "up" type: "Upsample" bottom: "p" bottom: "mask" top: "y"
  upsample_param { scale: 2 } }''', x=rand(2, 3, 6, 8))
case("pool_mask_upsample_pad_out", '''
layer { name: "pool" type: "Pooling" bottom: "x" top: "p" top: "mask"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "up" type: "Upsample" bottom: "p" bottom: "mask" top: "y"
  upsample_param { scale: 2 pad_out_h: true } }''', x=rand(1, 2, 7, 6))
case("pool_mask_upsample_size", '''
layer { name: "pool" type: "Pooling" bottom: "x" top: "p" top: "mask"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "up" type: "Upsample" bottom: "p" bottom: "mask" top: "y"
  upsample_param { upsample_h: 7 upsample_w: 5 } }''', x=rand(1, 2, 7, 5))
# -- pooling pyramids and columns
case("spp_ave_3", 'layer { name: "L" type: "SPP" bottom: "x" top: "y" '
     'spp_param { pyramid_height: 3 pool: AVE } }', x=rand(2, 3, 9, 6))
case("spp_one_level", 'layer { name: "L" type: "SPP" bottom: "x" top: "y" '
     'spp_param { pyramid_height: 1 } }', x=rand(2, 3, 5, 5))
case("im2col_rect_dilated", 'layer { name: "L" type: "Im2col" bottom: "x" top: "y" '
     'convolution_param { kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0 '
     'dilation: 2 } }', x=rand(2, 3, 7, 8))
# -- indexing
case("argmax_axis", 'layer { name: "L" type: "ArgMax" bottom: "x" top: "y" '
     'argmax_param { axis: 1 top_k: 2 } }',
     x=np.array([[[1, 5], [3, 5], [3, 0]]], np.float32))
case("argmax_axis_values", 'layer { name: "L" type: "ArgMax" bottom: "x" top: "y" '
     'argmax_param { axis: -1 out_max_val: true } }', x=rand(2, 3, 4))
case("argmax_ties_4d", 'layer { name: "L" type: "ArgMax" bottom: "x" top: "y" '
     'argmax_param { top_k: 3 } }', x=np.round(rand(2, 2, 2, 2)))
case("filter_two_bottoms", 'layer { name: "L" type: "Filter" bottom: "a" bottom: "b" '
     'bottom: "s" top: "ya" top: "yb" }', a=rand(4, 3), b=rand(4, 2, 2),
     s=np.array([0, 1, 0, 2], np.float32))
case("batch_reindex_4d", 'layer { name: "L" type: "BatchReindex" bottom: "x" bottom: "i" '
     'top: "y" }', x=rand(3, 2, 2, 2), i=np.array([2, 0, 2, 1, 0, 2.9], np.float32))
# -- region pooling
case("roi_pooling", 'layer { name: "L" type: "ROIPooling" bottom: "x" bottom: "rois" top: "y" '
     'roi_pooling_param { pooled_h: 3 pooled_w: 2 spatial_scale: 0.5 } }',
     x=rand(2, 3, 6, 5), rois=ROIS)
case("roi_pooling_full_scale", 'layer { name: "L" type: "ROIPooling" bottom: "x" bottom: "rois" '
     'top: "y" roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 1 } }',
     x=rand(2, 2, 8, 8), rois=ROIS)
case("psroi_pooling", 'layer { name: "L" type: "PSROIPooling" bottom: "x" bottom: "rois" '
     'top: "y" psroi_pooling_param { spatial_scale: 0.5 output_dim: 2 group_size: 3 } }',
     x=rand(2, 18, 6, 5), rois=ROIS)


# -- SSD's DetectionOutput (data-dependent number of rows)
def priors(p, rng=np.random.RandomState(11)):
    """(1, 2, p * 4): p boxes in [0, 1] and their variances."""
    xy = rng.rand(p, 2) * 0.7
    wh = rng.rand(p, 2) * 0.3 + 0.05
    boxes = np.concatenate([xy, xy + wh], 1).reshape(-1)
    var = np.tile([0.1, 0.1, 0.2, 0.2], p)
    return np.stack([boxes, var])[None].astype(np.float32)


def det_case(name, param, p=12, classes=4, loc_classes=1, num=2, conf=None):
    rng = np.random.RandomState(len(name))
    if conf is None:
        conf = rng.rand(num, p * classes)
    case(name, 'layer { name: "L" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
         'bottom: "prior" top: "y" detection_output_param { num_classes: %d %s } }'
         % (classes, param), loc=rng.randn(num, p * loc_classes * 4) * 0.5, conf=conf,
         prior=priors(p))


det_case("detout_center_keep_top_k", "nms_param { nms_threshold: 0.3 top_k: 6 } "
         "code_type: CENTER_SIZE keep_top_k: 5 confidence_threshold: 0.3")
det_case("detout_corner_noshare", "share_location: false background_label_id: 1 "
         "nms_param { nms_threshold: 0.5 } code_type: CORNER confidence_threshold: 0.6",
         loc_classes=4)
det_case("detout_corner_size_var_in_target", "nms_param { nms_threshold: 0.45 } "
         "code_type: CORNER_SIZE variance_encoded_in_target: true keep_top_k: 100")
det_case("detout_eta_no_threshold", "nms_param { nms_threshold: 0.7 eta: 0.8 top_k: 20 } "
         "keep_top_k: 7 background_label_id: -1", classes=2)
det_case("detout_nothing_found", "nms_param { nms_threshold: 0.45 } confidence_threshold: 0.5",
         num=3, conf=np.full((3, 12 * 4), 0.25))
det_case("detout_score_ties", "nms_param { nms_threshold: 0.2 top_k: 5 } keep_top_k: 4",
         conf=np.round(np.random.RandomState(2).rand(2, 12 * 4), 1))
case("ssd_head", """
layer { name: "conv" type: "Convolution" bottom: "x" top: "feat"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "loc" type: "Convolution" bottom: "feat" top: "loc"
  convolution_param { num_output: 8 kernel_size: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loc_perm" type: "Permute" bottom: "loc" top: "loc_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "loc_flat" type: "Flatten" bottom: "loc_perm" top: "loc_flat" }
layer { name: "conf" type: "Convolution" bottom: "feat" top: "conf"
  convolution_param { num_output: 6 kernel_size: 1 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "conf_perm" type: "Permute" bottom: "conf" top: "conf_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "conf_flat" type: "Flatten" bottom: "conf_perm" top: "conf_flat" }
layer { name: "prior" type: "PriorBox" bottom: "feat" bottom: "x" top: "prior"
  prior_box_param { min_size: 8 max_size: 16 clip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }
layer { name: "conf_r" type: "Reshape" bottom: "conf_flat" top: "conf_r" reshape_param { shape { dim: 0 dim: -1 dim: 3 } } }
layer { name: "conf_s" type: "Softmax" bottom: "conf_r" top: "conf_s" softmax_param { axis: 2 } }
layer { name: "conf_f" type: "Flatten" bottom: "conf_s" top: "conf_f" }
layer { name: "det" type: "DetectionOutput" bottom: "loc_flat" bottom: "conf_f" bottom: "prior" top: "det"
  detection_output_param { num_classes: 3 nms_param { nms_threshold: 0.45 top_k: 40 }
    code_type: CENTER_SIZE keep_top_k: 20 confidence_threshold: 0.4
    save_output_param { output_directory: "unused" } } }""", x=rand(2, 3, 6, 6))


# -- Darknet decoders
case("yolo_masked_two_tops", 'layer { name: "L" type: "Yolo" bottom: "x" top: "y" top: "map" '
     'yolo_param { anchors: [10, 13, 16, 30, 33, 23, 30, 61] mask: [1, 3] classes: 3 '
     'net_width: 64 net_height: 48 scale_x_y: 1.05 thresh: 0.25 } }', x=rand(2, 16, 3, 4))
case("yolo_defaults", 'layer { name: "L" type: "Yolo" bottom: "x" top: "y" '
     'yolo_param { anchors: [10, 13, 16, 30] classes: 2 net_width: 32 net_height: 32 } }',
     x=rand(1, 14, 2, 2))
case("region_softmax", 'layer { name: "L" type: "Region" bottom: "x" top: "y" '
     'region_param { anchors: [1.08, 1.19, 3.42, 4.41] classes: 4 num: 2 thresh: 0.1 } }',
     x=rand(2, 18, 3, 5))
case("region_logistic_two_tops", 'layer { name: "L" type: "Region" bottom: "x" top: "y" '
     'top: "map" region_param { anchors: [0.57, 0.67, 1.87, 2.06, 3.3, 5.47] classes: 2 num: 3 '
     'softmax: false } }', x=rand(1, 21, 4, 4))


# -- losses and Accuracy beyond the golden cases' settings
LABELS = np.array([0, 2, 1, 2, 3, 0], np.float32)
case("sigmoid_xent_ignore_valid", 'layer { name: "L" type: "SigmoidCrossEntropyLoss" '
     'bottom: "x" bottom: "t" top: "loss" loss_param { ignore_label: -1 normalization: VALID } }',
     x=rand(3, 4) * 3, t=np.array([[0, 1, -1, 1], [1, -1, 0, 0], [0, 0, 1, -1]], np.float32))
case("infogain_source_ignore_prob", 'layer { name: "L" type: "InfogainLoss" bottom: "x" '
     'bottom: "label" top: "loss" top: "prob" loss_weight: 1 loss_weight: 0 infogain_loss_param { source: "{dir}/H.binaryproto" '
     'axis: 1 } loss_param { ignore_label: 3 normalization: FULL } }', x=rand(6, 4),
     label=LABELS)
case("infogain_spatial", 'layer { name: "L" type: "InfogainLoss" bottom: "x" bottom: "label" '
     'bottom: "H" top: "loss" }', x=rand(2, 3, 2, 2),
     label=np.array([[[0, 1], [2, 2]], [[1, 0], [0, 2]]], np.float32), H=np.abs(rand(3, 3)))
case("hinge_l2", 'layer { name: "L" type: "HingeLoss" bottom: "x" bottom: "label" top: "loss" '
     'hinge_loss_param { norm: L2 } }', x=rand(6, 4), label=LABELS)
case("smooth_l1_sigma_weights", 'layer { name: "L" type: "SmoothL1Loss" bottom: "p" bottom: "t" '
     'bottom: "wi" bottom: "wo" top: "loss" smooth_l1_loss_param { sigma: 3.1 } }',
     p=rand(2, 8), t=rand(2, 8), wi=np.abs(rand(2, 8)), wo=np.abs(rand(2, 8)))
case("smooth_l1_legacy_weight", 'layer { name: "L" type: "SmoothL1Loss" bottom: "p" bottom: "t" '
     'bottom: "w" top: "loss" }', p=rand(3, 4) * 2, t=rand(3, 4), w=np.abs(rand(3, 4)))
case("accuracy_top2_axis2", 'layer { name: "L" type: "Accuracy" bottom: "x" bottom: "label" '
     'top: "acc" top: "per_class" accuracy_param { top_k: 2 axis: 2 } }',
     x=np.round(rand(2, 3, 4), 0), label=np.array([[0, 3, 1], [2, 2, 0]], np.float32))


# -- recurrent layers: cont flags restarting sequences, static input, exposed hidden state
CONT = np.array([[0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], np.float32)
RECUR = ('recurrent_param { num_output: 3 weight_filler { type: "uniform" min: -0.5 max: 0.5 } '
         'bias_filler { type: "uniform" min: -0.2 max: 0.2 } %s }')
case("lstm_static_cont", 'layer { name: "L" type: "LSTM" bottom: "x" bottom: "cont" bottom: "s" '
     'top: "y" %s }' % (RECUR % ""), x=rand(4, 3, 2, 2), cont=CONT, s=rand(3, 5))
case("lstm_expose_hidden", 'layer { name: "L" type: "LSTM" bottom: "x" bottom: "cont" bottom: "h0" '
     'bottom: "c0" top: "y" top: "hT" top: "cT" %s }' % (RECUR % "expose_hidden: true"),
     x=rand(4, 3, 5), cont=CONT, h0=rand(1, 3, 3), c0=rand(1, 3, 3))
case("lstm_expose_hidden_static", 'layer { name: "L" type: "LSTM" bottom: "x" bottom: "cont" '
     'bottom: "s" bottom: "h0" bottom: "c0" top: "y" top: "hT" top: "cT" %s }'
     % (RECUR % "expose_hidden: true"), x=rand(4, 3, 5), cont=CONT, s=rand(3, 2, 2),
     h0=rand(1, 3, 3), c0=rand(1, 3, 3))
case("rnn_static_cont", 'layer { name: "L" type: "RNN" bottom: "x" bottom: "cont" bottom: "s" '
     'top: "y" %s }' % (RECUR % ""), x=rand(4, 3, 5), cont=CONT, s=rand(3, 4))
case("rnn_expose_hidden_static", 'layer { name: "L" type: "RNN" bottom: "x" bottom: "cont" '
     'bottom: "s" bottom: "h0" top: "y" top: "hT" %s }' % (RECUR % "expose_hidden: true"),
     x=rand(4, 3, 5), cont=CONT, s=rand(3, 4), h0=rand(1, 3, 3))
case("lstm_unit_cont", 'layer { name: "L" type: "LSTMUnit" bottom: "c" bottom: "g" bottom: "cont" '
     'top: "c1" top: "h1" }', c=rand(1, 4, 2), g=rand(1, 4, 8) * 2,
     cont=np.array([[1, 0, 1, 0]], np.float32))


# -- SSD's DetectionEvaluate: duplicates, unmatched labels, difficult boxes, no-detection rows
DETS = np.array([[0, 1, 0.9, 0.1, 0.1, 0.4, 0.4], [0, 1, 0.8, 0.12, 0.1, 0.4, 0.42],
                 [0, 1, 0.95, 0.6, 0.6, 0.9, 0.9], [0, 2, 0.7, 0.5, 0.1, 0.8, 0.3],
                 [0, 3, 0.6, 0.0, 0.0, 0.2, 0.2], [1, -1, -1, -1, -1, -1, -1],
                 [2, 2, 0.5, 0.3, 0.3, 0.6, 0.6], [2, 2, 0.55, 0.31, 0.3, 0.6, 0.61],
                 [2, 1, 0.4, 0.1, 0.1, 0.2, 0.2]], np.float32)[None, None]
GTS = np.array([[0, 1, 0, 0.1, 0.1, 0.4, 0.4, 0], [0, 2, 0, 0.5, 0.1, 0.8, 0.3, 1],
                [1, 1, 0, 0.2, 0.2, 0.3, 0.3, 0], [2, 2, 0, 0.3, 0.3, 0.6, 0.6, 1],
                [2, 2, 1, 0.7, 0.7, 0.9, 0.9, 0], [-1, 0, 0, 0, 0, 0, 0, 0],
                [2, 1, 0, 0.1, 0.1, 0.2, 0.2, 0]], np.float32)[None, None]
for _name, _param in (("det_eval_difficult", "evaluate_difficult_gt: true"),
                      ("det_eval_skip_difficult",
                       "evaluate_difficult_gt: false "
                       "overlap_threshold: 0.6")):
    case(_name, 'layer { name: "L" type: "DetectionEvaluate" bottom: "det" bottom: "gt" '
         'top: "y" detection_evaluate_param { num_classes: 4 %s } }' % _param, det=DETS, gt=GTS)


# -- R-FCN's BoxAnnotatorOHEM: per-image top losses, ties, rois of no image (-1)
_ROI_IMG = np.array([0, 1, 0, 0, 1, -1, 0, 1, 0, 1], np.float32)
_OHEM = ('layer { name: "L" type: "BoxAnnotatorOHEM" bottom: "rois" bottom: "loss" '
         'bottom: "labels" bottom: "w" top: "lab" top: "wt" '
         'box_annotator_ohem_param { roi_per_img: %d %s } }')
case("ohem_two_images", _OHEM % (3, "ignore_label: -1"),
     rois=np.concatenate([_ROI_IMG[:, None], rand(10, 4)], 1),
     loss=np.array([0.5, 2, 0.5, 3, 1, 9, 0.5, 2, 0.1, 4], np.float32).reshape(10, 1),
     labels=np.arange(10, dtype=np.float32).reshape(10, 1), w=np.abs(rand(10, 8)))
case("ohem_4d_default_ignore", _OHEM % (2, ""),
     rois=np.concatenate([_ROI_IMG[:6, None], rand(6, 4)], 1).reshape(6, 5, 1, 1),
     loss=rand(6, 1, 1, 1), labels=np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1),
     w=np.abs(rand(6, 4, 1, 1)))


# -- SSD's MultiBoxLoss beyond the golden settings (images without boxes, -1 rows)
MBOX_GT = np.array([[0, 1, 0, 0.1, 0.1, 0.45, 0.5, 0], [0, 2, 1, 0.5, 0.4, 0.9, 0.8, 1],
                    [-1, 0, 0, 0, 0, 0, 0, 0], [2, 3, 0, 0.0, 0.2, 0.3, 0.6, 0],
                    [2, 1, 1, 0.6, 0.0, 0.95, 0.35, 0]], np.float32)[None, None]


def mbox_case(name, param, extra="", classes=4, loc_classes=1, p=40):
    rng = np.random.RandomState(len(name) + 7)
    pri = priors(p, rng)
    pri[0, 0, :8] = [-0.1, 0.2, 0.3, 0.6, 0.7, 0.7, 1.1, 1.02]    # two cross the border
    case(name, 'layer { name: "L" type: "MultiBoxLoss" bottom: "loc" bottom: "conf" '
         'bottom: "prior" bottom: "gt" top: "loss" %s multibox_loss_param { num_classes: %d '
         'overlap_threshold: 0.3 %s } }' % (extra, classes, param), phase=caffe.TRAIN,
         loc=rng.randn(3, p * loc_classes * 4) * 0.5, conf=rng.randn(3, p * classes),
         prior=pri, gt=MBOX_GT)


mbox_case("mbox_logistic_no_mining_full", "conf_loss_type: LOGISTIC mining_type: NONE "
          "code_type: CORNER_SIZE", extra="loss_param { normalization: FULL }")
mbox_case("mbox_cross_bp_inside_agnostic", "ignore_cross_boundary_bbox: true bp_inside: true "
          "map_object_to_agnostic: true conf_loss_type: LOGISTIC neg_pos_ratio: 2.5",
          classes=2, p=30)
mbox_case("mbox_loc_only_batch_size", "mining_type: HARD_EXAMPLE sample_size: 7 "
          "loc_loss_type: L2 match_type: BIPARTITE use_difficult_gt: false",
          extra="propagate_down: true propagate_down: false propagate_down: false "
          "propagate_down: false loss_param { normalization: BATCH_SIZE }")
mbox_case("mbox_noshare_corner_bg_last", "share_location: false mining_type: NONE "
          "code_type: CORNER background_label_id: 0 encode_variance_in_target: true",
          loc_classes=4)


def _module(tmp_path, name, text, phase):
    path = tmp_path / (name + ".prototxt")
    path.write_text(text)
    return caffe.pytorch.load(str(path), phase=phase)


def _write_infogain(path):
    blob = caffe.io.array_to_blobproto(np.abs(rand(1, 1, 4, 4)) + np.eye(4, dtype=np.float32))
    path.write_bytes(blob.SerializeToString())


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """name -> (module outputs, generated outputs) for CASES."""
    out = tmp_path_factory.mktemp("gen_layers")
    expected = {}
    _write_infogain(out / "H.binaryproto")
    for name, (text, feed, phase) in CASES.items():
        module = _module(out, name, text.replace("{dir}", str(out)), phase)
        write(module, str(out / (name + ".py")), source=name + ".prototxt")
        with torch.no_grad():
            res = module(**{k: torch.from_numpy(v) for k, v in feed.items()})
        expected[name] = {k: v.numpy() for k, v in res.items()}
        np.savez(str(out / (name + ".in.npz")), **feed)
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(out)] + sorted(expected),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {n: (exp, dict(np.load(str(out / (n + ".out.npz"))))) for n, exp in expected.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_code_matches_the_module(ran, name):
    exp, got = ran[name]
    assert sorted(got) == sorted(exp)
    for k in exp:
        assert got[k].shape == exp[k].shape, "%s: %s" % (name, k)
        np.testing.assert_allclose(got[k], exp[k], rtol=1e-5, atol=1e-6 * max(
            1.0, float(np.abs(exp[k]).max()) if exp[k].size else 1.0),
            err_msg="%s: %s" % (name, k))


REFUSED = [
    ("spp_stochastic", net({"x": (1, 2, 4, 4)}, 'layer { name: "L" type: "SPP" bottom: "x" '
                           'top: "y" spp_param { pyramid_height: 2 pool: STOCHASTIC } }'),
     "spp_param.pool"),
    ("im2col_3d", net({"x": (1, 2, 4, 4, 4)}, 'layer { name: "L" type: "Im2col" bottom: "x" '
                      'top: "y" convolution_param { kernel_size: 2 } }'),
     "convolution_param.kernel_size"),
]


@pytest.mark.parametrize("name,text,field", REFUSED, ids=[r[0] for r in REFUSED])
def test_unsupported_settings_fail_at_generation_naming_layer_and_field(tmp_path, name, text,
                                                                         field):
    module = _module(tmp_path, name, text, caffe.TEST)
    with pytest.raises(CodegenError, match=r"layer 'L' \(type \w+\), field %s" % field):
        generate(module, source=name + ".prototxt")


def _generated_model(tmp_path, name, text, phase=caffe.TEST):
    module = _module(tmp_path, name, text, phase)
    write(module, str(tmp_path / (name + ".py")), source=name + ".prototxt")
    import importlib.util
    spec = importlib.util.spec_from_file_location("gen_" + name, str(tmp_path / (name + ".py")))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return module, mod.load()


@pytest.mark.parametrize("ltype", ["LSTM", "RNN"])
def test_generated_recurrent_layer_carries_its_state_and_gradients(tmp_path, ltype):
    """Without expose_hidden Caffe starts each forward from the last one's final
    state (a smaller batch keeps the leading streams); autograd gives the runtime's
    gradients for binary cont."""
    text = net({"x": (3, 4, 5), "cont": (3, 4)},
               'layer { name: "L" type: "%s" bottom: "x" bottom: "cont" top: "y" %s }'
               % (ltype, RECUR % ""))
    module, model = _generated_model(tmp_path, "carry_" + ltype, text)
    feeds = [(rand(3, 4, 5), np.ones((3, 4), np.float32)),
             (rand(3, 4, 5), np.array([[1, 0, 1, 1]] * 3, np.float32)),
             (rand(3, 2, 5), np.ones((3, 2), np.float32))]
    for x, cont in feeds:
        xa = torch.from_numpy(x).requires_grad_(True)
        xb = torch.from_numpy(x).requires_grad_(True)
        c = torch.from_numpy(cont)
        want = module(x=xa, cont=c)["y"]
        got = model(xb, c)["y"]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        want.sum().backward()
        got.sum().backward()
        torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-6)
    for n, p in model.L.named_parameters():
        torch.testing.assert_close(p.grad, getattr(module.L, n).grad, rtol=1e-5, atol=1e-6)
    model.L.reset()
    module.L.caffe_layer.reset()
    x, cont = feeds[0]
    torch.testing.assert_close(model(torch.from_numpy(x), torch.from_numpy(cont))["y"],
                               module(x=torch.from_numpy(x), cont=torch.from_numpy(cont))["y"])


def test_detection_evaluate_in_pixels_is_refused(tmp_path):
    sizes = tmp_path / "sizes.txt"
    sizes.write_text("img0 300 500\n")
    text = net({"det": (1, 1, 2, 7), "gt": (1, 1, 2, 8)},
               'layer { name: "L" type: "DetectionEvaluate" bottom: "det" bottom: "gt" top: "y" '
               'detection_evaluate_param { num_classes: 3 name_size_file: "%s" } }' % sizes)
    module = _module(tmp_path, "det_eval_pixels", text, caffe.TEST)
    with pytest.raises(CodegenError, match=r"layer 'L' \(type DetectionEvaluate\), field "
                       r"detection_evaluate_param.name_size_file"):
        generate(module, source="det_eval_pixels.prototxt")


def test_generated_multibox_loss_gradients_match_the_module(tmp_path):
    text, feed, phase = CASES["mbox_cross_bp_inside_agnostic"]
    module, model = _generated_model(tmp_path, "mbox_grad", text, phase)
    grads = []
    for run in (lambda **f: module(**f), lambda **f: model(*[f[k] for k in model.inputs])):
        t = {k: torch.from_numpy(v).requires_grad_(k in ("loc", "conf")) for k, v in feed.items()}
        run(**t)["loss"].backward()
        grads.append((t["loc"].grad, t["conf"].grad))
    for want, got in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


MBOX = net({"loc": (1, 16), "conf": (1, 8), "prior": (1, 2, 16), "gt": (1, 1, 1, 8)},
           'layer { name: "L" type: "MultiBoxLoss" bottom: "loc" bottom: "conf" bottom: "prior" '
           'bottom: "gt" top: "loss" multibox_loss_param { num_classes: 2 %s } }')


@pytest.mark.parametrize("param,field", [
    ("use_prior_for_matching: false", "use_prior_for_matching"),
    ("nms_param { nms_threshold: 0.5 }", "nms_param")])
def test_multibox_loss_refusals_name_layer_and_field(tmp_path, param, field):
    module = _module(tmp_path, "mbox_refused", MBOX % param, caffe.TRAIN)
    with pytest.raises(CodegenError, match=r"layer 'L' \(type MultiBoxLoss\), field "
                       r"multibox_loss_param.%s" % field):
        generate(module, source="mbox_refused.prototxt")
