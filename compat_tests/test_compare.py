"""caffe.compare: per-blob comparison of caffe.Net with PyTorch / ONNX."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from golden_cases import GOLDEN, chdir
from torch import nn

import caffe
import caffe.pytorch
from caffe import compare as cmp
from caffe import to_pytorch

NETS = os.path.join(GOLDEN, "nets")


def _net(name):
    with chdir(NETS):
        return caffe.Net(name + ".prototxt", caffe.TEST, weights=name + ".caffemodel")


def _module(name):
    with chdir(NETS):
        return caffe.pytorch.load(name + ".prototxt", name + ".caffemodel")


def test_module_compare_covers_every_layer_and_in_place_writes():
    net = _net("mini_resnet")
    result = cmp.compare(net, _module("mini_resnet"), cmp.random_inputs(net, 0))
    names = [r.name for r in result.rows]
    assert result.ok
    assert {"conv1", "conv1@bn1", "conv1@relu1", "res2", "prob", "prob (output)"} <= set(names)
    assert "PASS" in result.table()


def test_a_wrong_weight_is_caught_at_its_blob():
    net = _net("lenet")
    module = _module("lenet")
    with torch.no_grad():
        module.ip1.bias.add_(0.5)
    result = cmp.compare(net, module, cmp.random_inputs(net, 0))
    bad = [r.name for r in result.rows if not r.within(1e-4)]
    assert not result.ok
    assert "conv2" not in bad and bad[0] == "ip1"
    assert "FAIL" in result.table()


class HandLeNet(nn.Module):
    """A user's own LeNet, with its own names."""

    def __init__(self, net):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2),
                                      nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2))
        self.fc1 = nn.Linear(800, 500)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(500, 10)
        with torch.no_grad():
            for mod, layer in ((self.features[0], "conv1"), (self.features[2], "conv2"),
                               (self.fc1, "ip1"), (self.fc2, "ip2")):
                mod.weight.copy_(torch.from_numpy(net.params[layer][0].data))
                mod.bias.copy_(torch.from_numpy(net.params[layer][1].data))

    def forward(self, x):
        x = self.fc2(self.act(self.fc1(self.features(x).flatten(1))))
        return F.softmax(x, dim=1)


def test_own_module_with_a_name_map():
    net = _net("lenet")
    mine = HandLeNet(net)
    name_map = {"conv1": "features.0", "pool2": "features.3", "ip1": "fc1",
                "ip1@relu1": "act", "ip2": "fc2"}
    result = cmp.compare(net, mine, cmp.random_inputs(net, 1), name_map=name_map)
    assert result.ok, result.table()
    assert [r.name for r in result.rows] == list(name_map) + ["prob (output)"]
    with pytest.raises(KeyError, match="no submodule"):
        cmp.compare(net, mine, cmp.random_inputs(net, 1), name_map={"ip1": "nope"})


def test_command_line_pytorch_and_input_file(tmp_path, capsys):
    model = str(tmp_path / "model.py")
    x = np.random.RandomState(3).randn(64, 1, 28, 28).astype(np.float32)
    np.save(str(tmp_path / "x.npy"), x)
    with chdir(NETS):
        assert to_pytorch.main(["lenet.prototxt", "lenet.caffemodel", "-o", model]) == 0
        capsys.readouterr()
        rc = cmp.main(["lenet.prototxt", "lenet.caffemodel", "--pytorch", model,
                       "--input", str(tmp_path / "x.npy")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "conv1 " in out and "prob (output)" in out and "PASS" in out


def test_command_line_onnx_and_exit_code_on_mismatch(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' and 'test' extras")
    from caffe import to_onnx
    out = str(tmp_path / "m.onnx")
    with chdir(NETS):
        assert to_onnx.main(["cifar10_quick.prototxt", "cifar10_quick.caffemodel",
                             "-o", out]) == 0
        assert cmp.main(["cifar10_quick.prototxt", "cifar10_quick.caffemodel",
                         "--onnx", out]) == 0
        # the same file against other weights: a mismatch, exit code 1
        other = caffe.Net("cifar10_quick.prototxt", caffe.TEST,
                          weights="cifar10_quick.caffemodel")
        other.params["ip2"][1].data[...] += np.arange(10)   # not a softmax-invariant shift
        other.save(str(tmp_path / "other.caffemodel"))
        capsys.readouterr()
        assert cmp.main(["cifar10_quick.prototxt", str(tmp_path / "other.caffemodel"),
                         "--onnx", out]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    with chdir(NETS):
        rc = cmp.main(["lenet.prototxt", "lenet.caffemodel", "--module",
                       "--input", "bogus=%s" % (tmp_path / "x.npy")])
    assert rc == 2
    assert "no input 'bogus'" in capsys.readouterr().err
