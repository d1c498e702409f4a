"""Upgrades of legacy Caffe net and solver definitions to the current format.

Mirrors what BVLC Caffe does in ``src/caffe/util/upgrade_proto.cpp`` whenever
it reads a net (prototxt or caffemodel) or a solver:

* V0 nets (``layers { layer { type: "conv" ... } }``, standalone ``padding``
  layers) become V1 nets;
* data-transformation fields kept in ``data_param`` / ``image_data_param`` /
  ``window_data_param`` move to ``transform_param``;
* V1 nets (``layers { type: CONVOLUTION blobs_lr: 1 ... }``) become the current
  ``layer { type: "Convolution" param { lr_mult: 1 } ... }`` form, keeping the
  weights (``blobs``) as they are;
* net-level ``input`` / ``input_dim`` / ``input_shape`` become a first layer
  named ``input`` of type ``Input``;
* BatchNorm layers that declare three ``param`` specs get ``lr_mult: 0`` and
  ``decay_mult: 0`` on each of them;
* solvers with the ``solver_type`` enum get the ``type`` string instead.

All functions work on the message instances they are given (whatever schema
module built them), so a fork's ``caffe.proto`` loaded through
:func:`caffe.proto.load` is upgraded the same way.

Reading and writing files is ``caffe.protoio``'s job; the console tools are
in ``caffe.upgrade_cli``.
"""
import logging
import os

from .proto.pytext import is_repeated

__all__ = [
    "net_needs_upgrade", "upgrade_net", "upgrade_net_as_needed",
    "net_needs_v0_to_v1_upgrade", "net_needs_v1_to_v2_upgrade",
    "net_needs_data_upgrade", "net_needs_input_upgrade",
    "net_needs_batch_norm_upgrade",
    "solver_needs_upgrade", "upgrade_solver", "upgrade_solver_as_needed",
    "upgrade_snapshot_prefix",
    "V1_LAYER_TYPES", "V0_LAYER_TYPES", "SOLVER_TYPES",
]

log = logging.getLogger("caffe")


# ---------------------------------------------------------------------------
# Type tables
# ---------------------------------------------------------------------------

# V1LayerParameter.LayerType enum name -> current layer type string.
V1_LAYER_TYPES = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# V0 layer type string -> V1LayerParameter.LayerType enum name.
V0_LAYER_TYPES = {
    "accuracy": "ACCURACY",
    "bnll": "BNLL",
    "concat": "CONCAT",
    "conv": "CONVOLUTION",
    "data": "DATA",
    "dropout": "DROPOUT",
    "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN",
    "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL",
    "images": "IMAGE_DATA",
    "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT",
    "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING",
    "relu": "RELU",
    "sigmoid": "SIGMOID",
    "softmax": "SOFTMAX",
    "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT",
    "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

# SolverParameter.SolverType enum name -> solver type string.
SOLVER_TYPES = {
    "SGD": "SGD",
    "NESTEROV": "Nesterov",
    "ADAGRAD": "AdaGrad",
    "RMSPROP": "RMSProp",
    "ADADELTA": "AdaDelta",
    "ADAM": "Adam",
}

# V1 layer types whose *_param carries the old transformation fields.
_DATA_UPGRADE_TYPES = (
    ("DATA", "data_param"),
    ("IMAGE_DATA", "image_data_param"),
    ("WINDOW_DATA", "window_data_param"),
)
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def _has(msg, field):
    """``HasField`` that is False (not an error) for fields a schema lacks."""
    if field not in msg.DESCRIPTOR.fields_by_name:
        return False
    return msg.HasField(field)


def _is_repeated(fd):
    rep = getattr(fd, "is_repeated", None)
    if rep is not None:
        return rep() if callable(rep) else bool(rep)
    return is_repeated(fd)


def _enum_name(msg, field, value=None):
    """Name of the enum value of ``msg.field`` (or of ``value``), else None."""
    enum = msg.DESCRIPTOR.fields_by_name[field].enum_type
    if value is None:
        value = getattr(msg, field)
    v = enum.values_by_number.get(value)
    return v.name if v is not None else None


def _enum_value(msg, field, name):
    """Number of enum value ``name`` of ``msg.field``'s enum type."""
    enum = msg.DESCRIPTOR.fields_by_name[field].enum_type
    v = enum.values_by_name.get(name)
    if v is None:
        raise ValueError("enum %s has no value %s" % (enum.full_name, name))
    return v.number


def _copy_message(dst, src):
    """``dst.CopyFrom(src)`` that also works across schema pools."""
    if dst.DESCRIPTOR is src.DESCRIPTOR:
        dst.CopyFrom(src)
    else:
        dst.Clear()
        dst.MergeFromString(src.SerializeToString())


def _where(source, layer_name=None, index=None):
    s = str(source)
    if layer_name:
        s += ": layer '%s'" % layer_name
    elif index is not None:
        s += ": layer #%d" % index
    return s


def _v1_name(v1_layer):
    """Name of a V1 (or V0-wrapping V1) layer, for messages."""
    if v1_layer.name:
        return v1_layer.name
    if _has(v1_layer, "layer") and v1_layer.layer.name:
        return v1_layer.layer.name
    return None


# ---------------------------------------------------------------------------
# What needs an upgrade
# ---------------------------------------------------------------------------

def net_needs_v0_to_v1_upgrade(net_param):
    """Any ``layers`` entry wrapping a V0 ``layer {}``."""
    return any(_has(l, "layer") for l in net_param.layers)


def net_needs_v1_to_v2_upgrade(net_param):
    return len(net_param.layers) > 0


def net_needs_data_upgrade(net_param):
    for l in net_param.layers:
        tname = _enum_name(l, "type")
        for type_name, pfield in _DATA_UPGRADE_TYPES:
            if tname == type_name and _has(l, pfield):
                p = getattr(l, pfield)
                if any(_has(p, f) for f in _TRANSFORM_FIELDS):
                    return True
    return False


def net_needs_input_upgrade(net_param):
    return len(net_param.input) > 0


def net_needs_batch_norm_upgrade(net_param):
    return any(l.type == "BatchNorm" and len(l.param) == 3
               for l in net_param.layer)


def net_needs_upgrade(net_param):
    """True if :func:`upgrade_net` would change ``net_param``."""
    return (net_needs_v0_to_v1_upgrade(net_param)
            or net_needs_v1_to_v2_upgrade(net_param)
            or net_needs_data_upgrade(net_param)
            or net_needs_input_upgrade(net_param)
            or net_needs_batch_norm_upgrade(net_param))


# ---------------------------------------------------------------------------
# V0 -> V1
# ---------------------------------------------------------------------------

def _fold_v0_padding_layers(net_param, source):
    """A copy of ``net_param`` without V0 ``padding`` layers: each one's pad is
    moved into the conv / pool layer that consumes its output."""
    out = type(net_param)()
    out.CopyFrom(net_param)
    del out.layers[:]
    producer = {name: -1 for name in net_param.input}  # blob -> layer index
    for i, conn in enumerate(net_param.layers):
        v0 = conn.layer
        if v0.type != "padding":
            out.layers.add().CopyFrom(conn)
        for j, blob in enumerate(conn.bottom):
            if blob not in producer:
                raise ValueError("%s: Unknown blob input %s to layer %d"
                                 % (_where(source, _v1_name(conn), i), blob, j))
            src_idx = producer[blob]
            if src_idx == -1:
                continue
            src = net_param.layers[src_idx]
            if src.layer.type != "padding":
                continue
            lname = _where(source, _v1_name(conn), i)
            if v0.type not in ("conv", "pool"):
                raise ValueError("%s: Padding layer input to non-convolutional / "
                                 "non-pooling layer type %s" % (lname, v0.type))
            if len(conn.bottom) != 1:
                raise ValueError("%s: Conv Layer takes a single blob as input." % lname)
            if len(src.bottom) != 1:
                raise ValueError("%s: Padding Layer takes a single blob as input."
                                 % _where(source, _v1_name(src), src_idx))
            if len(src.top) != 1:
                raise ValueError("%s: Padding Layer produces a single blob as output."
                                 % _where(source, _v1_name(src), src_idx))
            last = out.layers[len(out.layers) - 1]
            last.layer.pad = src.layer.pad
            last.bottom[j] = src.bottom[0]
        for blob in conn.top:
            producer[blob] = i
    return out


def _v0_layer_to_v1(conn, out, source, index):
    """Fill V1LayerParameter ``out`` from V0-wrapping ``conn``; returns False
    when some field could not be placed (logged, as Caffe does)."""
    ok = True
    out.Clear()
    out.bottom.extend(conn.bottom)
    out.top.extend(conn.top)
    if not _has(conn, "layer"):
        return ok
    v0 = conn.layer
    if v0.HasField("name"):
        out.name = v0.name
    t = v0.type
    if v0.HasField("type"):
        enum_name = V0_LAYER_TYPES.get(t)
        if enum_name is None:
            raise ValueError("%s: Unknown layer name: %s"
                             % (_where(source, v0.name or None, index), t))
        out.type = _enum_value(out, "type", enum_name)
    for b in v0.blobs:
        _copy_message(out.blobs.add(), b)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)

    def bad(field):
        nonlocal ok
        log.error("Unknown parameter %s for layer type %s", field, t)
        ok = False

    def by_type(field, targets, setter=None):
        """Put V0 ``field`` in the sub-message ``targets[t]`` (a field name)."""
        if not v0.HasField(field):
            return
        if t not in targets:
            bad(field)
            return
        sub, dst = targets[t]
        msg = getattr(out, sub)
        value = getattr(v0, field)
        if setter is not None:
            setter(msg, dst, value)
        elif _is_repeated(msg.DESCRIPTOR.fields_by_name[dst]):
            getattr(msg, dst).append(value)
        else:
            setattr(msg, dst, value)

    def copy_sub(msg, dst, value):
        _copy_message(getattr(msg, dst), value)

    conv_ip = lambda dst: {"conv": ("convolution_param", dst),
                           "innerproduct": ("inner_product_param", dst)}
    conv_pool = lambda dst: {"conv": ("convolution_param", dst),
                             "pool": ("pooling_param", dst)}
    by_type("num_output", conv_ip("num_output"))
    by_type("biasterm", conv_ip("bias_term"))
    by_type("weight_filler", conv_ip("weight_filler"), copy_sub)
    by_type("bias_filler", conv_ip("bias_filler"), copy_sub)
    by_type("pad", conv_pool("pad"))
    by_type("kernelsize", conv_pool("kernel_size"))
    by_type("group", {"conv": ("convolution_param", "group")})
    by_type("stride", conv_pool("stride"))
    if v0.HasField("pool"):
        if t == "pool":
            pname = _enum_name(v0, "pool")
            pp = out.pooling_param
            if pname in pp.DESCRIPTOR.fields_by_name["pool"].enum_type.values_by_name:
                pp.pool = _enum_value(pp, "pool", pname)
            else:
                log.error("Unknown pool method %s", v0.pool)
                ok = False
        else:
            bad("pool")
    by_type("dropout_ratio", {"dropout": ("dropout_param", "dropout_ratio")})
    for f in ("local_size", "alpha", "beta", "k"):
        by_type(f, {"lrn": ("lrn_param", f)})
    by_type("source", {"data": ("data_param", "source"),
                       "hdf5_data": ("hdf5_data_param", "source"),
                       "images": ("image_data_param", "source"),
                       "window_data": ("window_data_param", "source"),
                       "infogain_loss": ("infogain_loss_param", "source")})
    if v0.HasField("scale"):
        out.transform_param.scale = v0.scale
    if v0.HasField("meanfile"):
        out.transform_param.mean_file = v0.meanfile
    by_type("batchsize", {"data": ("data_param", "batch_size"),
                          "hdf5_data": ("hdf5_data_param", "batch_size"),
                          "images": ("image_data_param", "batch_size"),
                          "window_data": ("window_data_param", "batch_size")})
    if v0.HasField("cropsize"):
        out.transform_param.crop_size = v0.cropsize
    if v0.HasField("mirror"):
        out.transform_param.mirror = v0.mirror
    by_type("rand_skip", {"data": ("data_param", "rand_skip"),
                          "images": ("image_data_param", "rand_skip")})
    if v0.HasField("shuffle_images"):
        if t == "images":
            out.image_data_param.shuffle = v0.shuffle_images
        else:
            bad("shuffle")
    by_type("new_height", {"images": ("image_data_param", "new_height")})
    by_type("new_width", {"images": ("image_data_param", "new_width")})
    by_type("concat_dim", {"concat": ("concat_param", "concat_dim")})
    by_type("det_fg_threshold", {"window_data": ("window_data_param", "fg_threshold")})
    by_type("det_bg_threshold", {"window_data": ("window_data_param", "bg_threshold")})
    by_type("det_fg_fraction", {"window_data": ("window_data_param", "fg_fraction")})
    by_type("det_context_pad", {"window_data": ("window_data_param", "context_pad")})
    by_type("det_crop_mode", {"window_data": ("window_data_param", "crop_mode")})
    by_type("hdf5_output_param", {"hdf5_output": ("hdf5_output_param", None)},
            lambda msg, dst, value: _copy_message(msg, value))
    return ok


def _upgrade_v0_net(net_param, source):
    padded = _fold_v0_padding_layers(net_param, source)
    ok = True
    new = type(net_param)()
    if padded.HasField("name"):
        new.name = padded.name
    for i, conn in enumerate(padded.layers):
        ok &= _v0_layer_to_v1(conn, new.layers.add(), source, i)
    new.input.extend(padded.input)
    new.input_dim.extend(padded.input_dim)
    if padded.HasField("force_backward"):
        new.force_backward = padded.force_backward
    net_param.CopyFrom(new)
    return ok


# ---------------------------------------------------------------------------
# Data transformation fields
# ---------------------------------------------------------------------------

def _upgrade_data_transformation(net_param):
    for l in net_param.layers:
        tname = _enum_name(l, "type")
        for type_name, pfield in _DATA_UPGRADE_TYPES:
            if tname != type_name:
                continue
            # Caffe touches both sub-messages of every such layer, so they are
            # present (possibly empty) afterwards.
            p = getattr(l, pfield)
            p.SetInParent()
            tp = l.transform_param
            tp.SetInParent()
            for f in _TRANSFORM_FIELDS:
                if p.HasField(f):
                    setattr(tp, f, getattr(p, f))
                    p.ClearField(f)


# ---------------------------------------------------------------------------
# V1 -> V2
# ---------------------------------------------------------------------------

def _v1_layer_to_v2(v1, out, source, index):
    ok = True
    out.Clear()
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    if v1.HasField("name"):
        out.name = v1.name
    for r in v1.include:
        _copy_message(out.include.add(), r)
    for r in v1.exclude:
        _copy_message(out.exclude.add(), r)
    if v1.HasField("type"):
        tname = _enum_name(v1, "type")
        if tname not in V1_LAYER_TYPES:
            raise ValueError("%s: Unknown V1LayerParameter layer type: %s"
                             % (_where(source, v1.name or None, index), v1.type))
        out.type = V1_LAYER_TYPES[tname]
    for b in v1.blobs:
        # bytes round trip: several times faster than CopyFrom for big weights
        out.blobs.add().MergeFromString(b.SerializeToString())

    def spec(i):
        while len(out.param) <= i:
            out.param.add()
        return out.param[i]

    for i, name in enumerate(v1.param):
        spec(i).name = name
    for i, mode in enumerate(v1.blob_share_mode):
        mname = _enum_name(v1, "blob_share_mode", mode)
        ps = spec(i)
        if mname not in ps.DESCRIPTOR.fields_by_name["share_mode"].enum_type.values_by_name:
            raise ValueError("%s: Unknown blob_share_mode: %s"
                             % (_where(source, v1.name or None, index), mode))
        ps.share_mode = _enum_value(ps, "share_mode", mname)
    for i, lr in enumerate(v1.blobs_lr):
        spec(i).lr_mult = lr
    for i, wd in enumerate(v1.weight_decay):
        spec(i).decay_mult = wd
    out.loss_weight.extend(v1.loss_weight)
    # Every *_param sub-message is carried over as it is.
    out_fields = out.DESCRIPTOR.fields_by_name
    for fd, value in v1.ListFields():
        if fd.message_type is None or not fd.name.endswith("_param"):
            continue
        if fd.name not in out_fields:
            log.error("V1 layer %s: field %s has no counterpart in LayerParameter "
                      "-- dropped.", v1.name, fd.name)
            ok = False
            continue
        _copy_message(getattr(out, fd.name), value)
    if _has(v1, "layer"):
        log.error("Input NetParameter has V0 layer -- ignoring.")
        ok = False
    return ok


def _upgrade_v1_net(net_param, source):
    if len(net_param.layer) > 0:
        raise ValueError(
            "%s: Refusing to upgrade inconsistent NetParameter input; the definition "
            "includes both 'layer' and 'layers' fields. The current format defines "
            "'layer' fields with string type like layer { type: 'Layer' ... } and not "
            "layers { type: LAYER ... }. Manually switch the definition to 'layer' "
            "format to continue." % source)
    ok = True
    for i, v1 in enumerate(net_param.layers):
        if not _v1_layer_to_v2(v1, net_param.layer.add(), source, i):
            log.error("Upgrade of input layer %d failed.", i)
            ok = False
    net_param.ClearField("layers")
    return ok


# ---------------------------------------------------------------------------
# input fields -> Input layer
# ---------------------------------------------------------------------------

def _upgrade_net_input(net_param, source):
    has_shape = len(net_param.input_shape) > 0
    has_dim = len(net_param.input_dim) > 0
    if has_shape or has_dim:
        n = len(net_param.input)
        if has_shape and len(net_param.input_shape) != n:
            raise ValueError(
                "%s: %d input blob(s) but %d input_shape(s); give one input_shape "
                "per input" % (source, n, len(net_param.input_shape)))
        if not has_shape and len(net_param.input_dim) != 4 * n:
            raise ValueError(
                "%s: %d input blob(s) need %d input_dim values (4 each), got %d"
                % (source, n, 4 * n, len(net_param.input_dim)))
        saved = type(net_param)()
        saved.layer.extend(net_param.layer)
        del net_param.layer[:]
        layer = net_param.layer.add()
        layer.name = "input"
        layer.type = "Input"
        ip = layer.input_param
        ip.SetInParent()
        for i, name in enumerate(net_param.input):
            layer.top.append(name)
            shape = ip.shape.add()
            if has_shape:
                _copy_message(shape, net_param.input_shape[i])
            else:
                shape.dim.extend(net_param.input_dim[4 * i:4 * i + 4])
        net_param.layer.extend(saved.layer)
    net_param.ClearField("input")
    net_param.ClearField("input_shape")
    net_param.ClearField("input_dim")


# ---------------------------------------------------------------------------
# BatchNorm
# ---------------------------------------------------------------------------

def _upgrade_batch_norm(net_param):
    for l in net_param.layer:
        if l.type == "BatchNorm" and len(l.param) == 3:
            for ps in l.param:
                ps.lr_mult = 0.0
                ps.decay_mult = 0.0


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def _run(net_param, source):
    """All upgrades in Caffe's order; returns (changed, fully_compatible)."""
    changed = False
    ok = True
    if net_needs_v0_to_v1_upgrade(net_param):
        changed = True
        log.info("Attempting to upgrade input file specified using deprecated "
                 "V0LayerParameter: %s", source)
        if not _upgrade_v0_net(net_param, source):
            ok = False
            log.error("Warning: had one or more problems upgrading "
                      "V0NetParameter to NetParameter (see above); continuing anyway.")
        else:
            log.info("Successfully upgraded file specified using deprecated "
                     "V0LayerParameter")
        log.warning("Note that future Caffe releases will not support "
                    "V0NetParameter; use ./build/tools/upgrade_net_proto_text for "
                    "prototxt and ./build/tools/upgrade_net_proto_binary for model "
                    "weights upgrade this and any other net protos to the new format.")
    if net_needs_data_upgrade(net_param):
        changed = True
        log.info("Attempting to upgrade input file specified using deprecated "
                 "transformation parameters: %s", source)
        _upgrade_data_transformation(net_param)
        log.info("Successfully upgraded file specified using deprecated "
                 "data transformation parameters.")
        log.warning("Note that future Caffe releases will only support "
                    "transform_param messages for transformation fields.")
    if net_needs_v1_to_v2_upgrade(net_param):
        changed = True
        log.info("Attempting to upgrade input file specified using deprecated "
                 "V1LayerParameter: %s", source)
        if not _upgrade_v1_net(net_param, source):
            ok = False
            log.error("Warning: had one or more problems upgrading "
                      "V1LayerParameter (see above); continuing anyway.")
        else:
            log.info("Successfully upgraded file specified using deprecated "
                     "V1LayerParameter")
    if net_needs_input_upgrade(net_param):
        changed = True
        log.info("Attempting to upgrade input file specified using deprecated "
                 "input fields: %s", source)
        _upgrade_net_input(net_param, source)
        log.info("Successfully upgraded file specified using deprecated "
                 "input fields.")
        log.warning("Note that future Caffe releases will only support "
                    "input layers and not input fields.")
    if net_needs_batch_norm_upgrade(net_param):
        changed = True
        log.info("Attempting to upgrade batch norm layers using deprecated "
                 "params: %s", source)
        _upgrade_batch_norm(net_param)
        log.info("Successfully upgraded batch norm layers using deprecated params.")
    return changed, ok


def upgrade_net(net_param, source="<NetParameter>"):
    """Upgrade ``net_param`` in place to the current format.

    Returns True if anything changed.  Problems Caffe treats as fatal raise
    ``ValueError`` naming ``source`` and the layer; problems Caffe only logs
    (a V0 field on a layer type that has no place for it) are logged on the
    ``caffe`` logger and the upgrade goes on.
    """
    return _run(net_param, source)[0]


def upgrade_net_as_needed(source, net_param):
    """Caffe's ``UpgradeNetAsNeeded``: returns False if some part of the
    upgrade was not fully compatible (the net is still upgraded)."""
    return _run(net_param, source)[1]


# ---------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------

def solver_needs_upgrade(param):
    return _has(param, "solver_type")


def upgrade_solver(param, source="<SolverParameter>"):
    """``solver_type`` enum -> ``type`` string, in place; True if changed.

    Both fields set with different solvers is an error (Caffe rejects any
    file setting both; one that names the same solver twice is accepted
    here)."""
    if not solver_needs_upgrade(param):
        return False
    name = _enum_name(param, "solver_type")
    new_type = SOLVER_TYPES.get(name)
    if new_type is None:
        raise ValueError("%s: Unknown SolverParameter solver_type: %s"
                         % (source, param.solver_type))
    if param.HasField("type") and param.type != new_type:
        raise ValueError(
            "%s: Failed to upgrade solver: old solver_type field (enum) and new type "
            "field (string) cannot be both specified in solver proto text "
            "(solver_type: %s, type: \"%s\")." % (source, name, param.type))
    log.info("Attempting to upgrade input file specified using deprecated "
             "'solver_type' field (enum)': %s", source)
    param.type = new_type
    param.ClearField("solver_type")
    log.info("Successfully upgraded file specified using deprecated "
             "'solver_type' field (enum) to 'type' field (string).")
    log.warning("Note that future Caffe releases will only support "
                "'type' field (string) for a solver's type.")
    return True


def upgrade_solver_as_needed(source, param):
    """Caffe's ``UpgradeSolverAsNeeded`` (always succeeds or raises)."""
    upgrade_solver(param, source)
    return True


def upgrade_snapshot_prefix(param_file, param):
    """Caffe's ``UpgradeSnapshotPrefixProperty``: a missing ``snapshot_prefix``
    becomes the solver file name without extension; a directory gets the
    solver file's stem appended."""
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = os.path.splitext(str(param_file))[0]
        log.info("snapshot_prefix was not specified and is set to %s",
                 param.snapshot_prefix)
    elif os.path.isdir(param.snapshot_prefix):
        stem = os.path.splitext(os.path.basename(str(param_file)))[0]
        param.snapshot_prefix = os.path.join(param.snapshot_prefix, stem)
        log.info("snapshot_prefix was a directory and is replaced to %s",
                 param.snapshot_prefix)
