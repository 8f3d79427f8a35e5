"""Global topics: k-means over item vectors, merged bottom-up into a coarse-over-fine topic tree.

Fine topics are spherical k-means clusters of the unit item vectors; coarse topics are Ward
merges of the fine centroids, so every fine topic has exactly one coarse parent. Each topic gets
keywords from class-based TF-IDF over its items' texts (``tf(t, c) * log(1 + A / f(t))``, ``A``
the mean number of words per topic, ``f(t)`` the frequency of ``t`` over all topics), its size
and its medoid items. Topic ids are ordered: coarse topics by decreasing size, fine topics grouped
under their parent and by decreasing size.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import sparse

from tastemap.errors import InputError
from tastemap.runtime.interests.clustering import SklearnBackend, group_means, resolve_backend
from tastemap.runtime.interests.layers import onehot

logger = logging.getLogger(__name__)

TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"


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

    @property
    def names(self) -> list[str]:
        """Short label per topic: its three best keywords, or ``topic <id>`` without keywords."""
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
        """The tree as JSON-ready nested topics (see the ``topics.json`` schema in the README)."""

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
) -> tuple[TopicTree, dict]:
    """Cluster unit item vectors ``[n_items, dim]`` into fine topics and merge them into coarse ones.

    ``texts`` ``[n_items]`` feed the keyword labels (English stop words and ``stop_words``, e.g.
    the words of the text template, are left out). ``n_coarse_topics=None`` (or 0) builds a
    single level. Returns ``(tree, stats)``; stats hold the backend used and timings.
    """
    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise InputError(f"item vectors have shape {vectors.shape}; expected [n_items={len(texts)}, dim]")
    if not 2 <= n_topics <= vectors.shape[0]:
        raise InputError(f"n_items={vectors.shape[0]} should be >= n_topics={n_topics} (and n_topics >= 2)")
    if n_coarse_topics and not 1 <= n_coarse_topics < n_topics:
        raise InputError(f"n_coarse_topics={n_coarse_topics} should be between 1 and n_topics - 1 = {n_topics - 1}")
    engine = resolve_backend(backend) if isinstance(backend, str) else backend
    start = time.perf_counter()
    (fine, _), kmeans_stats = engine.kmeans(vectors, n_topics, seed=seed, spherical=True)
    fine = _compact(fine)
    n_fine = int(fine.max()) + 1
    if n_fine < n_topics:
        logger.info("%d of %d topics came out empty and were removed", n_topics - n_fine, n_topics)
    centroids = _unit(group_means(vectors, fine, n_fine))
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
    counts = _term_counts(texts, stop_words)
    levels = []
    for labels, parents in assignments:
        k = parents.size
        levels.append(TopicLevel(
            labels=labels.astype(np.int64),
            parents=parents.astype(np.int64),
            centroids=_unit(group_means(vectors, labels, k)),
            sizes=np.bincount(labels, minlength=k).astype(np.int64),
            keywords=class_tfidf(counts, labels, k, n_keywords) if counts is not None else [[] for _ in range(k)],
            medoids=medoids(vectors, labels, k, n_medoids),
        ))
    stats = {"backend": kmeans_stats["backend"], "kmeans_seconds": kmeans_stats["seconds"],
             "seconds": round(time.perf_counter() - start, 3), "n_topics": [lv.n_topics for lv in levels]}
    return TopicTree(levels=levels), stats


def class_tfidf(counts: tuple, labels: np.ndarray, n_classes: int, n_keywords: int = 8) -> list[list[str]]:
    """Keywords per class by class-based TF-IDF.

    ``counts`` is ``(item-term CSR [n_items, n_terms], vocabulary [n_terms])`` from the items'
    texts; ``labels`` ``[n_items]``. Returns ``n_classes`` lists of up to ``n_keywords`` terms.
    """
    item_terms, vocabulary = counts
    class_terms = sparse.csr_matrix(onehot(labels, n_classes).T @ item_terms, dtype=np.float64)
    words = np.asarray(class_terms.sum(axis=1)).ravel()
    frequency = np.asarray(class_terms.sum(axis=0)).ravel()
    average = words.mean()
    idf = np.log1p(np.divide(average, frequency, out=np.zeros_like(frequency), where=frequency > 0))
    tf = sparse.diags(np.divide(1.0, words, out=np.zeros_like(words), where=words > 0)) @ class_terms
    scores = sparse.csr_matrix(tf @ sparse.diags(idf))
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


def _term_counts(texts: Sequence[str], stop_words: Sequence[str] = ()):
    """Item-term counts for keyword labels; words in more than half of the items are left out."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    max_df = 0.5 if len(texts) >= 20 else 1.0
    vectorizer = CountVectorizer(stop_words=sorted(ENGLISH_STOP_WORDS | {w.lower() for w in stop_words}), token_pattern=TOKEN_PATTERN, max_df=max_df, dtype=np.float32)
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:
        logger.info("item texts have no words to label topics with; topics get numeric labels")
        return None
    return matrix.tocsr(), vectorizer.get_feature_names_out()


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
