"""Layered user-interest profiles: the :class:`InterestProfiler` estimator.

``InterestProfiler().fit(events, catalog, item_vectors)`` encodes nothing itself when given an
array of item vectors (``[n_items, dim]``, catalog order) and calls ``item_vectors.encode(texts)``
when given an encoder. It then fits the global topic tree over all catalog items and builds, for
every user, the three layers and the per-user interest clusters:

- time: short-term and long-term topic weights (``exp(-lambda * dt) * weight`` importance);
- category: the catalog's category tree, one weight vector per level;
- topic: weights over the topics of each level of the topic tree;
- interests: the user's most recent items (at most ``max_items_per_user``) split into interests
  by :mod:`~tastemap.runtime.interests.partition`: a Ward tree cut per branch where the two sides
  stop looking like one interest (``distance_threshold`` bounds it: lower merges always happen),
  then near-duplicate interests merged (at most ``max_interests``); each with its medoid item,
  importance, share, size, members and topic.

The fitted attributes (the in-memory API used by recommendation and segmentation) are listed in
the :class:`InterestProfiler` docstring. It is a scikit-learn estimator: ``get_params``,
``set_params`` and ``sklearn.base.clone`` work, and an unfitted profiler raises
:class:`~tastemap.runtime.interests.base.NotFittedError`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from tastemap.console import progress
from tastemap.cpu import one_thread, usable_cores
from tastemap.errors import InputError
from tastemap.runtime.interests.base import as_catalog, as_events, check_fitted
from tastemap.runtime.interests.clustering import BACKENDS
from tastemap.runtime.io.events import DEFAULT_TEMPLATE, align_events, render_item_texts, template_words
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.interests.layers import (
    REFERENCES,
    TimeWindows,
    aggregate_user_items,
    category_levels,
    layer_weights,
    onehot,
    user_vectors,
)
from tastemap.runtime.interests.partition import InterestScale, interest_scale, partition_user
from tastemap.runtime.interests.topics import fit_topic_tree

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Interest:
    """One interest of one user: item indices are catalog rows (see ``InterestProfiler.item_ids_``)."""

    medoid: int
    importance: float
    share: float
    size: int
    topic: int
    members: np.ndarray


@dataclass(frozen=True)
class UserInterests:
    """Every user's interest clusters as flat arrays, ranked by importance within each user.

    ``indptr`` ``[n_users + 1]`` slices the ``[n_interests]`` arrays ``medoid`` (catalog row),
    ``importance`` (summed long-term importance of the members), ``share`` (importance over the
    user's total), ``size`` and ``topic`` (the fine topic most members belong to; ties: the
    medoid's); ``member_indptr`` ``[n_interests + 1]`` slices ``members`` (catalog rows, most
    central first). :func:`shared_topic` says at which level the members share a topic.
    """

    indptr: np.ndarray
    medoid: np.ndarray
    importance: np.ndarray
    share: np.ndarray
    size: np.ndarray
    topic: np.ndarray
    member_indptr: np.ndarray
    members: np.ndarray

    def of_user(self, user: int) -> list[Interest]:
        """Interests of user row ``user``, most important first."""
        return [
            Interest(int(self.medoid[i]), float(self.importance[i]), float(self.share[i]), int(self.size[i]),
                     int(self.topic[i]), self.members[self.member_indptr[i]:self.member_indptr[i + 1]])
            for i in range(self.indptr[user], self.indptr[user + 1])
        ]

    def counts(self) -> np.ndarray:
        """Number of interests per user ``[n_users]``."""
        return np.diff(self.indptr)


@dataclass(frozen=True)
class UserProfiles:
    """The layered profiles of ``n_users`` users (rows follow ``user_ids``).

    ``topics`` and ``categories``: one CSR ``[n_users, n_groups]`` per level (coarse first), rows
    sum to 1 (long-term importance); ``topic_names`` / ``category_names`` label their columns.
    ``short_term`` ``[n_users, n_fine_topics]``: short-term topic weights (the long-term ones are
    ``topics[-1]``). ``vectors`` ``[n_users, dim]``: long-term user vectors (unit-norm);
    ``short_vectors`` likewise for the short term. ``interests`` (None when read back from
    Parquet, which stores them as item ids).
    """

    user_ids: np.ndarray
    n_events: np.ndarray
    last_seen: np.ndarray
    topics: list
    topic_names: list
    short_term: object
    categories: list
    category_names: list
    vectors: np.ndarray | None = None
    short_vectors: np.ndarray | None = None
    interests: UserInterests | None = None

    @property
    def n_users(self) -> int:
        return int(self.user_ids.size)


class InterestProfiler(BaseEstimator):
    """Fit topics and build layered profiles and interest clusters (see the module docstring).

    Parameters
    ----------
    n_topics : int, default=50
        Fine topics: k-means clusters of the item vectors (>= 2).
    n_coarse_topics : int or None, default=10
        Coarse topics merged over the fine ones, in ``[0, n_topics)``; None or 0: one level.
    distance_threshold : float, default=1.5
        Ward merge height (Euclidean, unit vectors) below which a user's items always share an
        interest (> 0); above it, the data decides (``min_affinity``).
    min_affinity : float, default=0.5
        Two groups of a user's items are one interest when the mean similarity between them is at
        least this share of the mean similarity within them (centred cosines; see
        :mod:`~tastemap.runtime.interests.partition`), in (0, 1].
    max_items_per_user : int, default=50
        The most recent items of a user that are clustered into interests.
    max_interests : int, default=8
        At most this many interests per user.
    short_window_days : float, default=90.0
        Length of the short-term window, in days.
    short_decay : float, default=log(2) / 30
        Short-term decay rate ``lambda`` per day (a 30-day half-life).
    long_decay : float, default=log(2) / 365
        Long-term decay rate ``lambda`` per day (a 365-day half-life).
    time_reference : {"user", "global"}, default="user"
        Event ages measured from each user's latest event, or from the latest event of the log.
    text_template : str, default=DEFAULT_TEMPLATE
        How a catalog row becomes a text (fields ``item_id, title, categories, tags, description``).
    backend : {"auto", "cuml", "faiss", "sklearn"}, default="auto"
        Library that runs the topic k-means.
    seed : int, default=0
        Seed of every stochastic step.

    Attributes
    ----------
    item_ids_ : ndarray of shape (n_items,)
        Catalog item ids, catalog order.
    item_titles_ : ndarray of shape (n_items,)
        Catalog titles.
    item_texts_ : list of str, length n_items
        The rendered item texts.
    item_vectors_ : ndarray of shape (n_items, dim), float32
        Unit-norm item vectors.
    topic_tree_ : :class:`~tastemap.runtime.interests.topics.TopicTree`
        Topics per level, coarse first, with labels and centroids.
    item_topics_ : ndarray of shape (n_items, n_levels), int
        Topic of each item per level, coarse first.
    category_levels_ : list of :class:`~tastemap.runtime.interests.layers.CategoryLevel`
        The catalog's category tree, one entry per level.
    time_windows_ : :class:`~tastemap.runtime.interests.layers.TimeWindows`
        The time layer's windows and decays (from the parameters), used by ``transform`` too.
    interest_scale_ : :class:`~tastemap.runtime.interests.partition.InterestScale`
        The catalogue's similarity scale for the per-user interest cut (fitted once, so that a
        ``transform`` of a few users costs only their own items).
    user_items_ : :class:`~tastemap.runtime.interests.layers.UserItems`
        The (user, item) pairs of the training events with their importances.
    profiles_ : :class:`UserProfiles`
        Profiles of the training users.
    data_report_ : :class:`~tastemap.runtime.io.events.DataReport` or None
        Events dropped and kept (None when fitted on :class:`Interactions`).
    backend_ : str
        The library that ran the topic k-means.
    stats_ : dict
        Seconds per stage (``encode_seconds``, ``topics_seconds``, ``layers_seconds``,
        ``interests_seconds``).
    """

    def __init__(
        self,
        *,
        n_topics: int = 50,
        n_coarse_topics: int | None = 10,
        distance_threshold: float = 1.5,
        min_affinity: float = 0.5,
        max_items_per_user: int = 50,
        max_interests: int = 8,
        short_window_days: float = 90.0,
        short_decay: float = math.log(2) / 30,
        long_decay: float = math.log(2) / 365,
        time_reference: str = "user",
        text_template: str = DEFAULT_TEMPLATE,
        backend: str = "auto",
        seed: int = 0,
    ):
        self.n_topics = n_topics
        self.n_coarse_topics = n_coarse_topics
        self.distance_threshold = distance_threshold
        self.min_affinity = min_affinity
        self.max_items_per_user = max_items_per_user
        self.max_interests = max_interests
        self.short_window_days = short_window_days
        self.short_decay = short_decay
        self.long_decay = long_decay
        self.time_reference = time_reference
        self.text_template = text_template
        self.backend = backend
        self.seed = seed

    def _validate_params(self) -> TimeWindows:
        """Check every parameter (messages carry the value received); returns the time windows."""
        if not (isinstance(self.n_topics, int) and self.n_topics >= 2):
            raise InputError(f"n_topics={self.n_topics!r} should be an integer >= 2")
        if self.n_coarse_topics is not None and not 0 <= self.n_coarse_topics < self.n_topics:
            raise InputError(f"n_coarse_topics={self.n_coarse_topics} should be None or in [0, n_topics={self.n_topics})")
        if not 0 < self.distance_threshold < math.inf:
            raise InputError(f"distance_threshold={self.distance_threshold} should be > 0 and finite")
        for name in ("max_items_per_user", "max_interests"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise InputError(f"{name}={value!r} should be an integer >= 1")
        if self.backend not in BACKENDS:
            raise InputError(f"backend={self.backend!r} is not supported; use one of {list(BACKENDS)}")
        if self.time_reference not in REFERENCES:
            raise InputError(f"time_reference={self.time_reference!r} is not supported; use one of {list(REFERENCES)}")
        return TimeWindows(short_window_days=self.short_window_days, short_decay=self.short_decay,
                           long_decay=self.long_decay, reference=self.time_reference)

    def fit(self, events: pd.DataFrame | Interactions, catalog: pd.DataFrame, item_vectors) -> "InterestProfiler":
        """Fit the topic tree on the catalog and profile the users of ``events``.

        Parameters
        ----------
        events : DataFrame or :class:`~tastemap.runtime.io.interactions.Interactions`
            ``user_id, item_id, timestamp`` and optionally ``weight`` / ``rating`` /
            ``event_type`` (a frame from ``read_events`` is used as is, another is validated), or
            Interactions aligned with ``catalog`` (``align_events``).
        catalog : DataFrame of n_items rows
            ``item_id, title`` and optionally ``categories, tags, description`` (a frame from
            ``read_catalog`` is used as is, another is validated).
        item_vectors : ndarray of shape (n_items, dim), or an encoder
            Item vectors in catalog order, or an object with ``encode(texts) -> (n_texts, dim)``
            that embeds the rendered item texts.

        Returns
        -------
        self : InterestProfiler
        """
        windows = self._validate_params()
        catalog = as_catalog(catalog)
        if not isinstance(events, Interactions):
            events = as_events(events)
        stats = {}
        start = time.perf_counter()
        self.item_ids_ = catalog["item_id"].to_numpy()
        self.item_titles_ = catalog["title"].to_numpy()
        self.item_texts_ = render_item_texts(catalog, self.text_template)
        vectors = item_vectors.encode(self.item_texts_) if hasattr(item_vectors, "encode") else item_vectors
        self.item_vectors_ = _unit_rows(vectors, len(catalog))
        stats["encode_seconds"] = round(time.perf_counter() - start, 3)

        start = time.perf_counter()
        self.topic_tree_, topic_stats = fit_topic_tree(
            self.item_vectors_, self.item_texts_, n_topics=self.n_topics,
            n_coarse_topics=self.n_coarse_topics or None, backend=self.backend, seed=self.seed,
            stop_words=template_words(self.text_template),
            encoder=item_vectors if hasattr(item_vectors, "encode") else None,
            categories=catalog["categories"].tolist(), titles=self.item_titles_)
        self.backend_ = topic_stats["backend"]
        self.item_topics_ = np.stack([level.labels for level in self.topic_tree_.levels], axis=1)
        self.category_levels_ = category_levels(catalog["categories"].tolist())
        self.time_windows_ = windows
        self.interest_scale_ = interest_scale(self.item_vectors_, self.topic_tree_.fine.labels)
        stats["topics_seconds"] = round(time.perf_counter() - start, 3)
        profiles, self.user_items_, self.data_report_ = self._profile(events, catalog, stats)
        self.stats_ = stats
        self.profiles_ = profiles
        return self

    def fit_transform(self, events: pd.DataFrame | Interactions, catalog: pd.DataFrame, item_vectors) -> UserProfiles:
        """Fit (see :meth:`fit`) and return the profiles of the users in ``events`` (``profiles_``)."""
        return self.fit(events, catalog, item_vectors).profiles_

    def transform(self, events: pd.DataFrame | Interactions) -> UserProfiles:
        """Profiles of the users in ``events`` with the fitted topics (no refit): for new users or
        a later window. ``events`` as in :meth:`fit`; items must come from the catalog the profiler
        was fitted on."""
        check_fitted(self, "profiles_", "fit(events, catalog, item_vectors)")
        if isinstance(events, Interactions):  # already aligned: no catalogue-sized table to build
            return self._profile(events, None, {})[0]
        return self._profile(as_events(events), pd.DataFrame({"item_id": self.item_ids_}), {})[0]

    def _onehot(self, level):
        """The items-to-topics one-hot matrix of a topic level, built once per level (an update
        that places new items replaces the level, and so the matrix)."""
        cache = self.__dict__.setdefault("_onehot_cache", {})
        hit = cache.get(id(level))
        if hit is None or hit[0] is not level:
            hit = cache[id(level)] = (level, onehot(level.labels, level.n_topics))
        return hit[1]

    def _profile(self, events, catalog: pd.DataFrame | None, stats: dict):
        start = time.perf_counter()
        report = None
        if isinstance(events, Interactions):
            interactions = events
            if interactions.n_items != self.item_ids_.size:
                raise InputError(f"interactions have n_items={interactions.n_items}; the catalog has {self.item_ids_.size}")
        else:
            interactions, report = align_events(events, catalog)
        pairs = aggregate_user_items(interactions, self.time_windows_)
        long, short = pairs.matrix("long"), pairs.matrix("short")
        tree = self.topic_tree_
        topics = [layer_weights(long, self._onehot(level)) for level in tree.levels]
        short_term = layer_weights(short, self._onehot(tree.fine))
        categories = [layer_weights(long, level.items) for level in self.category_levels_]
        vectors, short_vectors = user_vectors(long, self.item_vectors_), user_vectors(short, self.item_vectors_)
        stats["layers_seconds"] = round(time.perf_counter() - start, 3)

        start = time.perf_counter()
        interests = cluster_interests(pairs, self.item_vectors_, tree.fine.labels, scale=self.interest_scale_,
                                      max_items=self.max_items_per_user,
                                      distance_threshold=self.distance_threshold,
                                      max_interests=self.max_interests, min_affinity=self.min_affinity)
        stats["interests_seconds"] = round(time.perf_counter() - start, 3)
        n_events = np.bincount(interactions.users, minlength=interactions.n_users)
        last_seen = np.maximum.reduceat(pairs.last_seen, pairs.indptr[:-1])
        profiles = UserProfiles(
            user_ids=interactions.user_ids,
            n_events=n_events.astype(np.int64),
            last_seen=last_seen.astype(np.int64),
            topics=topics,
            topic_names=[level.names for level in tree.levels],
            short_term=short_term,
            categories=categories,
            category_names=[level.names for level in self.category_levels_],
            vectors=vectors,
            short_vectors=short_vectors,
            interests=interests,
        )
        return profiles, pairs, report


PROGRESS_USERS = 1000
"""Users from which the interest clustering shows a progress bar on a terminal."""
PARALLEL_USERS = 20_000
"""Users from which the interest clustering runs in one worker process per core by default: the
loop is Python-bound (threads would share one interpreter), and below this size starting the
workers costs more than they save."""
CHUNK_USERS = 2_000
"""Users per task of the interest clustering (and per step of its progress bar)."""


def cluster_interests(
    pairs,
    item_vectors: np.ndarray,
    item_topics: np.ndarray,
    *,
    max_items: int = 50,
    distance_threshold: float = 1.5,
    max_interests: int = 8,
    min_affinity: float = 0.5,
    scale: InterestScale | None = None,
    n_jobs: int | None = None,
) -> UserInterests:
    """Each user's ``max_items`` most recent items (unit ``item_vectors`` ``[n_items, dim]``)
    split into at most ``max_interests`` interests by
    :func:`~tastemap.runtime.interests.partition.partition_user` (the Ward cut bounded by
    ``distance_threshold``, then near-duplicates merged at ``min_affinity``); ``item_topics``
    ``[n_items]`` are the fine topics, whose within-topic similarity sets the catalogue's scale
    (``scale``, the fitted :class:`~tastemap.runtime.interests.partition.InterestScale`; None:
    computed here).

    The medoid of a cluster is the member with the largest summed cosine similarity to the other
    members. Importance is the members' summed long-term importance (``pairs.long``). The loop over
    users works on matrices of at most ``max_items`` rows, :data:`CHUNK_USERS` users per task;
    ``n_jobs`` worker processes run the tasks (None: one per core from :data:`PARALLEL_USERS`
    users on, else none). The result does not depend on ``n_jobs``.
    """
    indptr, positions = pairs.recent(max_items)
    items_all = pairs.items[positions]
    weight_all = pairs.long[positions].astype(np.float64)
    totals = np.add.reduceat(weight_all, indptr[:-1]) if weight_all.size else np.zeros(0)
    scale = scale if scale is not None else interest_scale(item_vectors, item_topics)
    settings = (distance_threshold, max_interests, min_affinity, scale)
    chunks = [(start, min(start + CHUNK_USERS, pairs.n_users)) for start in range(0, pairs.n_users, CHUNK_USERS)]
    workers = (usable_cores() if pairs.n_users >= PARALLEL_USERS else 1) if n_jobs is None else n_jobs
    if workers > 1 and len(chunks) > 1:
        from joblib import Parallel, delayed

        done = Parallel(n_jobs=workers, return_as="generator")(
            delayed(_cluster_users)(start, stop, indptr, items_all, weight_all, totals, item_vectors, settings)
            for start, stop in chunks)
    else:
        done = (_cluster_users(start, stop, indptr, items_all, weight_all, totals, item_vectors, settings)
                for start, stop in chunks)
    if pairs.n_users >= PROGRESS_USERS:  # a bar for a batch, not for an update of a few users
        done = progress(done, total=len(chunks), description="interest clusters")
    results = list(done)
    flat = {name: np.concatenate([part[name] for part in results]) if results else np.zeros(0)
            for name in ("medoid", "importance", "share", "size", "members", "counts")}
    counts = flat["counts"].astype(np.int64)
    sizes = flat["size"].astype(np.int64)
    medoid = flat["medoid"].astype(np.int64)
    return UserInterests(
        indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        medoid=medoid,
        importance=flat["importance"].astype(np.float32),
        share=flat["share"].astype(np.float32),
        size=sizes,
        topic=_plurality(np.asarray(item_topics), flat["members"].astype(np.int64), sizes, medoid),
        member_indptr=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        members=flat["members"].astype(np.int64),
    )


def _cluster_users(start, stop, indptr, items_all, weight_all, totals, item_vectors, settings) -> dict:
    """The interests of users ``start`` to ``stop`` (see :func:`cluster_interests`), as flat arrays
    plus each user's number of interests (``counts``)."""
    distance_threshold, max_interests, min_affinity, scale = settings
    parts = {name: [np.zeros(0, dtype)] for name, dtype in  # typed: an empty task keeps the integers integers
             (("medoid", np.int64), ("importance", np.float64), ("share", np.float64), ("size", np.int64),
              ("members", np.int64))}
    counts = np.zeros(stop - start, np.int64)
    with one_thread():  # tiny matrices: BLAS threads cost more than they save
        for user in range(start, stop):
            counts[user - start] = _cluster_one(user, indptr, items_all, weight_all, totals, item_vectors,
                                                distance_threshold, max_interests, min_affinity, scale, parts)
    return {**{name: np.concatenate(values) for name, values in parts.items()}, "counts": counts}


def _cluster_one(user, indptr, items_all, weight_all, totals, item_vectors, distance_threshold, max_interests,
                 min_affinity, scale, parts) -> int:
    """Ward-cluster one user's items, append the ranked interests to ``parts`` and return their number."""
    lo, hi = indptr[user], indptr[user + 1]
    items, weight, m = items_all[lo:hi], weight_all[lo:hi], hi - lo
    if m == 0:
        return 0
    x = item_vectors[items]
    gram = x @ x.T
    labels = partition_user(x, scale, distance_threshold=distance_threshold, max_interests=max_interests,
                            min_affinity=min_affinity)
    k = int(labels.max()) + 1
    membership = np.zeros((m, k), np.float32)
    membership[np.arange(m), labels] = 1.0
    score = (gram @ membership)[np.arange(m), labels]
    importance = np.bincount(labels, weights=weight, minlength=k)
    rank = np.empty(k, np.int64)
    rank[np.lexsort((np.arange(k), -importance))] = np.arange(k)
    order = np.lexsort((-score, rank[labels]))
    sizes = np.bincount(labels, minlength=k)[np.argsort(rank)]
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    parts["medoid"].append(items[order][first])
    parts["importance"].append(np.sort(importance)[::-1])
    parts["share"].append(np.sort(importance)[::-1] / max(totals[user], 1e-12))
    parts["size"].append(sizes)
    parts["members"].append(items[order])
    return k


def _plurality(item_topics: np.ndarray, members: np.ndarray, sizes: np.ndarray, medoid: np.ndarray) -> np.ndarray:
    """The topic most members of each interest belong to (ties: the medoid's, then the lowest)."""
    if sizes.size == 0:
        return np.zeros(0, np.int64)
    owner = np.repeat(np.arange(sizes.size), sizes)
    member_topics, medoid_topics = item_topics[members], item_topics[medoid]
    # as wide as the topics that occur (not the catalogue's: an update reads its users' items only)
    n_topics = int(max(member_topics.max(), medoid_topics.max())) + 1
    counts = np.zeros((sizes.size, n_topics), np.float64)
    np.add.at(counts, (owner, member_topics), 1.0)
    counts[np.arange(sizes.size), medoid_topics] += 0.5
    return np.argmax(counts, axis=1).astype(np.int64)


SHARED_MAJORITY = 0.5


def shared_topic(members: np.ndarray, item_topics: np.ndarray, *, majority: float = SHARED_MAJORITY) -> tuple[int, int, float]:
    """What the ``members`` of an interest share: ``(level, topic, share)`` of the finest topic
    tree level at which more than ``majority`` of them fall in one topic (``item_topics``
    ``[n_items, n_levels]``, coarse first). A mixed interest gives ``(-1, t, s)`` with ``t`` its
    most common coarse topic and ``s`` that topic's share."""
    members = np.asarray(members, np.int64)
    share, top = 0.0, 0
    for level in range(item_topics.shape[1] - 1, -1, -1):
        counts = np.bincount(item_topics[members, level])
        top = int(np.argmax(counts))
        share = float(counts[top]) / max(members.size, 1)
        if share > majority:
            return level, top, share
    return -1, top, share


def interest_label(members: np.ndarray, item_topics: np.ndarray, tree) -> str:
    """The label of an interest: the name of the topic its members share (:func:`shared_topic`),
    or ``a mix of A + B`` (the first phrase of its two most common coarse topics) when mixed."""
    level, topic, _ = shared_topic(members, item_topics)
    if level >= 0:
        return tree.levels[level].names[topic]
    counts = np.bincount(item_topics[np.asarray(members, np.int64), 0])
    tops = [int(t) for t in np.argsort(-counts, kind="stable")[:2] if counts[t] > 0]
    return "a mix of " + " + ".join(_lead(tree.levels[0], t) for t in tops)


def _lead(level, topic: int) -> str:
    words = level.keywords[topic]
    return words[0] if words else f"topic {topic}"


def cut_tree(tree: np.ndarray, m: int, n_merges: int) -> np.ndarray:
    """Flat labels ``[m]`` (0.., in order of first leaf) after the first ``n_merges`` merges of a
    monotonic linkage ``tree`` ``[m - 1, 4]`` (Ward is monotonic, so this is the cut at the height
    of the last merge applied; it replaces ``fcluster``, whose input validation dominates on tiny
    trees)."""
    parent = list(range(m + n_merges))
    for step in range(n_merges):
        parent[int(tree[step, 0])] = parent[int(tree[step, 1])] = m + step
    root = parent[:]
    for node in range(m + n_merges - 1, -1, -1):
        root[node] = root[parent[node]] if parent[node] != node else node
    _, labels = np.unique(np.asarray(root[:m]), return_inverse=True)
    order = np.full(labels.max() + 1, m)
    np.minimum.at(order, labels, np.arange(m))
    rank = np.empty_like(order)
    rank[np.argsort(order)] = np.arange(order.size)
    return rank[labels].astype(np.int64)


def _unit_rows(vectors, n_items: int) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != n_items:
        raise InputError(f"item vectors have shape {vectors.shape}; expected [n_items={n_items}, dim] in catalog order")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
        raise InputError("item vectors contain zero rows or non-finite values; every item needs a vector")
    if np.abs(norms - 1).max() > 1e-3:
        logger.info("item vectors are not unit-norm; normalising them")
    return np.ascontiguousarray(vectors / norms)
