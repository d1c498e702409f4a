"""The opt-in inference path: ``net.optimize_for_inference()`` (or
``CAFFE_OPTIMIZE_INFERENCE=1`` for every TEST-phase Net).

What it does to a TEST-phase net, measured by ``bench/forward.py``:

* BatchNorm / Scale / Bias layers that only follow a Convolution,
  Deconvolution or InnerProduct are folded into its weights (the maths of
  ``caffe.folding``, shared with ``caffe.tools.merge_bn``); a ReLU that
  follows, and an Eltwise SUM with a ReLU after it (a residual block's end),
  join the same step;
* on the CPU, a channels-last program: activations stay in NHWC between
  layers, convolutions run oneDNN's fused kernels with weights packed once
  (``caffe._onednn``), pooling runs on NHWC (several times faster than NCHW
  in PyTorch's CPU kernels); layers outside a known set get NCHW inputs;
* when every layer is a tensor layer, the NCHW program is also traced once
  per input shape and handed to ``torch.jit.freeze`` (+ ``torch.jit.
  optimize_for_inference``); on a GPU, the eager program is also captured
  as a CUDA graph.  Each candidate is checked against the eager program and
  timed on the first input of each shape; the fastest that agrees is kept
  (``net._inference.kind`` names it).

Semantics: outputs equal the unoptimised net's (to float rounding).  The
output blobs and any blob named in ``forward(blobs=[...])`` are filled; other
intermediate blobs are not updated, and reading one raises
:class:`OptimizedBlobError` naming the blob and why (never stale numbers).
Writes to the parameters (``copy_from``, ``net.params[...][i].data[...] =``,
numpy views kept from earlier) re-derive the folded weights: see
:class:`_ParamWatch`.  Backward and TRAIN nets are untouched:
``net.optimize_for_inference(False)`` restores the plain path.
"""
import logging
import sys
import time
import warnings

import torch
import torch.nn.functional as F

from . import _common, _onednn, folding
from .blob import Blob
from .layers.base import INPUT

logger = logging.getLogger("caffe")

__all__ = ["OptimizedBlobError", "ProgramRefused", "optimize", "InferencePlan", "PROGRAMS"]

# The programs a plan chooses from (``net._inference.kind``), in the order tried.
PROGRAMS = ("eager", "channels-last oneDNN", "CUDA graph", "frozen", "oneDNN-optimised")

# Layer types whose implementations index tensors logically (no raw-memory
# views), so they take channels-last inputs as they are; other layers get
# NCHW-contiguous inputs in the channels-last program.
CHANNELS_LAST_SAFE = frozenset((
    "ReLU", "Pooling", "LRN", "Eltwise", "Concat", "Dropout", "Sigmoid", "TanH", "Power",
    "AbsVal", "ELU", "Split", "BatchNorm", "Scale", "Bias"))


class OptimizedBlobError(RuntimeError):
    """Reading a blob that the optimised forward does not fill."""


class ProgramRefused(RuntimeError):
    """A program forced with ``optimize(net, program=...)`` cannot run this
    net here, or its outputs disagree with the eager program's."""


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
# noticing parameter writes
# ---------------------------------------------------------------------------
_USE_COUNT = getattr(torch._C, "_storage_Use_Count", None)


def _holders(t):
    """Number of references to ``t``'s storage: the tensors sharing it, plus
    :data:`_PROBE_REFS` that asking adds (1 or 0 depending on the torch version)."""
    return _USE_COUNT(t.untyped_storage()._cdata)


_PROBE_REFS = _holders(torch.zeros(1)) - 1 if _USE_COUNT is not None else 0


def _env_refs(env, bid):
    return sys.getrefcount(env[bid])


# references to a tensor held by nothing but one slot of the program's
# environment, as _env_refs counts them (measured, not assumed: how many
# references the call itself adds differs between Python versions)
_ENV_ONLY = _env_refs({0: torch.zeros(1)}, 0)


def _overwritable(env, bid):
    """Whether the tensor of blob ``bid`` may be written over: the
    environment's slot is its only reference and no other tensor (a view, a
    blob's buffer, a numpy array) shares its memory."""
    return (_USE_COUNT is not None and _env_refs(env, bid) == _ENV_ONLY
            and _holders(env[bid]) == 1 + _PROBE_REFS)


class _ParamWatch:
    """Notices writes to the parameter blobs a folded program was derived
    from, without reading every weight on every forward.

    A write goes through the blob's buffer (``copy_from``, ``blob.data``
    handing out a writable view, ``mutable_compute``...), which bumps its
    ``version``; or through a numpy view handed out before the program was
    derived and still alive.  Such a view keeps a tensor on the host storage,
    so the storage's holder count is above the buffer's own (``_host`` and its
    shaped view): only those blobs are fingerprinted each forward.  Without
    the holder count (an old torch), every blob is fingerprinted."""

    def __init__(self, blobs=()):
        self.blobs, self.state = [], []
        self.add(blobs)

    def add(self, blobs):
        """Watch these blobs too, from their current values on."""
        known = set(map(id, self.blobs))
        for b in blobs:
            if id(b) not in known:
                known.add(id(b))
                self.blobs.append(b)
                self.state.append(self._state(b._data))

    @staticmethod
    def _fingerprint(buf):
        t = buf.host_readonly()
        return (float(t.sum()), float(torch.linalg.vector_norm(t))) if t.numel() else ()

    def _state(self, buf):
        host = buf._host
        if host is None:
            watched = False
        elif _USE_COUNT is None:
            watched = True
        else:
            own = 1 + (buf._hv is not None)
            watched = _holders(host) > own + _PROBE_REFS
        return buf, buf.version, (self._fingerprint(buf) if watched else None)

    def changed(self):
        for blob, (buf, version, fp) in zip(self.blobs, self.state):
            if blob._data is not buf or buf.version != version:
                return True
            if fp is not None and self._fingerprint(buf) != fp:
                return True
        return False


# ---------------------------------------------------------------------------
# program steps
# ---------------------------------------------------------------------------
class _Fused:
    """A Convolution / Deconvolution / InnerProduct with the affine layers
    folded into it, then optionally ``+ add`` (an Eltwise SUM) and a ReLU."""

    def __init__(self, index, layer, lp):
        self.index, self.layer, self.lp = index, layer, lp
        self.affines = []           # (index, layer param, layer)
        self.relu = False
        self.add = None             # blob id of the Eltwise SUM's other operand
        self.names = [lp.name]
        self.weight = self.bias = None
        self.packed = None          # _onednn.PackedConv2d on the CPU
        # a 2-D convolution oneDNN's packed kernel can run (on the CPU)
        self.onednn_conv = (lp.type == "Convolution" and getattr(layer, "_simple", False)
                            and layer.nsp == 2 and _onednn.available())

    def derive(self):
        """Folded weight and bias from the layers' current parameters (copies),
        or, with nothing to fold, none: the layer's blobs are then read live."""
        self.packed = None
        self.weight = self.bias = None
        if not self.affines:
            return
        lp = self.lp
        blobs = [b.data_buffer.host_readonly() for b in self.layer.blobs]
        w = blobs[0]
        b = blobs[1] if folding.bias_term(lp) else None
        for _, alp, alayer in self.affines:
            affine = folding.affine_of(alp, [x.data_buffer.host_readonly() for x in alayer.blobs])
            w, b = folding.fold_into(lp.type, w, b, affine, group=lp.convolution_param.group,
                                     transpose=lp.inner_product_param.transpose)
        dev = _common.compute_device()
        self.weight = w.to(dev, copy=True).contiguous()
        self.bias = None if b is None else b.to(dev, copy=True).contiguous()

    def weights(self):
        if self.weight is not None:
            return self.weight, self.bias
        dev = _common.compute_device()
        blobs = self.layer.blobs
        return (blobs[0].data_buffer.compute(dev),
                blobs[1].data_buffer.compute(dev) if folding.bias_term(self.lp) else None)

    def baked_blobs(self, packed):
        """The parameter blobs this step copied (folded weights, or with
        ``packed`` those the channels-last program packs)."""
        if not self.affines and not (packed and self.onednn_conv):
            return []
        return list(self.layer.blobs) + [b for _, _, alayer in self.affines
                                         for b in alayer.blobs]

    def __call__(self, x, add=None, onednn=False, into_add=False):
        # onednn: the channels-last program, which only runs on the CPU;
        # into_add: ``add`` is dead after this step and may take the result
        if onednn and self.onednn_conv and x.dim() == 4:
            if self.packed is None:
                s, p, d = self.layer._args
                self.packed = _onednn.PackedConv2d(*self.weights(), s, p, d, self.layer.group)
            return self.packed(x, relu=self.relu, add=add, into_add=into_add)
        layer = self.layer
        w, b = self.weights()
        if self.lp.type != "InnerProduct" and getattr(layer, "_simple", False):
            y = layer._apply(x, w, b)
        elif self.lp.type == "InnerProduct" and not layer.transpose:
            y = F.linear(x.flatten(layer.axis) if layer.axis < x.dim() - 1 else x, w, b)
        else:
            y = layer.run([x.contiguous()], [w] + ([b] if folding.bias_term(self.lp) else []))[0]
            if b is not None and not folding.bias_term(self.lp):
                y = y + b.view(*([1] * layer.axis), -1, *([1] * (y.dim() - layer.axis - 1)))
        if add is not None:
            y = y + add
        return torch.relu_(y) if self.relu else y


def _is_relu(lp):
    return lp.type == "ReLU" and lp.relu_param.negative_slope == 0 and len(lp.bottom) == 1


def _is_plain_sum(layer, lp):
    return (lp.type == "Eltwise" and len(lp.bottom) == 2 and len(lp.top) == 1
            and getattr(layer, "op", None) == getattr(layer, "SUM", -1)
            and getattr(layer, "plain_sum", False))


class InferencePlan:
    """The folded program of one net, traced per input shape when possible."""

    def __init__(self, net, jit=True, program=None):
        if program is not None and program not in PROGRAMS:
            raise ValueError("unknown program %r; one of %s" % (program, ", ".join(PROGRAMS)))
        self.net = net
        self.jit = jit
        self.program = program           # None: the fastest that agrees; else only this one
        self.kind = None                 # which program the last compile chose
        self._requested = set()
        self._stand_ins = {}             # blob id -> _UnfilledBlob shown in its place
        self._traced = {}                # (input shapes, kept blobs, device) -> program
        self._watch = None
        self._build()

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
        groups = {}                      # index of a group's last layer -> _Fused
        producer = {}                    # blob id -> layer index of its current writer
        self.fused_blobs = {}            # blob id -> the _Fused group that never materialises it
        self.stateful = []               # layers that must run once per forward (data, ...)
        self.inputs = []
        self.steps = []                  # ("fused", _Fused, bottom id, top id) | ("layer", i)
        blob_layers = False
        for i, (layer, lp) in enumerate(zip(net._layers, lps)):
            bottoms, tops = net._bottom_id_lists[i], net._top_id_lists[i]
            if getattr(layer, "kind", None) == INPUT:       # Input: tops hold what the user wrote
                self.inputs.extend(tops)
                for t in tops:
                    producer[t] = i
                continue
            group, src = self._absorber(i, layer, lp, groups, producer, readers)
            if group is not None:
                if _is_plain_sum(layer, lp):
                    k = 0 if producer.get(bottoms[0]) == src else 1
                    group.add = bottoms[1 - k]
                    fused_bottom = bottoms[k]
                elif lp.type in folding.AFFINE_TYPES:
                    group.affines.append((i, lp, layer))
                    fused_bottom = bottoms[0]
                else:
                    group.relu = True
                    fused_bottom = bottoms[0]
                group.names.append(lp.name)
                if tops[0] != fused_bottom:
                    self.fused_blobs[fused_bottom] = group
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
                if getattr(layer, "stateful_forward", False):
                    self.stateful.append(lp.name)
                self.steps.append(["layer", i])
            for t in tops:
                producer[t] = i
        self.jit = self.jit and not blob_layers
        self.outputs = outputs
        self._derive()

    def _absorber(self, i, layer, lp, groups, producer, readers):
        """(group, index of its last layer) that layer ``i`` joins, or (None, None).

        A layer joins a group when it is the only reader of the group's top:
        an affine layer (before any ReLU or add), a ReLU, or an Eltwise SUM of
        the group's top and a blob computed before the group's first layer (so
        the add can run inside the group's step)."""
        net = self.net
        bottoms, tops = net._bottom_id_lists[i], net._top_id_lists[i]
        if len(tops) != 1:
            return None, None
        if _is_plain_sum(layer, lp):
            if bottoms[0] == bottoms[1]:
                return None, None
            for k in (0, 1):
                src = producer.get(bottoms[k])
                group = groups.get(src) if src is not None else None
                if (group is None or group.relu or group.add is not None
                        or readers.get((src, bottoms[k])) != [i]):
                    continue
                other = producer.get(bottoms[1 - k])
                if other is not None and other < group.index:
                    return group, src
            return None, None
        if len(bottoms) != 1:
            return None, None
        src = producer.get(bottoms[0])
        group = groups.get(src) if src is not None else None
        if group is None or group.relu or readers.get((src, bottoms[0])) != [i]:
            return None, None
        if _is_relu(lp):
            return group, src
        if (lp.type in folding.AFFINE_TYPES and folding.affine_reason(lp) is None
                and len(getattr(layer, "blobs", [])) > 0 and group.add is None):
            return group, src
        return None, None

    def _retarget(self, group, top):
        for st in self.steps:
            if st[0] == "fused" and st[1] is group:
                st[3] = top

    def _baked_blobs(self, kind):
        """Parameter blobs whose values the ``kind`` program holds a copy of:
        folded and packed weights; every parameter of a traced or captured
        program (frozen into constants or read through captured pointers)."""
        if kind in ("eager", "channels-last oneDNN"):
            return [b for st in self.steps if st[0] == "fused"
                    for b in st[1].baked_blobs(kind != "eager")]
        return [b for layer in self.net._layers for b in getattr(layer, "blobs", [])]

    def _watch_cost(self, kind):
        """Seconds per forward that watching the ``kind`` program's extra
        baked blobs costs (fingerprints of those with live numpy views)."""
        known = set(map(id, self._watch.blobs))
        probe = _ParamWatch(b for b in self._baked_blobs(kind) if id(b) not in known)
        t0 = time.perf_counter()
        probe.changed()
        return time.perf_counter() - t0

    def _derive(self):
        for st in self.steps:
            if st[0] == "fused":
                st[1].derive()
        self._traced = {}
        self._watch = _ParamWatch(self._baked_blobs("eager"))

    # -- running -------------------------------------------------------------
    def _program(self, keep, channels_last=False):
        """A function of the input tensors returning the tensors of ``keep``.

        With ``channels_last`` (CPU), 4-D activations are kept in NHWC memory
        order and convolutions run oneDNN's packed fused kernels; layers not in
        :data:`CHANNELS_LAST_SAFE` receive NCHW-contiguous inputs."""
        net = self.net
        steps = self.steps
        inputs = list(self.inputs)
        keep = list(keep)
        dev = _common.compute_device()
        safe = [True] * len(net._layers)
        if channels_last:
            for i, lp in enumerate(net._layer_params):
                safe[i] = lp.type in CHANNELS_LAST_SAFE

        def nhwc(x):
            return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

        dead_after = self._dead_after(set(keep))

        def run(*xs):
            env = dict(zip(inputs, map(nhwc, xs) if channels_last else xs))
            for st, dead in zip(steps, dead_after):
                if st[0] == "fused":
                    g = st[1]
                    if g.add is None:
                        env[st[3]] = g(env[st[2]], None, channels_last)
                    else:
                        into = (channels_last and g.add in dead and g.add != st[2]
                                and _overwritable(env, g.add))
                        env[st[3]] = g(env[st[2]], env[g.add], channels_last, into)
                else:
                    run_layer(st[1], env)
                for bid in dead:
                    del env[bid]
            return tuple(env[k] for k in keep)

        def run_layer(i, env):
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
                return
            params = [b.data_buffer.compute(dev) for b in getattr(layer, "blobs", [])]
            ins = [env[b] for b in bids]
            if not safe[i]:
                ins = [x.contiguous() for x in ins]
            outs = layer.run(ins, params)
            if isinstance(outs, torch.Tensor):
                outs = [outs]
            for t, o in zip(tids, outs):
                env[t] = o
        return run

    def _dead_after(self, keep):
        """Per step, the blob ids no later step reads (and not in ``keep``):
        dropping them at once lets the allocator hand their memory, still in
        cache, to the next layer's output, as eager PyTorch does."""
        net = self.net
        last = {}
        for k, st in enumerate(self.steps):
            if st[0] == "fused":
                used = [st[2], st[3]] + ([] if st[1].add is None else [st[1].add])
            else:
                used = net._bottom_id_lists[st[1]] + net._top_id_lists[st[1]]
            for bid in used:
                last[bid] = k
        dead = [[] for _ in self.steps]
        for bid, k in last.items():
            if bid not in keep:
                dead[k].append(bid)
        return dead

    def _why(self, bid):
        group = self.fused_blobs.get(bid)
        if group is None:
            return "an intermediate blob of the optimised graph"
        return "fused into %s" % " + ".join(group.names)

    def computable(self, names):
        """Blob ids of ``names``; OptimizedBlobError for a blob fused away."""
        ids = set(self.net._blob_index[n] for n in names)
        for bid in ids:
            if bid in self.fused_blobs:
                raise OptimizedBlobError(
                    "blob %r was %s by optimize_for_inference and is never computed; call "
                    "net.optimize_for_inference(False) to read it"
                    % (self.net._blob_names[bid], self._why(bid)))
        return ids

    def request(self, names):
        """Keep ``names`` filled by the next forward (``forward(blobs=...)``)."""
        self._requested = self.computable(names)

    def run(self, xs, keep):
        """The tensors of blob ids ``keep`` for input tensors ``xs`` (in
        ``self.inputs`` order, on the compute device), blobs untouched."""
        if self._watch.changed():
            self._derive()
        dev = _common.compute_device()
        key = (tuple(tuple(x.shape) for x in xs), tuple(keep), str(dev))
        fn = self._traced.get(key)
        if fn is None:
            fn, outs = self._compile(keep, xs)
            self._traced[key] = fn
            if outs is not None:            # already this forward's (stateful layers)
                return outs
        with torch.no_grad():
            return fn(*xs)

    def forward(self):
        net = self.net
        keep = sorted(self.outputs | self._requested)
        self._requested = set()
        dev = _common.compute_device()
        outs = self.run([net._blobs[b].data_buffer.compute(dev) for b in self.inputs], keep)
        blobs = net._blobs
        swapped = False
        for bid, t in zip(keep, outs):
            blob = blobs[bid]
            if isinstance(blob, _UnfilledBlob):
                blob = blobs[bid] = blob._original
                swapped = True
            blob.data_buffer.write(t.contiguous())
        kept = set(keep).union(self.inputs)
        for bid, blob in enumerate(blobs):
            if bid not in kept and not isinstance(blob, _UnfilledBlob):
                blobs[bid] = self._stand_in(bid, blob)
                swapped = True
        if swapped:
            net._blobs_dict = None
        loss = 0.0
        for bid in keep:
            w = net._blob_loss_weights[bid]
            if w:
                loss += w * float(net._blobs[bid].data_buffer.compute().sum())
        return loss

    def _candidates(self, keep, xs, dev):
        """(name, builder) pairs of the programs to try besides the eager NCHW one."""
        out = []
        if dev.type == "cpu" and _onednn.available() and any(x.dim() == 4 for x in xs):
            out.append(("channels-last oneDNN", lambda: self._program(keep, channels_last=True)))
        if dev.type == "cuda":
            out.append(("CUDA graph", lambda: _cuda_graph(self._program(keep), xs)))
        if self.jit:
            traced = []

            def frozen():
                # shapes are fixed per trace by design; torch.jit is deprecated in favour of
                # torch.compile, whose compile time on a small CPU is minutes per shape
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    if not traced:
                        traced.append(torch.jit.trace(_Wrap(self._program(keep)).eval(),
                                                      tuple(xs), check_trace=False))
                    return torch.jit.freeze(traced[0])

            out.append(("frozen", frozen))

            def onednn():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return torch.jit.optimize_for_inference(frozen())

            out.append(("oneDNN-optimised", onednn))
        return out

    def _compile(self, keep, xs):
        """The fastest program that agrees with the eager NCHW one, timed on
        these inputs.  A candidate must agree (some oneDNN rewrites are not
        exact for every op, e.g. avg_pool2d with divisor_override), and layout
        conversions around ops oneDNN lacks can make one slower than eager:
        hence checking and timing each."""
        run = self._program(keep)
        dev = _common.compute_device()
        if self.stateful:
            # a second run would consume the next batch, update statistics again or
            # draw new numbers: no candidates to check or time, and this run's
            # outputs are the forward's
            if self.program not in (None, "eager"):
                raise ProgramRefused(
                    "optimize_for_inference: %r has layers whose forward changes state (%s): "
                    "only the eager program runs them once per forward"
                    % (self.net.name, ", ".join(self.stateful)))
            self.kind = "eager"
            with torch.no_grad():
                return run, run(*xs)
        with torch.no_grad():
            want = [t.clone() for t in run(*xs)]
            agreeing = [("eager", run)] if self.program in (None, "eager") else []
            for what, build in self._candidates(keep, xs, dev):
                if self.program not in (None, what):
                    continue
                try:
                    fn = build()
                    got = fn(*xs)
                except Exception as exc:        # an op a tracer or a graph cannot take
                    if self.program is not None:
                        raise
                    logger.info("optimize_for_inference: the %s program of %r failed (%s)",
                                what, self.net.name, exc)
                    continue
                if all(_agrees(a, b) for a, b in zip(want, got)):
                    agreeing.append((what, fn))
                elif self.program is not None:
                    raise ProgramRefused("optimize_for_inference: the %s program of %r "
                                         "disagrees with the eager one" % (what, self.net.name))
                else:
                    logger.info("optimize_for_inference: the %s program of %r disagrees with "
                                "the eager one; not used", what, self.net.name)
            if not agreeing:
                raise ProgramRefused("optimize_for_inference: the %s program is not available "
                                     "for %r here" % (self.program, self.net.name))
            if len(agreeing) == 1:
                timed = [(0.0,) + agreeing[0]]
            else:
                # interleaved rounds, best per program: robust to a busy machine
                # (on a GPU each call is waited for: launches return before the work ends)
                sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
                best = [float("inf")] * len(agreeing)
                for _, fn in agreeing:
                    fn(*xs)                     # warm-up (oneDNN packs on first use)
                for _ in range(3):
                    for k, (_, fn) in enumerate(agreeing):
                        sync()
                        t0 = time.perf_counter()
                        fn(*xs)
                        sync()
                        best[k] = min(best[k], time.perf_counter() - t0)
                timed = [(t + self._watch_cost(what), what, fn)
                         for t, (what, fn) in zip(best, agreeing)]
        best = min(timed, key=lambda t: t[0])
        self.kind = best[1]
        self._watch.add(self._baked_blobs(self.kind))
        return best[2], None

    def _stand_in(self, bid, blob):
        """The (cached) _UnfilledBlob shown in place of ``blob`` while this
        forward leaves it unfilled."""
        cached = self._stand_ins.get(bid)
        if cached is None or cached._original is not blob or cached.shape != blob.shape:
            cached = self._stand_ins[bid] = _unfilled(self.net._blob_names[bid], self._why(bid),
                                                      blob)
        return cached

    def restore(self):
        net = self.net
        for bid, blob in enumerate(net._blobs):
            if isinstance(blob, _UnfilledBlob):
                net._blobs[bid] = blob._original
        net._blobs_dict = None


def _cuda_graph(run, xs):
    """``run`` captured as a CUDA graph over static copies of the inputs; each
    call copies the inputs in, replays, and returns copies of the outputs."""
    static = [x.clone() for x in xs]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):                  # warm-up outside the capture (cuDNN autotune)
            run(*static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = run(*static)

    def replay(*new):
        for s, x in zip(static, new):
            s.copy_(x)
        graph.replay()
        return tuple(o.clone() for o in outs)
    return replay


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


def optimize(net, enable=True, jit=True, program=None):
    """Install (or with ``enable=False`` remove) the inference plan of ``net``;
    ``program`` forces one of :data:`PROGRAMS` (tests and benchmarks)."""
    plan = getattr(net, "_inference", None)
    if plan is not None:
        plan.restore()
        net._inference = None
    if not enable:
        return net
    if net.phase != _common.TEST:
        raise ValueError("optimize_for_inference needs a TEST-phase net; %r is TRAIN"
                         % net.name)
    net._inference = InferencePlan(net, jit=jit, program=program)
    return net
