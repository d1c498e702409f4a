"""caffe.to_pytorch: generated model.py files, run where ``import caffe`` fails.

Every golden net and every golden layer case whose layers all have a code
emitter is generated, then one fresh interpreter (with ``caffe`` blocked)
imports each file, loads its .pth with strict=True and runs the golden inputs;
the outputs must equal the caffe.pytorch module's (<= 1e-5 relative).  Cases
with a layer that has no standalone form must fail at generation time naming
the layer."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from golden_cases import GOLDEN, chdir
from pytorch_cases import LAYER_CASES, NET_CASES, case_inputs, load_case

import caffe
import caffe.pytorch
from caffe import to_pytorch
from caffe.pytorch.codegen import CodegenError, generate, write

RUNNER = r'''
import importlib.util, sys
import numpy as np
sys.modules["caffe"] = None          # any "import caffe" in a generated file now fails
import torch
out_dir = sys.argv[1]
for name in sys.argv[2:]:
    spec = importlib.util.spec_from_file_location("gen_" + name, "%s/%s.py" % (out_dir, name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.load()
    feed = dict(np.load("%s/%s.in.npz" % (out_dir, name)))
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
    np.savez("%s/%s.out.npz" % (out_dir, name), **{k: v.detach().numpy() for k, v in out.items()})
print("ran", len(sys.argv) - 2)
'''


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """name -> (module outputs, generated outputs) for every case codegen supports."""
    out_dir = tmp_path_factory.mktemp("generated")
    expected = {}
    unsupported = {}
    for folder, name in NET_CASES + LAYER_CASES:
        module, meta, ref = load_case(folder, name)
        feed = case_inputs(module, ref)
        feed = {k: feed[k] for k in module.inputs}
        if folder == "nets":     # the command line, as a user runs it
            with chdir(os.path.join(GOLDEN, folder)):
                rc = to_pytorch.main([name + ".prototxt", name + ".caffemodel",
                                      "--phase", meta.get("phase", "TEST"),
                                      "--stage", ",".join(meta.get("stages") or []),
                                      "-o", str(out_dir / (name + ".py"))])
            assert rc == 0
        else:
            try:
                write(module, str(out_dir / (name + ".py")), source=name + ".prototxt")
            except CodegenError:
                unsupported[name] = module
                continue
        with torch.no_grad():
            expected[name] = {k: v.numpy() for k, v in module(**feed).items()}
        np.savez(str(out_dir / (name + ".in.npz")), **{k: v.numpy() for k, v in feed.items()})
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(out_dir)] + sorted(expected),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {}
    for name, exp in expected.items():
        got = dict(np.load(str(out_dir / (name + ".out.npz"))))
        results[name] = (exp, got)
    return results, unsupported, out_dir


@pytest.mark.parametrize("folder,name", NET_CASES)
def test_golden_nets_generate_and_match_without_caffe(generated, folder, name):
    results, unsupported, _ = generated
    assert name in results, "golden net %s must be supported by codegen" % name
    exp, got = results[name]
    assert list(got) == list(exp)
    for k in exp:
        np.testing.assert_allclose(got[k], exp[k], rtol=1e-5, atol=1e-6 * max(
            1.0, float(np.abs(exp[k]).max())), err_msg="%s: %s" % (name, k))


def test_golden_layer_cases_generate_and_match_without_caffe(generated):
    results, unsupported, _ = generated
    layer_names = [n for f, n in LAYER_CASES]
    checked = [n for n in layer_names if n in results]
    assert len(checked) >= 60
    for name in checked:
        exp, got = results[name]
        for k in exp:
            scale = max(1.0, float(np.abs(exp[k]).max()))
            np.testing.assert_allclose(got[k], exp[k], rtol=1e-5, atol=1e-6 * scale,
                                       err_msg="%s: %s" % (name, k))


def test_unsupported_layers_fail_at_generation_naming_the_layer(generated, monkeypatch):
    _, unsupported, _ = generated
    for name, module in unsupported.items():    # every golden layer type has an emitter now
        with pytest.raises(CodegenError, match="layer '"):
            generate(module, source=name + ".prototxt")
    monkeypatch.syspath_prepend(os.path.join(GOLDEN, "python_layer"))   # Python layers have none
    with chdir(os.path.join(GOLDEN, "python_layer")):
        module = caffe.pytorch.load("python_layer.prototxt", phase=caffe.TRAIN)
    with pytest.raises(CodegenError, match=r"layer 'scaled' \(type Python\)"):
        generate(module, source="python_layer.prototxt")


def test_generated_file_is_plain_torch(generated):
    _, _, out_dir = generated
    text = (out_dir / "mini_resnet.py").read_text()
    assert "import caffe" not in text and "from caffe" not in text
    assert "class Model(nn.Module):" in text
    assert "self.conv1 = nn.Conv2d(3, 8" in text
    assert "def caffe_pool2d(" in text and "class CaffeBatchNorm(" in text
    assert "F.relu(conv1)  # in place in Caffe" in text
    # one line per layer in forward (Split layers are plain aliases)
    forward = text.split("class Model(")[1].split("def forward(")[1].split("\n\n")[0]
    assert forward.count(" = ") == 15


def _import(path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("gen_%d" % id(path), str(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_model_keeps_sharing_freezing_and_phase(generated, tmp_path):
    _, _, out_dir = generated
    siamese = _import(out_dir / "siamese.py").load()
    assert siamese.ip1_p.weight is siamese.ip1.weight
    fcn = _import(out_dir / "fcn_mini.py").load()
    assert fcn.upscore.weight.requires_grad is False
    assert fcn.training                     # generated from the TRAIN phase net
    resnet = _import(out_dir / "mini_resnet.py").load()
    assert not resnet.training


def test_generated_batchnorm_train_mode_matches_the_module(tmp_path):
    text = """
name: "bn"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 dim: 2 dim: 2 } } }
layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" }
layer { name: "sc" type: "Scale" bottom: "y" top: "y" scale_param { bias_term: true } }
"""
    path = tmp_path / "bn.prototxt"
    path.write_text(text)
    module = caffe.pytorch.load(str(path), phase=caffe.TRAIN)
    from caffe.pytorch.codegen import write
    write(module, str(tmp_path / "bn_model.py"))
    model = _import(tmp_path / "bn_model.py").Model()
    model.load_state_dict(module.state_dict(), strict=True)
    x = torch.randn(4, 3, 2, 2) * 2 + 1
    for _ in range(2):
        torch.testing.assert_close(model(x)["y"], module(x)["y"])
    torch.testing.assert_close(model.bn.running_var, module.bn.running_var)
    model.eval()
    module.eval()
    torch.testing.assert_close(model(x)["y"], module(x)["y"])


def test_python_layer_has_no_standalone_form(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(os.path.join(GOLDEN, "python_layer"))
    with chdir(os.path.join(GOLDEN, "python_layer")):
        rc = to_pytorch.main(["python_layer.prototxt", "python_layer.caffemodel", "--phase",
                              "TRAIN", "-o", str(tmp_path / "m.py")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "layer 'scaled' (type Python)" in err and "caffe.pytorch.load" in err
    assert not (tmp_path / "m.py").exists()


DEPLOY_FILES = ["examples/lenet_deploy/deploy.prototxt", "bench/models/lenet_deploy.prototxt",
                "bench/models/cifar10_quick.prototxt",
                pytest.param("bench/models/caffenet_deploy.prototxt", marks=pytest.mark.skipif(
                    not os.environ.get("CAFFE_SLOW_TESTS"),
                    reason="CaffeNet's 60M filler weights take a while; set CAFFE_SLOW_TESTS=1"))]


@pytest.mark.parametrize("rel", DEPLOY_FILES)
def test_project_deploy_prototxts_module_and_code_match_the_net(rel, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, rel)
    caffe.set_random_seed(5)
    net = caffe.Net(path, caffe.TEST)          # filler weights
    name = net.inputs[0]
    net.blobs[name].reshape(1, *net.blobs[name].shape[1:])
    net.reshape()
    x = np.random.RandomState(0).rand(*net.blobs[name].shape).astype(np.float32)
    net.blobs[name].data[...] = x
    net.forward()
    module = net.to_pytorch().eval()
    from caffe.pytorch.codegen import write
    write(module, str(tmp_path / "m.py"), source=rel)
    model = _import(tmp_path / "m.py").load()
    with torch.no_grad():
        a = module(torch.from_numpy(x))
        b = model(torch.from_numpy(x))
    for out in net.outputs:
        np.testing.assert_allclose(a[out].numpy(), net.blobs[out].data, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b[out].numpy(), a[out].numpy(), rtol=1e-5, atol=1e-6)



MODEL_ZOO = ["googlenet_deploy", "mobilenet_deploy", "resnet50_deploy",
             pytest.param("vgg16_deploy", marks=pytest.mark.skipif(
                 not os.environ.get("CAFFE_SLOW_TESTS"),
                 reason="VGG-16's 138M filler weights take a while; set CAFFE_SLOW_TESTS=1"))]


@pytest.mark.parametrize("name", MODEL_ZOO)
def test_model_zoo_deploy_prototxts_generate_code_matching_the_module(name, tmp_path):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models",
                        name + ".prototxt")
    caffe.set_random_seed(7)
    module = caffe.pytorch.load(path)            # filler weights
    from caffe.pytorch.codegen import generate
    gen = generate(module, source=path)
    (tmp_path / "m.py").write_text(gen.source)
    model = _import(tmp_path / "m.py").Model()
    model.load_state_dict(gen.state_dict, strict=True)
    model.eval()
    x = torch.rand(1, *module.input_shapes[module.inputs[0]][1:])
    with torch.no_grad():
        a = module(x)
        b = model(x)
    for out in module.outputs:
        np.testing.assert_allclose(b[out].numpy(), a[out].numpy(), rtol=1e-5,
                                   atol=1e-6 * max(1.0, float(a[out].abs().max())))
