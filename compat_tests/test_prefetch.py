"""caffe.prefetch: threads stop and join deterministically; the process never
aborts at interpreter exit with a live prefetching net (#14 item 6)."""
import os
import subprocess
import sys
import threading
import time

import pytest

from caffe import prefetch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "compat_tests", "scripts", "exit_with_live_prefetch.py")


class _SlowLoader:
    def __init__(self):
        self.closed = threading.Event()

    def load_batch(self):
        time.sleep(0.02)
        return object()

    def close(self):
        self.closed.set()


def test_stop_all_joins_every_live_thread():
    loaders = [_SlowLoader() for _ in range(3)]
    pfs = [prefetch.Prefetcher(l, depth=2, name="t%d" % i) for i, l in enumerate(loaders)]
    assert all(p.alive for p in pfs)
    prefetch.stop_all(timeout=5)
    assert not any(p.alive for p in pfs)
    assert all(l.closed.is_set() for l in loaders)


def test_thread_is_stopped_even_after_its_prefetcher_is_collected():
    loader = _SlowLoader()
    pf = prefetch.Prefetcher(loader, depth=1, name="orphan")
    thread = pf._thread
    del pf
    assert thread.is_alive()
    prefetch.stop_all(timeout=5)
    assert not thread.is_alive() and loader.closed.is_set()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the 50 runs share one import via fork")
def test_exits_with_live_imagedata_and_encoded_lmdb_nets(tmp_path):
    """50 runs, as the reliability issue asks (each exit tears down torch:
    ~1.5 CPU-s, 4 at a time); CAFFE_EXIT_RUNS overrides."""
    pytest.importorskip("cv2")
    pytest.importorskip("lmdb")
    runs = int(os.environ.get("CAFFE_EXIT_RUNS", "50"))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, SCRIPT, str(tmp_path), str(runs), "4"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count(" rc 0") == runs, r.stdout
