"""Tests for caffe/proto: the shipped schema, caffe_pb2 and run-time loading."""
import glob
import os
import struct
import sys

import pytest
from google.protobuf import descriptor_pb2, text_format

import caffe.proto
from caffe.proto import caffe_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")
PROTO_DIR = os.path.dirname(os.path.abspath(caffe.proto.__file__))


def num(msg, field):
    return getattr(caffe_pb2, msg).DESCRIPTOR.fields_by_name[field].number


def have_grpc_tools():
    try:
        import grpc_tools.protoc  # noqa: F401
    except ImportError:
        return False
    return True


needs_protoc = pytest.mark.skipif(not have_grpc_tools(), reason="grpcio-tools not installed")


@pytest.fixture(autouse=True)
def _clean_active(monkeypatch):
    monkeypatch.delenv("CAFFE_PROTO", raising=False)
    caffe.proto.reset()
    yield
    caffe.proto.reset()


# --------------------------------------------------------------------------
# field numbers (binary compatibility with BVLC caffemodels / solverstates)
# --------------------------------------------------------------------------

BVLC_NUMBERS = [
    ("BlobShape", "dim", 1),
    ("BlobProto", "num", 1), ("BlobProto", "channels", 2), ("BlobProto", "height", 3),
    ("BlobProto", "width", 4), ("BlobProto", "data", 5), ("BlobProto", "diff", 6),
    ("BlobProto", "shape", 7), ("BlobProto", "double_data", 8), ("BlobProto", "double_diff", 9),
    ("BlobProtoVector", "blobs", 1),
    ("Datum", "channels", 1), ("Datum", "data", 4), ("Datum", "label", 5),
    ("Datum", "float_data", 6), ("Datum", "encoded", 7),
    ("NetParameter", "name", 1), ("NetParameter", "layers", 2), ("NetParameter", "input", 3),
    ("NetParameter", "input_dim", 4), ("NetParameter", "force_backward", 5),
    ("NetParameter", "state", 6), ("NetParameter", "debug_info", 7),
    ("NetParameter", "input_shape", 8), ("NetParameter", "layer", 100),
    ("LayerParameter", "name", 1), ("LayerParameter", "type", 2), ("LayerParameter", "bottom", 3),
    ("LayerParameter", "top", 4), ("LayerParameter", "loss_weight", 5),
    ("LayerParameter", "param", 6), ("LayerParameter", "blobs", 7),
    ("LayerParameter", "include", 8), ("LayerParameter", "exclude", 9),
    ("LayerParameter", "phase", 10), ("LayerParameter", "propagate_down", 11),
    ("LayerParameter", "transform_param", 100), ("LayerParameter", "loss_param", 101),
    ("LayerParameter", "convolution_param", 106), ("LayerParameter", "data_param", 107),
    ("LayerParameter", "inner_product_param", 117), ("LayerParameter", "pooling_param", 121),
    ("LayerParameter", "python_param", 130), ("LayerParameter", "batch_norm_param", 139),
    ("LayerParameter", "scale_param", 142), ("LayerParameter", "input_param", 143),
    ("LayerParameter", "crop_param", 144), ("LayerParameter", "recurrent_param", 146),
    ("LayerParameter", "swish_param", 147), ("LayerParameter", "clip_param", 148),
    ("ParamSpec", "name", 1), ("ParamSpec", "share_mode", 2), ("ParamSpec", "lr_mult", 3),
    ("ParamSpec", "decay_mult", 4),
    ("ConvolutionParameter", "num_output", 1), ("ConvolutionParameter", "stride", 6),
    ("ConvolutionParameter", "group", 5), ("ConvolutionParameter", "dilation", 18),
    ("ConvolutionParameter", "engine", 15), ("ConvolutionParameter", "force_nd_im2col", 17),
    ("PoolingParameter", "round_mode", 13), ("PoolingParameter", "global_pooling", 12),
    ("SolverParameter", "net", 24), ("SolverParameter", "train_net", 1),
    ("SolverParameter", "test_iter", 3), ("SolverParameter", "base_lr", 5),
    ("SolverParameter", "lr_policy", 8), ("SolverParameter", "momentum", 11),
    ("SolverParameter", "weight_decay", 12), ("SolverParameter", "snapshot_prefix", 15),
    ("SolverParameter", "solver_mode", 17), ("SolverParameter", "random_seed", 20),
    ("SolverParameter", "solver_type", 30), ("SolverParameter", "delta", 31),
    ("SolverParameter", "stepvalue", 34), ("SolverParameter", "clip_gradients", 35),
    ("SolverParameter", "iter_size", 36), ("SolverParameter", "snapshot_format", 37),
    ("SolverParameter", "rms_decay", 38), ("SolverParameter", "momentum2", 39),
    ("SolverParameter", "type", 40), ("SolverParameter", "layer_wise_reduce", 41),
    ("SolverParameter", "weights", 42),
    ("SolverState", "iter", 1), ("SolverState", "learned_net", 2),
    ("SolverState", "history", 3), ("SolverState", "current_step", 4),
    ("V1LayerParameter", "layer", 1), ("V1LayerParameter", "bottom", 2),
    ("V1LayerParameter", "name", 4), ("V1LayerParameter", "type", 5),
    ("V1LayerParameter", "blobs", 6), ("V1LayerParameter", "blobs_lr", 7),
    ("V1LayerParameter", "convolution_param", 10), ("V1LayerParameter", "param", 1001),
    ("V1LayerParameter", "blob_share_mode", 1002),
    ("V0LayerParameter", "kernelsize", 8), ("V0LayerParameter", "blobs", 50),
    ("V0LayerParameter", "hdf5_output_param", 1001),
]


@pytest.mark.parametrize("msg,field,number", BVLC_NUMBERS)
def test_bvlc_field_numbers(msg, field, number):
    assert num(msg, field) == number


FORK_NUMBERS = [
    # SSD (weiliu89/caffe ssd)
    ("LayerParameter", "annotated_data_param", 200), ("LayerParameter", "multibox_loss_param", 201),
    ("LayerParameter", "permute_param", 202), ("LayerParameter", "prior_box_param", 203),
    ("LayerParameter", "detection_output_param", 204),
    ("LayerParameter", "detection_evaluate_param", 205), ("LayerParameter", "norm_param", 206),
    ("LayerParameter", "video_data_param", 207),
    ("TransformationParameter", "resize_param", 8), ("TransformationParameter", "noise_param", 9),
    ("TransformationParameter", "emit_constraint", 10), ("TransformationParameter", "crop_h", 11),
    ("TransformationParameter", "crop_w", 12), ("TransformationParameter", "distort_param", 13),
    ("TransformationParameter", "expand_param", 14),
    ("PriorBoxParameter", "offset", 13), ("DetectionOutputParameter", "keep_top_k", 7),
    ("DetectionOutputParameter", "variance_encoded_in_target", 8),
    ("SolverState", "minimum_loss", 5), ("SolverState", "iter_last_event", 6),
    # fast-rcnn / R-FCN / DeepLab / SegNet
    ("LayerParameter", "roi_pooling_param", 8266711),
    ("LayerParameter", "smooth_l1_loss_param", 8266712),
    ("LayerParameter", "psroi_pooling_param", 149),
    ("LayerParameter", "box_annotator_ohem_param", 150),
    ("LayerParameter", "interp_param", 153),
    ("LayerParameter", "upsample_param", 40137),
    ("DropoutParameter", "scale_train", 2),
    ("LossParameter", "pre_fixed_normalizer", 4),
]


@pytest.mark.parametrize("msg,field,number", FORK_NUMBERS)
def test_fork_field_numbers(msg, field, number):
    assert num(msg, field) == number


def test_layer_parameter_numbers_unique():
    numbers = [f.number for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields]
    assert len(numbers) == len(set(numbers))


def test_bvlc_messages_present():
    for name in ["BlobShape", "BlobProto", "BlobProtoVector", "Datum", "FillerParameter",
                 "NetParameter", "SolverParameter", "SolverState", "NetState", "NetStateRule",
                 "ParamSpec", "LayerParameter", "TransformationParameter", "LossParameter",
                 "AccuracyParameter", "ArgMaxParameter", "ClipParameter", "ConcatParameter",
                 "BatchNormParameter", "BiasParameter", "ContrastiveLossParameter",
                 "ConvolutionParameter", "CropParameter", "DataParameter", "DropoutParameter",
                 "DummyDataParameter", "EltwiseParameter", "ELUParameter", "EmbedParameter",
                 "ExpParameter", "FlattenParameter", "HDF5DataParameter", "HDF5OutputParameter",
                 "HingeLossParameter", "ImageDataParameter", "InfogainLossParameter",
                 "InnerProductParameter", "InputParameter", "LogParameter", "LRNParameter",
                 "MemoryDataParameter", "MVNParameter", "ParameterParameter", "PoolingParameter",
                 "PowerParameter", "PythonParameter", "RecurrentParameter", "ReductionParameter",
                 "ReLUParameter", "ReshapeParameter", "ScaleParameter", "SigmoidParameter",
                 "SliceParameter", "SoftmaxParameter", "SwishParameter", "TanHParameter",
                 "TileParameter", "ThresholdParameter", "WindowDataParameter", "SPPParameter",
                 "V1LayerParameter", "V0LayerParameter", "PReLUParameter",
                 # forks
                 "ROIPoolingParameter", "SmoothL1LossParameter", "PSROIPoolingParameter",
                 "BoxAnnotatorOHEMParameter", "InterpParameter", "UpsampleParameter",
                 "NormalizeParameter", "PermuteParameter", "PriorBoxParameter",
                 "DetectionOutputParameter", "NonMaximumSuppressionParameter",
                 "SaveOutputParameter", "MultiBoxLossParameter", "AnnotatedDataParameter",
                 "DetectionEvaluateParameter", "AnnotatedDatum", "NormalizedBBox", "Annotation",
                 "AnnotationGroup", "EmitConstraint", "ResizeParameter", "NoiseParameter",
                 "DistortionParameter", "ExpansionParameter", "BatchSampler", "Sampler",
                 "SampleConstraint", "LabelMap", "LabelMapItem", "VideoDataParameter"]:
        assert hasattr(caffe_pb2, name), name


def test_layer_parameter_has_every_param_message():
    # every *Parameter message (but the layer containers) is reachable from LayerParameter
    reachable = {f.message_type.name for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields
                 if f.message_type is not None}
    for name in ["ConvolutionParameter", "PoolingParameter", "ClipParameter", "SwishParameter",
                 "NormalizeParameter", "InterpParameter", "UpsampleParameter",
                 "PSROIPoolingParameter", "ROIPoolingParameter", "SmoothL1LossParameter"]:
        assert name in reachable


# --------------------------------------------------------------------------
# defaults and enums
# --------------------------------------------------------------------------

def test_defaults():
    p = caffe_pb2
    assert p.ConvolutionParameter().bias_term is True
    assert p.ConvolutionParameter().group == 1
    assert p.ConvolutionParameter().axis == 1
    assert p.PoolingParameter().pool == p.PoolingParameter.MAX
    assert p.PoolingParameter().stride == 1
    assert p.PoolingParameter().round_mode == p.PoolingParameter.CEIL
    assert p.FillerParameter().type == "constant"
    assert p.FillerParameter().std == 1
    assert p.FillerParameter().max == 1
    assert p.FillerParameter().sparse == -1
    assert p.FillerParameter().variance_norm == p.FillerParameter.FAN_IN
    assert p.ParamSpec().lr_mult == 1 and p.ParamSpec().decay_mult == 1
    assert p.NetState().phase == p.TEST
    assert p.LossParameter().normalization == p.LossParameter.VALID
    assert p.DropoutParameter().dropout_ratio == 0.5
    assert p.LRNParameter().local_size == 5
    assert p.LRNParameter().beta == pytest.approx(0.75)
    assert p.BatchNormParameter().moving_average_fraction == pytest.approx(0.999)
    assert p.BatchNormParameter().eps == pytest.approx(1e-5)
    assert p.EltwiseParameter().operation == p.EltwiseParameter.SUM
    assert p.EltwiseParameter().stable_prod_grad is True
    assert p.ExpParameter().base == -1
    assert p.FlattenParameter().end_axis == -1
    assert p.ReshapeParameter().num_axes == -1
    assert p.CropParameter().axis == 2
    assert p.MVNParameter().eps == pytest.approx(1e-9)
    assert p.ReductionParameter().operation == p.ReductionParameter.SUM
    assert p.HingeLossParameter().norm == p.HingeLossParameter.L1
    assert p.DataParameter().backend == p.DataParameter.LEVELDB
    assert p.DataParameter().prefetch == 4
    assert p.ImageDataParameter().batch_size == 1
    assert p.ImageDataParameter().is_color is True
    assert p.WindowDataParameter().crop_mode == "warp"
    assert p.PythonParameter().param_str == ""
    assert p.SwishParameter().beta == 1
    s = p.SolverParameter()
    assert s.type == "SGD"
    assert s.solver_mode == p.SolverParameter.GPU
    assert s.snapshot_format == p.SolverParameter.BINARYPROTO
    assert s.regularization_type == "L2"
    assert s.clip_gradients == -1
    assert s.random_seed == -1
    assert s.iter_size == 1 and s.average_loss == 1
    assert s.test_initialization is True and s.snapshot_after_train is True
    assert s.delta == pytest.approx(1e-8)
    assert s.momentum2 == pytest.approx(0.999)
    assert s.rms_decay == pytest.approx(0.99)
    assert s.layer_wise_reduce is True
    v0 = p.V0LayerParameter()
    assert v0.biasterm is True and v0.det_crop_mode == "warp" and v0.concat_dim == 1


def test_fork_defaults():
    p = caffe_pb2
    assert p.NormalizeParameter().across_spatial is True
    assert p.NormalizeParameter().channel_shared is True
    assert p.NormalizeParameter().eps == pytest.approx(1e-10)
    assert p.PriorBoxParameter().flip is True
    assert p.PriorBoxParameter().clip is False
    assert p.PriorBoxParameter().offset == 0.5
    d = p.DetectionOutputParameter()
    assert d.share_location is True and d.keep_top_k == -1
    assert d.code_type == p.PriorBoxParameter.CORNER
    assert p.NonMaximumSuppressionParameter().nms_threshold == pytest.approx(0.3)
    assert p.NonMaximumSuppressionParameter().eta == 1
    m = p.MultiBoxLossParameter()
    assert m.loc_loss_type == p.MultiBoxLossParameter.SMOOTH_L1
    assert m.match_type == p.MultiBoxLossParameter.PER_PREDICTION
    assert m.mining_type == p.MultiBoxLossParameter.MAX_NEGATIVE
    assert m.neg_pos_ratio == 3 and m.sample_size == 64
    assert p.ROIPoolingParameter().spatial_scale == 1
    assert p.SmoothL1LossParameter().sigma == 1
    assert p.InterpParameter().zoom_factor == 1 and p.InterpParameter().shrink_factor == 1
    assert p.UpsampleParameter().scale == 2
    assert p.DropoutParameter().scale_train is True
    assert p.BatchSampler().max_trials == 100
    assert p.ResizeParameter().resize_mode == p.ResizeParameter.WARP
    assert p.NoiseParameter().jpeg == -1
    assert p.SolverState().minimum_loss == pytest.approx(1e38)
    assert p.SolverParameter().eval_type == "classification"
    assert p.SolverParameter().ap_version == "Integral"


def test_enum_values():
    p = caffe_pb2
    assert p.TRAIN == 0 and p.TEST == 1
    assert p.Phase.Name(0) == "TRAIN"
    assert p.PoolingParameter.AVE == 1 and p.PoolingParameter.STOCHASTIC == 2
    assert p.LossParameter.NONE == 3 and p.LossParameter.PRE_FIXED == 4
    assert p.SolverParameter.ADAM == 5 and p.SolverParameter.HDF5 == 0
    assert p.V1LayerParameter.CONVOLUTION == 4
    assert p.V1LayerParameter.DECONVOLUTION == 39
    assert p.V1LayerParameter.SOFTMAX_LOSS == 21
    assert p.V1LayerParameter.ABSVAL == 35
    assert p.ReductionParameter.MEAN == 4
    assert p.HingeLossParameter.L2 == 2
    assert p.PriorBoxParameter.CENTER_SIZE == 2
    assert p.EmitConstraint.MIN_OVERLAP == 1
    assert p.AnnotatedDatum.BBOX == 0


# --------------------------------------------------------------------------
# golden caffemodels
# --------------------------------------------------------------------------

def _golden(sub, pattern):
    return sorted(glob.glob(os.path.join(GOLDEN, sub, pattern)))


def _strip_blobs(net):
    net = caffe_pb2.NetParameter.FromString(net.SerializeToString())
    for layer in net.layer:
        del layer.blobs[:]
    return net


def _unknown_paths(msg, path=""):
    """Paths of messages holding fields our schema does not know."""
    try:
        from google.protobuf.unknown_fields import UnknownFieldSet
    except ImportError:  # protobuf < 4.25
        pytest.skip("google.protobuf.unknown_fields not available")
    found = []
    if len(UnknownFieldSet(msg)):
        found.append(path or msg.DESCRIPTOR.name)
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        repeated = getattr(fd, "is_repeated", None)
        if repeated is None:
            repeated = fd.label == fd.LABEL_REPEATED
        items = value if repeated else [value]
        for i, item in enumerate(items):
            found.extend(_unknown_paths(item, "%s.%s[%d]" % (path, fd.name, i)))
    return found


NET_MODELS = _golden("nets", "*.caffemodel")
SSD_MODELS = _golden("ssd", "*.caffemodel")


def test_golden_files_present():
    assert NET_MODELS, "compat_tests/golden/nets/*.caffemodel missing"
    assert len(SSD_MODELS) >= 6, "compat_tests/golden/ssd/*.caffemodel missing"


@pytest.mark.parametrize("path", NET_MODELS + SSD_MODELS, ids=os.path.basename)
def test_golden_caffemodel_parses(path):
    with open(path, "rb") as f:
        data = f.read()
    net = caffe_pb2.NetParameter.FromString(data)
    assert len(net.layer) > 0
    assert caffe_pb2.NetParameter.FromString(net.SerializeToString()) == net
    assert _unknown_paths(net) == []   # every field is known to our schema
    for layer in net.layer:
        for blob in layer.blobs:
            n = 1
            for d in blob.shape.dim:
                n *= d
            assert len(blob.data) == n or len(blob.double_data) == n
    proto = os.path.splitext(path)[0] + ".prototxt"
    if os.path.exists(proto):
        with open(proto) as f:
            text = text_format.Parse(f.read(), caffe_pb2.NetParameter())
        text_layers = {l.name: l for l in text.layer}
        for layer in net.layer:
            assert layer.name in text_layers
            assert layer.type == text_layers[layer.name].type


def test_lenet_weights_shapes():
    path = os.path.join(GOLDEN, "nets", "lenet.caffemodel")
    if not os.path.exists(path):
        pytest.skip("lenet golden not copied")
    net = caffe_pb2.NetParameter()
    with open(path, "rb") as f:
        net.ParseFromString(f.read())
    conv1 = [l for l in net.layer if l.name == "conv1"][0]
    assert conv1.type == "Convolution"
    assert list(conv1.blobs[0].shape.dim) == [20, 1, 5, 5]
    assert list(conv1.blobs[1].shape.dim) == [20]


SSD_PARAM = {
    "ssd_detection_output": ("DetectionOutput", "detection_output_param"),
    "ssd_normalize_per_channel": ("Normalize", "norm_param"),
    "ssd_normalize_shared": ("Normalize", "norm_param"),
    "ssd_permute": ("Permute", "permute_param"),
    "ssd_priorbox": ("PriorBox", "prior_box_param"),
    "ssd_priorbox_clip_step": ("PriorBox", "prior_box_param"),
}


@pytest.mark.parametrize("stem", sorted(SSD_PARAM))
def test_ssd_caffemodel_params_under_ssd_numbers(stem):
    ltype, field = SSD_PARAM[stem]
    with open(os.path.join(GOLDEN, "ssd", stem + ".caffemodel"), "rb") as f:
        net = caffe_pb2.NetParameter.FromString(f.read())
    layer = [l for l in net.layer if l.type == ltype][0]
    assert layer.HasField(field)
    # the binary params equal what the prototxt says
    with open(os.path.join(GOLDEN, "ssd", stem + ".prototxt")) as f:
        text = text_format.Parse(f.read(), caffe_pb2.NetParameter())
    tlayer = [l for l in text.layer if l.type == ltype][0]
    assert getattr(layer, field) == getattr(tlayer, field)


def test_ssd_specific_values():
    with open(os.path.join(GOLDEN, "ssd", "ssd_detection_output.caffemodel"), "rb") as f:
        net = caffe_pb2.NetParameter.FromString(f.read())
    p = [l for l in net.layer if l.type == "DetectionOutput"][0].detection_output_param
    assert p.num_classes == 3
    assert p.code_type == caffe_pb2.PriorBoxParameter.CENTER_SIZE
    assert p.keep_top_k == 6
    assert p.nms_param.top_k == 8
    assert p.nms_param.nms_threshold == pytest.approx(0.45)
    with open(os.path.join(GOLDEN, "ssd", "ssd_permute.caffemodel"), "rb") as f:
        net = caffe_pb2.NetParameter.FromString(f.read())
    assert list([l for l in net.layer if l.type == "Permute"][0].permute_param.order) == [0, 2, 3, 1]
    with open(os.path.join(GOLDEN, "ssd", "ssd_normalize_shared.caffemodel"), "rb") as f:
        net = caffe_pb2.NetParameter.FromString(f.read())
    norm = [l for l in net.layer if l.type == "Normalize"][0]
    assert len(norm.blobs) == 1   # scale (0-d when channel_shared)


# --------------------------------------------------------------------------
# text format with fork layers
# --------------------------------------------------------------------------

FORK_PROTOTXT = """
name: "forks"
layer { name: "roi" type: "ROIPooling" bottom: "conv5" bottom: "rois" top: "pool5"
  roi_pooling_param { pooled_w: 7 pooled_h: 7 spatial_scale: 0.0625 } }
layer { name: "l1" type: "SmoothL1Loss" bottom: "a" bottom: "b" top: "l"
  loss_weight: 1 smooth_l1_loss_param { sigma: 3.0 } }
layer { name: "ps" type: "PSROIPooling" bottom: "x" bottom: "rois" top: "y"
  psroi_pooling_param { spatial_scale: 0.0625 output_dim: 21 group_size: 7 } }
layer { name: "ohem" type: "BoxAnnotatorOHEM" box_annotator_ohem_param { roi_per_img: 128 } }
layer { name: "interp" type: "Interp" interp_param { zoom_factor: 8 pad_beg: 0 pad_end: 0 } }
layer { name: "up" type: "Upsample" upsample_param { scale: 2 upsample_h: 45 upsample_w: 60 } }
layer { name: "drop" type: "Dropout" dropout_param { dropout_ratio: 0.5 scale_train: false } }
layer { name: "loss" type: "SoftmaxWithLossOHEM"
  loss_param { normalization: PRE_FIXED pre_fixed_normalizer: 128 } }
layer { name: "data" type: "AnnotatedData" top: "data" top: "label"
  transform_param { mirror: true mean_value: 104 mean_value: 117 mean_value: 123
    resize_param { prob: 1 resize_mode: WARP height: 300 width: 300
                   interp_mode: LINEAR interp_mode: AREA interp_mode: CUBIC }
    emit_constraint { emit_type: CENTER }
    distort_param { brightness_prob: 0.5 brightness_delta: 32 }
    expand_param { prob: 0.5 max_expand_ratio: 4.0 } }
  data_param { source: "lmdb" batch_size: 32 backend: LMDB }
  annotated_data_param {
    batch_sampler { max_sample: 1 max_trials: 1 }
    batch_sampler { sampler { min_scale: 0.3 max_scale: 1.0 min_aspect_ratio: 0.5 max_aspect_ratio: 2.0 }
                    sample_constraint { min_jaccard_overlap: 0.1 } max_sample: 1 max_trials: 50 }
    label_map_file: "labelmap_voc.prototxt" } }
layer { name: "mbox_loss" type: "MultiBoxLoss"
  multibox_loss_param { loc_loss_type: SMOOTH_L1 conf_loss_type: SOFTMAX loc_weight: 1.0
    num_classes: 21 share_location: true match_type: PER_PREDICTION overlap_threshold: 0.5
    neg_pos_ratio: 3.0 code_type: CENTER_SIZE mining_type: MAX_NEGATIVE } }
layer { name: "eval" type: "DetectionEvaluate" detection_evaluate_param { num_classes: 21 } }
"""


def test_fork_prototxt_text_round_trip():
    net = text_format.Parse(FORK_PROTOTXT, caffe_pb2.NetParameter())
    assert net.layer[0].roi_pooling_param.pooled_w == 7
    assert net.layer[1].smooth_l1_loss_param.sigma == 3
    assert net.layer[2].psroi_pooling_param.group_size == 7
    assert net.layer[4].interp_param.zoom_factor == 8
    assert net.layer[5].upsample_param.upsample_h == 45
    assert net.layer[7].loss_param.normalization == caffe_pb2.LossParameter.PRE_FIXED
    tp = net.layer[8].transform_param
    assert list(tp.resize_param.interp_mode) == [1, 2, 4]
    assert net.layer[8].annotated_data_param.batch_sampler[1].max_trials == 50
    again = caffe_pb2.NetParameter.FromString(net.SerializeToString())
    assert again == net
    assert text_format.Parse(text_format.MessageToString(net), caffe_pb2.NetParameter()) == net


def test_label_map():
    lm = text_format.Parse('item { name: "none_of_the_above" label: 0 display_name: "background" }'
                           ' item { name: "aeroplane" label: 1 display_name: "aeroplane" }',
                           caffe_pb2.LabelMap())
    assert [i.display_name for i in lm.item] == ["background", "aeroplane"]


def test_annotated_datum_round_trip():
    a = caffe_pb2.AnnotatedDatum(type=caffe_pb2.AnnotatedDatum.BBOX)
    a.datum.channels, a.datum.height, a.datum.width = 3, 2, 2
    a.datum.data = bytes(range(12))
    g = a.annotation_group.add(group_label=5)
    ann = g.annotation.add(instance_id=0)
    ann.bbox.xmin, ann.bbox.ymax, ann.bbox.difficult = 0.1, 0.9, True
    assert caffe_pb2.AnnotatedDatum.FromString(a.SerializeToString()) == a


# --------------------------------------------------------------------------
# unknown fields and legacy formats
# --------------------------------------------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field, wire):
    return _varint((field << 3) | wire)


def _ld(field, payload):
    return _key(field, 2) + _varint(len(payload)) + payload


def test_unknown_fields_survive_round_trip():
    known = caffe_pb2.LayerParameter(name="conv", type="Convolution")
    known.convolution_param.num_output = 4
    # an unknown varint field and an unknown nested message inside LayerParameter,
    # plus an unknown field inside ConvolutionParameter
    extra_layer = _key(777777, 0) + _varint(42) + _ld(8000001, _ld(1, b"hello"))
    extra_conv = _key(99, 0) + _varint(7)
    conv_bytes = known.convolution_param.SerializeToString() + extra_conv
    layer_bytes = (caffe_pb2.LayerParameter(name="conv", type="Convolution").SerializeToString()
                   + _ld(106, conv_bytes) + extra_layer)
    net_bytes = _ld(1, b"n") + _ld(100, layer_bytes) + _key(5555, 5) + b"\x00\x00\x80?"
    net = caffe_pb2.NetParameter.FromString(net_bytes)
    assert net.layer[0].convolution_param.num_output == 4
    out = net.SerializeToString()
    for chunk in (extra_layer, extra_conv, _key(5555, 5) + b"\x00\x00\x80?"):
        assert chunk in out
    # and again after a modification of a known field
    net.layer[0].convolution_param.num_output = 8
    again = caffe_pb2.NetParameter.FromString(net.SerializeToString())
    assert again.layer[0].convolution_param.num_output == 8
    assert extra_layer in again.SerializeToString()


def test_v1_layers_binary():
    net = caffe_pb2.NetParameter(name="old")
    l = net.layers.add(name="conv1", type=caffe_pb2.V1LayerParameter.CONVOLUTION)
    l.bottom.append("data")
    l.top.append("conv1")
    l.convolution_param.num_output = 2
    l.blobs_lr.extend([1, 2])
    b = l.blobs.add(num=2, channels=1, height=3, width=3)
    b.data.extend([0.5] * 18)
    data = net.SerializeToString()
    # hand-check the wire layout: NetParameter.layers is field 2, V1 blobs field 6
    assert data.startswith(_ld(1, b"old") + _key(2, 2))
    back = caffe_pb2.NetParameter.FromString(data)
    assert back.layers[0].type == caffe_pb2.V1LayerParameter.CONVOLUTION
    assert back.layers[0].blobs[0].height == 3
    v0 = caffe_pb2.V1LayerParameter()
    v0.layer.name, v0.layer.type, v0.layer.kernelsize = "c", "conv", 5
    assert caffe_pb2.V1LayerParameter.FromString(v0.SerializeToString()).layer.kernelsize == 5


def test_blobproto_packed_wire_format():
    b = caffe_pb2.BlobProto()
    b.shape.dim.extend([2])
    b.data.extend([1.0, 2.0])
    raw = b.SerializeToString()
    # data is packed float (field 5, wire type 2, 8 bytes)
    assert _ld(5, b"\x00\x00\x80?\x00\x00\x00@") in raw
    # unpacked encodings written by other writers must parse too
    unpacked = _key(5, 5) + b"\x00\x00\x80?" + _key(5, 5) + b"\x00\x00\x00@"
    assert list(caffe_pb2.BlobProto.FromString(unpacked).data) == [1.0, 2.0]


def test_solverstate_round_trip():
    st = caffe_pb2.SolverState(iter=10, learned_net="snap_iter_10.caffemodel", current_step=1)
    h = st.history.add()
    h.shape.dim.extend([3])
    h.data.extend([0.1, 0.2, 0.3])
    again = caffe_pb2.SolverState.FromString(st.SerializeToString())
    assert again == st and again.history[0].data[2] == pytest.approx(0.3)


def test_solver_prototxt():
    s = text_format.Parse('net: "train.prototxt" base_lr: 0.01 lr_policy: "multistep" '
                          'stepvalue: 100 stepvalue: 200 type: "Adam" solver_mode: CPU '
                          'snapshot_format: HDF5 test_iter: 5 test_interval: 10 '
                          'weights: "a.caffemodel" layer_wise_reduce: false',
                          caffe_pb2.SolverParameter())
    assert list(s.stepvalue) == [100, 200]
    assert s.solver_mode == caffe_pb2.SolverParameter.CPU
    assert caffe_pb2.SolverParameter.FromString(s.SerializeToString()) == s


# --------------------------------------------------------------------------
# generated module
# --------------------------------------------------------------------------

def test_generated_module_has_no_hard_runtime_check():
    with open(os.path.join(PROTO_DIR, "caffe_pb2.py")) as f:
        src = f.read()
    assert "ValidateProtobufRuntimeVersion(" not in src


@needs_protoc
def test_caffe_pb2_matches_caffe_proto():
    """The committed caffe_pb2.py was generated from the committed caffe.proto."""
    import tempfile

    from caffe.proto import regenerate
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "d.desc")
        regenerate.run_protoc(os.path.join(PROTO_DIR, "caffe.proto"),
                              ["--descriptor_set_out=" + out])
        with open(out, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    expected = fds.file[0]
    actual = descriptor_pb2.FileDescriptorProto.FromString(caffe_pb2.DESCRIPTOR.serialized_pb)

    def strip_json_names(msgs):
        for m in msgs:
            for f in m.field:
                f.ClearField("json_name")
                # protoc prints float defaults differently in the two outputs
                if f.type == f.TYPE_FLOAT and f.HasField("default_value"):
                    v = struct.unpack("<f", struct.pack("<f", float(f.default_value)))[0]
                    f.default_value = repr(v)
            strip_json_names(m.nested_type)

    strip_json_names(expected.message_type)
    strip_json_names(actual.message_type)
    assert actual == expected, "caffe_pb2.py is stale: run python -m caffe.proto.regenerate"


def test_regenerate_relaxes_version_check():
    from caffe.proto import regenerate
    src = ("from google.protobuf import descriptor as _descriptor\n"
           "from google.protobuf import runtime_version as _runtime_version\n"
           "_runtime_version.ValidateProtobufRuntimeVersion(\n"
           "    _runtime_version.Domain.PUBLIC,\n    7,\n    35,\n    1,\n    '',\n"
           "    'caffe.proto'\n)\nX = 1\n")
    out = regenerate.relax_version_check(src)
    assert "ValidateProtobufRuntimeVersion" not in out and "runtime_version" not in out.split("#")[0]
    assert "X = 1" in out
    exec(compile(out, "gen", "exec"), {})


# --------------------------------------------------------------------------
# load() / active() / CAFFE_PROTO
# --------------------------------------------------------------------------

FORK_PROTO = """
syntax = "proto2";
package caffe;
message BlobShape { repeated int64 dim = 1 [packed = true]; }
message BlobProto {
  optional BlobShape shape = 7;
  repeated float data = 5 [packed = true];
}
enum Phase { TRAIN = 0; TEST = 1; }
message MyFancyParameter {
  enum Mode { FAST = 0; SLOW = 1; }
  optional float gain = 1 [default = 2.5];
  optional Mode mode = 2 [default = SLOW];
}
message LayerParameter {
  optional string name = 1;
  optional string type = 2;
  repeated BlobProto blobs = 7;
  optional Phase phase = 10;
  optional MyFancyParameter fancy_param = 147;   // clashes with BVLC swish_param on purpose
}
message NetParameter {
  optional string name = 1;
  repeated LayerParameter layer = 100;
}
"""


@pytest.fixture
def fork_proto(tmp_path):
    p = tmp_path / "fork_caffe.proto"
    p.write_text(FORK_PROTO)
    return str(p)


def test_active_default_is_shipped():
    assert caffe.proto.active() is caffe_pb2


@needs_protoc
def test_load_user_proto(fork_proto):
    mod = caffe.proto.load(fork_proto)
    assert caffe.proto.active() is mod
    assert mod is not caffe_pb2
    assert mod.MyFancyParameter().gain == 2.5
    assert mod.MyFancyParameter().mode == mod.MyFancyParameter.SLOW
    assert mod.TRAIN == 0 and mod.Phase.Name(1) == "TEST"
    net = text_format.Parse('name: "x" layer { name: "f" type: "Fancy" fancy_param { gain: 4 } }',
                            mod.NetParameter())
    data = net.SerializeToString()
    assert mod.NetParameter.FromString(data).layer[0].fancy_param.gain == 4
    # the shipped schema is untouched and still reads field 147 as swish_param
    shipped = caffe_pb2.NetParameter.FromString(data)
    assert shipped.layer[0].swish_param.beta == 4
    assert caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name["swish_param"].number == 147
    # cached
    assert caffe.proto.load(fork_proto) is mod
    assert sys.modules[mod.__name__] is mod
    caffe.proto.reset()
    assert caffe.proto.active() is caffe_pb2


@needs_protoc
def test_load_full_shipped_proto_in_separate_pool():
    mod = caffe.proto.load(os.path.join(PROTO_DIR, "caffe.proto"))
    assert mod is not caffe_pb2
    assert mod.LayerParameter.DESCRIPTOR.fields_by_name["norm_param"].number == 206
    assert mod.ConvolutionParameter().bias_term is True


@needs_protoc
def test_env_var(fork_proto, monkeypatch):
    monkeypatch.setenv("CAFFE_PROTO", fork_proto)
    mod = caffe.proto.active()
    assert hasattr(mod, "MyFancyParameter")
    assert caffe.proto.active() is mod
    monkeypatch.delenv("CAFFE_PROTO")
    caffe.proto.reset()
    assert caffe.proto.active() is caffe_pb2


@needs_protoc
def test_load_compile_error_reports_protoc_message(tmp_path):
    bad = tmp_path / "broken.proto"
    bad.write_text('syntax = "proto2";\npackage caffe;\nmessage A { optional Nope x = 1; }\n')
    with pytest.raises(caffe.proto.ProtoCompileError) as ei:
        caffe.proto.load(str(bad))
    msg = str(ei.value)
    assert str(bad) in msg
    assert "Nope" in msg


def test_load_without_grpc_tools(fork_proto, monkeypatch):
    from caffe.proto import regenerate
    monkeypatch.setattr(regenerate, "have_protoc", lambda: False)
    with pytest.raises(ImportError) as ei:
        caffe.proto.load(fork_proto)
    assert 'pip install "torchcaffe[proto]"' in str(ei.value)
    assert fork_proto in str(ei.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        caffe.proto.load(str(tmp_path / "nope.proto"))
