"""Background prefetching for data layers (Caffe's BasePrefetchingDataLayer).

A :class:`Prefetcher` runs ``loader.load_batch()`` in a daemon thread and keeps
up to ``depth`` finished batches in a bounded queue, so reading and decoding
overlap the net's compute.  ``get()`` hands the next batch to the caller, in
order.  If loading fails, the exception is passed through the queue and
re-raised by ``get()`` in the caller (it already names the layer, source and
key); a thread that died without a batch is reported too, so ``get()`` never
hangs.  The thread holds the loader, never the layer: the owner registers
:meth:`Prefetcher.stop` with ``weakref.finalize`` so the thread ends when the
layer (and its net) is garbage-collected.

Interpreter exit.  A daemon thread still decoding (OpenCV, torch) while the
interpreter finalizes can abort the process ("terminate called without an
active exception").  Every live prefetcher is therefore stopped and joined by
an ``atexit`` hook, which runs before finalization: at exit no prefetch thread
is inside library code.
"""
import atexit
import queue
import threading
import weakref

_POLL = 0.05
_EXIT_JOIN_TIMEOUT = 30.0        # per thread; one batch load must finish by then

_live = weakref.WeakSet()        # running prefetch threads (threading keeps them alive)


class PrefetchError(RuntimeError):
    """A batch could not be loaded in the background."""


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc):
        self.exc = exc


def _worker(loader, q, stop):
    try:
        while not stop.is_set():
            try:
                item = loader.load_batch()
            except BaseException as exc:   # handed to the caller, never lost
                item = _Failure(exc)
            while not stop.is_set():
                try:
                    q.put(item, timeout=_POLL)
                    break
                except queue.Full:
                    continue
            if isinstance(item, _Failure):
                return
    finally:
        close = getattr(loader, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                pass


class _PrefetchThread(threading.Thread):
    """The worker thread, carrying what :func:`stop_all` needs to stop it."""

    def __init__(self, loader, q, stop, name):
        super().__init__(target=_worker, args=(loader, q, stop), name="caffe-%s" % name,
                         daemon=True)
        self.stop_event = stop
        self.batches = q


class Prefetcher:
    """``Prefetcher(loader, depth=4, name='')``; ``loader.load_batch()`` returns a batch."""

    def __init__(self, loader, depth=4, name="prefetch"):
        self.depth = max(1, int(depth))
        self.name = name
        self._queue = queue.Queue(maxsize=self.depth)
        self._stop = threading.Event()
        self._failed = None
        self._thread = _PrefetchThread(loader, self._queue, self._stop, name)
        self._thread.start()
        _live.add(self._thread)

    def attach(self, owner):
        """Stop the thread when ``owner`` is garbage-collected."""
        weakref.finalize(owner, Prefetcher._stop_thread, self._stop, self._queue)
        return self

    @staticmethod
    def _stop_thread(stop, q):
        stop.set()
        try:
            while True:
                q.get_nowait()
        except queue.Empty:
            pass

    def get(self):
        """The next batch; re-raises a loading failure in the caller."""
        if self._failed is not None:
            raise self._failed
        while True:
            try:
                item = self._queue.get(timeout=_POLL)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    if self._stop.is_set():
                        raise PrefetchError("%s: the prefetch thread was stopped" % self.name) from None
                    raise PrefetchError("%s: the prefetch thread ended without a batch"
                                        % self.name) from None
        if isinstance(item, _Failure):
            self._failed = item.exc
            raise item.exc
        return item

    def stop(self, join=True):
        Prefetcher._stop_thread(self._stop, self._queue)
        if join and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def alive(self):
        return self._thread.is_alive()


def stop_all(timeout=_EXIT_JOIN_TIMEOUT):
    """Stop every live prefetch thread and wait for it to leave its batch."""
    threads = list(_live)
    for t in threads:
        Prefetcher._stop_thread(t.stop_event, t.batches)
    for t in threads:
        if t is not threading.current_thread():
            t.join(timeout)


atexit.register(stop_all)
