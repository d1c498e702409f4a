"""MultiBoxLoss beyond the golden cases (those run in test_layers_detection.py):
the batched matcher against a loop transliteration of the fork's MatchBBox,
options the golden set leaves out, error messages."""
import numpy as np
import pytest
import torch
from google.protobuf import text_format

from caffe.layers import LayerError, modules
from caffe.layers import bbox_util as bu
from caffe.proto import caffe_pb2


def loop_match(preds, gts, match_type, thr):
    """The fork's MatchBBox as plain loops (bipartite, then per prediction)."""
    def iou(a, b):
        if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
            return 0.0
        iw = min(a[2], b[2]) - max(a[0], b[0])
        ih = min(a[3], b[3]) - max(a[1], b[1])
        if iw <= 0 or ih <= 0:
            return 0.0
        inter = np.float32(iw) * np.float32(ih)
        sa = np.float32(a[2] - a[0]) * np.float32(a[3] - a[1])
        sb = np.float32(b[2] - b[0]) * np.float32(b[3] - b[1])
        return float(np.float32(inter / (sa + sb - inter)))
    P, G = len(preds), len(gts)
    idx = [-1] * P
    ov = {}
    for i in range(P):
        for j in range(G):
            o = iou(preds[i], gts[j])
            if o > 1e-6:
                ov.setdefault(i, {})[j] = o
    pool = list(range(G))
    while pool:
        best, bi, bj = -1, -1, -1
        for i in sorted(ov):
            if idx[i] != -1:
                continue
            for j in pool:
                if j in ov[i] and ov[i][j] > best:
                    best, bi, bj = ov[i][j], i, j
        if bi == -1:
            break
        idx[bi] = bj
        pool.remove(bj)
    if match_type == 1:
        for i in sorted(ov):
            if idx[i] != -1:
                continue
            best, bj = -1, -1
            for j in range(G):
                if j in ov[i] and ov[i][j] >= thr and ov[i][j] > best:
                    best, bj = ov[i][j], j
            if bj != -1:
                idx[i] = bj
    return idx


def random_boxes(rng, n, grid=False):
    if grid:   # coarse coordinates: many equal overlaps (ties)
        a = rng.randint(0, 5, size=(n, 2)) / 5.0
        s = rng.randint(1, 4, size=(n, 2)) / 5.0
    else:
        a = rng.rand(n, 2) * 0.7
        s = rng.rand(n, 2) * 0.5 + 0.05
    return np.concatenate([a, a + s], 1).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("match_type", [0, 1])
def test_batched_match_equals_loop(seed, match_type):
    rng = np.random.RandomState(seed)
    grid = seed % 2 == 1
    priors = random_boxes(rng, 40, grid)
    gts = [random_boxes(rng, k, grid) for k in (3, 0, 5)]
    G = max(len(g) for g in gts)
    pad = np.zeros((3, G, 4), np.float32)
    mask = np.zeros((3, G), bool)
    for i, g in enumerate(gts):
        pad[i, :len(g)] = g
        mask[i, :len(g)] = True
    idx, _ = bu.match(torch.from_numpy(priors), torch.from_numpy(pad), torch.from_numpy(mask),
                      match_type, 0.3)
    for i, g in enumerate(gts):
        assert idx[i].tolist() == loop_match(priors, g, match_type, np.float32(0.3))


def make(text, shapes):
    lp = caffe_pb2.LayerParameter()
    text_format.Merge('name: "L" type: "MultiBoxLoss" ' + text, lp)
    return modules["MultiBoxLoss"](lp, shapes, 0)


def inputs(rng, n=2, p=20, c=3, lc=1, rows=None):
    pri = random_boxes(rng, p)
    prior = np.concatenate([pri.reshape(-1), np.full(p * 4, 0.1, np.float32)]).reshape(1, 2, -1)
    loc = rng.randn(n, p * lc * 4).astype(np.float32) * 0.1
    conf = rng.randn(n, p * c).astype(np.float32)
    if rows is None:
        rows = [[0, 1, 0] + list(pri[3]) + [0], [1, 2, 0] + list(pri[7]) + [0]]
    label = np.array(rows, np.float32).reshape(1, 1, -1, 8)
    return [torch.from_numpy(a) for a in (loc, conf, prior, label)]


def test_logistic_without_mining_keeps_fork_target_layout():
    rng = np.random.RandomState(1)
    b = inputs(rng)
    layer = make("multibox_loss_param { num_classes: 3 conf_loss_type: LOGISTIC mining_type: NONE "
                 "code_type: CENTER_SIZE } loss_param { normalization: NONE }",
                 [tuple(x.shape) for x in b])
    out = float(layer.run(b, [])[0])
    # fork's flat target: image i's entries at i*P + j*C + label
    conf = b[1].double().reshape(-1)
    P, C = 20, 3
    tgt = torch.zeros_like(conf)
    tgt[0 * P + 3 * C + 1] = 1
    tgt[1 * P + 7 * C + 2] = 1
    x = conf
    expect = (torch.clamp(x, min=0) - x * tgt + torch.log1p(torch.exp(-x.abs()))).sum()
    enc = bu.encode(b[2][0, 0].view(-1, 4)[[3, 7]], b[2][0, 1].view(-1, 4)[[3, 7]],
                    b[2][0, 0].view(-1, 4)[[3, 7]], bu.CENTER_SIZE, False)
    loc = b[0].view(2, 20, 4)
    d = torch.stack([loc[0, 3], loc[1, 7]]) - enc
    sl1 = torch.where(d.abs() < 1, 0.5 * d * d, d.abs() - 0.5).sum()
    assert out == pytest.approx(float(expect + sl1), rel=1e-5)


def test_nms_mining_and_decoded_matching_run_with_gradients():
    rng = np.random.RandomState(2)
    b = inputs(rng)
    b[0].requires_grad_(True)
    b[1].requires_grad_(True)
    layer = make("multibox_loss_param { num_classes: 3 mining_type: HARD_EXAMPLE sample_size: 5 "
                 "nms_param { nms_threshold: 0.5 top_k: 10 } use_prior_for_matching: false "
                 "overlap_threshold: 0.3 code_type: CENTER_SIZE }", [tuple(x.shape) for x in b])
    loss = layer.run(b, [])[0]
    loss.backward()
    assert torch.isfinite(loss)
    # at most sample_size conf rows per image get gradient
    rows = (b[1].grad.view(2, 20, 3).abs().sum(-1) > 0).sum(1)
    assert (rows <= 5).all() and rows.sum() > 0


def test_propagate_down_false_drops_that_sub_loss():
    rng = np.random.RandomState(3)
    b = inputs(rng)
    shapes = [tuple(x.shape) for x in b]
    full = float(make("multibox_loss_param { num_classes: 3 }", shapes).run(b, [])[0])
    conf_only = float(make("propagate_down: false propagate_down: true propagate_down: false "
                           "propagate_down: false multibox_loss_param { num_classes: 3 }",
                           shapes).run(b, [])[0])
    assert conf_only < full


@pytest.mark.parametrize("text,msg", [
    ("multibox_loss_param { }", "num_classes"),
    ("multibox_loss_param { num_classes: 3 share_location: false }", "share_location"),
    ("multibox_loss_param { num_classes: 3 background_label_id: 5 }", "background_label_id"),
])
def test_config_errors(text, msg):
    rng = np.random.RandomState(0)
    b = inputs(rng)
    with pytest.raises(LayerError, match=msg):
        make(text, [tuple(x.shape) for x in b])


def test_shape_and_label_errors():
    rng = np.random.RandomState(0)
    b = inputs(rng)
    shapes = [tuple(x.shape) for x in b]
    with pytest.raises(LayerError, match="confidence predictions"):
        make("multibox_loss_param { num_classes: 4 }", shapes)
    bad = inputs(rng, rows=[[0, 0, 0, 0.1, 0.1, 0.5, 0.5, 0]])
    layer = make("multibox_loss_param { num_classes: 3 }", shapes)
    with pytest.raises(LayerError, match="background label"):
        layer.run(bad, [])
