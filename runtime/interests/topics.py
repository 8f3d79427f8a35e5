"""Global topics: k-means over item vectors, merged bottom-up into a coarse-over-fine topic tree.

Fine topics are spherical k-means clusters of what an item is: its unit text vector joined with
its catalog categories (:func:`topic_space`, the category membership weighted by
``category_weight``), so that topics follow the categories and the text rather than incidental
tokens; coarse topics are Ward merges of the fine centroids in that space, so every fine topic
has exactly one coarse parent. Stored centroids are means of the text vectors, which is what
:meth:`TopicTree.assign` places new items and texts by. Measured on MovieLens (``python -m
tastemap.bench.explicit --options``, 50 fine topics): the item text alone (``Title (1995). Genres.
Tags: ...``) clusters films with genre-set NMI 0.45 and release-year NMI 0.38; joined with the
genres at weight 1, 0.79 and 0.12, at an unchanged HR@10. Each topic gets
keywords, its size and its medoid items. Keywords are phrases (:mod:`~tastemap.runtime.interests.labels`):
candidates from the items' texts scored by class-based TF-IDF (``tf(t, c) * log(1 + A / f(t))``,
``A`` the mean number of phrases per topic, ``f(t)`` the frequency of ``t`` over all topics) and
by their concentration on the topic, the three of the label chosen by the encoder (closest to the
topic centroid, diversified); the label's phrases come first, so ``names`` (the first three
keywords) is the label. Labels are unique within a level, and a coarse label differs from each of
its children's. Topic ids are ordered: coarse topics by decreasing size, fine topics grouped under
their parent and by decreasing size.
"""

from __future__ import annotations

import functools

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.interests.clustering import SklearnBackend, group_means, resolve_backend
from tastemap.runtime.interests.labels import (
    CategoryNodes,
    Phrases,
    class_tfidf_scores,
    extract_phrases,
    is_nameable,
    label_level,
    phrase_vectors_from_items,
    stop_word_set,
)
from tastemap.runtime.interests.layers import onehot

logger = logging.getLogger(__name__)

MIN_REFERENCE_NODES = 4  # a category level with fewer nodes says too little to tell noise tags apart


@dataclass(frozen=True)
class TopicLevel:
    """One level of the topic tree.

    ``labels`` ``[n_items]`` topic of each item; ``parents`` ``[n_topics]`` the topic id one level
    coarser (-1 at the top); ``centroids`` ``[n_topics, dim]`` unit-norm; ``sizes``
    ``[n_topics]`` items per topic; ``keywords`` a list of words per topic, best first;
    ``medoids`` ``[n_topics, n_medoids]`` item indices, best first, -1 where a topic has fewer
    items.
    """

    labels: np.ndarray
    parents: np.ndarray
    centroids: np.ndarray
    sizes: np.ndarray
    keywords: list
    medoids: np.ndarray

    @property
    def n_topics(self) -> int:
        return int(self.sizes.size)

    @functools.cached_property
    def names(self) -> list[str]:
        """Short label per topic: its three best keywords, or ``topic <id>`` without keywords
        (computed once: every explanation reads it)."""
        return [", ".join(words[:3]) if words else f"topic {i}" for i, words in enumerate(self.keywords)]


@dataclass(frozen=True)
class TopicTree:
    """Topic levels from coarse (``levels[0]``) to fine (``levels[-1]``)."""

    levels: list

    @property
    def fine(self) -> TopicLevel:
        return self.levels[-1]

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """Topic of new unit vectors ``[n, dim]`` at each level: ``[n, n_levels]`` int64, coarse
        first (the nearest fine centroid by cosine, then its ancestors)."""
        fine = np.argmax(np.asarray(vectors, np.float32) @ self.fine.centroids.T, axis=1)
        columns = [fine]
        for level in reversed(self.levels[1:]):
            columns.append(level.parents[columns[-1]])
        return np.stack(columns[::-1], axis=1).astype(np.int64)

    def to_dict(self, item_ids: Sequence, titles: Sequence[str]) -> dict:
        """The tree as JSON-ready nested topics (see the ``topics.json`` schema in ``docs/commands/profile.md``)."""

        def node(depth: int, topic: int) -> dict:
            level = self.levels[depth]
            entry = {
                "id": topic,
                "level": depth,
                "label": level.names[topic],
                "keywords": level.keywords[topic],
                "size": int(level.sizes[topic]),
                "medoids": [{"item_id": _jsonable(item_ids[i]), "title": str(titles[i])}
                            for i in level.medoids[topic] if i >= 0],
            }
            if depth + 1 < len(self.levels):
                children = np.flatnonzero(self.levels[depth + 1].parents == topic)
                entry["children"] = [node(depth + 1, int(c)) for c in children]
            return entry

        return {
            "n_levels": len(self.levels),
            "n_topics": [level.n_topics for level in self.levels],
            "topics": [node(0, t) for t in range(self.levels[0].n_topics)],
        }


def fit_topic_tree(
    item_vectors: np.ndarray,
    texts: Sequence[str],
    *,
    n_topics: int = 50,
    n_coarse_topics: int | None = 10,
    backend: str | SklearnBackend = "auto",
    seed: int = 0,
    n_keywords: int = 8,
    n_medoids: int = 5,
    stop_words: Sequence[str] = (),
    encoder=None,
    categories: Sequence | None = None,
    titles: Sequence[str] | None = None,
    category_weight: float = 1.0,
) -> tuple[TopicTree, dict]:
    """Cluster unit item vectors ``[n_items, dim]`` into fine topics and merge them into coarse ones.

    ``texts`` ``[n_items]`` feed the phrase labels (stop words of every supported language and
    ``stop_words``, e.g. the words of the text template, are left out). ``encoder`` (an object with
    ``encode(texts) -> [n, dim]``, the one that encoded the items) embeds the candidate phrases;
    without it a phrase's vector is the mean vector of the items holding it. ``categories``
    ``[n_items]`` (each item's category paths, tuples) joins the clustered space with weight
    ``category_weight`` (0: text vectors alone) and lets a topic whose items share one category
    lead its label with the category's name. ``titles`` ``[n_items]`` name a topic that no true
    phrase describes by its medoids (``like Barfly, Blaze``). ``n_coarse_topics=None`` (or 0)
    builds a single level. Returns ``(tree, stats)``; stats hold the backend used and timings.
    """
    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise InputError(f"item vectors have shape {vectors.shape}; expected [n_items={len(texts)}, dim]")
    if not 2 <= n_topics <= vectors.shape[0]:
        raise InputError(f"n_items={vectors.shape[0]} should be >= n_topics={n_topics} (and n_topics >= 2)")
    if n_coarse_topics and not 1 <= n_coarse_topics < n_topics:
        raise InputError(f"n_coarse_topics={n_coarse_topics} should be between 1 and n_topics - 1 = {n_topics - 1}")
    if not 0 <= category_weight < np.inf:
        raise InputError(f"category_weight={category_weight} should be >= 0 and finite")
    engine = resolve_backend(backend) if isinstance(backend, str) else backend
    start = time.perf_counter()
    nodes = _category_nodes(categories, vectors, encoder) if categories is not None else None
    space = topic_space(vectors, nodes.items if nodes is not None else None, category_weight)
    (fine, _), kmeans_stats = engine.kmeans(space, n_topics, seed=seed, spherical=True)
    fine = _compact(fine)
    n_fine = int(fine.max()) + 1
    if n_fine < n_topics:
        logger.info("%d of %d topics came out empty and were removed", n_topics - n_fine, n_topics)
    centroids = _unit(group_means(space, fine, n_fine))
    if n_coarse_topics:
        coarse_of_fine = _merge(centroids, np.bincount(fine, minlength=n_fine), n_coarse_topics)
        fine_order = np.lexsort((-np.bincount(fine, minlength=n_fine), coarse_of_fine))
        new_fine = np.empty(n_fine, np.int64)
        new_fine[fine_order] = np.arange(n_fine)
        fine = new_fine[fine]
        coarse_of_fine = coarse_of_fine[fine_order]
        assignments = [(coarse_of_fine[fine], np.full(int(coarse_of_fine.max()) + 1, -1)), (fine, coarse_of_fine)]
    else:
        order = np.argsort(-np.bincount(fine, minlength=n_fine), kind="stable")
        remap = np.empty(n_fine, np.int64)
        remap[order] = np.arange(n_fine)
        assignments = [(remap[fine], np.full(n_fine, -1))]
    label_start = time.perf_counter()
    phrases = extract_phrases(texts, stop_word_set(stop_words))
    if phrases.n_phrases == 0:
        logger.info("item texts have no phrases to label topics with; topics are named by their medoids")
    phrase_vectors = _phrase_vectors(phrases, vectors, encoder)
    phrases, phrase_vectors = _with_categories(phrases, phrase_vectors, nodes)
    titles = [str(t) for t in titles] if titles is not None else [_first_sentence(t) for t in texts]
    central = [medoids(space, labels, parents.size, n_medoids) for labels, parents in assignments]
    keywords: list = [None] * len(assignments)
    for depth in range(len(assignments) - 1, -1, -1):  # fine first: a coarse label avoids its children's
        labels, parents = assignments[depth]
        k = parents.size
        forbidden = None
        if depth + 1 < len(assignments):
            child_parents = assignments[depth + 1][1]
            forbidden = [[frozenset(keywords[depth + 1][c][:3]) for c in np.flatnonzero(child_parents == t)]
                         for t in range(k)]
        names_of_medoids = [[titles[i] for i in row if i >= 0] for row in central[depth]]
        keywords[depth] = label_level(phrases, labels, _unit(group_means(vectors, labels, k)), phrase_vectors,
                                      n_keywords=n_keywords, categories=nodes, forbidden=forbidden,
                                      medoid_titles=names_of_medoids)
    levels = []
    for (labels, parents), words, central_items in zip(assignments, keywords, central):
        k = parents.size
        levels.append(TopicLevel(
            labels=labels.astype(np.int64),
            parents=parents.astype(np.int64),
            centroids=_unit(group_means(vectors, labels, k)),
            sizes=np.bincount(labels, minlength=k).astype(np.int64),
            keywords=words,
            medoids=central_items,
        ))
    stats = {"backend": kmeans_stats["backend"], "kmeans_seconds": kmeans_stats["seconds"],
             "label_seconds": round(time.perf_counter() - label_start, 3), "n_phrases": phrases.n_phrases,
             "phrase_vectors": "encoder" if encoder is not None else "item means",
             "seconds": round(time.perf_counter() - start, 3), "n_topics": [lv.n_topics for lv in levels]}
    return TopicTree(levels=levels), stats


def topic_space(vectors: np.ndarray, category_items: sparse.spmatrix | None, weight: float) -> np.ndarray:
    """What topics cluster: unit rows of ``[vectors, weight * unit(category membership)]``,
    ``[n_items, dim + n_nodes]`` float32 (``vectors`` alone without categories or at weight 0).

    An item's categories (every node of every depth it carries) weigh as much as its text at
    ``weight=1``: two films of one genre set are as close through their genres as two
    near-identical texts are through their words."""
    if category_items is None or weight == 0 or category_items.shape[1] == 0:
        return vectors
    membership = np.asarray(sparse.csr_matrix(category_items).todense(), dtype=np.float32)
    return _unit(np.hstack([vectors, weight * _unit((membership > 0).astype(np.float32))]))


def class_tfidf(counts: tuple, labels: np.ndarray, n_classes: int, n_keywords: int = 8) -> list[list[str]]:
    """Keywords per class by class-based TF-IDF alone (no concentration, no encoder).

    ``counts`` is ``(item-term CSR [n_items, n_terms], vocabulary [n_terms])``; ``labels``
    ``[n_items]``. Returns ``n_classes`` lists of up to ``n_keywords`` terms.
    """
    item_terms, vocabulary = counts
    scores = class_tfidf_scores(sparse.csr_matrix(item_terms), labels, n_classes)
    keywords = []
    for c in range(n_classes):
        row = scores.getrow(c)
        best = row.indices[np.lexsort((row.indices, -row.data))][:n_keywords]
        keywords.append([str(vocabulary[i]) for i in best])
    return keywords


def medoids(vectors: np.ndarray, labels: np.ndarray, n_groups: int, n_medoids: int) -> np.ndarray:
    """The ``n_medoids`` most central items of each group: ``[n_groups, n_medoids]`` item indices
    (-1 padded). For unit vectors the item with the largest dot product with its group's sum
    minimises the summed squared distance (and cosine distance) to the group, i.e. is the medoid."""
    sums = np.asarray(onehot(labels, n_groups).T @ vectors, dtype=np.float32)
    scores = np.einsum("ij,ij->i", vectors, sums[labels])
    order = np.lexsort((np.arange(labels.size), -scores, labels))
    grouped = labels[order]
    starts = np.searchsorted(grouped, np.arange(n_groups))
    rank = np.arange(order.size) - starts[grouped]
    result = np.full((n_groups, n_medoids), -1, dtype=np.int64)
    keep = rank < n_medoids
    result[grouped[keep], rank[keep]] = order[keep]
    return result


def _phrase_vectors(phrases: Phrases, item_vectors: np.ndarray, encoder) -> np.ndarray:
    """Unit phrase vectors ``[n_phrases, dim]``: encoded when an encoder is given, else item means."""
    if encoder is None or phrases.n_phrases == 0:
        return phrase_vectors_from_items(phrases, item_vectors)
    encoded = np.asarray(encoder.encode([str(n) for n in phrases.names]), dtype=np.float32)
    return _unit(encoded)


def _with_categories(phrases: Phrases, phrase_vectors: np.ndarray, nodes: CategoryNodes | None):
    """The candidate phrases with the catalog's category nodes as candidates too, whatever their
    frequency (a category held by a third of the catalogue, ``drama``, still names a topic where
    most items hold it); a phrase spelling a category's name gives way to the category."""
    if nodes is None or nodes.names.size == 0:
        return phrases, phrase_vectors
    names = np.array([nodes.label(i) for i in range(nodes.names.size)], dtype=object)
    usable = np.flatnonzero([is_nameable(n) for n in names])  # not ``(no genres listed)``
    categories = {str(n).replace("-", " ") for n in names[usable]}
    keep = np.array([str(n).lower().replace("-", " ") not in categories for n in phrases.names], bool)
    items = sparse.hstack([phrases.items[:, np.flatnonzero(keep)], nodes.items[:, usable]]).tocsr()
    vectors = np.concatenate([phrase_vectors[keep], nodes.vectors[usable]]).astype(np.float32)
    return Phrases(items=items, names=np.concatenate([phrases.names[keep], names[usable]])), vectors


def _category_nodes(categories: Sequence, item_vectors: np.ndarray, encoder) -> CategoryNodes | None:
    """The category nodes of every depth, with vectors (encoded names, or item means)."""
    from tastemap.runtime.interests.layers import category_levels

    levels = category_levels(list(categories))
    if not levels:
        return None
    matrix = sparse.hstack([level.items for level in levels]).tocsr()
    matrix.data[:] = 1.0
    names = np.concatenate([level.names for level in levels])
    if encoder is not None:
        vectors = _unit(np.asarray(encoder.encode([n.split(" > ")[-1] for n in names.astype(str)]), np.float32))
    else:
        vectors = _unit(np.asarray(matrix.T @ item_vectors, dtype=np.float32))
    reference = [level for level in levels if level.items.shape[1] >= MIN_REFERENCE_NODES]
    shares = reference[-1].items.tocsr() if reference else None
    return CategoryNodes(items=matrix, names=names, vectors=vectors, shares=shares)


def _first_sentence(text: str) -> str:
    """The title part of a rendered item text (up to its first ``. ``), for medoid labels."""
    return str(text).split(". ", 1)[0]


def _merge(centroids: np.ndarray, sizes: np.ndarray, n_coarse: int) -> np.ndarray:
    """Ward merge of fine centroids into ``n_coarse`` groups, ids ordered by decreasing size."""
    from scipy.cluster.hierarchy import fcluster, linkage

    groups = fcluster(linkage(centroids.astype(np.float64), method="ward"), n_coarse, criterion="maxclust") - 1
    groups = _compact(groups)
    totals = np.bincount(groups, weights=sizes)
    order = np.lexsort((np.arange(totals.size), -totals))
    remap = np.empty(totals.size, np.int64)
    remap[order] = np.arange(totals.size)
    return remap[groups]


def _compact(labels: np.ndarray) -> np.ndarray:
    _, compact = np.unique(labels, return_inverse=True)
    return compact.astype(np.int64)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32)


def _jsonable(value):
    return value.item() if isinstance(value, np.generic) else value
