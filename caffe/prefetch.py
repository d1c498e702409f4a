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
"""
import queue
import threading
import weakref

_POLL = 0.05


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


class Prefetcher:
    """``Prefetcher(loader, depth=4, name='')``; ``loader.load_batch()`` returns a batch."""

    def __init__(self, loader, depth=4, name="prefetch"):
        self.depth = max(1, int(depth))
        self.name = name
        self._queue = queue.Queue(maxsize=self.depth)
        self._stop = threading.Event()
        self._failed = None
        self._thread = threading.Thread(target=_worker, args=(loader, self._queue, self._stop),
                                        name="caffe-%s" % name, daemon=True)
        self._thread.start()

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
                        raise PrefetchError("%s: the prefetch thread was stopped" % self.name)
                    raise PrefetchError("%s: the prefetch thread ended without a batch"
                                        % self.name)
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
