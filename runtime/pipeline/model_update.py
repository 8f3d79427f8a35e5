"""Online updates of a fitted model: new events folded into the users they touch, new items placed
into the fitted topics.

For every touched user (old or new) the user's whole history (stored events plus new ones) goes
through the fitted profiler's ``transform`` (time, category and topic layers, interest clusters,
with the fitted topic tree), the scoring rows (binary history, recency weights, interest shares)
are rebuilt, and the user is assigned to the nearest fitted segment. Every one of these depends on
the user's own events only, so a touched user's state equals a rebuild of all events with the same
fitted topics; untouched users keep theirs. Segment sizes, shares and per-segment popularity are
adjusted exactly. What waits for the next batch fit is listed in :data:`DEFERRED`.
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
from tastemap.runtime.interests.layers import category_levels, onehot
from tastemap.runtime.interests.profiles import UserInterests, UserProfiles
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.pipeline.model_state import EventLog, pad_columns, resize
from tastemap.runtime.recommend.candidates import nearest_items
from tastemap.runtime.recommend.recommender import TastemapRecommender, recency_matrix

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


def add_items(recommender: TastemapRecommender, categories: list, catalog: pd.DataFrame,
              vectors: np.ndarray) -> tuple[list, int]:
    """Place the ``catalog`` rows (validated, new ids only) with unit ``vectors`` ``[m, dim]`` into
    the fitted topics and category tree; returns the extended ``categories`` and ``m``."""
    profiler = recommender.profiler_
    m = len(catalog)
    if m == 0:
        return categories, 0
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
    keep = _not_stored(log, event_rows, items, timestamps)
    event_rows, items, timestamps, weights = event_rows[keep], items[keep], timestamps[keep], weights[keep]
    counts = {"n_events_added": int(event_rows.size), "n_duplicates": int((~keep).sum()), "n_users_updated": 0,
              "n_new_users": 0, "n_segment_changes": 0}
    if event_rows.size == 0:
        return counts
    touched = np.unique(event_rows)
    arriving = touched[touched >= n_old]  # new users left with events, renumbered densely
    renumber = np.arange(n_old + unseen.size)
    renumber[arriving] = n_old + np.arange(arriving.size)
    event_rows, touched = renumber[event_rows], renumber[touched]
    if arriving.size:
        recommender.user_index_ = known_users.append(pd.Index(np.asarray(user_ids)[unseen[arriving - n_old]]))
    log.append(event_rows, items, timestamps, weights)

    user_rows, item_rows, times, event_weights = log.of_users(touched)
    local = Interactions(users=np.searchsorted(touched, user_rows), items=item_rows, timestamps=times,
                         weights=event_weights, user_ids=np.asarray(recommender.user_index_)[touched],
                         item_ids=recommender.item_ids_)
    profiles = recommender.profiler_.transform(local)
    state = recommender.scoring_state(local.matrix(), recency_matrix(local, recommender.recency_half_life), profiles)
    counts["n_segment_changes"] = _move_segments(recommender, touched, n_old, profiles, state.history)
    counts.update(n_users_updated=int((touched < n_old).sum()), n_new_users=int(arriving.size))
    if not arriving.size:  # known users only: their rows are replaced, nobody else's are copied
        _replace_users(recommender, touched, profiles, state)
        return counts
    source = np.arange(recommender.user_index_.size)
    source[touched] = n_old + np.arange(touched.size)  # rows of stack([old users, touched users])
    profiler = recommender.profiler_
    profiler.profiles_ = take_profiles(concat_profiles(profiler.profiles_, profiles), source)
    old = recommender.state_
    recommender.state_ = dataclasses.replace(
        old,
        history=_take(sparse.vstack([old.history, state.history], format="csr"), source),
        recency=_take(sparse.vstack([old.recency, state.recency], format="csr"), source),
        interests=take_interests(concat_interests(old.interests, state.interests), source),
        categories=profiler.profiles_.categories[-1] if profiler.profiles_.categories else None,
    )
    return counts


def _replace_users(recommender: TastemapRecommender, rows: np.ndarray, profiles: UserProfiles, state) -> None:
    """Put the new profiles and scoring rows of known users ``rows`` (sorted) in place of theirs."""
    profiler = recommender.profiler_
    old = profiler.profiles_
    profiler.profiles_ = dataclasses.replace(
        old,
        n_events=_assign(old.n_events, rows, profiles.n_events), last_seen=_assign(old.last_seen, rows, profiles.last_seen),
        topics=[replace_rows(a, rows, b) for a, b in zip(old.topics, profiles.topics)],
        short_term=replace_rows(old.short_term, rows, profiles.short_term),
        categories=[replace_rows(a, rows, b) for a, b in zip(old.categories, profiles.categories)],
        vectors=_assign(old.vectors, rows, profiles.vectors),
        short_vectors=_assign(old.short_vectors, rows, profiles.short_vectors),
        interests=replace_interests(old.interests, rows, profiles.interests),
    )
    current = recommender.state_
    # the scoring interests are the profile's with recency shares: splice the shares, share the rest
    (share,) = _splice(current.interests.indptr, current.interests.share, rows, state.interests.indptr,
                       state.interests.share)
    recommender.state_ = dataclasses.replace(
        current,
        history=replace_rows(current.history, rows, state.history),
        recency=replace_rows(current.recency, rows, state.recency),
        interests=dataclasses.replace(profiler.profiles_.interests, share=share),
        categories=profiler.profiles_.categories[-1] if profiler.profiles_.categories else None,
    )


def _assign(array: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``array`` with ``array[rows] = values``, in place once it is a writable array of its own (a
    memory-mapped or shared array is copied the first time)."""
    if not (isinstance(array, np.ndarray) and type(array) is np.ndarray and array.flags.writeable
            and array.flags.owndata):
        array = np.array(array)
    array[rows] = values
    return array


def replace_rows(matrix: sparse.csr_matrix, rows: np.ndarray, new: sparse.csr_matrix) -> sparse.csr_matrix:
    """``matrix`` with its rows ``rows`` (sorted) replaced by the rows of ``new``: one copy of the
    arrays, no row-by-row indexing."""
    indptr = matrix.indptr
    lengths = np.diff(indptr)
    lengths[rows] = np.diff(new.indptr)
    out_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(indptr.dtype)
    indices, data = _splice(indptr, matrix.indices, matrix.data, rows, new.indptr, new.indices, new.data)
    return sparse.csr_matrix((data, indices, out_indptr), shape=(matrix.shape[0], max(matrix.shape[1], new.shape[1])))


def replace_interests(interests: UserInterests, rows: np.ndarray, new: UserInterests) -> UserInterests:
    """``interests`` with the interests of users ``rows`` (sorted) replaced by those of ``new``."""
    fields = ("medoid", "importance", "share", "size", "topic")
    spliced = _splice(interests.indptr, *(getattr(interests, f) for f in fields), rows,
                      new.indptr, *(getattr(new, f) for f in fields))
    counts = np.diff(interests.indptr)
    counts[rows] = np.diff(new.indptr)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    # members: the replaced users' interests span member ranges [member_indptr[indptr[r]], ...[indptr[r + 1]])
    member_bounds = interests.member_indptr[interests.indptr]
    new_member_bounds = new.member_indptr[new.indptr]
    (members,) = _splice(member_bounds, interests.members, rows, new_member_bounds, new.members)
    sizes = dict(zip(fields, spliced))["size"]
    return UserInterests(indptr=indptr, member_indptr=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                         members=members, **dict(zip(fields, spliced)))


def _splice(bounds: np.ndarray, *arrays_and_new) -> tuple[np.ndarray, ...]:
    """Arrays whose row ``r`` spans ``bounds[r]:bounds[r + 1]``, with rows ``rows`` (sorted)
    replaced by the rows of the new arrays (spanning ``new_bounds``): called as
    ``_splice(bounds, *arrays, rows, new_bounds, *new_arrays)``."""
    n = (len(arrays_and_new) - 2) // 2
    arrays, rows, new_bounds, new_arrays = arrays_and_new[:n], arrays_and_new[n], arrays_and_new[n + 1], arrays_and_new[n + 2:]
    kept_starts = np.concatenate([[0], np.asarray(rows) + 1])
    kept_ends = np.concatenate([rows, [len(bounds) - 1]])
    out = []
    for array, fresh in zip(arrays, new_arrays):
        pieces = []
        for position, (start, end) in enumerate(zip(kept_starts, kept_ends)):
            pieces.append(array[bounds[start] : bounds[end]])
            if position < len(rows):
                pieces.append(fresh[new_bounds[position] : new_bounds[position + 1]])
        out.append(np.concatenate(pieces).astype(array.dtype, copy=False))
    return tuple(out)


def _not_stored(log: EventLog, rows: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """True for new events that repeat neither a stored event nor an earlier new one."""
    users, stored_items, stored_times, _ = log.of_users(np.unique(rows))
    stored = pd.DataFrame({"u": users, "i": stored_items, "t": stored_times})
    incoming = pd.DataFrame({"u": rows, "i": items, "t": timestamps})
    both = pd.concat([stored, incoming], ignore_index=True)
    return ~both.duplicated().to_numpy()[len(stored):]


def _move_segments(recommender: TastemapRecommender, touched: np.ndarray, n_old: int, profiles: UserProfiles,
                   history: sparse.csr_matrix) -> int:
    """Assign the touched users to their nearest fitted segment and adjust sizes, shares and the
    per-segment popularity exactly; returns how many users changed segment (new users count)."""
    segmenter = recommender.segmenter_
    if segmenter is None:
        return 0
    k = segmenter.n_segments_
    labels = segmenter.predict(profiles).astype(np.int64)
    was_old = touched < n_old
    previous = np.full(touched.size, -1, np.int64)
    previous[was_old] = segmenter.labels_[touched[was_old]]
    old_rows = recommender.state_.history[touched[was_old]]
    popularity = np.array(recommender.segment_popularity_, dtype=np.float32)
    popularity -= np.asarray((onehot(previous[was_old], k).T @ old_rows).todense(), dtype=np.float32)
    popularity += np.asarray((onehot(labels, k).T @ history).todense(), dtype=np.float32)
    recommender.segment_popularity_ = popularity
    all_labels = np.concatenate([segmenter.labels_, np.full(touched.size - int(was_old.sum()), -1, np.int64)])
    all_labels[touched] = labels
    segmenter.labels_ = all_labels
    segmenter.user_ids_ = np.asarray(recommender.user_index_)
    sizes = np.bincount(all_labels, minlength=k)
    table = segmenter.segments_.copy()
    table["size"] = sizes.astype(np.int64)
    table["share"] = sizes / max(all_labels.size, 1)
    segmenter.segments_ = table
    return int((labels != previous).sum())


def concat_interests(a: UserInterests, b: UserInterests) -> UserInterests:
    """The interests of ``a``'s users followed by ``b``'s."""
    return UserInterests(
        indptr=np.concatenate([a.indptr, a.indptr[-1] + b.indptr[1:]]),
        member_indptr=np.concatenate([a.member_indptr, a.member_indptr[-1] + b.member_indptr[1:]]),
        **{name: np.concatenate([getattr(a, name), getattr(b, name)])
           for name in ("medoid", "importance", "share", "size", "topic", "members")})


def take_interests(interests: UserInterests, rows: np.ndarray) -> UserInterests:
    """The interests of users ``rows``, in that order."""
    chosen = _ranges(interests.indptr, rows)
    members = _ranges(interests.member_indptr, chosen)
    counts = np.diff(interests.indptr)[rows]
    sizes = np.diff(interests.member_indptr)[chosen]
    return UserInterests(
        indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        member_indptr=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        members=interests.members[members],
        **{name: getattr(interests, name)[chosen] for name in ("medoid", "importance", "share", "size", "topic")})


def concat_profiles(a: UserProfiles, b: UserProfiles) -> UserProfiles:
    """The profiles of ``a``'s users followed by ``b``'s (same topics and category tree)."""
    stack = lambda x, y: sparse.vstack([x, y], format="csr")  # noqa: E731
    return dataclasses.replace(
        a,
        user_ids=np.concatenate([a.user_ids, b.user_ids]),
        n_events=np.concatenate([a.n_events, b.n_events]),
        last_seen=np.concatenate([a.last_seen, b.last_seen]),
        topics=[stack(x, y) for x, y in zip(a.topics, b.topics)],
        short_term=stack(a.short_term, b.short_term),
        categories=[stack(x, y) for x, y in zip(a.categories, b.categories)],
        vectors=np.concatenate([a.vectors, b.vectors]),
        short_vectors=np.concatenate([a.short_vectors, b.short_vectors]),
        interests=concat_interests(a.interests, b.interests),
    )


def take_profiles(profiles: UserProfiles, rows: np.ndarray) -> UserProfiles:
    """The profiles of users ``rows``, in that order."""
    return dataclasses.replace(
        profiles,
        user_ids=profiles.user_ids[rows], n_events=profiles.n_events[rows], last_seen=profiles.last_seen[rows],
        topics=[_take(m, rows) for m in profiles.topics], short_term=_take(profiles.short_term, rows),
        categories=[_take(m, rows) for m in profiles.categories],
        vectors=profiles.vectors[rows], short_vectors=profiles.short_vectors[rows],
        interests=take_interests(profiles.interests, rows),
    )


def _take(matrix: sparse.csr_matrix, rows: np.ndarray) -> sparse.csr_matrix:
    out = sparse.csr_matrix(matrix)[rows]
    out.sort_indices()
    return out


def _ranges(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(indptr[r], indptr[r + 1])`` for every ``r`` in ``rows``."""
    starts, counts = indptr[rows], indptr[np.asarray(rows) + 1] - indptr[rows]
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return (np.repeat(starts, counts) + np.arange(total) - offsets).astype(np.int64)


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
