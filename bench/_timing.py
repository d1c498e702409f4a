"""Timing shared by the bench scripts: per-call wall times after warm-up
calls, reduced to the best or the median (the scripts print ratios of these
against a baseline timed the same way in the same run)."""
import time

__all__ = ["best_of", "median_of"]


def _times(fn, repeat, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)


def best_of(fn, repeat, warmup=0):
    """Fastest of ``repeat`` calls after ``warmup`` untimed ones (seconds)."""
    return _times(fn, repeat, warmup)[0]


def median_of(fn, repeat, warmup=2):
    """Median of ``repeat`` calls after ``warmup`` untimed ones (seconds)."""
    times = _times(fn, repeat, warmup)
    return times[len(times) // 2]
