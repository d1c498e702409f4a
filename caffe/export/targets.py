"""Which Caffe layer types each export target may use.

``bvlc``: only layers of BVLC Caffe master (what TensorRT's parser, ncnn and
OpenCV's importer read).  ``ssd``: BVLC plus weiliu89's SSD fork layers
(Permute, Normalize, PriorBox, ...).  ``any``: every type this package
registers (adds Upsample, Interp and the other fork layers).
"""

BVLC_TYPES = frozenset("""
AbsVal Accuracy ArgMax BatchNorm BatchReindex Bias BNLL Clip Concat ContrastiveLoss
Convolution Crop Data Deconvolution Dropout DummyData Eltwise ELU Embed EuclideanLoss Exp
Filter Flatten HDF5Data HDF5Output HingeLoss Im2col ImageData InfogainLoss InnerProduct Input
Log LRN LSTM LSTMUnit MemoryData MultinomialLogisticLoss MVN Parameter Pooling Power PReLU
Python Recurrent Reduction ReLU Reshape RNN Scale Sigmoid SigmoidCrossEntropyLoss Silence
Slice Softmax SoftmaxWithLoss Split SPP Swish TanH Threshold Tile WindowData
""".split())

SSD_TYPES = BVLC_TYPES | frozenset("""
AnnotatedData DetectionEvaluate DetectionOutput MultiBoxLoss Normalize Permute PriorBox
SmoothL1Loss VideoData
""".split())

TARGETS = ("bvlc", "ssd", "any")


def allowed(target, layer_type):
    """True when ``layer_type`` may appear in a net written for ``target``."""
    if target == "bvlc":
        return layer_type in BVLC_TYPES
    if target == "ssd":
        return layer_type in SSD_TYPES
    if target == "any":
        from .. import layer_type_list
        return layer_type in set(layer_type_list())
    raise ValueError("unknown export target %r (choose one of %s)" % (target, ", ".join(TARGETS)))


def check_target(target):
    if target not in TARGETS:
        raise ValueError("unknown export target %r (choose one of %s)" % (
            target, ", ".join(TARGETS)))
    return target
