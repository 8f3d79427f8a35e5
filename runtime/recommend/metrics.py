"""Top-K ranking metrics per user, catalogue coverage, intra-list diversity and bootstrap intervals.

Every metric works on ``top_items``, an int array ``[n_users, K]`` of item indices ranked best
first, and returns one value per user, so that confidence intervals can be bootstrapped over users.
Relevance is binary: an item is relevant when it is in the user's held-out set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import sparse

from tastemap.errors import InputError


def mark_hits(top_items: np.ndarray, relevant: Sequence[np.ndarray]) -> np.ndarray:
    """Return a bool array ``[n_users, K]``: True where ``top_items[u, r]`` is in ``relevant[u]``.

    ``relevant`` holds one int array of held-out item indices per row of ``top_items``.
    """
    top_items = np.asarray(top_items)
    if top_items.ndim != 2:
        raise InputError(f"top_items should be 2-D [n_users, K], got shape {top_items.shape}")
    if len(relevant) != top_items.shape[0]:
        raise InputError(
            f"relevant has {len(relevant)} users but top_items has {top_items.shape[0]} rows; "
            "pass one array of held-out items per ranked user"
        )
    hits = np.zeros(top_items.shape, dtype=bool)
    for row, items in enumerate(relevant):
        hits[row] = np.isin(top_items[row], items)
    return hits


def _check_k(hits: np.ndarray, k: int) -> None:
    if not 1 <= k <= hits.shape[1]:
        raise InputError(f"k={k} should be between 1 and the ranked list length {hits.shape[1]}")


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """1.0 where at least one relevant item is in the top ``k``, else 0.0; shape ``[n_users]``."""
    _check_k(hits, k)
    return hits[:, :k].any(axis=1).astype(np.float64)


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Share of each user's relevant items found in the top ``k``; shape ``[n_users]``."""
    _check_k(hits, k)
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    if np.any(n_relevant <= 0):
        raise InputError("every user needs at least one relevant item; got n_relevant <= 0")
    return hits[:, :k].sum(axis=1) / n_relevant


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Binary-relevance NDCG@k: DCG with gain ``1/log2(rank+1)`` over the ideal DCG of
    ``min(n_relevant, k)`` hits at the top; shape ``[n_users]``."""
    _check_k(hits, k)
    n_relevant = np.asarray(n_relevant)
    if np.any(n_relevant <= 0):
        raise InputError("every user needs at least one relevant item; got n_relevant <= 0")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    return dcg / ideal


def catalogue_coverage(top_items: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue's ``n_items`` that appear in at least one user's top ``k``."""
    if not 1 <= k <= top_items.shape[1]:
        raise InputError(f"k={k} should be between 1 and the ranked list length {top_items.shape[1]}")
    return float(np.unique(top_items[:, :k]).size / n_items)


def intra_list_diversity(top_items: np.ndarray, item_features: sparse.spmatrix | np.ndarray, k: int) -> np.ndarray:
    """Mean pairwise Jaccard distance between the feature sets (genres) of each user's top ``k``.

    ``item_features`` is a binary matrix ``[n_items, n_features]``. Two items that both have no
    feature count as identical (distance 0). Returns ``[n_users]``; a list of one item gives 0.
    """
    if not 1 <= k <= top_items.shape[1]:
        raise InputError(f"k={k} should be between 1 and the ranked list length {top_items.shape[1]}")
    features = sparse.csr_matrix(item_features, dtype=np.float64)
    features.data[:] = 1.0
    sizes = np.asarray(features.sum(axis=1)).ravel()
    out = np.zeros(top_items.shape[0])
    if k < 2:
        return out
    upper = np.triu_indices(k, 1)
    for row, items in enumerate(top_items[:, :k]):
        block = features[items]
        inter = (block @ block.T).toarray()
        union = sizes[items][:, None] + sizes[items][None, :] - inter
        similarity = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
        out[row] = (1.0 - similarity)[upper].mean()
    return out


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


def bootstrap_ci(
    values: np.ndarray, *, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of the mean of per-user ``values`` ``[n_users]``."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise InputError(f"values should be a non-empty 1-D array, got shape {values.shape}")
    if not 0 < confidence < 1:
        raise InputError(f"confidence={confidence} should be between 0 and 1 (exclusive)")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.size, size=(n_resamples, values.size))
    means = values[draws].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(values.mean()), float(low), float(high))


def bootstrap_ratio_ci(
    values: np.ndarray,
    reference: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Paired bootstrap interval of ``mean(values) / mean(reference)`` over the same users.

    Both arrays are ``[n_users]`` and aligned (same user per position); users are resampled
    together so the interval reflects the paired comparison.
    """
    values = np.asarray(values, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if values.shape != reference.shape or values.ndim != 1 or values.size == 0:
        raise InputError(
            f"values {values.shape} and reference {reference.shape} should be equal-length 1-D arrays"
        )
    if reference.sum() == 0:
        raise InputError("reference metric is 0 for every user; the ratio is undefined")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.size, size=(n_resamples, values.size))
    denominators = reference[draws].sum(axis=1)
    ratios = values[draws].sum(axis=1) / np.where(denominators > 0, denominators, np.nan)
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(ratios, [alpha, 1 - alpha])
    return Interval(float(values.sum() / reference.sum()), float(low), float(high))
