"""Capture a PyTorch model as an ATen graph with ``torch.export`` and record every
intermediate value.

Nothing global is changed: the model is exported as it is (in eval mode for the
duration of the call), and the graph is then run once with
``torch.fx.Interpreter`` to keep the value of every node, which the mappers use
for shapes and constants and the verification compares against.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List

import torch

from .errors import ExportError

_TORCH_DIR = os.path.dirname(torch.__file__)
# torch 2.1's torch.export names modules (``getattr(L['self'].body, '1')``) and
# decomposes ops differently from what the mappers read
MIN_TORCH = (2, 2)


def check_torch_version(version=None):
    """ExportError naming the torch needed when ``version`` (torch's) is too old."""
    version = version or torch.__version__
    have = tuple(int(p) for p in version.split("+")[0].split(".")[:2])
    if have < MIN_TORCH:
        raise ExportError("PyTorch -> Caffe export needs torch >= %d.%d (torch.export); this is "
                          "torch %s" % (MIN_TORCH + (version,)))


@dataclass
class CapturedGraph:
    program: object                       # torch.export.ExportedProgram
    graph: object                         # its torch.fx.Graph
    values: Dict[object, object]          # node -> value (tensor / tuple / python scalar)
    constants: Dict[object, torch.Tensor]  # placeholder node -> parameter / buffer / constant
    inputs: List[object] = field(default_factory=list)   # user-input placeholder nodes
    outputs: List[object] = field(default_factory=list)  # nodes returned by the model


def capture(model, example_inputs):
    """Export ``model`` on ``example_inputs`` (a tuple) and evaluate every node."""
    check_torch_version()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            program = torch.export.export(model, tuple(example_inputs))
    except Exception as exc:  # torch's own message says which construct failed
        raise ExportError("torch.export could not capture the model: %s" % exc) from exc
    finally:
        model.train(was_training)
    sig = program.graph_signature
    state = dict(program.state_dict)
    state.update(getattr(program, "constants", {}) or {})
    lifted = {}
    lifted.update(sig.inputs_to_parameters)
    lifted.update(sig.inputs_to_buffers)
    lifted.update(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
    graph = program.graph_module.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    constants, feed, inputs = {}, [], []
    user_iter = iter(example_inputs)
    for node in placeholders:
        if node.name in lifted:
            value = state[lifted[node.name]]
            constants[node] = value.detach()
            feed.append(value)
        else:
            value = next(user_iter)
            inputs.append(node)
            feed.append(value)
    values = _evaluate(program.graph_module, feed)
    out_node = next(n for n in graph.nodes if n.op == "output")
    outputs = list(torch.utils._pytree.tree_flatten(out_node.args[0])[0])   # no tree_leaves in torch 2.1
    return CapturedGraph(program, graph, values, constants, inputs, outputs)


def _evaluate(graph_module, feed):
    interp = torch.fx.Interpreter(graph_module, garbage_collect_values=False)
    with torch.no_grad():
        interp.run(*feed)
    return dict(interp.env)


def module_path(node):
    """``layer3.1.conv2`` for ops inside that module, '' for the top-level forward."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path if isinstance(path, str) else ""


def is_leaf_module(node):
    """True when the node comes from a module with no submodules (Conv2d, BatchNorm2d...)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return False
    cls = list(stack.values())[-1][1]
    cls = cls if isinstance(cls, type) else None
    name = str(list(stack.values())[-1][1])
    return cls is not None and cls.__module__.startswith("torch.nn") or "torch.nn.modules" in name


def source_line(node):
    """The user's source line that produced ``node`` ("file:line: code")."""
    trace = node.meta.get("stack_trace") or ""
    lines = trace.strip().splitlines()
    frames = []
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith("File "):
            code = lines[i + 1].strip() if i + 1 < len(lines) else ""
            frames.append((text, code))
    if not frames:
        return ""
    user = [f for f in frames if _TORCH_DIR not in f[0]]
    text, code = (user or frames)[-1]
    # 'File "x.py", line 12, in forward' -> x.py:12 (forward): code
    try:
        fname = text.split('"')[1]
        lineno = text.split("line ")[1].split(",")[0]
        return "%s:%s: %s" % (fname, lineno, code)
    except IndexError:
        return text + ": " + code
