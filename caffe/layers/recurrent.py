"""Recurrent layers: RNN, LSTM and LSTMUnit.

Caffe builds an unrolled internal net for RNN/LSTM; here the same computation
is written directly with torch ops, step by step, so the numbers, the blob
order and shapes and the gradients are those of the unrolled net:

* LSTM blobs: ``W_xc (4H, D)``, ``b_c (4H,)``, [``W_xc_static (4H, S)``],
  ``W_hc (4H, H)``; gates ordered i, f, o, g.
* RNN blobs: ``W_xh (H, D)``, ``b_h (H,)``, [``W_xh_static (H, S)``],
  ``W_hh (H, H)``, ``W_ho (O, H)``, ``b_o (O,)``.

Like Caffe, without ``expose_hidden`` the hidden state at the end of one
forward becomes the initial state of the next (it starts at zero; ``cont``
zero at the first step discards it), and no gradient crosses forward calls.
With ``expose_hidden`` the initial state comes from the extra bottoms and the
final state goes to the extra tops, and -- as in Caffe, whose unrolled net only
shares *data* with them -- neither carries a gradient.
"""
import torch
import torch.nn.functional as F

from ._util import count
from .base import CaffeLayer
from .registry import register_layer

# ---------------------------------------------------------------------------
# LSTMUnit
# ---------------------------------------------------------------------------

def _lstm_unit_forward(c_prev, gates, cont):
    """c_prev (..., H), gates (..., 4H), cont (...) -> c, h and the activations."""
    H = c_prev.shape[-1]
    i = torch.sigmoid(gates[..., :H])
    f = torch.sigmoid(gates[..., H:2 * H])
    o = torch.sigmoid(gates[..., 2 * H:3 * H])
    g = torch.tanh(gates[..., 3 * H:])
    contu = cont.unsqueeze(-1)
    f = torch.where(contu == 0, torch.zeros_like(f), contu * f)
    c = f * c_prev + i * g
    tanh_c = torch.tanh(c)
    h = o * tanh_c
    return c, h, i, f, o, g, tanh_c


class _LSTMUnitFn(torch.autograd.Function):
    """LSTMUnit with Caffe's backward (lstm_unit_layer.cpp); cont takes no gradient.

    Caffe's forget-gate derivative is ``f (1 - f)`` with ``f = cont * sigmoid``,
    which is the true derivative for binary ``cont``.
    """

    @staticmethod
    def forward(ctx, c_prev, gates, cont):
        c, h, i, f, o, g, tanh_c = _lstm_unit_forward(c_prev, gates, cont.detach())
        ctx.save_for_backward(c_prev, i, f, o, g, tanh_c)
        return c, h

    @staticmethod
    def backward(ctx, dc, dh):
        c_prev, i, f, o, g, tanh_c = ctx.saved_tensors
        if dc is None:
            dc = torch.zeros_like(c_prev)
        if dh is None:
            dh = torch.zeros_like(c_prev)
        c_term = dc + dh * o * (1 - tanh_c * tanh_c)
        dc_prev = c_term * f
        di = c_term * g * i * (1 - i)
        df = c_term * c_prev * f * (1 - f)
        do = dh * tanh_c * o * (1 - o)
        dg = c_term * i * (1 - g * g)
        return dc_prev, torch.cat([di, df, do, dg], dim=-1), None


@register_layer("LSTMUnit")
class LSTMUnitLayer(CaffeLayer):
    num_bottoms = (3, 3)
    num_tops = (2, 2)

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        self._check(self.bottom_shapes)

    def _check(self, shapes):
        c_prev, gates, cont = shapes[0], shapes[1], shapes[2]
        for k, (s, nax) in enumerate(((c_prev, 3), (gates, 3), (cont, 2))):
            if len(s) != nax:
                raise self.error("bottom[%d] must have %d axes, got shape %s"
                                 % (k, nax, tuple(s)), field="bottom[%d]" % k)
            if s[0] != 1:
                raise self.error("bottom[%d] must have first dimension 1 (one timestep), "
                                 "got shape %s" % (k, tuple(s)), field="bottom[%d]" % k)
            if s[1] != c_prev[1]:
                raise self.error("bottom[%d] must have %d instances (axis 1), got shape %s"
                                 % (k, c_prev[1], tuple(s)), field="bottom[%d]" % k)
        if gates[2] != 4 * c_prev[2]:
            raise self.error("gate input (bottom[1]) must have 4 * hidden_dim = %d channels, "
                             "got shape %s" % (4 * c_prev[2], tuple(gates)), field="bottom[1]")

    def output_shapes(self, bottom_shapes):
        self._check([tuple(s) for s in bottom_shapes])
        return [tuple(bottom_shapes[0])] * 2

    def run(self, bottoms, params):
        c_prev, gates, cont = bottoms
        c, h = _LSTMUnitFn.apply(c_prev, gates, cont)
        return [c, h]


# ---------------------------------------------------------------------------
# RNN / LSTM
# ---------------------------------------------------------------------------

class _RecurrentLayer(CaffeLayer):
    num_recur = 1          # recurrent state blobs (RNN: h; LSTM: h, c)

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        rp = layer_param.recurrent_param
        self.expose_hidden = bool(rp.expose_hidden)
        nb = len(self.bottom_shapes)
        min_b = 2 + (self.num_recur if self.expose_hidden else 0)
        if not min_b <= nb <= min_b + 1:
            raise self.error("expects %d or %d bottoms (x, cont%s, optional x_static), got %d"
                             % (min_b, min_b + 1,
                                ", hidden state" if self.expose_hidden else "", nb),
                             field="bottom")
        self.static_input = nb > min_b
        n_top = 1 + (self.num_recur if self.expose_hidden else 0)
        if len(layer_param.top) and len(layer_param.top) != n_top:
            raise self.error("expects %d tops, got %d" % (n_top, len(layer_param.top)),
                             field="top")
        self.num_output = int(rp.num_output)
        if self.num_output <= 0:
            raise self.error("num_output must be positive", field="recurrent_param.num_output")
        x_shape = self.bottom_shapes[0]
        if len(x_shape) < 2:
            raise self.error("bottom[0] must have at least 2 axes (#timesteps, #streams, ...), "
                             "got shape %s" % (x_shape,), field="bottom[0]")
        self.T = x_shape[0]
        self._check_shapes(self.bottom_shapes)
        self.input_dim = count(x_shape, 2)
        self.static_dim = count(self.bottom_shapes[2], 1) if self.static_input else None
        self._state = None     # carried recurrent state (no expose_hidden)
        self._make_blobs(rp)

    def _check_shapes(self, shapes):
        x_shape, cont_shape = tuple(shapes[0]), tuple(shapes[1])
        if len(x_shape) < 2:
            raise self.error("bottom[0] must have at least 2 axes (#timesteps, #streams, ...), "
                             "got shape %s" % (x_shape,), field="bottom[0]")
        if x_shape[0] != self.T:
            raise self.error("input number of timesteps changed (%d, was %d)"
                             % (x_shape[0], self.T), field="bottom[0]")
        if len(cont_shape) != 2 or cont_shape != x_shape[:2]:
            raise self.error("bottom[1] (cont) must have exactly 2 axes (#timesteps, #streams) "
                             "= %s, got shape %s" % (x_shape[:2], cont_shape), field="bottom[1]")
        n = x_shape[1]
        if self.static_input:
            s = tuple(shapes[2])
            if len(s) < 1 or s[0] != n:
                raise self.error("bottom[2] (x_static) must have first dimension %d, got shape %s"
                                 % (n, s), field="bottom[2]")
        if self.expose_hidden:
            first = 2 + self.static_input
            want = (1, n, self.num_output)
            for k in range(first, first + self.num_recur):
                if tuple(shapes[k]) != want:
                    raise self.error("bottom[%d] (initial hidden state) must have shape %s, "
                                     "got %s" % (k, want, tuple(shapes[k])),
                                     field="bottom[%d]" % k)

    def output_shapes(self, bottom_shapes):
        self._check_shapes(bottom_shapes)
        shapes = self._geometry(bottom_shapes)
        return shapes

    # -- state carried across forwards (Caffe copies h_T into h_0) ------------
    def _initial_state(self, n, like):
        shape = (n, self.num_output)
        states = []
        for k in range(self.num_recur):
            prev = None if self._state is None else self._state[k]
            if prev is None:
                st = torch.zeros(shape, dtype=like.dtype, device=like.device)
            elif prev.shape == shape:
                st = prev.to(device=like.device, dtype=like.dtype)
            elif prev.numel() >= n * self.num_output:
                # a Blob shrunk in place keeps its leading values
                st = prev.reshape(-1)[:n * self.num_output].reshape(shape).to(
                    device=like.device, dtype=like.dtype)
            else:
                st = torch.zeros(shape, dtype=like.dtype, device=like.device)
            states.append(st)
        return states

    def reset(self):
        """Zero the carried hidden state (Caffe's RecurrentLayer::Reset)."""
        self._state = None

    def _split_bottoms(self, bottoms):
        x, cont = bottoms[0], bottoms[1]
        k = 2
        x_static = None
        if self.static_input:
            x_static = bottoms[2]
            k = 3
        n = x.shape[1]
        if self.expose_hidden:
            states = [b.detach().reshape(n, self.num_output) for b in bottoms[k:k + self.num_recur]]
        else:
            states = self._initial_state(n, x)
        return x, cont.detach(), x_static, states

    def _store_state(self, finals):
        if not self.expose_hidden and finals[0].device.type != "meta":
            self._state = [s.detach() for s in finals]


@register_layer("RNN")
class RNNLayer(_RecurrentLayer):
    num_bottoms = (2, 4)
    num_tops = (1, 2)
    num_recur = 1

    def _make_blobs(self, rp):
        H = self.num_output
        self.add_param_blob((H, self.input_dim), rp.weight_filler)      # W_xh
        self.add_param_blob((H,), rp.bias_filler)                       # b_h
        if self.static_input:
            self.add_param_blob((H, self.static_dim), rp.weight_filler)  # W_xh_static
        self.add_param_blob((H, H), rp.weight_filler)                   # W_hh
        self.add_param_blob((H, H), rp.weight_filler)                   # W_ho
        self.add_param_blob((H,), rp.bias_filler)                       # b_o

    def _geometry(self, shapes):
        T, n = shapes[0][0], shapes[0][1]
        out = [(T, n, self.num_output)]
        if self.expose_hidden:
            out.append((1, n, self.num_output))
        return out

    def run(self, bottoms, params):
        x, cont, x_static, (h,) = self._split_bottoms(bottoms)
        if self.static_input:
            W_xh, b_h, W_s, W_hh, W_ho, b_o = params
        else:
            W_xh, b_h, W_hh, W_ho, b_o = params
            W_s = None
        T, n = x.shape[0], x.shape[1]
        xw = F.linear(x.reshape(T, n, -1), W_xh, b_h)                    # W_xh_x
        sw = F.linear(x_static.reshape(n, -1), W_s) if W_s is not None else None
        contu = cont.unsqueeze(-1).to(x.dtype)
        hs = []
        for t in range(T):
            pre = F.linear(h * contu[t], W_hh) + xw[t]
            if sw is not None:
                pre = pre + sw
            h = torch.tanh(pre)
            hs.append(h)
        hseq = torch.stack(hs, 0)
        o = torch.tanh(F.linear(hseq, W_ho, b_o))
        self._store_state([h])
        tops = [o]
        if self.expose_hidden:
            tops.append(h.detach().reshape(1, n, self.num_output))
        return tops


@register_layer("LSTM")
class LSTMLayer(_RecurrentLayer):
    num_bottoms = (2, 5)
    num_tops = (1, 3)
    num_recur = 2

    def _make_blobs(self, rp):
        H4 = 4 * self.num_output
        self.add_param_blob((H4, self.input_dim), rp.weight_filler)      # W_xc
        self.add_param_blob((H4,), rp.bias_filler)                       # b_c
        if self.static_input:
            self.add_param_blob((H4, self.static_dim), rp.weight_filler)  # W_xc_static
        self.add_param_blob((H4, self.num_output), rp.weight_filler)     # W_hc

    def _geometry(self, shapes):
        T, n = shapes[0][0], shapes[0][1]
        out = [(T, n, self.num_output)]
        if self.expose_hidden:
            out += [(1, n, self.num_output)] * 2
        return out

    def run(self, bottoms, params):
        x, cont, x_static, (h, c) = self._split_bottoms(bottoms)
        if self.static_input:
            W_xc, b_c, W_s, W_hc = params
        else:
            W_xc, b_c, W_hc = params
            W_s = None
        T, n = x.shape[0], x.shape[1]
        xw = F.linear(x.reshape(T, n, -1), W_xc, b_c)                    # W_xc_x
        sw = F.linear(x_static.reshape(n, -1), W_s) if W_s is not None else None
        cont = cont.to(x.dtype)
        contu = cont.unsqueeze(-1)
        hs = []
        for t in range(T):
            gates = F.linear(h * contu[t], W_hc) + xw[t]
            if sw is not None:
                gates = gates + sw
            c, h = _LSTMUnitFn.apply(c, gates, cont[t])
            hs.append(h)
        self._store_state([h, c])
        tops = [torch.stack(hs, 0)]
        if self.expose_hidden:
            tops.append(h.detach().reshape(1, n, self.num_output))
            tops.append(c.detach().reshape(1, n, self.num_output))
        return tops
