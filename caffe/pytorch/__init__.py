"""Caffe nets as PyTorch: modules, generated code, ONNX.

>>> import caffe.pytorch
>>> model = caffe.pytorch.load("deploy.prototxt", "weights.caffemodel")
>>> out = model(torch.randn(1, 3, 227, 227))      # {"prob": tensor}

``load`` builds a :class:`~caffe.pytorch.module.CaffeModule`; ``from_net``
does the same for an existing ``caffe.Net`` (``net.to_pytorch()``), copying its
weights so the two share nothing.
"""
from .. import _common
from .graph import ModuleBuildError, check_no_data_layers, cut, default_outputs, prepared_param
from .inference_module import InferenceModule
from .module import CaffeModule

__all__ = ["load", "from_net", "CaffeModule", "InferenceModule", "ModuleBuildError"]


def _net_for(param, source, phase, outputs, weights=None, copy_weights_from=None):
    """The caffe.Net a module is made from: the graph cut to ``outputs``, weights in."""
    from ..net import Net, plain_nets
    param = cut(param, outputs, source)
    check_no_data_layers(param, source)
    with plain_nets():
        net = Net(param, phase, level=param.state.level)
    if weights is not None:
        net.copy_from(weights)
    if copy_weights_from is not None:
        for lname, blobs in net.params.items():
            src = copy_weights_from.params.get(lname)
            if src is None:
                continue
            for dst, s in zip(blobs, src):
                dst.data_buffer.host().copy_(s.data_buffer.host_readonly())
    return net, param


def _build(param, source, phase, outputs, weights=None, copy_weights_from=None,
           optimize=False):
    outputs = list(outputs) if outputs is not None else default_outputs(param)
    if optimize and phase != _common.TEST:
        raise ValueError("%s: optimize=True needs phase=caffe.TEST (inference only)" % source)
    net, param = _net_for(param, source, phase, outputs, weights, copy_weights_from)
    if optimize:        # the Net's optimised inference path (caffe/inference.py)
        return InferenceModule(net, outputs)
    if list(net._layer_names) != [l.name for l in param.layer]:
        raise ModuleBuildError("%s: the net's layers do not match its definition" % source)
    return CaffeModule(net, list(param.layer), outputs=outputs, name=param.name)


def load(prototxt, weights=None, phase=_common.TEST, outputs=None, level=0, stages=None,
         optimize=False):
    """A :class:`CaffeModule` for ``prototxt`` (path, text or NetParameter).

    ``weights``: a .caffemodel or .caffemodel.h5; ``outputs``: blob names to
    return (the graph is cut to what they need; default: the net's outputs).
    The module starts in ``.train()`` for ``caffe.TRAIN``, ``.eval()`` for TEST.
    ``optimize=True`` (TEST only) gives an inference-only :class:`InferenceModule`
    running ``net.optimize_for_inference()``'s program (folded BatchNorm, fused
    convolutions): the same outputs to float rounding, faster on CPU.
    """
    source = str(prototxt) if not hasattr(prototxt, "DESCRIPTOR") else "<NetParameter>"
    param = prepared_param(prototxt, phase, level, stages)
    return _build(param, source, phase, outputs, weights=weights, optimize=optimize)


def from_net(net, outputs=None, optimize=False):
    """A :class:`CaffeModule` with a copy of ``net``'s graph and weights
    (``optimize=True``: an :class:`InferenceModule`, as in :func:`load`)."""
    return _build(net._param, net._source, net.phase, outputs, copy_weights_from=net,
                  optimize=optimize)
