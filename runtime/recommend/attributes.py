"""Cold start from who a user is: attribute groups and what is popular in them.

:class:`AttributeEncoder` turns attributes into groups: a numeric attribute into bands (``age``
into the usual age bands, any other number into quantile bands), a categorical one into its
values (a zip code by its first character, the region). A band or value held by fewer than
``min_group`` training users is merged (adjacent bands together, rare values into ``other``) or,
when even the merged group is too small, not used: every group the model knows, and every
attribute shown in a segment's description, holds at least ``min_group`` users.

:class:`AttributeModel` predicts, from the groups a user belongs to, how much such users
engage with each item: a ridge regression of the training users' engagement (user × item, 1
where engaged, divided by the square root of the user's number of items, so that a user with
many items does not outweigh many users with few) on their group membership (one-hot, centred),
with the penalty chosen by k-fold cross-validation over the training users. Unlike summing each
attribute's lift (a naive-Bayes score), the regression does not count twice what two correlated
attributes say (students are mostly 18–24); on MovieLens 100K it ranked better
(docs/attributes.md). With no known attribute it is the population's (so weighted) popularity.
:func:`blend_with_events` mixes these scores with the scores of a few known items (or of a short
description, counted as one item), weighted by how much is known: the attribute part weighs
``prior / (prior + n_events)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator

from tastemap.errors import InputError
from tastemap.runtime.interests.base import check_fitted
from tastemap.runtime.io.users import UserAttributes, check_known

logger = logging.getLogger(__name__)

AGE_EDGES = (18.0, 25.0, 35.0, 45.0, 50.0, 56.0)
"""Upper-exclusive edges of the age bands: under 18, 18–24, 25–34, 35–44, 45–49, 50–55, 56+."""
ZIP_COLUMNS = ("zip", "zip_code", "zipcode", "postcode", "postal_code")
N_QUANTILE_BANDS = 5
MIN_GROUP = 10
L2_GRID = (30.0, 100.0, 300.0, 1000.0, 3000.0)
CV_FOLDS = 5
MAX_VALIDATION_USERS = 2000
TARGET_POWER = 0.5
"""Each training user's engagement row is divided by ``n_items ** TARGET_POWER``: 0 counts users
by items (heavy users dominate), 1 gives every user the same total weight; 0.5 ranked best and
most steadily across splits on MovieLens 100K (docs/attributes.md)."""
OTHER = "other"
TEXT_AS_EVENTS = 1
"""A short description weighs as much as one known item against the attributes."""
TEXT_TOPICS, TEXT_SEGMENT_WEIGHT = 3, 0.3
"""The text cold start's defaults (``TastemapRecommender.recommend_cold``): nearest topics kept and
the weight of the nearest segment's popularity."""


@dataclass(frozen=True)
class AttributeGroup:
    """One group of users: ``column`` and the band (numeric: ``low <= value < high``) or value."""

    column: str
    value: str
    low: float = float("nan")
    high: float = float("nan")

    def describe(self) -> str:
        """``aged 18–24``, ``occupation student``, ``zip_code 9…``."""
        if self.column == "age":
            return f"aged {self.value}"
        if self.column in ZIP_COLUMNS:
            return f"{self.column} {self.value}…"
        return f"{self.column} {self.value}"


class AttributeEncoder(BaseEstimator):
    """Users' attributes to groups (see the module docstring).

    Parameters
    ----------
    min_group : int, default=10
        Fewest training users a group may hold (>= 1).

    Attributes
    ----------
    columns_ : list of str
        Attribute columns, in the table's order.
    numeric_ : list of str
        The numeric ones.
    groups_ : list of AttributeGroup
        Every group kept; position = group index.
    edges_ : dict of str to list of float
        Inner band edges of each numeric column (bands ``(-inf, e0), [e0, e1), ..., [e_last, inf)``).
    values_ : dict of str to dict of str to int
        Each categorical column's value (or prefix) to its group index; values not listed belong
        to the column's ``other`` group when it has one, else to no group.
    """

    def __init__(self, *, min_group: int = MIN_GROUP):
        self.min_group = min_group

    def fit(self, users: UserAttributes) -> "AttributeEncoder":
        if not (isinstance(self.min_group, (int, np.integer)) and self.min_group >= 1):
            raise InputError(f"min_group={self.min_group!r} should be an integer >= 1")
        self.columns_, self.numeric_ = users.columns, list(users.numeric)
        self.groups_, self.edges_, self.values_ = [], {}, {}
        for column in self.columns_:
            values = users.values[column]
            if column in self.numeric_:
                self._fit_bands(column, values.to_numpy(np.float64))
            else:
                self._fit_values(column, values)
        if not self.groups_:
            raise InputError(f"no attribute group holds min_group={self.min_group} users or more "
                             f"({users.n_users} users); give more users or a smaller min_group")
        return self

    def _fit_bands(self, column: str, values: np.ndarray) -> None:
        known = values[np.isfinite(values)]
        if column == "age":
            edges = list(AGE_EDGES)
        else:
            edges = sorted(set(np.quantile(known, np.linspace(0, 1, N_QUANTILE_BANDS + 1)[1:-1]).tolist())) if known.size else []
        counts = np.bincount(np.searchsorted(edges, known, side="right"), minlength=len(edges) + 1)
        while len(edges) and counts.min() < self.min_group:  # merge the smallest band with its smaller neighbour
            band = int(np.argmin(counts))
            neighbour = band - 1 if band == len(counts) - 1 or (band > 0 and counts[band - 1] <= counts[band + 1]) else band + 1
            edges.pop(min(band, neighbour))
            counts = np.bincount(np.searchsorted(edges, known, side="right"), minlength=len(edges) + 1)
        if counts.sum() < self.min_group:
            return
        self.edges_[column] = [float(e) for e in edges]
        bounds = [-np.inf, *edges, np.inf]
        for low, high in zip(bounds[:-1], bounds[1:]):
            self.groups_.append(AttributeGroup(column, _band_label(low, high), low, high))

    def _fit_values(self, column: str, values: pd.Series) -> None:
        keys = pd.Series([_category_key(column, v) for v in values], dtype=object).dropna()
        counts = keys.value_counts()
        kept = sorted(str(v) for v, n in counts.items() if n >= self.min_group and v != OTHER)
        n_other = int(counts.sum() - counts[counts.index.isin(kept)].sum())
        self.values_[column] = {}
        for value in kept + ([OTHER] if n_other >= self.min_group else []):
            self.values_[column][value] = len(self.groups_)
            self.groups_.append(AttributeGroup(column, value))

    def transform(self, values: pd.DataFrame) -> sparse.csr_matrix:
        """Group membership CSR ``[n_users, n_groups]`` (0/1; at most one group per column) of the
        rows of ``values`` (columns as the fitted table's; missing columns are unknown)."""
        check_fitted(self, "groups_", "fit(users)")
        rows, cols = [], []
        for column in self.columns_:
            if column not in values.columns:
                continue
            group = self._groups_of(column, values[column])
            known = group >= 0
            rows.append(np.flatnonzero(known))
            cols.append(group[known])
        row = np.concatenate(rows) if rows else np.empty(0, np.int64)
        col = np.concatenate(cols) if cols else np.empty(0, np.int64)
        return sparse.csr_matrix((np.ones(row.size, np.float32), (row, col)), shape=(len(values), len(self.groups_)))

    def _groups_of(self, column: str, series: pd.Series) -> np.ndarray:
        if column in self.numeric_:
            if column not in self.edges_:
                return np.full(len(series), -1, np.int64)
            first = next(i for i, g in enumerate(self.groups_) if g.column == column)
            values = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
            band = np.searchsorted(self.edges_[column], values, side="right")
            return np.where(np.isfinite(values), first + band, -1).astype(np.int64)
        lookup = self.values_.get(column, {})
        other = lookup.get(OTHER, -1)
        return np.array([-1 if (key := _category_key(column, v)) is None else lookup.get(key, other)
                         for v in series], dtype=np.int64)

    def encode_one(self, attributes: Mapping[str, object]) -> sparse.csr_matrix:
        """Groups ``[1, n_groups]`` of one user's ``{attribute: value}`` (checked: an unknown
        attribute or a non-numeric number is an error)."""
        check_fitted(self, "groups_", "fit(users)")
        checked = check_known(attributes, self.columns_, self.numeric_)
        return self.transform(pd.DataFrame({key: [value] for key, value in checked.items()}))

    def to_dict(self) -> dict:
        """JSON-ready state (no user data: bands, kept values and the group list)."""
        check_fitted(self, "groups_", "fit(users)")
        return {"min_group": int(self.min_group), "columns": self.columns_, "numeric": self.numeric_,
                "edges": self.edges_, "values": self.values_,
                "groups": [[g.column, g.value, _json_float(g.low), _json_float(g.high)] for g in self.groups_]}

    @classmethod
    def from_dict(cls, state: dict) -> "AttributeEncoder":
        encoder = cls(min_group=int(state["min_group"]))
        encoder.columns_, encoder.numeric_ = list(state["columns"]), list(state["numeric"])
        encoder.edges_ = {k: [float(e) for e in v] for k, v in state["edges"].items()}
        encoder.values_ = {k: {str(value): int(i) for value, i in v.items()} for k, v in state["values"].items()}
        encoder.groups_ = [AttributeGroup(c, v, _from_json_float(lo), _from_json_float(hi)) for c, v, lo, hi in state["groups"]]
        return encoder


class AttributeModel(BaseEstimator):
    """Attributes to items: a ridge regression from group membership to engagement (module docstring).

    Parameters
    ----------
    min_group : int, default=10
        Fewest users behind any group (see :class:`AttributeEncoder`).
    l2 : float or None, default=None
        Ridge penalty (> 0); None: chosen over :data:`L2_GRID` by :data:`CV_FOLDS`-fold
        cross-validation (Recall@20), the largest penalty whose Recall@20 is within one standard
        error (paired over users) of the best one's: the steadier choice when penalties tie.
    target_power : float, default=0.5
        Each user's engagement row is divided by ``n_items ** target_power`` (see
        :data:`TARGET_POWER`); 0 regresses the raw 0/1 engagement.
    seed : int, default=0
        Seed of the cross-validation folds.

    Attributes
    ----------
    encoder_ : AttributeEncoder
    l2_ : float
        The penalty used.
    validation_ : dict of float to float
        Cross-validated Recall@20 per penalty tried (empty when ``l2`` is given).
    item_mean_ : ndarray of shape (n_items,), float32
        Mean engagement of the training users with each item (the population's popularity, each
        user weighted as ``target_power`` says).
    group_mean_ : ndarray of shape (n_groups,), float32
        Share of the training users in each group.
    coef_ : ndarray of shape (n_groups, n_items), float32
        What belonging to each group adds to each item's engagement share.
    n_users_ : int
        Training users.
    """

    def __init__(self, *, min_group: int = MIN_GROUP, l2: float | None = None, target_power: float = TARGET_POWER,
                 seed: int = 0):
        self.min_group = min_group
        self.l2 = l2
        self.target_power = target_power
        self.seed = seed

    def fit(self, users: UserAttributes, history: sparse.spmatrix, user_ids: np.ndarray) -> "AttributeModel":
        """Learn from ``history`` (CSR ``[n_users, n_items]``, nonzero = engaged) of the users
        ``user_ids`` ``[n_users]``; users missing from ``users`` have no known attribute."""
        if self.l2 is not None and not self.l2 > 0:
            raise InputError(f"l2={self.l2!r} should be > 0 (or None to choose it by cross-validation)")
        if not 0 <= self.target_power <= 1:
            raise InputError(f"target_power={self.target_power!r} should be between 0 and 1")
        history = sparse.csr_matrix(history, dtype=np.float32, copy=True)
        if history.shape[0] != len(user_ids):
            raise InputError(f"history has {history.shape[0]} rows but user_ids has {len(user_ids)}")
        history.sum_duplicates()
        history.data[:] = 1.0
        matched = int(np.isin(np.asarray(user_ids), users.user_ids).sum())
        if matched == 0:
            raise InputError(f"none of the {len(user_ids)} users with events is in the users table "
                             f"({users.n_users} users, e.g. {users.user_ids[:3].tolist()}); check the user_id column")
        logger.info("user attributes: %d of %d users with events have a row in the users table", matched, len(user_ids))
        self.encoder_ = AttributeEncoder(min_group=self.min_group).fit(users)
        membership = self.encoder_.transform(users.aligned(user_ids))
        target = engagement_target(history, self.target_power)
        if self.l2 is None:
            self.validation_, self.l2_ = self._cross_validate(membership, history, target)
        else:
            self.validation_, self.l2_ = {}, float(self.l2)
        self.n_users_ = int(history.shape[0])
        self.group_mean_, self.item_mean_, self.coef_ = _ridge(membership, target, self.l2_)
        logger.info("attribute model: %d groups, l2=%s (cross-validated Recall@20 %s)", len(self.groups), self.l2_,
                    {k: round(v, 4) for k, v in self.validation_.items()})
        return self

    def _cross_validate(self, membership: sparse.csr_matrix, history: sparse.csr_matrix,
                        target: sparse.csr_matrix) -> tuple[dict[float, float], float]:
        """Recall@20 per penalty of :data:`L2_GRID` over :data:`CV_FOLDS` seeded folds of the
        users with events (at most :data:`MAX_VALIDATION_USERS` scored in all), and the largest
        penalty within one paired standard error of the best."""
        from tastemap.runtime.recommend.metrics import mark_hits, recall_at_k

        rng = np.random.default_rng(self.seed)
        n = membership.shape[0]
        fold = rng.permutation(n) % CV_FOLDS
        scored = np.zeros(n, bool)
        active = np.flatnonzero(np.diff(history.indptr) > 0)
        scored[rng.choice(active, min(active.size, MAX_VALIDATION_USERS), replace=False)] = True
        k = min(20, history.shape[1])
        recalls = {float(l2): [] for l2 in L2_GRID}
        for f in range(min(CV_FOLDS, n)):
            train, held = fold != f, (fold == f) & scored
            if not held.any() or not train.any():
                continue
            relevant = [history[row].indices for row in np.flatnonzero(held)]
            n_relevant = np.array([r.size for r in relevant])
            for l2 in recalls:
                group_mean, item_mean, coef = _ridge(membership[train], target[train], l2)
                predicted = item_mean[None, :] + (membership[held].toarray() - group_mean) @ coef
                top = np.argpartition(-predicted, k - 1, axis=1)[:, :k]
                top = np.take_along_axis(top, np.argsort(-np.take_along_axis(predicted, top, axis=1), axis=1), axis=1)
                recalls[l2].append(recall_at_k(mark_hits(top, relevant), n_relevant, k))
        if not recalls[L2_GRID[0]]:  # too few users with events to hold any out: the grid's middle
            return {}, float(L2_GRID[len(L2_GRID) // 2])
        per_user = {l2: np.concatenate(values) for l2, values in recalls.items()}
        means = {l2: float(values.mean()) for l2, values in per_user.items()}
        best = max(means, key=lambda l2: (means[l2], l2))

        def within_one_error(l2: float) -> bool:
            difference = per_user[l2] - per_user[best]
            return means[l2] >= means[best] - difference.std() / np.sqrt(max(difference.size, 1))
        return means, max(l2 for l2 in means if within_one_error(l2))

    @property
    def groups(self) -> list[AttributeGroup]:
        return self.encoder_.groups_

    def score(self, membership: sparse.spmatrix) -> np.ndarray:
        """Predicted engagement ``[n_users, n_items]`` float32 of users given by their
        groups (CSR ``[n_users, n_groups]``, :meth:`AttributeEncoder.transform`); a user with no
        known attribute gets the population's popularity."""
        check_fitted(self, "coef_", "fit(users, history, user_ids)")
        centred = sparse.csr_matrix(membership).toarray() - self.group_mean_
        known = sparse.csr_matrix(membership).getnnz(axis=1) > 0
        scores = self.item_mean_[None, :] + centred @ self.coef_
        scores[~known] = self.item_mean_
        return scores.astype(np.float32)

    def score_attributes(self, attributes: Mapping[str, object]) -> tuple[np.ndarray, list[int]]:
        """Scores ``[n_items]`` of one user's ``{attribute: value}`` and the groups they fall in."""
        membership = self.encoder_.encode_one(attributes)
        return self.score(membership)[0], membership.indices.tolist()

    def audience(self, item: int, groups: Sequence[int], score: float, *, top: int = 2) -> str:
        """``occupation student, aged 18–24 (1.8× the average)``: the (at most ``top``) groups
        whose coefficient for ``item`` is largest and positive, and the ratio of the user's
        predicted ``score`` to the population's; ``everyone`` when no group raises the item or
        the user's groups together raise it by less than 5%."""
        ratio = score / max(float(self.item_mean_[item]), 1e-12)
        if not len(groups) or ratio < 1.05:
            return "everyone"
        coefs = self.coef_[np.asarray(groups), item]
        order = [i for i in np.argsort(-coefs, kind="stable")[:top] if coefs[i] > 0]
        if not order:
            return "everyone"
        picked = sorted(order, key=lambda i: self.groups[groups[i]].column == "age")  # the age band reads last
        text = ", ".join(self.groups[groups[i]].describe() for i in picked)
        return f"{text} ({ratio:.1f}× the average)"

    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """``(json state, arrays)`` for a fitted model folder: the encoder's bands and values, the
        penalty, and the arrays ``group_mean`` ``[n_groups]``, ``item_mean`` ``[n_items]`` and
        ``coef`` ``[n_groups, n_items]``; no row about any single user."""
        check_fitted(self, "coef_", "fit(users, history, user_ids)")
        state = {"encoder": self.encoder_.to_dict(), "l2": self.l2_, "target_power": float(self.target_power),
                 "n_users": self.n_users_,
                 "validation": {str(k): v for k, v in self.validation_.items()}, "seed": self.seed}
        return state, {"group_mean": self.group_mean_, "item_mean": self.item_mean_, "coef": self.coef_}

    def padded(self, n_items: int) -> "AttributeModel":
        """This model over ``n_items`` items: items added after the fit (by updates, at the end
        of the catalog) have no engagement yet, so zero share and coefficients."""
        check_fitted(self, "coef_", "fit(users, history, user_ids)")
        extra = n_items - self.item_mean_.size
        if extra < 0:
            raise InputError(f"the attribute model covers {self.item_mean_.size} items; n_items={n_items} is fewer")
        state, arrays = self.to_arrays()
        arrays = {**arrays, "item_mean": np.pad(arrays["item_mean"], (0, extra)),
                  "coef": np.pad(arrays["coef"], ((0, 0), (0, extra)))}
        return AttributeModel.from_arrays(state, arrays)

    @classmethod
    def from_arrays(cls, state: dict, arrays: Mapping[str, np.ndarray]) -> "AttributeModel":
        model = cls(min_group=int(state["encoder"]["min_group"]), l2=float(state["l2"]), seed=int(state["seed"]),
                    target_power=float(state.get("target_power", 0.0)))  # models fitted before: raw 0/1 engagement
        model.encoder_ = AttributeEncoder.from_dict(state["encoder"])
        model.l2_, model.n_users_ = float(state["l2"]), int(state["n_users"])
        model.validation_ = {float(k): float(v) for k, v in state["validation"].items()}
        model.group_mean_, model.item_mean_, model.coef_ = (np.asarray(arrays[name], np.float32)
                                                           for name in ("group_mean", "item_mean", "coef"))
        if model.coef_.shape != (len(model.groups), model.item_mean_.size):
            raise InputError(f"attribute coefficients have shape {model.coef_.shape}; expected "
                             f"[n_groups={len(model.groups)}, n_items={model.item_mean_.size}]")
        return model


def engagement_target(history: sparse.csr_matrix, power: float) -> sparse.csr_matrix:
    """``history`` (0/1 CSR ``[n_users, n_items]``) with each row divided by its number of items
    to the ``power`` (rows without items stay empty)."""
    counts = np.maximum(np.diff(history.indptr), 1).astype(np.float64)
    return sparse.csr_matrix(sparse.diags(counts ** -float(power)) @ history, dtype=np.float64)


def _ridge(membership: sparse.csr_matrix, history: sparse.csr_matrix, l2: float):
    """Ridge from centred group membership ``X`` to centred engagement ``Y``: ``(group_mean,
    item_mean, coef = (X'X + l2·I)^-1 X'Y)``, float64 solved, float32 returned."""
    n = max(membership.shape[0], 1)
    group_mean = np.asarray(membership.mean(axis=0), np.float64).ravel()
    item_mean = np.asarray(history.mean(axis=0), np.float64).ravel()
    gram = (membership.T @ membership).toarray().astype(np.float64) - n * np.outer(group_mean, group_mean)
    cross = np.asarray((membership.T @ history).todense(), np.float64) - n * np.outer(group_mean, item_mean)
    coef = np.linalg.solve(gram + l2 * np.eye(gram.shape[0]), cross)
    return group_mean.astype(np.float32), item_mean.astype(np.float32), coef.astype(np.float32)


def blend_with_events(attribute_scores: np.ndarray, event_scores: np.ndarray, n_events: int | np.ndarray,
                      *, prior: float = 2.0) -> np.ndarray:
    """``w·z(attribute_scores) + (1 - w)·z(event_scores)`` per row ``[n_users, n_items]``, where
    ``z`` standardises each row and ``w = prior / (prior + n_events)``: attributes matter most
    when few events are known."""
    from tastemap.runtime.recommend.recommender import standardise

    weight = prior / (prior + np.asarray(n_events, np.float64).reshape(-1, 1))
    return (weight * standardise(np.asarray(attribute_scores, np.float32))
            + (1 - weight) * standardise(np.asarray(event_scores, np.float32))).astype(np.float32)


def describe_segments_by_attributes(membership: sparse.spmatrix, labels: np.ndarray, groups: Sequence[AttributeGroup],
                                    *, min_group: int = MIN_GROUP, top: int = 3) -> list[list[dict]]:
    """Per segment, the attribute groups most over-represented in it: ``attribute, value, share``
    (of the segment's users in the group), ``population`` (share among all users), ``lift`` and
    ``users``, ranked by ``share * log(lift)`` among lifts above 1, as topics are. A group with
    fewer than ``min_group`` users inside the segment is not shown (nor is any group of a segment
    smaller than ``min_group``). ``membership`` CSR ``[n_users, n_groups]``, ``labels`` ``[n_users]``."""
    membership = sparse.csr_matrix(membership)
    labels = np.asarray(labels)
    n_segments = int(labels.max()) + 1 if labels.size else 0
    population = np.asarray(membership.mean(axis=0)).ravel()
    out = []
    for segment in range(n_segments):
        members = labels == segment
        counts = np.asarray(membership[members].sum(axis=0)).ravel()
        share = counts / max(int(members.sum()), 1)
        lift = np.divide(share, population, out=np.zeros_like(share), where=population > 0)
        gain = np.where((lift > 1) & (counts >= min_group), share * np.log(np.maximum(lift, 1e-12)), -np.inf)
        order = [i for i in np.lexsort((np.arange(gain.size), -gain))[:top] if np.isfinite(gain[i])]
        out.append([{"attribute": groups[i].column, "value": groups[i].value, "share": float(share[i]),
                     "population": float(population[i]), "lift": float(lift[i]), "users": int(counts[i])}
                    for i in order])
    return out


def recommend_from_attributes(recommender, model: AttributeModel, attributes: Mapping[str, object], *,
                              item_ids: Sequence | None = None, text_vector: np.ndarray | None = None, k: int = 20,
                              prior: float = 2.0) -> list:
    """Top ``k`` :class:`~tastemap.runtime.recommend.recommender.Recommendation` for a new user
    known by ``attributes`` (``{"age": 24, "occupation": "student"}``) and optionally a few
    ``item_ids`` (liked, latest last; never recommended back) or a short description embedded as
    ``text_vector`` ``[dim]``, blended by :func:`blend_with_events`. A description counts as
    :data:`TEXT_AS_EVENTS` known items and keeps the text cold start's candidates (the items near
    it in its nearest topics), which the attributes then reorder. Each explanation names the
    groups the item is popular with."""
    from tastemap.runtime.recommend.explain import Explanation
    from tastemap.runtime.recommend.recommender import Recommendation

    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise InputError(f"k={k!r} should be an integer >= 1")
    if item_ids and text_vector is not None:
        raise InputError("attributes combine with a few item ids or with a text; give one of the two")
    if model.item_mean_.size != recommender.item_ids_.size:
        model = model.padded(recommender.item_ids_.size)
    scores, groups = model.score_attributes(attributes)
    ranked, seeds, described = scores.astype(np.float64), ((), ()), False
    if item_ids:
        rows = pd.Index(recommender.item_ids_).get_indexer(list(item_ids))
        if (rows < 0).any():
            unknown = [i for i, r in zip(item_ids, rows) if r < 0][:5]
            raise InputError(f"item ids {unknown} are not in the catalog ({recommender.item_ids_.size} items)")
        ranked = blend_with_events(scores[None, :], cold_event_scores(recommender, [rows]), rows.size, prior=prior)[0]
        ranked = ranked.astype(np.float64)
        ranked[rows] = -np.inf
        seeds = (tuple(_plain(recommender.item_ids_[r]) for r in rows), tuple(str(recommender.titles_[r]) for r in rows))
    elif text_vector is not None:
        ranked, described = np.full(scores.size, -np.inf), True
        candidates, text_scores = cold_text_scores(recommender, text_vector)
        ranked[candidates] = blend_with_events(scores[None, candidates], text_scores[None, :], TEXT_AS_EVENTS,
                                               prior=prior)[0]
    top = np.argsort(-ranked, kind="stable")[:k]
    top = top[np.isfinite(ranked[top])]
    fine = len(recommender.profiler_.topic_tree_.levels) - 1
    names = recommender.profiler_.topic_tree_.fine.names
    out = []
    for rank, item in enumerate(top):
        topic = int(recommender.profiler_.item_topics_[item, fine])
        explanation = Explanation(-1, names[topic], "attributes", seed_item_ids=seeds[0], seed_titles=seeds[1],
                                  topic_level=fine, topic_id=topic,
                                  audience=model.audience(int(item), groups, float(scores[item]))
                                  + ("; close to your description" if described else ""))
        out.append(Recommendation(rank=rank + 1, item_id=_plain(recommender.item_ids_[item]),
                                  title=str(recommender.titles_[item]), score=float(ranked[item]), explanation=explanation))
    return out


def add_attribute_descriptions(segmenter, users: UserAttributes, *, min_group: int = MIN_GROUP) -> None:
    """Add ``top_attributes`` (see :func:`describe_segments_by_attributes`) to the fitted
    ``segmenter.segments_``: the attribute groups over-represented in each segment."""
    encoder = AttributeEncoder(min_group=min_group).fit(users)
    membership = encoder.transform(users.aligned(segmenter.user_ids_))
    segmenter.segments_["top_attributes"] = describe_segments_by_attributes(
        membership, segmenter.labels_, encoder.groups_, min_group=min_group)


def describe_groups_by_topics(users: UserAttributes, user_ids: np.ndarray, topic_weights: sparse.spmatrix,
                              topic_names: Sequence[str], *, min_group: int = MIN_GROUP, top: int = 3) -> list[dict]:
    """The mirror of a segment's attributes: per attribute group of the users ``user_ids``
    ``[n_users]`` (groups of at least ``min_group`` of them), the fine topics over-represented
    in its members' profiles (``topic_weights`` ``[n_users, n_topics]``, rows summing to 1):
    ``topic, label, weight`` (the members' mean), ``population`` (everyone's mean) and ``lift``,
    ranked by ``weight * log(lift)`` among lifts above 1, as segments rank them. Aggregates only."""
    user_ids = np.asarray(user_ids)
    matched = int(np.isin(user_ids, users.user_ids).sum())
    if matched == 0:
        raise InputError(f"none of the {user_ids.size} profiled users is in the users table ({users.n_users} users, "
                         f"e.g. {users.user_ids[:3].tolist()}); check the user_id column")
    values = users.aligned(user_ids)  # only the profiled users count towards a group's size
    encoder = AttributeEncoder(min_group=min_group).fit(UserAttributes(user_ids, values, users.numeric))
    membership = encoder.transform(values).tocsc()
    weights = sparse.csr_matrix(topic_weights, dtype=np.float64)
    population = np.asarray(weights.mean(axis=0)).ravel()
    out = []
    for index, group in enumerate(encoder.groups_):
        members = membership[:, index].nonzero()[0]
        mean = np.asarray(weights[members].mean(axis=0)).ravel()
        lift = np.divide(mean, population, out=np.zeros_like(mean), where=population > 0)
        gain = np.where(lift > 1 + 1e-9, mean * np.log(np.maximum(lift, 1e-12)), -np.inf)  # 1e-9: rounding ties
        order = [i for i in np.lexsort((np.arange(gain.size), -gain))[:top] if np.isfinite(gain[i])]
        out.append({"attribute": group.column, "value": group.value, "users": int(members.size),
                    "top_topics": [{"topic": int(i), "label": str(topic_names[i]), "weight": float(mean[i]),
                                    "population": float(population[i]), "lift": float(lift[i])} for i in order]})
    return out


def attributes_text(entries: Sequence[Mapping]) -> str:
    """``occupation student ×2.3 (41%), aged 18–24 ×1.9 (52%)`` for a segment's ``top_attributes``."""
    return ", ".join(f"{AttributeGroup(e['attribute'], e['value']).describe()} ×{e['lift']:.1f} ({e['share']:.0%})"
                     for e in entries)


def cold_event_scores(recommender, given: Sequence[np.ndarray]) -> np.ndarray:
    """Blended scores ``[n_users, n_items]`` float32 on every item for new users known by a few
    items each (``given``: item rows, in the order they were liked), as the recommender's item
    cold start scores them (profile, interests, blend of the standardised components)."""
    from tastemap.runtime.io.interactions import Interactions
    from tastemap.runtime.recommend.recommender import recency_matrix

    counts = np.array([len(items) for items in given])
    if not len(given) or (counts == 0).any():
        raise InputError("every new user needs at least one known item; use the attributes alone otherwise")
    items = np.concatenate([np.asarray(row, np.int64) for row in given])
    cold = Interactions(users=np.repeat(np.arange(len(given)), counts), items=items,
                        timestamps=np.concatenate([np.arange(n) for n in counts]).astype(np.int64),
                        weights=np.ones(items.size, np.float32),
                        user_ids=np.array([f"new user {i}" for i in range(len(given))], dtype=object),
                        item_ids=recommender.item_ids_)
    profiles = recommender.profiler_.transform(cold)
    state = recommender.scoring_state(cold.matrix(), recency_matrix(cold, recommender.recency_half_life), profiles)
    weights = recommender.weights_.as_dict()
    components = recommender.components(np.arange(len(given)), state)
    return sum(weights[name] * values for name, values in components.items() if weights[name] > 0).astype(np.float32)


def cold_text_scores(recommender, text_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The text cold start's candidates ``[m]`` and their scores ``[m]`` for a description
    embedded as ``text_vector`` ``[dim]`` (normalised here), with the recommender's defaults."""
    from tastemap.runtime.recommend.serving import score_text

    vector = np.asarray(text_vector, np.float32).ravel()
    if vector.size != recommender.profiler_.item_vectors_.shape[1]:
        raise InputError(f"the text vector has {vector.size} dimensions; the item vectors have "
                         f"{recommender.profiler_.item_vectors_.shape[1]} (encode the text with the model's encoder)")
    vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    items, scores, _ = score_text(recommender, vector, TEXT_TOPICS, TEXT_SEGMENT_WEIGHT)
    return items, np.asarray(scores, np.float32)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _category_key(column: str, value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    return text[:1].upper() if column in ZIP_COLUMNS else text


def _band_label(low: float, high: float) -> str:
    if np.isinf(low):
        return f"under {_number(high)}"
    if np.isinf(high):
        return f"{_number(low)}+"
    if float(low).is_integer() and float(high).is_integer():
        return f"{_number(low)}–{_number(high - 1)}"
    return f"{_number(low)}–{_number(high)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def _json_float(value: float):
    return None if np.isnan(value) else ("inf" if value == np.inf else "-inf" if value == -np.inf else float(value))


def _from_json_float(value) -> float:
    return float("nan") if value is None else float(value)
