"""Cluster suite: k-means, GMM and agglomerative clustering of unit vectors, per backend and size.

A parameter grid over ``(algorithm, backend, n_samples)`` with small helpers: :func:`make_data`
draws ``n`` unit vectors of dimension 384 around ``k`` random centres, and :func:`run_case` runs
one cell through :mod:`tastemap.runtime.interests.clustering` (scikit-learn, faiss, cuML), returning
``(labels, stats)`` with wall seconds and peak memory above the data. Every backend runs one
initialisation and the same number of iterations. cuML runs only where it is
installed and a GPU is visible; elsewhere the suite notes it as not available. GMM and Ward have
no cuML or faiss implementation, so they run on scikit-learn only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from tastemap.bench.measure import PeakMemory
from tastemap.bench.schema import figure
from tastemap.runtime.interests.clustering import CLUSTERING_BACKENDS

logger = logging.getLogger(__name__)

ALGORITHMS = ("kmeans", "gmm", "agglomerative")
BACKENDS_FOR = {algorithm: tuple(spec.name for spec in CLUSTERING_BACKENDS if algorithm in spec.native)
                for algorithm in ALGORITHMS}
"""The backends that run each algorithm themselves (the others would only time scikit-learn again)."""
REFERENCE = CLUSTERING_BACKENDS[0].name
"""The backend every speed-up is measured against (scikit-learn)."""


@dataclass(frozen=True)
class ClusterSuiteConfig:
    """The grid: ``sizes[algorithm]`` lists the sample counts; ``k`` clusters, ``dim`` dimensions."""

    sizes: dict
    k: int = 64
    dim: int = 384
    n_iter: int = 25
    max_cpu_samples: int = 100_000
    seed: int = 0

    @classmethod
    def full(cls) -> "ClusterSuiteConfig":
        """k-means on 10k, 100k and 1M vectors, GMM on 10k and 100k, Ward on 10k (its memory is O(n²));
        scikit-learn k-means stops at ``max_cpu_samples`` (100k) to keep the run within minutes."""
        return cls(sizes={"kmeans": (10_000, 100_000, 1_000_000), "gmm": (10_000, 100_000),
                          "agglomerative": (10_000,)})

    @classmethod
    def quick(cls) -> "ClusterSuiteConfig":
        return cls(sizes={"kmeans": (2_000,), "gmm": (2_000,), "agglomerative": (2_000,)}, k=16, n_iter=10)


def make_data(n: int, dim: int, k: int, seed: int = 0) -> np.ndarray:
    """``[n, dim]`` float32 unit vectors: ``k`` random unit centres plus Gaussian noise, normalised."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, k, n)]
    x += rng.standard_normal((n, dim), dtype=np.float32) * np.float32(0.6 / np.sqrt(dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_backend(name: str):
    """The clustering backend ``name`` (an entry of the runtime's ``CLUSTERING_BACKENDS``)."""
    from tastemap.runtime.interests.clustering import resolve_backend

    return resolve_backend(name)


def run_case(backend, algorithm: str, x: np.ndarray, k: int, *, n_iter: int, seed: int) -> tuple[np.ndarray, dict]:
    """One grid cell: ``(labels [n], stats)`` where stats has ``seconds`` and ``peak_mib``."""
    with PeakMemory() as memory:
        if algorithm == "kmeans":
            (labels, _), stats = backend.kmeans(x, k, seed=seed, n_iter=n_iter, n_init=1)
        elif algorithm == "gmm":
            (labels, _), stats = backend.gmm(x, k, seed=seed, n_iter=n_iter)
        else:
            (labels, _), stats = backend.agglomerative(x, k, seed=seed)
    stats = {key: value for key, value in stats.items() if key != "model"}
    return labels, {**stats, "peak_mib": memory.peak_mib}


def run_cluster_suite(config: ClusterSuiteConfig, *, threads: int) -> tuple[dict, dict, list[str]]:
    """Every grid cell; returns ``(figures, context, notes)``."""
    from tastemap.errors import TastemapError

    _limit_faiss_threads(threads)
    figures: dict = {}
    context: dict = {"k": config.k, "dim": config.dim, "n_iter": config.n_iter, "n_init": 1, "cases": []}
    notes: list[str] = []
    reasons = {spec.name: spec.unavailable() for spec in CLUSTERING_BACKENDS}
    available = {name: reason is None for name, reason in reasons.items()}
    notes += [f"cluster: {name} not available ({reason})" for name, reason in reasons.items() if reason is not None]
    sizes = sorted({n for algorithm in ALGORITHMS for n in config.sizes.get(algorithm, ())})
    for n in sizes:
        x = make_data(n, config.dim, config.k, config.seed)
        for algorithm in ALGORITHMS:
            if n not in config.sizes.get(algorithm, ()):
                continue
            seconds = {}
            for name in BACKENDS_FOR[algorithm]:
                if not available[name]:
                    continue
                if name == REFERENCE and algorithm == "kmeans" and n > config.max_cpu_samples:
                    notes.append(f"cluster: {REFERENCE} kmeans skipped at n={n} (above max_cpu_samples="
                                 f"{config.max_cpu_samples})")
                    continue
                try:
                    backend = make_backend(name)
                except TastemapError as exc:
                    available[name] = False
                    notes.append(f"cluster: {name} not available ({exc})")
                    continue
                logger.info("cluster: %s on %s, n=%d", algorithm, name, n)
                _, stats = run_case(backend, algorithm, x, config.k, n_iter=config.n_iter, seed=config.seed)
                seconds[name] = stats["seconds"]
                prefix = f"cluster/{algorithm}/{name}/n{n}"
                figures[f"{prefix}/seconds"] = figure(stats["seconds"], "s", better="lower")
                figures[f"{prefix}/peak_mib"] = figure(stats["peak_mib"], "MiB", better="lower")
                context["cases"].append({"algorithm": algorithm, "backend": name, "n": n,
                                         **{key: value for key, value in stats.items() if key != "seconds"}})
            if REFERENCE in seconds and len(seconds) > 1:
                for name, value in seconds.items():
                    if name != REFERENCE:
                        figures[f"cluster/{algorithm}/n{n}/speedup/{name}_vs_{REFERENCE}"] = figure(
                            seconds[REFERENCE] / value, "x")
        del x
    return figures, context, notes


def _limit_faiss_threads(threads: int) -> None:
    import faiss

    faiss.omp_set_num_threads(threads)
