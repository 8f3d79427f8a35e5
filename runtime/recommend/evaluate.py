"""Offline evaluation: chronological splits, full ranking with seen items filtered, metrics with
bootstrap confidence intervals, and a validation split carved from the training part.

Protocols (per user, events sorted by timestamp, ties broken by item index):

- ``leave_last_out``: the last event is the test item, the rest is training.
- ``temporal``: the last ``1 - train_fraction`` of the events (at least one) are the test items.

Users with fewer than ``min_train + 1`` events stay entirely in training (they are not evaluated).
The validation split applies the same protocol to the training part only, so that anything tuned
on it never sees the test events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.interests.base import as_catalog
from tastemap.runtime.io.interactions import Interactions
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
from tastemap.runtime.recommend.protocols import Protocol

logger = logging.getLogger(__name__)

HIT_KS = (10, 20, 50)
NDCG_KS = (10, 20)
LITERAL_NAME = "Content literal (history text)"
EASE_L2 = 500.0


def ease_name(l2: float = EASE_L2) -> str:
    """The name :func:`compare_models` gives the EASE baseline, the reference of the comparison
    (``"EASE (l2=500)"``)."""
    return f"EASE (l2={l2:g})"


@dataclass(frozen=True)
class Split:
    """A training part and a test part over the same vocabularies.

    ``test_users`` int ``[n_test_users]`` are the evaluated users (each has >= 1 training and
    >= 1 test event).
    """

    train: Interactions
    test: Interactions
    protocol: Protocol

    @property
    def test_users(self) -> np.ndarray:
        return np.unique(self.test.users)


def split_events(
    data: Interactions,
    protocol: Protocol | str = Protocol.leave_last_out,
    *,
    train_fraction: float = 0.8,
    min_train: int = 1,
) -> Split:
    """Cut every user's chronological history into training and test events."""
    protocol = Protocol(protocol)
    if not 0 < train_fraction < 1:
        raise InputError(f"train_fraction={train_fraction} should be between 0 and 1 (exclusive)")
    if min_train < 1:
        raise InputError(f"min_train={min_train} should be >= 1")
    order = data.chronological_order()
    users = data.users[order]
    counts = np.bincount(users, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(order.size) - starts[users]
    n_events = counts[users]
    if protocol is Protocol.leave_last_out:
        n_test = np.ones_like(n_events)
    else:
        n_test = np.maximum(1, n_events - np.floor(n_events * train_fraction).astype(np.int64))
    evaluated = n_events - n_test >= min_train
    is_test = evaluated & (position >= n_events - n_test)
    test_mask = np.zeros(data.n_events, dtype=bool)
    test_mask[order[is_test]] = True
    split = Split(train=data.subset(~test_mask), test=data.subset(test_mask), protocol=protocol)
    if split.test.n_events == 0:
        raise InputError(
            f"no user has more than min_train={min_train} events; nothing to evaluate"
        )
    return split


def validation_split(split: Split, *, train_fraction: float = 0.8, min_train: int = 1) -> Split:
    """The same protocol applied to ``split.train`` only: tune on this, never on ``split.test``."""
    return split_events(split.train, split.protocol, train_fraction=train_fraction, min_train=min_train)


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
        out[start : start + len(batch)] = _top_k(scores, k)
    return out


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
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


LITERAL_GRID = (0.0, 0.05, 0.1, 0.2)
DEFAULT_GRID = {
    "long_term": (0.0, 0.1, 0.3, 0.5),
    "short_term": (0.0, 0.5, 0.7, 1.0),
    "interests": (0.0, 0.05, 0.1, 0.2),
    "category": (0.0, 0.05, 0.1),
}


def tune_blend(
    recommender,
    split: Split,
    *,
    catalog: pd.DataFrame,
    item_vectors,
    grid: Mapping[str, Sequence[float]] = DEFAULT_GRID,
    metric: str = "NDCG@10",
    encoder=None,
) -> tuple[object, pd.DataFrame]:
    """Choose the blend weights of a :class:`~tastemap.runtime.recommend.recommender.TastemapRecommender` on
    the validation split of ``split`` (never on its test part).

    A clone of ``recommender`` (an unfitted template, left unchanged) is fitted on the validation
    training part with ``catalog`` and ``item_vectors`` ``[n_items, dim]``; its standardised
    components are computed once for the validation users and every weight combination of
    ``grid`` is ranked by ``metric`` (ties: HR@10, then the earlier combination). Returns ``(best
    BlendWeights, table of every combination with HR@10 and NDCG@10)``.

    With ``encoder`` (the encoder of ``item_vectors``), the content signal is chosen too: the
    grid also weighs the ``literal`` component (:data:`LITERAL_GRID` unless ``grid`` names it),
    and a combination feeds the blend with one content signal, ``interests`` or ``literal``,
    never both (see :func:`content_signal`).
    """
    import itertools

    from sklearn.base import clone

    from tastemap.runtime.recommend.recommender import BlendWeights

    if metric not in ("HR@10", "NDCG@10"):
        raise InputError(f"metric={metric!r} is not supported for tuning; use 'HR@10' or 'NDCG@10'")
    unknown = sorted(set(grid) - set(BlendWeights().as_dict()))
    if unknown:
        raise InputError(f"grid names unknown components {unknown}; allowed: {list(BlendWeights().as_dict())}")
    if encoder is not None and "literal" not in grid:
        grid = {**grid, "literal": LITERAL_GRID}
    validation = validation_split(split)
    recommender = clone(recommender).fit(validation.train, catalog, item_vectors, encoder=encoder)
    users = validation.test_users
    components = recommender.components(users)
    seen = validation.train.matrix()[users]
    seen_rows = np.repeat(np.arange(users.size), np.diff(seen.indptr))
    test_matrix = validation.test.matrix()[users]
    relevant = np.split(test_matrix.indices, test_matrix.indptr[1:-1])
    n_relevant = np.diff(test_matrix.indptr)
    names = [name for name in grid if name in components]
    rows = []
    for values in itertools.product(*(grid[name] for name in names)):
        chosen = dict(zip(names, values))
        if not any(values) or (chosen.get("interests", 0) > 0 and chosen.get("literal", 0) > 0):
            continue
        weights = BlendWeights(**{**dict.fromkeys(BlendWeights().as_dict(), 0.0), **dict(zip(names, values))})
        scores = recommender._blend(components, weights)
        scores[seen_rows, seen.indices] = -np.inf
        hits = mark_hits(_top_k(scores, 10), relevant)
        rows.append({**weights.as_dict(), "HR@10": hit_rate_at_k(hits, 10).mean(),
                     "NDCG@10": ndcg_at_k(hits, n_relevant, 10).mean()})
    table = pd.DataFrame(rows)
    other = "HR@10" if metric == "NDCG@10" else "NDCG@10"
    best = table.sort_values([metric, other], ascending=False, kind="stable").iloc[0]
    chosen = BlendWeights(**{name: float(best[name]) for name in BlendWeights().as_dict()})
    logger.info("blend weights chosen on validation (%s=%.4f): %s; content signal: %s", metric, best[metric],
                chosen.as_dict(), content_signal(chosen))
    return chosen, table


def content_signal(weights) -> str:
    """Which content signal feeds a blend: ``"multi-interest"`` (the interests component),
    ``"literal"`` (the history as one text), or ``"none"``."""
    if weights.literal > 0:
        return "literal"
    return "multi-interest" if weights.interests > 0 else "none"


def genre_features(catalog: pd.DataFrame) -> sparse.csr_matrix:
    """Binary ``[n_items, n_top_level_categories]`` item features (MovieLens: genres) for the
    intra-list diversity, from the catalog's ``categories`` (none: ``[n_items, 0]``)."""
    from tastemap.runtime.interests.layers import category_levels

    levels = category_levels(as_catalog(catalog)["categories"].tolist())
    if not levels:
        return sparse.csr_matrix((len(catalog), 0), dtype=np.float32)
    features = levels[0].items.copy()
    features.data[:] = 1.0
    return features


FINETUNED = " (fine-tuned)"


def compare_models(
    split: Split,
    *,
    catalog: pd.DataFrame,
    item_vectors: np.ndarray,
    encoder=None,
    weights=None,
    l2: float = EASE_L2,
    seed: int = 0,
    sasrec: bool = False,
    finetuned: tuple[object, np.ndarray] | None = None,
    finetuned_weights=None,
) -> list[Evaluation]:
    """Evaluate the baselines and tastemap on one split, in one run: MostPop, ItemKNN (cosine),
    EASE (``l2``, named :func:`ease_name`), SASRec when ``sasrec`` (epochs chosen on the
    validation part of ``split.train``), content single-vector, content multi-interest (the
    interest component alone), content literal (each user's history rendered as one text and
    encoded by ``encoder``; left out when ``encoder`` is None, as with precomputed vectors) and
    tastemap with ``weights`` (default: :class:`BlendWeights`), with its own low-rank EASE weights.
    ``item_vectors`` is ``[n_items, dim]`` in catalog order.

    ``finetuned`` is ``(encoder, item_vectors)`` of an encoder fine-tuned on ``split.train``
    only: the content models and tastemap (with ``finetuned_weights``, default ``weights``) are
    evaluated again on its vectors, named with the suffix :data:`FINETUNED` (see
    :func:`finetuned_pairs`). Weights with a ``literal`` part need the encoder."""
    from tastemap.runtime.recommend.baselines import EASE, ItemKNN, MostPop

    catalog = as_catalog(catalog)
    features = genre_features(catalog)
    collaborative = [("MostPop", MostPop()), ("ItemKNN", ItemKNN()), (ease_name(l2), EASE(l2=l2))]
    if sasrec:
        from tastemap.runtime.recommend.sasrec import SASRec

        collaborative.append(("SASRec", SASRec(seed=seed)))
    results = [evaluate_model(model, split, name=name, item_features=features) for name, model in collaborative]
    encoders = [("", encoder, item_vectors, weights)]
    if finetuned is not None:
        encoders.append((FINETUNED, *finetuned, finetuned_weights or weights))
    for suffix, text_encoder, vectors, blend in encoders:
        results += _content_models(split, catalog, vectors, text_encoder, features, blend, l2, seed, suffix)
    return results


def multi_interest_content(seed: int = 0):
    """Content multi-interest: tastemap's interest component alone (no collaborative, category
    or literal part), fitted with the catalog and the item vectors."""
    from tastemap.runtime.recommend.recommender import BlendWeights, TastemapRecommender

    return TastemapRecommender(seed=seed, weights=BlendWeights(long_term=0, short_term=0, interests=1, category=0))


def _content_models(split, catalog, item_vectors, encoder, features, weights, l2, seed, suffix) -> list[Evaluation]:
    """The content baselines and tastemap on one encoder's ``item_vectors``."""
    from tastemap.runtime.recommend.baselines import ContentLiteral, ContentSingleVector
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    vectors = {"item_vectors": item_vectors}
    items = {"catalog": catalog, **vectors}
    models = [
        ("Content single-vector", ContentSingleVector(), vectors),
        ("Content multi-interest", multi_interest_content(seed), items),
    ]
    if encoder is not None:
        models.append((LITERAL_NAME, ContentLiteral(encoder=encoder), items))
    else:
        logger.info("no encoder (precomputed item vectors): %s is not evaluated", LITERAL_NAME)
    literal = {"encoder": encoder} if weights is not None and weights.literal > 0 else {}
    models.append(("tastemap", TastemapRecommender(weights=weights, l2=l2, seed=seed),
                   {**items, **literal}))
    return [evaluate_model(model, split, name=name + suffix, fit_params=fit_params, item_features=features)
            for name, model, fit_params in models]


def finetuned_pairs(evaluations: Sequence[Evaluation], *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """For every model evaluated on fine-tuned vectors (name ending in :data:`FINETUNED`), the
    paired-bootstrap ratio of its HR@10 and NDCG@10 to the same model on the frozen vectors
    (columns ``M``, ``M_low``, ``M_high``); empty without fine-tuned models."""
    by_name = {e.name: e for e in evaluations}
    rows = []
    for name, tuned in by_name.items():
        frozen = by_name.get(name[: -len(FINETUNED)]) if name.endswith(FINETUNED) else None
        if frozen is None:
            continue
        row: dict[str, object] = {"model": name[: -len(FINETUNED)]}
        for metric in ("HR@10", "NDCG@10"):
            ratio = (bootstrap_ratio_ci(tuned.per_user[metric], frozen.per_user[metric], n_resamples=n_resamples, seed=seed)
                     if frozen.per_user[metric].any() else Interval(float("nan"), float("nan"), float("nan")))
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = ratio.mean, ratio.low, ratio.high
        rows.append(row)
    return pd.DataFrame(rows)
