"""The Caffe graph a module is built from, worked out on the NetParameter.

The module reuses :class:`caffe.Net` for everything layer-related, but two
decisions must be made before a Net is built: which blobs are the outputs
(``outputs=[...]`` cuts the graph to what they need), and whether a layer that
cannot live in a module (a data layer) is still needed.  Doing this on the
filtered, split-inserted NetParameter means a data layer that is cut away is
never constructed (so a missing LMDB cannot fail the load).
"""
from .. import _common, protoio
from ..net import filter_net, insert_splits


class ModuleBuildError(ValueError):
    """The net cannot become a module as asked; the message says what to change."""


# Layer types that read or write records: they are the data pipeline, not the model.
DATA_LAYER_TYPES = frozenset([
    "Data", "ImageData", "HDF5Data", "WindowData", "MemoryData", "DummyData",
    "HDF5Output", "AnnotatedData", "VideoData",
])


def prepared_param(network, phase=_common.TEST, level=0, stages=None):
    """The NetParameter as ``caffe.Net`` sees it: state set, rules applied, splits inserted."""
    param = protoio.read_net_param(network)
    if phase not in (_common.TRAIN, _common.TEST):
        raise ValueError("phase must be caffe.TRAIN or caffe.TEST, got %r" % (phase,))
    param.state.phase = int(phase)
    if stages:
        del param.state.stage[:]
        param.state.stage.extend(list(stages))
    param.state.level = int(level or 0)
    source = str(network) if not hasattr(network, "DESCRIPTOR") else "<NetParameter>"
    return insert_splits(filter_net(param, source))


def default_outputs(param):
    """Caffe's net outputs: tops no later layer consumes, sorted by name."""
    available = set()
    for layer in param.layer:
        for b in layer.bottom:
            available.discard(b)
        available.update(layer.top)
    return sorted(available)


def produced_blobs(param):
    names = []
    for layer in param.layer:
        for t in layer.top:
            if t not in names:
                names.append(t)
    return names


def cut(param, outputs, source):
    """Copy of ``param`` keeping only the layers the ``outputs`` blobs depend on."""
    known = set(produced_blobs(param))
    for name in outputs:
        if name not in known:
            raise ModuleBuildError("%s: outputs=[...] names blob %r, which no layer produces "
                                   "(blobs: %s)" % (source, name, ", ".join(sorted(known))))
    needed = set(outputs)
    keep = [False] * len(param.layer)
    for i in range(len(param.layer) - 1, -1, -1):
        layer = param.layer[i]
        if needed & set(layer.top):
            keep[i] = True
            needed -= set(layer.top)
            needed |= set(layer.bottom)
    out = type(param)()
    out.CopyFrom(param)
    del out.layer[:]
    for layer, k in zip(param.layer, keep):
        if k:
            out.layer.add().CopyFrom(layer)
    return out


def check_no_data_layers(param, source):
    """Refuse data layers with advice: they are the input pipeline, not the model."""
    bad = [(l.name, l.type) for l in param.layer if l.type in DATA_LAYER_TYPES]
    if bad:
        names = ", ".join("%r (type %s)" % b for b in bad)
        raise ModuleBuildError(
            "%s: layer %s reads or writes data records and cannot be part of a torch module. "
            "Feed the module tensors instead: use a deploy prototxt with Input layers, or pass "
            "outputs=[...] naming blobs that do not depend on it (its tops: %s)"
            % (source, names, ", ".join(t for l in param.layer if l.type in DATA_LAYER_TYPES
                                        for t in l.top)))
