"""BoxAnnotatorOHEM (caffe/layers/ohem.py) against a NumPy transliteration of
py-R-FCN's loop; inside a net; errors."""
import numpy as np
import pytest
import torch
from google.protobuf import text_format

import caffe
from caffe.layers import LayerError, modules
from caffe.proto import caffe_pb2


def reference(rois, loss, labels, weights, roi_per_img, ignore_label):
    """py-R-FCN's Forward: sort all rois by loss (descending), keep the first
    roi_per_img of each image."""
    n = rois.shape[0]
    num_imgs = int(rois[:, 0].max()) + 1
    out_labels = np.full(n, ignore_label, np.float32)
    out_w = np.zeros_like(weights)
    left = [roi_per_img] * num_imgs
    for i in sorted(range(n), key=lambda k: -loss[k]):
        b = int(rois[i, 0])
        if left[b] > 0:
            left[b] -= 1
            out_labels[i] = labels[i]
            out_w[i] = weights[i]
    return out_labels, out_w


def make(text, shapes):
    lp = caffe_pb2.LayerParameter()
    text_format.Merge('name: "ohem" type: "BoxAnnotatorOHEM" ' + text, lp)
    return modules["BoxAnnotatorOHEM"](lp, shapes, 0)


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference(seed):
    rng = np.random.RandomState(seed)
    n, b = 40, 8
    rois = np.zeros((n, 5), np.float32)
    rois[:, 0] = rng.randint(0, 3, n)
    rois[:, 1:] = rng.rand(n, 4) * 100
    loss = rng.permutation(n).astype(np.float32) * 0.37   # distinct losses
    labels = rng.randint(0, 5, n).astype(np.float32)
    weights = rng.rand(n, b).astype(np.float32)
    layer = make("box_annotator_ohem_param { roi_per_img: 5 ignore_label: -1 }",
                 [(n, 5), (n, 1), (n, 1), (n, b)])
    tl, tw = layer.run([torch.from_numpy(a) for a in (rois, loss.reshape(n, 1),
                                                     labels.reshape(n, 1), weights)], [])
    rl, rw = reference(rois, loss, labels, weights, 5, -1)
    np.testing.assert_array_equal(tl.numpy().reshape(-1), rl)
    assert tuple(tl.shape) == (n, 1, 1, 1) and tuple(tw.shape) == (n, b, 1, 1)
    np.testing.assert_array_equal(tw.numpy().reshape(n, b), rw)
    for img in range(3):
        assert ((rois[:, 0] == img) & (tw.numpy().reshape(n, b).sum(1) > 0)).sum() <= 5


def test_in_a_net(tmp_path):
    net_txt = """
layer { name: "in" type: "Input" top: "rois" top: "loss" top: "labels" top: "w"
  input_param { shape { dim: 6 dim: 5 } shape { dim: 6 dim: 1 } shape { dim: 6 dim: 1 }
                shape { dim: 6 dim: 4 } } }
layer { name: "ohem" type: "BoxAnnotatorOHEM" bottom: "rois" bottom: "loss" bottom: "labels"
  bottom: "w" top: "labels_ohem" top: "w_ohem" box_annotator_ohem_param { roi_per_img: 2 } }
"""
    p = tmp_path / "n.prototxt"
    p.write_text(net_txt)
    net = caffe.Net(str(p), caffe.TRAIN)
    net.blobs["rois"].data[:, 0] = [0, 0, 0, 1, 1, 1]
    net.blobs["loss"].data[:, 0] = [1, 3, 2, 0.5, 0.1, 0.9]
    net.blobs["labels"].data[:, 0] = [1, 2, 3, 4, 5, 6]
    net.blobs["w"].data[...] = 1
    net.forward()
    assert net.blobs["labels_ohem"].data.reshape(-1).tolist() == [-1, 2, 3, 4, -1, 6]
    assert net.blobs["w_ohem"].data.reshape(6, 4).sum(1).tolist() == [0, 4, 4, 4, 0, 4]


def test_errors():
    with pytest.raises(LayerError, match="roi_per_img"):
        make("box_annotator_ohem_param { roi_per_img: 0 }", [(4, 5), (4, 1), (4, 1), (4, 8)])
    with pytest.raises(LayerError, match="5 channels"):
        make("box_annotator_ohem_param { roi_per_img: 2 }", [(4, 4), (4, 1), (4, 1), (4, 8)])
    with pytest.raises(LayerError, match="bottom 2"):
        make("box_annotator_ohem_param { roi_per_img: 2 }", [(4, 5), (4, 1), (3, 1), (4, 8)])
