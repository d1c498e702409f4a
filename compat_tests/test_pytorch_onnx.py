"""caffe.to_onnx: ONNX files checked in onnxruntime (the independent reference).

Golden nets and golden layer cases are exported with their golden inputs and
run in onnxruntime; outputs must equal the caffe.pytorch module's (<= 1e-4
relative).  The layer families the issue lists must all export."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' and 'test' extras")

from golden_cases import GOLDEN, chdir
from pytorch_cases import LAYER_CASES, NET_CASES, case_inputs, load_case

import caffe
import caffe.pytorch
from caffe import to_onnx
from caffe.pytorch import onnx_export
from caffe.verification import compare_named, verdict, worst

MUST_EXPORT = {"LRN", "Pooling", "Normalize", "Permute", "PriorBox", "Crop", "Deconvolution",
               "Slice", "Eltwise", "Scale", "Bias", "BatchNorm", "PReLU", "Softmax"}


def _roundtrip(folder, name, tmp_path):
    module, meta, ref = load_case(folder, name)
    module.eval()
    feed = case_inputs(module, ref)
    feed = {k: feed[k] for k in module.inputs}
    path = str(tmp_path / (name + ".onnx"))
    onnx_export.export(onnx_export.exportable_model(module), path, inputs=feed)
    with torch.no_grad():
        expected = module(**feed)
    rows = compare_named(expected, onnx_export.run_onnx(path, feed))
    return module, rows


@pytest.mark.parametrize("folder,name", NET_CASES)
def test_golden_nets_in_onnxruntime(folder, name, tmp_path):
    _, rows = _roundtrip(folder, name, tmp_path)
    assert verdict(rows, rtol=1e-4), worst(rows)


def test_layer_families_export(tmp_path):
    exported = set()
    failures = []
    for folder, name in LAYER_CASES:
        module = load_case(folder, name)[0]
        if module.layer_types.get("L") not in MUST_EXPORT:    # the case's layer
            continue
        try:
            _, rows = _roundtrip(folder, name, tmp_path)
        except Exception as exc:  # reported together below
            failures.append("%s: %s" % (name, exc))
            continue
        if not verdict(rows, rtol=1e-4):
            failures.append("%s: %s" % (name, worst(rows)))
            continue
        exported.add(module.layer_types["L"])
    assert not failures, failures
    assert MUST_EXPORT <= exported, MUST_EXPORT - exported


def test_command_line_with_dynamic_batch(tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    with chdir(GOLDEN + "/nets"):
        rc = to_onnx.main(["mini_resnet.prototxt", "mini_resnet.caffemodel", "-o", out,
                           "--dynamic-batch", "--opset", "13"])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "module vs onnxruntime (batch + 1)" in printed and "wrote" in printed
    x = np.random.RandomState(0).rand(5, 3, 16, 16).astype(np.float32)
    with chdir(GOLDEN + "/nets"):
        module = caffe.pytorch.load("mini_resnet.prototxt", "mini_resnet.caffemodel")
    got = onnx_export.run_onnx(out, {"data": x})["prob"]
    with torch.no_grad():
        np.testing.assert_allclose(got, module(torch.from_numpy(x))["prob"].numpy(),
                                   rtol=1e-4, atol=1e-6)
    import onnx
    model = onnx.load(out)
    assert model.opset_import[0].version == 13


def test_layer_without_onnx_form_fails_cleanly(tmp_path, capsys):
    # ArgMax's sort has no ONNX form in torch's exporter: a clear error, no file
    text = """
name: "am"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 5 } } }
layer { name: "am" type: "ArgMax" bottom: "x" top: "y" argmax_param { top_k: 2 } }
"""
    path = tmp_path / "am.prototxt"
    path.write_text(text)
    out = tmp_path / "am.onnx"
    assert to_onnx.main([str(path), "-o", str(out)]) == 1
    assert "to_onnx: error:" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "am.onnx.tmp").exists()
