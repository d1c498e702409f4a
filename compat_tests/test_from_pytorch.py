"""PyTorch -> Caffe exporter (caffe.from_pytorch): the model zoo, op coverage,
refusals, BVLC-only output, OpenCV's independent Caffe importer, and the CLI."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from export_zoo import ZOO, randomize

import caffe
from caffe.export import UnsupportedOpError, VerificationError
from caffe.export.torch_graph import MIN_TORCH
from caffe.protoio import read_net_param

pytestmark = pytest.mark.skipif(
    tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < MIN_TORCH,
    reason="caffe.from_pytorch needs torch >= %d.%d (this is %s; test_floors.py checks the "
           "refusal)" % (MIN_TORCH + (torch.__version__,)))

HERE = os.path.dirname(os.path.abspath(__file__))
BVLC_PROTO = os.path.join(HERE, "golden", "bvlc", "caffe.proto")


def export(model, inputs, tmp_path, name="m", **kw):
    prefix = str(tmp_path / name)
    report = caffe.from_pytorch(model, inputs, prefix + ".prototxt", prefix + ".caffemodel",
                                **kw)
    return report, prefix


@pytest.fixture(scope="module")
def bvlc_net_class(tmp_path_factory):
    """BVLC master's NetParameter in its own descriptor pool (not our superset)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    protoc = pytest.importorskip("grpc_tools.protoc",
                                 reason="grpcio-tools (the test extra) compiles BVLC's caffe.proto")
    out = str(tmp_path_factory.mktemp("bvlc") / "caffe.pb")
    rc = protoc.main(["protoc", "-I" + os.path.dirname(BVLC_PROTO),
                      "--descriptor_set_out=" + out, "caffe.proto"])
    assert rc == 0
    fds = descriptor_pb2.FileDescriptorSet.FromString(open(out, "rb").read())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    desc = pool.FindMessageTypeByName("caffe.NetParameter")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)   # protobuf 4.21 has no GetMessageClass


def assert_bvlc_only(cls, prefix):
    """Both files parse with BVLC's caffe.proto with no unknown field anywhere."""
    from google.protobuf import text_format
    text_format.Parse(open(prefix + ".prototxt").read(), cls())   # unknown field -> raises
    data = open(prefix + ".caffemodel", "rb").read()
    msg = cls.FromString(data)
    msg.DiscardUnknownFields()
    assert msg.SerializeToString() == data, "caffemodel has fields BVLC's caffe.proto lacks"


def _importable(name):
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def opencv_outputs(prefix, x, outputs):
    import cv2
    assert hasattr(cv2.dnn, "readNetFromCaffe"), (
        "cv2 %s has no Caffe importer (OpenCV 5 dropped it): install the test extra's "
        "opencv-python-headless<5" % cv2.__version__)
    param = read_net_param(prefix + ".prototxt")
    net = cv2.dnn.readNetFromCaffe(prefix + ".prototxt", prefix + ".caffemodel")
    net.setInput(np.ascontiguousarray(x, dtype=np.float32))
    results = []
    for blob in outputs:
        layer = [lp.name for lp in param.layer if blob in lp.top][-1]
        try:
            results.append(net.forward(layer))
        except Exception:   # OpenCV resolves some names only by blob
            results.append(net.forward(blob))
    return results


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_exports_and_matches(name, tmp_path, bvlc_net_class):
    factory, make_input, target, check_opencv = ZOO[name]
    torch.manual_seed(0)
    model = randomize(factory())
    x = make_input()
    report, prefix = export(model, (x,), tmp_path, target=target)
    assert report.verified and report.ok
    outs = [r for r in report.rows if r.name in report.outputs]
    assert len(outs) == len(report.outputs) >= 1
    assert all(r.max_rel <= 1e-4 and not r.note for r in outs), report.table
    # the intermediates too, not only the outputs
    assert all(r.within(1e-4, 1e-6) for r in report.rows), report.table
    if target == "bvlc":
        assert_bvlc_only(bvlc_net_class, prefix)
    if check_opencv:
        with torch.no_grad():
            ref = model(x)
        ref = ref if isinstance(ref, tuple) else (ref,)
        for _blob, got, r in zip(report.outputs, opencv_outputs(prefix, x.numpy(),
                                                               report.outputs), ref):
            np.testing.assert_allclose(got.reshape(r.shape), r.numpy(), rtol=1e-3,
                                       atol=1e-3 * float(r.abs().max()))


def test_layer_names_follow_module_paths_and_relu_is_in_place(tmp_path):
    model = randomize(ZOO["resnet18"][0]())
    report, prefix = export(model, (torch.randn(1, 3, 32, 32),), tmp_path)
    param = read_net_param(prefix + ".prototxt")
    by_name = {lp.name: lp for lp in param.layer}
    assert by_name["layer1.0.conv1"].type == "Convolution"
    assert by_name["layer1.0.bn1"].type == "BatchNorm"
    assert by_name["layer2.0.downsample.0"].convolution_param.stride == [2]
    relus = [lp for lp in param.layer if lp.type == "ReLU"]
    assert relus and all(lp.top[0] == lp.bottom[0] for lp in relus)


def test_merge_bn_folds_batchnorm_into_convolution(tmp_path):
    model = randomize(ZOO["mobilenet_v2"][0]())
    x = torch.randn(1, 3, 32, 32)
    report, prefix = export(model, (x,), tmp_path, merge_bn=True)
    types = [lp.type for lp in read_net_param(prefix + ".prototxt").layer]
    assert "BatchNorm" not in types and "Scale" not in types
    assert report.ok


def test_verification_failure_raises_with_table(tmp_path):
    class M(nn.Module):
        def forward(self, x):
            return F.hardswish(x) * 3.7
    with pytest.raises(VerificationError) as err:
        export(M(), (torch.randn(2, 5, 7, 7),), tmp_path, rtol=0.0)
    assert "max rel" in str(err.value) and err.value.report is not None


def test_input_and_output_names(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    report, prefix = export(model, (torch.randn(1, 3, 8, 8),), tmp_path,
                            input_names=["data"], output_names=["prob"])
    net = caffe.Net(prefix + ".prototxt", prefix + ".caffemodel", caffe.TEST)
    assert list(net.inputs) == ["data"] and list(net.outputs) == ["prob"]
    assert report.ok


# -- single ops and their parameters -------------------------------------------------

class Lambda(nn.Module):
    def __init__(self, fn, *mods):
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleList(mods)

    def forward(self, x):
        return self.fn(x, *self.mods)


def _c(*a, **k):
    return nn.Conv2d(*a, **k)


OPS = {
    "conv1d": (lambda x, m: m(x), [nn.Conv1d(4, 6, 3, padding=2, dilation=2)], (2, 4, 11)),
    "conv_rect_group_stride": (lambda x, m: m(x), [_c(4, 6, (3, 1), (2, 1), (1, 0), groups=2)],
                               (1, 4, 9, 7)),
    "conv_same": (lambda x, m: m(x), [_c(3, 4, 5, padding="same")], (1, 3, 9, 9)),
    "deconv_output_padding": (lambda x, m: m(x),
                              [nn.ConvTranspose2d(4, 6, 3, 2, padding=1, output_padding=1)],
                              (1, 4, 5, 6)),
    "pad_then_conv": (lambda x, m: m(F.pad(x, (2, 2, 1, 1))), [_c(3, 4, 3)], (1, 3, 8, 8)),
    "pool_floor_trim": (lambda x: F.max_pool2d(x, 3, 2) + 0 * F.avg_pool2d(x, 3, 2),
                        [], (1, 3, 10, 12)),
    "avg_pool_pad_ceil": (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), [], (1, 2, 10, 9)),
    "adaptive_divisor": (lambda x: F.adaptive_max_pool2d(x, (2, 3)), [], (1, 2, 8, 9)),
    "activations": (lambda x, p: F.elu(F.leaky_relu(p(torch.tanh(x)), 0.2), 0.7)
                    + F.relu6(x * 4) + F.hardtanh(x, -0.5, 0.25) + torch.sigmoid(x),
                    [nn.PReLU(3)], (1, 3, 4, 4)),
    "gelu_tanh_silu": (lambda x: F.gelu(x, approximate="tanh") + F.silu(x)
                       + F.hardsigmoid(x), [], (2, 8)),
    "log_softmax": (lambda x: F.log_softmax(x, dim=1), [], (2, 7, 3)),
    "norms": (lambda x, g, i, l: l(i(g(x)).permute(0, 1, 2, 3)),
              [nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True), nn.LayerNorm(5)],
              (2, 4, 3, 5)),
    "layer_norm_2d": (lambda x, l: l(x), [nn.LayerNorm(6)], (3, 6)),
    "split_narrow_select": (lambda x: torch.cat(list(torch.split(x, [1, 4], 1))[::-1], 1)
                            [:, 1:2] + x.narrow(1, 3, 1) * 0.5
                            + x[:, 2:3] * x.select(1, 0).unsqueeze(1), [], (1, 5, 3, 3)),
    "scalar_arith": (lambda x: (2 - x) / 4 + x * 3 - 1 + (x + 1) ** 2 + torch.abs(x).sqrt()
                     + torch.exp(-x), [], (2, 3, 2, 2)),
    "const_broadcast": (lambda x, m: x * m.weight.view(1, -1, 1, 1) + m.bias.view(1, 3, 1, 1)
                        - m.weight.view(3, 1, 1), [nn.BatchNorm2d(3)], (2, 3, 4, 4)),
    "matmul_const": (lambda x, l: x @ l.weight.t() + torch.addmm(l.bias, x, l.weight.t()),
                     [nn.Linear(5, 5)], (3, 5)),
    "mean_max_argmax": (lambda x: torch.cat([x.mean((2, 3)), x.mean(-1).mean(-1, keepdim=True)
                                             .squeeze(-1), torch.max(x.flatten(2), 2)[0]], 1),
                        [], (2, 3, 4, 5)),
    "nearest_upsample": (lambda x: F.interpolate(x, scale_factor=(2, 3), mode="nearest"), [],
                         (1, 2, 3, 4)),
    "bilinear_x3": (lambda x: F.interpolate(x, scale_factor=3, mode="bilinear"), [],
                    (1, 2, 4, 5)),
    "div_broadcast": (lambda x: x / (x.mean((2, 3), keepdim=True).abs() + 1), [],
                      (2, 3, 4, 4)),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op(name, tmp_path):
    fn, mods, shape = OPS[name]
    torch.manual_seed(0)
    model = randomize(Lambda(fn, *mods))
    report, _ = export(model, (torch.randn(*shape),), tmp_path)
    assert report.ok and all(r.within(1e-4, 1e-6) for r in report.rows), report.table


def test_channel_shuffle_needs_permute_target(tmp_path):
    from export_zoo import channel_shuffle
    model = nn.Sequential(nn.Conv2d(4, 4, 1), Lambda(lambda x: channel_shuffle(x, 2)))
    x = torch.randn(1, 4, 3, 3)
    with pytest.raises(UnsupportedOpError, match="Permute.*target='ssd'"):
        export(model, (x,), tmp_path, target="bvlc")
    report, prefix = export(model, (x,), tmp_path, target="ssd")
    assert "Permute" in [lp.type for lp in read_net_param(prefix + ".prototxt").layer]


# -- refusals: op, module path, source line, what is supported -------------------------

class Block(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.fn(self.conv(x))


class Outer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.body = nn.Sequential(nn.Identity(), Block(fn))

    def forward(self, x):
        return self.body(x)


REFUSED = {
    "erf_gelu": (lambda x: F.gelu(x), "aten.gelu", "approximate='tanh'"),
    "align_corners": (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear",
                                              align_corners=True), "upsample_bilinear2d",
                      "align_corners=True"),
    "adaptive_non_divisor": (lambda x: F.adaptive_avg_pool2d(x, 3), "adaptive_avg_pool2d",
                             "exact-divisor"),
    "asymmetric_pad": (lambda x: F.max_pool2d(F.pad(x, (1, 0, 0, 0)), 2), "max_pool2d",
                       "F.pad"),
    "reflect_pad": (lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect"), "pad", ""),
    "non_integer_upsample": (lambda x: F.interpolate(x, size=(7, 7), mode="nearest"),
                             "upsample_nearest2d", "integer factor"),
    "strided_slice": (lambda x: x[:, ::2], "slice", "step"),
    "unsupported_op": (lambda x: torch.cumsum(x, 1), "aten.cumsum", "no Caffe mapping"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_op_names_op_module_and_line(case, tmp_path):
    fn, op, reason = REFUSED[case]
    with pytest.raises(UnsupportedOpError) as err:
        export(Outer(fn), (torch.randn(1, 3, 4, 4),), tmp_path)
    msg = str(err.value)
    assert op in msg and reason in msg, msg
    assert "body.1" in err.value.module_path, msg
    assert "test_from_pytorch.py:" in err.value.source, msg
    assert "supported ops:" in msg and "conv2d" in msg
    assert not os.path.exists(str(tmp_path / "m.prototxt"))


def test_bad_target_and_names(tmp_path):
    with pytest.raises(ValueError, match="unknown export target"):
        export(nn.ReLU(), (torch.randn(1, 2),), tmp_path, target="tensorrt")
    with pytest.raises(ValueError, match="input_names"):
        export(nn.ReLU(), (torch.randn(1, 2),), tmp_path, input_names=["a", "b"])


# -- CLI --------------------------------------------------------------------------------

CLI_MODULE = '''
import torch.nn as nn
def small():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
def bad():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU())
'''


def test_cli_prints_table_and_writes_files(tmp_path, monkeypatch, capsys):
    from caffe import from_pytorch as cli
    (tmp_path / "zoo_cli.py").write_text(CLI_MODULE)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 3)).state_dict(), str(tmp_path / "w.pth"))
    rc = cli.main(["zoo_cli:small", "--input-shape", "1,3,8,8", "--weights", "w.pth",
                   "-o", "out/small"])
    out = capsys.readouterr().out
    assert rc == 0 and "max rel" in out and "PASSED" in out
    assert (tmp_path / "out" / "small.prototxt").exists()
    assert (tmp_path / "out" / "small.caffemodel").exists()
    rc = cli.main(["zoo_cli:bad", "--input-shape", "1,3,8,8", "-o", "out/bad"])
    err = capsys.readouterr().err
    assert rc == 1 and "aten.gelu" in err and "zoo_cli.py" not in err or "module '1'" in err
    assert not (tmp_path / "out" / "bad.prototxt").exists()


def test_cli_runs_as_module(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE), env.get("PYTHONPATH", "")])
    res = subprocess.run([sys.executable, "-m", "caffe.from_pytorch", "--help"],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--input-shape" in res.stdout


def test_cli_calibration_images(tmp_path, monkeypatch, capsys):
    Image = pytest.importorskip("PIL.Image", reason="Pillow (the test extra) writes the images")
    if not any(_importable(m) for m in ("cv2", "skimage")):
        pytest.skip("resizing the images needs OpenCV or scikit-image (the test extra)")

    from caffe import from_pytorch as cli
    (tmp_path / "zoo_cli.py").write_text(CLI_MODULE)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.RandomState(0)
    for i in range(2):
        Image.fromarray(rng.randint(0, 255, (20, 24, 3), dtype=np.uint8)).save(
            str(images / ("%d.png" % i)))
    monkeypatch.chdir(tmp_path)
    batch = cli._calibration_batch(str(images), (2, 3, 8, 8))
    assert batch.shape == (2, 3, 8, 8) and 0 <= batch.min() and batch.max() <= 1
    assert not np.allclose(batch[0], batch[1])
    rc = cli.main(["zoo_cli:small", "--input-shape", "2,3,8,8", "-o", "out/cal",
                   "--calibration-images", "images"])
    assert rc == 0 and "PASSED" in capsys.readouterr().out
