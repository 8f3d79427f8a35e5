"""What two items share that a person can name: their catalog categories and the topic keywords
their texts both hold.

:func:`item_terms` builds, once per fitted profiler, each item's category nodes (every depth; a
name with a digit or a bracket, ``(no genres listed)``, is never a reason) and a vocabulary of
the topic tree's keywords (phrases mined from item texts, tags and titles among them, that passed
the labels' noise filter: ``twist ending``, ``pixar``; a title's words do not count).
:meth:`ItemTerms.shared`
gives what an item and a seed share: at most one keyword phrase (one of the item's own topic
first) and the deepest shared categories, rarest first. An item's phrases are cut from its
stored text on first use, so a request costs its own items only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from tastemap.runtime.interests.labels import is_medoid_label, is_nameable, stop_word_set, text_phrases

MAX_SHARED = 3  # terms named at most; more would read as a list, not a reason
PAIR_CACHE = 200_000  # (item, seed) pairs whose shared terms are kept


def join_words(words) -> str:
    """``sci-fi``, ``sci-fi and comedy``, ``time travel, sci-fi and comedy``."""
    words = [str(w) for w in words]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


@dataclass(frozen=True)
class Shared:
    """What two items share: keyword ``phrases`` (best first) and category ``categories`` (names,
    rarest first), and the categories' ``information`` (summed ``log(n_items / holders)``)."""

    phrases: tuple = ()
    categories: tuple = ()
    information: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.phrases or self.categories)

    @property
    def words(self) -> list[str]:
        """The terms an explanation names: one phrase, then categories, :data:`MAX_SHARED` at most."""
        return [*self.phrases[:1], *self.categories][:MAX_SHARED]

    @property
    def specificity(self) -> tuple:
        """Ordering of seeds: naming a category, then a phrase, then rarer categories."""
        return bool(self.categories), bool(self.phrases), self.information


@dataclass
class ItemTerms:
    """Nameable terms of every item: ``items`` binary CSR ``[n_items, n_nodes]`` of category nodes,
    their ``names`` (own name, lower case), ``parents`` (-1 at the top) and ``counts`` (holders);
    ``vocabulary`` maps a keyword's key (lower case, hyphens as spaces) to its spelling, found in
    the item ``texts`` outside their ``titles``;
    ``topic_keywords`` ``[n_items]`` the keys of each item's fine topic, best first."""

    items: sparse.csr_matrix
    names: np.ndarray
    parents: np.ndarray
    counts: np.ndarray
    vocabulary: dict
    texts: list
    titles: list
    stop_words: frozenset
    topic_keywords: list
    _phrases: dict = field(default_factory=dict, repr=False)
    _nodes: dict = field(default_factory=dict, repr=False)
    _pairs: dict = field(default_factory=dict, repr=False)

    def nodes(self, item: int) -> np.ndarray:
        return self.items.indices[self.items.indptr[item]:self.items.indptr[item + 1]]

    def node_set(self, item: int) -> frozenset:
        """:meth:`nodes` as a set, kept (set operations on a few nodes cost less than NumPy's)."""
        hit = self._nodes.get(item)
        if hit is None:
            hit = self._nodes[item] = frozenset(self.nodes(item).tolist())
        return hit

    def phrases(self, item: int) -> frozenset:
        """The vocabulary keys item ``item``'s text holds outside its title (a title's words, ``star``
        or ``eyes``, are no reason); cut once, then kept."""
        hit = self._phrases.get(item)
        if hit is None:
            found = {key for key, _ in text_phrases(str(self.texts[item]), self.stop_words)}
            found -= {key for key, _ in text_phrases(str(self.titles[item]), self.stop_words)}
            hit = self._phrases[item] = frozenset(found & self.vocabulary.keys())
        return hit

    def shared(self, item: int, other: int) -> Shared:
        """What ``item`` and ``other`` share (see the module docstring); kept for the pairs a
        batch meets again (popular items and seeds), up to :data:`PAIR_CACHE` pairs."""
        hit = self._pairs.get((item, other))
        if hit is None:
            if len(self._pairs) >= PAIR_CACHE:
                self._pairs.clear()
            hit = self._pairs[item, other] = self._shared(item, other)
        return hit

    def _shared(self, item: int, other: int) -> Shared:
        both = self.node_set(item) & self.node_set(other)
        parents = {int(self.parents[node]) for node in both}
        deepest = sorted((node for node in both if node not in parents), key=lambda node: (self.counts[node], node))
        information = float(np.log(self.items.shape[0] / np.maximum(self.counts[deepest[:MAX_SHARED]], 1)).sum())
        common = self.phrases(item) & self.phrases(other)
        ranked = [k for k in self.topic_keywords[item] if k in common] + sorted(common - set(self.topic_keywords[item]))
        return Shared(phrases=tuple(self.vocabulary[k] for k in ranked),
                      categories=tuple(str(self.names[n]) for n in deepest), information=information)


def item_terms(profiler) -> ItemTerms:
    """:class:`ItemTerms` of a fitted :class:`~tastemap.runtime.interests.profiles.InterestProfiler`,
    built once per category tree, topic tree and item texts (an update that replaces one of them
    gets new terms)."""
    from tastemap.runtime.io.events import template_words

    key = (profiler.category_levels_, profiler.topic_tree_, profiler.item_texts_, profiler.item_topics_)
    hit = profiler.__dict__.get("_item_terms")
    if hit is not None and all(a is b for a, b in zip(hit[0], key)):
        return hit[1]
    levels, tree = profiler.category_levels_, profiler.topic_tree_
    n_items = len(profiler.item_texts_)
    if levels:
        matrix = sparse.hstack([level.items for level in levels]).tocsr().astype(np.float32)
        paths = np.concatenate([level.names for level in levels]).astype(str)
    else:
        matrix, paths = sparse.csr_matrix((n_items, 0), dtype=np.float32), np.zeros(0, str)
    names = np.array([p.split(" > ")[-1].strip().lower() for p in paths])
    nameable = np.array([is_nameable(n) for n in names], bool)
    matrix.data[:] = nameable[matrix.indices]
    matrix.eliminate_zeros()
    matrix.sort_indices()
    column = {p: i for i, p in enumerate(paths)}
    parents = np.array([column.get(p.rsplit(" > ", 1)[0], -1) if " > " in p else -1 for p in paths], np.int64)
    categories = {_key(n) for n in names}
    vocabulary, per_topic = {}, []
    for depth, level in enumerate(tree.levels):
        for words in level.keywords:
            usable = [str(w) for w in words if not is_medoid_label(w) and is_nameable(w) and _key(w) not in categories]
            for word in usable:
                vocabulary.setdefault(_key(word), word)
            if depth == len(tree.levels) - 1:
                per_topic.append([_key(w) for w in usable])
    fine = profiler.item_topics_[:, -1]
    terms = ItemTerms(items=matrix, names=names, parents=parents, counts=np.asarray(matrix.sum(axis=0)).ravel(),
                      vocabulary=vocabulary, texts=list(profiler.item_texts_), titles=list(profiler.item_titles_),
                      stop_words=stop_word_set(template_words(profiler.text_template)),
                      topic_keywords=[per_topic[t] for t in fine] if per_topic else [[] for _ in range(n_items)])
    profiler.__dict__["_item_terms"] = (key, terms)
    return terms


def _key(term: str) -> str:
    return " ".join(str(term).lower().replace("-", " ").split())
