"""What two items share that a person can name: their catalog categories and the topic keywords
their texts both hold.

:func:`item_terms` builds, once per fitted profiler, each item's category nodes (every depth; a
name with a digit or a bracket, ``(no genres listed)``, is never a reason) and the phrases of a
vocabulary of the topic tree's keywords that its text holds outside its title (phrases mined from
item texts, tags and titles among them, that passed the labels' noise filter: ``twist ending``,
``pixar``; a title's words, ``star`` or ``eyes``, do not count). Both are sparse item × term
matrices; the phrases are cut from the whole catalogue at once
(:func:`~tastemap.runtime.interests.labels.phrase_matrix`, about two CPU seconds per 100,000 short
texts), so a request never cuts text. :meth:`ItemTerms.shared` gives what an item and a seed share: at most
one keyword phrase (one of the item's own fine topic first, else the first in alphabetical order)
and the deepest shared categories, rarest first; :meth:`ItemTerms.shared_many` gives the same
for many pairs at once, as arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from tastemap.runtime.interests.labels import is_medoid_label, is_nameable, phrase_matrix, stop_word_set
from tastemap.runtime.recommend.candidates import Rows, find_sorted, keys_of

MAX_SHARED = 3  # terms named at most; more would read as a list, not a reason
COMMON_INFORMATION = 2.8  # nats: a ground this common (one category held by over 6% of items) is weak


def join_words(words) -> str:
    """``sci-fi``, ``sci-fi and comedy``, ``time travel, sci-fi and comedy``."""
    words = [str(w) for w in words]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


@dataclass(frozen=True)
class Shared:
    """What two items share: keyword ``phrases`` (best first) and category ``categories`` (names,
    rarest first), the categories' ``information`` (summed ``log(n_items / holders)`` over the
    first :data:`MAX_SHARED`) and the first phrase's (``phrase_information``)."""

    phrases: tuple = ()
    categories: tuple = ()
    information: float = 0.0
    phrase_information: float = 0.0

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

    @property
    def common(self) -> bool:
        """Terms as widely held as one category on over 6% of the catalogue's items (``comedy``,
        ``romance and comedy`` on MovieLens; the phrase ``action`` where genres are words of the
        text): too common a ground to single out."""
        return self.information + self.phrase_information < COMMON_INFORMATION


@dataclass(frozen=True)
class SharedTerms:
    """What many (item, other) pairs share (:meth:`ItemTerms.shared_many`), each array
    ``[n_pairs, ...]``: ``words`` ``[n_pairs, MAX_SHARED]`` the term ids an explanation names
    (:meth:`ItemTerms.term_names`; -1 past the last), ``has_phrase`` and ``has_categories``,
    ``information`` and ``phrase_information`` as in :class:`Shared`."""

    words: np.ndarray
    has_phrase: np.ndarray
    has_categories: np.ndarray
    information: np.ndarray
    phrase_information: np.ndarray

    @property
    def any(self) -> np.ndarray:
        return self.has_phrase | self.has_categories

    @property
    def common(self) -> np.ndarray:
        return self.information + self.phrase_information < COMMON_INFORMATION


@dataclass
class ItemTerms:
    """Nameable terms of every item: ``items`` binary CSR ``[n_items, n_nodes]`` of category nodes,
    their ``names`` (own name, lower case), ``parents`` (-1 at the top) and ``counts`` (holders);
    ``phrases`` binary CSR ``[n_items, n_keys]`` of the keyword ``keys`` (lower case, hyphens as
    spaces, sorted) each item's text holds outside its title, shown as ``spellings``, and held by
    ``phrase_counts`` items;
    ``fine`` ``[n_items]`` each item's fine topic and ``topic_ranks`` the position of each of a
    fine topic's keywords in its list, best first (keys ``topic * n_keys + key``, sorted, and
    ``topic_rank_values``)."""

    items: sparse.csr_matrix
    names: np.ndarray
    parents: np.ndarray
    counts: np.ndarray
    phrases: sparse.csr_matrix
    keys: np.ndarray
    spellings: np.ndarray
    phrase_counts: np.ndarray
    fine: np.ndarray
    topic_ranks: np.ndarray
    topic_rank_values: np.ndarray

    @property
    def n_nodes(self) -> int:
        return int(self.names.size)

    def nodes(self, item: int) -> np.ndarray:
        return self.items.indices[self.items.indptr[item]:self.items.indptr[item + 1]]

    def item_phrases(self, item: int) -> frozenset:
        """The keyword keys item ``item``'s text holds outside its title."""
        return frozenset(self.keys[self.phrases.indices[self.phrases.indptr[item]:self.phrases.indptr[item + 1]]])

    def term_names(self, terms) -> list[str]:
        """Names of term ids (:class:`SharedTerms`): a category node, or ``n_nodes`` + a key."""
        return [str(self.names[t]) if t < self.n_nodes else str(self.spellings[t - self.n_nodes])
                for t in terms if t >= 0]

    def word_ids(self, terms: np.ndarray, padding: int) -> np.ndarray:
        """Term ids (:class:`SharedTerms`) as ids of the words they read as (two categories of one
        name, ``fiction`` under ``Books`` and under ``Films``, are one word); ``padding`` for -1."""
        if "_words" not in self.__dict__:
            spelled = np.concatenate([self.names.astype(str), self.spellings.astype(str)])
            self.__dict__["_words"] = np.append(np.unique(spelled, return_inverse=True)[1], -3).astype(np.int64)
        terms = np.asarray(terms)
        return np.where(terms >= 0, self.__dict__["_words"][np.maximum(terms, 0)], padding)

    def shared(self, item: int, other: int) -> Shared:
        """What ``item`` and ``other`` share (see the module docstring), one pair at a time."""
        both = set(self.nodes(item).tolist()) & set(self.nodes(other).tolist())
        parents = {int(self.parents[node]) for node in both}
        deepest = sorted((node for node in both if node not in parents), key=lambda node: (self.counts[node], node))
        information = float(np.log(self.items.shape[0] / np.maximum(self.counts[deepest[:MAX_SHARED]], 1)).sum())
        row = lambda i: self.phrases.indices[self.phrases.indptr[i]:self.phrases.indptr[i + 1]].tolist()
        common = set(row(item)) & set(row(other))
        rank = self._topic_rank(np.full(len(common), self.fine[item]), np.array(sorted(common), np.int64))
        ranked = [c for _, c in sorted(zip(rank.tolist(), sorted(common)))]
        return Shared(phrases=tuple(str(self.spellings[c]) for c in ranked),
                      categories=tuple(str(self.names[n]) for n in deepest), information=information,
                      phrase_information=float(self._phrase_information(np.array(ranked[:1], np.int64)).sum()))

    def shared_many(self, items: np.ndarray, others: np.ndarray) -> SharedTerms:
        """:meth:`shared` of every pair ``(items[p], others[p])`` at once, as arrays."""
        items, others = np.asarray(items, np.int64), np.asarray(others, np.int64)
        n_pairs = items.size
        pair, node = _common_entries(self.items, items, others)
        parents = self.parents[node]
        is_parent = np.isin(pair * self.n_nodes + node, (pair * self.n_nodes + parents)[parents >= 0])
        pair, node = pair[~is_parent], node[~is_parent]
        order = np.lexsort((node, self.counts[node], pair))
        pair, node = pair[order], node[order]
        rank = np.arange(pair.size) - np.searchsorted(pair, pair)
        pair, node, rank = pair[rank < MAX_SHARED], node[rank < MAX_SHARED], rank[rank < MAX_SHARED]
        categories = np.full((n_pairs, MAX_SHARED), -1, np.int64)
        categories[pair, rank] = node
        information = np.bincount(pair, weights=np.log(self.items.shape[0] / np.maximum(self.counts[node], 1)),
                                  minlength=n_pairs)
        phrase_pair, key = _common_entries(self.phrases, items, others)
        order = np.lexsort((key, self._topic_rank(self.fine[items[phrase_pair]], key), phrase_pair))
        phrase_pair, key = phrase_pair[order], key[order]
        first = np.r_[True, phrase_pair[1:] != phrase_pair[:-1]] if phrase_pair.size else np.zeros(0, bool)
        phrase = np.full(n_pairs, -1, np.int64)
        phrase[phrase_pair[first]] = key[first] + self.n_nodes
        has_phrase = phrase >= 0
        words = np.where(has_phrase[:, None], np.c_[phrase, categories[:, :MAX_SHARED - 1]], categories)
        phrase_information = np.zeros(n_pairs)
        phrase_information[has_phrase] = self._phrase_information(phrase[has_phrase] - self.n_nodes)
        return SharedTerms(words=words, has_phrase=has_phrase, has_categories=categories[:, 0] >= 0,
                           information=information, phrase_information=phrase_information)

    def _phrase_information(self, keys: np.ndarray) -> np.ndarray:
        return np.log(self.items.shape[0] / np.maximum(self.phrase_counts[keys], 1))

    def _topic_rank(self, topics: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Position of each key among its topic's keywords; past every list (``len(keys)``) when
        it is none of them."""
        wanted = np.asarray(topics, np.int64) * self.keys.size + np.asarray(keys, np.int64)
        at = np.minimum(np.searchsorted(self.topic_ranks, wanted), max(self.topic_ranks.size - 1, 0))
        found = self.topic_ranks[at] == wanted if self.topic_ranks.size else np.zeros(wanted.size, bool)
        return np.where(found, self.topic_rank_values[at] if self.topic_ranks.size else 0, self.keys.size)


def _common_entries(matrix: sparse.csr_matrix, rows: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pair, column) of the columns rows ``rows[p]`` and ``others[p]`` of a binary CSR matrix
    (sorted indices) both hold, by pair then column."""
    n_columns = max(matrix.shape[1], 1)
    mine, theirs = keys_of(Rows.of(matrix, rows)), keys_of(Rows.of(matrix, others))
    both = mine[find_sorted(theirs, mine)[1]]
    return both // n_columns, both % n_columns


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
    keys = np.array(sorted(vocabulary), dtype=object)
    phrases = _saved_phrases(profiler, keys)
    if phrases is None:
        stop_words = stop_word_set(template_words(profiler.text_template))
        in_text = phrase_matrix(list(profiler.item_texts_), keys, stop_words)
        in_title = phrase_matrix([str(t) for t in profiler.item_titles_], keys, stop_words)
        phrases = sparse.csr_matrix(in_text - in_text.multiply(in_title), dtype=np.uint8)
        phrases.eliminate_zeros()
        phrases.sort_indices()
    ranks, values = _topic_ranks(per_topic, {k: i for i, k in enumerate(keys)})
    terms = ItemTerms(items=matrix, names=names, parents=parents,
                      counts=np.asarray(matrix.sum(axis=0), np.float64).ravel(), phrases=phrases, keys=keys,
                      spellings=np.array([vocabulary[k] for k in keys], dtype=object),
                      phrase_counts=np.asarray(phrases.sum(axis=0), np.float64).ravel(),
                      fine=np.asarray(profiler.item_topics_[:, -1], np.int64), topic_ranks=ranks,
                      topic_rank_values=values)
    profiler.__dict__["_item_terms"] = (key, terms)
    return terms


SAVED_PHRASES = "_saved_phrases"
"""Where a loaded model puts the phrase table its folder holds: ``(keys, phrases)`` on the
profiler. :func:`item_terms` takes it once (its terms are then cached), if the keywords and the
items are still the ones it was saved with; scanning every item's text costs 1.4 s at 200k items."""


def _saved_phrases(profiler, keys: np.ndarray) -> sparse.csr_matrix | None:
    saved = profiler.__dict__.pop(SAVED_PHRASES, None)
    if saved is None or saved[1].shape != (len(profiler.item_texts_), keys.size) \
            or not np.array_equal(saved[0], keys.astype(str)):
        return None
    return saved[1]


def _topic_ranks(per_topic: list, column: dict) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys ``topic * n_keys + key`` of each fine topic's keywords, and their positions."""
    ranks = {}
    for topic, words in enumerate(per_topic):
        for position, word in enumerate(words):
            ranks.setdefault(topic * len(column) + column[word], position)
    keys = np.array(sorted(ranks), np.int64)
    return keys, np.array([ranks[k] for k in keys.tolist()], np.int64)


def _key(term: str) -> str:
    return " ".join(str(term).lower().replace("-", " ").split())
