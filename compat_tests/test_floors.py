"""The declared dependency floors still work (setup.cfg: ``torch>=2.1``,
``numpy>=1.26``, ``protobuf>=4.21``): each check builds a virtual environment with
the floor versions, then runs a net, a solver step and the caffemodel/prototxt round
trips in it (:data:`SCRIPT`).

- NumPy 1.26.4 and protobuf 4.21.12 over this interpreter's packages (torch included:
  ``--system-site-packages``); about a minute, needs PyPI: ``CAFFE_TEST_FLOORS=1``.
- torch 2.1.0 with the same NumPy and protobuf in a plain venv, which also installs the
  package and runs :data:`TORCH_FLOOR_TESTS` there; PyPI's torch 2.1.0 is a CUDA build
  (about 2.5 GB with its nvidia-* wheels, 5 GB installed), a few minutes:
  ``CAFFE_TEST_TORCH_FLOOR=1``.

``.ci/run`` sets both (the torch floor took 3m21s from an empty pip cache on the idle
build box).  ``.ci/matrix`` runs the same checks on other Pythons.
"""
import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOORS = ("numpy==1.26.4", "protobuf==4.21.12")
TORCH_FLOOR = ("torch==2.1.0",) + FLOORS
# the test files run under the torch floor: the net, layers, solvers, file formats and
# the torch-facing parts (CaffeModule, generated code, torch.export capture)
TORCH_FLOOR_TESTS = (
    "test_pycaffe_net.py", "test_net_backward.py", "test_layers_common.py",
    "test_layers_vision.py", "test_layers_loss.py", "test_layers_neuron.py",
    "test_solvers.py", "test_solver_restore.py", "test_weights.py", "test_proto.py",
    "test_upgrade.py", "test_pytorch_module.py", "test_pytorch_codegen.py",
    "test_from_pytorch.py", "test_inference.py", "test_pytorch_inference.py")
# what those tests import besides the package's own requirements
TEST_DEPS = ("pytest", "grpcio-tools")
# pip's words for "not to be had here" (network down, no wheel for this Python)
UNAVAILABLE = ("No matching distribution", "Could not find a version", "NewConnectionError",
               "ConnectionError", "ReadTimeoutError", "Max retries exceeded",
               "Temporary failure in name resolution")

SCRIPT = r'''
import os, sys, tempfile
import numpy as np
import google.protobuf
import torch
import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format
have = {"python": "%d.%d" % sys.version_info[:2], "torch": torch.__version__.split("+")[0],
        "numpy": np.__version__, "protobuf": google.protobuf.__version__}
print(" ".join("%s %s" % kv for kv in have.items()))
for name, version in (kv.split("=") for kv in os.environ["CAFFE_FLOORS_EXPECT"].split()):
    assert have[name] == version, (name, have[name], version)
net = caffe.Net("examples/lenet_deploy/deploy.prototxt",
                "examples/lenet_deploy/lenet.caffemodel", caffe.TEST)
net.blobs["data"].data[...] = np.random.RandomState(0).rand(1, 1, 28, 28)
prob = net.forward()["prob"]
assert prob.shape == (1, 10) and abs(float(prob.sum()) - 1) < 1e-4
d = tempfile.mkdtemp()
net.save(os.path.join(d, "w.caffemodel"))
again = caffe.Net("examples/lenet_deploy/deploy.prototxt", os.path.join(d, "w.caffemodel"),
                  caffe.TEST)
assert np.array_equal(again.params["conv1"][0].data, net.params["conv1"][0].data)
with open(os.path.join(d, "s.prototxt"), "w") as f:
    f.write('net_param { layer { name: "d" type: "DummyData" top: "x" top: "y" '
            'dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 1 } '
            'data_filler { type: "gaussian" } } } '
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" '
            'inner_product_param { num_output: 1 weight_filler { type: "xavier" } } } '
            'layer { name: "l" type: "EuclideanLoss" bottom: "ip" bottom: "y" top: "l" } } '
            'base_lr: 0.01 lr_policy: "fixed" max_iter: 2 snapshot_after_train: false '
            'random_seed: 1')
solver = caffe.get_solver(os.path.join(d, "s.prototxt"))
solver.step(2)
assert solver.iter == 2 and np.isfinite(float(solver.net.blobs["l"].data))
p = caffe_pb2.NetParameter()
text_format.Merge(open("examples/lenet_deploy/deploy.prototxt").read(), p)
assert len(p.layer) == 9
from caffe.export import ExportError
from caffe.export.torch_graph import MIN_TORCH
if tuple(int(v) for v in have["torch"].split(".")[:2]) < MIN_TORCH:   # refused by name
    try:
        caffe.from_pytorch(torch.nn.ReLU(), (torch.ones(1, 2),), os.path.join(d, "r.prototxt"),
                           os.path.join(d, "r.caffemodel"))
        raise AssertionError("from_pytorch ran on torch " + torch.__version__)
    except ExportError as exc:
        assert "needs torch >= %d.%d" % MIN_TORCH in str(exc), exc
        print("from_pytorch refused:", exc)
print("floors ok")
'''


def test_from_pytorch_names_the_torch_it_needs():
    from caffe.export import ExportError
    from caffe.export.torch_graph import check_torch_version
    check_torch_version("2.2.0")
    check_torch_version("2.13.0+cpu")
    with pytest.raises(ExportError, match=r"needs torch >= 2\.2 .*this is torch 2\.1\.0\+cu121"):
        check_torch_version("2.1.0+cu121")


def expect(pins):
    """``CAFFE_FLOORS_EXPECT`` for :data:`SCRIPT`: ``numpy==1.26.4`` -> ``numpy=1.26.4``."""
    return " ".join(p.replace("==", "=") for p in pins)


def run_script(py, pins):
    env = dict(os.environ, PYTHONPATH=ROOT, GLOG_minloglevel="1",
               CAFFE_FLOORS_EXPECT=expect(pins))
    r = subprocess.run([py, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "floors ok" in r.stdout


def pip_install(py, args, timeout=900, skip_if_unavailable=False):
    """``pip install args`` in the venv of ``py``; with ``skip_if_unavailable``, PyPI
    unreachable or no wheel for this Python skips the test (with pip's words)."""
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
                       + list(args), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 and skip_if_unavailable and any(m in r.stderr for m in UNAVAILABLE):
        pytest.skip("could not install %s from PyPI: %s"
                    % (" ".join(args), r.stderr.strip().splitlines()[-1]))
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.skipif(os.environ.get("CAFFE_TEST_FLOORS") != "1",
                    reason="builds a venv from PyPI (about a minute): set CAFFE_TEST_FLOORS=1")
def test_numpy_and_protobuf_floors():
    with tempfile.TemporaryDirectory(prefix="caffe_floors_") as tmp:
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                       check=True, timeout=300)
        py = os.path.join(venv, "bin", "python")
        pip_install(py, FLOORS)
        run_script(py, FLOORS)


@pytest.mark.skipif(os.environ.get("CAFFE_TEST_TORCH_FLOOR") != "1",
                    reason="installs PyPI's torch 2.1.0 (a 2.5 GB CUDA build) in a venv: "
                           "set CAFFE_TEST_TORCH_FLOOR=1")
def test_torch_floor():
    with tempfile.TemporaryDirectory(prefix="caffe_torch_floor_") as tmp:
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
        py = os.path.join(venv, "bin", "python")
        # the floors and the test runner first: PyPI unreachable, or no torch 2.1 wheel
        # for this Python, is a reason to skip, not a failure of the package
        pip_install(py, TORCH_FLOOR + TEST_DEPS, timeout=1800, skip_if_unavailable=True)
        # then the package itself (not editable: its requirements resolve against the pins)
        pip_install(py, (ROOT,), timeout=1800)
        run_script(py, TORCH_FLOOR)
        tests = [os.path.join("compat_tests", t) for t in TORCH_FLOOR_TESTS]
        r = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"] + tests,
                           cwd=ROOT, capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
