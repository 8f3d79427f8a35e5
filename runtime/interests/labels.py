"""Topic labels made of phrases a person would write.

**Candidates.** Each item text is cut into segments at punctuation (``. , ; : ! ? | ( ) [ ] /``,
a spaced dash and the ``>`` of category paths). Within a segment, words keep their inner hyphens
and apostrophes (``sci-fi``, ``film-noir``); French and Italian elisions (``l'``, ``d'``) and a
trailing ``'s`` are cut off. A word breaks a phrase when it is a stop word (scikit-learn's English
list, the Snowball lists of 13 more languages in :mod:`~tastemap.runtime.interests.stopwords`, and
the words of the text template), holds a digit, or has one letter. The runs between breaks give
every phrase of one to three words (``world war ii``, ``film noir``); a phrase may not start with
a Roman numeral, and a one-word phrase needs three letters. ``film-noir`` and ``film noir`` are
one candidate, shown in its most frequent spelling.

**Filters.** A candidate must occur in at least two items and in at most ``max_df`` (25%) of all
items. A shorter phrase is absorbed by a longer one that holds at least half of its occurrences
(``noir`` by ``film noir``).

**Scores.** Class-based TF-IDF per topic (:func:`class_tfidf_scores`), counted only where at
least 3% of the topic's items (and two) hold the phrase, times the phrase's concentration
(:func:`concentration`): the Kullback-Leibler divergence between the category mix of the items
holding it (the finest category level with at least four nodes; the topics of the level when the
catalogue has none) and the catalogue's, smoothed with three pseudo-items. A phrase within 0.3 nats of the catalogue's mix is
noise and dropped (a tag put on films of every kind, ``in netflix queue``; words like ``man`` or
``story``); above that its score is multiplied by ``min(1, KL / 0.6)``.

**Truth.** A label term must be true of most of the topic: only phrases held by at least
``min_share`` (50%) of the topic's items are candidates, and the label's phrases are shown by
decreasing share, so its first term is the one most members carry.

**Choice.** Among a topic's best ``n_candidates`` (20) candidates, the label takes up to three phrases
by maximal marginal relevance. Relevance is the candidate's score times how much closer its
vector is to this topic's centroid than to the level's other centroids (a z-score over the
level's topics, negative values as 0); each step subtracts ``diversity`` (0.5) times the largest
cosine to a phrase already taken, and phrases sharing a word with one taken are skipped. Phrase
vectors come from the encoder when one is given, else from the mean vector of the items holding
the phrase. Where the catalogue has categories, a topic in which at least ``category_share`` (80%)
of the items carry one category node leads with that category's name (one topic per level and
name: the one with the largest share). No two topics of a level get the same set of phrases, and a
coarse topic's set differs from each of its children's: a topic whose true phrases are all taken
adds another true phrase, and a topic with no true phrase left is named by its medoid items,
quoted with their years (``like “Barfly” (1987), “Blaze” (1989)``), rather than by words that are
false of it.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import sparse

logger = logging.getLogger(__name__)

SEGMENT_BREAK = re.compile(r"[.,;:!?|()\[\]{}\"“”«»/\\]+|\s[-–—]+\s|\s>\s|\s&\s")
WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*|\S*\d\S*")
ELISION = re.compile(r"^(?:l|d|j|m|n|s|t|c|qu|dell|nell|all|sull|dall)['’](?=[^\W\d_]{2})")
ROMAN = re.compile(r"^[ivxlcdm]+$")
MAX_WORDS = 3
UNNAMEABLE = re.compile(r"[\d()\[\]{}]")
TRAILING_BRACKETS = re.compile(r"(?:\s*\([^()]*\))+$")
TRAILING_ARTICLE = re.compile(r"^(.+), (The|A|An|La|Le|Les|L'|Il|El|Los|Las|Die|Der|Das|Den|Det)$")
TRAILING_YEAR = re.compile(r"\s*\(\s*\d{4}(?:\s*[-–]\s*\d{0,4})?\s*\)\s*$")


@dataclass(frozen=True)
class Phrases:
    """Candidate phrases of a catalogue: ``items`` binary CSR ``[n_items, n_phrases]`` (item holds
    phrase), ``names`` ``[n_phrases]`` (display spelling)."""

    items: sparse.csr_matrix
    names: np.ndarray

    @property
    def n_phrases(self) -> int:
        return int(self.names.size)


def stop_word_set(extra: Sequence[str] = ()) -> frozenset[str]:
    """English (scikit-learn) and foreign (Snowball) stop words plus ``extra``, lower case."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from tastemap.runtime.interests.stopwords import foreign_stop_words

    return frozenset(ENGLISH_STOP_WORDS) | foreign_stop_words() | {w.lower() for w in extra}


def text_phrases(text: str, stop_words: frozenset[str]) -> list[tuple[str, str]]:
    """``(key, spelling)`` of every candidate phrase of one text (see the module docstring);
    ``key`` is the lower-case words joined by spaces (hyphens count as spaces)."""
    found = []
    for segment in SEGMENT_BREAK.split(text.lower()):
        run: list[str] = []
        for token in [*WORD.findall(segment), ""]:
            word = _clean(token)
            if word and not _breaks(word, stop_words):
                run.append(word)
                continue
            found += _ngrams(run)
            run = []
    return found


# One scan of many texts: a text's end, a segment break, or a word (one that holds a digit stops
# at a break, as it does when each segment is scanned alone).
_BREAK_CHARS = r".,;:!?|()\[\]{}\"“”«»/\\"
TOKEN = re.compile("\x00|" + SEGMENT_BREAK.pattern + r"|[^\W\d_]+(?:[-'’][^\W\d_]+)*"
                   + rf"|[^\s\x00{_BREAK_CHARS}]*\d[^\s\x00{_BREAK_CHARS}]*")
PHRASE_CHUNK = 20_000  # texts per scan: bounds the token lists held at once


def phrase_matrix(texts: Sequence[str], keys: Sequence[str], stop_words: frozenset[str]) -> sparse.csr_matrix:
    """Which of the phrase ``keys`` each text holds, as :func:`text_phrases` cuts it: binary CSR
    ``[n_texts, n_keys]`` (uint8).

    Vectorised for a whole catalogue: :data:`PHRASE_CHUNK` texts are joined and scanned once,
    each distinct token is judged once (a break, or a word and its key), and the n-grams of the
    token ids are matched against the id sequences that spell a key; memory is bounded by the
    chunk (about 90 MB), time is linear in the text (about 20 CPU seconds per million texts of
    twenty words).
    """
    column = {str(key): j for j, key in enumerate(keys)}
    rows, cols = [], []
    for start in range(0, len(texts), PHRASE_CHUNK):
        chunk = [str(t).replace("\x00", " ") for t in texts[start:start + PHRASE_CHUNK]]
        row, col = _chunk_phrases(chunk, column, stop_words)
        rows.append(row + start)
        cols.append(col)
    rows, cols = np.concatenate([np.zeros(0, np.int64), *rows]), np.concatenate([np.zeros(0, np.int64), *cols])
    matrix = sparse.csr_matrix((np.ones(rows.size, np.uint8), (rows, cols)), shape=(len(texts), len(column)))
    matrix.sum_duplicates()
    matrix.data[:] = 1
    return matrix


def _chunk_phrases(texts: list[str], column: dict, stop_words: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
    """(text, key column) of every key occurrence in ``texts`` (see :func:`phrase_matrix`)."""
    import pandas as pd

    tokens = TOKEN.findall("\x00".join(texts).lower() + "\x00")
    ids, distinct = pd.factorize(pd.Series(tokens, dtype=object), sort=False)
    n = len(distinct)
    word = [_token_word(str(t), stop_words) for t in distinct]
    valid = np.array([w is not None for w in word] + [False])  # id n: past the end
    roman = np.array([w is not None and bool(ROMAN.match(w)) for w in word] + [False])
    short = np.array([w is None or len(w.replace("-", "")) < 3 for w in word] + [True])
    by_key: dict[str, list[int]] = {}
    for i, w in enumerate(word):
        if w is not None:
            by_key.setdefault(w.replace("-", " "), []).append(i)
    ids = np.asarray(ids, np.int64)
    ends = np.flatnonzero(ids == distinct.get_loc("\x00"))  # each text's last token
    ids = np.concatenate([ids, np.full(MAX_WORDS, n)])
    text_of = np.searchsorted(ends, np.arange(ids.size - MAX_WORDS), side="left")
    base = n + 1
    rows, cols = [], []
    for size in range(1, MAX_WORDS + 1):
        spelled = _spellings(column, by_key, size, base)
        if not spelled:
            continue
        codes_of_keys = np.fromiter(spelled, np.int64, len(spelled))
        order = np.argsort(codes_of_keys)
        codes_of_keys, key_columns = codes_of_keys[order], np.fromiter(spelled.values(), np.int64, len(spelled))[order]
        starts = np.arange(ids.size - MAX_WORDS)
        ok = valid[ids[starts]] & ~roman[ids[starts]]
        code = ids[starts].copy()
        for offset in range(1, size):
            ok &= valid[ids[starts + offset]]
            code = code * base + ids[starts + offset]
        if size == 1:
            ok &= ~short[ids[starts]]
        hit = np.flatnonzero(ok)
        found = np.searchsorted(codes_of_keys, code[hit])
        found = np.minimum(found, codes_of_keys.size - 1)
        match = codes_of_keys[found] == code[hit]
        rows.append(text_of[hit[match]])
        cols.append(key_columns[found[match]])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def _token_word(token: str, stop_words: frozenset[str]) -> str | None:
    """The word a scanned token is in a phrase, None for a break (a text's end, a segment break,
    a stop word...)."""
    if token == "\x00" or SEGMENT_BREAK.fullmatch(token):
        return None
    word = _clean(token)
    return word if word and not _breaks(word, stop_words) else None


def _spellings(column: dict, by_key: dict, size: int, base: int) -> dict:
    """Code of every sequence of ``size`` token ids whose words spell a key -> the key's column
    (a key ``sci fi`` is one token ``sci-fi`` or two, ``sci`` and ``fi``)."""
    from itertools import combinations, product

    out = {}
    for key, j in column.items():
        words = key.split()
        for cuts in combinations(range(1, len(words)), size - 1):
            bounds = (0, *cuts, len(words))
            parts = [by_key.get(" ".join(words[a:b]), ()) for a, b in zip(bounds, bounds[1:])]
            for sequence in product(*parts):
                code = 0
                for token in sequence:
                    code = code * base + token
                out.setdefault(code, j)
    return out


def extract_phrases(texts: Sequence[str], stop_words: frozenset[str], *, max_df: float = 0.25,
                    min_df: int = 2) -> Phrases:
    """Candidate phrases of every item text, filtered by document frequency and absorption."""
    keys: dict[str, int] = {}
    spellings: list[dict[str, int]] = []
    rows, cols = [], []
    for row, text in enumerate(texts):
        seen = set()
        for key, spelling in text_phrases(str(text), stop_words):
            column = keys.setdefault(key, len(keys))
            if column == len(spellings):
                spellings.append({})
            spellings[column][spelling] = spellings[column].get(spelling, 0) + 1
            if column not in seen:
                seen.add(column)
                rows.append(row)
                cols.append(column)
    n_items = len(texts)
    matrix = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_items, len(keys)))
    df = np.asarray(matrix.sum(axis=0)).ravel()
    names = np.array([max(s.items(), key=lambda kv: (kv[1], kv[0]))[0] for s in spellings], dtype=object)
    key_list = list(keys)
    limit = max_df * n_items if n_items >= 20 else n_items
    keep = (df >= min(min_df, max(n_items // 10, 1))) & (df <= limit)
    keep &= ~_absorbed(key_list, df, keep)
    columns = np.flatnonzero(keep)
    return Phrases(items=matrix[:, columns].tocsr(), names=names[columns])


def class_tfidf_scores(counts: sparse.csr_matrix, labels: np.ndarray, n_classes: int) -> sparse.csr_matrix:
    """Class-based TF-IDF ``[n_classes, n_terms]``: ``tf(t, c) * log(1 + A / f(t))`` with ``A`` the
    mean number of terms per class and ``f(t)`` the frequency of ``t`` over all classes."""
    from tastemap.runtime.interests.layers import onehot

    class_terms = sparse.csr_matrix(onehot(labels, n_classes).T @ counts, dtype=np.float64)
    words = np.asarray(class_terms.sum(axis=1)).ravel()
    frequency = np.asarray(class_terms.sum(axis=0)).ravel()
    average = words.mean() if words.size else 0.0
    idf = np.log1p(np.divide(average, frequency, out=np.zeros_like(frequency), where=frequency > 0))
    tf = sparse.diags(np.divide(1.0, words, out=np.zeros_like(words), where=words > 0)) @ class_terms
    return sparse.csr_matrix(tf @ sparse.diags(idf))


def concentration(counts: sparse.csr_matrix, groups: sparse.csr_matrix, *, prior_items: float = 3.0,
                  noise: float = 0.3, scale: float = 0.6) -> np.ndarray:
    """How unlike the catalogue's the spread of each term's items over ``groups`` is: ``[n_terms]``
    in ``[0, 1]``: 0 when ``KL(p_t || q) < noise`` (nats), else ``min(1, KL / scale)``.

    ``counts`` ``[n_items, n_terms]``; ``groups`` ``[n_items, n_groups]`` (an item's share of each
    category, or a one-hot topic). ``q`` is the spread of all items, ``p_t`` that of the items
    holding term ``t``, smoothed towards ``q`` with ``prior_items`` pseudo-items so that a term on
    a handful of items does not look concentrated by chance. A tag spread over unrelated
    categories like the catalogue itself (``in netflix queue``) scores near 0.
    """
    per_term = np.asarray((sparse.csr_matrix(counts).T @ groups).todense(), dtype=np.float64)  # [t, g]
    q = np.asarray(groups.sum(axis=0), dtype=np.float64).ravel()
    q = q / max(q.sum(), 1e-12)
    totals = per_term.sum(axis=1, keepdims=True)
    p = (per_term + prior_items * q[None, :]) / (totals + prior_items)
    ratio = np.divide(p, q[None, :], out=np.ones_like(p), where=(p > 0) & (q[None, :] > 0))
    kl = (p * np.log(ratio)).sum(axis=1)
    return np.where(kl < noise, 0.0, np.clip(kl / scale, 0.0, 1.0))


@dataclass(frozen=True)
class LabelConfig:
    """How labels are chosen (see the module docstring)."""

    n_phrases: int = 3
    n_candidates: int = 20
    diversity: float = 0.5
    category_share: float = 0.8
    min_coverage: float = 0.03
    min_share: float = 0.5
    n_medoid_titles: int = 2


def label_level(
    phrases: Phrases,
    labels: np.ndarray,
    centroids: np.ndarray,
    phrase_vectors: np.ndarray,
    *,
    n_keywords: int = 8,
    categories: "CategoryNodes | None" = None,
    forbidden: Sequence[Sequence[frozenset]] | None = None,
    medoid_titles: Sequence[Sequence[str]] | None = None,
    config: LabelConfig = LabelConfig(),
) -> list[list[str]]:
    """Keywords per topic of one level, the label's phrases first.

    ``labels`` ``[n_items]`` topic ids, ``centroids`` ``[k, dim]`` unit, ``phrase_vectors``
    ``[n_phrases, dim]`` unit. ``categories`` (:class:`CategoryNodes`) lets a topic lead with a
    category name. ``forbidden[c]`` lists phrase sets topic ``c`` may not take (its children's
    labels). ``medoid_titles[c]`` (display titles of topic ``c``'s medoids, best first) name a
    topic that no free set of true phrases describes.
    """
    from tastemap.runtime.interests.layers import onehot

    k = centroids.shape[0]
    titles = medoid_titles if medoid_titles is not None else [[] for _ in range(k)]
    if phrases.n_phrases == 0:
        taken: set[frozenset] = set()
        return [[_medoid_name(c, titles[c], taken, config.n_medoid_titles)] for c in range(k)]
    scores = class_tfidf_scores(phrases.items, labels, k)
    spread = categories.shares if categories is not None and categories.shares is not None else onehot(labels, k)
    scores = sparse.csr_matrix(scores @ sparse.diags(concentration(phrases.items, spread)))
    holders = sparse.csr_matrix(onehot(labels, k).T @ phrases.items)  # items of each topic holding each phrase
    sizes = np.bincount(labels, minlength=k)
    minimum = np.maximum(2.0, config.min_coverage * sizes)
    covered = sparse.csr_matrix(holders.multiply(holders >= minimum[:, None]))
    scores = sparse.csr_matrix(scores.multiply(covered > 0))
    scores.eliminate_zeros()
    share = sparse.csr_matrix(sparse.diags(1.0 / np.maximum(sizes, 1)) @ holders)  # [k, n_phrases]
    true = sparse.csr_matrix(scores.multiply(share >= config.min_share))  # candidates most members hold
    true.eliminate_zeros()
    names = [str(n) for n in phrases.names]
    leads = _category_leads(categories, labels, k, config.category_share) if categories is not None else {}
    similarity = phrase_vectors @ centroids.T  # [n_phrases, k]
    spread = similarity.std(axis=1, keepdims=True)
    distinct = np.divide(similarity - similarity.mean(axis=1, keepdims=True), spread,
                         out=np.zeros_like(similarity), where=spread > 0)
    used: set[frozenset] = set()
    result: list[list[str]] = [[] for _ in range(k)]
    for topic in np.lexsort((np.arange(k), -sizes)):
        ranked = _ranked(scores.getrow(int(topic)))
        pool = [int(i) for i in _ranked(true.getrow(int(topic)))[: config.n_candidates]]
        taken_names: list[str] = []
        taken_vectors: list[np.ndarray] = []
        if topic in leads:
            node = leads[topic]
            taken_names.append(categories.label(node))
            taken_vectors.append(categories.vectors[node])
        blocked = set(used) | set(forbidden[topic] if forbidden is not None else ())
        best_score = max((scores[topic, i] for i in pool), default=1.0) or 1.0
        relevance = {i: float(scores[topic, i] / best_score * max(distinct[i, topic], 0.0)) for i in pool}
        chosen = _mmr(pool, names, phrase_vectors, relevance, taken_names, taken_vectors, blocked, config)
        coverage = {names[i]: share[topic, i] for i in pool}
        chosen = sorted(chosen, key=lambda name: -coverage.get(name, 1.0))  # a category lead holds >= 80%
        extra = [names[i] for i in pool if names[i] not in chosen and not _shares_word(names[i], chosen)]
        while chosen and frozenset(chosen) in blocked and extra:  # the same as another topic's: one more true phrase
            chosen.append(extra.pop(0))
        if chosen and frozenset(chosen) in blocked:  # true but taken: told apart by its medoid
            chosen = chosen[: config.n_phrases - 1] + [_medoid_name(int(topic), titles[int(topic)], blocked, 1)]
        if not chosen or frozenset(chosen) in blocked:  # nothing true to say: name the medoids
            chosen = [_medoid_name(int(topic), titles[int(topic)], blocked, config.n_medoid_titles)]
        used.add(frozenset(chosen))
        rest = [names[i] for i in ranked[: n_keywords * 2] if names[i] not in chosen]
        # ``TopicLevel.names`` joins the first three keywords: a shorter label takes no others
        result[int(topic)] = (chosen + rest)[: max(n_keywords, len(chosen))] if len(chosen) >= config.n_phrases else chosen
    return result


def medoid_label(titles: Sequence[str], n_titles: int = 2) -> str:
    """``like “A” (1994), “B”``: a topic named by its first ``n_titles`` medoid titles, each quoted
    with its year (:func:`quoted_title`), so that a short title reads as a film, not a word."""
    return "like " + ", ".join(quoted_title(t) for t in list(titles)[:n_titles])


def _medoid_name(topic: int, titles: Sequence[str], blocked: set, n_titles: int) -> str:
    """The medoid label of ``topic`` not in ``blocked``: more (distinct) titles until it is free;
    ``topic <id>`` without titles, or when identical titles leave no free name."""
    distinct = list(dict.fromkeys(quoted_title(t) for t in titles if str(t).strip()))
    for n in range(min(n_titles, len(distinct)), len(distinct) + 1):
        name = "like " + ", ".join(distinct[:n])
        if n and frozenset([name]) not in blocked:
            blocked.add(frozenset([name]))
            return name
    return f"topic {topic}"


@functools.lru_cache(maxsize=1 << 16)
def display_title(title: str) -> str:
    """A title as a person says it: without its trailing year and alternative titles in brackets,
    a trailing article in front (``The Night`` for ``Night, The (Notte, La) (1961)``); kept for the
    titles met again (every explanation shows one or two)."""
    short = TRAILING_YEAR.sub("", str(title)).strip()
    short = TRAILING_BRACKETS.sub("", short).strip() or short
    moved = TRAILING_ARTICLE.match(short)
    short = f"{moved.group(2)} {moved.group(1)}" if moved else short
    return short or str(title)


@functools.lru_cache(maxsize=1 << 16)
def quoted_title(title: str) -> str:
    """A title named where a word could stand (a label): :func:`display_title` in quotes, then
    its year when the title has one, ``“They” (2002)`` for ``They (2002)``."""
    year = TRAILING_YEAR.search(str(title))
    quoted = f"“{display_title(str(title))}”"
    return f"{quoted} ({year.group(0).strip()[1:-1].strip()})" if year else quoted


def is_nameable(term: str) -> bool:
    """Whether a term (a category's name) may name a topic or a reason: no digit, no bracket
    (``(no genres listed)``, ``shelf 0`` are not)."""
    return not UNNAMEABLE.search(str(term))


def is_medoid_label(name: str) -> bool:
    """Whether a label names its topic's medoids (:func:`medoid_label`) rather than phrases."""
    return name.startswith("like ")


def _ranked(row: sparse.csr_matrix) -> np.ndarray:
    """Column indices of a one-row score matrix's positive entries, best first (ties: lower index)."""
    order = np.lexsort((row.indices, -row.data))
    return row.indices[order][row.data[order] > 0]


def phrase_vectors_from_items(phrases: Phrases, item_vectors: np.ndarray) -> np.ndarray:
    """Unit mean vector of the items holding each phrase ``[n_phrases, dim]``: the fallback when
    no encoder is given."""
    sums = np.asarray(phrases.items.T @ item_vectors, dtype=np.float64)
    return _unit(sums).astype(np.float32)


def _mmr(pool, names, vectors, relevance, taken_names, taken_vectors, blocked, config) -> list[str]:
    """Maximal marginal relevance: ``relevance`` (scaled to at most 1) minus the largest cosine to
    a phrase already taken, weighted by ``config.diversity``."""
    chosen_names = list(taken_names)
    chosen_vectors = list(taken_vectors)
    candidates = list(pool)
    top = max((abs(v) for v in relevance.values()), default=1.0) or 1.0
    relevance = {i: v / top for i, v in relevance.items()}
    while len(chosen_names) < config.n_phrases and candidates:
        best, best_score = None, -np.inf
        for i in candidates:
            if _shares_word(names[i], chosen_names):
                continue
            if len(chosen_names) == config.n_phrases - 1 and frozenset([*chosen_names, names[i]]) in blocked:
                continue
            redundancy = max((float(vectors[i] @ v) for v in chosen_vectors), default=0.0)
            score = (1 - config.diversity) * relevance[i] - config.diversity * redundancy
            if score > best_score:
                best, best_score = i, score
        if best is None:
            break
        chosen_names.append(names[best])
        chosen_vectors.append(vectors[best])
        candidates.remove(best)
    return chosen_names


@dataclass(frozen=True)
class CategoryNodes:
    """The catalogue's category nodes for labels: ``items`` binary CSR ``[n_items, n_nodes]``,
    ``names`` ``[n_nodes]`` (``A`` or ``A > B``), unit ``vectors`` ``[n_nodes, dim]`` (the encoded
    name, or the mean vector of the node's items) and ``shares`` ``[n_items, n_nodes_of_level]``
    (each item's share of the nodes of the finest level with at least four nodes: the reference
    spread of :func:`concentration`; None when no level has four).
    """

    items: sparse.csr_matrix
    names: np.ndarray
    vectors: np.ndarray
    shares: sparse.csr_matrix | None

    def label(self, node: int) -> str:
        """The node's own name, lower case (``crime`` for ``Books > Crime``)."""
        return str(self.names[node]).split(" > ")[-1].strip().lower()


def _category_leads(categories: CategoryNodes, labels: np.ndarray, k: int, share: float) -> dict:
    """Topic -> node column for topics in which at least ``share`` of the items carry one node;
    each node leads one topic per level at most (the one where its share is largest)."""
    from tastemap.runtime.interests.layers import onehot

    matrix, node_names = categories.items, categories.names
    if matrix.shape[1] == 0:
        return {}
    holders = np.asarray((onehot(labels, k).T @ matrix).todense(), dtype=np.float64)
    fraction = holders / np.maximum(np.bincount(labels, minlength=k), 1)[:, None]
    depth = np.array([str(n).count(" > ") for n in node_names])
    topics, nodes = np.nonzero(fraction >= share)
    order = np.lexsort((nodes, topics, -fraction[topics, nodes], -depth[nodes]))
    leads: dict[int, int] = {}
    for topic, node in zip(topics[order], nodes[order]):
        if int(topic) not in leads and int(node) not in leads.values() and is_nameable(categories.label(int(node))):
            leads[int(topic)] = int(node)
    return leads


def _shares_word(name: str, chosen: list[str]) -> bool:
    words = set(name.replace("-", " ").split())
    return any(words & set(other.replace("-", " ").split()) for other in chosen)


def _clean(token: str) -> str:
    token = ELISION.sub("", token.strip("'’-"))
    if token.endswith(("'s", "’s")):
        token = token[:-2]
    return token


def _breaks(word: str, stop_words: frozenset[str]) -> bool:
    if any(ch.isdigit() for ch in word) or len(word) < 2:
        return True
    return word in stop_words or word.replace("’", "'") in stop_words


def _ngrams(run: list[str]) -> list[tuple[str, str]]:
    out = []
    for size in range(1, MAX_WORDS + 1):
        for start in range(len(run) - size + 1):
            words = run[start : start + size]
            if ROMAN.match(words[0]) or (size == 1 and len(words[0].replace("-", "")) < 3):
                continue
            spelling = " ".join(words)
            out.append((spelling.replace("-", " "), spelling))
    return out


def _absorbed(keys: list[str], df: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Phrases with a longer kept phrase holding at least half of their occurrences."""
    index = {key: i for i, key in enumerate(keys)}
    absorbed = np.zeros(len(keys), bool)
    for i, key in enumerate(keys):
        if not keep[i]:
            continue
        words = key.split()
        if len(words) < 2:
            continue
        for size in range(1, len(words)):
            for start in range(len(words) - size + 1):
                part = index.get(" ".join(words[start : start + size]))
                if part is not None and df[i] >= 0.5 * df[part]:
                    absorbed[part] = True
    return absorbed


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
