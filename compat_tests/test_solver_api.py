"""The pycaffe solver surface on small Input-fed nets: construction from every
SolverParameter form, get_solver and legacy solver_type, properties, callbacks,
lr policies, update rules against a NumPy transcription of Caffe's formulas,
iter_size/clipping/regularisation, testing, snapshots, errors."""
import logging
import math
import os

import numpy as np
import pytest

import caffe
from caffe.solver import SolverError

NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 2
          weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
TEST_LAYER = """
layer { name: "out" type: "Power" bottom: "ip" top: "out" include { phase: TEST } }
"""

RNG = np.random.RandomState(3)
X = RNG.randn(4, 3).astype(np.float32)
T = RNG.randn(4, 2).astype(np.float32)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def make_solver(tmp_path, extra="", cls=None, net=NET, name="s.prototxt"):
    netfile = write(tmp_path / "net.prototxt", net)
    text = 'net: "%s"\n%s\n' % (netfile, extra)
    for field, default in (("base_lr", "0.1"), ("lr_policy", '"fixed"'), ("max_iter", "100")):
        if field + ":" not in extra:
            text += "%s: %s\n" % (field, default)
    path = write(tmp_path / name, text)
    solver = (cls or caffe.get_solver)(path)
    feed(solver.net)
    return solver


def feed(net):
    net.blobs["data"].data[...] = X
    net.blobs["label"].data[...] = T


def grads(W, b):
    y = X @ W.T + b
    dy = (y - T) / X.shape[0]
    return dy.T @ X, dy.sum(0), float(((y - T) ** 2).sum() / (2 * X.shape[0]))


# ---------------------------------------------------------------------------
# construction and properties
# ---------------------------------------------------------------------------
def test_get_solver_honours_type_and_legacy_enum(tmp_path):
    for text, cls in (('type: "Adam"', caffe.AdamSolver), ('type: "Nesterov"',
                                                            caffe.NesterovSolver),
                      ("solver_type: ADAGRAD", caffe.AdaGradSolver),
                      ("solver_type: RMSPROP", caffe.RMSPropSolver), ("", caffe.SGDSolver)):
        s = make_solver(tmp_path, text)
        assert type(s) is cls, text
        assert isinstance(s, caffe.Solver) and isinstance(s, caffe.SGDSolver)
    with pytest.raises(SolverError, match="Unknown solver type: Foo"):
        make_solver(tmp_path, 'type: "Foo"')


def test_class_ignores_type(tmp_path):
    s = make_solver(tmp_path, 'type: "Adam"', cls=caffe.SGDSolver)
    assert type(s) is caffe.SGDSolver


def test_properties(tmp_path):
    s = make_solver(tmp_path, "display: 0\nmomentum: 0.9")
    assert s.iter == 0
    assert isinstance(s.net, caffe.Net) and s.test_nets == []
    assert s.param.max_iter == 100 and s.param.display == 0
    assert s.param.base_lr == pytest.approx(0.1)
    assert s.lr == pytest.approx(0.1)
    s.param.base_lr = 0.5
    assert s.lr == pytest.approx(0.5)
    s.step(2)
    assert s.iter == 2


def test_base_lr_setter_changes_updates(tmp_path):
    s = make_solver(tmp_path)
    W0 = s.net.params["ip"][0].data.copy()
    s.param.base_lr = 0.0
    s.step(1)
    np.testing.assert_array_equal(s.net.params["ip"][0].data, W0)


def test_snapshot_prefix_default_from_solver_path(tmp_path):
    s = make_solver(tmp_path, "snapshot_after_train: true", name="mysolver.prototxt")
    assert s.param.snapshot_prefix == str(tmp_path / "mysolver")
    s.snapshot()
    assert os.path.exists(str(tmp_path / "mysolver_iter_0.caffemodel"))
    assert os.path.exists(str(tmp_path / "mysolver_iter_0.solverstate"))


def test_snapshot_prefix_unwritable(tmp_path):
    with pytest.raises(SolverError, match="Cannot write to snapshot prefix"):
        make_solver(tmp_path, 'snapshot: 5\nsnapshot_prefix: "%s"' % (tmp_path / "no/dir/x"))


def test_random_seed_reseeds(tmp_path):
    a = make_solver(tmp_path, "random_seed: 7").net.params["ip"][0].data.copy()
    b = make_solver(tmp_path, "random_seed: 7").net.params["ip"][0].data.copy()
    c = make_solver(tmp_path, "random_seed: 8").net.params["ip"][0].data.copy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_params(tmp_path):
    with pytest.raises(SolverError, match="Momentum cannot be used with AdaGrad"):
        make_solver(tmp_path, 'type: "AdaGrad"\nmomentum: 0.9')
    with pytest.raises(SolverError, match="Momentum cannot be used with RMSProp"):
        make_solver(tmp_path, 'type: "RMSProp"\nmomentum: 0.9')
    with pytest.raises(SolverError, match="rms_decay"):
        make_solver(tmp_path, 'type: "RMSProp"\nrms_decay: 1.5')
    with pytest.raises(SolverError, match="average_loss"):
        make_solver(tmp_path, "average_loss: 0")
    s = make_solver(tmp_path, 'regularization_type: "L3"\nweight_decay: 0.1')
    with pytest.raises(SolverError, match="Unknown regularization type: L3"):
        s.step(1)
    netfile = write(tmp_path / "net.prototxt", NET)
    path = write(tmp_path / "two.prototxt", 'net: "%s"\ntrain_net: "%s"\nbase_lr: 0.1\n'
                 'lr_policy: "fixed"' % (netfile, netfile))
    with pytest.raises(SolverError, match="must not contain more than one"):
        caffe.SGDSolver(path)
    path = write(tmp_path / "none.prototxt", 'base_lr: 0.1\nlr_policy: "fixed"')
    with pytest.raises(SolverError, match="must specify a train net"):
        caffe.SGDSolver(path)
    path = write(tmp_path / "ti.prototxt", 'net: "%s"\ntest_iter: 1\nbase_lr: 0.1\n'
                 'lr_policy: "fixed"' % netfile)
    with pytest.raises(SolverError, match="test_interval"):
        caffe.SGDSolver(path)
    s = make_solver(tmp_path)
    s.param.lr_policy = "weird"
    with pytest.raises(SolverError, match="Unknown learning rate policy: weird"):
        s.step(1)


# ---------------------------------------------------------------------------
# learning-rate policies
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("policy,extra,fn", [
    ("fixed", "", lambda it: 0.1),
    ("step", "gamma: 0.5 stepsize: 3", lambda it: 0.1 * 0.5 ** (it // 3)),
    ("exp", "gamma: 0.9", lambda it: 0.1 * 0.9 ** it),
    ("inv", "gamma: 0.1 power: 0.75", lambda it: 0.1 * (1 + 0.1 * it) ** -0.75),
    ("multistep", "gamma: 0.3 stepvalue: 2 stepvalue: 5",
     lambda it: 0.1 * 0.3 ** ((it >= 2) + (it >= 5))),
    ("poly", "power: 2", lambda it: 0.1 * (1 - it / 100.0) ** 2),
    ("sigmoid", "gamma: 0.5 stepsize: 4", lambda it: 0.1 / (1 + math.exp(-0.5 * (it - 4)))),
])
def test_lr_policies(tmp_path, policy, extra, fn):
    s = make_solver(tmp_path, 'lr_policy: "%s"\n%s' % (policy, extra))
    for it in range(9):
        assert s.lr == pytest.approx(fn(it), rel=1e-6), it
        s.apply_update()
    assert s.iter == 9


# ---------------------------------------------------------------------------
# update rules: NumPy transcription of Caffe's formulas
# ---------------------------------------------------------------------------
def reference(kind, W, b, steps, opts):
    lr, mu, mu2, delta, rms = 0.1, opts.get("momentum", 0.0), 0.999, opts.get("delta", 1e-8), 0.9
    wd, reg = opts.get("weight_decay", 0.0), opts.get("reg", "L2")
    params = [W.astype(np.float64), b.astype(np.float64)]
    lr_mult, decay_mult = [1.0, 2.0], [1.0, 0.0]
    h = [np.zeros_like(p) for p in params]
    h2 = [np.zeros_like(p) for p in params]
    clip = opts.get("clip", -1)
    for it in range(steps):
        gW, gb, _ = grads(params[0], params[1])
        g = [gW * opts.get("iter_size", 1), gb * opts.get("iter_size", 1)]
        if clip >= 0:
            norm = math.sqrt(sum((x ** 2).sum() for x in g))
            if norm > clip:
                g = [x * clip / norm for x in g]
        g = [x / opts.get("iter_size", 1) for x in g]
        for i in range(2):
            d = wd * decay_mult[i]
            if d:
                g[i] = g[i] + d * (params[i] if reg == "L2" else np.sign(params[i]))
            r = lr * lr_mult[i]
            if kind == "SGD":
                h[i] = mu * h[i] + r * g[i]
                u = h[i]
            elif kind == "Nesterov":
                prev = h[i]
                h[i] = mu * h[i] + r * g[i]
                u = (1 + mu) * h[i] - mu * prev
            elif kind == "AdaGrad":
                h[i] = h[i] + g[i] ** 2
                u = r * g[i] / (np.sqrt(h[i]) + delta)
            elif kind == "RMSProp":
                h[i] = rms * h[i] + (1 - rms) * g[i] ** 2
                u = r * g[i] / (np.sqrt(h[i]) + delta)
            elif kind == "AdaDelta":
                h[i] = mu * h[i] + (1 - mu) * g[i] ** 2
                dd = g[i] * np.sqrt((h2[i] + delta) / (h[i] + delta))
                h2[i] = mu * h2[i] + (1 - mu) * dd ** 2
                u = r * dd
            elif kind == "Adam":
                t = it + 1
                h[i] = mu * h[i] + (1 - mu) * g[i]
                h2[i] = mu2 * h2[i] + (1 - mu2) * g[i] ** 2
                u = r * math.sqrt(1 - mu2 ** t) / (1 - mu ** t) * h[i] / (np.sqrt(h2[i]) + delta)
            params[i] = params[i] - u
    return params


@pytest.mark.parametrize("kind,text,opts", [
    ("SGD", "momentum: 0.9 weight_decay: 0.01", {"momentum": 0.9, "weight_decay": 0.01}),
    ("SGD", 'momentum: 0.5 weight_decay: 0.05 regularization_type: "L1"',
     {"momentum": 0.5, "weight_decay": 0.05, "reg": "L1"}),
    ("SGD", "momentum: 0.9 iter_size: 3 clip_gradients: 0.3",
     {"momentum": 0.9, "iter_size": 3, "clip": 0.3}),
    ("Nesterov", "momentum: 0.9 weight_decay: 0.01", {"momentum": 0.9, "weight_decay": 0.01}),
    ("AdaGrad", "weight_decay: 0.01", {"weight_decay": 0.01}),
    ("RMSProp", "rms_decay: 0.9", {}),
    ("AdaDelta", "momentum: 0.95 delta: 1e-6 base_lr: 1.0", {"momentum": 0.95, "delta": 1e-6}),
    ("Adam", "momentum: 0.9", {"momentum": 0.9}),
])
def test_update_rules(tmp_path, kind, text, opts):
    extra = 'type: "%s"\n%s' % (kind, text)
    s = make_solver(tmp_path, extra.replace("base_lr: 1.0", "base_lr: 0.1"))
    W0 = s.net.params["ip"][0].data.copy()
    b0 = s.net.params["ip"][1].data.copy()
    s.step(6)
    Wr, br = reference(kind, W0, b0, 6, opts)
    np.testing.assert_allclose(s.net.params["ip"][0].data, Wr, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(s.net.params["ip"][1].data, br, rtol=1e-4, atol=1e-6)
    # the loss the solver saw is the loss of the weights before the last update
    assert float(s.net.blobs["loss"].data) > 0


def test_lr_mult_zero_keeps_param(tmp_path):
    net = NET.replace("param { lr_mult: 2 decay_mult: 0 }", "param { lr_mult: 0 }")
    s = make_solver(tmp_path, "momentum: 0.9\nweight_decay: 0.1", net=net)
    b0 = s.net.params["ip"][1].data.copy()
    s.step(3)
    np.testing.assert_array_equal(s.net.params["ip"][1].data, b0)


# ---------------------------------------------------------------------------
# callbacks, apply_update, share_weights
# ---------------------------------------------------------------------------
def test_callbacks_order_and_input_feeding(tmp_path):
    s = make_solver(tmp_path, "momentum: 0.9")
    events = []

    def on_start():
        events.append(("start", s.iter, float(np.abs(s.net.params["ip"][0].diff).sum())))
        feed(s.net)

    def on_ready():
        events.append(("ready", s.iter, float(np.abs(s.net.params["ip"][0].diff).sum())))

    s.add_callback(on_start, on_ready)
    s.step(2)
    assert [e[:2] for e in events] == [("start", 0), ("ready", 0), ("start", 1), ("ready", 1)]
    assert events[0][2] == 0 and events[2][2] == 0       # diffs cleared before on_start
    assert events[1][2] > 0                              # gradients ready


def test_apply_update_by_hand(tmp_path):
    s = make_solver(tmp_path)                             # plain SGD, lr 0.1, no momentum
    net = s.net
    W0 = net.params["ip"][0].data.copy()
    net.clear_param_diffs()
    net.forward_backward()
    g = net.params["ip"][0].diff.copy()
    s.apply_update()
    assert s.iter == 1
    np.testing.assert_allclose(net.params["ip"][0].data, W0 - 0.1 * g, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(net.params["ip"][0].diff, 0.1 * g, rtol=1e-6)   # diff = update


def test_share_weights(tmp_path):
    s = make_solver(tmp_path)
    other = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TEST)
    s.share_weights(other)
    s.step(2)
    np.testing.assert_array_equal(other.params["ip"][0].data, s.net.params["ip"][0].data)


# ---------------------------------------------------------------------------
# nets from every SolverParameter form, testing
# ---------------------------------------------------------------------------
def _param_text(tmp_path, body):
    return write(tmp_path / "form.prototxt", 'base_lr: 0.1\nlr_policy: "fixed"\n' + body)


def test_net_forms(tmp_path):
    net_text = NET + TEST_LAYER
    netfile = write(tmp_path / "net.prototxt", net_text)
    # net: one train net, test nets per test_iter
    s = caffe.SGDSolver(_param_text(tmp_path, 'net: "%s"\ntest_iter: 1\ntest_iter: 2\n'
                                    'test_interval: 5' % netfile))
    assert len(s.test_nets) == 2
    assert s.net.phase == caffe.TRAIN and all(t.phase == caffe.TEST for t in s.test_nets)
    assert "out" in s.test_nets[0].blobs and "out" not in s.net.blobs
    # net_param inline
    s = caffe.SGDSolver(_param_text(tmp_path, "net_param { %s }\ntest_iter: 1\ntest_interval: 5"
                                    % net_text))
    assert len(s.test_nets) == 1 and "out" in s.test_nets[0].blobs
    # train_net + test_net files, test_state stages
    staged = net_text + 'layer { name: "st" type: "Power" bottom: "ip" top: "st" ' \
                        'include { stage: "extra" } }'
    stagefile = write(tmp_path / "staged.prototxt", staged)
    s = caffe.SGDSolver(_param_text(tmp_path, 'train_net: "%s"\ntest_net: "%s"\ntest_net: "%s"\n'
                                    'test_iter: 1\ntest_iter: 1\ntest_interval: 5\n'
                                    'test_state { stage: "extra" }\ntest_state { }'
                                    % (netfile, stagefile, stagefile)))
    assert len(s.test_nets) == 2
    assert "st" in s.test_nets[0].blobs and "st" not in s.test_nets[1].blobs
    # train_net_param + test_net_param, train_state
    s = caffe.SGDSolver(_param_text(tmp_path, "train_net_param { %s }\ntest_net_param { %s }\n"
                                    "test_iter: 3\ntest_interval: 5\n"
                                    'train_state { stage: "extra" }' % (staged, net_text)))
    assert "st" in s.net.blobs and len(s.test_nets) == 1
    # test_iter count must match test nets when no generic net
    with pytest.raises(SolverError, match="test_iter must be specified"):
        caffe.SGDSolver(_param_text(tmp_path, 'train_net: "%s"\ntest_net: "%s"\ntest_interval: 1'
                                    % (netfile, netfile)))
    with pytest.raises(SolverError, match="test_state"):
        caffe.SGDSolver(_param_text(tmp_path, 'net: "%s"\ntest_iter: 1\ntest_interval: 1\n'
                                    "test_state { }\ntest_state { }" % netfile))


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _capture():
    log = logging.getLogger("caffe")
    h = _Lines()
    log.addHandler(h)
    old = log.level
    log.setLevel(logging.INFO)
    return log, h, old


def test_testing_shares_weights_and_logs(tmp_path):
    netfile = write(tmp_path / "net.prototxt", NET + TEST_LAYER)
    s = caffe.SGDSolver(_param_text(tmp_path, 'net: "%s"\ntest_iter: 2\ntest_interval: 2\n'
                                    "test_compute_loss: true\ndisplay: 1\nmax_iter: 4\n"
                                    "snapshot_after_train: false\ntest_initialization: false"
                                    % netfile))
    feed(s.net)
    feed(s.test_nets[0])
    log, h, old = _capture()
    try:
        s.solve()
    finally:
        log.removeHandler(h)
        log.setLevel(old)
    tests = [ln for ln in h.lines if "Testing net" in ln]
    assert tests == ["Iteration 2, Testing net (#0)", "Iteration 4, Testing net (#0)"]
    assert any(ln.startswith("Test loss: ") for ln in h.lines)
    outs = [ln for ln in h.lines if "Test net output" in ln]
    assert outs[0].startswith("    Test net output #0: loss = ") and "(* 1 = " in outs[0]
    assert outs[1].startswith("    Test net output #1: out = ")
    assert h.lines[-1] == "Optimization Done."
    assert any(ln.startswith("Iteration 4, loss = ") for ln in h.lines)
    np.testing.assert_array_equal(s.test_nets[0].params["ip"][0].data, s.net.params["ip"][0].data)
    # the test loss is the test net's loss at the final weights
    W, b = s.net.params["ip"][0].data, s.net.params["ip"][1].data
    _, _, loss = grads(W.astype(np.float64), b.astype(np.float64))
    last = [ln for ln in h.lines if ln.startswith("Test loss: ")][-1]
    assert float(last.split(": ")[1]) == pytest.approx(loss, rel=1e-4)


def test_solve_snapshot_after_train(tmp_path):
    s = make_solver(tmp_path, 'max_iter: 3\nsnapshot_prefix: "%s"' % (tmp_path / "p"))
    s.solve()
    assert s.iter == 3
    assert os.path.exists(str(tmp_path / "p_iter_3.caffemodel"))
    assert os.path.exists(str(tmp_path / "p_iter_3.solverstate"))
    s = make_solver(tmp_path, 'max_iter: 3\nsnapshot_after_train: false\nsnapshot_prefix: "%s"'
                    % (tmp_path / "q"))
    s.solve()
    assert not os.path.exists(str(tmp_path / "q_iter_3.caffemodel"))


def test_solve_resume(tmp_path):
    s = make_solver(tmp_path, 'max_iter: 6\nmomentum: 0.9\nsnapshot: 3\nsnapshot_prefix: "%s"'
                    % (tmp_path / "r"))
    s.solve()
    W6 = s.net.params["ip"][0].data.copy()
    t = make_solver(tmp_path, 'max_iter: 6\nmomentum: 0.9\nsnapshot: 3\nsnapshot_prefix: "%s"'
                    % (tmp_path / "r2"))
    t.solve(str(tmp_path / "r_iter_3.solverstate"))
    assert t.iter == 6
    np.testing.assert_allclose(t.net.params["ip"][0].data, W6, rtol=1e-6, atol=1e-7)


def test_restore_errors(tmp_path):
    s = make_solver(tmp_path, 'snapshot_prefix: "%s"' % (tmp_path / "e"))
    s.step(1)
    s.snapshot()
    a = make_solver(tmp_path, 'type: "Adam"')
    with pytest.raises(Exception, match="Incorrect length of history blobs"):
        a.restore(str(tmp_path / "e_iter_1.solverstate"))
    with pytest.raises(Exception, match="not found"):
        a.restore(str(tmp_path / "missing.solverstate"))


def test_gpu_mode_falls_back_or_runs(tmp_path):
    import warnings
    s = make_solver(tmp_path, "momentum: 0.9")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        caffe.set_mode_gpu()
    try:
        feed(s.net)
        s.step(2)
        assert s.iter == 2
        assert np.isfinite(s.net.params["ip"][0].data).all()
    finally:
        caffe.set_mode_cpu()
