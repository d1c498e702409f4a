"""RNN, LSTM and LSTMUnit against real Caffe's golden data, gradchecks, state and errors."""

import numpy as np
import pytest
import torch
from golden_cases import run_layer_case
from google.protobuf import text_format
from layer_testing import load_case

from caffe.layers import LayerError, modules
from caffe.proto import caffe_pb2

FWD = dict(rtol=1e-4, atol=1e-5)
GRAD = dict(rtol=1e-3, atol=1e-4)


def build(lp, shapes, phase=0):
    return modules[lp.type](lp, shapes, phase)


def run_case_standalone(name):
    _, lp, _, d = load_case(name)
    ins = [torch.tensor(d["in/b%d" % k]) for k in range(len(lp.bottom))]
    shapes = [tuple(x.shape) for x in ins]
    layer = build(lp, shapes)
    assert layer.output_shapes(shapes) == [d["out/t%d" % k].shape for k in range(len(lp.top))]
    assert len(layer.blobs) == len([k for k in d if k.startswith("param/")])
    for i, b in enumerate(layer.blobs):
        assert tuple(b.shape) == d["param/%d" % i].shape
        b.data[...] = d["param/%d" % i]
    params = [b.data_tensor(torch.device("cpu")).clone().requires_grad_(True)
              for b in layer.blobs]
    ins = [x.clone().requires_grad_("diff/b%d" % k in d) for k, x in enumerate(ins)]
    outs = layer.run(ins, params)
    for k, o in enumerate(outs):
        np.testing.assert_allclose(o.detach().numpy(), d["out/t%d" % k], **FWD)
    tops = [o for k, o in enumerate(outs) if "topdiff/t%d" % k in d]
    grads = [torch.tensor(d["topdiff/t%d" % k]) for k in range(len(outs))
             if "topdiff/t%d" % k in d]
    names = ["diff/b%d" % k for k in range(len(ins)) if "diff/b%d" % k in d] + \
        ["pdiff/%d" % i for i in range(len(params)) if "pdiff/%d" % i in d]
    wrt = [x for k, x in enumerate(ins) if "diff/b%d" % k in d] + \
        [p for i, p in enumerate(params) if "pdiff/%d" % i in d]
    got = torch.autograd.grad(tops, wrt, grad_outputs=grads)
    for n, g in zip(names, got):
        np.testing.assert_allclose(g.numpy(), d[n], **GRAD, err_msg="%s %s" % (name, n))
    return layer


@pytest.mark.parametrize("name", ["lstm", "lstm_unit", "rnn"])
def test_golden_standalone(name):
    run_case_standalone(name)


@pytest.mark.parametrize("name", ["lstm", "lstm_unit", "rnn"])
def test_golden_through_net(name):
    run_layer_case(name)


def make_param(type_, text="", nbottom=2, ntop=1):
    lp = caffe_pb2.LayerParameter()
    text_format.Merge(text, lp)
    lp.name = "L"
    lp.type = type_
    lp.bottom.extend(["b%d" % i for i in range(nbottom)])
    lp.top.extend(["t%d" % i for i in range(ntop)])
    return lp


RP = ('recurrent_param { num_output: %d %s weight_filler { type: "uniform" min: -0.5 max: 0.5 } '
      'bias_filler { type: "uniform" min: -0.3 max: 0.3 } }')


def _layer(type_, num_output, shapes, expose=False, ntop=1):
    text = RP % (num_output, "expose_hidden: true" if expose else "")
    return build(make_param(type_, text, nbottom=len(shapes), ntop=ntop), shapes)


def _params64(layer):
    return [b.data_tensor(torch.device("cpu")).double().clone() for b in layer.blobs]


def test_blob_shapes_and_order():
    torch.manual_seed(0)
    lstm = _layer("LSTM", 5, [(3, 2, 4, 2), (3, 2), (2, 6)])
    assert [tuple(b.shape) for b in lstm.blobs] == [(20, 8), (20,), (20, 6), (20, 5)]
    rnn = _layer("RNN", 5, [(3, 2, 4), (3, 2)])
    assert [tuple(b.shape) for b in rnn.blobs] == [(5, 4), (5,), (5, 5), (5, 5), (5,)]
    rnn_s = _layer("RNN", 5, [(3, 2, 4), (3, 2), (2, 3, 1)])
    assert [tuple(b.shape) for b in rnn_s.blobs] == [(5, 4), (5,), (5, 3), (5, 5), (5, 5), (5,)]
    assert not lstm.allow_force_backward(1) and lstm.allow_force_backward(0)
    unit = build(make_param("LSTMUnit", nbottom=3, ntop=2), [(1, 2, 3), (1, 2, 12), (1, 2)])
    assert not unit.allow_force_backward(2)


def _gradcheck(layer, inputs, wrt_inputs):
    params = _params64(layer)
    n_in = len(wrt_inputs)

    def f(*vs):
        xs = list(inputs)
        for i, v in zip(wrt_inputs, vs[:n_in]):
            xs[i] = v
        return layer.run(xs, list(vs[n_in:]))[0]

    vs = [inputs[i].clone().requires_grad_(True) for i in wrt_inputs] + \
        [p.requires_grad_(True) for p in params]
    assert torch.autograd.gradcheck(f, vs, eps=1e-6, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("type_", ["RNN", "LSTM"])
@pytest.mark.parametrize("static", [False, True])
def test_recurrent_gradcheck(type_, static):
    torch.manual_seed(1)
    r = np.random.RandomState(1)
    x = torch.tensor(r.randn(4, 2, 3))
    cont = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 1]], dtype=torch.float64)
    shapes = [(4, 2, 3), (4, 2)]
    inputs = [x, cont]
    if static:
        inputs.append(torch.tensor(r.randn(2, 2)))
        shapes.append((2, 2))
    layer = _layer(type_, 3, shapes)
    _gradcheck(layer, inputs, [0] + ([2] if static else []))


def test_lstm_unit_gradcheck_and_values():
    r = np.random.RandomState(2)
    unit = build(make_param("LSTMUnit", nbottom=3, ntop=2), [(1, 3, 2), (1, 3, 8), (1, 3)])
    c_prev = torch.tensor(r.randn(1, 3, 2))
    gates = torch.tensor(r.randn(1, 3, 8))
    cont = torch.tensor([[1.0, 0.0, 1.0]])

    def f(cp, g):
        c, h = unit.run([cp, g, cont], [])
        return c, h
    assert torch.autograd.gradcheck(f, [c_prev.clone().requires_grad_(True),
                                        gates.clone().requires_grad_(True)],
                                    eps=1e-6, atol=1e-5, rtol=1e-3)
    c, h = unit.run([c_prev, gates, cont], [])
    i, fg, o, g = [gates[..., 2 * k:2 * k + 2] for k in range(4)]
    fexp = torch.sigmoid(fg) * cont.unsqueeze(-1)
    cexp = fexp * c_prev + torch.sigmoid(i) * torch.tanh(g)
    np.testing.assert_allclose(c.numpy(), cexp.numpy(), rtol=1e-12)
    np.testing.assert_allclose(h.numpy(), (torch.sigmoid(o) * torch.tanh(cexp)).numpy(),
                               rtol=1e-12)


def test_lstm_matches_reference_formula():
    torch.manual_seed(3)
    r = np.random.RandomState(3)
    T, N, D, H = 5, 3, 4, 2
    layer = _layer("LSTM", H, [(T, N, D), (T, N)])
    W_xc, b_c, W_hc = _params64(layer)
    x = torch.tensor(r.randn(T, N, D))
    cont = torch.tensor(r.randint(0, 2, size=(T, N)).astype(np.float64))
    cont[0] = 0
    out, = layer.run([x, cont], [W_xc, b_c, W_hc])
    h = torch.zeros(N, H, dtype=torch.float64)
    c = torch.zeros(N, H, dtype=torch.float64)
    for t in range(T):
        gt = x[t] @ W_xc.T + b_c + (cont[t, :, None] * h) @ W_hc.T
        i, f, o = [torch.sigmoid(gt[:, k * H:(k + 1) * H]) for k in range(3)]
        g = torch.tanh(gt[:, 3 * H:])
        c = cont[t, :, None] * f * c + i * g
        h = o * torch.tanh(c)
        np.testing.assert_allclose(out[t].numpy(), h.numpy(), rtol=1e-12, atol=1e-14)


def test_state_carried_across_forwards_without_expose_hidden():
    """Caffe copies h_T (and c_T) into h_0 (c_0) at the start of the next forward."""
    torch.manual_seed(4)
    r = np.random.RandomState(4)
    layer = _layer("LSTM", 3, [(2, 2, 4), (2, 2)])
    p = _params64(layer)
    x1, x2 = torch.tensor(r.randn(2, 2, 4)), torch.tensor(r.randn(2, 2, 4))
    full = _layer("LSTM", 3, [(4, 2, 4), (4, 2)])
    ones = torch.ones(2, 2, dtype=torch.float64)
    first = torch.zeros(2, 2, dtype=torch.float64)
    first[1] = 1
    layer.run([x1, first], p)
    second, = layer.run([x2, ones], p)
    whole, = full.run([torch.cat([x1, x2]), torch.cat([first, ones])], p)
    np.testing.assert_allclose(second.numpy(), whole[2:].numpy(), rtol=1e-12)
    # cont == 0 at t=0 discards the carried state
    third, = layer.run([x1, first], p)
    np.testing.assert_allclose(third.numpy(), whole[:2].numpy(), rtol=1e-12)


@pytest.mark.parametrize("type_", ["RNN", "LSTM"])
def test_expose_hidden(type_):
    torch.manual_seed(5)
    r = np.random.RandomState(5)
    nrec = 2 if type_ == "LSTM" else 1
    T, N, H = 3, 2, 3
    shapes = [(T, N, 4), (T, N)] + [(1, N, H)] * nrec
    layer = _layer(type_, H, shapes, expose=True, ntop=1 + nrec)
    assert layer.output_shapes(shapes) == [(T, N, H)] + [(1, N, H)] * nrec
    p = _params64(layer)
    x = torch.tensor(r.randn(T, N, 4))
    ones = torch.ones(T, N, dtype=torch.float64)
    h0 = [torch.tensor(r.randn(1, N, H)) for _ in range(nrec)]
    outs = layer.run([x, ones] + h0, p)
    assert len(outs) == 1 + nrec
    # the exposed final state feeds the continuation of the sequence
    more = layer.run([x, ones] + outs[1:], p)
    plain = _layer(type_, H, [(2 * T, N, 4), (2 * T, N)] + [(1, N, H)] * nrec, expose=True,
                   ntop=1 + nrec)
    whole = plain.run([torch.cat([x, x]), torch.cat([ones, ones])] + h0, p)
    np.testing.assert_allclose(more[0].numpy(), whole[0][T:].numpy(), rtol=1e-12)
    if type_ == "LSTM":
        np.testing.assert_allclose(outs[1].numpy(), outs[0][-1:].numpy())
    # as in Caffe, no gradient flows into the exposed initial state
    hreq = [h.clone().requires_grad_(True) for h in h0]
    o = layer.run([x.clone().requires_grad_(True), ones] + hreq, p)[0]
    g = torch.autograd.grad(o.sum(), hreq, allow_unused=True)
    assert all(gi is None or torch.all(gi == 0) for gi in g)


def test_errors():
    with pytest.raises(LayerError) as e:
        build(make_param("LSTM", "recurrent_param { num_output: 0 }"), [(3, 2, 4), (3, 2)])
    assert "recurrent_param.num_output" in str(e.value) and "'L'" in str(e.value)
    with pytest.raises(LayerError) as e:
        build(make_param("RNN", "recurrent_param { num_output: 2 }"), [(3, 2, 4), (3, 3)])
    assert "bottom[1]" in str(e.value)
    with pytest.raises(LayerError):
        build(make_param("RNN", "recurrent_param { num_output: 2 }", nbottom=3),
              [(3, 2, 4), (3, 2), (3, 5)])
    with pytest.raises(LayerError):
        build(make_param("LSTM", "recurrent_param { num_output: 2 expose_hidden: true }",
                         nbottom=4, ntop=3), [(3, 2, 4), (3, 2), (1, 2, 2), (1, 2, 3)])
    layer = build(make_param("LSTM", "recurrent_param { num_output: 2 }"), [(3, 2, 4), (3, 2)])
    with pytest.raises(LayerError) as e:
        layer.output_shapes([(4, 2, 4), (4, 2)])
    assert "timesteps" in str(e.value)
    with pytest.raises(LayerError) as e:
        build(make_param("LSTMUnit", nbottom=3, ntop=2), [(1, 2, 3), (1, 2, 10), (1, 2)])
    assert "bottom[1]" in str(e.value)
