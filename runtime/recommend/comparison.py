"""The model comparison of ``tastemap evaluate`` and ``tastemap demo``: the baselines and tastemap
on one split in one run (:func:`compare_models`), blend weights and the content signal chosen on
the validation split (:func:`tune_blend`), and fine-tuned versus frozen encoder ratios
(:func:`finetuned_pairs`).
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.interests.base import as_catalog
from tastemap.runtime.recommend.metrics import Interval, bootstrap_ratio_ci, hit_rate_at_k, mark_hits, ndcg_at_k
from tastemap.runtime.recommend.model_evaluation import Evaluation, evaluate_model, top_k
from tastemap.runtime.recommend.splits import Split, validation_split

logger = logging.getLogger(__name__)

LITERAL_NAME = "Content literal (history text)"
EASE_L2 = 500.0


def ease_name(l2: float = EASE_L2) -> str:
    """The name :func:`compare_models` gives the EASE baseline, the reference of the comparison
    (``"EASE (l2=500)"``)."""
    return f"EASE (l2={l2:g})"


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
        hits = mark_hits(top_k(scores, 10), relevant)
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
