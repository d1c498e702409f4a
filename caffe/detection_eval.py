"""The SSD fork's solver-side detection evaluation (``eval_type: "detection"``).

``Solver::TestDetection`` runs the test net ``test_iter`` times, gathers the
DetectionEvaluate rows of every output blob (``[-1, class, num_pos, -1, -1]``
and ``[image, label, score, tp, fp]``), and logs the mean AP per output as
``Test net output #i: NAME = mAP``.  ``compute_ap`` follows ``ComputeAP`` in
``bbox_util.cpp`` for the three ``ap_version`` values, quirks included.
"""
import logging

import numpy as np

logger = logging.getLogger("caffe")

AP_VERSIONS = ("11point", "MaxIntegral", "Integral")


def _cumsum(pairs):
    """Scores sorted descending (stable), cumulative sums of the flags."""
    order = sorted(range(len(pairs)), key=lambda k: -pairs[k][0])
    return np.cumsum([pairs[k][1] for k in order]).tolist()


def compute_ap(tp, num_pos, fp, ap_version):
    """Average precision (float32 arithmetic as the fork) from (score, flag) pairs."""
    if ap_version not in AP_VERSIONS:
        raise ValueError("Unknown ap_version: %r (use one of %s)"
                         % (ap_version, ", ".join(AP_VERSIONS)))
    f32 = np.float32
    eps = f32(1e-6)
    if len(tp) != len(fp):
        raise ValueError("tp must have same size as fp")
    if not tp or num_pos == 0:
        return 0.0
    tpc, fpc = _cumsum(tp), _cumsum(fp)
    num = len(tp)
    prec = [f32(f32(tpc[i]) / f32(tpc[i] + fpc[i])) for i in range(num)]
    rec = [f32(f32(tpc[i]) / f32(num_pos)) for i in range(num)]
    ap = f32(0)
    if ap_version == "11point":
        max_precs = [f32(0)] * 11
        start = num - 1
        for j in range(10, -1, -1):
            for i in range(start, -1, -1):
                if rec[i] < j / 10.0:
                    start = i
                    if j > 0:
                        max_precs[j - 1] = max_precs[j]
                    break
                if max_precs[j] < prec[i]:
                    max_precs[j] = prec[i]
        for j in range(10, -1, -1):
            ap = f32(ap + f32(max_precs[j] / f32(11)))
    elif ap_version == "MaxIntegral":
        cur_rec, cur_prec = rec[-1], prec[-1]
        for i in range(num - 2, -1, -1):
            cur_prec = max(prec[i], cur_prec)
            if abs(cur_rec - rec[i]) > eps:
                ap = f32(ap + f32(cur_prec * abs(cur_rec - rec[i])))
            cur_rec = rec[i]
        ap = f32(ap + f32(cur_rec * cur_prec))
    else:
        prev = f32(0)
        for i in range(num):
            if abs(rec[i] - prev) > eps:
                ap = f32(ap + f32(prec[i] * abs(rec[i] - prev)))
            prev = rec[i]
    return float(ap)


class DetectionTally:
    """Accumulates DetectionEvaluate rows for one output blob."""

    def __init__(self):
        self.true_pos = {}
        self.false_pos = {}
        self.num_pos = {}

    def add(self, rows):
        rows = np.asarray(rows, dtype=np.float32)
        if rows.size and rows.shape[-1] != 5:
            raise ValueError("detection evaluation needs output rows of width 5 "
                             "(DetectionEvaluate's top), got shape %s" % (rows.shape,))
        for r in rows.reshape(-1, 5):
            item, label = int(r[0]), int(r[1])
            if item == -1:
                self.num_pos[label] = self.num_pos.get(label, 0) + int(r[2])
                continue
            tp, fp = int(r[3]), int(r[4])
            if tp == 0 and fp == 0:   # matched a difficult gt that is not evaluated
                continue
            self.true_pos.setdefault(label, []).append((float(r[2]), tp))
            self.false_pos.setdefault(label, []).append((float(r[2]), fp))

    def average_precisions(self, ap_version):
        """{label: AP} for the labels with positives and detections, and the mAP
        (divided by the number of labels with a num_pos row, as the fork)."""
        aps = {}
        for label in sorted(self.num_pos):
            if label not in self.true_pos:
                logger.warning("Missing true_pos for label: %d", label)
                continue
            aps[label] = compute_ap(self.true_pos[label], self.num_pos[label],
                                    self.false_pos[label], ap_version)
        m = float(np.float32(sum(np.float32(a) for a in aps.values()))) / len(self.num_pos) \
            if self.num_pos else float("nan")
        return aps, m


def test_detection(solver, test_net_id):
    """Solver.test for eval_type "detection" (the fork's TestDetection)."""
    p = solver._param
    logger.info("Iteration %d, Testing net (#%d)", solver._iter, test_net_id)
    net = solver._test_nets[test_net_id]
    net.share_with(solver._net)
    tallies = [DetectionTally() for _ in net._outputs]
    loss = 0.0
    n_iter = p.test_iter[test_net_id]
    for _ in range(n_iter):
        iter_loss = net.forward_prefilled()
        if p.test_compute_loss:
            loss += iter_loss
        for tally, bid in zip(tallies, net._outputs):
            blob = net._blobs[bid]
            tally.add(blob.data_buffer.host_readonly().reshape(-1).numpy()
                      .reshape(-1, blob.shape[-1] if blob.shape else 1))
    if p.test_compute_loss:
        logger.info("Test loss: %s", loss / max(1, n_iter))
    names = net.outputs
    results = []
    for i, tally in enumerate(tallies):
        if not tally.true_pos:
            continue
        aps, m = tally.average_precisions(p.ap_version)
        if p.show_per_class_result:
            for label, ap in aps.items():
                logger.info("class%d: %s", label, "%g" % ap)
        logger.info("    Test net output #%d: %s = %s", i, names[i], "%g" % m)
        results.append(m)
    return results
