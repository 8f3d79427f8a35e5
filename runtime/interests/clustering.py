"""Clustering backends: one small seam (k-means, GMM, agglomerative), three implementations.

:class:`SklearnBackend` implements every operation with scikit-learn; :class:`FaissBackend`
overrides only :meth:`~SklearnBackend.kmeans` with faiss; :class:`CumlBackend` overrides only
:meth:`~SklearnBackend.kmeans` with RAPIDS cuML on the GPU (cuML has no GMM and no Ward linkage,
so those stay on scikit-learn, and their stats say so). Each operation returns
``(labels, centers), stats`` where ``stats["backend"]`` names the library that actually ran.

:data:`CLUSTERING_BACKENDS` lists the backends, one :class:`BackendSpec` each (its option name,
its library's name in reports, the operations it runs itself, what it needs); the ``--backend``
options, the estimators' checks and the cluster bench read it. Adding a backend is one subclass
overriding the operations it runs, one entry there, and one test of its operations.

:func:`resolve_backend` turns ``"auto"`` or a backend's name into a backend: ``auto`` picks the
last entry that can run here (cuML when it is importable and a GPU is present, else faiss, else
scikit-learn) and logs the choice. Results are deterministic for a given seed on a given backend.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tastemap.errors import DeviceError, InputError, require

logger = logging.getLogger(__name__)


def cuml_importable() -> bool:
    """Whether RAPIDS cuML is installed (checked without importing it)."""
    return importlib.util.find_spec("cuml") is not None


def gpu_count() -> int:
    """Number of CUDA devices visible through CuPy (0 when CuPy or a driver is missing)."""
    if importlib.util.find_spec("cupy") is None:
        return 0
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001 - any CUDA runtime failure means no usable GPU
        return 0


def resolve_backend(name: str = "auto") -> "SklearnBackend":
    """The backend for ``name``; ``auto`` prefers cuML (with a GPU), then faiss, then scikit-learn.

    ``cuml`` without cuML installed raises MissingDependencyError; ``cuml`` without a GPU raises
    DeviceError; ``faiss`` without faiss raises MissingDependencyError.
    """
    if name not in BACKENDS:
        raise InputError(f"backend={name!r} is not supported; use one of {list(BACKENDS)}")
    if name == "auto":
        name = next(spec.name for spec in reversed(CLUSTERING_BACKENDS) if spec.unavailable() is None)
        logger.info("clustering backend auto -> %s", name)
    spec = backend_spec(name)
    if spec.extra is not None:
        require(spec.module, spec.extra)
    if spec.needs_gpu and gpu_count() == 0:
        others = ["'auto'", *(f"'{other.name}'" for other in CLUSTERING_BACKENDS if not other.needs_gpu)]
        raise DeviceError(f"backend={name!r} needs an NVIDIA GPU but none is visible; use backend="
                          f"{', '.join(others[:-1])} or {others[-1]}")
    return spec.implementation()


def backend_spec(name: str) -> "BackendSpec":
    """The entry of :data:`CLUSTERING_BACKENDS` called ``name``."""
    for spec in CLUSTERING_BACKENDS:
        if spec.name == name:
            return spec
    raise InputError(f"backend={name!r} is not supported; use one of {[s.name for s in CLUSTERING_BACKENDS]}")


class SklearnBackend:
    """Every operation on scikit-learn (CPU). Subclasses override single methods."""

    name = "sklearn"

    def kmeans(self, x: np.ndarray, k: int, *, seed: int = 0, n_iter: int = 25, n_init: int = 3,
               spherical: bool = False) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
        """k-means of ``x`` ``[n, d]`` into ``k`` clusters, best of ``n_init`` runs.

        Returns ``(labels [n] int64, centroids [k, d] float32), stats``. With ``spherical`` the
        centroids are L2-normalised (for unit-norm ``x``: cosine k-means).
        """
        from sklearn.cluster import KMeans

        x = _check_x(x, k)
        start = time.perf_counter()
        model = KMeans(n_clusters=k, n_init=n_init, max_iter=n_iter, random_state=seed).fit(x)
        centroids = model.cluster_centers_.astype(np.float32)
        labels = model.labels_.astype(np.int64)
        if spherical:
            centroids, labels = _spherical(x, centroids)
        return (labels, centroids), self._stats("kmeans", start, self.name, inertia=float(model.inertia_))

    def gmm(self, x: np.ndarray, k: int, *, seed: int = 0, covariance_type: str = "diag",
            n_iter: int = 100) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
        """Gaussian mixture of ``x`` ``[n, d]`` with ``k`` components.

        Returns ``(labels [n], means [k, d]), stats`` with ``bic`` and the fitted ``model`` (for
        ``predict``) in stats.
        """
        from sklearn.mixture import GaussianMixture

        x = _check_x(x, k)
        start = time.perf_counter()
        model = GaussianMixture(n_components=k, covariance_type=covariance_type, max_iter=n_iter,
                                random_state=seed, reg_covar=1e-4).fit(x)
        labels = model.predict(x).astype(np.int64)
        stats = self._stats("gmm", start, "sklearn", bic=float(model.bic(x)), model=model)
        return (labels, model.means_.astype(np.float32)), stats

    def agglomerative(self, x: np.ndarray, k: int, *, seed: int = 0,
                      max_samples: int = 10_000) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
        """Ward agglomerative clustering of ``x`` ``[n, d]`` into ``k`` clusters.

        Above ``max_samples`` rows (Ward needs O(n^2) memory) the rows are first reduced to
        ``max_samples // 10`` k-means micro-clusters, Ward merges those, and each row takes its
        micro-cluster's label; ``stats["precluster"]`` records it. Returns ``(labels [n],
        centers [k, d]), stats``; centers are member means.
        """
        from sklearn.cluster import AgglomerativeClustering

        x = _check_x(x, k)
        start = time.perf_counter()
        n_pre = 0
        if x.shape[0] > max_samples:
            n_pre = max(k, max_samples // 10)
            (micro, centroids), _ = self.kmeans(x, n_pre, seed=seed)
            top = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(centroids)
            labels = top[micro].astype(np.int64)
        else:
            labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x).astype(np.int64)
        centers = group_means(x, labels, k)
        return (labels, centers), self._stats("agglomerative", start, "sklearn", precluster=n_pre)

    @staticmethod
    def _stats(algorithm: str, start: float, backend: str, **extra) -> dict:
        return {"algorithm": algorithm, "backend": backend,
                "seconds": round(time.perf_counter() - start, 4), **extra}


class FaissBackend(SklearnBackend):
    """k-means on faiss (multi-threaded CPU); GMM and agglomerative from scikit-learn."""

    name = "faiss"

    def kmeans(self, x, k, *, seed=0, n_iter=25, n_init=3, spherical=False):
        import faiss

        x = _check_x(x, k)
        start = time.perf_counter()
        # min_points_per_centroid only decides when faiss prints a warning of its own on stderr (once
        # per call, below 39 points per centroid by default); it changes no result
        model = faiss.Kmeans(x.shape[1], k, niter=n_iter, nredo=n_init, seed=seed, spherical=spherical,
                             verbose=False, max_points_per_centroid=512, min_points_per_centroid=1)
        model.train(x)
        distances, labels = model.index.search(x, 1)
        stats = self._stats("kmeans", start, self.name, inertia=float(distances.sum()))
        return (labels[:, 0].astype(np.int64), model.centroids.astype(np.float32)), stats


class CumlBackend(FaissBackend):
    """k-means on RAPIDS cuML (GPU); GMM and agglomerative from scikit-learn (cuML has neither)."""

    name = "cuml"

    def kmeans(self, x, k, *, seed=0, n_iter=25, n_init=3, spherical=False):
        from cuml.cluster import KMeans

        x = _check_x(x, k)
        start = time.perf_counter()
        model = KMeans(n_clusters=k, max_iter=n_iter, random_state=seed, n_init=n_init,
                       output_type="numpy").fit(x)
        centroids = np.asarray(model.cluster_centers_, dtype=np.float32)
        labels = np.asarray(model.labels_, dtype=np.int64)
        if spherical:
            centroids, labels = _spherical(x, centroids)
        return (labels, centroids), self._stats("kmeans", start, self.name, inertia=float(model.inertia_))


@dataclass(frozen=True)
class BackendSpec:
    """One clustering backend: ``name`` (the ``backend=`` value), ``library`` (its name in
    reports), ``implementation`` (the class), ``native`` (the operations it runs itself; the others
    run on scikit-learn), ``importable`` (whether its library is installed), ``module`` and
    ``extra`` (what :func:`~tastemap.errors.require` imports and the pip extra that installs it;
    None: a dependency of the runtime) and ``needs_gpu``."""

    name: str
    library: str
    implementation: type
    native: tuple[str, ...]
    importable: Callable[[], bool]
    module: str | None = None
    extra: str | None = None
    needs_gpu: bool = False

    def unavailable(self) -> str | None:
        """Why this backend cannot run here (``"not installed"``, ``"no GPU visible"``), or None."""
        if not self.importable():
            return "not installed"
        if self.needs_gpu and gpu_count() == 0:
            return "no GPU visible"
        return None


CLUSTERING_BACKENDS: tuple[BackendSpec, ...] = (
    BackendSpec("sklearn", "scikit-learn", SklearnBackend, ("kmeans", "gmm", "agglomerative"), lambda: True),
    BackendSpec("faiss", "faiss", FaissBackend, ("kmeans",), lambda: importlib.util.find_spec("faiss") is not None),
    BackendSpec("cuml", "cuML", CumlBackend, ("kmeans",), lambda: cuml_importable(), module="cuml", extra="gpu",
                needs_gpu=True),
)
"""Every clustering backend: the reference (every operation, CPU) first; ``auto`` prefers the last
one that can run."""

BACKENDS = ("auto", *sorted(spec.name for spec in CLUSTERING_BACKENDS))
"""The values of ``backend=`` and ``--backend``."""


def group_means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean row of ``x`` ``[n, d]`` per label in ``0..k-1``: ``[k, d]`` float32 (0 for empty labels)."""
    from scipy import sparse

    onehot = sparse.csr_matrix((np.ones(labels.size), (labels, np.arange(labels.size))), shape=(k, labels.size))
    counts = np.bincount(labels, minlength=k)[:, None]
    return (np.asarray(onehot @ x, dtype=np.float64) / np.maximum(counts, 1)).astype(np.float32)


def _spherical(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centroids = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return centroids.astype(np.float32), np.argmax(x @ centroids.T, axis=1).astype(np.int64)


def _check_x(x: np.ndarray, k: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise InputError(f"clustering input should be 2-D [n_samples, n_features]; got shape {x.shape}")
    if not 1 <= k <= x.shape[0]:
        raise InputError(f"n_samples={x.shape[0]} should be >= n_clusters={k} (and n_clusters >= 1)")
    return x
