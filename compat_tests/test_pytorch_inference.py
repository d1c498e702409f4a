"""caffe.pytorch.load(..., optimize=True): the optimised inference program as an
inference-only nn.Module, equal to the plain module's outputs."""
import os

import numpy as np
import pytest
import torch
from inference_cases import RESIDUAL

import caffe
import caffe.pytorch
from caffe import protoio
from caffe.inference import OptimizedBlobError
from caffe.tools import merge_bn as mb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LENET = os.path.join(ROOT, "examples", "lenet_deploy")



def _close(a, b, rtol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    assert np.abs(a - b).max() <= rtol * max(np.abs(a).max(), 1e-30)


def test_lenet_optimised_module_matches_plain_module():
    proto = os.path.join(LENET, "deploy.prototxt")
    weights = os.path.join(LENET, "lenet.caffemodel")
    plain = caffe.pytorch.load(proto, weights)
    fast = caffe.pytorch.load(proto, weights, optimize=True)
    assert isinstance(fast, caffe.pytorch.InferenceModule) and not fast.training
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = plain(x)
    got = fast(x)
    assert list(got) == list(want) == ["prob"]
    _close(want["prob"], got["prob"])
    assert fast.program in caffe.inference.PROGRAMS
    x8 = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))   # new batch
    with torch.no_grad():
        _close(plain(x8)["prob"], fast(data=x8)["prob"])
    with pytest.raises(TypeError, match="missing input blob"):
        fast()


def _residual():
    param = protoio.parse_text(RESIDUAL, protoio.pb2().NetParameter(), "<test>")
    net = caffe.Net(param, caffe.TEST)
    for name, arrays in mb.random_weights(param, 3).items():
        for blob, arr in zip(net.params[name], arrays):
            blob.data[...] = arr
    return net


def test_from_net_optimised_folds_and_sees_new_weights():
    net = _residual()
    plain = net.to_pytorch()
    fast = net.to_pytorch(optimize=True)
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _close(plain(x)["ip"], fast(x)["ip"])
    steps = fast.net._inference.steps
    assert any(st[0] == "fused" and st[1].names == ["conv", "bn", "sc", "sum", "relu"]
               for st in steps)
    # the module's weights are its Net's: a write there is seen by the next forward
    fast.net.params["bn"][1].data[...] += 2.0
    plain.layer("bn").running_var += 2.0 * plain.layer("bn").scale_factor
    with torch.no_grad():
        _close(plain(x)["ip"], fast(x)["ip"])
    x9 = torch.randn(5, 4, 6, 6, generator=torch.Generator().manual_seed(2))   # new batch size
    with torch.no_grad():
        _close(plain(x9)["ip"], fast(x9)["ip"])


def test_optimised_module_is_inference_only_and_names_fused_outputs():
    net = _residual()
    fast = net.to_pytorch(optimize=True)
    with pytest.raises(RuntimeError, match="inference-only"):
        fast.train()
    with pytest.raises(OptimizedBlobError, match="'conv'.*conv \\+ bn \\+ sc"):
        net.to_pytorch(outputs=["conv", "ip"], optimize=True)
    out = net.to_pytorch(outputs=["pool", "ip"], optimize=True)(torch.randn(2, 4, 6, 6))
    assert list(out) == ["pool", "ip"] and out["pool"].shape == (2, 8, 3, 3)
    train = protoio.parse_text(RESIDUAL, protoio.pb2().NetParameter(), "<test>")
    with pytest.raises(ValueError, match="optimize=True needs phase=caffe.TEST"):
        caffe.pytorch.load(train, phase=caffe.TRAIN, optimize=True)
