"""python -m caffe.dump: every format round-trips the golden caffemodels into a
Net that reproduces Caffe's golden forward; V1 models, naming scheme, errors,
and (with CAFFE_SLOW_TESTS=1) bounded peak memory on a ~200 MB caffemodel."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from golden_cases import GOLDEN, NET_TOL, chdir

import caffe
from caffe import dump
from caffe.proto import caffe_pb2

NETS = sorted(f[:-len(".caffemodel")] for f in os.listdir(os.path.join(GOLDEN, "nets"))
              if f.endswith(".caffemodel"))
FORMATS = [".pt", ".h5", ".npz", ".npy", ".json"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_dump(args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "caffe.dump"] + args, capture_output=True,
                          text=True, env=env, **kw)


def _golden_forward_check(net, ref, what):
    for key in ref.files:
        if key.startswith("in/"):
            net.blobs[key[3:]].data[...] = ref[key]
    net.forward()
    checked = 0
    for key in ref.files:
        if key.startswith("out/"):
            np.testing.assert_allclose(net.blobs[key[4:]].data.reshape(ref[key].shape),
                                       ref[key], err_msg="%s: %s" % (what, key), **NET_TOL)
            checked += 1
    assert checked


def _fresh_net(name):
    d = os.path.join(GOLDEN, "nets")
    meta = json.load(open(os.path.join(d, name + ".json")))
    phase = caffe.TRAIN if meta["phase"] == "TRAIN" else caffe.TEST
    with chdir(d):
        net = caffe.Net(meta.get("source", name + ".prototxt"), phase,
                        stages=meta.get("stages") or None)
    for blob, shape in meta["input_shapes_after_reshape"].items():
        net.blobs[blob].reshape(*shape)
    net.reshape()
    return net


def _file_blobs(path):
    """Reference: every blob of a caffemodel through the protobuf parser."""
    p = caffe_pb2.NetParameter()
    with open(path, "rb") as f:
        p.ParseFromString(f.read())
    out = {}
    for layer in list(p.layer) + list(p.layers):
        for i, b in enumerate(layer.blobs):
            out["%s/%d" % (layer.name, i)] = caffe.io.blobproto_to_array(b).astype(np.float32)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", NETS)
def test_dump_golden_roundtrip(tmp_path, name, fmt):
    model = os.path.join(GOLDEN, "nets", name + ".caffemodel")
    out = str(tmp_path / ("w" + fmt))
    written = dump.dump(model, out)
    arrays = dump.load(out)
    expected = _file_blobs(model)
    assert set(arrays) == set(expected) == set(written)
    for key, arr in expected.items():
        assert arrays[key].dtype == np.float32
        assert arrays[key].shape == arr.shape == tuple(written[key]), key
        np.testing.assert_array_equal(arrays[key], arr)
    net = _fresh_net(name)
    used = dump.copy_to_net(net, out)
    assert used
    _golden_forward_check(net, np.load(os.path.join(GOLDEN, "nets", name + ".npz")), name + fmt)


def test_dump_batchnorm_keeps_all_three_blobs(tmp_path):
    arrays = dump.load(dump.dump(os.path.join(GOLDEN, "nets", "mini_resnet.caffemodel"),
                                 str(tmp_path / "w.npz")) and str(tmp_path / "w.npz"))
    for i in range(3):
        assert "bn1/%d" % i in arrays
    assert arrays["bn1/2"].shape == (1,)


@pytest.mark.parametrize("fmt", FORMATS)
def test_dump_v1_caffemodel(tmp_path, fmt):
    d = os.path.join(GOLDEN, "legacy")
    out = str(tmp_path / ("v1" + fmt))
    written = dump.dump(os.path.join(d, "lenet_v1.caffemodel"), out)
    # V1 blobs keep their legacy 4-D num/channels/height/width shapes
    assert written["ip1/0"] == (1, 1, 6, 100)
    assert written["ip1/1"] == (1, 1, 1, 6)
    with chdir(d):
        net = caffe.Net("lenet_v1.prototxt", caffe.TEST)
    dump.copy_to_net(net, out)
    ref = np.load(os.path.join(d, "legacy_v1.npz"))
    for key in ref.files:
        if key.startswith("param/"):
            _, lname, i = key.split("/")
            np.testing.assert_array_equal(net.params[lname][int(i)].data, ref[key])
    net.blobs["data"].reshape(*ref["in/data"].shape)
    net.reshape()
    _golden_forward_check(net, ref, "lenet_v1" + fmt)


def test_dump_named_scheme_with_prototxt(tmp_path):
    d = os.path.join(GOLDEN, "nets")
    out = str(tmp_path / "named.h5")
    written = dump.dump(os.path.join(d, "mini_resnet.caffemodel"), out,
                        prototxt=os.path.join(d, "mini_resnet.prototxt"))
    for key in ("conv1/weight", "bn1/mean", "bn1/variance", "bn1/scale_factor",
                "scale1/weight", "scale1/bias", "fc/weight", "fc/bias"):
        assert key in written, key
    assert written["fc/weight"] == (5, 8)
    net = _fresh_net("mini_resnet")
    dump.copy_to_net(net, out)
    _golden_forward_check(net, np.load(os.path.join(d, "mini_resnet.npz")), "named")


def test_dump_v1_names_from_caffemodel(tmp_path):
    written = dump.dump(os.path.join(GOLDEN, "legacy", "lenet_v1.caffemodel"),
                        str(tmp_path / "n.npz"), names=True)
    assert list(written) == ["conv1/weight", "conv1/bias", "ip1/weight", "ip1/bias",
                             "ip2/weight", "ip2/bias"]


def test_dump_reads_caffe_hdf5_weights(tmp_path):
    d = os.path.join(GOLDEN, "nets")
    out = str(tmp_path / "from_h5.npz")
    dump.dump(os.path.join(d, "mini_resnet.caffemodel.h5"), out)
    net = _fresh_net("mini_resnet")
    dump.copy_to_net(net, out)
    _golden_forward_check(net, np.load(os.path.join(d, "mini_resnet.npz")), "h5 input")


def test_cli_default_output_and_listing(tmp_path):
    src = os.path.join(GOLDEN, "nets", "lenet.caffemodel")
    model = str(tmp_path / "lenet.caffemodel")
    with open(src, "rb") as a, open(model, "wb") as b:
        b.write(a.read())
    r = _run_dump([model])
    assert r.returncode == 0, r.stderr
    assert os.path.exists(model + ".pt")
    assert "conv1/0" in r.stdout and "20x1x5x5" in r.stdout
    assert set(dump.load(model + ".pt")) == set(_file_blobs(model))


@pytest.mark.parametrize("bad", ["prototxt", "binaryproto", "garbage", "truncated", "missing"])
def test_not_a_caffemodel_error_names_file(tmp_path, bad, capsys):
    if bad == "prototxt":
        path = os.path.join(GOLDEN, "nets", "lenet.prototxt")
    elif bad == "binaryproto":
        path = os.path.join(GOLDEN, "data", "mean.binaryproto")
    elif bad == "missing":
        path = str(tmp_path / "nothere.caffemodel")
    else:
        path = str(tmp_path / (bad + ".caffemodel"))
        with open(path, "wb") as f:
            if bad == "garbage":
                f.write(b"\xff\xfe\x00\x13 this is not protobuf" * 10)
            else:
                f.write(open(os.path.join(GOLDEN, "nets", "lenet.caffemodel"), "rb").read()[:5000])
    with pytest.raises(dump.DumpError) as exc:
        dump.dump(path, str(tmp_path / "o.pt"))
    assert path in str(exc.value)
    assert not os.path.exists(str(tmp_path / "o.pt"))
    assert dump.main([path, "-o", str(tmp_path / "o.npz")]) != 0
    err = capsys.readouterr().err
    assert path in err and "Traceback" not in err


def test_unknown_output_format(tmp_path):
    with pytest.raises(dump.DumpError, match="unknown output format"):
        dump.dump(os.path.join(GOLDEN, "nets", "lenet.caffemodel"), str(tmp_path / "o.txt"))


def test_progress_bar_fallback(tmp_path, capsys):
    dump.dump(os.path.join(GOLDEN, "nets", "lenet.caffemodel"), str(tmp_path / "o.npz"),
              progress=True)
    err = capsys.readouterr().err
    assert "100%" in err or "lenet" in err


# ---------------------------------------------------------------------------
# Memory: a synthetic ~200 MB caffemodel
# ---------------------------------------------------------------------------
def _varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(num, payload):
    return _varint((num << 3) | 2) + _varint(len(payload)) + payload


def write_synthetic_caffemodel(path, n_layers=5, floats_per_layer=10_000_000):
    """A V2 caffemodel of InnerProduct layers, written without holding it in memory."""
    with open(path, "wb") as f:
        f.write(_field(1, b"synthetic"))
        rng = np.random.RandomState(0)
        for i in range(n_layers):
            data = rng.standard_normal(floats_per_layer).astype("<f4")
            shape = _field(7, _field(1, _varint(1000) + _varint(floats_per_layer // 1000)))
            data_field = (_varint((5 << 3) | 2) + _varint(data.nbytes))
            blob_len = len(data_field) + data.nbytes + len(shape)
            layer_head = _field(1, b"ip%d" % i) + _field(2, b"InnerProduct")
            blob_head = _varint((7 << 3) | 2) + _varint(blob_len)
            layer_len = len(layer_head) + len(blob_head) + blob_len
            f.write(_varint((100 << 3) | 2) + _varint(layer_len) + layer_head + blob_head)
            f.write(data_field)
            f.write(data.tobytes())
            f.write(shape)
            del data


def _peak_rss_mb(args):
    """(RSS after imports, peak RSS during the dump) in MB, in a fresh process;
    the kernel's high-water mark is reset after the imports (clear_refs 5)."""
    code = ("import sys; sys.argv = %r\n"
            "import caffe, caffe.dump, torch, h5py, zipfile, pickle, json\n"
            "def status(key):\n"
            "    for line in open('/proc/self/status'):\n"
            "        if line.startswith(key):\n"
            "            return int(line.split()[1]) / 1024.0\n"
            "open('/proc/self/clear_refs', 'w').write('5')\n"
            "base = status('VmRSS')\n"
            "rc = caffe.dump.main(sys.argv[1:])\n"
            "print('RSS', base, status('VmHWM'))\n" % (["dump"] + args,))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.splitlines() if l.startswith("RSS")][-1]
    _, base, peak = line.split()
    return float(base), float(peak)


@pytest.mark.skipif(not os.environ.get("CAFFE_SLOW_TESTS"),
                    reason="slow (~200 MB file); set CAFFE_SLOW_TESTS=1")
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize("fmt", [".h5", ".npz", ".pt", ".npy", ".json"])
def test_dump_memory_bounded(tmp_path, fmt):
    model = str(tmp_path / "big.caffemodel")
    write_synthetic_caffemodel(model)
    size_mb = os.path.getsize(model) / 2.0 ** 20
    out = str(tmp_path / ("big" + fmt))
    base, peak = _peak_rss_mb([model, "-o", out, "-q"])
    extra = peak - base
    sys.stderr.write("%s: file %.0f MB, baseline %.0f MB, peak %.0f MB (+%.0f MB)\n"
                     % (fmt, size_mb, base, peak, extra))
    # streaming writers hold one blob; dict writers hold the weights once
    limit = 0.5 * size_mb if fmt in (".h5", ".npz", ".json") else 1.3 * size_mb
    assert extra < limit, (fmt, extra, size_mb)
    arrays = dump.load(out)
    assert arrays["ip4/0"].shape == (1000, 10000)


# ---------------------------------------------------------------------------
# Reliability (#14): same-file refusal, no pickle, impossible dims
# ---------------------------------------------------------------------------
LENET_W = os.path.join(GOLDEN, "nets", "lenet.caffemodel")


def test_same_file_in_and_out_is_refused(tmp_path, capsys):
    model = str(tmp_path / "m.pt")          # a caffemodel that happens to end in .pt
    with open(LENET_W, "rb") as a, open(model, "wb") as b:
        b.write(a.read())
    before = open(model, "rb").read()
    assert dump.main([model, "-o", model]) == 1
    assert "refusing" in capsys.readouterr().err
    link = str(tmp_path / "alias.pt")
    os.symlink(model, link)
    with pytest.raises(dump.DumpError, match="refusing"):
        dump.dump(model, link)
    assert open(model, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["alias.pt", "m.pt"]


def test_npy_dump_is_pickle_free(tmp_path):
    out = str(tmp_path / "w.npy")
    dump.dump(LENET_W, out)
    record = np.load(out, allow_pickle=False)          # would raise on a pickle
    ref = _file_blobs(LENET_W)
    assert set(record.dtype.names) == set(ref)
    for key, arr in dump.load(out).items():
        np.testing.assert_array_equal(arr, ref[key])


class _Evil:
    def __reduce__(self):
        return (open, (os.environ["CAFFE_TEST_PWNED"], "w"))


def test_pickled_npy_never_runs_code_unless_trusted(tmp_path, monkeypatch):
    marker = str(tmp_path / "pwned")
    monkeypatch.setenv("CAFFE_TEST_PWNED", marker)
    path = str(tmp_path / "evil.npy")
    holder = np.empty((), dtype=object)
    holder[()] = {"conv1/0": _Evil()}
    np.save(path, holder, allow_pickle=True)
    with pytest.raises(dump.DumpError, match="trust=True"):
        dump.load(path)
    net = caffe.Net(os.path.join(GOLDEN, "nets", "lenet.prototxt"), caffe.TEST)
    with pytest.raises(dump.DumpError):
        dump.copy_to_net(net, path)
    assert not os.path.exists(marker)
    # an old pickled dump of plain arrays loads with an explicit trust=True
    old = str(tmp_path / "old.npy")
    holder[()] = {"ip2/1": np.arange(10, dtype=np.float32)}
    np.save(old, holder, allow_pickle=True)
    with pytest.warns(UserWarning, match="unpickling"):
        assert dump.load(old, trust=True)["ip2/1"][3] == 3


@pytest.mark.parametrize("ext", [".pt", ".npy", ".npz", ".h5", ".json"])
def test_damaged_dump_files_raise_dump_error(tmp_path, ext):
    good = str(tmp_path / ("good" + ext))
    if ext == ".h5":
        pytest.importorskip("h5py")
    dump.dump(LENET_W, good)
    data = open(good, "rb").read()
    bad = str(tmp_path / ("bad" + ext))
    with open(bad, "wb") as f:
        f.write(data[:len(data) // 3])
    with pytest.raises(dump.DumpError) as exc:
        dump.load(bad)
    assert bad in str(exc.value)


def test_copy_to_net_is_all_or_nothing(tmp_path):
    net = caffe.Net(os.path.join(GOLDEN, "nets", "lenet.prototxt"), caffe.TEST)
    before = {k: [b.data.copy() for b in v] for k, v in net.params.items()}
    arrays = dump.load(_dump_to(tmp_path, ".npz"))
    arrays["ip2/0"] = np.zeros((3, 3), np.float32)          # last key does not fit
    with pytest.raises(dump.DumpError, match="ip2"):
        dump.copy_to_net(net, arrays)
    for k, v in net.params.items():
        for b, old in zip(v, before[k]):
            np.testing.assert_array_equal(b.data, old)


def _dump_to(tmp_path, ext):
    out = str(tmp_path / ("w" + ext))
    dump.dump(LENET_W, out)
    return out


def _blob_bytes(dims):
    from caffe.protoio.wire import encode_varint
    shape = b"".join(b"\x08" + encode_varint(d & (2 ** 64 - 1)) for d in dims)
    return b"\x3a" + encode_varint(len(shape)) + shape


@pytest.mark.parametrize("dims", [[-3, 2], [2 ** 20, 2 ** 20]])
def test_blob_with_impossible_dims_is_named(tmp_path, dims):
    from caffe.protoio.wire import encode_varint
    name = b"\x0a\x03ip1"
    blob = _blob_bytes(dims)
    layer = name + b"\x3a" + encode_varint(len(blob)) + blob
    path = str(tmp_path / "bad.caffemodel")
    with open(path, "wb") as f:
        f.write(b"\xa2\x06" + encode_varint(len(layer)) + layer)
    with pytest.raises(dump.DumpError) as exc:
        dump.dump(path, str(tmp_path / "o.npz"))
    msg = str(exc.value)
    assert path in msg and ("impossible dims" in msg or "INT_MAX" in msg)
