"""Every code block of README.md and MIGRATION.md runs as written.

``python`` blocks run in this process from the repository root (caffe.modules
entries they add are removed afterwards); ``sh`` blocks run their ``python ...``
commands (pip and pytest lines are the set-up itself and are not rerun).  A block
that needs files a fresh clone does not have opts out with a line
``<!-- readme-test: skip (why) -->`` right above it; the reason is required and
shows in the test report.
"""
import os
import re
import shlex
import subprocess
import sys

import pytest

import caffe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", "MIGRATION.md")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*(?:\((.*?)\))?\s*-->")


def _blocks():
    out = []
    for doc in DOCS:
        path = os.path.join(ROOT, doc)
        if not os.path.exists(path):
            continue
        text = open(path, encoding="utf-8").read()
        for m in _FENCE.finditer(text):
            lang, code = m.group(1), m.group(2)
            if lang not in ("python", "sh", "bash"):
                continue
            line = text.count("\n", 0, m.start()) + 1
            before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            skip = _SKIP.search(before)
            reason = None
            if skip:
                reason = (skip.group(1) or "").strip()
                assert reason, "%s:%d: readme-test skip marker without a reason" % (doc, line)
            out.append(pytest.param(lang, code, reason, id="%s:%d" % (doc, line)))
    return out


BLOCKS = _blocks()


def test_readme_has_blocks():
    assert any(p.values[0] == "python" for p in BLOCKS)


def _python_commands(code):
    """The ``python ...`` commands of a shell block (``&&`` chains split)."""
    cmds = []
    for line in code.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            argv = shlex.split(part.strip())
            if argv and argv[0] in ("python", "python3") and "pytest" not in argv:
                cmds.append(argv)
    return cmds


@pytest.mark.parametrize("lang,code,skip_reason", BLOCKS)
def test_block_runs(lang, code, skip_reason, monkeypatch):
    if skip_reason is not None:
        pytest.skip("marked in the document: " + skip_reason)
    monkeypatch.chdir(ROOT)
    if lang == "python":
        before = set(caffe.modules._user)
        try:
            exec(compile(code, "<readme block>", "exec"), {"__name__": "__readme__"})
        finally:
            for key in set(caffe.modules._user) - before:
                del caffe.modules[key]
            caffe.set_mode_cpu()
        return
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               GLOG_minloglevel="1")
    for argv in _python_commands(code):
        r = subprocess.run([sys.executable] + argv[1:], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, "%s failed:\n%s\n%s" % (" ".join(argv), r.stdout[-2000:],
                                                          r.stderr[-2000:])
        if argv[1:] == ["examples/lenet_deploy/run.py"]:
            # the first command: the shipped trained LeNet gets all ten digits right
            assert "10/10 sample digits classified correctly" in r.stdout, r.stdout
