"""Two-stage scoring of a fitted :class:`~tastemap.runtime.recommend.recommender.TastemapRecommender`:
candidates, then the blend on the candidates only (the rule is in
:mod:`~tastemap.runtime.recommend.candidates`).

The components come in three kinds. The collaborative ones (``long_term``, ``short_term``) are
low-rank EASE, ``s = (x · left) · rightᵀ`` less the zero diagonal on the user's own items: their
candidates are the best items of their weighted sum in the index over ``right``. ``interests`` is
sparse (each interest's nearest items). ``category`` and ``literal`` are bilinear in fitted item
features. :func:`score_candidates` returns every candidate of a batch of users as parallel arrays
(row, item, blended score) and each component's weighted standardised value where asked. The
low-rank components share ``right``, so their weighted sum is one inner product per candidate
with one query per user; each one alone is computed only for the recommendations' layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import sparse

from tastemap.runtime.interests.profiles import UserProfiles
from tastemap.runtime.recommend import candidates as stage

SEGMENT = "segment"
"""The pseudo-component of a cold start's segment boost (not a layer of the explanation)."""
OUTSIDE = -1e30
"""The score :func:`candidate_scores` gives an item that is not a candidate."""


@dataclass(frozen=True)
class Scored:
    """The candidates of ``n_rows`` users: ``rows``, ``items`` int64 ``[m]`` (sorted by row, then
    item) and ``scores`` float64 ``[m]``, the sum of the weighted standardised component values
    that :meth:`values` gives at chosen positions (the low-rank ones are summed through one
    query per user, so each is computed only where it is asked for)."""

    rows: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    values: Callable[[np.ndarray], dict]
    """``values(positions)``: name -> float64 values at ``positions``, in the blend's order."""

    def top(self, k: int) -> np.ndarray:
        """Positions of each row's ``k`` best candidates, best first, rows in order."""
        return stage.top_per_row(self.rows, self.items, self.scores, k)

    def layers(self, positions: np.ndarray) -> list[str]:
        """The component that contributes most at each candidate position."""
        values = self.values(positions)
        names = [name for name in values if name != SEGMENT]
        table = np.stack([values[name] for name in names], axis=1)
        return [names[i] for i in np.argmax(table, axis=1)]


def score_candidates(recommender, users: np.ndarray, state, *, segments: np.ndarray | None = None,
                     boost: tuple[float, np.ndarray] | None = None, force: np.ndarray | None = None,
                     keep_seen: bool = False) -> Scored:
    """Score the candidates of state rows ``users`` (see the module docstring).

    ``segments`` int ``[n]``: each user's segment for its favourites (None: the most popular
    items overall). ``boost`` ``(weight, segments)``: add ``weight`` times the standardised
    popularity of each row's segment (a cold start). ``force`` int ``[n]``: one item per row that
    is a candidate whatever (an explanation). Seen items are dropped unless ``keep_seen``.
    """
    users = np.asarray(users, np.int64)
    n_items, n_rows = recommender.item_ids_.size, users.size
    weights = recommender.weights_.as_dict()
    rows_of = {"history": stage.Rows.of(state.history, users), "recency": stage.Rows.of(state.recency, users)}
    components = _components(recommender, users, state, rows_of)
    lowrank = {name: part for name, part in components.items() if part["kind"] == "lowrank"}
    # the user's collaborative query, Σ_c w_c scale_c f_c: the candidates' search and their sum
    query = sum(weights[name] * part["stats"].scale[:, None] * part["factors"] for name, part in lowrank.items())
    key_sets = [_collaborative_candidates(recommender, query) if lowrank else np.zeros(0, np.int64)]
    key_sets += [stage.keys_of(part["raw"]) for part in components.values() if part["kind"] == "sparse"]
    favourites = favourite_items(recommender, segments if boost is None else boost[1], n_rows)
    key_sets.append((np.arange(n_rows, dtype=np.int64)[:, None] * n_items + favourites).ravel())
    keys = stage.sorted_unique(np.concatenate(key_sets))
    if not keep_seen:
        keys = keys[~stage.find_sorted(stage.keys_of(rows_of["history"]), keys)[1]]
    if force is not None:
        keys = np.union1d(keys, np.arange(n_rows, dtype=np.int64) * n_items + np.asarray(force, np.int64))
    rows, items = keys // n_items, keys % n_items
    values = {name: weights[name] * (_raw_values(part, keys, rows, items) - part["stats"].mean[rows])
              * part["stats"].scale[rows] for name, part in components.items() if part["kind"] != "lowrank"}
    if boost is not None:
        popularity, stats = segment_popularity(recommender)
        segment = boost[1][rows]
        values[SEGMENT] = boost[0] * (popularity[segment, items] - stats.mean[segment]) * stats.scale[segment]
    scores = sum(values.values(), np.zeros(keys.size))
    if lowrank:
        scores += _lowrank_sum(recommender.collaborative_, lowrank, weights, query, keys, rows, items,
                               own_items=keep_seen or force is not None)

    def values_at(positions: np.ndarray) -> dict:
        at = {name: _lowrank_values(recommender.collaborative_, lowrank[name], weights[name], keys[positions],
                                    rows[positions], items[positions]) if name in lowrank else values[name][positions]
              for name in components}
        return at | ({SEGMENT: values[SEGMENT][positions]} if SEGMENT in values else {})

    return Scored(rows=rows, items=items, scores=scores, values=values_at)


def candidate_scores(recommender, users: np.ndarray, state) -> np.ndarray:
    """The two-stage scores as rows ``[n, n_items]`` float32 for evaluation: each candidate's
    blended score, :data:`OUTSIDE` for every other item."""
    scored = score_candidates(recommender, users, state, segments=recommender._segments_of(users)
                              if state is recommender.state_ else None, keep_seen=True)
    out = np.full((len(users), recommender.item_ids_.size), OUTSIDE, np.float32)
    out[scored.rows, scored.items] = scored.scores
    return out


def _components(recommender, users: np.ndarray, state, rows_of: dict) -> dict:
    """The weighted components of ``users``, each a dict with its ``kind`` (``lowrank``,
    ``sparse`` or ``bilinear``), what its values need and its catalogue-wide ``stats``
    (``rows_of``: the users' rows of ``state.history`` and ``state.recency``)."""
    out = {}
    histories = {name: rows_of["history" if name == "long_term" else "recency"] for name in recommender._weighted()
                 if name in ("long_term", "short_term") and recommender.collaborative_ is not None}
    lowrank = _lowrank_components(recommender, users.size, histories) if histories else {}
    for name in recommender._weighted():
        if name in lowrank:
            out[name] = lowrank[name]
        elif name == "interests":
            raw = recommender._interest_priorities(users, state, rows_of["recency"])
            out[name] = {"kind": "sparse", "raw": raw, "stats": stage.sparse_stats(raw)}
        elif name == "category" and state.categories is not None and recommender.profiler_.category_levels_:
            items = recommender.profiler_.category_levels_[-1].items
            user_side = stage.csr_rows(state.categories, users)
            out[name] = {"kind": "bilinear", "users": user_side, "items": items,
                         "stats": cached(recommender, "category", items, stage.Bilinear.of).stats(user_side)}
        elif name == "literal" and state.literal is not None:
            vectors = recommender.profiler_.item_vectors_
            user_side = state.literal[users]
            out[name] = {"kind": "bilinear", "users": user_side, "items": vectors,
                         "stats": cached(recommender, "literal", vectors, stage.Bilinear.of).stats(user_side)}
    return out


def _lowrank_components(recommender, n_rows: int, histories: dict) -> dict:
    """The low-rank components (name -> the users' rows of its history) of ``n_rows`` users,
    computed for every component at once on their histories stacked."""
    model = recommender.collaborative_
    stacked = stage.Rows.stack(list(histories.values()))
    factors = model.user_factors(stacked)
    # one product with the Gram matrix of ``right`` for every component: it is read once
    totals, squares = cached(recommender, "collaborative", model, _right_sums).sums(factors)
    # the zero diagonal: the user's own items score (u · right_j − x_j · diagonal_j), not u · right_j
    rows = np.repeat(np.arange(stacked.shape[0]), np.diff(stacked.indptr))
    plain = stage.pair_inner_products(factors, rows, model.right, stacked.indices)
    on_diagonal = stacked.data * model.diagonal[stacked.indices]
    own = plain - on_diagonal
    stats = stage.Stats.from_sums(totals - np.bincount(rows, on_diagonal, minlength=stacked.shape[0]),
                                  squares + np.bincount(rows, own**2 - plain**2, minlength=stacked.shape[0]),
                                  model.n_items)
    out = {}
    for position, (name, history) in enumerate(histories.items()):
        part = slice(position * n_rows, (position + 1) * n_rows)
        out[name] = {"kind": "lowrank", "factors": factors[part], "history": history,
                     "stats": stage.Stats(mean=stats.mean[part], scale=stats.scale[part])}
    return out


def _right_sums(model) -> stage.Bilinear:
    """The :class:`~tastemap.runtime.recommend.candidates.Bilinear` of the low-rank EASE ``right``:
    the sums summed at fit, else summed now (weights built without them)."""
    if model.right_gram is None:
        return stage.Bilinear.of(model.right)
    return stage.Bilinear(total=model.right_total, gram=model.right_gram, n_items=model.n_items)


def _raw_values(part: dict, keys: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """A sparse or bilinear component's raw values at the candidate pairs (``keys`` = ``rows *
    n_items + items``, sorted)."""
    if part["kind"] == "sparse":
        return stage.gather(part["raw"], keys)
    return stage.row_values(part["users"], part["items"], rows, items)


def _lowrank_sum(model, parts: dict, weights: dict, query: np.ndarray, keys: np.ndarray, rows: np.ndarray,
                 items: np.ndarray, *, own_items: bool) -> np.ndarray:
    """The sum of the weighted standardised low-rank components at the candidate pairs: one
    inner product per pair with the users' ``query`` ``Σ_c w_c scale_c f_c`` (the components share
    ``right``), less the means and, where the pairs may hold the users' own items
    (``own_items``), the zero diagonal on them."""
    out = stage.pair_inner_products(np.asarray(query, np.float32), rows, model.right, items)
    for name, part in parts.items():
        stats = part["stats"]
        on_diagonal = stage.gather(part["history"], keys) * model.diagonal[items] if own_items else 0.0
        out -= weights[name] * stats.scale[rows] * (on_diagonal + stats.mean[rows])
    return out


def _lowrank_values(model, part: dict, weight: float, keys: np.ndarray, rows: np.ndarray,
                    items: np.ndarray) -> np.ndarray:
    """One low-rank component's weighted standardised values at the pairs ``keys`` (sorted)."""
    raw = stage.pair_inner_products(part["factors"], rows, model.right, items) \
        - stage.gather(part["history"], keys) * model.diagonal[items]
    return weight * (raw - part["stats"].mean[rows]) * part["stats"].scale[rows]


def _collaborative_candidates(recommender, query: np.ndarray) -> np.ndarray:
    """Keys of the ``n_candidates`` best items of the users' collaborative ``query`` (the weighted,
    standardised sum of the low-rank components): one inner-product search per user over the
    leading columns of ``right`` (see :data:`~tastemap.runtime.recommend.candidates.SEARCH_DIMS`)."""
    index = recommender.collaborative_index_
    k = min(recommender.n_candidates, index.ntotal)
    if query.shape[0] >= stage.SINGLE_THREAD_QUERIES and stage.index_kind(index) == "exact":
        vectors = cached(recommender, "collaborative search", recommender.collaborative_.right,
                         lambda right: np.ascontiguousarray(right[:, : index.d]))
        found = stage.best_items(vectors, query[:, : index.d], k)
    else:
        found = stage.search(index, query[:, : index.d], k)
    rows = np.repeat(np.arange(found.shape[0], dtype=np.int64), found.shape[1])
    found = found.ravel()
    return rows[found >= 0] * recommender.item_ids_.size + found[found >= 0]


def score_text(recommender, vector: np.ndarray, n_topics: int, segment_weight: float):
    """A text cold start's candidates and scores: the items nearest to the unit ``vector`` in the
    item index (and the nearest segment's favourites), kept when in one of the ``n_topics`` fine
    topics nearest to it, scored by their similarity to it standardised over the catalogue plus
    ``segment_weight`` times the segment's standardised popularity. Returns ``(items [m],
    scores [m], segment label or None)``."""
    tree = recommender.profiler_.topic_tree_
    fine = tree.fine
    similarity = fine.centroids @ vector
    nearest = np.argsort(-similarity, kind="stable")[: max(1, min(n_topics, fine.n_topics))]
    topic_weights = np.zeros(fine.n_topics, np.float32)
    topic_weights[nearest] = np.maximum(similarity[nearest], 1e-6)
    topic_weights /= topic_weights.sum()
    profile = _topic_only_profile(recommender.profiler_.profiles_, tree, topic_weights)
    segment, label = recommender._nearest_segment(profile)
    vectors = recommender.profiler_.item_vectors_
    found = stage.search(recommender.index_, vector[None, :], min(recommender.index_.ntotal, 4 * recommender.n_candidates))
    items = found[0][found[0] >= 0]
    if segment is not None:
        items = np.union1d(items, favourite_items(recommender, np.array([segment]), 1)[0])
    items = np.unique(items[np.isin(fine.labels[items], nearest)])
    stats = cached(recommender, "text", vectors, stage.Bilinear.of).stats(vector[None, :])
    scores = (vectors[items] @ vector - stats.mean[0]) * stats.scale[0]
    if segment is not None and segment_weight > 0:
        popularity, segment_stats = segment_popularity(recommender)
        scores = scores + segment_weight * (popularity[segment, items] - segment_stats.mean[segment]) \
            * segment_stats.scale[segment]
    return items, scores, label


def favourite_items(recommender, segments: np.ndarray | None, n_rows: int) -> np.ndarray:
    """The :data:`~tastemap.runtime.recommend.candidates.N_FAVOURITES` most popular items of each
    row's segment ``[n_rows, m]`` (without segments: of all training users)."""
    if segments is not None and recommender.segment_popularity_ is not None:
        popularity, _ = segment_popularity(recommender)
        return cached(recommender, "favourites", popularity, _top_items)[np.asarray(segments)]
    history = recommender.state_.history
    overall = cached(recommender, "overall", history, lambda h: _top_items(np.asarray(h.sum(axis=0))))
    return np.broadcast_to(overall[0], (n_rows, overall.shape[1]))


def segment_popularity(recommender) -> tuple[np.ndarray, stage.Stats]:
    """The per-segment item popularity ``[n_segments, n_items]`` and its per-segment :class:`Stats`."""
    popularity = np.asarray(recommender.segment_popularity_)
    total, squares = cached(recommender, "segment sums", popularity, lambda p: (
        p.sum(axis=1, dtype=np.float64), np.square(p, dtype=np.float64).sum(axis=1)))
    return popularity, stage.Stats.from_sums(total, squares, popularity.shape[1])


def popularity_changed(recommender, segments: np.ndarray, items: np.ndarray, before: np.ndarray) -> None:
    """Keep what is derived from ``segment_popularity_`` right after an update changed, in place,
    its entries ``(segments, items)`` from ``before``: the sums behind the segment
    :class:`Stats`, and the favourites of a segment whose top items may have changed."""
    cache = recommender.__dict__.get("_serving_cache", {})
    popularity = recommender.segment_popularity_
    after = popularity[segments, items].astype(np.float64)
    before = np.asarray(before, np.float64)
    hit = cache.get("segment sums")
    if hit is not None and hit[0] is popularity:
        np.add.at(hit[1][0], segments, after - before)
        np.add.at(hit[1][1], segments, after**2 - before**2)
    hit = cache.get("favourites")
    if hit is not None and hit[0] is popularity:
        favourites = hit[1]
        for segment in np.unique(segments):
            mine = segments == segment
            held, changed = favourites[segment], items[mine]
            if np.isin(changed[after[mine] < before[mine]], held).any():
                # a favourite fell (a user left the segment): what follows it is known only to a scan
                favourites[segment] = _top_items(popularity[segment])[0]
                continue
            # every other item is at most the floor: the top is among the favourites and the risers
            risers = changed[after[mine] > popularity[segment, held].min()]
            if risers.size:
                pool = np.union1d(held, risers)
                top = np.argsort(-popularity[segment, pool], kind="stable")[: held.size]
                favourites[segment] = np.sort(pool[top])


def _topic_only_profile(reference: UserProfiles, tree, topic_weights: np.ndarray) -> UserProfiles:
    """A one-user profile with the given fine-topic weights (no categories), for segment lookup."""
    levels = []
    for level in tree.levels:
        if level is tree.fine:
            weights = topic_weights
        else:
            weights = np.bincount(_ancestor(tree, level), weights=topic_weights, minlength=level.n_topics)
        levels.append(sparse.csr_matrix(weights[None, :].astype(np.float32)))
    categories = [sparse.csr_matrix((1, len(names)), dtype=np.float32) for names in reference.category_names]
    return UserProfiles(user_ids=np.array(["new user"], dtype=object), n_events=np.zeros(1, np.int64),
                        last_seen=np.zeros(1, np.int64), topics=levels, topic_names=reference.topic_names,
                        short_term=levels[-1], categories=categories, category_names=reference.category_names)


def _ancestor(tree, level) -> np.ndarray:
    """For every fine topic, its ancestor topic at ``level``."""
    depth = tree.levels.index(level)
    mapping = np.arange(tree.fine.n_topics)
    for lower in range(len(tree.levels) - 1, depth, -1):
        mapping = tree.levels[lower].parents[mapping]
    return mapping


def _top_items(popularity: np.ndarray) -> np.ndarray:
    popularity = np.atleast_2d(np.asarray(popularity, np.float64))
    m = min(stage.N_FAVOURITES, popularity.shape[1])
    part = np.argpartition(-popularity, m - 1, axis=1)[:, :m]
    return np.sort(part, axis=1)


def cached(recommender, name: str, source, compute):
    """``compute(source)``, kept on the recommender while ``source`` is the same object (fitted
    state replaced by an update is a new object, so its derived values are recomputed)."""
    cache = recommender.__dict__.setdefault("_serving_cache", {})
    hit = cache.get(name)
    if hit is None or hit[0] is not source:
        hit = cache[name] = (source, compute(source))
    return hit[1]
