"""ONNX -> Caffe: map each ONNX node with the shared emitters, write, verify
against onnxruntime's values for the same inputs."""
import numpy as np

from . import onnx_graph
from . import verify as verify_mod
from .builder import NetBuilder, TargetError
from .emitters import input as input_em
from .errors import ExportError, VerificationError
from .onnx_context import OnnxContext
from .onnx_mappers import ONNX
from .report import ExportReport


def export(model, prototxt, caffemodel=None, *, target="bvlc", example_inputs=None,
           verify=True, rtol=1e-4, merge_bn=False, name=None):
    graph = onnx_graph.load(model, example_inputs)
    net = NetBuilder(name or graph.model.graph.name or "onnx_model", target)
    ctx = OnnxContext(graph, net, ONNX.names(), merge_bn=merge_bn)
    for blob in graph.inputs:
        input_em.input_layer(net, blob, blob, np.shape(graph.values[blob]))
        ctx.produce(blob, blob, check=False)
        ctx.input_blobs.add(blob)
    for node in graph.nodes:
        ctx.set_node(node)
        if not any(i in ctx.dynamic for i in node.inputs if i):
            continue   # Constant, shape arithmetic, weights: values the mappers read
        mapper = ONNX.get(node.op_type)
        if mapper is None:
            ctx.refuse("no Caffe mapping for this op")
        try:
            mapper(ctx, node)
        except TargetError as exc:
            ctx.refuse(str(exc))
    outputs = []
    for out in graph.outputs:
        blob = ctx.blobs.get(out)
        if blob is None or isinstance(blob, list) or blob in ctx.input_blobs:
            raise ExportError("graph output %s is not a tensor computed from the inputs" % out)
        ctx.checks[blob] = out
        outputs.append(blob)
    net.outputs = outputs
    net.prune()
    net.write(prototxt, caffemodel)
    report = ExportReport(str(prototxt), str(caffemodel) if caffemodel else None, target,
                          list(graph.inputs), outputs, len(net.layers))
    if verify:
        expected = {blob: np.asarray(graph.values[v], dtype=np.float32)
                    for blob, v in ctx.checks.items() if net.producer(blob) is not None}
        feeds = {b: graph.values[b] for b in graph.inputs}
        verify_mod.compare(report, expected, feeds, rtol)
        if not report.ok:
            raise VerificationError("the written Caffe net does not reproduce onnxruntime's "
                                    "outputs within rtol %g:\n%s" % (rtol, report.table), report)
    return report
