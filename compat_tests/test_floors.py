"""The declared dependency floors still work: NumPy 1.26 and protobuf 4.21 (setup.cfg:
``numpy>=1.26``, ``protobuf>=4.21``) import and run a net, a solver step, and the
caffemodel/prototxt round trips.

Builds a virtual environment that reuses this interpreter's packages (torch
included: ``--system-site-packages``) with the floor versions installed over them,
which needs PyPI and about a minute, so it runs only with ``CAFFE_TEST_FLOORS=1``
(``.ci/run`` sets it).  The torch floor (2.1) is not tested here: only one CPU
torch wheel is available on these machines (see README's set-up section).
"""
import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOORS = ("numpy==1.26.4", "protobuf==4.21.12")

SCRIPT = r'''
import os, sys, tempfile
import numpy as np
import google.protobuf
import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format
print("numpy", np.__version__, "protobuf", google.protobuf.__version__)
assert np.__version__ == "1.26.4" and google.protobuf.__version__ == "4.21.12"
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
print("floors ok")
'''


@pytest.mark.skipif(os.environ.get("CAFFE_TEST_FLOORS") != "1",
                    reason="builds a venv from PyPI (about a minute): set CAFFE_TEST_FLOORS=1")
def test_numpy_and_protobuf_floors():
    with tempfile.TemporaryDirectory(prefix="caffe_floors_") as tmp:
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                       check=True, timeout=300)
        py = os.path.join(venv, "bin", "python")
        r = subprocess.run([py, "-m", "pip", "install", "-q"] + list(FLOORS),
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        env = dict(os.environ, PYTHONPATH=ROOT, GLOG_minloglevel="1")
        r = subprocess.run([py, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr[-3000:]
        assert "floors ok" in r.stdout
