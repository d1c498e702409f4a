"""The layer contract of caffe/layers/base.py: its module docstring is enough
to write a layer, and every built-in layer declares what the Net reads."""
import inspect
import textwrap

import numpy as np

import caffe
from caffe.layers import base
from caffe.layers.registry import modules


def _docstring_example():
    doc = base.__doc__
    block = doc.split("registered for its Caffe type::\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_docstring_example_layer_runs_forward_and_backward(tmp_path):
    code = _docstring_example().replace('@register_layer("Square")', "")
    scope = {}
    exec(compile(code, "base.__doc__", "exec"), scope)
    caffe.modules["Square"] = scope["SquareLayer"]
    try:
        p = tmp_path / "sq.prototxt"
        p.write_text("""
name: "sq" force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "sq" type: "Square" bottom: "x" top: "y" power_param { scale: 3 } }
""")
        net = caffe.Net(str(p), caffe.TRAIN)
        x = np.random.RandomState(0).randn(2, 3).astype(np.float32)
        net.blobs["x"].data[...] = x
        net.forward()
        np.testing.assert_allclose(net.blobs["y"].data, 3 * x * x, rtol=1e-6)
        net.blobs["y"].diff[...] = 1
        net.backward()
        np.testing.assert_allclose(net.blobs["x"].diff, 6 * x, rtol=1e-6)
        np.testing.assert_allclose(net.params["sq"][0].diff, [(x * x).sum()], rtol=1e-5)
    finally:
        del caffe.modules["Square"]


def test_every_builtin_layer_class_follows_the_contract():
    kinds = {base.TENSOR, base.BLOB, base.INPUT}
    for type_name in modules.types():
        factory = modules.builtin(type_name)
        if not inspect.isclass(factory):
            continue            # Python: a factory function building the user's class
        assert issubclass(factory, base.LayerContract), type_name
        assert factory.kind in kinds, type_name
        assert factory.__name__.endswith("Layer"), factory.__name__


def test_net_reads_only_declared_hooks():
    import caffe.net as net_module
    source = inspect.getsource(net_module)
    assert "getattr(layer" not in source and "hasattr(layer" not in source.replace(
        'hasattr(layer, "set_input_arrays")', "")


def test_layers_import_nothing_from_the_tools():
    import glob
    import os
    for path in glob.glob(os.path.join(os.path.dirname(base.__file__), "*.py")):
        with open(path) as f:
            text = f.read()
        assert "tools" not in [part for line in text.splitlines()
                               if line.lstrip().startswith(("import ", "from "))
                               for part in line.replace(".", " ").split()], path
