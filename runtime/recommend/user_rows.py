"""Rows of users in the fitted arrays: taken, stacked and replaced without copying anyone else's,
and the overlay that makes an online update of a few known users cost their rows only.

An update of known users puts their new scoring rows and profiles in an :class:`Overlay` next to
the fitted arrays instead of rewriting those (a rewrite copies every user's rows: 0.1 s and more
at 10⁵ users). Serving reads an overlaid user's rows from the overlay; anything that reads the
fitted arrays as a whole (``TastemapRecommender.state_``, saving, evaluation, a batch of many
users) first applies the overlay with :func:`replace_users`, and so does an update once the
overlay holds :data:`SETTLE_USERS` users, so that its cost is spread over that many updates.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import sparse

from tastemap.runtime.interests.profiles import UserInterests, UserProfiles
from tastemap.runtime.recommend.candidates import csr_rows, row_positions

SETTLE_USERS = 1024
"""Users an overlay holds before the next update applies it to the fitted arrays."""


class Overlay:
    """The replaced rows of known users, in the order the updates came: each update adds a chunk
    (``state``, a ``_UserState``, and ``profiles`` of its users) and :attr:`where` points each
    training row at its latest chunk and row there, so that adding costs the update's rows only."""

    def __init__(self):
        self.chunks: list[tuple] = []
        self.where: dict[int, tuple[int, int]] = {}

    def add(self, rows: np.ndarray, state, profiles: UserProfiles) -> None:
        self.chunks.append((state, profiles))
        chunk = len(self.chunks) - 1
        self.where.update((row, (chunk, position)) for position, row in enumerate(np.asarray(rows).tolist()))

    def locate(self, rows: np.ndarray) -> tuple[object, np.ndarray] | None:
        """``(state, positions)`` when one chunk holds the latest rows of every one of training
        ``rows``; None otherwise."""
        found = [self.where.get(row) for row in np.asarray(rows).tolist()]
        if not found or any(hit is None or hit[0] != found[0][0] for hit in found):
            return None
        return self.chunks[found[0][0]][0], np.array([position for _, position in found], np.int64)

    def holds_any(self, rows: np.ndarray) -> bool:
        return any(row in self.where for row in np.asarray(rows).tolist())

    def latest(self) -> tuple[np.ndarray, UserProfiles, object]:
        """``(rows, profiles, state)``: every overlaid user's latest rows, ``rows`` sorted (the
        arguments of :func:`replace_users`)."""
        rows = np.array(sorted(self.where), np.int64)
        offsets = np.cumsum([0] + [profiles.n_users for _, profiles in self.chunks])
        source = np.array([offsets[chunk] + position for chunk, position in map(self.where.get, rows.tolist())],
                          np.int64)
        states, profiles = zip(*self.chunks)
        return rows, take_profiles(concat_profiles(*profiles), source), take_state(concat_state(*states), source)


def _stack(parts: list):
    """Sparse rows stacked, dense rows concatenated, None kept."""
    if parts[0] is None:
        return None
    return sparse.vstack(parts, format="csr") if sparse.issparse(parts[0]) else np.concatenate(parts)


def concat_state(*states):
    """The scoring rows of the users of each of ``states``, one after the other."""
    return dataclasses.replace(
        states[0], **{name: _stack([getattr(s, name) for s in states])
                      for name in ("history", "recency", "categories", "literal")},
        interests=concat_interests(*(s.interests for s in states)))


def take_state(state, rows: np.ndarray):
    """The scoring rows of users ``rows``, in that order."""
    take = lambda x: None if x is None else (take_rows(x, rows) if sparse.issparse(x) else x[rows])  # noqa: E731
    return dataclasses.replace(state, history=take(state.history), recency=take(state.recency),
                               interests=take_interests(state.interests, rows), categories=take(state.categories),
                               literal=take(state.literal))


def replace_users(recommender, rows: np.ndarray, profiles: UserProfiles, state) -> None:
    """Put the new profiles and scoring rows of known users ``rows`` (sorted) in place of theirs."""
    profiler = recommender.profiler_
    old = profiler.profiles_
    profiler.profiles_ = dataclasses.replace(
        old,
        n_events=assign(old.n_events, rows, profiles.n_events), last_seen=assign(old.last_seen, rows, profiles.last_seen),
        topics=[replace_rows(a, rows, b) for a, b in zip(old.topics, profiles.topics)],
        short_term=replace_rows(old.short_term, rows, profiles.short_term),
        categories=[replace_rows(a, rows, b) for a, b in zip(old.categories, profiles.categories)],
        vectors=assign(old.vectors, rows, profiles.vectors),
        short_vectors=assign(old.short_vectors, rows, profiles.short_vectors),
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


def writable(array, dtype=None) -> np.ndarray:
    """``array`` itself when it is a writable array of its own (of ``dtype`` when given), else a
    copy: a memory-mapped or shared array is copied the first time it is changed in place."""
    if isinstance(array, np.ndarray) and type(array) is np.ndarray and array.flags.writeable \
            and array.flags.owndata and (dtype is None or array.dtype == dtype):
        return array
    return np.array(array, dtype=dtype)


def assign(array: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``array`` with ``array[rows] = values``, in place once it is :func:`writable`."""
    array = writable(array)
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


def concat_interests(*parts: UserInterests) -> UserInterests:
    """The interests of the users of each of ``parts``, one after the other."""
    def offsets(name: str) -> np.ndarray:
        pointers = [getattr(p, name) for p in parts]
        starts = np.cumsum([0] + [int(x[-1]) for x in pointers[:-1]])
        return np.concatenate([pointers[0]] + [start + x[1:] for start, x in zip(starts[1:], pointers[1:])])

    return UserInterests(indptr=offsets("indptr"), member_indptr=offsets("member_indptr"),
                         **{name: np.concatenate([getattr(p, name) for p in parts])
                            for name in ("medoid", "importance", "share", "size", "topic", "members")})


def take_interests(interests: UserInterests, rows: np.ndarray) -> UserInterests:
    """The interests of users ``rows``, in that order."""
    chosen = row_positions(interests.indptr, rows)
    members = row_positions(interests.member_indptr, chosen)
    counts = np.diff(interests.indptr)[rows]
    sizes = np.diff(interests.member_indptr)[chosen]
    return UserInterests(
        indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        member_indptr=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        members=interests.members[members],
        **{name: getattr(interests, name)[chosen] for name in ("medoid", "importance", "share", "size", "topic")})


def concat_profiles(*parts: UserProfiles) -> UserProfiles:
    """The profiles of the users of each of ``parts``, one after the other (same topics and
    category tree)."""
    column = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    return dataclasses.replace(
        parts[0],
        **{name: column(name) for name in ("user_ids", "n_events", "last_seen", "vectors", "short_vectors")},
        topics=[_stack(list(level)) for level in zip(*(p.topics for p in parts))],
        short_term=_stack([p.short_term for p in parts]),
        categories=[_stack(list(level)) for level in zip(*(p.categories for p in parts))],
        interests=concat_interests(*(p.interests for p in parts)),
    )


def take_profiles(profiles: UserProfiles, rows: np.ndarray) -> UserProfiles:
    """The profiles of users ``rows``, in that order."""
    return dataclasses.replace(
        profiles,
        user_ids=profiles.user_ids[rows], n_events=profiles.n_events[rows], last_seen=profiles.last_seen[rows],
        topics=[take_rows(m, rows) for m in profiles.topics], short_term=take_rows(profiles.short_term, rows),
        categories=[take_rows(m, rows) for m in profiles.categories],
        vectors=profiles.vectors[rows], short_vectors=profiles.short_vectors[rows],
        interests=take_interests(profiles.interests, rows),
    )


def take_rows(matrix: sparse.csr_matrix, rows: np.ndarray) -> sparse.csr_matrix:
    """Rows ``rows`` of ``matrix`` (any sparse format), in that order, indices sorted."""
    return csr_rows(sparse.csr_matrix(matrix), rows)
