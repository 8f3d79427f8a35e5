"""One recommender on one split: full ranking with the training items filtered, per-user metrics,
and the table of several models with bootstrap confidence intervals and paired ratios to a
reference model.

>>> result = evaluate_model(MostPop(), split_events(data))  # doctest: +SKIP
>>> evaluation_table([result])  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.recommend.baselines import Recommender
from tastemap.runtime.recommend.metrics import (
    Interval,
    bootstrap_ci,
    bootstrap_ratio_ci,
    catalogue_coverage,
    hit_rate_at_k,
    intra_list_diversity,
    mark_hits,
    ndcg_at_k,
    recall_at_k,
)
from tastemap.runtime.recommend.splits import Split

HIT_KS = (10, 20, 50)
NDCG_KS = (10, 20)


@dataclass
class Evaluation:
    """Per-user metric values of one recommender and the interval summary.

    ``per_user`` maps a metric name (``HR@10``...) to ``[n_test_users]`` values aligned with
    ``users``; ``coverage`` maps ``Coverage@K`` to a catalogue share (not per user).
    """

    name: str
    users: np.ndarray
    per_user: dict[str, np.ndarray]
    coverage: dict[str, float]
    top_items: np.ndarray = field(repr=False)

    def summary(self, *, n_resamples: int = 1000, seed: int = 0) -> dict[str, Interval]:
        """Mean and bootstrap 95% interval of every per-user metric."""
        return {
            name: bootstrap_ci(values, n_resamples=n_resamples, seed=seed)
            for name, values in self.per_user.items()
        }


def rank_top_items(
    model: Recommender,
    users: np.ndarray,
    seen: sparse.csr_matrix,
    k: int,
    *,
    batch_size: int = 1024,
) -> np.ndarray:
    """Top ``k`` item indices ``[n_users, k]`` over the full catalogue, seen items excluded.

    ``seen`` is the binary training matrix ``[n_all_users, n_items]``; ties keep the lower index.
    """
    out = np.empty((len(users), k), dtype=np.int64)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = np.array(model.score(batch), dtype=np.float32, copy=True)
        if scores.shape != (len(batch), seen.shape[1]):
            raise InputError(
                f"{type(model).__name__}.score returned shape {scores.shape}; "
                f"expected {(len(batch), seen.shape[1])}"
            )
        rows = seen[batch]
        scores[np.repeat(np.arange(len(batch)), np.diff(rows.indptr)), rows.indices] = -np.inf
        out[start : start + len(batch)] = top_k(scores, k)
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices ``[n_rows, min(k, n_cols)]`` of each row's highest ``scores``, best first;
    ties keep the lower index."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part.sort(axis=1)  # ties then resolve to the lower index through the stable sort below
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def evaluate_model(
    model: Recommender,
    split: Split,
    *,
    name: str | None = None,
    fit: bool = True,
    fit_params: Mapping[str, object] | None = None,
    item_features: sparse.spmatrix | None = None,
    hit_ks: Sequence[int] = HIT_KS,
    ndcg_ks: Sequence[int] = NDCG_KS,
) -> Evaluation:
    """Fit ``model`` on ``split.train`` (unless ``fit=False``; ``fit_params`` go to its ``fit``,
    e.g. the catalog and the item vectors), rank the full catalogue for every test user with their
    training items removed, and compute HR, Recall, NDCG, coverage and, with ``item_features``
    ``[n_items, n_features]`` (genres), intra-list diversity."""
    if fit:
        model.fit(split.train, **(fit_params or {}))
    users = split.test_users
    max_k = max(max(hit_ks), max(ndcg_ks))
    top_items = rank_top_items(model, users, split.train.matrix(), max_k)
    test_matrix = split.test.matrix()[users]
    relevant = np.split(test_matrix.indices, test_matrix.indptr[1:-1])
    n_relevant = np.diff(test_matrix.indptr)
    hits = mark_hits(top_items, relevant)
    per_user: dict[str, np.ndarray] = {}
    for k in hit_ks:
        per_user[f"HR@{k}"] = hit_rate_at_k(hits, k)
    for k in hit_ks:
        per_user[f"Recall@{k}"] = recall_at_k(hits, n_relevant, k)
    for k in ndcg_ks:
        per_user[f"NDCG@{k}"] = ndcg_at_k(hits, n_relevant, k)
    if item_features is not None:
        per_user["ILD@10"] = intra_list_diversity(top_items, item_features, min(10, max_k))
    coverage = {f"Coverage@{k}": catalogue_coverage(top_items, split.train.n_items, k) for k in (10,)}
    return Evaluation(
        name=name or type(model).__name__,
        users=users,
        per_user=per_user,
        coverage=coverage,
        top_items=top_items,
    )


def evaluation_table(
    evaluations: Sequence[Evaluation],
    *,
    reference: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per model: every metric's mean and 95% interval (columns ``M``, ``M_low``,
    ``M_high``), coverage, and with ``reference`` the paired-bootstrap ratio of HR@10 and NDCG@10
    to that model (``HR@10_vs_ref`` with its interval; NaN where the reference scores 0)."""
    by_name = {e.name: e for e in evaluations}
    if reference is not None and reference not in by_name:
        raise InputError(f"reference={reference!r} is not among the evaluated models {list(by_name)}")
    rows = []
    for evaluation in evaluations:
        row: dict[str, object] = {"model": evaluation.name, "users": int(evaluation.users.size)}
        for metric, interval in evaluation.summary(n_resamples=n_resamples, seed=seed).items():
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = interval.mean, interval.low, interval.high
        row.update(evaluation.coverage)
        if reference is not None:
            base = by_name[reference]
            if not np.array_equal(base.users, evaluation.users):
                raise InputError("models were evaluated on different users; use the same split")
            for metric in ("HR@10", "NDCG@10"):
                if not base.per_user[metric].any():  # the reference found nothing: the ratio is undefined
                    ratio = Interval(float("nan"), float("nan"), float("nan"))
                else:
                    ratio = bootstrap_ratio_ci(
                        evaluation.per_user[metric], base.per_user[metric], n_resamples=n_resamples, seed=seed
                    )
                row[f"{metric}_vs_ref"], row[f"{metric}_vs_ref_low"], row[f"{metric}_vs_ref_high"] = (
                    ratio.mean,
                    ratio.low,
                    ratio.high,
                )
        rows.append(row)
    return pd.DataFrame(rows)
