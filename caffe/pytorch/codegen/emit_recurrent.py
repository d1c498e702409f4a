"""Emitters for Caffe's recurrent layers: LSTMUnit, LSTM and RNN (the unrolled
net written as a loop over time steps; the carried hidden state lives on the
generated submodule, as on Caffe's layer)."""
from .registry import register


@register("LSTMUnit")
def lstm_unit(ctx):
    fn = ctx.helper("caffe_lstm_unit")
    ctx.assign("%s(%s)" % (fn, ", ".join(ctx.bottoms)), comment="new cell, hidden state")


def _recurrent(ctx, kind, num_recur):
    rp = ctx.lp.recurrent_param
    expose = bool(rp.expose_hidden)
    nb = len(ctx.bottoms)
    first_hidden = nb - num_recur if expose else nb
    if len(ctx.tops) != 1 + (num_recur if expose else 0):
        raise ctx.error("expected %d tops" % (1 + (num_recur if expose else 0)), field="top")
    ctx.helper(kind)
    shapes = ", ".join("%s=%s" % (n, tuple(t.shape)) for n, t in ctx.blobs.items())
    ctx.init("self.%s = %s(%d, %s)" % (ctx.attr, kind, rp.num_output, shapes))
    ctx.freeze()
    args = list(ctx.bottoms[:2])
    if first_hidden > 2:
        args.append("x_static=%s" % ctx.bottoms[2])
    names = ("h0", "c0")
    for k, b in enumerate(ctx.bottoms[first_hidden:]):
        args.append("%s=%s" % (names[k], b))
    note = "final hidden state in the extra tops" if expose else \
        "starts from the last forward's final state (self.%s.reset() zeroes it)" % ctx.attr
    ctx.assign("self.%s(%s)" % (ctx.attr, ", ".join(args)), comment=note)


@register("LSTM")
def lstm(ctx):
    _recurrent(ctx, "CaffeLSTM", 2)


@register("RNN")
def rnn(ctx):
    _recurrent(ctx, "CaffeRNN", 1)
