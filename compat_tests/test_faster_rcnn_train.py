"""A Faster R-CNN-style train net on synthetic data, on the CPU: a Python
proposal-target layer (py-faster-rcnn's interface: ``param_str_``, ``phase``,
tops reshaped inside ``forward``), ROIPooling, SmoothL1Loss (sigma form, four
bottoms) and SoftmaxWithLoss, trained by caffe.SGDSolver.  The loss must go
down, the Python layer object must be the one ``solver.net.layers`` returns,
and gradients must reach the convolution under ROIPooling."""
import os
import sys
import textwrap

import numpy as np
import pytest

import caffe

NUM_CLASSES = 3

# A proposal-target layer in py-faster-rcnn's style, written for this test:
# all proposals plus the ground-truth boxes become the sampled RoIs (no random
# sampling, so the training problem is fixed), labelled by best IoU.
PROPOSAL_TARGET_SRC = '''
import ast
import numpy as np
import caffe


def _iou(a, b):
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    iw = np.maximum(ix2 - ix1 + 1, 0)
    ih = np.maximum(iy2 - iy1 + 1, 0)
    inter = iw * ih
    area = lambda r: (r[:, 2] - r[:, 0] + 1) * (r[:, 3] - r[:, 1] + 1)
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _targets(ex, gt):
    ew, eh = ex[:, 2] - ex[:, 0] + 1, ex[:, 3] - ex[:, 1] + 1
    gw, gh = gt[:, 2] - gt[:, 0] + 1, gt[:, 3] - gt[:, 1] + 1
    ecx, ecy = ex[:, 0] + 0.5 * ew, ex[:, 1] + 0.5 * eh
    gcx, gcy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    return np.stack([(gcx - ecx) / ew, (gcy - ecy) / eh,
                     np.log(gw / ew), np.log(gh / eh)], axis=1) / [0.1, 0.1, 0.2, 0.2]


class ProposalTargetLayer(caffe.Layer):
    def setup(self, bottom, top):
        params = ast.literal_eval("{" + self.param_str_ + "}")
        self.num_classes = params["num_classes"]
        self.phase_name = str(self.phase)
        self.forward_calls = 0
        top[0].reshape(1, 5)
        top[1].reshape(1)
        for t in top[2:]:
            t.reshape(1, 4 * self.num_classes)

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        self.forward_calls += 1
        rois = bottom[0].data
        gt = bottom[1].data
        boxes = np.vstack([rois[:, 1:5], gt[:, :4]])
        overlaps = _iou(boxes, gt[:, :4])
        best = overlaps.argmax(axis=1)
        labels = np.where(overlaps.max(axis=1) >= 0.5, gt[best, 4], 0).astype(np.float32)
        n = boxes.shape[0]
        targets = np.zeros((n, 4 * self.num_classes), np.float32)
        inside = np.zeros_like(targets)
        deltas = _targets(boxes, gt[best, :4])
        for i in np.where(labels > 0)[0]:
            c = int(labels[i])
            targets[i, 4 * c:4 * c + 4] = deltas[i]
            inside[i, 4 * c:4 * c + 4] = 1
        out = [np.hstack([np.zeros((n, 1), np.float32), boxes]), labels, targets, inside,
               (inside > 0).astype(np.float32)]
        for t, v in zip(top, out):
            t.reshape(*v.shape)
            t.data[...] = v

    def backward(self, top, propagate_down, bottom):
        pass
'''

TRAIN_NET = """
name: 'FasterRCNNStyle'
layer { name: 'input' type: 'Input' top: 'data' top: 'rpn_rois' top: 'gt_boxes'
  input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 }
                shape { dim: 6 dim: 5 } shape { dim: 2 dim: 5 } } }
layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1'
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 8 kernel_size: 3 pad: 1
    weight_filler { type: 'gaussian' std: 0.1 } bias_filler { type: 'constant' } } }
layer { name: 'relu1' type: 'ReLU' bottom: 'conv1' top: 'conv1' }
layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1'
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: 'roi-data' type: 'Python' bottom: 'rpn_rois' bottom: 'gt_boxes'
  top: 'rois' top: 'labels' top: 'bbox_targets' top: 'bbox_inside_weights'
  top: 'bbox_outside_weights'
  python_param { module: '%(module)s' layer: 'ProposalTargetLayer'
                 param_str: "'num_classes': %(nc)d" } }
layer { name: 'roi_pool5' type: 'ROIPooling' bottom: 'pool1' bottom: 'rois' top: 'pool5'
  roi_pooling_param { pooled_w: 3 pooled_h: 3 spatial_scale: 0.5 } }
layer { name: 'fc6' type: 'InnerProduct' bottom: 'pool5' top: 'fc6'
  inner_product_param { num_output: 32
    weight_filler { type: 'gaussian' std: 0.05 } bias_filler { type: 'constant' } } }
layer { name: 'relu6' type: 'ReLU' bottom: 'fc6' top: 'fc6' }
layer { name: 'cls_score' type: 'InnerProduct' bottom: 'fc6' top: 'cls_score'
  inner_product_param { num_output: %(nc)d
    weight_filler { type: 'gaussian' std: 0.01 } bias_filler { type: 'constant' } } }
layer { name: 'bbox_pred' type: 'InnerProduct' bottom: 'fc6' top: 'bbox_pred'
  inner_product_param { num_output: %(nc4)d
    weight_filler { type: 'gaussian' std: 0.001 } bias_filler { type: 'constant' } } }
layer { name: 'loss_cls' type: 'SoftmaxWithLoss' bottom: 'cls_score' bottom: 'labels'
  propagate_down: 1 propagate_down: 0 top: 'loss_cls' loss_weight: 1 }
layer { name: 'loss_bbox' type: 'SmoothL1Loss' bottom: 'bbox_pred' bottom: 'bbox_targets'
  bottom: 'bbox_inside_weights' bottom: 'bbox_outside_weights' top: 'loss_bbox'
  loss_weight: 1 smooth_l1_loss_param { sigma: 1.0 } }
"""

SOLVER = """
train_net: "%(net)s"
base_lr: 0.05
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0005
display: 0
snapshot: 0
random_seed: 5
"""


@pytest.fixture
def setup_files(tmp_path):
    module = "tc_proposal_target_%d" % os.getpid()
    (tmp_path / (module + ".py")).write_text(PROPOSAL_TARGET_SRC)
    net_path = tmp_path / "train.prototxt"
    net_path.write_text(textwrap.dedent(TRAIN_NET % {"module": module, "nc": NUM_CLASSES,
                                                     "nc4": 4 * NUM_CLASSES}))
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(SOLVER % {"net": str(net_path)})
    sys.path.insert(0, str(tmp_path))
    try:
        yield str(solver_path)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module, None)


def _synthetic_batch():
    rs = np.random.RandomState(0)
    img = 0.1 * rs.randn(1, 3, 32, 32).astype(np.float32)
    gt = np.array([[2, 3, 13, 14, 1], [16, 15, 29, 30, 2]], np.float32)
    img[0, 0, 3:15, 2:14] += 1.0        # class 1: a bright square in channel 0
    img[0, 2, 15:31, 16:30] += 1.0      # class 2: in channel 2
    rpn = np.array([[0, 3, 2, 14, 15], [0, 15, 16, 28, 29], [0, 0, 20, 8, 31],
                    [0, 20, 0, 31, 10], [0, 5, 5, 20, 20], [0, 1, 4, 12, 13]], np.float32)
    return img, rpn, gt


def test_faster_rcnn_style_net_trains(setup_files):
    caffe.set_mode_cpu()
    caffe.set_random_seed(5)
    solver = caffe.SGDSolver(setup_files)
    net = solver.net
    layer = net.layer_dict["roi-data"]
    assert layer is net.layers[list(net._layer_names).index("roi-data")]
    assert layer.phase_name == "TRAIN" and layer.num_classes == NUM_CLASSES
    assert dict(net.blob_loss_weights)["loss_cls"] == 1.0
    assert {"ROIPooling", "SmoothL1Loss"} <= set(caffe.layer_type_list())
    img, rpn, gt = _synthetic_batch()
    net.blobs["data"].data[...] = img
    net.blobs["rpn_rois"].data[...] = rpn
    net.blobs["gt_boxes"].data[...] = gt

    losses = []
    conv_grad_seen = False
    for _ in range(40):
        solver.step(1)
        losses.append(float(net.blobs["loss_cls"].data) + float(net.blobs["loss_bbox"].data))
        conv_grad_seen |= bool(np.abs(net.params["conv1"][0].diff).sum() > 0)
    # tops reshaped in forward are followed downstream: 6 proposals + 2 gt boxes
    assert net.blobs["rois"].data.shape == (8, 5)
    assert net.blobs["pool5"].data.shape == (8, 8, 3, 3)
    assert list(net.blobs["labels"].data[-2:]) == [1, 2]
    assert layer.forward_calls == 40
    assert conv_grad_seen, "no gradient reached conv1 through ROIPooling"
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses


def test_faster_rcnn_style_net_by_hand_sgd(setup_files):
    """The same net stepped by hand through net.params, as pycaffe users do."""
    caffe.set_mode_cpu()
    caffe.set_random_seed(5)
    net_file = os.path.join(os.path.dirname(setup_files), "train.prototxt")
    net = caffe.Net(net_file, caffe.TRAIN)
    img, rpn, gt = _synthetic_batch()
    net.blobs["data"].data[...] = img
    net.blobs["rpn_rois"].data[...] = rpn
    net.blobs["gt_boxes"].data[...] = gt
    losses = []
    for _ in range(40):
        out = net.forward()
        losses.append(float(out["loss_cls"]) + float(out["loss_bbox"]))
        net.clear_param_diffs()
        net.backward()
        for blob, lr in zip(net.learnable_params, net.params_lr):
            blob.data[...] -= 0.2 * lr * blob.diff
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
