"""The INFO lines Caffe's ``Net::Init`` writes while it builds a net.

pycaffe users see them on stderr for every ``caffe.Net(...)`` (and silence them
with ``GLOG_minloglevel=1`` or more); log parsers look for ``Top shape:`` and
``Memory required for data:``.  Written after the build from the net's own
bookkeeping, so building stays free of logging code and costs nothing when
INFO is off.
"""
from google.protobuf import text_format

from ._common import logger


def _shape_string(shape):
    count = 1
    for d in shape:
        count *= int(d)
    return "%s (%d)" % (" ".join(str(int(d)) for d in shape), count), count


def log_net_init(net, filtered_param):
    """Log Caffe's construction lines for a built ``net`` (``filtered_param``: the
    NetParameter after NetState filtering, before Split insertion, as Caffe logs it)."""
    if not logger.isEnabledFor(20):          # logging.INFO
        return
    info = logger.info
    info("Initializing net from parameters: \n%s",
         text_format.MessageToString(filtered_param).rstrip("\n"))
    names = net._blob_names
    memory = 0
    for li, lname in enumerate(net._layer_names):
        info("Creating Layer %s", lname)
        for b in net._bottom_id_lists[li]:
            info("%s <- %s", lname, names[b])
        tops = net._top_id_lists[li]
        for t in tops:
            info("%s -> %s", lname, names[t])
        info("Setting up %s", lname)
        for ti, t in enumerate(tops):
            text, count = _shape_string(net._blobs[t].shape)
            info("Top shape: %s", text)
            memory += count
            if ti in net._loss_tops_of[li] and net._blob_loss_weights[t]:
                info("    with loss weight %g", net._blob_loss_weights[t])
        info("Memory required for data: %d", memory * 4)
    for li in reversed(range(len(net._layer_names))):
        info("%s %s backward computation.", net._layer_names[li],
             "needs" if net._layer_need_backward[li] else "does not need")
    for b in net._outputs:
        info("This network produces output %s", names[b])
    info("Network initialization done.")
