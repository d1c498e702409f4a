"""Load an ONNX model and evaluate every intermediate value with onnxruntime.

The values serve the mappers (shapes, constants folded by the runtime) and the
verification (the reference each written blob is compared with).
"""
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

from .errors import ExportError


@dataclass
class OnnxNode:
    """One ONNX node with its attributes decoded."""
    index: int
    op_type: str
    name: str
    inputs: List[str]
    outputs: List[str]
    attrs: Dict[str, object] = field(default_factory=dict)


@dataclass
class OnnxGraph:
    model: object
    nodes: List[OnnxNode]
    inputs: List[str]              # graph inputs that are not initializers
    outputs: List[str]
    initializers: Dict[str, np.ndarray]
    values: Dict[str, np.ndarray]  # every tensor name -> value for the example inputs


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def load(model_or_path, example_inputs=None, seed=0):
    """Parse the model and run it once (random inputs unless ``example_inputs``)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:   # pragma: no cover - onnx is in the onnx extra
        raise ExportError("the ONNX front end needs the 'onnx' and 'onnxruntime' packages "
                          "(pip install torchcaffe[onnx])") from exc
    model = onnx.load(model_or_path) if isinstance(model_or_path, str) else model_or_path
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in inits]
    nodes = []
    for i, n in enumerate(graph.node):
        name = n.name or "%s_%d" % (n.op_type, i)
        nodes.append(OnnxNode(i, n.op_type, name, list(n.input), list(n.output), _attrs(n)))
    feeds = dict(example_inputs or {})
    rng = np.random.RandomState(seed)
    for vi in graph.input:
        if vi.name in inits or vi.name in feeds:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1
                for d in vi.type.tensor_type.shape.dim]
        elem = vi.type.tensor_type.elem_type
        if elem in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            feeds[vi.name] = rng.randint(0, 2, size=dims).astype(
                np.int64 if elem == onnx.TensorProto.INT64 else np.int32)
        else:
            feeds[vi.name] = rng.randn(*dims).astype(np.float32)
    values = dict(inits)
    values.update(feeds)
    values.update(_run_all(model, feeds))
    return OnnxGraph(model, nodes, inputs, [o.name for o in graph.output], inits, values)


def _run_all(model, feeds):
    """Every node output's value: the graph is copied with all of them as outputs."""
    import onnx
    import onnxruntime as ort
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for out in n.output:
            if out and out not in known:
                m.graph.output.append(onnx.ValueInfoProto(name=out))
                known.add(out)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))
