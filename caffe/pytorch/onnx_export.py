"""ONNX through the module: ``torch.onnx.export`` of a CaffeModule.

When every layer has a code emitter the generated plain-torch Model is traced
(:func:`exportable_model`): its graph is made of ordinary torch ops with
Caffe's numerics (ceil-mode pooling, LRN, Normalize, PriorBox stored as a
constant, ...).  Otherwise the module itself is traced.  The TorchScript-based
exporter is used: it needs no extra package (no onnxscript).  Tracing can
record a wrong graph without complaint, so the command line always checks the
file in onnxruntime against the module (:func:`run_onnx`).
"""
import inspect
import warnings

import torch

from .graph import ModuleBuildError

DEFAULT_OPSET = 17


def example_inputs(module, seed=0):
    """Uniform [0, 1) inputs of the net's shapes (valid as labels, too)."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(tuple(s), generator=gen) for s in module.input_shapes.values())


def export(module, path, opset=DEFAULT_OPSET, dynamic_batch=False, inputs=None):
    """Write ``module`` to ``path``; inputs/outputs keep the Caffe blob names.

    ``inputs``: example tensors (a tuple in ``module.inputs`` order or a dict);
    the graph is traced with them, so shapes not made dynamic stay as given.
    """
    module.eval()
    if inputs is None:
        inputs = example_inputs(module)
    elif isinstance(inputs, dict):
        inputs = tuple(inputs[n] for n in module.inputs)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {n: {0: "batch"} for n in list(module.inputs) + list(module.outputs)}
    with warnings.catch_warnings():
        # the tracer warns about every Python-level shape decision in the layers;
        # check() below is what tells whether the file is right
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, inputs, path, opset_version=int(opset),
                              **torchscript_exporter(),
                              input_names=list(module.inputs),
                              output_names=list(module.outputs),
                              dynamic_axes=dynamic_axes, do_constant_folding=True)
        except Exception as exc:   # torch reports which op has no ONNX form
            raise ModuleBuildError("%s: torch.onnx.export failed (opset %s): %s: %s"
                                   % (module.net_name, opset, type(exc).__name__, exc)) from exc
    return path


def torchscript_exporter():
    """``torch.onnx.export`` keywords that pick the TorchScript exporter: ``dynamo=False``
    where torch has the choice (2.5 on; the default from 2.9), nothing before (torch
    2.1 to 2.4 have only that exporter and no ``dynamo`` keyword)."""
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        return {"dynamo": False}
    return {}


def run_onnx(path, inputs):
    """Outputs of the ONNX file in onnxruntime, as ``{name: array}``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("onnxruntime is needed to run ONNX files: "
                          "pip install 'torchcaffe[onnx]'") from None
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}    # inputs used only for their
    feed = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else v)  # shape are folded
            for k, v in inputs.items() if k in wanted}
    return dict(zip(names, session.run(None, feed)))


def exportable_model(module):
    """The plain-torch Model generated for ``module`` when every layer has a code
    emitter (its graph is simpler and has no autograd Functions), else ``module``."""
    import types

    from .codegen import CodegenError, generate
    try:
        gen = generate(module)
    except CodegenError:
        return module
    namespace = types.ModuleType("caffe_generated_for_onnx")
    exec(compile(gen.source, "<generated %s>" % module.net_name, "exec"), namespace.__dict__)
    model = namespace.Model()
    model.load_state_dict(gen.state_dict, strict=True)
    model.train(module.training)
    model.inputs = list(module.inputs)
    model.outputs = list(module.outputs)
    model.input_shapes = module.input_shapes
    model.net_name = module.net_name
    return model
