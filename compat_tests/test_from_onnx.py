"""ONNX -> Caffe (caffe.from_onnx): models exported by torch.onnx and hand-built
graphs, verified against onnxruntime; refusals; CLI."""
import numpy as np
import pytest
import torch
import torch.nn as nn

onnx = pytest.importorskip("onnx", reason="the onnx extra (onnx, onnxruntime) is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxruntime) is not installed")

from export_zoo import ZOO, randomize  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import caffe  # noqa: E402
from caffe.export import UnsupportedOpError  # noqa: E402
from caffe.protoio import read_net_param  # noqa: E402
from caffe.pytorch.onnx_export import torchscript_exporter  # noqa: E402


def torch_to_onnx(model, x, path):
    """The TorchScript exporter: fast, and it writes plain opset-17 nodes."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _export(model, x, path)


def _export(model, x, path):
    torch.onnx.export(model, (x,), str(path), opset_version=17, input_names=["data"],
                      **torchscript_exporter())
    return str(path)


def convert(path_or_model, tmp_path, **kw):
    prefix = str(tmp_path / "m")
    report = caffe.from_onnx(path_or_model, prefix + ".prototxt", prefix + ".caffemodel", **kw)
    return report, prefix


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "squeezenet", "unet",
                                  "ssd_head", "inception_block"])
def test_torch_exported_models_match_onnxruntime(name, tmp_path):
    factory, make_input, target, _ = ZOO[name]
    torch.manual_seed(0)
    model = randomize(factory())
    path = torch_to_onnx(model, make_input(), tmp_path / "m.onnx")
    report, _ = convert(path, tmp_path, target=target)
    assert report.verified and report.ok
    outs = [r for r in report.rows if r.name in report.outputs]
    assert outs and all(r.max_rel <= 1e-4 for r in outs), report.table
    assert all(r.within(1e-4, 1e-6) for r in report.rows), report.table


def _const(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _model(nodes, inits, in_shape, outs, opset=17):
    graph = helper.make_graph(
        nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_hand_built_graph_with_batchnorm_pad_clip_gemm(tmp_path):
    rng = np.random.RandomState(0)
    c = 4
    inits = [_const("w", rng.randn(c, 3, 3, 3)), _const("b", rng.randn(c)),
             _const("g", rng.rand(c) + .5), _const("beta", rng.randn(c)),
             _const("mean", rng.randn(c)), _const("var", rng.rand(c) + .5),
             _const("fw", rng.randn(5, c)), _const("fb", rng.randn(5)),
             numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
             _const("lo", 0.0), _const("hi", 6.0), _const("half", 0.5)]
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
        helper.make_node("Conv", ["p", "w", "b"], ["y"], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["y", "g", "beta", "mean", "var"], ["bn"],
                         epsilon=1e-3),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["r6"]),
        helper.make_node("HardSigmoid", ["r6"], ["hs"], alpha=0.3, beta=0.4),
        helper.make_node("Mul", ["hs", "half"], ["m"]),
        helper.make_node("MaxPool", ["m"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["mp"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["fc"], transB=1),
        helper.make_node("Softmax", ["fc"], ["prob"], axis=1),
    ]
    model = _model(nodes, inits, [2, 3, 9, 9], ["prob"])
    report, prefix = convert(model, tmp_path)
    assert report.ok and all(r.within(1e-4, 1e-6) for r in report.rows), report.table
    types = [lp.type for lp in read_net_param(prefix + ".prototxt").layer]
    assert "BatchNorm" in types and "Clip" in types and "Slice" in types   # odd size trimmed
    assert report.outputs == ["prob"]


def test_refusal_names_op_and_node(tmp_path):
    nodes = [helper.make_node("Erf", ["x"], ["e"], name="my_erf")]
    with pytest.raises(UnsupportedOpError) as err:
        convert(_model(nodes, [], [1, 3], ["e"]), tmp_path)
    msg = str(err.value)
    assert "Erf" in msg and "my_erf" in msg and "node #0" in msg and "Conv" in msg


def test_refusal_align_corners_resize(tmp_path):
    model = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
    path = torch_to_onnx(model, torch.randn(1, 2, 4, 4), tmp_path / "r.onnx")
    with pytest.raises(UnsupportedOpError, match="align_corners"):
        convert(path, tmp_path)


def test_cli(tmp_path, capsys):
    from caffe import from_onnx as cli
    model = randomize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                    nn.Flatten(), nn.Linear(4 * 6 * 6, 3)))
    path = torch_to_onnx(model, torch.randn(1, 3, 8, 8), tmp_path / "c.onnx")
    rc = cli.main([path, "-o", str(tmp_path / "out" / "c")])
    out = capsys.readouterr().out
    assert rc == 0 and "max rel" in out and "PASSED" in out
    assert (tmp_path / "out" / "c.caffemodel").exists()
