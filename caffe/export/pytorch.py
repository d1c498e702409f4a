"""PyTorch -> Caffe: capture with torch.export, map each ATen node, write, verify."""
import operator

import torch

from . import torch_graph
from . import verify as verify_mod
from .builder import NetBuilder, TargetError
from .context import AtenContext
from .emitters import input as input_em
from .errors import ExportError, VerificationError
from .mappers import ATEN
from .report import ExportReport


def op_key(node):
    """Registry keys tried for a node: 'max.dim' (op.overload) then 'max'."""
    target = node.target
    if target is operator.getitem:
        return ("getitem",)
    if hasattr(target, "overloadpacket"):
        packet = target.overloadpacket.__name__
        return ("%s.%s" % (packet, target._overloadname), packet)
    return (getattr(target, "__name__", str(target)),)


def export(model, example_inputs, prototxt, caffemodel=None, *, target="bvlc",
           input_names=None, output_names=None, verify=True, rtol=1e-4, merge_bn=False,
           name=None):
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    captured = torch_graph.capture(model, example_inputs)
    net = NetBuilder(name or type(model).__name__, target)
    ctx = AtenContext(captured, net, ATEN.names(), merge_bn=merge_bn)
    _map_inputs(ctx, captured, input_names)
    for node in captured.graph.nodes:
        if node.op != "call_function":
            continue
        ctx.node = node
        if not any(n in ctx.dynamic for n in node.all_input_nodes):
            continue   # computed from weights only: a constant the mappers read
        if not node.users and node not in captured.outputs:
            continue   # dead (e.g. pooling indices nobody reads)
        mapper = next((ATEN.get(k) for k in op_key(node) if ATEN.get(k)), None)
        if mapper is None:
            ctx.refuse("no Caffe mapping for this op")
        try:
            mapper(ctx, node)
        except TargetError as exc:
            ctx.refuse(str(exc))
        if node not in ctx.blobs and node not in ctx.pending:
            raise ExportError("internal: mapper for %s produced no blob" % node.name)
    outputs = _map_outputs(ctx, captured, output_names)
    net.prune()
    net.write(prototxt, caffemodel)
    report = ExportReport(str(prototxt), str(caffemodel) if caffemodel else None, target,
                          list(ctx.input_order), outputs, len(net.layers))
    if verify:
        expected = {blob: _np(captured.values[node]) for blob, node in ctx.checks.items()
                    if _still_written(net, blob)}
        feeds = {blob: _np(captured.values[node]) for blob, node in ctx.input_nodes.items()}
        verify_mod.compare(report, expected, feeds, rtol)
        if not report.ok:
            raise VerificationError("the written Caffe net does not reproduce the PyTorch "
                                    "outputs within rtol %g:\n%s" % (rtol, report.table),
                                    report)
    return report


def _np(value):
    return value.detach().to(torch.float32).cpu().numpy()


def _still_written(net, blob):
    return net.producer(blob) is not None


def _map_inputs(ctx, captured, names):
    names = list(names or [])
    if names and len(names) != len(captured.inputs):
        raise ExportError("input_names has %d names for %d model inputs" % (
            len(names), len(captured.inputs)))
    ctx.input_nodes = {}
    ctx.input_order = []
    for i, node in enumerate(captured.inputs):
        value = captured.values[node]
        if not isinstance(value, torch.Tensor):
            raise ExportError("model input %d (%s) is not a tensor" % (i, node.name))
        blob = names[i] if names else node.name
        input_em.input_layer(ctx.net, blob, blob, tuple(value.shape))
        ctx.produce(blob, node, check=False)
        ctx.input_blobs.add(blob)
        ctx.input_nodes[blob] = node
        ctx.input_order.append(blob)


def _map_outputs(ctx, captured, names):
    names = list(names or [])
    if names and len(names) != len(captured.outputs):
        raise ExportError("output_names has %d names for %d model outputs" % (
            len(names), len(captured.outputs)))
    outputs = []
    for i, node in enumerate(captured.outputs):
        if not isinstance(node, torch.fx.Node) or node not in ctx.blobs or \
                isinstance(ctx.blobs[node], list):
            raise ExportError("model output %d is not a tensor computed from the inputs" % i)
        blob = ctx.blobs[node]
        if blob in ctx.input_blobs:
            raise ExportError("model output %d is a model input unchanged" % i)
        if names:
            ctx.net.rename_blob(blob, names[i])
            ctx.checks = {(names[i] if b == blob else b): n for b, n in ctx.checks.items()}
            blob = names[i]
        ctx.checks[blob] = node
        outputs.append(blob)
    ctx.net.outputs = outputs
    return outputs
