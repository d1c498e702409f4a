"""A fork's caffe.proto, once loaded, is the schema everywhere (#11 item 3).

The fork adds a LayerParameter field (``my_param``) of a new message type
(``MyParameter``); every module that builds or reads messages must see it.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("grpc_tools", reason="compiling a caffe.proto at run time needs grpcio-tools")

import caffe  # noqa: E402
import caffe.proto  # noqa: E402
from caffe import dump, net_spec, protoio  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "caffe", "proto", "caffe.proto")


def _write_fork(path):
    text = open(SHIPPED).read()
    head = "message LayerParameter {\n"
    assert head in text
    text = text.replace(head, head + "  optional MyParameter my_param = 54321;\n", 1)
    text += "\nmessage MyParameter {\n  optional float gain = 1 [default = 2];\n" \
            "  optional string tag = 2;\n}\n"
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture(scope="module")
def fork_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fork") / "fork_caffe.proto")
    _write_fork(path)
    return path


@pytest.fixture
def fork(fork_path):
    mod = caffe.proto.load(fork_path)     # compiled once, then cached by path and mtime
    try:
        yield mod
    finally:
        caffe.proto.reset()


def _spec():
    n = net_spec.NetSpec()
    n.data = net_spec.layers.Input(shape=dict(dim=[2, 3]))
    n.ip = net_spec.layers.InnerProduct(n.data, num_output=4,
                                        weight_filler=dict(type="xavier"),
                                        my_param=dict(gain=3.5, tag="fork"))
    n.relu = net_spec.layers.ReLU(n.ip, in_place=True)
    return n.to_proto()


def test_caffe_pb2_is_the_loaded_fork(fork):
    from caffe.proto import caffe_pb2
    assert caffe_pb2 is fork
    assert hasattr(caffe_pb2, "MyParameter")
    assert caffe.proto.caffe_pb2 is fork
    assert caffe.io.caffe_pb2 is fork
    assert protoio.schema() is fork
    caffe.proto.reset()
    from caffe.proto import caffe_pb2 as again
    assert again is caffe.proto.shipped()
    assert not hasattr(again, "MyParameter")


def test_netspec_str_net_draw_dump_with_fork_field(fork, tmp_path):
    proto = _spec()
    assert type(proto).DESCRIPTOR.file.pool is fork.DESCRIPTOR.pool
    text = str(proto)
    assert "my_param {" in text and "gain: 3.5" in text and 'tag: "fork"' in text
    prototxt = str(tmp_path / "net.prototxt")
    protoio.write_text(prototxt, proto)
    net = caffe.Net(prototxt, caffe.TEST)
    assert net.blobs["ip"].data.shape == (2, 4)
    # the field survives into the saved weights, and dump reads them
    model = str(tmp_path / "net.caffemodel")
    net.save(model)
    back = protoio.read_net_param(model, binary=True)
    assert back.layer[1].my_param.gain == pytest.approx(3.5)
    dump.dump(model, str(tmp_path / "w.npz"))
    arrays = dump.load(str(tmp_path / "w.npz"))
    np.testing.assert_array_equal(arrays["ip/0"], net.params["ip"][0].data)
    # draw reads the fork message too (DOT source needs pydot only)
    pydot = pytest.importorskip("pydot")
    from caffe import draw
    graph = draw.get_pydot_graph(back, "LR")
    assert isinstance(graph, (pydot.Dot,)) or hasattr(graph, "to_string")
    assert "ip" in graph.to_string()


def test_solver_and_io_build_fork_messages(fork, tmp_path):
    proto = _spec()
    net_file = tmp_path / "net.prototxt"
    protoio.write_text(str(net_file), proto)
    solver_file = tmp_path / "solver.prototxt"
    solver_file.write_text('net: "%s"\nbase_lr: 0.1\nsnapshot_prefix: "%s"\n'
                           % (net_file, tmp_path / "snap"))
    param = protoio.read_solver_param(str(solver_file))
    assert type(param).DESCRIPTOR.file.pool is fork.DESCRIPTOR.pool
    blob = caffe.io.array_to_blobproto(np.zeros((1, 1, 2, 2), np.float32))
    assert type(blob).DESCRIPTOR.file.pool is fork.DESCRIPTOR.pool
    datum = caffe.io.array_to_datum(np.zeros((1, 2, 2), np.uint8))
    assert type(datum).DESCRIPTOR.file.pool is fork.DESCRIPTOR.pool


def test_caffe_proto_env_var_applies_at_import(fork_path):
    path = fork_path
    code = ("from caffe.proto import caffe_pb2\n"
            "from caffe import net_spec\n"
            "assert hasattr(caffe_pb2, 'MyParameter'), caffe_pb2\n"
            "n = net_spec.NetSpec()\n"
            "n.x = net_spec.layers.Input(shape=dict(dim=[1]), my_param=dict(gain=1.5))\n"
            "print(n.to_proto().layer[0].my_param.gain)\n")
    env = dict(os.environ, CAFFE_PROTO=path)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1.5"
