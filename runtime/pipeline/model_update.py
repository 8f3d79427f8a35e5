"""Online updates of a fitted model: new events folded into the users they touch, new items placed
into the fitted topics.

For every touched user (old or new) the user's whole history (stored events plus new ones) goes
through the fitted profiler's ``transform`` (time, category and topic layers, interest clusters,
with the fitted topic tree), the scoring rows (binary history, recency weights, interest shares)
are rebuilt, and the user is assigned to the nearest fitted segment. Every one of these depends on
the user's own events only, so a touched user's state equals a rebuild of all events with the same
fitted topics; untouched users keep theirs. Segment sizes, shares and per-segment popularity are
adjusted exactly. What waits for the next batch fit is listed in :data:`DEFERRED`.

The rows of known users go to the recommender's overlay (:mod:`~tastemap.runtime.recommend.user_rows`),
so that an update costs the touched users' rows; new users are appended to the fitted arrays at once.
Besides those rows an update reads fitted state only (the profiler's interest scale, the item ids'
hash index, the event log's index by user, the popularity entries of the users' items), so that
its cost does not grow with the catalogue or the number of users.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.interests.layers import category_levels
from tastemap.runtime.interests.profiles import UserProfiles
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.pipeline.model_state import EventLog, pad_columns, resize
from tastemap.runtime.recommend.candidates import nearest_items, row_positions
from tastemap.runtime.recommend.recommender import TastemapRecommender, recency_matrix
from tastemap.runtime.recommend.serving import popularity_changed
from tastemap.runtime.recommend.user_rows import (assign, concat_interests, concat_profiles, take_interests,
                                                 take_profiles, take_rows, writable)

logger = logging.getLogger(__name__)

REFRESHED = (
    "touched users: time layer (short- and long-term topic weights), category and topic layers, user vectors, "
    "interest clusters (medoids, importance, members), segment assignment (nearest fitted segment)",
    "touched users: the history and recency rows used for scoring (long- and short-term collaborative components, "
    "seen-item filter) and the interest shares",
    "segment sizes, shares and per-segment item popularity (exact)",
    "new users: profiled, segmented and servable like training users",
    "new items (with catalog rows): vector, topic at every level (nearest fitted centroid), nodes of the fitted "
    "category tree, the item index and their own nearest items, topic sizes",
)
DEFERRED = (
    "collaborative item-item weights (new events do not change them; new items have no collaborative weight)",
    "the catalogue's similarity scale of the interest cut (new items are placed into it, not added to it)",
    "the nearest items of the items already held (new items enter them at the next fit)",
    "topics: centroids, keywords, labels and medoids; the category tree (paths of new items outside it are cut "
    "to their longest known prefix)",
    "segments: centroids, labels, top topics and the number of segments",
    "blend weights and the held-out split",
)


@dataclass(frozen=True)
class UpdateSummary:
    """What :func:`update_model` did: events read, added and dropped (duplicates; unknown items,
    with examples), users updated and added, items added, segment moves and seconds."""

    n_events_read: int
    n_events_added: int
    n_duplicates: int
    n_unknown_items: int
    unknown_item_examples: list
    n_users_updated: int
    n_new_users: int
    n_new_items: int
    n_known_catalog_rows: int
    n_segment_changes: int
    seconds: float
    refreshed: tuple = field(default=REFRESHED, repr=False)
    deferred: tuple = field(default=DEFERRED, repr=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def record(self) -> dict:
        """The counts and seconds (not the fixed lists of what is refreshed and what waits), as the
        model's update history keeps them."""
        return {f.name: list(value) if isinstance(value := getattr(self, f.name), list) else value
                for f in dataclasses.fields(self) if f.name not in ("refreshed", "deferred")}


def add_items(recommender: TastemapRecommender, categories: list, catalog: pd.DataFrame,
              vectors: np.ndarray) -> tuple[list, int]:
    """Place the ``catalog`` rows (validated, new ids only) with unit ``vectors`` ``[m, dim]`` into
    the fitted topics and category tree; returns the extended ``categories`` and ``m``."""
    profiler = recommender.profiler_
    m = len(catalog)
    if m == 0:
        return categories, 0
    recommender.settle()
    tree = profiler.topic_tree_
    labels = tree.assign(vectors)
    levels = [dataclasses.replace(level, labels=np.concatenate([level.labels, labels[:, d]]),
                                  sizes=level.sizes + np.bincount(labels[:, d], minlength=level.n_topics))
              for d, level in enumerate(tree.levels)]
    profiler.topic_tree_ = dataclasses.replace(tree, levels=levels)
    profiler.item_topics_ = np.concatenate([profiler.item_topics_, labels])
    known = [set(level.names.tolist()) for level in profiler.category_levels_]
    categories = categories + [_known_paths(paths, known) for paths in catalog["categories"]]
    profiler.category_levels_ = category_levels(categories)
    from tastemap.runtime.io.events import render_item_texts

    profiler.item_ids_ = np.concatenate([profiler.item_ids_, catalog["item_id"].to_numpy()])
    profiler.item_titles_ = np.concatenate([profiler.item_titles_, catalog["title"].to_numpy(dtype=object)])
    profiler.item_texts_ = list(profiler.item_texts_) + render_item_texts(catalog, profiler.text_template)
    profiler.item_vectors_ = np.concatenate([profiler.item_vectors_, vectors]).astype(np.float32)
    recommender.item_ids_ = profiler.item_ids_
    recommender.titles_ = np.asarray(profiler.item_titles_).astype(str)
    recommender.index_.add(np.ascontiguousarray(vectors, dtype=np.float32))
    n_items = profiler.item_ids_.size
    neighbours = nearest_items(recommender.index_, vectors, recommender.item_neighbours_.shape[1])
    recommender.item_neighbours_ = np.concatenate([recommender.item_neighbours_, neighbours])
    if recommender.collaborative_ is not None:
        recommender.collaborative_ = recommender.collaborative_.padded(n_items)
    if recommender.segment_popularity_ is not None:
        recommender.segment_popularity_ = pad_columns(recommender.segment_popularity_, n_items)
    state = recommender.state_
    recommender.state_ = dataclasses.replace(state, history=resize(state.history, n_items),
                                             recency=resize(state.recency, n_items))
    return categories, m


def fold_events(recommender: TastemapRecommender, log: EventLog, users: np.ndarray, items: np.ndarray,
                timestamps: np.ndarray, weights: np.ndarray, user_ids: np.ndarray) -> dict:
    """Fold aligned new events into the model (``users`` index ``user_ids``; ``items`` are item
    rows): append them to ``log`` and rebuild the touched users. Duplicates of stored events or of
    earlier new ones (same user, item and timestamp) are dropped. Returns counts for the summary."""
    known_users = recommender.user_index_
    n_old = known_users.size
    rows = known_users.get_indexer(user_ids)
    unseen = np.flatnonzero(rows < 0)
    rows[unseen] = n_old + np.arange(unseen.size)  # provisional rows of new users, in id order
    event_rows = rows[users]
    stored = log.of_users(np.unique(event_rows))  # their stored events, read once
    keep = _not_stored(stored, event_rows, items, timestamps)
    event_rows, items, timestamps, weights = event_rows[keep], items[keep], timestamps[keep], weights[keep]
    counts = {"n_events_added": int(event_rows.size), "n_duplicates": int((~keep).sum()), "n_users_updated": 0,
              "n_new_users": 0, "n_segment_changes": 0}
    if event_rows.size == 0:
        return counts
    touched = np.unique(event_rows)
    arriving = touched[touched >= n_old]  # new users left with events, renumbered densely
    event_rows, touched = (np.where(row < n_old, row, n_old + np.searchsorted(arriving, row))  # no users-wide table
                           for row in (event_rows, touched))
    if arriving.size:
        recommender.user_index_ = known_users.append(pd.Index(np.asarray(user_ids)[unseen[arriving - n_old]]))
    log.append(event_rows, items, timestamps, weights)

    # the touched users' events in the log's order (what ``log.of_users(touched)`` gives): their
    # stored events (of old users, whose rows the renumbering keeps), then the ones just appended
    theirs = np.isin(stored[0], touched)
    user_rows, item_rows, times, event_weights = (np.concatenate([column[theirs], new]) for column, new in
                                                  zip(stored, (event_rows, items, timestamps, weights)))
    local = Interactions(users=np.searchsorted(touched, user_rows), items=item_rows, timestamps=times,
                         weights=np.asarray(event_weights, np.float32),
                         user_ids=np.asarray(recommender.user_index_)[touched], item_ids=recommender.item_ids_)
    profiles = recommender.profiler_.transform(local)
    state = recommender.scoring_state(local.matrix(), recency_matrix(local, recommender.recency_half_life), profiles)
    counts["n_segment_changes"] = _move_segments(recommender, touched, n_old, profiles, state.history)
    counts.update(n_users_updated=int((touched < n_old).sum()), n_new_users=int(arriving.size))
    if not arriving.size:  # known users only: their rows go to the overlay, nobody else's are copied
        recommender.overlay(touched, profiles, state)
        return counts
    recommender.settle()
    source = np.arange(recommender.user_index_.size)
    source[touched] = n_old + np.arange(touched.size)  # rows of stack([old users, touched users])
    profiler = recommender.profiler_
    profiler.profiles_ = take_profiles(concat_profiles(profiler.profiles_, profiles), source)
    old = recommender.state_
    recommender.state_ = dataclasses.replace(
        old,
        history=take_rows(sparse.vstack([old.history, state.history], format="csr"), source),
        recency=take_rows(sparse.vstack([old.recency, state.recency], format="csr"), source),
        interests=take_interests(concat_interests(old.interests, state.interests), source),
        categories=profiler.profiles_.categories[-1] if profiler.profiles_.categories else None,
    )
    return counts


def _not_stored(stored: tuple, rows: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """True for new events that repeat neither a ``stored`` event (the columns ``users, items,
    timestamps, weights`` of the users' stored events) nor an earlier new one."""
    events = [np.concatenate(pair) for pair in ((stored[0], rows), (stored[1], items), (stored[2], timestamps))]
    order = np.lexsort(events[::-1])  # stable: each event's first occurrence leads its equals, stored ones first
    ordered = [column[order] for column in events]
    repeat = np.zeros(order.size, bool)
    repeat[order[1:]] = np.logical_and.reduce([column[1:] == column[:-1] for column in ordered])
    return ~repeat[stored[0].size:]


def _move_segments(recommender: TastemapRecommender, touched: np.ndarray, n_old: int, profiles: UserProfiles,
                   history: sparse.csr_matrix) -> int:
    """Assign the touched users to their nearest fitted segment and adjust sizes, shares and the
    per-segment popularity exactly; returns how many users changed segment (new users count).
    Works on the touched users' rows only: the popularity entries of their items, nothing of
    catalogue size."""
    segmenter = recommender.segmenter_
    if segmenter is None:
        return 0
    k = segmenter.n_segments_
    labels = segmenter.predict(profiles).astype(np.int64)
    was_old = touched < n_old
    previous = np.full(touched.size, -1, np.int64)
    previous[was_old] = segmenter.labels_[touched[was_old]]
    current, at = recommender.rows_of(touched[was_old])
    # the new rows count in the new segment, the replaced rows leave the previous one
    segments, items, change = _segment_change(labels, history, previous[was_old], current.history, at)
    popularity = writable(recommender.segment_popularity_, np.float32)  # in place: the change touches few entries
    before = popularity[segments, items]
    popularity[segments, items] = before + change
    recommender.segment_popularity_ = popularity
    popularity_changed(recommender, segments, items, before)
    n_new = touched.size - int(was_old.sum())
    if n_new:
        segmenter.labels_ = np.concatenate([segmenter.labels_, np.full(n_new, -1, np.int64)])
        segmenter.user_ids_ = np.asarray(recommender.user_index_)
    segmenter.labels_ = assign(segmenter.labels_, touched, labels)
    moved = labels != previous
    if moved.any():  # sizes (and, with new users, shares) change; the table is replaced, not edited
        sizes = segmenter.segments_["size"].to_numpy(np.int64) + np.bincount(labels[moved], minlength=k) \
            - np.bincount(previous[moved & was_old], minlength=k)
        table = segmenter.segments_.copy()
        table["size"] = sizes
        table["share"] = sizes / max(segmenter.labels_.size, 1)
        segmenter.segments_ = table
    return int(moved.sum())


def _segment_change(labels: np.ndarray, history: sparse.csr_matrix, previous: np.ndarray,
                    old_history: sparse.csr_matrix, old_rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(segments, items, change)``: the non-zero entries of ``onehot(labels).T @ history -
    onehot(previous).T @ old_history[old_rows]`` (float32), keyed segment-major, from the users'
    rows alone (a sparse product would allocate arrays as wide as the catalogue)."""
    old_positions = row_positions(old_history.indptr, old_rows)
    old_counts = old_history.indptr[old_rows + 1] - old_history.indptr[old_rows]
    segments = np.concatenate([np.repeat(labels, np.diff(history.indptr)), np.repeat(previous, old_counts)])
    items = np.concatenate([history.indices, old_history.indices[old_positions]]).astype(np.int64)
    values = np.concatenate([history.data, -old_history.data[old_positions]]).astype(np.float32)
    known = segments >= 0  # a user without a segment adds to none
    keys, where = np.unique(segments[known] * np.int64(history.shape[1]) + items[known], return_inverse=True)
    change = np.zeros(keys.size, np.float32)
    np.add.at(change, where, values[known])
    nonzero = change != 0
    keys = keys[nonzero]
    return keys // history.shape[1], keys % history.shape[1], change[nonzero]


def _known_paths(paths, known: list[set]) -> list[tuple]:
    """Each category path cut to its longest prefix that is a node of the fitted tree (paths
    with no known first level are dropped)."""
    out = []
    for path in paths:
        depth = 0
        while depth < min(len(path), len(known)) and " > ".join(path[: depth + 1]) in known[depth]:
            depth += 1
        if depth:
            out.append(tuple(path[:depth]))
    return out


def check_updatable(recommender: TastemapRecommender) -> None:
    if recommender.profiler_.time_reference != "user":
        raise InputError(
            f"time_reference={recommender.profiler_.time_reference!r}: ages measured from the whole log's latest "
            "event change every user when events arrive, so an update cannot fold in one user at a time; "
            "fit with time_reference='user' (the default) to update online"
        )


def timed_summary(started: float, counts: dict, **extra) -> UpdateSummary:
    return UpdateSummary(seconds=round(time.perf_counter() - started, 4), **counts, **extra)
