"""caffe.pytorch.load / net.to_pytorch: a Caffe net as a torch.nn.Module.

Golden nets and golden layer cases go through the module (outputs and autograd
gradients against real Caffe); the rest covers the module contract: phases,
parameters, sharing, graph cuts, Python layers, torch tooling."""
import copy
import os

import numpy as np
import pytest
import torch
from golden_cases import GOLDEN, NET_TOL, chdir
from pytorch_cases import LAYER_CASES, NET_CASES, check_case, load_case

import caffe
import caffe.pytorch

SLOW = os.environ.get("CAFFE_SLOW_TESTS")


def write(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("folder,name", NET_CASES)
def test_golden_net_outputs_and_gradients(folder, name):
    check_case(folder, name, layer_case=False)


@pytest.mark.parametrize("folder,name", LAYER_CASES)
def test_golden_layer_outputs_and_gradients(folder, name):
    check_case(folder, name, layer_case=True)


def test_python_layer_runs_inside_the_module(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(GOLDEN, "python_layer"))
    module = check_case("python_layer", "python_layer", layer_case=False)
    assert module.layer("scaled").is_blob_layer


def test_forward_takes_inputs_by_position_or_name_and_returns_outputs_in_order():
    module, meta, ref = load_case("nets", "siamese")
    a, b, sim = (torch.tensor(ref["in/" + k]) for k in ("a", "b", "sim"))
    assert module.inputs == ["a", "b", "sim"]
    by_pos = module(a, b, sim)
    by_name = module(sim=sim, a=a, b=b)
    assert list(by_pos) == list(meta["structure"]["outputs"])
    assert torch.equal(by_pos["loss"], by_name["loss"])
    with pytest.raises(TypeError, match="missing input blob"):
        module(a, b)
    with pytest.raises(TypeError, match="not an input blob"):
        module(a, b, sim, bogus=a)


def test_net_to_pytorch_copies_and_shares_nothing():
    with chdir(os.path.join(GOLDEN, "nets")):
        net = caffe.Net("lenet.prototxt", caffe.TEST, weights="lenet.caffemodel")
    module = net.to_pytorch()
    before = net.params["conv1"][0].data.copy()
    with torch.no_grad():
        module.conv1.weight.add_(1.0)
    np.testing.assert_array_equal(net.params["conv1"][0].data, before)
    net.params["ip1"][0].data[...] = 0
    assert module.ip1.weight.abs().sum() > 0


def test_parameter_names_and_batchnorm_buffers():
    module, _, _ = load_case("nets", "mini_resnet")
    state = module.state_dict()
    assert "conv1.weight" in state and "res2b.bias" in state and "fc.bias" in state
    assert {"bn1.running_mean", "bn1.running_var", "bn1.scale_factor"} <= set(state)
    assert "bn1.running_mean" in dict(module.named_buffers())
    assert "scale1.weight" in dict(module.named_parameters())


def test_shared_params_are_one_parameter():
    module, _, _ = load_case("nets", "siamese")
    assert module.ip1.weight is module.ip1_p.weight
    assert module.feat.bias is module.feat_p.bias
    names = [n for n, _ in module.named_parameters()]
    assert "ip1.weight" in names and "ip1_p.weight" not in names   # deduplicated


def test_lr_mult_zero_freezes_the_parameter():
    module, _, _ = load_case("nets", "fcn_mini")
    assert module.upscore.weight.requires_grad is False
    assert module.conv1.weight.requires_grad is True


DROPOUT_BN = """
name: "phases"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 8 dim: 3 dim: 4 dim: 4 } } }
layer { name: "bn" type: "BatchNorm" bottom: "x" top: "bn" }
layer { name: "drop" type: "Dropout" bottom: "bn" top: "drop" dropout_param { dropout_ratio: 0.5 } }
"""


def test_train_eval_switch_dropout_and_batchnorm(tmp_path):
    path = write(tmp_path, DROPOUT_BN)
    module = caffe.pytorch.load(path, phase=caffe.TRAIN, outputs=["bn", "drop"])
    assert module.training
    x = torch.randn(8, 3, 4, 4) * 3 + 2
    out = module(x)
    # TRAIN: batch statistics, and the running sums move (Caffe's moving average)
    assert abs(float(out["bn"].mean())) < 1e-4
    assert float(module.bn.scale_factor) == 1.0
    np.testing.assert_allclose(module.bn.running_mean.numpy(),
                               x.mean((0, 2, 3)).numpy(), rtol=1e-5, atol=1e-5)
    dropped = out["drop"]
    assert bool((dropped == 0).any())
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], out["bn"][kept] * 2)
    module.eval()
    out = module(x)
    torch.testing.assert_close(out["drop"], out["bn"])       # TEST: identity
    ref = caffe.Net(path, caffe.TEST)
    for i, name in enumerate(("running_mean", "running_var", "scale_factor")):
        ref.params["bn"][i].data[...] = getattr(module.bn, name).numpy()
    ref.blobs["x"].data[...] = x.numpy()
    ref.forward()
    np.testing.assert_allclose(out["bn"].detach().numpy(), ref.blobs["bn"].data, rtol=1e-5,
                               atol=1e-6)
    module.train()
    assert module.bn.caffe_layer.use_global_stats is False


def test_outputs_cut_the_graph():
    module, _, ref = load_case("nets", "lenet", outputs=["ip1"])
    assert list(module.layer_children) == ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1"]
    out = module(torch.tensor(ref["in/data"]))
    assert list(out) == ["ip1"]
    # relu1 works in place on ip1: the blob holds the rectified values, as in Caffe
    np.testing.assert_allclose(out["ip1"].detach().numpy(), ref["out/ip1"], **NET_TOL)
    with pytest.raises(ValueError, match="no layer produces"):
        load_case("nets", "lenet", outputs=["nope"])


DATA_NET = """
name: "with_data"
layer { name: "reader" type: "Data" top: "d" top: "label"
        data_param { source: "/nonexistent/lmdb" batch_size: 2 backend: LMDB } }
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 2 } }
layer { name: "ipd" type: "InnerProduct" bottom: "d" top: "ipd" inner_product_param { num_output: 2 } }
"""


def test_data_layers_are_refused_by_name_unless_cut_away(tmp_path):
    path = write(tmp_path, DATA_NET)
    with pytest.raises(caffe.pytorch.ModuleBuildError, match="'reader' \\(type Data\\).*outputs="):
        caffe.pytorch.load(path)
    module = caffe.pytorch.load(path, outputs=["ip"])      # the reader is never built
    assert module.inputs == ["x"] and module(torch.ones(2, 3))["ip"].shape == (2, 2)


FINETUNE = """
name: "finetune"
layer { name: "in" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 16 dim: 5 } shape { dim: 16 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param { num_output: 8 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""


def test_fine_tuning_with_torch_optim_sgd_lowers_the_loss(tmp_path):
    caffe.set_random_seed(3)
    module = caffe.pytorch.load(write(tmp_path, FINETUNE), phase=caffe.TRAIN)
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(16, 5, generator=gen)
    label = (data[:, 0] > 0).float() + (data[:, 1] > 0).float()
    opt = torch.optim.SGD(module.parameters(), lr=0.5, momentum=0.9)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = module.loss(module(data, label))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_state_dict_round_trip_and_deepcopy(tmp_path):
    module, _, ref = load_case("nets", "mini_resnet")
    x = torch.tensor(ref["in/data"])
    expected = module(x)["prob"].detach()
    torch.save(module.state_dict(), str(tmp_path / "m.pth"))
    other, _, _ = load_case("nets", "mini_resnet")
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    other.load_state_dict(torch.load(str(tmp_path / "m.pth")), strict=True)
    torch.testing.assert_close(other(x)["prob"].detach(), expected)
    twin = copy.deepcopy(module)
    with torch.no_grad():
        twin.fc.bias.add_(5)
    torch.testing.assert_close(module(x)["prob"].detach(), expected)


def _cpu_half_conv():
    try:
        torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3).half(), torch.ones(1, 1, 2, 2).half())
    except RuntimeError:   # "slow_conv2d_cpu" not implemented for 'Half' (torch 2.1)
        return False
    return True


@pytest.mark.skipif(not _cpu_half_conv(),
                    reason="torch %s has no float16 convolution on the CPU" % torch.__version__)
def test_half_precision_inference():
    module, _, ref = load_case("nets", "lenet")
    x = torch.tensor(ref["in/data"])
    full = module(x)["prob"].detach()
    half = module.half()(x.half())["prob"].detach()
    assert half.dtype == torch.float16
    np.testing.assert_allclose(half.float().numpy(), full.numpy(), atol=2e-2)


def test_caffe_modules_factory_runs_inside_the_module(tmp_path):
    text = """
name: "custom"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 4 } } }
layer { name: "lin" type: "MyLinear" bottom: "x" top: "y" }
"""
    caffe.modules["MyLinear"] = lambda param: torch.nn.Linear(4, 3)
    try:
        module = caffe.pytorch.load(write(tmp_path, text))
    finally:
        del caffe.modules["MyLinear"]
    assert module.lin.weight.shape == (3, 4) and module.lin.bias.shape == (3,)
    x = torch.randn(2, 4)
    expected = x @ module.lin.weight.t() + module.lin.bias
    torch.testing.assert_close(module(x)["y"], expected)
    module(x)["y"].sum().backward()
    assert module.lin.weight.grad is not None


def test_fork_layer_roi_pooling_matches_the_net(tmp_path):
    text = """
name: "roi"
layer { name: "in" type: "Input" top: "feat" top: "rois"
        input_param { shape { dim: 1 dim: 2 dim: 8 dim: 8 } shape { dim: 2 dim: 5 } } }
layer { name: "pool" type: "ROIPooling" bottom: "feat" bottom: "rois" top: "pooled"
        roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 0.5 } }
"""
    path = write(tmp_path, text)
    net = caffe.Net(path, caffe.TEST)
    feat = np.random.RandomState(0).randn(1, 2, 8, 8).astype(np.float32)
    rois = np.array([[0, 0, 0, 9, 9], [0, 4, 2, 15, 13]], np.float32)
    net.blobs["feat"].data[...] = feat
    net.blobs["rois"].data[...] = rois
    net.forward()
    module = caffe.pytorch.load(path)
    out = module(torch.tensor(feat), torch.tensor(rois))["pooled"]
    np.testing.assert_allclose(out.numpy(), net.blobs["pooled"].data, rtol=1e-6)


def test_torch_export_and_compile_trace_the_module():
    module, _, ref = load_case("nets", "mini_resnet")
    x = torch.tensor(ref["in/data"])
    expected = module(x)["prob"].detach()
    exported = torch.export.export(module, (x,))
    torch.testing.assert_close(exported.module()(x)["prob"], expected)
    # dynamo captures the whole module in one graph (inductor itself: the slow test below)
    small, _, ref = load_case("nets", "lenet")
    x = torch.tensor(ref["in/data"])
    compiled = torch.compile(small, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x)["prob"].detach(), small(x)["prob"].detach())


def test_distributed_data_parallel_wraps_the_module(tmp_path):
    import torch.distributed as dist
    module, _, ref = load_case("nets", "lenet")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        _ddp_backward(module, ref)
    finally:
        # the DDP wrapper (and its reducer, which holds the process group) is gone
        # by now: a Gloo group torn down under a live reducer can hang in its
        # destructor when the reducer is collected later
        dist.destroy_process_group()


def _ddp_backward(module, ref):
    ddp = torch.nn.parallel.DistributedDataParallel(module)
    out = ddp(torch.tensor(ref["in/data"]))["prob"]
    out.sum().backward()
    assert module.conv1.weight.grad is not None


@pytest.mark.skipif(not SLOW, reason="inductor compiles take minutes on a 2-core CPU; "
                                     "set CAFFE_SLOW_TESTS=1")
@pytest.mark.parametrize("model", ["caffenet", "mini_resnet"])
def test_torch_compile_inductor_gives_the_same_outputs(model):
    if model == "caffenet":
        bench = os.path.join(os.path.dirname(GOLDEN), "..", "bench", "models")
        module = caffe.pytorch.load(os.path.join(bench, "caffenet_deploy.prototxt"))
        x = module.example_inputs(batch=1)[0]
        key = "prob"
    else:
        module, _, ref = load_case("nets", "mini_resnet")
        x, key = torch.tensor(ref["in/data"]), "prob"
    expected = module(x)[key].detach()
    compiled = torch.compile(module)
    torch.testing.assert_close(compiled(x)[key].detach(), expected, rtol=1e-4, atol=1e-6)
