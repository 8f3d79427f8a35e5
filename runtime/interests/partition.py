"""One user's items split into interests: a Ward tree cut by the data, then near-duplicates merged.

The unit of measure is the similarity of two items after centring: ``cos(x - c, y - c)`` with
``c`` the mean item vector of the catalog (text encoders give every pair a common positive
similarity, which centring removes). For two groups of items ``A`` and ``B``:

- ``cross(A, B)``: mean similarity between an item of ``A`` and an item of ``B`` (the dot product
  of their centred mean vectors);
- ``within(A)``: mean similarity between two different items of ``A``, shrunk towards the
  catalog's ``prior`` (the mean similarity of two items of one fine topic) with the weight of
  ``prior_pairs`` pairs, so that a group of one or two items borrows the catalog's scale;
- ``affinity(A, B) = cross(A, B) / sqrt(within(A) * within(B))``: 1 when ``B``'s items are as
  close to ``A``'s as ``A``'s items are to each other, near 0 for unrelated groups.

**Cut.** The Ward tree of the user's items is walked bottom-up. A merge is applied when both
of its children were and either its Ward height is at most ``distance_threshold`` (the bound:
below it items always share an interest) or ``affinity >= min_affinity`` (the data: the two
groups look like one interest). The cut therefore adapts per branch: a large coherent interest
is not split because Ward heights grow with cluster size, and two small distinct ones are not
joined because their height is small.

**Merge.** The clusters left are merged pairwise, the highest affinity first, while it is at
least ``min_affinity``: two parts of one interest that Ward put in different branches end up
together. Finally, while there are more than ``max_interests``, the closest pair is merged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import linkage

MIN_WITHIN = 0.02


@dataclass(frozen=True)
class InterestScale:
    """The catalog-wide scale of item similarity: ``centre`` ``[dim]`` (mean item vector) and
    ``prior`` (mean centred similarity of two items of one fine topic)."""

    centre: np.ndarray
    prior: float


def interest_scale(item_vectors: np.ndarray, item_topics: np.ndarray) -> InterestScale:
    """:class:`InterestScale` of unit ``item_vectors`` ``[n_items, dim]`` grouped by fine topic
    ``item_topics`` ``[n_items]`` (the pair-weighted mean within-topic similarity)."""
    centre = np.asarray(item_vectors, np.float64).mean(axis=0)
    units = _unit(np.asarray(item_vectors, np.float64) - centre)
    topics = np.asarray(item_topics)
    sums = np.zeros((int(topics.max()) + 1, units.shape[1]))
    np.add.at(sums, topics, units)
    sizes = np.bincount(topics, minlength=sums.shape[0]).astype(np.float64)
    pairs = sizes * (sizes - 1)
    within = (np.einsum("ij,ij->i", sums, sums) - sizes)
    prior = float(within[pairs > 0].sum() / max(pairs[pairs > 0].sum(), 1.0)) if (pairs > 0).any() else 0.1
    return InterestScale(centre=centre.astype(np.float32), prior=max(prior, MIN_WITHIN))


def partition_user(
    x: np.ndarray,
    scale: InterestScale,
    *,
    distance_threshold: float,
    max_interests: int,
    min_affinity: float = 0.5,
    prior_pairs: float = 3.0,
) -> np.ndarray:
    """Interest labels ``[m]`` (0.., in order of first item) of one user's unit item vectors
    ``x`` ``[m, dim]`` (see the module docstring)."""
    m = x.shape[0]
    if m == 1:
        return np.zeros(1, np.int64)
    units = _unit(np.asarray(x, np.float64) - scale.centre)
    gram = units @ units.T
    groups = _ward_cut(x, gram, scale.prior, distance_threshold, min_affinity, prior_pairs)
    groups = _merge_close(groups, gram, scale.prior, min_affinity, prior_pairs, max_interests)
    labels = np.empty(m, np.int64)
    for label, members in enumerate(sorted(groups, key=min)):
        labels[members] = label
    return labels


def _ward_cut(x, gram, prior, threshold, min_affinity, prior_pairs) -> list[np.ndarray]:
    m = x.shape[0]
    upper = _upper_triangle(m)
    condensed = np.sqrt(np.maximum(2.0 - 2.0 * (x @ x.T)[upper].astype(np.float64), 0.0))
    tree = linkage(condensed, method="ward")
    # plain lists while walking the tree: a user's update pays per NumPy call, and most merges need none
    whole: list[list[int] | None] = [[i] for i in range(m)]  # node -> its items, None if cut
    parts: list[list[list[int]]] = [[[i]] for i in range(m)]  # node -> the clusters below it
    for a, b, height, _ in tree.tolist():
        left, right = whole[int(a)], whole[int(b)]
        joined = left is not None and right is not None and (
            height <= threshold
            or affinity(gram, np.array(left), np.array(right), prior, prior_pairs) >= min_affinity)
        if joined:
            whole.append(left + right)
            parts.append([whole[-1]])
        else:
            whole.append(None)
            parts.append(parts[int(a)] + parts[int(b)])
    return [np.array(group, np.int64) for group in parts[-1]]


@functools.lru_cache(maxsize=64)
def _upper_triangle(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the strict upper triangle of an ``m × m`` matrix (users' sizes repeat)."""
    return np.triu_indices(m, 1)


def _merge_close(groups, gram, prior, min_affinity, prior_pairs, max_interests) -> list[np.ndarray]:
    groups = list(groups)
    within_of = [within(gram, group, prior, prior_pairs) for group in groups]

    def pair(i: int, j: int) -> float:  # affinity(groups[i], groups[j]), i < j, from the kept withins
        return _affinity_given(gram, groups[i], groups[j], within_of[i], within_of[j])

    n = len(groups)
    # every pair's affinity, kept between merges: a merge changes only the pairs of the merged group
    scores = np.full((n, n), -np.inf)
    for i in range(n):
        for j in range(i + 1, n):
            scores[i, j] = pair(i, j)
    while len(groups) > 1:
        upper = _upper_triangle(len(groups))
        values = scores[upper]
        first = int(np.argmax(values))  # the first best pair in (i, j) order
        best, (i, j) = values[first], (int(upper[0][first]), int(upper[1][first]))
        if best < min_affinity and len(groups) <= max_interests:
            break
        groups[i] = np.concatenate([groups[i], groups[j]])
        del groups[j], within_of[j]
        within_of[i] = within(gram, groups[i], prior, prior_pairs)
        scores = np.delete(np.delete(scores, j, axis=0), j, axis=1)
        for k in range(len(groups)):
            if k != i:
                scores[min(i, k), max(i, k)] = pair(min(i, k), max(i, k))
    return groups


def affinity(gram: np.ndarray, a: np.ndarray, b: np.ndarray, prior: float, prior_pairs: float = 3.0) -> float:
    """``cross(A, B) / sqrt(within(A) * within(B))`` for item index arrays ``a`` and ``b`` into
    the centred similarity matrix ``gram`` ``[m, m]``."""
    return _affinity_given(gram, a, b, within(gram, a, prior, prior_pairs), within(gram, b, prior, prior_pairs))


def _affinity_given(gram: np.ndarray, a: np.ndarray, b: np.ndarray, within_a: float, within_b: float) -> float:
    """:func:`affinity` from the two groups' :func:`within` values."""
    return float(gram[np.ix_(a, b)].mean()) / np.sqrt(within_a * within_b)


def within(gram: np.ndarray, members: np.ndarray, prior: float, prior_pairs: float = 3.0) -> float:
    """Mean similarity of two different members, shrunk towards ``prior`` by ``prior_pairs``."""
    n = members.size
    pairs = n * (n - 1) / 2
    total = (float(gram[np.ix_(members, members)].sum()) - n) / 2 if n > 1 else 0.0
    return max((total + prior_pairs * prior) / (pairs + prior_pairs), MIN_WITHIN)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
