"""Property-based fuzzing of every file the package reads (#14 item 7).

Seed files (a small net's prototxt, caffemodel, HDF5 weights, binary and HDF5
solverstates, raw and encoded Datums) are mutated by hypothesis -- byte flips,
insertions, deletions, truncation, and for text numbers swapped for hostile
ones -- and handed to the loaders.  The only acceptable failures are the
package's own error types; anything else (a raw OSError/KeyError/DecodeError,
a crash, an example running over its time limit) fails the test.

Seeded (``derandomize``) and bounded for CI; ``CAFFE_FUZZ_EXAMPLES=20000``
runs that many examples per target locally.
"""
import os
import re
import signal
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st

import caffe  # noqa: E402
from caffe import dump, fillers, protoio  # noqa: E402
from caffe.data_transformer import DataTransformer, TransformError  # noqa: E402
from caffe.layers.base import LayerError  # noqa: E402
from caffe.layers.registry import UnknownLayerError  # noqa: E402
from caffe.limits import BlobShapeError  # noqa: E402
from caffe.net import NetError  # noqa: E402
from caffe.protoio import CaffeFileError  # noqa: E402
from caffe.solver import SolverError  # noqa: E402

h5py = pytest.importorskip("h5py")

EXAMPLES = int(os.environ.get("CAFFE_FUZZ_EXAMPLES", "30"))
TIME_LIMIT = 30                     # seconds per example: more is a hang
OWN_ERRORS = (CaffeFileError, LayerError, NetError, fillers.FillerError, dump.DumpError,
              SolverError, TransformError, UnknownLayerError, BlobShapeError)
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

NET = """name: "fuzz"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 6 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 2 kernel_size: 3 stride: 1 pad: 0
    weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "bn" type: "BatchNorm" bottom: "pool" top: "pool" }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""
TRAIN_NET = NET.replace('layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }',
                        'layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "ip" '
                        'top: "loss" }')


class _Seeds(dict):
    """The seed files; a short repr keeps hypothesis' example reports small."""

    def __repr__(self):
        return "<fuzz seeds>"


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout("example ran over %d s" % TIME_LIMIT)


def _guarded(fn, *args):
    """Run fn; package errors are fine, anything else fails the property."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*args)
    except OWN_ERRORS:
        pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzseeds")
    net_file = d / "net.prototxt"
    net_file.write_text(NET)
    train_file = d / "train.prototxt"
    train_file.write_text(TRAIN_NET)
    net = caffe.Net(str(net_file), caffe.TEST)
    net.save(str(d / "w.caffemodel"))
    net.save_hdf5(str(d / "w.caffemodel.h5"))
    out = _Seeds(dir=d, net=str(net_file), prototxt=NET.encode(),
                 caffemodel=(d / "w.caffemodel").read_bytes(),
                 h5=(d / "w.caffemodel.h5").read_bytes())
    for fmt, ext in (("BINARYPROTO", ".solverstate"), ("HDF5", ".solverstate.h5")):
        sp = d / ("solver_%s.prototxt" % fmt)
        sp.write_text('net: "%s"\nbase_lr: 0.01\nlr_policy: "fixed"\nmomentum: 0.9\n'
                      'snapshot_format: %s\nsnapshot_prefix: "%s"\n'
                      % (train_file, fmt, d / ("s_" + fmt)))
        solver = caffe.SGDSolver(str(sp))
        solver.step(1)
        solver.snapshot()
        out["state" + ext] = (d / ("s_%s_iter_1%s" % (fmt, ext))).read_bytes()
        out["solver" + ext] = solver          # restore is all-or-nothing: reusable
    datum = caffe.io.array_to_datum(np.arange(48, dtype=np.uint8).reshape(3, 4, 4), 2)
    out["datum"] = datum.SerializeToString()
    cv2 = pytest.importorskip("cv2")
    enc = protoio.schema().Datum()
    enc.encoded = True
    enc.label = 1
    enc.data = cv2.imencode(".png", np.arange(48, dtype=np.uint8).reshape(4, 4, 3))[1].tobytes()
    out["encoded_datum"] = enc.SerializeToString()
    out["test_net"] = net                       # copy_from is all-or-nothing: reusable
    return out


# -- mutations ------------------------------------------------------------------
_edits = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "cut"]),
                            st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                  min_size=1, max_size=6)


def mutate(data, edits):
    data = bytearray(data)
    for op, where, value in edits:
        if not data:
            data.append(value)
            continue
        i = int(where * len(data))
        if op == "flip":
            data[i] ^= 1 << (value % 8)
        elif op == "set":
            data[i] = value
        elif op == "insert":
            data[i:i] = bytes([value]) * (1 + value % 4)
        elif op == "delete":
            del data[i:i + 1 + value % 8]
        else:
            del data[i:]
    return bytes(data)


HOSTILE = ["0", "-1", "-7", "2147483648", "99999999999", "1e30", "-1e30", "nan", "inf",
           "3.5", "65536", "4294967297"]
_NUMBER = re.compile(rb"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?")


def mutate_text(text, picks, edits):
    """Swap some numbers for hostile ones, then apply byte edits (maybe none)."""
    numbers = list(_NUMBER.finditer(text))
    out = bytearray(text)
    for pos, value in sorted(picks, reverse=True):
        if not numbers:
            break
        m = numbers[int(pos * len(numbers))]
        out[m.start():m.end()] = value.encode()
        numbers = list(_NUMBER.finditer(bytes(out)))
    return mutate(bytes(out), edits) if edits else bytes(out)


_picks = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from(HOSTILE)),
                  max_size=3)


def _write(seeds, name, data):
    path = os.path.join(str(seeds["dir"]), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


# -- properties ------------------------------------------------------------------
@FUZZ
@given(picks=_picks, edits=st.one_of(st.just([]), _edits))
def test_fuzz_prototxt(seeds, picks, edits):
    path = _write(seeds, "m.prototxt", mutate_text(seeds["prototxt"], picks, edits))

    def build():
        net = caffe.Net(path, caffe.TEST)
        if sum(b.count for b in net.blobs.values()) < 10 ** 6:
            net.forward()
    _guarded(build)


@FUZZ
@given(edits=_edits)
def test_fuzz_caffemodel(seeds, edits):
    path = _write(seeds, "m.caffemodel", mutate(seeds["caffemodel"], edits))
    _guarded(seeds["test_net"].copy_from, path)
    _guarded(lambda: list(dump.iter_blobs(path)))


@FUZZ
@given(edits=_edits)
def test_fuzz_hdf5_weights(seeds, edits):
    path = _write(seeds, "m.caffemodel.h5", mutate(seeds["h5"], edits))
    _guarded(seeds["test_net"].copy_from, path)
    _guarded(lambda: list(dump.iter_blobs(path)))


@FUZZ
@given(edits=_edits, h5=st.booleans())
def test_fuzz_solverstate(seeds, edits, h5):
    ext = ".solverstate.h5" if h5 else ".solverstate"
    path = _write(seeds, "m" + ext, mutate(seeds["state" + ext], edits))
    _guarded(seeds["solver" + ext].restore, path)


@FUZZ
@given(edits=_edits, encoded=st.booleans())
def test_fuzz_datum(seeds, edits, encoded):
    data = mutate(seeds["encoded_datum" if encoded else "datum"], edits)
    param = protoio.schema().TransformationParameter()

    def transform():
        datum = protoio.parse_binary(data, protoio.schema().Datum(), "a fuzzed Datum")
        t = DataTransformer(param, caffe.TEST)
        t.transform(t.datum_array(datum))
    _guarded(transform)
