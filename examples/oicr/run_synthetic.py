"""A small OICR-style training run on synthetic data, on the CPU.

    python examples/oicr/run_synthetic.py [--iters 30] [--gpu]

Builds a train prototxt shaped like OICR's models/VGG_M/train.prototxt (a
shrunken backbone, ROIPooling, the two-stream MIDN with Softmax over RoIs and
over classes, Eltwise PROD, GlobalSumPooling, MulticlassCrossEntropyLoss, then
two OICR refinement stages -- OICRLayer Python layers feeding
WeightedSoftmaxWithLoss with ``propagate_down: 1 0 0``), writes it with a
solver next to a temporary folder, and takes SGD steps with caffe.SGDSolver on
random images (a coloured square per present class), random RoIs and
image-level labels, printing the losses.  ``main()`` returns the loss history.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if os.path.isdir(os.path.join(HERE, "..", "..", "caffe")):
    sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "..")))

import oicr_layers  # noqa: E402,F401  (registers the OICR layers)

import caffe  # noqa: E402

NUM_CLASSES = 3          # object classes; the refinement heads add background
IMAGE = 48
NUM_ROIS = 24
LOSSES = ("loss_midn", "loss_oicr", "loss_oicr1")


def _ip(name, bottom, n, std, lr=(1, 2)):
    return """
layer { name: '%s' type: 'InnerProduct' bottom: '%s' top: '%s'
  param { lr_mult: %g decay_mult: 1 } param { lr_mult: %g decay_mult: 0 }
  inner_product_param { num_output: %d weight_filler { type: 'gaussian' std: %g }
                        bias_filler { type: 'constant' value: 0 } } }""" % (
        name, bottom, name, lr[0], lr[1], n, std)


def _refine(k, prev_prob):
    s = "" if k == 0 else str(k)
    return """
layer { name: 'oicr_layer%(s)s' type: 'Python'
  bottom: 'rois' bottom: '%(prev)s' bottom: 'labels'
  top: 'labels_ic%(s)s' top: 'cls_loss_weights%(s)s'
  python_param { module: 'oicr_layer.layer' layer: 'OICRLayer'
                 param_str: "'num_classes': %(nc1)d" } }
%(ip)s
layer { name: 'loss_oicr%(s)s' type: 'WeightedSoftmaxWithLoss'
  bottom: 'ic_score%(s)s' bottom: 'labels_ic%(s)s' bottom: 'cls_loss_weights%(s)s'
  propagate_down: 1 propagate_down: 0 propagate_down: 0
  top: 'loss_oicr%(s)s' loss_weight: 1 }
layer { name: 'ic_prob%(s)s' type: 'Softmax' bottom: 'ic_score%(s)s' top: 'ic_prob%(s)s' }
""" % {"s": s, "prev": prev_prob, "nc1": NUM_CLASSES + 1,
       "ip": _ip("ic_score" + s, "fc7", NUM_CLASSES + 1, 0.01, (10, 20))}


def train_prototxt():
    """OICR's VGG_M train net, shrunk; the data layer is replaced by Input blobs."""
    head = """name: 'OICR_synthetic'
layer { name: 'data' type: 'Input' top: 'data' top: 'rois' top: 'labels'
  input_param { shape { dim: 1 dim: 3 dim: %(im)d dim: %(im)d }
                shape { dim: %(r)d dim: 5 } shape { dim: 1 dim: %(nc)d } } }
layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1'
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 16 kernel_size: 3 pad: 1
    weight_filler { type: 'gaussian' std: 0.1 } bias_filler { type: 'constant' } } }
layer { name: 'relu1' type: 'ReLU' bottom: 'conv1' top: 'conv1' }
layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1'
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: 'conv2' type: 'Convolution' bottom: 'pool1' top: 'conv2'
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 16 kernel_size: 3 pad: 2 dilation: 2
    weight_filler { type: 'gaussian' std: 0.1 } bias_filler { type: 'constant' } } }
layer { name: 'relu2' type: 'ReLU' bottom: 'conv2' top: 'conv2' }
layer { name: 'roi_pool' type: 'ROIPooling' bottom: 'conv2' bottom: 'rois' top: 'pool5'
  roi_pooling_param { pooled_w: 4 pooled_h: 4 spatial_scale: 0.5 } }
%(fc6)s
layer { name: 'relu6' type: 'ReLU' bottom: 'fc6' top: 'fc6' }
layer { name: 'drop6' type: 'Dropout' bottom: 'fc6' top: 'fc6'
  dropout_param { dropout_ratio: 0.2 } }
%(fc7)s
layer { name: 'relu7' type: 'ReLU' bottom: 'fc7' top: 'fc7' }
%(midn0)s
layer { name: 'midn_prob0' type: 'Softmax' bottom: 'midn_score0' top: 'midn_prob0'
  softmax_param { axis: 0 } }
%(midn1)s
layer { name: 'midn_prob1' type: 'Softmax' bottom: 'midn_score1' top: 'midn_prob1' }
layer { name: 'midn_prob' type: 'Eltwise' bottom: 'midn_prob0' bottom: 'midn_prob1'
  top: 'midn_prob' eltwise_param { operation: PROD } }
layer { name: 'global_pool' type: 'GlobalSumPooling' bottom: 'midn_prob' top: 'global_pool' }
layer { name: 'loss_midn' type: 'MulticlassCrossEntropyLoss'
  bottom: 'global_pool' bottom: 'labels' top: 'loss_midn' loss_weight: 1 }
""" % {"im": IMAGE, "r": NUM_ROIS, "nc": NUM_CLASSES,
       "fc6": _ip("fc6", "pool5", 64, 0.05), "fc7": _ip("fc7", "fc6", 64, 0.05),
       "midn0": _ip("midn_score0", "fc7", NUM_CLASSES, 0.01),
       "midn1": _ip("midn_score1", "fc7", NUM_CLASSES, 0.01)}
    return head + _refine(0, "midn_prob") + _refine(1, "ic_prob")


SOLVER = """train_net: "%s"
base_lr: 0.03
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0005
display: 0
snapshot: 0
random_seed: 3
"""


def synthetic_image(rs):
    """An image with a coloured square for each present class, its RoIs and labels."""
    img = 0.2 * rs.randn(1, 3, IMAGE, IMAGE).astype(np.float32)
    labels = np.zeros((1, NUM_CLASSES), np.float32)
    present = rs.choice(NUM_CLASSES, size=rs.randint(1, 3), replace=False)
    boxes = []
    for c in present:
        labels[0, c] = 1
        size = rs.randint(12, 20)
        x1, y1 = rs.randint(0, IMAGE - size, size=2)
        img[0, c, y1:y1 + size, x1:x1 + size] += 1.5
        boxes.append((x1, y1, x1 + size - 1, y1 + size - 1))
    rois = []
    for i in range(NUM_ROIS):
        if i < 3 * len(boxes):           # jittered boxes around the objects
            x1, y1, x2, y2 = boxes[i % len(boxes)]
            j = rs.randint(-3, 4, size=4)
            box = (x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3])
        else:                            # random boxes elsewhere
            w, h = rs.randint(6, 24, size=2)
            x, y = rs.randint(0, IMAGE - w), rs.randint(0, IMAGE - h)
            box = (x, y, x + w - 1, y + h - 1)
        box = np.clip(box, 0, IMAGE - 1)
        rois.append((0,) + tuple(box))
    return img, np.array(rois, np.float32), labels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--images", type=int, default=4,
                        help="number of synthetic images cycled through")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.gpu:
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    caffe.set_random_seed(3)
    rs = np.random.RandomState(0)
    images = [synthetic_image(rs) for _ in range(args.images)]
    history = []
    with tempfile.TemporaryDirectory() as tmp:
        net_file = os.path.join(tmp, "train.prototxt")
        with open(net_file, "w") as f:
            f.write(train_prototxt())
        solver_file = os.path.join(tmp, "solver.prototxt")
        with open(solver_file, "w") as f:
            f.write(SOLVER % net_file)
        solver = caffe.SGDSolver(solver_file)
        net = solver.net
        for it in range(args.iters):
            img, rois, labels = images[it % len(images)]
            net.blobs["data"].reshape(*img.shape)
            net.blobs["rois"].reshape(*rois.shape)
            net.blobs["data"].data[...] = img
            net.blobs["rois"].data[...] = rois
            net.blobs["labels"].data[...] = labels
            solver.step(1)
            losses = {k: float(net.blobs[k].data) for k in LOSSES}
            history.append(losses)
            if not args.quiet:
                print("iter %3d  " % (it + 1) + "  ".join("%s %.4f" % kv
                                                          for kv in losses.items()))
    return history


if __name__ == "__main__":
    main()
