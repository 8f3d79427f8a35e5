"""User segments: users clustered on their interest profiles.

Features are Hellinger embeddings of the profile layers (square roots of the topic and/or
category weights), so that Euclidean distance between users is the Hellinger distance between
their interest distributions. :class:`UserSegmenter` clusters them with k-means, a Gaussian mixture
or Ward agglomerative clustering through the backend seam of :mod:`tastemap.runtime.interests.clustering`.

``k`` is given, or chosen over ``k_range`` (4 to 20) by a criterion that is reported for every k
tried (:data:`CRITERIA`): ``elbow`` (the default for k-means and Ward) takes the elbow of the
within-cluster dispersion ``W(k)``, the k whose point lies farthest below the straight line from
the first to the last point of the curve (both axes scaled to [0, 1]); ``bic`` (the default for
the GMM) the lowest BIC; ``silhouette`` the largest silhouette on a seeded sample. A k whose
smallest segment holds fewer than ``min_segment_share`` of the users is not chosen (its score is
reported as NaN). Segments are numbered by decreasing size and described by their lift over the
population (:func:`describe_segments`): the topics and categories over-represented in the segment.
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
from tastemap.runtime.io.outputs import write_atomically
from tastemap.runtime.interests.profiles import UserProfiles

logger = logging.getLogger(__name__)

METHODS = ("kmeans", "gmm", "agglomerative")
CRITERIA = ("auto", "elbow", "bic", "silhouette")
SEGMENTS_SCHEMA = pa.schema([
    ("segment", pa.int32()), ("size", pa.int64()), ("share", pa.float64()), ("label", pa.string()),
    ("top_topics", pa.list_(pa.struct([("topic", pa.int32()), ("label", pa.string()), ("weight", pa.float32()),
                                       ("population", pa.float32()), ("lift", pa.float32())]))),
    ("top_categories", pa.list_(pa.struct([("category", pa.string()), ("weight", pa.float32()),
                                           ("population", pa.float32()), ("lift", pa.float32())]))),
    ("centroid", pa.list_(pa.float32())),
])
ATTRIBUTES_FIELD = pa.field("top_attributes", pa.list_(pa.struct([
    ("attribute", pa.string()), ("value", pa.string()), ("share", pa.float32()), ("population", pa.float32()),
    ("lift", pa.float32()), ("users", pa.int64())])))
"""The column that segments described by user attributes add: the attributes over-represented in
the segment (:func:`~tastemap.runtime.recommend.attributes.describe_segments_by_attributes`)."""
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


def check_finite_features(x: np.ndarray, profiles: UserProfiles) -> None:
    """Refuse features ``[n_users, n_features]`` holding NaN or infinity (a changed profiles file):
    clustering cannot place such users."""
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        example = profiles.user_ids[int(np.flatnonzero(bad)[0])]
        raise InputError(f"the profiles of {int(bad.sum())} users hold NaN or infinite weights (e.g. user "
                         f"{example!r}); profiles are finite: write them again with `tastemap profile`")


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
            "need 2 <= k_min <= k_max <= n_users - 1, or give n_segments=K (1 <= K <= n_users)"
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
    k_range : tuple of (int, int), default=(4, 20)
        Smallest and largest k tried (inclusive) when ``n_segments`` is None; the largest is
        capped at ``n_users - 1``.
    criterion : {"auto", "elbow", "bic", "silhouette"}, default="auto"
        How k is chosen over ``k_range``; auto: ``bic`` for the GMM, ``elbow`` otherwise.
    min_segment_share : float, default=0.02
        A k whose smallest segment holds fewer than this share of the users is not chosen.
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
    criterion_ : {"elbow", "bic", "silhouette", "given"}
        How k was chosen.
    criterion_scores_ : dict of int to float
        The criterion for every k tried (empty when ``n_segments`` is given): for ``elbow`` the
        distance below the chord of the scaled dispersion curve (largest wins), for ``bic`` the
        BIC (smallest wins), for ``silhouette`` the silhouette (largest wins); NaN where the
        smallest segment is below ``min_segment_share``.
    dispersion_ : dict of int to float
        Within-cluster sum of squares ``W(k)`` for every k tried (empty when k is given).
    segments_ : DataFrame of n_segments rows
        ``segment, size, share, label, top_topics, top_categories`` (see :func:`describe_segments`).
    backend_ : str
        The library that ran the clustering.
    mixture_ : GaussianMixture or None
        The fitted mixture of ``method="gmm"`` (``predict`` uses it), else None.
    segment_of_cluster_ : ndarray of shape (n_segments,), int
        Segment number of each cluster label of the clustering run.
    """

    def __init__(self, *, method: str = "kmeans", n_segments: int | None = None, k_range: tuple[int, int] = (4, 20),
                 criterion: str = "auto", min_segment_share: float = 0.02, features: str = "topics",
                 covariance_type: str = "diag", sample_size: int = 5_000, backend: str = "auto", seed: int = 0):
        self.method = method
        self.n_segments = n_segments
        self.k_range = k_range
        self.criterion = criterion
        self.min_segment_share = min_segment_share
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
        if self.criterion not in CRITERIA:
            raise InputError(f"criterion={self.criterion!r} is not supported; use one of {list(CRITERIA)}")
        if self.criterion == "bic" and self.method != "gmm":
            raise InputError(f"criterion='bic' needs method='gmm' (got method={self.method!r}); use elbow or silhouette")
        if not 0 <= self.min_segment_share < 1:
            raise InputError(f"min_segment_share={self.min_segment_share} should be in [0, 1)")

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
        check_finite_features(x, profiles)
        candidates = candidate_ks(self.n_segments, tuple(self.k_range), x.shape[0])
        engine = resolve_backend(self.backend)
        runs = {k: self._cluster(engine, x, k) for k in candidates}
        if len(candidates) == 1:
            best, criterion, scores, dispersion = candidates[0], "given", {}, {}
        else:
            best, criterion, scores, dispersion = self._choose(x, runs)
        (labels, centers), stats = runs[best]
        order = np.lexsort((np.arange(best), -np.bincount(labels, minlength=best)))
        remap = np.empty(best, np.int64)
        remap[order] = np.arange(best)
        self.feature_names_ = feature_names
        self.criterion_, self.criterion_scores_, self.dispersion_ = criterion, scores, dispersion
        self.backend_ = stats["backend"]
        self.mixture_ = stats.get("model")
        self.segment_of_cluster_ = remap
        self.centroids_ = centers[order]
        self.n_segments_ = best
        self.user_ids_ = profiles.user_ids
        self.segments_ = describe_segments(profiles, remap[labels], best)
        self.labels_ = remap[labels]
        considered = {k: round(v, 4) for k, v in scores.items() if not np.isnan(v)}
        too_small = sorted(k for k, v in scores.items() if np.isnan(v))
        logger.info("segments: %s k=%d chosen by %s %s (backend %s)%s", self.method, best, self.criterion_, considered,
                    self.backend_, f"; k={_ks_text(too_small)} not considered: their smallest segment holds fewer "
                    f"than {self.min_segment_share:.0%} of the users (min_segment_share)" if too_small else "")
        return self

    def predict(self, profiles: UserProfiles) -> np.ndarray:
        """Segment of each user of ``profiles`` (e.g. new users from ``InterestProfiler.transform``):
        ``[n_users]`` int (the GMM's most likely component, else the nearest centroid)."""
        check_fitted(self, "labels_", "fit(profiles)")
        x, _ = profile_features(profiles, self.features)
        check_finite_features(x, profiles)
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

    def _choose(self, x: np.ndarray, runs: dict) -> tuple[int, str, dict, dict]:
        """``(k, criterion, scores per k, dispersion per k)`` (see the module docstring)."""
        criterion = self.criterion if self.criterion != "auto" else ("bic" if self.method == "gmm" else "elbow")
        ks = sorted(runs)
        dispersion = {k: within_dispersion(x, runs[k][0][0], k) for k in ks}
        if criterion == "elbow":
            scores = elbow_scores(ks, [dispersion[k] for k in ks])
        elif criterion == "bic":
            scores = {k: float(runs[k][1]["bic"]) for k in ks}
        else:
            sample = _sample(x.shape[0], self.sample_size, self.seed)
            scores = {k: _silhouette(x, runs[k][0][0], sample) for k in ks}
        smallest = {k: int(np.bincount(runs[k][0][0], minlength=k).min()) for k in ks}
        floor = self.min_segment_share * x.shape[0]
        allowed = [k for k in ks if smallest[k] >= floor] or [min(ks)]
        for k in ks:
            if k not in allowed:
                scores[k] = float("nan")
        if criterion == "bic":
            best = min(allowed, key=lambda k: (scores[k], k))
        else:
            best = max(allowed, key=lambda k: (scores[k], -k))
        return best, criterion, scores, dispersion


def _ks_text(ks: list[int]) -> str:
    """``6..20`` for a run of consecutive values, else ``[4, 7, 9]``."""
    if len(ks) > 2 and ks == list(range(ks[0], ks[-1] + 1)):
        return f"{ks[0]}..{ks[-1]}"
    return str(ks)


def within_dispersion(x: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Within-cluster sum of squared distances to the cluster means."""
    from tastemap.runtime.interests.clustering import group_means

    centres = group_means(x, labels, k)
    return float(((x - centres[labels]) ** 2).sum())


def elbow_scores(ks: list[int], dispersion: list[float]) -> dict[int, float]:
    """Distance of each scaled point ``(k, W(k))`` below the chord from the first to the last
    point (both axes scaled to [0, 1]): the elbow is the largest."""
    k = np.asarray(ks, np.float64)
    w = np.asarray(dispersion, np.float64)
    k_scaled = (k - k[0]) / max(k[-1] - k[0], 1e-12)
    span = w[0] - w[-1]
    w_scaled = (w - w[-1]) / span if span > 0 else np.zeros_like(w)
    chord = 1.0 - k_scaled
    return {int(a): float(b) for a, b in zip(ks, chord - w_scaled)}


def _silhouette(x: np.ndarray, labels: np.ndarray, sample: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    picked = labels[sample]
    if np.unique(picked).size < 2:
        return -1.0
    return float(silhouette_score(x[sample], picked))


def describe_segments(profiles: UserProfiles, labels: np.ndarray, k: int, *, top: int = 3) -> pd.DataFrame:
    """Per segment: size, share, the topics and categories most over-represented in it, and a
    label (its two top topics, then its two top categories after ``|``).

    A topic's ``weight`` is the segment members' mean weight, ``population`` the mean over every
    user and ``lift`` their ratio. Topics are ranked by ``weight * log(lift)`` (their term of the
    Kullback-Leibler divergence of the segment from the population), among those with a lift above
    1: what sets the segment apart, not what everybody likes. Categories likewise (top level).
    """
    from tastemap.runtime.interests.layers import onehot

    membership = onehot(labels, k).T.tocsr()
    sizes = np.bincount(labels, minlength=k)
    scale = 1.0 / np.maximum(sizes, 1)[:, None]
    topic_means = np.asarray((membership @ profiles.topics[-1]).todense()) * scale
    topic_population = np.asarray(profiles.topics[-1].mean(axis=0)).ravel()
    if profiles.categories:
        category_means = np.asarray((membership @ profiles.categories[0]).todense()) * scale
        category_population = np.asarray(profiles.categories[0].mean(axis=0)).ravel()
    else:
        category_means, category_population = np.zeros((k, 0)), np.zeros(0)
    rows = []
    for segment in range(k):
        topics = _lifted(topic_means[segment], topic_population, profiles.topic_names[-1], top, "topic")
        categories = _lifted(category_means[segment], category_population,
                             profiles.category_names[0] if profiles.categories else [], top, "category")
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
            "criterion": segmenter.criterion_, "criterion_scores": {str(k): (None if v != v else v) for k, v in segmenter.criterion_scores_.items()},
            "backend": segmenter.backend_, "seed": segmenter.seed}
    schema = SEGMENTS_SCHEMA.append(ATTRIBUTES_FIELD) if "top_attributes" in frame else SEGMENTS_SCHEMA
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"tastemap": json.dumps(meta).encode()})
    users = pa.table({"user_id": pa.array(segmenter.user_ids_), "segment": pa.array(segmenter.labels_.astype(np.int32))})
    return write_atomically(out_dir, {
        "segments.parquet": lambda path: pq.write_table(table, path),
        "user_segments.parquet": lambda path: pq.write_table(users, path),
    })


def _lifted(weights: np.ndarray, population: np.ndarray, names, n: int, key: str) -> list[dict]:
    """The ``n`` entries most over-represented (``weight * log(lift)``, lift above 1), each with
    its weight, population weight and lift; the heaviest entries when none is above 1."""
    lift = np.divide(weights, population, out=np.zeros_like(weights, dtype=np.float64), where=population > 0)
    gain = np.where(lift > 1, weights * np.log(np.maximum(lift, 1e-12)), -np.inf)
    order = np.lexsort((np.arange(weights.size), -gain))
    picked = [i for i in order[:n] if np.isfinite(gain[i]) and weights[i] > 0]
    if not picked:
        picked = [i for i in np.lexsort((np.arange(weights.size), -weights))[:n] if weights[i] > 0]
    entries = []
    for i in picked:
        entry = {key: (int(i) if key == "topic" else str(names[i]))}
        if key == "topic":
            entry["label"] = str(names[i])
        entry.update(weight=float(weights[i]), population=float(population[i]), lift=float(lift[i]))
        entries.append(entry)
    return entries


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
