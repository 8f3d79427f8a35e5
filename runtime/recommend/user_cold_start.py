"""User cold start: can a new user be served from who they are, before and while they act?

Protocol (:func:`split_new_users`, :func:`evaluate_user_cold_start`):

1. ``holdout_fraction`` of the users (a seeded draw among those with more than ``max(LEVELS)``
   events) are held out with *all* their events; models are fitted on the other users only.
2. For each held-out user and each level ``n`` of :data:`LEVELS` (0, 1, 3, 5), the user's first
   ``n`` events (by time) are given, and the rest of their items are the relevant ones; the given
   items are never ranked.
3. Level 0 ranks from attributes only: global popularity, popularity within the user's attribute
   group (age band × gender; occupation; a group smaller than ``min_group`` training users falls
   back to global popularity) and the attribute model
   (:class:`~tastemap.runtime.recommend.attributes.AttributeModel`). Levels 1, 3 and 5 rank from
   the given events alone (the item cold start of the fitted recommender, scored on every item)
   and from attributes plus events (:func:`~tastemap.runtime.recommend.attributes.blend_with_events`).
4. Recall@20, NDCG@10 and HR@10 with bootstrap intervals over users, and paired ratios: the
   attribute model to each popularity baseline, attributes plus events to the events alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.io.users import UserAttributes
from tastemap.runtime.recommend.attributes import AttributeModel, blend_with_events
from tastemap.runtime.recommend.metrics import Interval, bootstrap_ci, bootstrap_ratio_ci, hit_rate_at_k, mark_hits, ndcg_at_k, recall_at_k

logger = logging.getLogger(__name__)

NAME = "user-cold-start"
LEVELS = (0, 1, 3, 5)
METRICS = ("Recall@20", "NDCG@10", "HR@10")
GLOBAL = "global popularity"
AGE_GENDER = "group popularity (age band × gender)"
OCCUPATION = "group popularity (occupation)"
ATTRIBUTES = "attributes"
EVENTS = "events"
BOTH = "attributes + events"

# (training events) -> (given item rows per user [list of int arrays]) -> scores [n_users, n_items]
EventScorer = Callable[[Interactions], Callable[[list[np.ndarray]], np.ndarray]]


@dataclass(frozen=True)
class UserSplit:
    """``train``: the training users' events (catalogue vocabulary kept); ``test_user_ids``
    ``[n_test]`` and ``test_items``: each held-out user's item rows in time order (first
    occurrence of each item)."""

    train: Interactions
    test_user_ids: np.ndarray
    test_items: list[np.ndarray]


@dataclass(frozen=True)
class UserColdStartResult:
    """``metrics[level][model][metric]`` and ``ratios[level][model][metric]`` (model to its
    reference: ``references[level][model]``) as :class:`~tastemap.runtime.recommend.metrics.Interval`;
    ``per_user[level][model][metric]`` ``[n_users]``."""

    n_train_users: int
    n_test_users: int
    min_group: int
    prior: float
    metrics: dict[int, dict[str, dict[str, Interval]]]
    ratios: dict[int, dict[str, dict[str, Interval]]]
    references: dict[int, dict[str, str]]
    per_user: dict = field(default_factory=dict, repr=False)

    def table(self) -> pd.DataFrame:
        """One row per (level, model): each metric's mean and interval, the reference and the
        paired ratio to it."""
        rows = []
        for level, models in self.metrics.items():
            for name, metrics in models.items():
                row: dict[str, object] = {"events_given": level, "model": name,
                                          "reference": self.references[level].get(name, "")}
                for metric, value in metrics.items():
                    row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = value.mean, value.low, value.high
                for metric, value in self.ratios[level].get(name, {}).items():
                    key = f"{metric}_vs_ref"
                    row[key], row[f"{key}_low"], row[f"{key}_high"] = value.mean, value.low, value.high
                rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-user values)."""
        return {"protocol": NAME, "n_train_users": self.n_train_users, "n_test_users": self.n_test_users,
                "min_group": self.min_group, "prior": self.prior,
                "metrics": {str(level): {m: {k: v.as_dict() for k, v in d.items()} for m, d in models.items()}
                            for level, models in self.metrics.items()},
                "ratios": {str(level): {m: {k: v.as_dict() for k, v in d.items()} for m, d in models.items()}
                           for level, models in self.ratios.items()},
                "references": {str(level): refs for level, refs in self.references.items()}}


def split_new_users(data: Interactions, *, holdout_fraction: float = 0.2, seed: int = 0) -> UserSplit:
    """Hold out ``holdout_fraction`` of the users with more than ``max(LEVELS)`` distinct items,
    with all their events (see the module docstring)."""
    if not 0 < holdout_fraction < 1:
        raise InputError(f"holdout_fraction={holdout_fraction} should be between 0 and 1 (exclusive)")
    order = data.chronological_order()
    users, items = data.users[order], data.items[order]
    pairs = pd.DataFrame({"user": users, "item": items}).drop_duplicates(keep="first")
    per_user = pairs.groupby("user", sort=True)["item"].agg(lambda s: s.to_numpy(np.int64))
    eligible = per_user.index[per_user.map(len) > max(LEVELS)].to_numpy()
    n_test = int(round(holdout_fraction * eligible.size))
    if n_test < 1 or n_test >= data.n_users:
        raise InputError(f"holdout_fraction={holdout_fraction} of the {eligible.size} users with more than "
                         f"{max(LEVELS)} items holds out {n_test}; need at least one held-out and one training user")
    test = np.sort(np.random.default_rng(seed).choice(eligible, n_test, replace=False))
    is_test = np.isin(data.users, test)
    kept = data.subset(~is_test)
    remaining = np.unique(kept.users)
    remap = np.full(data.n_users, -1, np.int64)
    remap[remaining] = np.arange(remaining.size)
    train = Interactions(users=remap[kept.users], items=kept.items, timestamps=kept.timestamps, weights=kept.weights,
                         user_ids=data.user_ids[remaining], item_ids=data.item_ids)
    logger.info("user cold start: %d of %d users held out with %d events", n_test, data.n_users, int(is_test.sum()))
    return UserSplit(train=train, test_user_ids=data.user_ids[test], test_items=[per_user[u] for u in test])


def evaluate_user_cold_start(split: UserSplit, users: UserAttributes, event_scorer: EventScorer, *,
                             min_group: int = 10, l2: float | None = None, prior: float = 2.0,
                             n_resamples: int = 1000, seed: int = 0) -> UserColdStartResult:
    """Run the protocol of the module docstring on ``split``. ``event_scorer`` builds, from the
    training events, the function that scores users from their given items (for the tastemap
    recommender: :func:`tastemap_event_scorer`)."""
    train = split.train
    if train.n_items <= 20:
        raise InputError(f"the catalog has {train.n_items} items; ranking for Recall@20 needs more than 20")
    history = train.matrix()
    model = AttributeModel(min_group=min_group, l2=l2, seed=seed).fit(users, history, train.user_ids)
    test_membership = model.encoder_.transform(users.aligned(split.test_user_ids))
    popularity = np.asarray(history.sum(axis=0), np.float64).ravel()
    scorers = {
        GLOBAL: np.broadcast_to(popularity, (len(split.test_items), popularity.size)),
        AGE_GENDER: group_popularity(model, history, train.user_ids, users, split.test_user_ids, ("age", "gender")),
        OCCUPATION: group_popularity(model, history, train.user_ids, users, split.test_user_ids, ("occupation",)),
        ATTRIBUTES: model.score(test_membership),
    }
    scorers = {name: scores for name, scores in scorers.items() if scores is not None}
    per_user = {0: {name: rank_metrics(scores, split.test_items, 0) for name, scores in scorers.items()}}
    references = {0: {name: GLOBAL for name in (AGE_GENDER, OCCUPATION, ATTRIBUTES) if name in scorers}}
    score_events = event_scorer(train)
    for level in LEVELS[1:]:
        given = [items[:level] for items in split.test_items]
        events = score_events(given)
        both = blend_with_events(scorers[ATTRIBUTES], events, level, prior=prior)
        per_user[level] = {EVENTS: rank_metrics(events, split.test_items, level), BOTH: rank_metrics(both, split.test_items, level)}
        references[level] = {BOTH: EVENTS}
    metrics = {level: {name: {m: bootstrap_ci(v, n_resamples=n_resamples, seed=seed) for m, v in values.items()}
                       for name, values in models.items()} for level, models in per_user.items()}
    ratios = {level: {name: {m: _ratio(per_user[level][name][m], per_user[level][reference][m], n_resamples, seed)
                             for m in METRICS}
                      for name, reference in references[level].items()} for level in per_user}
    if ATTRIBUTES in scorers:  # the attribute model against the stronger group baseline too
        for name in (AGE_GENDER, OCCUPATION):
            if name in scorers:
                ratios[0][f"{ATTRIBUTES} vs {name}"] = {
                    m: _ratio(per_user[0][ATTRIBUTES][m], per_user[0][name][m], n_resamples, seed) for m in METRICS}
    return UserColdStartResult(n_train_users=train.n_users, n_test_users=len(split.test_items), min_group=min_group,
                               prior=prior, metrics=metrics, ratios=ratios, references=references, per_user=per_user)


def group_popularity(model: AttributeModel, history: sparse.csr_matrix, train_user_ids: np.ndarray,
                     users: UserAttributes, test_user_ids: np.ndarray, columns: tuple[str, ...]) -> np.ndarray | None:
    """Item popularity ``[n_test, n_items]`` among the training users who share the test user's
    groups on ``columns`` (the model's bands and values); global popularity where that group has
    fewer than ``model.min_group`` training users or the user lacks one of the attributes. None
    when the attributes lack one of ``columns``."""
    if any(column not in model.encoder_.columns_ for column in columns):
        return None

    def keys(ids: np.ndarray) -> np.ndarray:
        frame = users.aligned(ids)
        codes = np.zeros(len(ids), np.int64)
        missing = np.zeros(len(ids), bool)
        for column in columns:
            rows, groups = model.encoder_.transform(frame[[column]]).nonzero()
            group = np.full(len(ids), -1, np.int64)
            group[rows] = groups
            missing |= group < 0
            codes = codes * (len(model.groups) + 1) + (group + 1)
        return np.where(missing, -1, codes)
    train_keys, test_keys = keys(train_user_ids), keys(test_user_ids)
    popularity = np.asarray(history.sum(axis=0), np.float64).ravel()
    out = np.empty((len(test_keys), popularity.size))
    for key in np.unique(test_keys):
        members = train_keys == key
        rows = test_keys == key
        out[rows] = (np.asarray(history[members].sum(axis=0)).ravel()
                     if key >= 0 and members.sum() >= model.min_group else popularity)
    return out


def tastemap_event_scorer(item_vectors: np.ndarray, catalog: pd.DataFrame, *, seed: int = 0) -> EventScorer:
    """The events-alone scorer: a :class:`~tastemap.runtime.recommend.recommender.TastemapRecommender`
    fitted on the training events, scoring new users from their items as its item cold start does
    (profile, interests, blend), on every item."""
    def fit(train: Interactions):
        from tastemap.runtime.recommend.attributes import cold_event_scores
        from tastemap.runtime.recommend.recommender import TastemapRecommender

        recommender = TastemapRecommender(seed=seed).fit(train, catalog, item_vectors)
        return lambda given: cold_event_scores(recommender, given)
    return fit


def rank_metrics(scores: np.ndarray, items: list[np.ndarray], level: int) -> dict[str, np.ndarray]:
    """Per-user metrics ``[n_users]`` of ``scores`` ``[n_users, n_items]`` when each user's first
    ``level`` items (of ``items``, in time order) are given: those are never ranked, the rest
    are the relevant ones."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    given = [row[:level] for row in items]
    relevant = [row[level:] for row in items]
    for user, seen in enumerate(given):
        scores[user, seen] = -np.inf
    k = 20
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable"), axis=1)
    hits = mark_hits(top, relevant)
    n_relevant = np.array([r.size for r in relevant])
    return {"Recall@20": recall_at_k(hits, n_relevant, 20), "NDCG@10": ndcg_at_k(hits, n_relevant, 10),
            "HR@10": hit_rate_at_k(hits, 10)}


def _ratio(values: np.ndarray, reference: np.ndarray, n_resamples: int, seed: int) -> Interval:
    if not reference.any():
        return Interval(float("nan"), float("nan"), float("nan"))
    return bootstrap_ratio_ci(values, reference, n_resamples=n_resamples, seed=seed)
