"""The opt-in inference path: ``net.optimize_for_inference()`` (or
``CAFFE_OPTIMIZE_INFERENCE=1`` for every TEST-phase Net).

What it does to a TEST-phase net, measured by ``bench/forward.py``:

* BatchNorm / Scale / Bias layers that only follow a Convolution,
  Deconvolution or InnerProduct are folded into its weights (the maths of
  ``caffe.folding``, shared with ``caffe.tools.merge_bn``), and a ReLU that
  follows is applied in place on the result;
* when every layer is a tensor layer, the whole forward is traced once per
  input shape and handed to ``torch.jit.freeze`` + ``torch.jit.
  optimize_for_inference`` (oneDNN conv+ReLU / conv+add fusions, pre-packed
  weights, blocked layouts kept between layers); nets with Python or data
  layers run the folded program eagerly, those layers seeing NCHW blobs.

Semantics: outputs equal the unoptimised net's (to float rounding).  The
output blobs and any blob named in ``forward(blobs=[...])`` are filled; other
intermediate blobs are not updated, and reading one raises
:class:`OptimizedBlobError` naming the blob and why (never stale numbers).
Parameters are checksummed each forward, so ``copy_from`` or writes through
``net.params[...]`` re-derive the folded weights.  Backward and TRAIN nets
are untouched: ``net.optimize_for_inference(False)`` restores the plain path.
"""
import logging
import warnings

import torch
import torch.nn.functional as F

from . import _common, folding
from .blob import Blob
from .layers.base import INPUT

logger = logging.getLogger("caffe")

__all__ = ["OptimizedBlobError", "optimize", "InferencePlan"]


class OptimizedBlobError(RuntimeError):
    """Reading a blob that the optimised forward does not fill."""


class _UnfilledBlob(Blob):
    """Stands in for a blob the optimised forward does not write."""

    __slots__ = ("_why", "_name", "_original")

    def _raise(self):
        raise OptimizedBlobError(
            "blob %r is not computed by the optimised forward: %s. Ask for it with "
            "net.forward(blobs=[%r]) or call net.optimize_for_inference(False)"
            % (self._name, self._why, self._name))

    @property
    def data(self):
        self._raise()

    @property
    def diff(self):
        self._raise()


def _unfilled(name, why, original):
    b = _UnfilledBlob(tuple(original.shape))
    b._why, b._name, b._original = why, name, original
    return b


# ---------------------------------------------------------------------------
# program steps
# ---------------------------------------------------------------------------
class _Fused:
    """A Convolution / Deconvolution / InnerProduct with the affine layers and
    ReLU folded into it."""

    def __init__(self, index, layer, lp):
        self.index, self.layer, self.lp = index, layer, lp
        self.affines = []           # (index, layer param, layer)
        self.relu = False
        self.names = [lp.name]
        self.weight = self.bias = None

    def derive(self):
        """Folded weight and bias from the layers' current parameters."""
        blobs = [b.data_buffer.host_readonly() for b in self.layer.blobs]
        lp = self.lp
        w = blobs[0]
        b = blobs[1] if folding.bias_term(lp) else None
        for _, alp, alayer in self.affines:
            affine = folding.affine_of(alp, [x.data_buffer.host_readonly() for x in alayer.blobs])
            w, b = folding.fold_into(lp.type, w, b, affine, group=lp.convolution_param.group,
                                     transpose=lp.inner_product_param.transpose)
        dev = _common.compute_device()
        self.weight = w.contiguous().to(dev)
        self.bias = None if b is None else b.contiguous().to(dev)

    def __call__(self, x):
        layer, w, b = self.layer, self.weight, self.bias
        if self.lp.type != "InnerProduct" and getattr(layer, "_simple", False):
            y = layer._apply(x, w, b)
        elif self.lp.type == "InnerProduct" and not layer.transpose:
            y = F.linear(x.flatten(layer.axis) if layer.axis < x.dim() - 1 else x, w, b)
        else:
            y = layer.run([x], [w] + ([b] if folding.bias_term(self.lp) else []))[0]
            if b is not None and not folding.bias_term(self.lp):
                y = y + b.view(*([1] * layer.axis), -1, *([1] * (y.dim() - layer.axis - 1)))
        return torch.relu_(y) if self.relu else y


def _is_relu(lp):
    return lp.type == "ReLU" and lp.relu_param.negative_slope == 0 and len(lp.bottom) == 1


class InferencePlan:
    """The folded program of one net, traced per input shape when possible."""

    def __init__(self, net, jit=True):
        self.net = net
        self.jit = jit
        self.kind = None                 # which program the last compile chose
        self._build()
        self._requested = set()
        self._traced = {}
        self._checksum = None

    # -- analysis ------------------------------------------------------------
    def _build(self):
        net = self.net
        lps = net._layer_params
        last_writer = {}                 # blob id -> (step position of the writer)
        readers = {}                     # (writer layer, blob id) -> [reader layers]
        for i in range(len(net._layers)):
            for bid in net._bottom_id_lists[i]:
                readers.setdefault((last_writer.get(bid), bid), []).append(i)
            for tid in net._top_id_lists[i]:
                last_writer[tid] = i
        outputs = set(net._outputs)
        fused_into = {}                  # layer index -> _Fused that absorbed it
        groups = {}                      # target layer index -> _Fused
        producer = {}                    # blob id -> layer index of its current writer
        self.fused_blobs = {}            # blob id -> the _Fused group that never materialises it
        self.inputs = []
        self.steps = []                  # ("fused", _Fused, bottom ids, top id) | ("layer", i)
        blob_layers = False
        for i, (layer, lp) in enumerate(zip(net._layers, lps)):
            bottoms, tops = net._bottom_id_lists[i], net._top_id_lists[i]
            if getattr(layer, "kind", None) == INPUT:       # Input: tops hold what the user wrote
                self.inputs.extend(tops)
                for t in tops:
                    producer[t] = i
                continue
            src = producer.get(bottoms[0]) if len(bottoms) == 1 else None
            group = groups.get(src) if src is not None else None
            single = (src is not None and readers.get((src, bottoms[0])) == [i]
                      and len(tops) == 1)
            foldable = (group is not None and single and not group.relu
                        and lp.type in folding.AFFINE_TYPES
                        and folding.affine_reason(lp) is None
                        and len(getattr(layer, "blobs", [])) > 0)
            if foldable or (group is not None and single and _is_relu(lp) and not group.relu):
                if foldable:
                    group.affines.append((i, lp, layer))
                else:
                    group.relu = True
                group.names.append(lp.name)
                fused_into[i] = group
                if tops[0] != bottoms[0]:
                    self.fused_blobs[bottoms[0]] = group
                self._retarget(group, tops[0])
                del groups[src]
                groups[i] = group
                producer[tops[0]] = i
                continue
            if (lp.type in folding.FOLD_TARGETS and folding.target_reason(lp) is None
                    and not getattr(layer, "_caffe_blob_layer", False)):
                g = _Fused(i, layer, lp)
                groups[i] = g
                self.steps.append(["fused", g, bottoms[0], tops[0]])
            else:
                blob_layers |= bool(getattr(layer, "_caffe_blob_layer", False))
                self.steps.append(["layer", i])
            for t in tops:
                producer[t] = i
        self.jit = self.jit and not blob_layers
        for st in self.steps:
            if st[0] == "fused":
                st[1].derive()
        self.outputs = outputs
        self._position = {}

    def _retarget(self, group, top):
        for st in self.steps:
            if st[0] == "fused" and st[1] is group:
                st[3] = top

    # -- running -------------------------------------------------------------
    def _program(self, keep):
        """A function of the input tensors returning the tensors of ``keep``."""
        net = self.net
        steps = self.steps
        inputs = list(self.inputs)
        keep = list(keep)
        dev = _common.compute_device()

        def run(*xs):
            env = dict(zip(inputs, xs))
            for st in steps:
                if st[0] == "fused":
                    env[st[3]] = st[1](env[st[2]])
                    continue
                i = st[1]
                layer = net._layers[i]
                bids, tids = net._bottom_id_lists[i], net._top_id_lists[i]
                if getattr(layer, "_caffe_blob_layer", False):
                    bottoms, tops = net._steps[i].bottoms, net._steps[i].tops
                    for b, blob in zip(bids, bottoms):
                        blob.data_buffer.write(env[b].contiguous())
                    layer.reshape(bottoms, tops)
                    layer.forward(bottoms, tops)
                    for t, blob in zip(tids, tops):
                        env[t] = blob.data_buffer.compute(dev)
                    continue
                params = [b.data_buffer.compute(dev) for b in getattr(layer, "blobs", [])]
                outs = layer.run([env[b] for b in bids], params)
                if isinstance(outs, torch.Tensor):
                    outs = [outs]
                for t, o in zip(tids, outs):
                    env[t] = o
            return tuple(env[k] for k in keep)
        return run

    def _params_checksum(self):
        sums = [b.data_buffer.compute().sum() for layer in self.net._layers
                for b in getattr(layer, "blobs", [])]
        return torch.stack(sums).tolist() if sums else []

    def _why(self, bid):
        group = self.fused_blobs.get(bid)
        if group is None:
            return "an intermediate blob of the optimised graph"
        return "fused into %s" % " + ".join(group.names)

    def request(self, names):
        ids = set(self.net._blob_index[n] for n in names)
        for bid in ids:
            if bid in self.fused_blobs:
                raise OptimizedBlobError(
                    "blob %r was %s by optimize_for_inference and is never computed; call "
                    "net.optimize_for_inference(False) to read it"
                    % (self.net._blob_names[bid], self._why(bid)))
        self._requested = ids

    def forward(self):
        net = self.net
        checksum = self._params_checksum()
        if checksum != self._checksum:
            for st in self.steps:
                if st[0] == "fused":
                    st[1].derive()
            self._traced = {}
            self._checksum = checksum
        keep = sorted(self.outputs | self._requested)
        dev = _common.compute_device()
        xs = [net._blobs[b].data_buffer.compute(dev) for b in self.inputs]
        key = (tuple(tuple(x.shape) for x in xs), tuple(keep), str(dev))
        fn = self._traced.get(key)
        if fn is None:
            fn = self._compile(keep, xs)
            self._traced[key] = fn
        with torch.no_grad():
            outs = fn(*xs)
        for bid in range(len(net._blobs)):
            blob = net._blobs[bid]
            if isinstance(blob, _UnfilledBlob):
                net._blobs[bid] = blob._original
        for bid, t in zip(keep, outs):
            net._blobs[bid].data_buffer.write(t.contiguous())
        self._requested = set()
        for bid in range(len(net._blobs)):
            if bid in keep or bid in self.inputs:
                continue
            name = net._blob_names[bid]
            why = self._why(bid)
            net._blobs[bid] = _unfilled(name, why, net._blobs[bid])
        net._blobs_dict = None
        loss = 0.0
        for bid in keep:
            w = net._blob_loss_weights[bid]
            if w:
                loss += w * float(net._blobs[bid].data_buffer.compute().sum())
        return loss

    def _compile(self, keep, xs):
        """The fastest of: the traced + frozen + oneDNN-optimised program, the
        traced + frozen one, the eager one -- timed on these inputs.  A compiled
        graph is only a candidate when it agrees with the eager program (some
        oneDNN rewrites are not exact for every op, e.g. avg_pool2d with
        divisor_override), and oneDNN layout conversions around ops it lacks
        (LRN, padded pooling) can make it slower than eager: hence the timing."""
        run = self._program(keep)
        self.kind = "eager"
        if not self.jit:
            return run
        with torch.no_grad():
            want = [t.clone() for t in run(*xs)]
            try:
                # shapes are fixed per trace by design; torch.jit is deprecated in favour of
                # torch.compile, whose compile time on a small CPU is minutes per shape
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    traced = torch.jit.trace(_Wrap(run).eval(), tuple(xs), check_trace=False)
                    frozen = torch.jit.freeze(traced)
                    candidates = [("oneDNN-optimised", torch.jit.optimize_for_inference(frozen)),
                                  ("frozen", frozen)]
            except Exception as exc:         # an op the tracer cannot take: stay eager
                logger.info("optimize_for_inference: tracing failed (%s); running eagerly", exc)
                return run
            timed = [(_time(run, xs), "eager", run)]
            for what, fn in candidates:
                got = fn(*xs)
                if all(_agrees(a, b) for a, b in zip(want, got)):
                    timed.append((_time(fn, xs), what, fn))
                else:
                    logger.info("optimize_for_inference: the %s graph of %r disagrees with the "
                                "eager program; not used", what, self.net.name)
        best = min(timed, key=lambda t: t[0])
        self.kind = best[1]
        return best[2]

    def restore(self):
        net = self.net
        for bid, blob in enumerate(net._blobs):
            if isinstance(blob, _UnfilledBlob):
                net._blobs[bid] = blob._original
        net._blobs_dict = None


def _time(fn, xs, runs=2):
    """Best of ``runs`` timed calls after one warm-up (oneDNN packs on first use)."""
    import time
    fn(*xs)
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(*xs)
        best = min(best, time.perf_counter() - t0)
    return best


def _agrees(want, got, rtol=1e-5):
    if want.shape != got.shape:
        return False
    scale = float(want.abs().max()) if want.numel() else 0.0
    return float((want - got).abs().max()) <= rtol * max(scale, 1e-30) if want.numel() else True


class _Wrap(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def optimize(net, enable=True, jit=True):
    """Install (or with ``enable=False`` remove) the inference plan of ``net``."""
    plan = getattr(net, "_inference", None)
    if plan is not None:
        plan.restore()
        net._inference = None
    if not enable:
        return net
    if net.phase != _common.TEST:
        raise ValueError("optimize_for_inference needs a TEST-phase net; %r is TRAIN"
                         % net.name)
    net._inference = InferencePlan(net, jit=jit)
    return net
