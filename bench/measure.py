"""Measurement helpers shared by the suites: percentiles, peak memory, rank correlation, threads.

Every helper returns plain numbers (seconds, MiB, ratios); the suites turn them into figures with
units (:mod:`tastemap.bench.schema`).
"""

from __future__ import annotations

import os
import resource
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np

PERCENTILES = (50, 95, 99)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p95 and p99 of ``seconds`` (one entry per call) in milliseconds.

    Percentiles interpolate linearly between the sorted samples (numpy's default), so with
    ``n`` samples p99 lies between the two slowest calls.
    """
    values = np.asarray(seconds, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"need a non-empty 1-D list of durations, got shape {values.shape}")
    return {f"p{q}": float(np.percentile(values, q)) * 1e3 for q in PERCENTILES}


def time_calls(function: Callable[[object], object], inputs: Sequence, *, warmup: int = 1) -> list[float]:
    """Wall seconds of ``function(x)`` for each ``x`` of ``inputs``, back to back, after ``warmup``
    untimed calls on ``inputs[-1]``."""
    for _ in range(warmup):
        function(inputs[-1])
    durations = []
    for value in inputs:
        start = time.perf_counter()
        function(value)
        durations.append(time.perf_counter() - start)
    return durations


def rss_mib() -> float:
    """Resident memory of this process and of its worker processes in MiB: this process's
    resident set (``/proc/self/statm``) plus each descendant's proportional set size (``Pss`` in
    ``/proc/PID/smaps_rollup``: pages shared between workers, such as a memory-mapped array, count
    once in all)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except OSError:  # no procfs: fall back to the lifetime peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return pages * resource.getpagesize() / 2**20 + sum(_pss_mib(pid) for pid in _descendants(os.getpid()))


def cpu_seconds() -> float:
    """CPU seconds of this process (every thread) and of its worker processes, running or ended."""
    ended = os.times()
    ticks = os.sysconf("SC_CLK_TCK")
    running = 0.0
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            running += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        except (OSError, IndexError, ValueError):  # the process has ended
            continue
    return time.process_time() + ended.children_user + ended.children_system + running


def reset_peak() -> None:
    """Restart this process's exact resident peak (:func:`resident_peak_mib`) from its current
    size (Linux's ``clear_refs``; elsewhere nothing changes)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def resident_peak_mib() -> float:
    """This process's resident peak in MiB since it started or since :func:`reset_peak`, as the
    kernel counts it (``VmHWM``): exact, where a sampler may miss a short peak; without its workers."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


SAMPLER_DUTY = 0.05
"""The most of one core that a memory sampler may take: reading a forked worker's ``Pss`` walks
every page it maps, some 20 ms for a worker of a 15 GB process, which a fixed 20 ms interval turned
into a core's worth of the kernel's time, taken from the work it measures."""


def sample_memory(stop: threading.Event, interval: float) -> Iterator[float]:
    """:func:`rss_mib` until ``stop`` is set, every ``interval`` seconds or, when reading it takes
    longer than :data:`SAMPLER_DUTY` of the interval, that much less often."""
    wait = interval
    while not stop.wait(wait):
        start = time.perf_counter()
        yield rss_mib()
        wait = max(interval, (time.perf_counter() - start) / SAMPLER_DUTY)


def _descendants(pid: int) -> list[int]:
    """The child processes of ``pid``, theirs, and so on (none where procfs lists no children)."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                children = [int(child) for child in handle.read().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def _pss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # the process has ended
        pass
    return 0.0


class PeakMemory:
    """Peak resident memory above the level at entry: the largest of the samples taken every
    ``interval`` seconds (workers included, :func:`rss_mib`) and this process's exact peak
    (:func:`resident_peak_mib`, restarted at entry), which a sample may miss.

    >>> with PeakMemory() as memory:
    ...     work()
    >>> memory.peak_mib  # MiB above the resident size when the block started
    """

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.start_mib = 0.0
        self.peak_mib = 0.0
        self._top = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        reset_peak()
        self.start_mib = self._top = rss_mib()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._top = max(self._top, rss_mib(), resident_peak_mib())
        self.peak_mib = self._top - self.start_mib

    def _sample(self) -> None:
        for mib in sample_memory(self._stop, self.interval):
            self._top = max(self._top, mib)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays (average ranks for ties)."""
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denominator) if denominator else 1.0


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.arange(x.size, dtype=np.float64)
    values, inverse = np.unique(x, return_inverse=True)
    if values.size < x.size:  # average the ranks of tied values
        sums = np.bincount(inverse, weights=ranks)
        counts = np.bincount(inverse)
        ranks = (sums / counts)[inverse]
    return ranks


def quality_figures(reference: np.ndarray, candidate: np.ndarray, n_queries: int = 100) -> dict[str, float]:
    """How well ``candidate`` ``[n, dim]`` keeps the geometry of ``reference`` ``[n, dim]``.

    ``mean_cosine`` and ``min_cosine``: row-wise cosine between the two; ``spearman``: for each of
    the first ``n_queries`` rows, the Spearman correlation of its similarities to every other row
    (reference vs candidate), averaged. 1.0 everywhere means identical rankings.
    """
    ref, cand = _unit(reference), _unit(candidate)
    if ref.shape != cand.shape:
        raise ValueError(f"reference shape {ref.shape} != candidate shape {cand.shape}")
    cosines = (ref * cand).sum(axis=1)
    n = ref.shape[0]
    queries = range(min(n_queries, n)) if n > 2 else range(0)
    correlations = []
    for i in queries:
        others = np.arange(n) != i
        correlations.append(spearman(ref[others] @ ref[i], cand[others] @ cand[i]))
    return {
        "mean_cosine": float(cosines.mean()),
        "min_cosine": float(cosines.min()),
        "spearman": float(np.mean(correlations)) if correlations else 1.0,
    }


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@contextmanager
def thread_limits(threads: int) -> Iterator[None]:
    """Cap BLAS/OpenMP pools (numpy, scikit-learn, faiss) and PyTorch at ``threads`` inside the block."""
    from threadpoolctl import threadpool_limits

    torch_threads = None
    try:
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    except ImportError:
        pass
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
