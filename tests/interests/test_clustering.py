"""Clustering backends: one behavioural test over every implementation, and backend selection."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from tastemap.errors import DeviceError, InputError, MissingDependencyError
from tastemap.runtime.interests import clustering
from tastemap.runtime.interests.clustering import CumlBackend, FaissBackend, SklearnBackend, resolve_backend


def blobs(n_per=40, k=4, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)) * 5
    labels = np.repeat(np.arange(k), n_per)
    return (centres[labels] + 0.3 * rng.standard_normal((labels.size, dim))).astype(np.float32), labels


CPU_BACKENDS = [SklearnBackend(), FaissBackend()]


@pytest.mark.parametrize("backend", CPU_BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("operation", ["kmeans", "gmm", "agglomerative"])
def test_every_backend_recovers_separated_blobs_deterministically(backend, operation):
    x, truth = blobs()
    (labels, centers), stats = getattr(backend, operation)(x, 4, seed=3)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert centers.shape == (4, 8)
    expected = backend.name if operation == "kmeans" else "sklearn"
    assert stats["backend"] == expected and stats["algorithm"] == operation
    (again, _), _ = getattr(backend, operation)(x, 4, seed=3)
    np.testing.assert_array_equal(labels, again)


@pytest.mark.parametrize("backend", CPU_BACKENDS, ids=lambda b: b.name)
def test_spherical_kmeans_gives_unit_centroids(backend):
    x, truth = blobs(dim=16)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    (labels, centers), _ = backend.kmeans(x, 4, seed=0, spherical=True)
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, rtol=1e-5)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_agglomerative_preclusters_above_max_samples():
    x, truth = blobs(n_per=100)
    (labels, _), stats = SklearnBackend().agglomerative(x, 4, max_samples=200)
    assert stats["precluster"] == 20
    assert adjusted_rand_score(truth, labels) == 1.0


def test_check_input():
    with pytest.raises(InputError, match="n_samples=3 should be >= n_clusters=8"):
        SklearnBackend().kmeans(np.zeros((3, 2)), 8)


def test_auto_prefers_cuml_only_with_a_gpu(monkeypatch):
    monkeypatch.setattr(clustering, "cuml_importable", lambda: False)
    assert type(resolve_backend("auto")) is FaissBackend
    monkeypatch.setattr(clustering, "cuml_importable", lambda: True)
    monkeypatch.setattr(clustering, "gpu_count", lambda: 0)
    assert type(resolve_backend("auto")) is FaissBackend
    monkeypatch.setattr(clustering, "gpu_count", lambda: 1)
    monkeypatch.setattr(clustering, "require", lambda module, extra: None)
    assert type(resolve_backend("auto")) is CumlBackend
    assert type(resolve_backend("sklearn")) is SklearnBackend


def test_cuml_without_gpu_or_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(clustering, "require", lambda module, extra: None)
    monkeypatch.setattr(clustering, "gpu_count", lambda: 0)
    with pytest.raises(DeviceError, match="backend='cuml' needs an NVIDIA GPU but none is visible"):
        resolve_backend("cuml")
    monkeypatch.undo()
    if not clustering.cuml_importable():
        with pytest.raises(MissingDependencyError, match=r'pip install "tastemap\[gpu\]"'):
            resolve_backend("cuml")


def test_unknown_backend():
    with pytest.raises(InputError, match=r"backend='gpu' is not supported; use one of \['auto', 'cuml', 'faiss', 'sklearn'\]"):
        resolve_backend("gpu")


@pytest.mark.gpu
def test_cuml_kmeans_on_gpu():
    if not (clustering.cuml_importable() and clustering.gpu_count() > 0):
        pytest.skip("needs RAPIDS cuML and an NVIDIA GPU")
    x, truth = blobs()
    (labels, _), stats = resolve_backend("cuml").kmeans(x, 4, seed=0)
    assert stats["backend"] == "cuml"
    assert adjusted_rand_score(truth, labels) == 1.0
