"""Caffe's logging: glog-format lines from one shared handler, and the GLOG_*
environment variables Caffe users set (minloglevel, v, logtostderr, log_dir),
checked in fresh interpreters because they are read at ``import caffe``."""
import io
import logging
import os
import re
import subprocess
import sys

import pytest

import caffe
from caffe import _common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] (.*)$")

# A net with the deprecated input fields (the upgrade warns, as Caffe does), a
# VLOG(1) line, an error line; stdout marks the end.
NET = ('name: "tiny" input: "data" input_shape { dim: 1 dim: 3 } '
       'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
       'inner_product_param { num_output: 2 } }')
SCRIPT = r'''
import caffe
from caffe import _common
import tempfile, os
d = tempfile.mkdtemp()
p = os.path.join(d, "n.prototxt")
open(p, "w").write(%r)
net = caffe.Net(p, caffe.TEST)
_common.vlog(1, "verbose detail %%d", 1)
_common.logger.error("an error line")
print("DONE")
''' % NET


def _run(env_extra, script=SCRIPT, args=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLOG_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra)
    cmd = [sys.executable] + (args if args is not None else ["-c", script])
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    return r


def _lines(stderr):
    out = []
    for raw in stderr.splitlines():
        m = GLOG_LINE.match(raw)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def test_default_logs_info_to_stderr_in_glog_format():
    r = _run({})
    assert r.returncode == 0 and "DONE" in r.stdout, r.stderr[-2000:]
    lines = _lines(r.stderr)
    msgs = [m for _, m in lines]
    assert ("I", "Network initialization done.") in lines
    assert ("I", "Top shape: 1 2 (2)") in lines
    assert "Setting up ip" in msgs and "ip <- data" in msgs
    assert any(s == "W" and "only support input layers" in m for s, m in lines)
    assert ("E", "an error line") in lines
    assert "verbose detail 1" not in r.stderr


@pytest.fixture
def glog(monkeypatch, capsys, tmp_path):
    """Reconfigure caffe's logging from GLOG_* values in this process, run the
    SCRIPT's steps, and return the glog lines written to stderr."""
    for k in list(os.environ):
        if k.startswith("GLOG_"):
            monkeypatch.delenv(k)
    net_file = tmp_path / "n.prototxt"
    net_file.write_text(NET)

    def run(**env):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        capsys.readouterr()
        _common.configure_logging()
        caffe.Net(str(net_file), caffe.TEST)
        _common.vlog(1, "verbose detail %d", 1)
        _common.logger.error("an error line")
        err = capsys.readouterr().err
        for k in env:
            monkeypatch.delenv(k)
        return err
    yield run
    for k in list(os.environ):
        if k.startswith("GLOG_"):
            monkeypatch.delenv(k)
    _common.configure_logging()


def test_minloglevel_1_and_2(glog):
    err = glog(GLOG_minloglevel="1")
    assert {s for s, _ in _lines(err)} == {"W", "E"}, err
    err = glog(GLOG_minloglevel="2")
    # deprecation noise included: only the error line remains
    assert [m for _, m in _lines(err)] == ["an error line"]
    assert err.strip().count("\n") == 0


def test_glog_v_shows_vlog_lines(glog):
    assert ("I", "verbose detail 1") in _lines(glog(GLOG_v="1"))
    assert "verbose detail" not in glog(GLOG_v="1", GLOG_minloglevel="1")


def test_logtostderr_0_writes_a_log_file(glog, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    err = glog(GLOG_logtostderr="0", GLOG_log_dir=str(logs))
    # stderr: ERROR and above only (glog's stderrthreshold)
    assert [s for s, _ in _lines(err)] == ["E"], err
    path = _common.log_file()
    assert os.path.dirname(path) == str(logs) and ".log.INFO." in os.path.basename(path)
    logging.getLogger("caffe").handlers[-1].flush()
    text = open(path).read()
    assert "] Network initialization done." in text and "] an error line" in text
    # GLOG_alsologtostderr=1: the file and everything on stderr
    err = glog(GLOG_logtostderr="0", GLOG_log_dir=str(logs), GLOG_alsologtostderr="1")
    assert ("I", "Network initialization done.") in _lines(err)
    # GLOG_logtostderr=1: everything on stderr, no file
    err = glog(GLOG_logtostderr="1")
    assert ("I", "Network initialization done.") in _lines(err)
    assert _common.log_file() is None


def test_bad_minloglevel_falls_back_to_info(glog):
    err = glog(GLOG_minloglevel="abc")
    assert "ignoring GLOG_minloglevel='abc'" in err
    assert ("I", "Network initialization done.") in _lines(err)


def test_cli_respects_minloglevel():
    """``GLOG_minloglevel=2 caffe ...`` prints only errors (here device_query's
    missing -gpu, as Caffe's CHECK reports it)."""
    r = _run({"GLOG_minloglevel": "2"}, args=["-m", "caffe", "device_query"])
    assert r.returncode == 1
    lines = _lines(r.stderr)
    assert lines and all(s == "E" for s, _ in lines), r.stderr
    assert "Need a device ID to query." in lines[0][1]
    assert "Querying GPUs" not in r.stderr


def test_formatter_and_init_log(capsys):
    rec = logging.LogRecord("caffe", logging.WARNING, "/x/solver.py", 42, "lr %s", (0.1,),
                            None)
    text = _common._GlogFormatter().format(rec)
    m = GLOG_LINE.match(text)
    assert m and m.group(1) == "W" and m.group(2) == "lr 0.1" and " solver.py:42] " in text
    old = _common.logger.level
    try:
        caffe.init_log(2)
        caffe.log("hidden info")
        _common.logger.error("shown error")
        err = capsys.readouterr().err
        assert "hidden info" not in err and "shown error" in err
        caffe.init_log(0)
        caffe.log("shown info")
        assert re.search(r"^I.*\] shown info$", capsys.readouterr().err, re.M)
    finally:
        _common.configure_logging()
        _common.logger.setLevel(old)


def test_log_lines_go_through_an_open_progress_bar():
    from caffe import _progress

    class Tty(io.StringIO):
        def isatty(self):
            return True
    stream = Tty()
    bar = _progress.progress(total=10, desc="work", file=stream)
    assert not bar.disable
    seen = []
    old = _common._log_state["line_writer"]
    assert old is not None
    _common._log_state["line_writer"] = seen.append     # what tqdm.write would get
    try:
        _common.logger.warning("in the middle")
    finally:
        _common._log_state["line_writer"] = old
    bar.update(3)
    bar.close()
    assert _common._log_state["line_writer"] is None
    assert len(seen) == 1 and seen[0].endswith("] in the middle")
    assert "work" in stream.getvalue()
    # not a terminal: no bar at all
    piped = io.StringIO()
    quiet = _progress.progress(total=10, desc="work", file=piped)
    quiet.update(10)
    quiet.close()
    assert quiet.disable and piped.getvalue() == ""
