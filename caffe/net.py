"""caffe.Net: builds a Caffe net from a NetParameter and runs it as Caffe does.

The net owns the graph: it filters layers by the NetState rules, inserts Split
layers with Caffe's names, creates one Blob per top name, shares parameters by
``param { name }``, decides which layers need backward with Caffe's rules, and
drives forward and backward layer by layer.  Each tensor layer's forward is
recorded as its own small autograd graph (only when that layer needs backward),
so ``backward`` replays Caffe's per-layer backward from whatever diffs the top
blobs hold at that moment -- diffs written by hand included.
"""
import logging
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import torch

from . import _common, protoio, selectors
from . import weights as weight_io
from .blob import Blob
from .fillers import FillerError
from .layers.adapters import build_layer
from .layers.base import BLOB, INPUT, TENSOR, LayerError, is_loss_by_type
from .limits import BlobShapeError, check_shape
from .net_log import log_net_init
from .weights import blob_to_proto

logger = logging.getLogger("caffe")


_plain = threading.local()


@contextmanager
def plain_nets():
    """Nets built inside are never optimised by ``CAFFE_OPTIMIZE_INFERENCE=1``:
    for the package's own tools that read every blob or run backward
    (converters' verification, compare, summary, calibration, solvers)."""
    _plain.depth = getattr(_plain, "depth", 0) + 1
    try:
        yield
    finally:
        _plain.depth -= 1


def _env_optimises():
    return (os.environ.get("CAFFE_OPTIMIZE_INFERENCE") == "1"
            and not getattr(_plain, "depth", 0))


class NetError(ValueError):
    pass


# ---------------------------------------------------------------------------
# NetState rules and split insertion (pure protobuf transformations)
# ---------------------------------------------------------------------------
def state_meets_rule(state, rule, layer_name):
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    for s in rule.stage:
        if s not in stages:
            return False
    for s in rule.not_stage:
        if s in stages:
            return False
    return True


def filter_net(param, source="<net>"):
    """Copy of ``param`` keeping the layers whose include/exclude rules admit its state."""
    out = type(param)()
    out.CopyFrom(param)
    del out.layer[:]
    for layer in param.layer:
        if len(layer.include) and len(layer.exclude):
            raise NetError("%s: layer %r specifies both include and exclude rules; "
                           "specify one or the other" % (source, layer.name))
        if len(layer.include):
            keep = any(state_meets_rule(param.state, r, layer.name) for r in layer.include)
        else:
            keep = not any(state_meets_rule(param.state, r, layer.name) for r in layer.exclude)
        if keep and not selectors.layer_selected(layer, param.state):
            keep = False                # ptcaffe's selector: a stage rule of its own
        if keep:
            out.layer.add().CopyFrom(layer)
    return out


def split_layer_name(blob, layer, top_index):
    return "%s_%s_%d_split" % (blob, layer, top_index)


def split_blob_name(blob, layer, top_index, split_index):
    return "%s_%s_%d_split_%d" % (blob, layer, top_index, split_index)


def insert_splits(param):
    """Caffe's InsertSplits: a Split layer after every top consumed more than once."""
    producer = {}            # blob name -> (layer index, top index)
    consumers = {}           # (layer index, top index) -> number of consumers
    bottom_src = {}          # (layer index, bottom index) -> (layer index, top index)
    loss_consumer = {}
    for i, layer in enumerate(param.layer):
        for j, name in enumerate(layer.bottom):
            if name not in producer:
                raise NetError("Unknown bottom blob %r (layer %r, bottom index %d)"
                               % (name, layer.name, j))
            src = producer[name]
            bottom_src[(i, j)] = src
            consumers[src] = consumers.get(src, 0) + 1
        for j, name in enumerate(layer.top):
            producer[name] = (i, j)
        for j in range(len(layer.top)):
            w = layer.loss_weight[j] if j < len(layer.loss_weight) else 0
            if w:
                loss_consumer[(i, j)] = True
                consumers[(i, j)] = consumers.get((i, j), 0) + 1
    out = type(param)()
    out.CopyFrom(param)
    del out.layer[:]
    split_index = {}
    for i, layer in enumerate(param.layer):
        new = out.layer.add()
        new.CopyFrom(layer)
        for j in range(len(layer.bottom)):
            src = bottom_src[(i, j)]
            if consumers.get(src, 0) > 1:
                k = split_index.get(src, 0)
                split_index[src] = k + 1
                src_layer = param.layer[src[0]]
                new.bottom[j] = split_blob_name(src_layer.top[src[1]], src_layer.name, src[1], k)
        for j, top in enumerate(layer.top):
            n = consumers.get((i, j), 0)
            if n > 1:
                split = out.layer.add()
                split.name = split_layer_name(top, layer.name, j)
                split.type = "Split"
                split.bottom.append(top)
                for k in range(n):
                    split.top.append(split_blob_name(top, layer.name, j, k))
                if loss_consumer.get((i, j)):
                    # the loss weight moves onto the split top that stands for it
                    w = layer.loss_weight[j]
                    new.loss_weight[j] = 0
                    for _ in range(n - 1):
                        split.loss_weight.append(0)
                    split.loss_weight.append(w)
    return out


def loss_weights(layer_param, is_loss, num_tops, where):
    """The loss weight of each top: as given, else 1 on the first top of a loss
    layer, else none (Caffe's SetLossWeights)."""
    weights = list(layer_param.loss_weight)
    if not weights and is_loss and num_tops:
        weights = [1.0]
    if weights and len(weights) != num_tops:
        raise NetError("%s: loss_weight must be unspecified or specified once per top "
                       "blob (got %d for %d tops)" % (where, len(weights), num_tops))
    return weights


def prune_backward(bottom_ids, top_ids, blob_names, blob_loss_weights, loss_tops_of,
                   layer_need, bottom_need):
    """net.cpp's reverse pass, in place on ``layer_need``/``bottom_need``: no
    backward for layers no loss depends on, nor into bottoms whose producers
    need none."""
    under_loss = set()
    skip_backp = set()
    for li in range(len(top_ids) - 1, -1, -1):
        contributes = False
        skip_prop = True
        for ti, tid in enumerate(top_ids[li]):
            name = blob_names[tid]
            if blob_loss_weights[tid] and ti in loss_tops_of[li]:
                contributes = True
            if name in under_loss:
                contributes = True
            if name not in skip_backp:
                skip_prop = False
            if contributes and not skip_prop:
                break
        if layer_need[li] and skip_prop:
            layer_need[li] = False
            bottom_need[li] = [False] * len(bottom_need[li])
        if not contributes:
            layer_need[li] = False
        for bi, bid in enumerate(bottom_ids[li]):
            name = blob_names[bid]
            if contributes:
                under_loss.add(name)
            else:
                bottom_need[li][bi] = False
            if not bottom_need[li][bi]:
                skip_backp.add(name)


# ---------------------------------------------------------------------------
# Per-layer steps: precomputed so the forward loop stays flat
# ---------------------------------------------------------------------------
class _Step:
    __slots__ = ("layer", "bottoms", "tops", "params", "kind", "record", "forward", "backward",
                 "bottom_need", "param_need", "need_backward", "inplace", "tape",
                 "loss_tops", "mutates", "index", "versions", "random", "rng_state")


def _as_list(outs):
    if isinstance(outs, torch.Tensor):
        return [outs]
    return list(outs)


def _rng_state(device):
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


class _rng_restored:
    """Run a block with the generator of ``device`` set to ``state``, then put
    the generator back as it was (a replayed forward draws nothing new)."""

    def __init__(self, device, state):
        self.device, self.state = device, state

    def __enter__(self):
        self.saved = _rng_state(self.device)
        self._set(self.state)

    def __exit__(self, *exc):
        self._set(self.saved)

    def _set(self, state):
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state, self.device)
        else:
            torch.set_rng_state(state)


class _default_attribute:
    """A read-only-looking property that an assignment replaces, as a plain
    attribute would: pycaffe's Net has no such property, so client code
    (py-faster-rcnn's ``net.name = ...``) simply sets an attribute."""

    def __init__(self, fget):
        self.fget = fget
        self.__doc__ = fget.__doc__

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        return self.fget(obj)


# ---------------------------------------------------------------------------
# Net
# ---------------------------------------------------------------------------
class Net:
    """A Caffe net.

    ``Net(network_file, phase, level=0, stages=None, weights=None)`` or the
    legacy ``Net(network_file, pretrained_file, phase)``; a NetParameter
    message may stand for the file (its own ``state`` is then used unless a
    phase is given).
    """

    def __init__(self, *args, **kwargs):
        network_file, phase, level, stages, weights = self._parse_args(args, kwargs)
        self._init(network_file, phase, level, stages)
        if weights is not None:
            protoio.check_file(weights, "weights")
            self.copy_from(weights)

    @staticmethod
    def _parse_args(args, kwargs):
        args = list(args)
        network_file = kwargs.pop("network_file", kwargs.pop("param_file", None))
        if network_file is None:
            if not args:
                raise TypeError("Net() needs a network file")
            network_file = args.pop(0)
        weights = kwargs.pop("weights", None)
        phase = kwargs.pop("phase", None)
        if args and isinstance(args[0], (str, bytes, os.PathLike)):
            weights = args.pop(0)           # legacy Net(proto, weights, phase)
        if args and phase is None:
            phase = args.pop(0)
        level = kwargs.pop("level", args.pop(0) if args else 0)
        stages = kwargs.pop("stages", args.pop(0) if args else None)
        if args and weights is None:
            weights = args.pop(0)
        if args or kwargs:
            raise TypeError("Net(): unexpected arguments %r %r" % (args, kwargs))
        return network_file, phase, level, stages, weights

    # -- construction --------------------------------------------------------
    def _init(self, network_file, phase, level, stages):
        if hasattr(network_file, "DESCRIPTOR"):
            self._source = "<NetParameter %s>" % network_file.name
        else:
            self._source = str(network_file)
        param = protoio.read_net_param(network_file)
        if phase is not None:
            if phase not in (_common.TRAIN, _common.TEST):
                raise ValueError("Net phase must be caffe.TRAIN or caffe.TEST, got %r" % (phase,))
            param.state.phase = int(phase)
            if stages:
                param.state.stage.extend(list(stages))
            param.state.level = int(level or 0)
        self._phase = param.state.phase
        self._name = param.name
        self._force_backward = param.force_backward
        filtered = filter_net(param, self._source)
        try:
            self._param = insert_splits(filtered)
        except NetError as exc:
            raise NetError("%s: %s" % (self._source, exc)) from None
        self._build()
        log_net_init(self, filtered)

    def _build(self):
        param = self._param
        source = self._source
        self._layers = []                # what net.layers shows
        self._drivers = []               # what the Net drives (adapters differ)
        self._layer_names = []
        self._layer_params = []
        self._blobs = []
        self._blob_names = []
        self._blob_index = {}
        self._blob_need_backward = []
        self._bottom_id_lists = []
        self._top_id_lists = []
        self._inputs = []
        self._blob_loss_weights = []
        self._loss_tops_of = []          # per layer: indices of tops with a loss weight
        self._learnable = []             # owner blobs, in Caffe's learnable_params order
        self._learnable_lr = []
        self._learnable_decay = []
        self._param_owner_names = {}     # shared param name -> (owner layer idx, blob, lr, decay)
        self._param_owned = []           # per layer: list of bool (owns its blob)
        available = OrderedDict()
        layer_need_backward = []
        bottom_need_backward = []
        param_need_backward = []

        for li, lp in enumerate(param.layer):
            if not lp.HasField("phase"):
                lp.phase = self._phase
            where = "%s: layer %r (type %s)" % (source, lp.name, lp.type)
            bottom_ids, b_need, need_backward = self._append_bottoms(lp, available, where)
            bottom_shapes = [tuple(self._blobs[b].shape) for b in bottom_ids]
            # the layer itself
            try:
                layer = build_layer(lp, bottom_shapes, self._phase, source)
            except LayerError as exc:
                raise LayerError("%s: %s" % (source, exc)) from None
            except FillerError as exc:
                raise FillerError("%s: %s" % (source, exc)) from None
            self._check_counts(layer, lp, where)
            top_ids = self._append_tops(lp, available, where)
            self._setup_layer(layer, lp, bottom_ids, top_ids, bottom_shapes, where, source)
            if layer.type != lp.type:
                layer.type = lp.type
            loss_tops = self._set_loss_weights(layer, lp, top_ids, where)
            # params
            p_need = self._append_params(li, lp, layer, where)
            need_backward |= any(p_need)
            for tid in top_ids:
                if need_backward:
                    self._blob_need_backward[tid] = True
            self._layers.append(layer.exposed())
            self._drivers.append(layer)
            self._layer_names.append(lp.name)
            self._layer_params.append(lp)
            self._bottom_id_lists.append(bottom_ids)
            self._top_id_lists.append(top_ids)
            layer_need_backward.append(need_backward)
            bottom_need_backward.append(b_need)
            param_need_backward.append(p_need)
            self._loss_tops_of.append(loss_tops)

        prune_backward(self._bottom_id_lists, self._top_id_lists, self._blob_names,
                       self._blob_loss_weights, self._loss_tops_of, layer_need_backward,
                       bottom_need_backward)
        if self._force_backward:
            for li, layer in enumerate(self._drivers):
                layer_need_backward[li] = True
                for bi, bid in enumerate(self._bottom_id_lists[li]):
                    allow = layer.allow_force_backward(bi)
                    bottom_need_backward[li][bi] = bottom_need_backward[li][bi] or bool(allow)
                    self._blob_need_backward[bid] = (self._blob_need_backward[bid]
                                                     or bottom_need_backward[li][bi])
                param_need_backward[li] = [True] * len(param_need_backward[li])
        self._layer_need_backward = layer_need_backward
        self._bottom_need_backward = bottom_need_backward
        self._param_need_backward = param_need_backward
        self._outputs = sorted(available.values(), key=lambda i: self._blob_names[i])
        self._build_steps()
        self._blobs_dict = None
        self._layer_dict = None
        self._params_dict = None
        self._before_forward = []
        self._after_forward = []
        self._before_backward = []
        self._after_backward = []
        self._inference = None
        self._optimised_forward = False     # the last forward ran the inference plan
        # force_backward says the net's gradients are wanted: the environment
        # variable leaves such nets plain (an explicit optimize_for_inference does not)
        if _env_optimises() and self._phase == _common.TEST and not self._force_backward:
            self.optimize_for_inference()

    def optimize_for_inference(self, enable=True):
        """Opt-in fast TEST-phase forward (folded BatchNorm, fused, traced): caffe/inference.py."""
        from .inference import optimize
        return optimize(self, enable)

    def _check_in_place(self, lp, bottom_ids, top_ids, bottom_shapes, where):
        """An in-place top (the same blob as its bottom) must keep the bottom's shape."""
        for ti, tid in enumerate(top_ids):
            if ti < len(bottom_ids) and bottom_ids[ti] == tid:
                now = tuple(self._blobs[tid].shape)
                if now != tuple(bottom_shapes[ti]):
                    raise NetError("%s: in-place top %r would change shape from %s to %s; "
                                   "give the top its own name" % (where, lp.top[ti],
                                                                  list(bottom_shapes[ti]),
                                                                  list(now)))

    # -- the phases of building one layer (net.cpp's Init loop) ----------------
    def _append_bottoms(self, lp, available, where):
        """Caffe's AppendBottom for each bottom: blob ids, whether each bottom
        needs backward (propagate_down applied) and whether the layer does."""
        bottom_ids, b_need = [], []
        need_backward = False
        for bi, name in enumerate(lp.bottom):
            if name not in self._blob_index:
                raise NetError("%s: unknown bottom blob %r (bottom index %d): no earlier "
                               "layer produces it" % (where, name, bi))
            bid = self._blob_index[name]
            bottom_ids.append(bid)
            available.pop(name, None)
            nb = self._blob_need_backward[bid]
            if bi < len(lp.propagate_down):
                nb = bool(lp.propagate_down[bi])
            b_need.append(nb)
            need_backward |= self._blob_need_backward[bid]
        if len(lp.propagate_down) and len(lp.propagate_down) != len(lp.bottom):
            raise NetError("%s: propagate_down param must be specified either 0 or "
                           "bottom_size times (got %d for %d bottoms)"
                           % (where, len(lp.propagate_down), len(lp.bottom)))
        return bottom_ids, b_need, need_backward

    def _append_tops(self, lp, available, where):
        """Caffe's AppendTop: a new Blob per new top name; in-place tops reuse
        their bottom's blob."""
        top_ids = []
        for ti, name in enumerate(lp.top):
            if name in self._blob_index:
                if ti < len(lp.bottom) and lp.bottom[ti] == name:
                    tid = self._blob_index[name]      # in-place
                else:
                    raise NetError("%s: top blob %r produced by multiple sources"
                                   % (where, name))
            else:
                tid = len(self._blobs)
                self._blobs.append(Blob(()))
                self._blob_names.append(name)
                self._blob_index[name] = tid
                self._blob_need_backward.append(False)
                self._blob_loss_weights.append(0.0)
            top_ids.append(tid)
            available[name] = tid
            if lp.type == "Input":
                self._inputs.append(tid)
        return top_ids

    def _setup_layer(self, layer, lp, bottom_ids, top_ids, bottom_shapes, where, source):
        """Caffe's Layer::SetUp: BLOB layers set up on the Blobs, the others
        give their top shapes."""
        bottoms = [self._blobs[b] for b in bottom_ids]
        tops = [self._blobs[t] for t in top_ids]
        if layer.kind == BLOB:
            layer._caffe_prepare(lp, self._phase)
            try:
                layer.setup(bottoms, tops)
                layer.reshape(bottoms, tops)
            except BlobShapeError as exc:
                raise NetError("%s (tops %s): %s" % (where, list(lp.top), exc)) from None
            self._check_in_place(lp, bottom_ids, top_ids, bottom_shapes, where)
            return
        try:
            shapes = layer.output_shapes(bottom_shapes)
        except LayerError as exc:
            raise LayerError("%s: %s" % (source, exc)) from None
        except Exception as exc:
            raise NetError("%s: cannot set up the layer for bottom shapes %s: %s"
                           % (where, bottom_shapes, exc)) from exc
        if len(shapes) != len(tops):
            raise NetError("%s: the layer produces %d tops but %d are named"
                           % (where, len(shapes), len(tops)))
        for name, shape in zip(lp.top, shapes):
            try:
                check_shape(shape, "top blob %r" % name)
            except BlobShapeError as exc:
                raise NetError("%s: %s" % (where, exc)) from None
        for blob, shape in zip(tops, shapes):
            blob.reshape(*shape)
        self._check_in_place(lp, bottom_ids, top_ids, bottom_shapes, where)

    def _set_loss_weights(self, layer, lp, top_ids, where):
        """Caffe's SetLossWeights: returns the indices of the loss tops; their
        diffs hold the weights (what backward starts from)."""
        is_loss = layer.is_loss if layer.is_loss is not None else is_loss_by_type(lp)
        weights = loss_weights(lp, is_loss, len(top_ids), where)
        loss_tops = []
        for ti, w in enumerate(weights):
            if w:
                tid = top_ids[ti]
                self._blob_loss_weights[tid] = float(w)
                self._blobs[tid].diff_buffer.host().fill_(float(w))
                loss_tops.append(ti)
        return loss_tops

    def _check_counts(self, layer, lp, where):
        for what, names, bounds in (("bottom", lp.bottom, layer.num_bottoms),
                                    ("top", lp.top, layer.num_tops)):
            if not bounds:
                continue
            lo, hi = bounds
            n = len(names)
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                if lo == hi:
                    want = "exactly %d" % lo
                elif hi is None:
                    want = "at least %d" % lo
                else:
                    want = "between %d and %d" % (lo, hi)
                raise NetError("%s takes %s %s blob(s), got %d" % (where, want, what, n))

    def _append_params(self, li, lp, layer, where):
        """Caffe's AppendParam: sharing by name, lr/decay multipliers."""
        p_need = []
        owned = []
        fixed_lr = layer.fixed_param_lr
        blobs = layer.blobs
        for j in range(len(blobs)):
            spec = lp.param[j] if j < len(lp.param) else None
            lr = spec.lr_mult if spec is not None and spec.HasField("lr_mult") else 1.0
            decay = spec.decay_mult if spec is not None and spec.HasField("decay_mult") else 1.0
            if fixed_lr:
                if spec is not None and spec.HasField("lr_mult") and spec.lr_mult != 0:
                    raise NetError("%s: cannot configure statistics as learnable parameters "
                                   "(param %d lr_mult must be 0)" % (where, j))
                lr = 0.0
            name = spec.name if spec is not None else ""
            if name and name in self._param_owner_names:
                owner_li, owner_blob, owner_lr, owner_decay = self._param_owner_names[name]
                mode = spec.share_mode  # 0 STRICT, 1 PERMISSIVE
                if mode == 1:
                    if owner_blob.count != blobs[j].count:
                        raise NetError("%s: cannot share param %r owned by layer %r with this "
                                       "layer: count mismatch (%d vs %d)"
                                       % (where, name, self._param_param_name(owner_li),
                                          owner_blob.count, blobs[j].count))
                elif owner_blob.shape != blobs[j].shape:
                    raise NetError("%s: cannot share param %r owned by layer %r with this layer:"
                                   " shape mismatch %s vs %s; use share_mode PERMISSIVE to "
                                   "check only counts" % (where, name,
                                                         self._param_param_name(owner_li),
                                                         owner_blob.shape, blobs[j].shape))
                if owner_blob.shape != blobs[j].shape:
                    raise NetError("%s: PERMISSIVE sharing of differently shaped params is not "
                                   "supported (param %r)" % (where, name))
                if spec.HasField("lr_mult") and lr != owner_lr:
                    raise NetError("%s: shared param %r has mismatched lr_mult" % (where, name))
                if spec.HasField("decay_mult") and decay != owner_decay:
                    raise NetError("%s: shared param %r has mismatched decay_mult"
                                   % (where, name))
                blobs[j] = owner_blob
                owned.append(False)
            else:
                if name:
                    self._param_owner_names[name] = (li, blobs[j], lr, decay)
                owned.append(True)
                self._learnable.append(blobs[j])
                self._learnable_lr.append(lr)
                self._learnable_decay.append(decay)
            p_need.append(lr != 0)
        self._param_owned.append(owned)
        return p_need

    def _param_param_name(self, li):
        return self._param.layer[li].name

    @classmethod
    def _kind_calls(cls):
        """(forward, backward) per layer kind: the Net's run -> step -> call_*.
        Plain functions (called with the net), so steps hold no reference to it."""
        return {INPUT: (cls._call_input_forward, cls._call_input_backward),
                BLOB: (cls._call_blob_forward, cls._call_blob_backward),
                TENSOR: (cls._call_tensor_forward, cls._call_tensor_backward)}

    def _build_steps(self):
        self._steps = []
        calls = self._kind_calls()
        for li, layer in enumerate(self._drivers):
            st = _Step()
            st.index = li
            st.layer = layer
            st.kind = layer.kind
            st.forward, st.backward = calls[layer.kind]
            st.bottoms = [self._blobs[b] for b in self._bottom_id_lists[li]]
            st.tops = [self._blobs[t] for t in self._top_id_lists[li]]
            st.params = list(layer.blobs)
            st.need_backward = self._layer_need_backward[li]
            st.bottom_need = list(self._bottom_need_backward[li])
            st.param_need = list(self._param_need_backward[li])
            # only tensor layers are recorded: Input tops are what the user wrote
            st.record = st.need_backward and st.kind == TENSOR
            tops = set(self._top_id_lists[li])
            st.inplace = [b in tops for b in self._bottom_id_lists[li]]
            st.tape = None
            st.versions = None
            st.rng_state = None
            st.random = bool(layer.draws_random)
            st.loss_tops = [(st.tops[ti], ti) for ti in self._loss_tops_of[li]]
            st.mutates = bool(layer.mutates_params)
            self._steps.append(st)

    # -- running ------------------------------------------------------------
    @staticmethod
    def _record(st, bottoms, params, replay=False):
        """Run ``st``'s layer with autograd on, keeping its graph as the tape.

        ``replay`` recomputes a forward for backward only: stochastic layers
        draw what they drew in the recorded forward (the generator state is
        restored) and layers that update their own blobs update copies.
        """
        ins = []
        for k, t in enumerate(bottoms):
            t = t.detach()
            if st.inplace[k] and not replay:
                t = t.clone()
            if st.bottom_need[k]:
                t.requires_grad_(True)
            ins.append(t)
        prm = [p.detach().requires_grad_(True) if st.param_need[j] else p
               for j, p in enumerate(params)]
        run_params = prm
        if replay and st.mutates:
            run_params = [p.clone() for p in prm]
        layer = st.layer
        with torch.enable_grad():
            if st.random:
                device = bottoms[0].device if bottoms else torch.device("cpu")
                if replay and st.rng_state is not None:
                    with _rng_restored(device, st.rng_state):
                        outs = _as_list(layer.run(ins, run_params))
                else:
                    st.rng_state = _rng_state(device)
                    outs = _as_list(layer.run(ins, run_params))
            else:
                outs = _as_list(layer.run(ins, run_params))
        st.tape = (ins, prm, outs)
        return outs

    # One forward/backward/reshape call per layer kind (see layers/base.py);
    # _forward/_backward run the steps, each step calls its kind's method.
    def _call_input_forward(self, st):
        pass                        # the tops hold what the user wrote

    def _call_input_backward(self, st):
        pass

    def _call_blob_forward(self, st):
        st.layer.reshape(st.bottoms, st.tops)
        st.layer.forward(st.bottoms, st.tops)

    def _call_blob_backward(self, st):
        st.layer.backward(st.tops, list(st.bottom_need), st.bottoms)

    def _call_tensor_forward(self, st):
        dev = _common.compute_device()
        bottoms = [b._data.compute(dev) for b in st.bottoms]
        params = [b._data.compute(dev) for b in st.params]
        st.versions = None
        if st.record:
            outs = self._record(st, bottoms, params)
        else:
            st.tape = None
            outs = st.layer.run(bottoms, params)      # the caller runs us under no_grad
            if isinstance(outs, torch.Tensor):
                outs = [outs]
        if len(outs) != len(st.tops):
            raise NetError("%s: layer %r produced %d tops, expected %d"
                           % (self._source, self._layer_names[st.index], len(outs),
                              len(st.tops)))
        for blob, t in zip(st.tops, outs):
            buf = blob._data
            if t.shape != buf._shape:
                blob.reshape(*t.shape)        # data and diff together, as Caffe's Reshape
            buf.write(t.detach() if t.requires_grad else t)
        if st.mutates:
            for b in st.params:
                b.data_buffer.mutable_compute(dev)

    @staticmethod
    def _input_versions(st):
        """What a tape depends on: each bottom's and param's data buffer and its
        write counter."""
        return tuple((b._data, b._data.version) for b in st.bottoms) + \
            tuple((b._data, b._data.version) for b in st.params)

    def _tape_is_current(self, st):
        v = st.versions
        if st.tape is None or v is None:
            return False
        blobs = st.bottoms + st.params
        for (buf, version), blob in zip(v, blobs):
            if blob._data is not buf or buf.version != version:
                return False
        return True

    def _call_tensor_backward(self, st):
        dev = _common.compute_device()
        if not self._tape_is_current(st):
            # No forward since the net was built, or a bottom or param was
            # written after it: Caffe's Backward reads the blobs as they are
            # now, so recompute this layer's forward from them (tops untouched).
            # An in-place layer replays from the input its forward saw (its own
            # top overwrote the blob; Caffe's in-place layers keep what they
            # need, e.g. Scale's copy of the bottom).
            seen = st.tape[0] if st.tape is not None else None
            with torch.no_grad():
                bottoms = [seen[k].detach() if seen is not None and st.inplace[k]
                           else b._data.compute(dev) for k, b in enumerate(st.bottoms)]
                params = [b._data.compute(dev) for b in st.params]
                self._record(st, bottoms, params, replay=True)
            st.versions = self._input_versions(st)
        ins, prm, outs = st.tape
        out_list, grad_list = [], []
        for blob, o in zip(st.tops, outs):
            if o.requires_grad:
                out_list.append(o)
                grad_list.append(blob.diff_buffer.compute(dev).view(o.shape))
        targets = []
        where = []
        for k, t in enumerate(ins):
            if st.bottom_need[k] and t.requires_grad:
                targets.append(t)
                where.append(("b", k))
        for j, p in enumerate(prm):
            if st.param_need[j] and p.requires_grad:
                targets.append(p)
                where.append(("p", j))
        if out_list and targets:
            grads = torch.autograd.grad(out_list, targets, grad_list, retain_graph=True,
                                        allow_unused=True)
        else:
            grads = [None] * len(targets)
        for (kind, k), g in zip(where, grads):
            if kind == "b":
                buf = st.bottoms[k].diff_buffer
                if g is None:          # no path to this bottom: its diff is zero
                    g = torch.zeros(buf.shape, dtype=torch.float32, device=dev)
                buf.write(g)
            elif g is not None:
                buf = st.params[k].diff_buffer
                buf.mutable_compute(dev).add_(g.view(buf.shape))

    def _forward(self, start, end):
        self._optimised_forward = False
        if self._inference is not None:
            if start == 0 and end == len(self._layers) - 1:
                self._optimised_forward = True
                return self._inference.forward()
            self._inference.restore()           # a partial forward runs the plain path
        loss = 0.0
        steps = self._steps
        bf, af = self._before_forward, self._after_forward
        with torch.no_grad():              # recording steps re-enable grad for themselves
            for i in range(start, end + 1):
                if bf:
                    for cb in bf:
                        cb(i)
                st = steps[i]
                st.forward(self, st)
                if st.loss_tops:
                    for blob, _ti in st.loss_tops:
                        loss += float(torch.dot(blob._data.compute().reshape(-1),
                                                blob._diff.compute().reshape(-1)))
                if af:
                    for cb in af:
                        cb(i)
        # The tapes of this pass stay valid until a bottom or param is written
        # after it; writes during the pass (later in-place layers) are part of it.
        for i in range(start, end + 1):
            st = steps[i]
            if st.tape is not None:
                st.versions = self._input_versions(st)
        return loss

    def _backward(self, start, end):
        if self._optimised_forward:
            raise NetError(
                "%s: backward after an optimised forward: optimize_for_inference keeps no "
                "per-layer state to differentiate. Call net.optimize_for_inference(False) "
                "and forward again (nets with force_backward: true are left plain by "
                "CAFFE_OPTIMIZE_INFERENCE=1)" % self._source)
        bb, ab = self._before_backward, self._after_backward
        for i in range(start, end - 1, -1):
            for cb in bb:
                cb(i)
            st = self._steps[i]
            if st.need_backward:
                st.backward(self, st)
            for cb in ab:
                cb(i)

    # -- public accessors for the solver and the command line ------------------
    def output_blobs(self):
        """``[(name, blob, loss_weight)]`` of the net outputs, in Caffe's order."""
        return [(self._blob_names[i], self._blobs[i], self._blob_loss_weights[i])
                for i in self._outputs]

    def forward_from_to(self, start, end):
        """Caffe's ``ForwardFromTo``: run layers ``start..end`` (indices), return the loss."""
        return self._forward(start, end)

    def backward_from_to(self, start, end):
        """Caffe's ``BackwardFromTo``: backward from layer ``start`` down to ``end``."""
        self._backward(start, end)

    @_default_attribute
    def layer_names(self):
        """Layer names in order (Caffe's ``layer_names()``)."""
        return list(self._layer_names)

    def forward_prefilled(self):
        """Caffe's ``Net::Forward``: run every layer, return the summed loss."""
        return self._forward(0, len(self._layers) - 1)

    def forward_backward(self):
        loss = self._forward(0, len(self._layers) - 1)
        self._backward(len(self._layers) - 1, 0)
        return loss

    # -- pycaffe: bound members ----------------------------------------------
    def reshape(self):
        for st in self._steps:
            if st.kind != INPUT:          # Input tops keep the shapes the user gave
                st.layer.reshape(st.bottoms, st.tops)

    def clear_param_diffs(self):
        for blob in self._learnable:
            blob.diff_buffer.zero_()

    def copy_from(self, filename):
        """Copy weights by layer name from a binary caffemodel (V1 or V2) or HDF5
        file; the whole file is checked first, so a bad file changes nothing."""
        weight_io.copy_from(self, filename)

    def copy_from_proto(self, weights, source="<NetParameter>"):
        weight_io.copy_from_proto(self, weights, source)

    def share_with(self, other):
        """Share parameter data (not diffs) with the same-named layers of ``other``."""
        index = {name: i for i, name in enumerate(other._layer_names)}
        for li, name in enumerate(self._layer_names):
            oi = index.get(name)
            if oi is None:
                continue
            mine = self._drivers[li].blobs
            theirs = other._drivers[oi].blobs
            if len(mine) != len(theirs):
                raise NetError("share_with: incompatible number of blobs for layer %r" % name)
            for a, b in zip(mine, theirs):
                if a.shape != b.shape:
                    raise NetError("share_with: layer %r param shape mismatch %s vs %s"
                                   % (name, a.shape, b.shape))
                a.share_data(b)

    def to_proto(self, write_diff=False):
        out = protoio.pb2().NetParameter()
        out.name = self._name
        for li, lp in enumerate(self._layer_params):
            layer_out = out.layer.add()
            layer_out.CopyFrom(lp)
            del layer_out.blobs[:]
            for blob in self._drivers[li].blobs:
                blob_to_proto(blob, layer_out.blobs.add(), write_diff)
        return out

    def save(self, filename):
        protoio.write_binary(filename, self.to_proto())

    def save_hdf5(self, filename, write_diff=False):
        weight_io.save_hdf5(self, filename, write_diff)

    def load_hdf5(self, filename):
        weight_io.load_hdf5(self, filename)

    def before_forward(self, fn):
        self._before_forward.append(fn)

    def after_forward(self, fn):
        self._after_forward.append(fn)

    def before_backward(self, fn):
        self._before_backward.append(fn)

    def after_backward(self, fn):
        self._after_backward.append(fn)

    def _set_input_arrays(self, data, labels):
        layer = self._layers[0] if self._layers else None
        if layer is None or not hasattr(layer, "set_input_arrays"):
            raise RuntimeError("set_input_arrays may only be called if the first layer is a "
                               "MemoryData layer")
        layer.set_input_arrays(data, labels)

    # -- pycaffe: C++-bound properties ---------------------------------------
    @property
    def layers(self):
        return self._layers

    def _bottom_ids(self, i):
        """Blob ids of layer ``i``'s bottoms (pycaffe's ``Net._bottom_ids``)."""
        return list(self._bottom_id_lists[i])

    def _top_ids(self, i):
        """Blob ids of layer ``i``'s tops (pycaffe's ``Net._top_ids``)."""
        return list(self._top_id_lists[i])

    @_default_attribute
    def name(self):
        return self._name

    @_default_attribute
    def phase(self):
        return self._phase

    @_default_attribute
    def learnable_params(self):
        return list(self._learnable)

    @_default_attribute
    def params_lr(self):
        return list(self._learnable_lr)

    @_default_attribute
    def params_weight_decay(self):
        return list(self._learnable_decay)

    # -- pycaffe: Python-level properties --------------------------------------
    @property
    def blobs(self):
        if self._blobs_dict is None:
            self._blobs_dict = OrderedDict(zip(self._blob_names, self._blobs))
        return self._blobs_dict

    @property
    def blob_loss_weights(self):
        return OrderedDict(zip(self._blob_names, self._blob_loss_weights))

    @property
    def layer_dict(self):
        if self._layer_dict is None:
            self._layer_dict = OrderedDict(zip(self._layer_names, self._layers))
        return self._layer_dict

    @property
    def params(self):
        if self._params_dict is None:
            self._params_dict = OrderedDict(
                (name, layer.blobs) for name, layer in zip(self._layer_names, self._drivers)
                if len(layer.blobs) > 0)
        return self._params_dict

    @property
    def inputs(self):
        return [self._blob_names[i] for i in self._inputs]

    @property
    def outputs(self):
        return [self._blob_names[i] for i in self._outputs]

    @property
    def top_names(self):
        return OrderedDict((self._layer_names[i],
                            [self._blob_names[t] for t in self._top_id_lists[i]])
                           for i in range(len(self._layers)))

    @property
    def bottom_names(self):
        return OrderedDict((self._layer_names[i],
                            [self._blob_names[b] for b in self._bottom_id_lists[i]])
                           for i in range(len(self._layers)))

    def _layer_index(self, name, what):
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise ValueError("%s: %r is not a layer of this net" % (what, name)) from None

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """Run layers ``start``..``end`` (names, inclusive); return live output views."""
        if blobs is None:
            blobs = []
        start_ind = self._layer_index(start, "start") if start is not None else 0
        if end is not None:
            end_ind = self._layer_index(end, "end")
            outputs = set(self.top_names[end] + list(blobs))
        else:
            end_ind = len(self._layers) - 1
            outputs = set(self.outputs + list(blobs))
        if kwargs:
            if set(kwargs.keys()) != set(self.inputs):
                raise Exception("Input blob arguments do not match net inputs.")
            for in_, blob in kwargs.items():
                if blob.shape[0] != self.blobs[in_].shape[0]:
                    raise Exception("Input is not batch sized")
                self.blobs[in_].data[...] = blob
        if self._inference is not None:
            self._inference.request(outputs)
        self._forward(start_ind, end_ind)
        # Handing out the output views is not a write: tapes current before
        # stay current (a write through the views later is not seen).
        current = [st for st in self._steps if st.versions is not None
                   and self._tape_is_current(st)]
        views = {out: self.blobs[out].data for out in outputs}
        for st in current:
            st.versions = self._input_versions(st)
        return views

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """Backward from layer ``start`` down to ``end``; return live diff views."""
        if diffs is None:
            diffs = []
        if start is not None:
            start_ind = self._layer_index(start, "start")
        else:
            start_ind = len(self._layers) - 1
        if end is not None:
            end_ind = self._layer_index(end, "end")
            outputs = set(self.bottom_names[end] + list(diffs))
        else:
            end_ind = 0
            outputs = set(self.inputs + list(diffs))
        if kwargs:
            if set(kwargs.keys()) != set(self.outputs):
                raise Exception("Top diff arguments do not match net outputs.")
            for top, diff in kwargs.items():
                if diff.shape[0] != self.blobs[top].shape[0]:
                    raise Exception("Diff is not batch sized")
                self.blobs[top].diff[...] = diff
        self._backward(start_ind, end_ind)
        return {out: self.blobs[out].diff for out in outputs}

    def forward_all(self, blobs=None, **kwargs):
        all_outs = {out: [] for out in set(self.outputs + (blobs or []))}
        for batch in self._batch(kwargs):
            outs = self.forward(blobs=blobs, **batch)
            for out, out_blob in outs.items():
                all_outs[out].extend(out_blob.copy())
        for out in all_outs:
            all_outs[out] = np.asarray(all_outs[out])
        pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values())))
        if pad:
            for out in all_outs:
                all_outs[out] = all_outs[out][:-pad]
        return all_outs

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        all_outs = {out: [] for out in set(self.outputs + (blobs or []))}
        all_diffs = {diff: [] for diff in set(self.inputs + (diffs or []))}
        forward_batches = self._batch({in_: kwargs[in_] for in_ in self.inputs if in_ in kwargs})
        backward_batches = self._batch({out: kwargs[out] for out in self.outputs if out in kwargs})
        import itertools
        for fb, bb in itertools.zip_longest(forward_batches, backward_batches, fillvalue={}):
            batch_blobs = self.forward(blobs=blobs, **fb)
            batch_diffs = self.backward(diffs=diffs, **bb)
            for out, out_blobs in batch_blobs.items():
                all_outs[out].extend(out_blobs.copy())
            for diff, out_diffs in batch_diffs.items():
                all_diffs[diff].extend(out_diffs.copy())
        for out, diff in zip(all_outs, all_diffs):
            all_outs[out] = np.asarray(all_outs[out])
            all_diffs[diff] = np.asarray(all_diffs[diff])
        pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values())))
        if pad:
            for out, diff in zip(all_outs, all_diffs):
                all_outs[out] = all_outs[out][:-pad]
                all_diffs[diff] = all_diffs[diff][:-pad]
        return all_outs, all_diffs

    def set_input_arrays(self, data, labels):
        if labels.ndim == 1:
            labels = np.ascontiguousarray(labels[:, np.newaxis, np.newaxis, np.newaxis])
        return self._set_input_arrays(data, labels)

    def _batch(self, blobs):
        num = len(next(iter(blobs.values()))) if blobs else 0
        batch_size = next(iter(self.blobs.values())).shape[0]
        remainder = num % batch_size if batch_size else 0
        num_batches = num // batch_size if batch_size else 0
        for b in range(num_batches):
            i = b * batch_size
            yield {name: blobs[name][i:i + batch_size] for name in blobs}
        if remainder > 0:
            padded = {}
            for name in blobs:
                padding = np.zeros((batch_size - remainder,) + blobs[name].shape[1:])
                padded[name] = np.concatenate([blobs[name][-remainder:], padding])
            yield padded

    def to_pytorch(self, outputs=None, optimize=False):
        """This net as a ``torch.nn.Module`` (a copy: see ``caffe.pytorch.from_net``)."""
        from .pytorch import from_net
        return from_net(self, outputs=outputs, optimize=optimize)

    def __repr__(self):
        return "<caffe.Net %r: %d layers, %d blobs>" % (self._name, len(self._layers),
                                                       len(self._blobs))

