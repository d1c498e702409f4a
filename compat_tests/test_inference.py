"""net.optimize_for_inference() / CAFFE_OPTIMIZE_INFERENCE=1: same outputs as the
plain Net, unfilled intermediates refuse to be read, reshape and new weights work."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest
from inference_cases import RESIDUAL

import caffe
from caffe import _onednn, inference, protoio
from caffe.inference import OptimizedBlobError
from caffe.tools import merge_bn as mb

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden", "nets")
MODELS = os.path.join(HERE, "models")


def _pair(param, weights=None, seed=0, program=None):
    """(plain net, optimised net) with the same (random, BN-plausible) weights;
    ``program`` forces one of the plan's programs (None: the fastest)."""
    nets = [caffe.Net(param, caffe.TEST), caffe.Net(param, caffe.TEST)]
    if weights is None:
        weights = mb.random_weights(param, seed)
    for net in nets:
        for name, arrays in weights.items():
            for blob, arr in zip(net.params[name], arrays):
                blob.data[...] = arr
    if program is None:
        nets[1].optimize_for_inference()
    else:
        inference.optimize(nets[1], program=program)
    return nets


def _feed(net, seed=0):
    rng = np.random.RandomState(seed)
    return {k: rng.randn(*net.blobs[k].data.shape).astype(np.float32) for k in net.inputs}


def _close(a, b, rtol=1e-5):
    scale = max(np.abs(a).max(), 1e-30)
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


def _forward_unless_refused(fast, feed, program):
    """``fast.forward(**feed)``, or None where the forced program is torch.jit's
    oneDNN rewrite and the plan refused it: that rewrite is inexact for some ops
    (avg_pool2d with divisor_override), so it must be refused, never used."""
    if program != "oneDNN-optimised":
        return fast.forward(**feed)
    try:
        return fast.forward(**feed)
    except inference.ProgramRefused as exc:
        assert "disagrees" in str(exc)
        return None


def _golden_deploy_nets():
    """The golden nets whose case runs in the TEST phase (optimisation's domain)."""
    import json
    out = []
    for path in sorted(glob.glob(os.path.join(GOLDEN, "*.prototxt"))):
        meta = path.replace(".prototxt", ".json")
        if os.path.exists(meta) and json.load(open(meta)).get("phase") == "TEST":
            out.append(path)
    return out


def _programs():
    """Every program the plan may choose here (None: let it choose)."""
    import torch
    out = [None, "eager", "frozen", "oneDNN-optimised"]
    if _onednn.available():
        out.append("channels-last oneDNN")
    if torch.cuda.is_available():
        out.append("CUDA graph")
    return out


@pytest.mark.parametrize("program", _programs(), ids=str)
@pytest.mark.parametrize("path", _golden_deploy_nets(), ids=os.path.basename)
def test_golden_nets_equal_unoptimised(path, program):
    param = mb._test_net(path)
    weights_file = path.replace(".prototxt", ".caffemodel")
    weights = mb.load_weights(weights_file) if os.path.exists(weights_file) else None
    if weights is not None:
        weights = {k: v for k, v in weights.items() if k in [lp.name for lp in param.layer]}
    plain, fast = _pair(param, weights, program=program)
    golden = np.load(path.replace(".prototxt", ".npz"))
    feed = {k: golden["in/" + k].astype(np.float32) for k in plain.inputs}
    for net in (plain, fast):
        for k, v in feed.items():
            net.blobs[k].reshape(*v.shape)
        net.reshape()
    want = {k: v.copy() for k, v in plain.forward(**feed).items()}
    got = _forward_unless_refused(fast, feed, program)
    if got is None:
        return
    assert fast._inference.kind == (program or fast._inference.kind)
    assert fast._inference.kind in inference.PROGRAMS
    assert set(got) == set(want)
    for k in want:
        _close(want[k], got[k])


def _small_deploy(model):
    """A test model's deploy net at 64x64 with 1/8 of the channels (groups
    kept: depthwise stays depthwise) and its big final pooling global."""
    param = mb._test_net(os.path.join(MODELS, "%s_deploy.prototxt" % model))
    param.layer[0].input_param.shape[0].dim[:] = [2, 3, 64, 64]
    for lp in param.layer:
        if lp.type == "Convolution":
            cp = lp.convolution_param
            depthwise = cp.group > 1 and cp.group == cp.num_output
            cp.num_output = max(1, cp.num_output // 8)
            if depthwise:
                cp.group = cp.num_output
        if lp.type == "Pooling" and lp.pooling_param.kernel_size >= 7:
            pool = lp.pooling_param.pool
            lp.pooling_param.Clear()
            lp.pooling_param.global_pooling = True
            lp.pooling_param.pool = pool
    return param


DEPLOY_MODELS = sorted(os.path.basename(p)[:-len("_deploy.prototxt")]
                       for p in glob.glob(os.path.join(MODELS, "*_deploy.prototxt")))


@pytest.mark.parametrize("program", [None, "eager", "channels-last oneDNN"], ids=str)
@pytest.mark.parametrize("model", DEPLOY_MODELS)
def test_deploy_nets_fold_and_match(model, program):
    if program == "channels-last oneDNN" and not _onednn.available():
        pytest.skip("this torch build has no oneDNN fused convolution ops")
    param = _small_deploy(model)
    plain, fast = _pair(param, program=program)
    plan = fast._inference
    folded = sum(len(st[1].affines) for st in plan.steps if st[0] == "fused")
    assert folded == 2 * sum(lp.type == "BatchNorm" for lp in param.layer)
    if model == "resnet50":     # every block's Eltwise SUM + ReLU joins its last conv
        adds = [st[1] for st in plan.steps if st[0] == "fused" and st[1].add is not None]
        assert len(adds) == sum(lp.type == "Eltwise" for lp in param.layer) == 16
        assert all(g.relu and g.names[-2].startswith("res") for g in adds)
    feed = _feed(plain)
    last = [lp.top[0] for lp in param.layer if lp.type in ("InnerProduct", "Convolution")][-1]
    keep = sorted({last} | set(plain.outputs))
    want = {k: v.copy() for k, v in plain.forward(blobs=keep, **feed).items()}
    got = fast.forward(blobs=keep, **feed)
    for k in keep:
        _close(want[k], got[k])


FUSED = """
name: "fused"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 bias_term: false } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "bn" }
layer { name: "sc" type: "Scale" bottom: "bn" top: "sc" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "sc" top: "sc" }
layer { name: "pool" type: "Pooling" bottom: "sc" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip" inner_product_param { num_output: 5 } }
"""


def _fused_param():
    return protoio.parse_text(FUSED, protoio.pb2().NetParameter(), "<test>")


def test_fused_away_blob_raises_naming_blob_and_fusion():
    plain, fast = _pair(_fused_param())
    feed = _feed(plain)
    fast.forward(**feed)
    with pytest.raises(OptimizedBlobError) as e:
        fast.blobs["conv"].data  # noqa: B018 (the read must raise)
    assert "'conv'" in str(e.value) and "conv + bn + sc + relu" in str(e.value)
    with pytest.raises(OptimizedBlobError) as e:
        fast.blobs["pool"].data  # noqa: B018 (computed but not kept: not stale)
    assert "forward(blobs=['pool'])" in str(e.value)
    got = fast.forward(blobs=["pool"], **feed)
    _close(plain.forward(blobs=["pool"], **feed)["pool"], got["pool"])
    with pytest.raises(OptimizedBlobError):
        fast.forward(blobs=["bn"], **feed)
    fast.optimize_for_inference(False)              # back to the plain path
    fast.forward(**feed)
    _close(plain.blobs["conv"].data, fast.blobs["conv"].data)


def test_reshape_and_new_weights_after_optimise(tmp_path):
    plain, fast = _pair(_fused_param())
    for net in (plain, fast):
        net.blobs["data"].reshape(3, 3, 8, 8)
        net.reshape()
    feed = _feed(plain, 1)
    _close(plain.forward(**feed)["ip"].copy(), fast.forward(**feed)["ip"])
    # new parameters, written in place and through copy_from
    for net in (plain, fast):
        net.params["bn"][0].data[...] += 0.5
        net.params["sc"][0].data[...] *= 2
    _close(plain.forward(**feed)["ip"].copy(), fast.forward(**feed)["ip"])
    other = caffe.Net(_fused_param(), caffe.TEST)
    for name in other.params:
        for b in other.params[name]:
            b.data[...] = np.random.RandomState(5).uniform(0.5, 1.5, b.data.shape)
    path = str(tmp_path / "w.caffemodel")
    other.save(path)
    plain.copy_from(path)
    fast.copy_from(path)
    _close(plain.forward(**feed)["ip"].copy(), fast.forward(**feed)["ip"])


def test_train_phase_refused_and_python_layer_kept(tmp_path, monkeypatch):
    net = caffe.Net(_fused_param(), caffe.TRAIN)
    with pytest.raises(ValueError, match="TEST-phase"):
        net.optimize_for_inference()
    (tmp_path / "pyl_double.py").write_text(
        "import caffe\n"
        "class Double(caffe.Layer):\n"
        "    def setup(self, bottom, top): pass\n"
        "    def reshape(self, bottom, top): top[0].reshape(*bottom[0].data.shape)\n"
        "    def forward(self, bottom, top):\n"
        "        assert bottom[0].data.flags['C_CONTIGUOUS']\n"
        "        top[0].data[...] = 2 * bottom[0].data\n"
        "    def backward(self, top, propagate_down, bottom): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = FUSED + ('layer { name: "py" type: "Python" bottom: "ip" top: "py" '
                    'python_param { module: "pyl_double" layer: "Double" } }\n')
    param = protoio.parse_text(text, protoio.pb2().NetParameter(), "<test>")
    plain, fast = _pair(param)
    assert not fast._inference.jit                  # Python layers: eager folded program
    feed = _feed(plain)
    _close(plain.forward(**feed)["py"].copy(), fast.forward(**feed)["py"])


def test_layers_that_change_state_run_once_per_forward(tmp_path, monkeypatch):
    """A data source (here a Python layer emitting its call count) and
    BatchNorm on batch statistics must run exactly once per forward: the plan
    then keeps the eager program and neither checks nor times others."""
    (tmp_path / "pyl_counter.py").write_text(
        "import caffe\n"
        "class Counter(caffe.Layer):\n"
        "    calls = 0\n"
        "    def setup(self, bottom, top): pass\n"
        "    def reshape(self, bottom, top): top[0].reshape(2, 3, 8, 8)\n"
        "    def forward(self, bottom, top):\n"
        "        type(self).calls += 1\n"
        "        top[0].data[...] = type(self).calls\n"
        "    def backward(self, top, propagate_down, bottom): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = ('layer { name: "src" type: "Python" top: "data" '
              'python_param { module: "pyl_counter" layer: "Counter" } }\n')
    text = source + "\n".join(line for line in FUSED.splitlines()   # in place of the Input
                               if 'type: "Input"' not in line)
    param = protoio.parse_text(text, protoio.pb2().NetParameter(), "<test>")
    plain, fast = _pair(param)
    import pyl_counter
    want = []
    for _ in range(3):
        want.append(plain.forward()["ip"].copy())
    pyl_counter.Counter.calls = 0
    for k in range(3):
        _close(want[k], fast.forward()["ip"])
        assert pyl_counter.Counter.calls == k + 1
    assert fast._inference.stateful == ["src"] and fast._inference.kind == "eager"
    with pytest.raises(inference.ProgramRefused, match="src"):
        inference.optimize(fast, program="channels-last oneDNN").forward()

    batch_stats = FUSED.replace('top: "bn" }', 'top: "bn" batch_norm_param { use_global_stats: '
                                               'false } }')
    param = protoio.parse_text(batch_stats, protoio.pb2().NetParameter(), "<test>")
    plain, fast = _pair(param)
    feed = _feed(plain)
    for _ in range(2):
        _close(plain.forward(**feed)["ip"].copy(), fast.forward(**feed)["ip"])
    for a, b in zip(plain.params["bn"], fast.params["bn"]):   # updated once per forward
        _close(a.data, b.data)


def test_environment_variable(tmp_path):
    proto = tmp_path / "f.prototxt"
    proto.write_text(FUSED)
    grads = tmp_path / "g.prototxt"
    grads.write_text("force_backward: true\n" + FUSED)
    code = ("import caffe; n = caffe.Net(%r, caffe.TEST); t = caffe.Net(%r, caffe.TRAIN); "
            "g = caffe.Net(%r, caffe.TEST); "
            "print(n._inference is not None, t._inference is None, g._inference is None)"
            % (str(proto), str(proto), str(grads)))
    env = dict(os.environ, CAFFE_OPTIMIZE_INFERENCE="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.stdout.split() == ["True", "True", "True"], r.stderr


def test_environment_variable_leaves_the_packages_own_tools_plain(monkeypatch, tmp_path):
    """Tools that read every blob (converters' verification, compare, summary,
    calibration) or run backward build their nets plain whatever the caller's
    environment says; the user's own TEST nets are optimised."""
    from caffe.export import verify
    from caffe.net import plain_nets
    monkeypatch.setenv("CAFFE_OPTIMIZE_INFERENCE", "1")
    param = _fused_param()
    assert caffe.Net(param, caffe.TEST)._inference is not None
    with plain_nets():
        assert caffe.Net(param, caffe.TEST)._inference is None
    assert caffe.Net(param, caffe.TEST)._inference is not None
    proto = tmp_path / "f.prototxt"
    proto.write_text(FUSED)
    checked = verify.run_caffe(str(proto), None, {"data": np.ones((2, 3, 8, 8))})
    assert checked._inference is None
    checked.blobs["conv"].data  # noqa: B018 (every blob readable for verification)


def test_backward_after_an_optimised_forward_is_refused_not_wrong():
    param = protoio.parse_text("force_backward: true\n" + FUSED, protoio.pb2().NetParameter(),
                               "<test>")
    plain, fast = _pair(param)
    feed = _feed(plain)
    fast.forward(**feed)
    with pytest.raises(caffe.net.NetError, match="backward after an optimised forward"):
        fast.backward()
    fast.optimize_for_inference(False)
    with pytest.raises(caffe.net.NetError):       # still the optimised forward's state
        fast.backward()
    for net in (plain, fast):
        net.forward(**feed)
        net.blobs["ip"].diff[...] = 1.0
    want = plain.backward()["data"].copy()
    _close(want, fast.backward()["data"])




def _programs_here():
    return [p for p in _programs() if p != "oneDNN-optimised"]


@pytest.mark.parametrize("program", _programs_here(), ids=str)
def test_residual_sum_and_relu_join_the_conv(program):
    param = protoio.parse_text(RESIDUAL, protoio.pb2().NetParameter(), "<test>")
    plain, fast = _pair(param, program=program)
    groups = [st[1] for st in fast._inference.steps if st[0] == "fused"]
    assert [g.names for g in groups] == [["short"], ["conv", "bn", "sc", "sum", "relu"], ["ip"]]
    feed = _feed(plain)
    _close(plain.forward(**feed)["ip"].copy(), fast.forward(**feed)["ip"])
    with pytest.raises(OptimizedBlobError, match="'conv'.*conv \\+ bn \\+ sc \\+ sum \\+ relu"):
        fast.blobs["conv"].data  # noqa: B018 (the read must raise)
    got = fast.forward(blobs=["sum", "pool"], **feed)     # kept on request
    want = plain.forward(blobs=["sum", "pool"], **feed)
    _close(want["sum"], got["sum"])
    _close(want["pool"], got["pool"])


@pytest.mark.parametrize("program", _programs_here(), ids=str)
def test_parameter_writes_are_seen_through_views_kept_from_before(program):
    """A numpy view of a weight taken before optimising, written after the
    first optimised forward, changes the next forward's outputs (as it does
    the plain net's); so do writes through fresh views and copy_from."""
    param = protoio.parse_text(RESIDUAL, protoio.pb2().NetParameter(), "<test>")
    plain, fast = _pair(param)
    views = {net: (net.params["conv"][0].data, net.params["bn"][1].data,
                   net.params["ip"][0].data) for net in (plain, fast)}
    inference.optimize(fast, program=program)
    feed = _feed(plain)
    _close(plain.forward(**feed)["ip"].copy(), fast.forward(**feed)["ip"])
    for net in (plain, fast):
        conv_w, bn_var, ip_w = views[net]
        conv_w[0] *= -2                        # folded weights (conv + bn + sc)
        bn_var[...] += 1.0
        ip_w[1, :3] = 0.25                     # a weight read as it is
    want = plain.forward(**feed)["ip"].copy()
    _close(want, fast.forward(**feed)["ip"])
    for net in (plain, fast):                  # a fresh view, dropped at once
        net.params["short"][1].data[...] = 3.0
    _close(plain.forward(**feed)["ip"].copy(), fast.forward(**feed)["ip"])


def test_unchanged_parameters_are_not_reread_each_forward(monkeypatch):
    """With no live views of the weights, a forward costs no pass over them."""
    param = protoio.parse_text(RESIDUAL, protoio.pb2().NetParameter(), "<test>")
    plain, fast = _pair(param)
    feed = _feed(plain)
    fast.forward(**feed)
    calls = []
    real = inference._ParamWatch._fingerprint
    monkeypatch.setattr(inference._ParamWatch, "_fingerprint",
                        staticmethod(lambda buf: calls.append(buf) or real(buf)))
    derived = []
    real_derive = inference.InferencePlan._derive
    monkeypatch.setattr(inference.InferencePlan, "_derive",
                        lambda self: derived.append(1) or real_derive(self))
    for _ in range(3):
        fast.forward(**feed)
    assert calls == [] and derived == []
    fast.params["bn"][0].data[...] += 1        # a write: one re-derive, then quiet again
    fast.forward(**feed)
    fast.forward(**feed)
    assert derived == [1]


def _count_in_place_convs(monkeypatch):
    calls = []
    into = _onednn._POINTWISE_INTO
    if into is None:
        pytest.skip("this torch has no in-place oneDNN convolution")

    class Spy:
        @staticmethod
        def binary(*args):
            calls.append(1)
            return into.binary(*args)
    monkeypatch.setattr(_onednn, "_POINTWISE_INTO", Spy)
    return calls


@pytest.mark.skipif(not _onednn.available(), reason="this torch build has no oneDNN")
def test_residual_result_is_written_over_a_shortcut_nothing_else_reads(monkeypatch):
    calls = _count_in_place_convs(monkeypatch)
    param = protoio.parse_text(RESIDUAL, protoio.pb2().NetParameter(), "<test>")
    plain, fast = _pair(param, program="channels-last oneDNN")
    feed = _feed(plain)
    want = plain.forward(blobs=["short"], **feed)
    _close(want["ip"], fast.forward(**feed)["ip"])     # (compiles: may run twice)
    del calls[:]
    _close(want["ip"], fast.forward(**feed)["ip"])
    assert calls == [1]                        # 'short' is dead after the sum: reused
    got = fast.forward(blobs=["short"], **feed)
    del calls[:]
    got = fast.forward(blobs=["short"], **feed)
    assert calls == []                         # kept on request: left alone
    _close(want["short"], got["short"])
    _close(want["ip"], got["ip"])


# The shortcut reaches the sum through a view (a Reshape of a one-channel map,
# whose NCHW and NHWC layouts coincide, so no copy is made) and as itself
# through a Split, and is read again after the sum: the residual kernel must
# not write over it.
SHARED_SHORTCUT = """
name: "shared_shortcut"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 dim: 4 dim: 4 } } }
layer { name: "short" type: "Convolution" bottom: "data" top: "short" convolution_param { num_output: 1 kernel_size: 1 } }
layer { name: "view" type: "Reshape" bottom: "short" top: "view" reshape_param { shape { dim: 0 dim: 0 dim: 0 dim: 0 } } }
layer { name: "half" type: "Power" bottom: "data" top: "half" power_param { scale: 0.5 } }
layer { name: "conv" type: "Convolution" bottom: "half" top: "conv" convolution_param { num_output: 1 kernel_size: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "view" bottom: "conv" top: "sum" }
layer { name: "relu" type: "ReLU" bottom: "sum" top: "sum" }
layer { name: "conv2" type: "Convolution" bottom: "data" top: "conv2" convolution_param { num_output: 1 kernel_size: 1 } }
layer { name: "sum2" type: "Eltwise" bottom: "short" bottom: "conv2" top: "sum2" }
layer { name: "both" type: "Concat" bottom: "sum" bottom: "sum2" bottom: "short" top: "both" }
"""


@pytest.mark.skipif(not _onednn.available(), reason="this torch build has no oneDNN")
def test_residual_kernel_never_writes_over_memory_something_else_reads():
    param = protoio.parse_text(SHARED_SHORTCUT, protoio.pb2().NetParameter(), "<test>")
    plain, fast = _pair(param, program="channels-last oneDNN")
    feed = _feed(plain)
    want = plain.forward(**feed)["both"].copy()
    for _ in range(2):
        _close(want, fast.forward(**feed)["both"])
    assert np.array_equal(fast.blobs["data"].data, feed["data"])


def test_blobs_are_dropped_after_their_last_reader():
    """The optimised program frees each intermediate once no later step reads
    it (memory reuse, as in eager PyTorch); requested blobs are kept."""
    param = protoio.parse_text(RESIDUAL, protoio.pb2().NetParameter(), "<test>")
    _, fast = _pair(param, program="eager")
    plan = fast._inference
    names = fast._blob_names
    keep = {fast._blob_index["ip"]}
    dead = plan._dead_after(keep)
    step_names = [st[1].names[0] if st[0] == "fused" else fast._layer_names[st[1]]
                  for st in plan.steps]
    dropped = {step_names[k]: sorted(names[b] for b in bids) for k, bids in enumerate(dead)}
    assert dropped == {"data_data_0_split": ["data"], "short": ["data_data_0_split_0"],
                       "conv": ["data_data_0_split_1", "short"], "pool": ["sum"],
                       "norm": ["pool"], "ip": ["norm"]}


# The project's other deploy prototxts: the shipped example and the bench's nets.
PROJECT_DEPLOY = ["examples/lenet_deploy/deploy.prototxt", "bench/models/lenet_deploy.prototxt",
                  "bench/models/cifar10_quick.prototxt"]


@pytest.mark.parametrize("program", _programs(), ids=str)
@pytest.mark.parametrize("rel", PROJECT_DEPLOY)
def test_project_deploy_prototxts_equal_unoptimised(rel, program):
    path = os.path.join(os.path.dirname(HERE), rel)
    param = protoio.read_net_param(path)
    plain, fast = _pair(param, program=program)
    feed = _feed(plain)
    want = {k: v.copy() for k, v in plain.forward(**feed).items()}
    got = _forward_unless_refused(fast, feed, program)
    for k in want if got is not None else ():
        _close(want[k], got[k])
