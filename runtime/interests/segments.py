"""User segments: users clustered on their interest profiles.

Features are Hellinger embeddings of the profile layers (square roots of the topic and/or
category weights), so that Euclidean distance between users is the Hellinger distance between
their interest distributions. :class:`UserSegmenter` clusters them with k-means, a Gaussian mixture
or Ward agglomerative clustering through the backend seam of :mod:`tastemap.runtime.interests.clustering`.
``k`` is given, or chosen over ``k_range`` by a criterion that is reported: the silhouette (on a
seeded sample) for k-means and agglomerative, the BIC for GMM. Segments are numbered by decreasing
size and labelled with their top topics and categories.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sklearn.base import BaseEstimator

from tastemap.errors import InputError
from tastemap.runtime.interests.base import check_fitted
from tastemap.runtime.interests.clustering import BACKENDS, resolve_backend
from tastemap.runtime.interests.profile_io import write_atomically
from tastemap.runtime.interests.profiles import UserProfiles

logger = logging.getLogger(__name__)

METHODS = ("kmeans", "gmm", "agglomerative")
SEGMENTS_SCHEMA = pa.schema([
    ("segment", pa.int32()), ("size", pa.int64()), ("share", pa.float64()), ("label", pa.string()),
    ("top_topics", pa.list_(pa.struct([("topic", pa.int32()), ("label", pa.string()), ("weight", pa.float32())]))),
    ("top_categories", pa.list_(pa.struct([("category", pa.string()), ("weight", pa.float32())]))),
    ("centroid", pa.list_(pa.float32())),
])
FEATURES = ("topics", "categories", "topics+categories")


def profile_features(profiles: UserProfiles, features: str = "topics") -> tuple[np.ndarray, list[str]]:
    """Hellinger features ``[n_users, n_features]`` float32 and their names (``topic:<label>``,
    ``category:<name>``): square roots of the fine topic and/or top-level category weights."""
    if features not in FEATURES:
        raise InputError(f"features={features!r} is not supported; use one of {list(FEATURES)}")
    blocks, names = [], []
    if "topics" in features:
        blocks.append(np.sqrt(profiles.topics[-1].toarray()))
        names += [f"topic:{name}" for name in profiles.topic_names[-1]]
    if "categories" in features:
        if not profiles.categories:
            raise InputError("features include 'categories' but the catalog has no categories; use features='topics'")
        blocks.append(np.sqrt(profiles.categories[0].toarray()))
        names += [f"category:{name}" for name in profiles.category_names[0]]
    return np.hstack(blocks).astype(np.float32), names


def candidate_ks(n_segments: int | None, k_range: tuple[int, int], n_users: int) -> list[int]:
    """The segment counts to try: ``[n_segments]`` when given, else ``k_range`` capped at ``n_users - 1``."""
    if n_segments is not None:
        if not 1 <= n_segments <= n_users:
            raise InputError(f"n_samples={n_users} should be >= n_segments={n_segments} (and n_segments >= 1)")
        return [n_segments]
    low, high = k_range
    high = min(high, n_users - 1)
    if not 2 <= low <= high:
        raise InputError(
            f"k_range={tuple(k_range)} leaves no k to try for n_users={n_users}; "
            "need 2 <= k_min <= k_max <= n_users - 1, or give n_segments"
        )
    return list(range(low, high + 1))


class UserSegmenter(BaseEstimator):
    """Cluster users into segments (see the module docstring).

    Parameters
    ----------
    method : {"kmeans", "gmm", "agglomerative"}, default="kmeans"
        K-means, a Gaussian mixture or Ward agglomerative clustering.
    n_segments : int or None, default=None
        Number of segments; None: chosen over ``k_range`` by the criterion.
    k_range : tuple of (int, int), default=(2, 12)
        Smallest and largest k tried (inclusive) when ``n_segments`` is None; the largest is
        capped at ``n_users - 1``.
    features : {"topics", "categories", "topics+categories"}, default="topics"
        Profile layers clustered (Hellinger features, see :func:`profile_features`).
    covariance_type : {"full", "tied", "diag", "spherical"}, default="diag"
        Covariance of the GMM components.
    sample_size : int, default=5000
        Users (a seeded sample) on which the silhouette is computed.
    backend : {"auto", "cuml", "faiss", "sklearn"}, default="auto"
        Library that runs k-means (GMM and Ward always run on scikit-learn).
    seed : int, default=0
        Seed of the clustering and of the silhouette sample.

    Attributes
    ----------
    user_ids_ : ndarray of shape (n_users,)
        Ids of the segmented users.
    labels_ : ndarray of shape (n_users,), int
        Segment of each user; segments are numbered by decreasing size.
    n_segments_ : int
        Number of segments.
    centroids_ : ndarray of shape (n_segments, n_features), float32
        Segment centres in feature space.
    feature_names_ : list of str, length n_features
        ``topic:<label>`` and ``category:<name>``.
    criterion_ : {"silhouette", "bic", "given"}
        How k was chosen.
    criterion_scores_ : dict of int to float
        The criterion for every k tried (empty when ``n_segments`` is given).
    segments_ : DataFrame of n_segments rows
        ``segment, size, share, label, top_topics, top_categories``.
    backend_ : str
        The library that ran the clustering.
    mixture_ : GaussianMixture or None
        The fitted mixture of ``method="gmm"`` (``predict`` uses it), else None.
    segment_of_cluster_ : ndarray of shape (n_segments,), int
        Segment number of each cluster label of the clustering run.
    """

    def __init__(self, *, method: str = "kmeans", n_segments: int | None = None, k_range: tuple[int, int] = (2, 12),
                 features: str = "topics", covariance_type: str = "diag", sample_size: int = 5_000,
                 backend: str = "auto", seed: int = 0):
        self.method = method
        self.n_segments = n_segments
        self.k_range = k_range
        self.features = features
        self.covariance_type = covariance_type
        self.sample_size = sample_size
        self.backend = backend
        self.seed = seed

    def _validate_params(self) -> None:
        """Check every parameter (messages carry the value received); the segment counts that
        depend on the number of users are checked by :func:`candidate_ks`."""
        if self.method not in METHODS:
            raise InputError(f"method={self.method!r} is not supported; use one of {list(METHODS)}")
        if self.features not in FEATURES:
            raise InputError(f"features={self.features!r} is not supported; use one of {list(FEATURES)}")
        if self.backend not in BACKENDS:
            raise InputError(f"backend={self.backend!r} is not supported; use one of {list(BACKENDS)}")
        if self.covariance_type not in ("full", "tied", "diag", "spherical"):
            raise InputError(f"covariance_type={self.covariance_type!r} is not supported; use full, tied, diag or spherical")
        if self.n_segments is not None and not isinstance(self.n_segments, (int, np.integer)):
            raise InputError(f"n_segments={self.n_segments!r} should be None or an integer")
        if not (isinstance(self.k_range, (tuple, list)) and len(self.k_range) == 2
                and all(isinstance(k, (int, np.integer)) for k in self.k_range)):
            raise InputError(f"k_range={self.k_range!r} should be a pair of integers (k_min, k_max)")
        if not (isinstance(self.sample_size, (int, np.integer)) and self.sample_size >= 2):
            raise InputError(f"sample_size={self.sample_size!r} should be an integer >= 2")

    def fit(self, profiles: UserProfiles) -> "UserSegmenter":
        """Segment the users of ``profiles``.

        Parameters
        ----------
        profiles : :class:`~tastemap.runtime.interests.profiles.UserProfiles` of n_users users
            From ``InterestProfiler.profiles_`` or ``read_profiles``.

        Returns
        -------
        self : UserSegmenter
        """
        self._validate_params()
        x, feature_names = profile_features(profiles, self.features)
        candidates = candidate_ks(self.n_segments, tuple(self.k_range), x.shape[0])
        engine = resolve_backend(self.backend)
        runs, scores = {}, {}
        sample = _sample(x.shape[0], self.sample_size, self.seed)
        for k in candidates:
            runs[k] = self._cluster(engine, x, k)
            if len(candidates) > 1:
                scores[k] = self._score(x, runs[k], sample)
        if len(candidates) == 1:
            best, criterion = candidates[0], "given"
        elif self.method == "gmm":
            best, criterion = min(scores, key=lambda k: (scores[k], k)), "bic"
        else:
            best, criterion = max(scores, key=lambda k: (scores[k], -k)), "silhouette"
        (labels, centers), stats = runs[best]
        order = np.lexsort((np.arange(best), -np.bincount(labels, minlength=best)))
        remap = np.empty(best, np.int64)
        remap[order] = np.arange(best)
        self.feature_names_ = feature_names
        self.criterion_, self.criterion_scores_ = criterion, scores
        self.backend_ = stats["backend"]
        self.mixture_ = stats.get("model")
        self.segment_of_cluster_ = remap
        self.centroids_ = centers[order]
        self.n_segments_ = best
        self.user_ids_ = profiles.user_ids
        self.segments_ = describe_segments(profiles, remap[labels], best)
        self.labels_ = remap[labels]
        logger.info("segments: %s k=%d chosen by %s %s (backend %s)", self.method, best, self.criterion_,
                    {k: round(v, 4) for k, v in scores.items()}, self.backend_)
        return self

    def predict(self, profiles: UserProfiles) -> np.ndarray:
        """Segment of each user of ``profiles`` (e.g. new users from ``InterestProfiler.transform``):
        ``[n_users]`` int (the GMM's most likely component, else the nearest centroid)."""
        check_fitted(self, "labels_", "fit(profiles)")
        x, _ = profile_features(profiles, self.features)
        if x.shape[1] != self.centroids_.shape[1]:
            raise InputError(f"profiles have {x.shape[1]} features; the segmenter was fitted on {self.centroids_.shape[1]}")
        if self.mixture_ is not None:
            return self.segment_of_cluster_[self.mixture_.predict(x)]
        distances = (self.centroids_ ** 2).sum(axis=1)[None, :] - 2.0 * x @ self.centroids_.T
        return np.argmin(distances, axis=1)

    def _cluster(self, engine, x: np.ndarray, k: int):
        if self.method == "kmeans":
            return engine.kmeans(x, k, seed=self.seed)
        if self.method == "gmm":
            return engine.gmm(x, k, seed=self.seed, covariance_type=self.covariance_type)
        return engine.agglomerative(x, k, seed=self.seed)

    def _score(self, x: np.ndarray, run, sample: np.ndarray) -> float:
        (labels, _), stats = run
        if self.method == "gmm":
            return stats["bic"]
        from sklearn.metrics import silhouette_score

        picked = labels[sample]
        if np.unique(picked).size < 2:
            return -1.0
        return float(silhouette_score(x[sample], picked))


def describe_segments(profiles: UserProfiles, labels: np.ndarray, k: int, *, top: int = 3) -> pd.DataFrame:
    """Per segment: size, share, top topics and categories (mean member weights) and a label."""
    from tastemap.runtime.interests.layers import onehot

    membership = onehot(labels, k).T.tocsr()
    sizes = np.bincount(labels, minlength=k)
    scale = 1.0 / np.maximum(sizes, 1)[:, None]
    topic_means = np.asarray((membership @ profiles.topics[-1]).todense()) * scale
    category_means = (np.asarray((membership @ profiles.categories[0]).todense()) * scale
                      if profiles.categories else np.zeros((k, 0)))
    rows = []
    for segment in range(k):
        topics = _top(topic_means[segment], profiles.topic_names[-1], top, "topic")
        categories = _top(category_means[segment], profiles.category_names[0] if profiles.categories else [], top, "category")
        label = "; ".join(t["label"] for t in topics[:2])
        if categories:
            label += " | " + ", ".join(c["category"] for c in categories[:2])
        rows.append({"segment": segment, "size": int(sizes[segment]), "share": float(sizes[segment] / labels.size),
                     "label": label, "top_topics": topics, "top_categories": categories})
    return pd.DataFrame(rows)


def write_segments(segmenter: UserSegmenter, out_dir: str | Path) -> dict[str, Path]:
    """Write ``segments.parquet`` (one row per segment) and ``user_segments.parquet`` (user_id,
    segment) into ``out_dir`` atomically."""
    frame = segmenter.segments_.copy()
    frame["centroid"] = [c.astype(np.float32) for c in segmenter.centroids_]
    meta = {"method": segmenter.method, "features": segmenter.features, "feature_names": segmenter.feature_names_,
            "criterion": segmenter.criterion_, "criterion_scores": {str(k): v for k, v in segmenter.criterion_scores_.items()},
            "backend": segmenter.backend_, "seed": segmenter.seed}
    table = pa.Table.from_pandas(frame, schema=SEGMENTS_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"tastemap": json.dumps(meta).encode()})
    users = pa.table({"user_id": pa.array(segmenter.user_ids_), "segment": pa.array(segmenter.labels_.astype(np.int32))})
    return write_atomically(out_dir, {
        "segments.parquet": lambda path: pq.write_table(table, path),
        "user_segments.parquet": lambda path: pq.write_table(users, path),
    })


def _top(weights: np.ndarray, names, n: int, key: str) -> list[dict]:
    order = np.lexsort((np.arange(weights.size), -weights))[:n]
    return [{key: (int(i) if key == "topic" else str(names[i])), **({"label": str(names[i])} if key == "topic" else {}),
             "weight": float(weights[i])} for i in order if weights[i] > 0]


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
