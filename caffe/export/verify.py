"""Run the written Caffe files with this package's ``caffe.Net`` and compare every
mapped blob with the source framework's value (one routine for all front ends,
built on :mod:`caffe.verification`)."""
import numpy as np

from .. import verification


def run_caffe(prototxt, caffemodel, feeds):
    """Forward the written net on ``feeds`` (blob -> array); returns the Net."""
    from .. import TEST
    from ..net import Net, plain_nets
    with plain_nets():              # every blob is compared: nothing fused away
        net = Net(prototxt, caffemodel, TEST) if caffemodel else Net(prototxt, TEST)
    for name, value in feeds.items():
        arr = np.asarray(value, dtype=np.float32)
        net.blobs[name].reshape(*arr.shape)
        net.blobs[name].data[...] = arr
    net.forward()
    return net


def compare(report, expected, feeds, rtol):
    """Fill ``report.rows`` / ``report.ok``: every blob in ``expected`` is compared,
    the verdict is taken on the outputs."""
    net = run_caffe(report.prototxt, report.caffemodel, feeds)
    got = {name: net.blobs[name].data for name in expected if name in net.blobs}
    report.rows = verification.compare_named(expected, got)
    report.rtol = rtol
    report.verified = True
    report.ok = verification.verdict(report.rows, rtol, names=report.outputs)
    return report
