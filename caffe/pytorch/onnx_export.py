"""ONNX through the module: ``torch.onnx.export`` of a CaffeModule.

When every layer has a code emitter the generated plain-torch Model is traced
(:func:`exportable_model`): its graph is made of ordinary torch ops with
Caffe's numerics (ceil-mode pooling, LRN, Normalize, PriorBox stored as a
constant, ...).  Otherwise the module itself is traced.  The TorchScript-based
exporter is used: it needs no extra package (no onnxscript).  Tracing can
record a wrong graph without complaint, so the command line always checks the
file in onnxruntime against the module (:func:`run_onnx`).

Some layers' own code cannot be traced into a correct graph.  Those with an
ONNX-friendly equivalent are traced through it (:data:`ONNX_FORMS`, installed
on the module's children for the duration of the export); those without one
are refused before tracing, by layer name and with the reason
(:data:`ONNX_REFUSED`), instead of failing deep in ``torch.onnx`` or, worse,
tracing a graph that only reproduces the example input.
"""
import inspect
import warnings
from contextlib import contextmanager

import torch

from .graph import ModuleBuildError
from .registry import Registry

DEFAULT_OPSET = 17

# Layer type -> why no correct ONNX graph can be traced from its code.
ONNX_REFUSED = {
    "MultiBoxLoss": "SSD's training loss matches ground truth to priors and mines hard "
                    "negatives: the number of matched and mined boxes depends on the data "
                    "(torch.bincount, sorting), which ONNX tracing cannot record; export the "
                    "deploy net (DetectionOutput) instead",
    "DetectionEvaluate": "SSD's evaluation layer computes on the host (NumPy) and its row "
                         "count depends on the detections: a trace would store the example's "
                         "result as a constant; evaluate with caffe.Net or the module",
    "BoxAnnotatorOHEM": "R-FCN's training-time hard example selection ranks the rois per "
                        "image (stable sort, bincount), which has no ONNX form; it is not part "
                        "of a deploy net",
}

# Layer type -> fn(layer, bottoms, params) -> tops, traced instead of the layer's run.
ONNX_FORMS = Registry("caffe.pytorch ONNX forms")


def check_exportable(module):
    """Refuse, by layer name and with the reason, layers listed in :data:`ONNX_REFUSED`."""
    types = getattr(module, "layer_types", None) or {}
    bad = [(name, t) for name, t in types.items() if t in ONNX_REFUSED]
    if bad:
        raise ModuleBuildError("%s: cannot be exported to ONNX: %s" % (
            getattr(module, "net_name", "module"),
            "; ".join("layer %r (type %s): %s" % (n, t, ONNX_REFUSED[t]) for n, t in bad)))


@contextmanager
def export_forms(module):
    """Trace the layers of :data:`ONNX_FORMS` through their ONNX-friendly form."""
    from .layer_module import LayerModule
    changed = []
    try:
        for child in module.modules():
            if isinstance(child, LayerModule) and child.layer_type in ONNX_FORMS:
                child.export_form = ONNX_FORMS.get(child.layer_type)
                changed.append(child)
        yield
    finally:
        for child in changed:
            del child.export_form          # back to the class default (None)


def _build_error(exc):
    """The ModuleBuildError in ``exc``'s chain (a form's refusal), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ModuleBuildError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def example_inputs(module, seed=0):
    """Uniform [0, 1) inputs of the net's shapes (valid as labels, too)."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(tuple(s), generator=gen) for s in module.input_shapes.values())


def export(module, path, opset=DEFAULT_OPSET, dynamic_batch=False, inputs=None):
    """Write ``module`` to ``path``; inputs/outputs keep the Caffe blob names.

    ``inputs``: example tensors (a tuple in ``module.inputs`` order or a dict);
    the graph is traced with them, so shapes not made dynamic stay as given.
    """
    check_exportable(module)
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
            with export_forms(module):
                torch.onnx.export(module, inputs, path, opset_version=int(opset),
                                  **torchscript_exporter(),
                                  input_names=list(module.inputs),
                                  output_names=list(module.outputs),
                                  dynamic_axes=dynamic_axes, do_constant_folding=True)
        except Exception as exc:   # torch reports which op has no ONNX form
            refusal = _build_error(exc)
            if refusal is not None:
                raise refusal from None
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
    emitter (its graph is simpler and has no autograd Functions), else ``module``.
    A net with a layer of :data:`ONNX_FORMS` is traced as ``module``: the forms
    replace those layers' code on its children, not in generated code."""
    import types

    from .codegen import CodegenError, generate
    check_exportable(module)        # by the Caffe layer's name, before any tracing
    if any(t in ONNX_FORMS for t in (getattr(module, "layer_types", None) or {}).values()):
        return module
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


# ---------------------------------------------------------------------------
# ONNX forms
# ---------------------------------------------------------------------------
class _MaxRoiPool(torch.autograd.Function):
    """ONNX's MaxRoiPool (Fast R-CNN's ROI pooling).  Only its symbolic matters:
    the forward gives the layer's own numbers so that the trace continues with
    them.  onnxruntime starts each non-empty bin at FLT_MIN (the smallest
    positive float), not at -FLT_MAX as Caffe: see :func:`_roi_pooling_form`."""

    @staticmethod
    def forward(ctx, x, rois, pooled_h, pooled_w, spatial_scale):
        from ..kernels import roi_pooling_forward
        # not traced: the symbolic replaces it, and the kernel's bit tricks
        # (a float32 -> int32 view) trip torch's tracer
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            return roi_pooling_forward(x, rois, pooled_h, pooled_w, spatial_scale)[0]
        finally:
            torch._C._set_tracing_state(state)

    @staticmethod
    def symbolic(g, x, rois, pooled_h, pooled_w, spatial_scale):
        return g.op("MaxRoiPool", x, rois, pooled_shape_i=[int(pooled_h), int(pooled_w)],
                    spatial_scale_f=float(spatial_scale))


@ONNX_FORMS.register("ROIPooling")
def _roi_pooling_form(layer, bottoms, params):
    """caffe-fast-rcnn ROIPooling as ONNX MaxRoiPool (same bins, same rounding).

    onnxruntime's kernel returns max(bin max, FLT_MIN) for a non-empty bin and 0
    for an empty one.  Bins whose max is above FLT_MIN are exact; the others
    (max <= 0) are pooled a second time on ``x - shift`` (``shift``: the minimum
    of the roi's feature plane - 1, so every value is >= 1) and shifted back:
    exact for a bin of zeros (ReLU features), within float rounding of that
    plane's minimum for negative bins."""
    x, rois = bottoms
    if layer.spatial_scale <= 0:
        raise ModuleBuildError("ROIPooling layer %r: spatial_scale %g: ONNX MaxRoiPool needs "
                               "spatial_scale > 0" % (layer.name, layer.spatial_scale))
    if x.dtype != torch.float32:
        raise ModuleBuildError("ROIPooling layer %r: ONNX MaxRoiPool (onnxruntime) takes "
                               "float32 features, got %s" % (layer.name, x.dtype))
    r = rois.reshape(-1, 5).to(x.dtype)
    args = (layer.pooled_h, layer.pooled_w, layer.spatial_scale)
    top = _MaxRoiPool.apply(x, r, *args)
    shift = x.amin(dim=(2, 3), keepdim=True) - 1                     # (N, C, 1, 1)
    plane_shift = shift.flatten(1)[r[:, 0].to(torch.int64)][:, :, None, None]   # (R, C, 1, 1)
    low = _MaxRoiPool.apply(x - shift, r, *args) + plane_shift
    tiny = torch.finfo(x.dtype).tiny
    return [torch.where(top > tiny, top, torch.where(top == 0, torch.zeros_like(top), low))]
