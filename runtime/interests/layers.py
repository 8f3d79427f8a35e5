"""Interest layers, vectorised over users: time (short vs long term) and content category.

Every function works on whole arrays; none loops over events or users. The unit of work is
:class:`UserItems`, the distinct (user, item) pairs with their time-decayed, feedback-weighted
importance ``sum exp(-lambda * dt) * weight`` (``dt`` in days). A layer is a sparse matrix
``[n_users, n_groups]`` of weights that sum to 1 per user (per level), built as
``normalise(user_items @ item_groups)`` where ``item_groups`` ``[n_items, n_groups]`` says how
much of each item belongs to each group (a topic, a category node).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.io.interactions import Interactions

DAY = 86_400.0
REFERENCES = ("user", "global")


@dataclass(frozen=True)
class TimeWindows:
    """Short-term and long-term decay (``lambda`` per day) and the short-term window.

    The age ``dt`` of an event is measured from the user's latest event (``reference="user"``, the
    default, suited to offline logs spanning years) or from the latest event of the whole log
    (``"global"``). Long-term importance uses ``long_decay`` (0: plain weighted frequency);
    short-term importance uses ``short_decay`` and ignores events older than
    ``short_window_days``. Defaults: half-lives of 30 and 365 days, a 90-day window.
    """

    short_window_days: float = 90.0
    short_decay: float = math.log(2) / 30
    long_decay: float = math.log(2) / 365
    reference: str = "user"

    def __post_init__(self):
        if not 0 < self.short_window_days < math.inf:
            raise InputError(f"short_window_days={self.short_window_days} should be > 0 and finite")
        for name in ("short_decay", "long_decay"):
            if not 0 <= getattr(self, name) < math.inf:
                raise InputError(f"{name}={getattr(self, name)} should be >= 0 and finite (a decay rate per day)")
        if self.reference not in REFERENCES:
            raise InputError(f"reference={self.reference!r} is not supported; use one of {list(REFERENCES)}")


@dataclass(frozen=True)
class UserItems:
    """Distinct (user, item) pairs sorted by user then item, as CSR-style arrays.

    ``indptr`` ``[n_users + 1]``; ``items``, ``last_seen`` (int64 seconds), ``n_events``,
    ``long`` and ``short`` (float32 importance) are ``[n_pairs]``.
    """

    indptr: np.ndarray
    items: np.ndarray
    last_seen: np.ndarray
    n_events: np.ndarray
    long: np.ndarray
    short: np.ndarray
    n_items: int

    @property
    def n_users(self) -> int:
        return self.indptr.size - 1

    def matrix(self, which: str = "long") -> sparse.csr_matrix:
        """``[n_users, n_items]`` float32 CSR of ``long`` or ``short`` importance."""
        values = {"long": self.long, "short": self.short}[which]
        return sparse.csr_matrix((values, self.items, self.indptr), shape=(self.n_users, self.n_items))

    def recent(self, cap: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``cap`` most recently seen items per user: ``(indptr [n_users + 1], positions)``,
        positions into the pair arrays, most recent first within each user."""
        user = np.repeat(np.arange(self.n_users), np.diff(self.indptr))
        order = np.lexsort((self.items, -self.last_seen, user))
        rank = np.arange(order.size) - self.indptr[user[order]]
        keep = order[rank < cap]
        counts = np.minimum(np.diff(self.indptr), cap)
        return np.concatenate([[0], np.cumsum(counts)]), keep


def decay_weights(interactions: Interactions, windows: TimeWindows = TimeWindows()) -> tuple[np.ndarray, np.ndarray]:
    """Per-event ``(short, long)`` importance ``[n_events]`` float32: ``weight * exp(-lambda * dt)``,
    short-term zero outside the window."""
    ts = interactions.timestamps
    if windows.reference == "user":
        latest = np.full(interactions.n_users, np.iinfo(np.int64).min)
        _max_by_group(latest, interactions.users, ts)
        ref = latest[interactions.users]
    else:
        ref = ts.max()
    age = (ref - ts) / DAY
    long = interactions.weights * np.exp(-windows.long_decay * age)
    short = interactions.weights * np.exp(-windows.short_decay * age) * (age <= windows.short_window_days)
    return short.astype(np.float32), long.astype(np.float32)


def aggregate_user_items(interactions: Interactions, windows: TimeWindows = TimeWindows()) -> UserItems:
    """Collapse events into distinct (user, item) pairs with summed short/long importance."""
    if interactions.n_events == 0:
        raise InputError("no events to aggregate; the events file has no usable rows")
    short, long = decay_weights(interactions, windows)
    key = interactions.users * np.int64(interactions.n_items) + interactions.items
    order = np.lexsort((interactions.timestamps, key))
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], key.size]
    pair_key = key[starts]
    users = pair_key // interactions.n_items
    indptr = np.searchsorted(users, np.arange(interactions.n_users + 1)).astype(np.int64)
    return UserItems(
        indptr=indptr,
        items=(pair_key % interactions.n_items).astype(np.int64),
        last_seen=interactions.timestamps[order[ends - 1]],
        n_events=(ends - starts).astype(np.int32),
        long=np.add.reduceat(long[order], starts).astype(np.float32),
        short=np.add.reduceat(short[order], starts).astype(np.float32),
        n_items=interactions.n_items,
    )


def onehot(labels: np.ndarray, n_groups: int) -> sparse.csr_matrix:
    """``[n_items, n_groups]`` CSR with a 1 at ``(i, labels[i])``; negative labels give empty rows."""
    labels = np.asarray(labels)
    rows = np.flatnonzero(labels >= 0)
    return sparse.csr_matrix((np.ones(rows.size, np.float32), (rows, labels[rows])),
                             shape=(labels.size, n_groups))


SMALL_PRODUCT = 1 << 16
"""Users × groups up to which a layer is summed in NumPy on the users' rows (an update of a few
users): a sparse product costs a fixed ~0.1 ms in constructors and checks, more than the sums."""


def layer_weights(user_items: sparse.csr_matrix, item_groups: sparse.csr_matrix) -> sparse.csr_matrix:
    """``normalise(user_items @ item_groups)``: ``[n_users, n_groups]`` float32, rows sum to 1
    (rows of users with no weight in any group stay empty)."""
    n_users, n_groups = user_items.shape[0], item_groups.shape[1]
    if n_users * n_groups <= SMALL_PRODUCT:
        indptr, indices, data = _small_product(user_items, item_groups)
    else:
        product = sparse.csr_matrix(user_items @ item_groups)
        product.eliminate_zeros()
        product.sort_indices()
        indptr, indices, data = product.indptr, product.indices, product.data
    data = np.asarray(data, np.float64)
    # per-row totals over the entries in column order: both branches give the same bits
    nonempty = np.flatnonzero(np.diff(indptr) > 0)
    totals = np.zeros(n_users)
    if nonempty.size:
        totals[nonempty] = np.add.reduceat(data, indptr[nonempty])
    scale = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
    data = (data * np.repeat(scale, np.diff(indptr))).astype(np.float32)
    return sparse.csr_matrix((data, indices, indptr), shape=(n_users, n_groups))


def _small_product(user_items: sparse.csr_matrix, item_groups: sparse.csr_matrix) -> tuple[np.ndarray, ...]:
    """``user_items @ item_groups`` as CSR arrays ``(indptr, indices, data)``, zeros dropped and
    columns sorted, summed as SciPy's product sums them (in the product's dtype, each row's entries
    in stored order, so the sums are the same bits) through a dense ``[n_users, n_groups]`` buffer."""
    n_users, n_groups = user_items.shape[0], item_groups.shape[1]
    items = user_items.indices
    counts = item_groups.indptr[items + 1] - item_groups.indptr[items]
    positions = np.repeat(item_groups.indptr[items] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    owner = np.repeat(np.repeat(np.arange(n_users), np.diff(user_items.indptr)), counts)
    dtype = np.result_type(user_items.dtype, item_groups.dtype)  # the product's, as SciPy upcasts
    products = np.repeat(user_items.data.astype(dtype), counts) * item_groups.data[positions].astype(dtype)
    sums = np.zeros(n_users * n_groups, dtype)
    np.add.at(sums, owner * n_groups + item_groups.indices[positions], products)
    cells = np.flatnonzero(sums)
    indptr = np.searchsorted(cells, np.arange(n_users + 1) * n_groups)
    return indptr.astype(np.int32), (cells % n_groups).astype(np.int32), sums[cells]


def user_vectors(user_items: sparse.csr_matrix, item_vectors: np.ndarray) -> np.ndarray:
    """Importance-weighted mean item vector per user, L2-normalised: ``[n_users, dim]`` float32
    (zero rows for users with no weight)."""
    vectors = np.asarray(user_items @ item_vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


@dataclass(frozen=True)
class CategoryLevel:
    """One level of the category tree: node names (``A`` or ``A > B``) and the item membership
    matrix ``[n_items, n_nodes]`` (an item with ``p`` paths gives ``1/p`` to each path's node)."""

    depth: int
    names: np.ndarray
    items: sparse.csr_matrix


def category_levels(categories: Sequence[Sequence[tuple[str, ...]]]) -> list[CategoryLevel]:
    """The catalog's category tree, coarse (depth 0) to fine, from each item's list of paths."""
    depth = max((len(p) for paths in categories for p in paths), default=0)
    levels = []
    for level in range(depth):
        rows, nodes, values = [], [], []
        for item, paths in enumerate(categories):
            if not paths:
                continue
            share = 1.0 / len(paths)
            for path in paths:
                if len(path) > level:
                    rows.append(item)
                    nodes.append(" > ".join(path[: level + 1]))
                    values.append(share)
        names, codes = np.unique(np.asarray(nodes, dtype=object).astype(str), return_inverse=True)
        matrix = sparse.csr_matrix((np.asarray(values, np.float32), (rows, codes)),
                                   shape=(len(categories), names.size))
        matrix.sum_duplicates()
        levels.append(CategoryLevel(depth=level, names=names, items=matrix))
    return levels


def rank_rows(matrix: sparse.csr_matrix, top_k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's non-zero entries by decreasing value (ties: lower column first), at most ``top_k``.

    Returns ``(indptr [n_rows + 1], columns, values)`` of the ranked entries.
    """
    matrix = sparse.csr_matrix(matrix)
    matrix.eliminate_zeros()
    row = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, row))
    counts = np.diff(matrix.indptr)
    if top_k is not None:
        rank = np.arange(order.size) - matrix.indptr[row]
        order = order[rank < top_k]
        counts = np.minimum(counts, top_k)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, matrix.indices[order].astype(np.int64), matrix.data[order]


def _max_by_group(out: np.ndarray, groups: np.ndarray, values: np.ndarray) -> None:
    order = np.lexsort((values, groups))
    g = groups[order]
    last = np.flatnonzero(np.r_[g[1:] != g[:-1], True])
    out[g[last]] = values[order][last]
