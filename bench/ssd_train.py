"""SSD training step: where the time goes, as ratios to the conv body measured
in the same run.

    python bench/ssd_train.py [--batch 8] [--size 300] [--width 0.25] [--steps 5]
                              [--images 32] [--device cpu|gpu]

Builds a temporary AnnotatedDatum LMDB of synthetic JPEGs with random boxes
and an SSD300-shaped net (a VGG-reduced body whose channel counts are scaled
by ``--width``; six source maps 38/19/10/5/3/1 with ssd_pascal.py's priors:
8732 priors, 21 classes), then times

* ``body``: forward + backward of the conv body and mbox heads alone (Input
  data, a plain sum as loss) -- the baseline;
* ``step``: one ``solver.step(1)`` of the full train net (AnnotatedData with
  ssd_pascal.py's samplers/distort/expand, MultiBoxLoss, SGD update);
* ``MultiBoxLoss``: the loss layer's forward + backward on the net's real
  bottoms (matching 8732 priors x batch, mining, both sub-losses);
* ``AnnotatedData``: one batch built by the layer's loader in the calling
  thread (in training it is prefetched in a background thread).

and prints milliseconds and each ratio to ``body``.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import torch  # noqa: E402

import caffe  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from caffe.tools._db import open_db  # noqa: E402

NUM_CLASSES = 21


def build_db(path, n, seed=0):
    rng = np.random.RandomState(seed)
    db = open_db(path, "lmdb", "w")
    txn = db.transaction()
    for i in range(n):
        h, w = int(rng.randint(300, 500)), int(rng.randint(300, 500))
        img = rng.randint(0, 256, size=(h // 8, w // 8, 3)).astype(np.uint8)
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        ad = caffe_pb2.AnnotatedDatum()
        ad.type = caffe_pb2.AnnotatedDatum.BBOX
        ad.datum.data = cv2.imencode(".jpg", img)[1].tobytes()
        ad.datum.encoded = True
        ad.datum.channels, ad.datum.height, ad.datum.width = 3, h, w
        for _ in range(int(rng.randint(1, 6))):
            g = ad.annotation_group.add()
            g.group_label = int(rng.randint(1, NUM_CLASSES))
            a = g.annotation.add()
            x1, y1 = rng.rand(2) * 0.7
            bw, bh = 0.1 + rng.rand(2) * 0.3
            a.bbox.xmin, a.bbox.ymin = float(x1), float(y1)
            a.bbox.xmax, a.bbox.ymax = float(min(1, x1 + bw)), float(min(1, y1 + bh))
        txn.put("%08d" % i, ad.SerializeToString())
    txn.commit()
    db.close()


def conv(name, bottom, c, k=3, pad=1, stride=1, dilation=1, relu=True):
    s = ('layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s" '
         'convolution_param { num_output: %d kernel_size: %d pad: %d stride: %d dilation: %d '
         'weight_filler { type: "xavier" } } }\n' % (name, bottom, name, c, k, pad, stride,
                                                      dilation))
    if relu:
        s += 'layer { name: "%s_relu" type: "ReLU" bottom: "%s" top: "%s" }\n' % (name, name, name)
    return s


def pool(name, bottom, k=2, s=2, pad=0):
    return ('layer { name: "%s" type: "Pooling" bottom: "%s" top: "%s" pooling_param { pool: MAX '
            'kernel_size: %d stride: %d pad: %d } }\n' % (name, bottom, name, k, s, pad))


def body(width, size):
    """VGG-reduced SSD300 body; returns (prototxt, [(source, min, max, ars, step)])."""
    c = lambda n: max(4, int(n * width))  # noqa: E731
    t = ""
    b = "data"
    for stage, (n, reps) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3)], 1):
        for r in range(reps):
            t += conv("conv%d_%d" % (stage, r + 1), b, c(n))
            b = "conv%d_%d" % (stage, r + 1)
        if stage < 4:
            t += pool("pool%d" % stage, b, pad=0)
            b = "pool%d" % stage
    # pool3 with ceil mode gives 38 at 300 (Caffe rounds up)
    t += pool("pool4", "conv4_3", pad=0)
    b = "pool4"
    for r in range(3):
        t += conv("conv5_%d" % (r + 1), b, c(512))
        b = "conv5_%d" % (r + 1)
    t += pool("pool5", b, k=3, s=1, pad=1)
    t += conv("fc6", "pool5", c(1024), pad=6, dilation=6)
    t += conv("fc7", "fc6", c(1024), k=1, pad=0)
    t += conv("conv6_1", "fc7", c(256), k=1, pad=0) + conv("conv6_2", "conv6_1", c(512), stride=2)
    t += conv("conv7_1", "conv6_2", c(128), k=1, pad=0) + conv("conv7_2", "conv7_1", c(256),
                                                                  stride=2)
    t += conv("conv8_1", "conv7_2", c(128), k=1, pad=0) + conv("conv8_2", "conv8_1", c(256),
                                                                  pad=0)
    t += conv("conv9_1", "conv8_2", c(128), k=1, pad=0) + conv("conv9_2", "conv9_1", c(256),
                                                                  pad=0)
    sources = [("conv4_3", 30, 60, [2], 8), ("fc7", 60, 111, [2, 3], 16),
               ("conv6_2", 111, 162, [2, 3], 32), ("conv7_2", 162, 213, [2, 3], 64),
               ("conv8_2", 213, 264, [2], 100), ("conv9_2", 264, 315, [2], 300)]
    return t, sources


def heads(sources):
    t = ""
    locs, confs, priors = [], [], []
    for src, mn, mx, ars, step in sources:
        np_ = 2 + 2 * len(ars)
        for kind, n in (("loc", np_ * 4), ("conf", np_ * NUM_CLASSES)):
            name = "%s_mbox_%s" % (src, kind)
            t += conv(name, src, n, relu=False)
            t += ('layer { name: "%s_perm" type: "Permute" bottom: "%s" top: "%s_perm" '
                  'permute_param { order: 0 order: 2 order: 3 order: 1 } }\n' % (name, name, name))
            t += ('layer { name: "%s_flat" type: "Flatten" bottom: "%s_perm" top: "%s_flat" '
                  'flatten_param { axis: 1 } }\n' % (name, name, name))
            (locs if kind == "loc" else confs).append(name + "_flat")
        ar = "".join(" aspect_ratio: %d" % a for a in ars)
        t += ('layer { name: "%s_mbox_priorbox" type: "PriorBox" bottom: "%s" bottom: "data" '
              'top: "%s_mbox_priorbox" prior_box_param { min_size: %d max_size: %d%s flip: true '
              'clip: false variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 step: %d '
              'offset: 0.5 } }\n' % (src, src, src, mn, mx, ar, step))
        priors.append(src + "_mbox_priorbox")
    for top, bots, axis in (("mbox_loc", locs, 1), ("mbox_conf", confs, 1),
                            ("mbox_priorbox", priors, 2)):
        t += ('layer { name: "%s" type: "Concat" %s top: "%s" concat_param { axis: %d } }\n'
              % (top, " ".join('bottom: "%s"' % b for b in bots), top, axis))
    return t


SAMPLERS = "".join(
    'batch_sampler { sampler { min_scale: %s max_scale: 1.0 min_aspect_ratio: %s '
    'max_aspect_ratio: %s } %s max_sample: 1 max_trials: %d }\n' % x for x in
    [("1.0", "1.0", "1.0", "", 1)] + [("0.3", "0.5", "2.0",
                                       "sample_constraint { min_jaccard_overlap: %s }" % j, 50)
                                      for j in ("0.1", "0.3", "0.5", "0.7", "0.9")] +
    [("0.3", "0.5", "2.0", "sample_constraint { max_jaccard_overlap: 1.0 }", 50)])

LOSS = ('layer { name: "mbox_loss" type: "MultiBoxLoss" bottom: "mbox_loc" bottom: "mbox_conf" '
        'bottom: "mbox_priorbox" bottom: "label" top: "mbox_loss" '
        'propagate_down: true propagate_down: true propagate_down: false propagate_down: false '
        'loss_param { normalization: VALID } multibox_loss_param { loc_loss_type: SMOOTH_L1 '
        'conf_loss_type: SOFTMAX loc_weight: 1.0 num_classes: %d share_location: true '
        'match_type: PER_PREDICTION overlap_threshold: 0.5 use_prior_for_matching: true '
        'background_label_id: 0 use_difficult_gt: true neg_pos_ratio: 3.0 neg_overlap: 0.5 '
        'code_type: CENTER_SIZE ignore_cross_boundary_bbox: false mining_type: MAX_NEGATIVE } }\n'
        % NUM_CLASSES)


def timed(fn, reps, sync):
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=300)
    ap.add_argument("--width", type=float, default=0.25,
                    help="channel multiplier of the VGG-reduced body (1 = SSD300)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    args = ap.parse_args()
    if args.device == "gpu":
        caffe.set_mode_gpu()
        sync = torch.cuda.synchronize
    else:
        caffe.set_mode_cpu()
        sync = lambda: None  # noqa: E731
    tmp = tempfile.mkdtemp(prefix="ssd_bench_")
    try:
        db = os.path.join(tmp, "lmdb")
        build_db(db, args.images)
        body_txt, sources = body(args.width, args.size)
        head_txt = heads(sources)
        data = ('layer { name: "data" type: "AnnotatedData" top: "data" top: "label" '
                'transform_param { mirror: true mean_value: 104 mean_value: 117 mean_value: 123 '
                'resize_param { prob: 1 resize_mode: WARP height: %d width: %d '
                'interp_mode: LINEAR interp_mode: AREA interp_mode: NEAREST interp_mode: CUBIC '
                'interp_mode: LANCZOS4 } emit_constraint { emit_type: CENTER } '
                'distort_param { brightness_prob: 0.5 brightness_delta: 32 contrast_prob: 0.5 '
                'contrast_lower: 0.5 contrast_upper: 1.5 hue_prob: 0.5 hue_delta: 18 '
                'saturation_prob: 0.5 saturation_lower: 0.5 saturation_upper: 1.5 '
                'random_order_prob: 0.0 } expand_param { prob: 0.5 max_expand_ratio: 4.0 } } '
                'data_param { source: "%s" batch_size: %d backend: LMDB } '
                'annotated_data_param { %s } }\n' % (args.size, args.size, db, args.batch,
                                                    SAMPLERS))
        train = os.path.join(tmp, "train.prototxt")
        open(train, "w").write('name: "ssd_bench"\n' + data + body_txt + head_txt + LOSS)
        base = os.path.join(tmp, "body.prototxt")
        open(base, "w").write(
            'name: "ssd_body"\nlayer { name: "data" type: "Input" top: "data" input_param { '
            'shape { dim: %d dim: 3 dim: %d dim: %d } } }\n' % (args.batch, args.size, args.size)
            + body_txt + head_txt +
            'layer { name: "s1" type: "Reduction" bottom: "mbox_loc" top: "s1" loss_weight: 1 }\n'
            'layer { name: "s2" type: "Reduction" bottom: "mbox_conf" top: "s2" loss_weight: 1 }\n'
            'layer { name: "sink" type: "Silence" bottom: "mbox_priorbox" }\n')
        solver_path = os.path.join(tmp, "solver.prototxt")
        open(solver_path, "w").write('net: "%s"\nbase_lr: 0.0001\nmomentum: 0.9\n'
                                     'lr_policy: "fixed"\ndisplay: 0\nmax_iter: 1000000\n'
                                     'snapshot_after_train: false\n' % train)

        bnet = caffe.Net(base, caffe.TRAIN)
        bnet.blobs["data"].data[...] = np.random.RandomState(0).randn(
            args.batch, 3, args.size, args.size)

        def body_step():
            bnet.forward()
            bnet.backward()
        t_body = timed(body_step, args.steps, sync)

        solver = caffe.get_solver(solver_path)
        net = solver.net
        t_step = timed(lambda: solver.step(1), args.steps, sync)

        layer = net.layer_dict["mbox_loss"]
        bottoms = [net.blobs[b].data for b in ("mbox_loc", "mbox_conf", "mbox_priorbox", "label")]
        dev = torch.device("cuda") if args.device == "gpu" else torch.device("cpu")

        def mbox():
            ts = [torch.from_numpy(np.array(b)).to(dev) for b in bottoms]
            ts[0].requires_grad_(True)
            ts[1].requires_grad_(True)
            loss = layer.run(ts, [])[0]
            loss.backward()
        t_mbox = timed(mbox, args.steps, sync)

        loader = net.layer_dict["data"]._prefetcher_loader() \
            if hasattr(net.layer_dict["data"], "_prefetcher_loader") else None
        if loader is None:
            from caffe.layers.annotated_data import _AnnoLoader, _ItemTransformer
            from caffe.layers.data import _SharedDB
            dl = net.layer_dict["data"]
            tf = _ItemTransformer(dl.layer_param.transform_param, 0,
                                  list(dl.layer_param.annotated_data_param.batch_sampler),
                                  dl.where(), np.random.RandomState(0))
            loader = _AnnoLoader(dl, _SharedDB.open(db, "lmdb"), tf, 0, True, 0)
        t_data = timed(loader.load_batch, args.steps, sync)
        loader.close()

        print("SSD%d train step, batch %d, width x%g, %d priors, device %s"
              % (args.size, args.batch, args.width, net.blobs["mbox_priorbox"].data.shape[2] // 4,
                 args.device))
        print("%-16s %10s %10s" % ("part", "ms", "x body"))
        for name, t in (("body fwd+bwd", t_body), ("train step", t_step),
                        ("MultiBoxLoss", t_mbox), ("AnnotatedData", t_data)):
            print("%-16s %10.1f %10.2f" % (name, t * 1e3, t / t_body))
        print("MultiBoxLoss + AnnotatedData share of a step: %.1f%% (data is prefetched in "
              "training)" % (100 * (t_mbox + t_data) / t_step))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
