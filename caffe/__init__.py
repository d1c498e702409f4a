"""torchcaffe: BVLC Caffe's Python API (pycaffe), running on PyTorch.

``import caffe`` gives the pycaffe surface: Net, the solvers, Layer for Python
layers, io, net_spec and the mode/seed functions, with Caffe's semantics.
"""
__version__ = "1.0.0"

# Other ``caffe`` folders on sys.path (a fork's python/caffe, e.g. the SSD fork's
# model_libs.py) supply the modules this package lacks; ours always come first.
from pkgutil import extend_path as _extend_path

__path__ = _extend_path(__path__, __name__)

from ._common import (
    TEST,
    TRAIN,
    has_nccl,
    init_log,
    log,
    set_device,
    set_mode_cpu,
    set_mode_gpu,
    set_multiprocess,
    set_random_seed,
    set_solver_count,
    set_solver_rank,
    solver_count,
    solver_rank,
)
from .proto import shipped as _shipped_schema

_shipped_schema()  # imports caffe_pb2 and installs pycaffe's str() on its messages
from . import io
from .blob import Blob, BlobVec
from .layers import modules
from .layers.python import Layer  # noqa: F401  (pycaffe's Python layer base)
from .net import Net
from .net_spec import NetSpec, layers, params, to_proto


def layer_type_list():
    """Registered layer types, sorted (pycaffe's ``caffe.layer_type_list``)."""
    return modules.types()


def __getattr__(name):
    # Heavier or later-loaded parts of pycaffe, imported on first use.
    if name in ("SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
                "AdaDeltaSolver", "AdamSolver", "get_solver", "Solver"):
        from . import solver
        return getattr(solver, name)
    if name in ("Classifier",):
        from .classifier import Classifier
        return Classifier
    if name in ("Detector",):
        from .detector import Detector
        return Detector
    if name in ("from_pytorch", "from_onnx", "from_darknet", "to_darknet", "pytorch",
                "to_pytorch", "to_onnx", "compare"):
        import importlib
        return importlib.import_module("." + name, __name__)   # callable module + CLI
    if name in ("Timer",):
        from . import _extras
        return getattr(_extras, name)
    if name in ("NCCL",):
        from .distributed import NCCL
        return NCCL
    raise AttributeError("module 'caffe' has no attribute %r" % (name,))
