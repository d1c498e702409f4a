"""Caffe -> Darknet: the layers Darknet can express, back to cfg sections and the
weights file in Darknet's order (biases, [scales, rolling mean, rolling variance],
weights).  A net written by ``caffe.from_darknet`` comes back with the same
weights, byte for byte ([yolo] / [region] sections, which hold no weights, are
not in a Caffe net and are left out of the cfg)."""
import numpy as np

from .darknet_cfg import write_weights
from .errors import ExportError

_ACTIVATIONS = {"Sigmoid": "logistic", "TanH": "tanh"}


class _Writer:
    def __init__(self, net, param):
        self.net = net
        self.layers = list(param.layer)
        self.sections = []        # [(kind, [(key, value)])]
        self.arrays = []
        self.index_of = {}        # blob -> darknet layer index
        self.pos = 0

    def fail(self, layer, reason):
        raise ExportError("layer '%s' (type %s): %s" % (layer.name, layer.type, reason))

    def emit(self, kind, options, top):
        self.sections.append((kind, options))
        self.index_of[top] = len(self.sections) - 1

    def ref(self, layer, blob):
        if blob not in self.index_of:
            self.fail(layer, "reads blob '%s', which no Darknet layer produces" % blob)
        return self.index_of[blob] - len(self.sections)   # relative, as Darknet cfgs write it

    def params(self, layer):
        return [np.asarray(b.data, dtype=np.float32) for b in self.net.params[layer.name]] \
            if layer.name in self.net.params else []

    def next_inplace(self, blob, types):
        """The next layer if it works in place on ``blob`` and has one of ``types``."""
        if self.pos < len(self.layers):
            nxt = self.layers[self.pos]
            if nxt.type in types and list(nxt.bottom)[:1] == [blob] and list(nxt.top) == [blob]:
                self.pos += 1
                return nxt
        return None

    def activation(self, blob):
        act = self.next_inplace(blob, ("ReLU", "Sigmoid", "TanH", "Clip"))
        if act is None:
            return "linear"
        if act.type == "ReLU":
            slope = act.relu_param.negative_slope
            if slope == 0:
                return "relu"
            if abs(slope - 0.1) < 1e-7:
                return "leaky"
            self.fail(act, "negative_slope %g (Darknet's leaky is 0.1)" % slope)
        if act.type == "Clip":
            if (act.clip_param.min, act.clip_param.max) != (0.0, 6.0):
                self.fail(act, "Clip other than relu6")
            return "relu6"
        return _ACTIVATIONS[act.type]

    def batch_norm(self, blob, channels):
        bn = self.next_inplace(blob, ("BatchNorm",))
        if bn is None:
            return None
        mean, var, factor = self.params(bn)
        f = factor.reshape(-1)[0]
        f = 0.0 if f == 0 else 1.0 / f
        mean, var = mean * f if f != 1.0 else mean, var * f if f != 1.0 else var
        sc = self.next_inplace(blob, ("Scale",))
        if sc is None:
            gamma, beta = np.ones(channels, np.float32), np.zeros(channels, np.float32)
        else:
            p = self.params(sc)
            gamma = p[0]
            beta = p[1] if len(p) > 1 else np.zeros(channels, np.float32)
        return gamma, beta, mean, var

    def run(self):
        while self.pos < len(self.layers):
            layer = self.layers[self.pos]
            self.pos += 1
            handler = getattr(self, "on_" + layer.type, None)
            if handler is None:
                self.fail(layer, "has no Darknet section")
            handler(layer)

    # -- layer types ---------------------------------------------------------
    def on_Input(self, layer):
        shape = list(layer.input_param.shape[0].dim)
        if self.sections or len(shape) != 4:
            self.fail(layer, "Darknet nets have one 4-D input")
        self.net_options = [("batch", 1), ("width", shape[3]), ("height", shape[2]),
                            ("channels", shape[1])]
        self.index_of[layer.top[0]] = -1
        self.input_blob = layer.top[0]

    def on_Silence(self, layer):
        pass

    def on_Dropout(self, layer):
        self.index_of[layer.top[0]] = self.index_of[layer.bottom[0]]

    def on_Convolution(self, layer):
        p = layer.convolution_param
        w_b = self.params(layer)
        weight = w_b[0]
        k = weight.shape[2]
        if weight.shape[2] != weight.shape[3] or p.HasField("kernel_h"):
            self.fail(layer, "non-square kernel")
        stride = p.stride[0] if len(p.stride) else 1
        pad = p.pad[0] if len(p.pad) else 0
        if len(p.dilation) and p.dilation[0] != 1:
            self.fail(layer, "dilation")
        self._prev_is(layer)
        top = layer.top[0]
        bn = self.batch_norm(top, weight.shape[0])
        act = self.activation(top)
        opts = [("batch_normalize", 1)] if bn else []
        opts += [("filters", weight.shape[0]), ("size", k), ("stride", stride)]
        opts += [("pad", 1)] if pad == k // 2 else [("padding", pad)]
        if p.group != 1:
            opts.append(("groups", p.group))
        opts.append(("activation", act))
        if bn:
            gamma, beta, mean, var = bn
            self.arrays += [beta, gamma, mean, var, weight]
        else:
            bias = w_b[1] if len(w_b) > 1 else np.zeros(weight.shape[0], np.float32)
            self.arrays += [bias, weight]
        self.emit("convolutional", opts, top)

    def _prev_is(self, layer):
        """Darknet layers read their predecessor: a bottom written earlier gets a one-layer
        [route] in front (what from_darknet turned into a plain blob reference)."""
        last = len(self.sections) - 1
        if self.index_of.get(layer.bottom[0], None) != last:
            self.sections.append(("route", [("layers", str(self.ref(layer, layer.bottom[0])))]))

    def on_InnerProduct(self, layer):
        w_b = self.params(layer)
        self._prev_is(layer)
        top = layer.top[0]
        bn = self.batch_norm(top, w_b[0].shape[0])
        act = self.activation(top)
        opts = ([("batch_normalize", 1)] if bn else []) + [("output", w_b[0].shape[0]),
                                                          ("activation", act)]
        if bn:
            gamma, beta, mean, var = bn
            self.arrays += [beta, w_b[0], gamma, mean, var]
        else:
            bias = w_b[1] if len(w_b) > 1 else np.zeros(w_b[0].shape[0], np.float32)
            self.arrays += [bias, w_b[0]]
        self.emit("connected", opts, top)

    def on_Pooling(self, layer):
        p = layer.pooling_param
        self._prev_is(layer)
        if p.global_pooling and p.pool == 1:
            return self.emit("avgpool", [], layer.top[0])
        if p.pool != 0:
            self.fail(layer, "only MAX pooling (and global AVE) exists in Darknet")
        k = p.kernel_size or p.kernel_h
        s = p.stride or p.stride_h or 1
        pad = p.pad or p.pad_h
        h = self.net.blobs[layer.bottom[0]].shape[2]
        top, drop = layer.top[0], 0
        # trims written by from_darknet: Slice + Silence along H / W
        while self.pos < len(self.layers) and self.layers[self.pos].type == "Slice" and \
                self.layers[self.pos].bottom[0] == top:
            sl = self.layers[self.pos]
            kept = [t for t in sl.top if not t.endswith(("/before", "/after"))]
            points = list(sl.slice_param.slice_point)
            drop = points[0] if any(t.endswith("/before") for t in sl.top) else 0
            top = kept[0]
            self.pos += 1
            if self.pos < len(self.layers) and self.layers[self.pos].type == "Silence":
                self.pos += 1
        out = self.net.blobs[top].shape[2]
        start = pad - drop * s
        for padding in (k - 1, 2 * start, 2 * start + 1):
            if padding // 2 == start and (h + padding - k) // s + 1 == out:
                break
        else:
            self.fail(layer, "no Darknet padding reproduces these windows")
        opts = [("size", k), ("stride", s)] + ([] if padding == k - 1 else [("padding", padding)])
        self.emit("maxpool", opts, top)

    def on_Concat(self, layer):
        refs = [self.ref(layer, b) for b in layer.bottom]
        self._route(layer, refs, layer.top[0])

    def _route(self, layer, refs, top, groups=None):
        opts = [("layers", ", ".join(str(r) for r in refs))]
        if groups:
            opts += [("groups", groups[0]), ("group_id", groups[1])]
        self.emit("route", opts, top)

    def on_Slice(self, layer):
        if layer.slice_param.axis != 1:
            self.fail(layer, "only a channel Slice (route groups) maps to Darknet")
        c = self.net.blobs[layer.bottom[0]].shape[1]
        kept = [t for t in layer.top if not t.endswith(("/before", "/after"))]
        if len(kept) != 1:
            self.fail(layer, "Slice with several used pieces")
        part = self.net.blobs[kept[0]].shape[1]
        points = list(layer.slice_param.slice_point)
        start = points[0] if layer.top[0] != kept[0] else 0
        if c % part or start % part:
            self.fail(layer, "the kept channels are not one of equal groups")
        bottom = layer.bottom[0]
        src = self.sections[self.index_of[bottom]] if self.index_of.get(bottom, -1) >= 0 \
            else None
        if src is not None and src[0] == "route" and self.index_of[bottom] == \
                len(self.sections) - 1 and not any(k == "groups" for k, _ in src[1]):
            # the Concat just written becomes a grouped route
            self.sections.pop()
            refs = [int(v) for v in src[1][0][1].split(",")]   # same index: same offsets
        else:
            refs = [self.ref(layer, bottom)]
        self._route(layer, refs, kept[0], (c // part, start // part))
        if self.pos < len(self.layers) and self.layers[self.pos].type == "Silence":
            self.pos += 1

    def on_Eltwise(self, layer):
        if layer.eltwise_param.operation != 1 or len(layer.bottom) != 2 or \
                len(layer.eltwise_param.coeff):
            self.fail(layer, "only a two-input SUM is a Darknet [shortcut]")
        self._prev_is(layer)
        other = self.ref(layer, layer.bottom[1])
        act = self.activation(layer.top[0])
        self.emit("shortcut", [("from", other), ("activation", act)], layer.top[0])

    def on_Deconvolution(self, layer):
        p = layer.convolution_param
        w = self.params(layer)[0]
        k = w.shape[2]
        stride = p.stride[0] if len(p.stride) else 1
        if not (np.all(w == 1) and p.group == w.shape[0] and stride == k and w.shape[3] == k
                and not p.bias_term and not len(p.pad)):
            self.fail(layer, "only nearest upsampling (one-hot Deconvolution) is an [upsample]")
        self._prev_is(layer)
        self.emit("upsample", [("stride", k)], layer.top[0])

    def on_Reshape(self, layer):
        """Only as the start of a [reorg] written by from_darknet: Reshape to the
        (C/s², H·s, W·s) view, the 0/1 gathering Convolution, Reshape."""
        from .darknet_mappers.route import reorg_gather_weight
        rest = self.layers[self.pos:self.pos + 2]
        if len(rest) == 2 and [r.type for r in rest] == ["Convolution", "Reshape"] and \
                list(rest[0].bottom) == list(layer.top) and list(rest[1].bottom) == list(rest[0].top):
            conv, out = rest
            n, c, h, w = self.net.blobs[layer.bottom[0]].shape
            weight = self.params(conv)[0]
            s = weight.shape[2]
            p = conv.convolution_param
            if (s >= 1 and c % (s * s) == 0 and weight.shape == (c, c // (s * s), s, s)
                    and not p.bias_term and list(p.stride) in ([s], [s, s]) and not len(p.pad)
                    and p.group == 1 and np.array_equal(weight, reorg_gather_weight(c, s))
                    and tuple(self.net.blobs[out.top[0]].shape) == (n, c * s * s, h // s, w // s)):
                self._prev_is(layer)
                self.pos += 2
                self.emit("reorg", [("stride", s)], out.top[0])
                return
        self.fail(layer, "Darknet has no reshape (only the Reshape / gathering Convolution / "
                         "Reshape that from_darknet writes for [reorg])")

    def on_Softmax(self, layer):
        self._prev_is(layer)
        self.emit("softmax", [], layer.top[0])


def write(prototxt, caffemodel, cfg_path, weights_path, header=(0, 2, 0, 0)):
    from .. import TEST
    from ..net import Net, plain_nets
    from ..protoio import read_net_param
    param = read_net_param(prototxt)
    with plain_nets():
        net = Net(prototxt, caffemodel, TEST) if caffemodel else Net(prototxt, TEST)
    w = _Writer(net, param)
    w.run()
    lines = ["[net]"] + ["%s=%s" % kv for kv in w.net_options]
    for kind, opts in w.sections:
        lines += ["", "[%s]" % kind] + ["%s=%s" % kv for kv in opts]
    with open(cfg_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if weights_path and caffemodel:
        write_weights(weights_path, header, w.arrays)
    return w.sections
