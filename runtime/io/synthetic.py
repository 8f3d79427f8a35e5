"""Synthetic interaction logs with planted topics, for the tests and the scale benchmark.

>>> data = make_synthetic(n_users=100, n_items=500, n_events=2_000, n_topics=5, seed=0)
>>> data.events.columns.tolist()
['user_id', 'item_id', 'timestamp', 'weight']

Items belong to planted topics: each topic has a random unit centre, its items' vectors are the
centre plus Gaussian noise (re-normalised), their titles mix topic words with common words, and
their category is ``Section <letter> > Shelf <topic>``. Each user picks a few topics with random
(or equal) mixture weights and draws events from those topics' items. Everything is vectorised
and seeded; the ground truth comes back with the log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

START = 1_600_000_000
_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


@dataclass(frozen=True)
class SyntheticData:
    """A synthetic log and its ground truth.

    ``events``: ``user_id, item_id, timestamp, weight`` (the format of ``read_events``);
    ``catalog``: ``item_id, title, categories, tags, description`` (the format of ``read_catalog``);
    user ``u`` and item ``i`` (0-based) have the ids ``u + first_id`` and ``i + first_id``.
    ``item_vectors`` ``[n_items, dim]`` float32 unit-norm; ``item_topics`` ``[n_items]`` planted
    topic; ``user_topics`` ``[n_users, max_interests]`` planted topics per user (-1 padded) and
    ``user_mixtures`` their weights (rows sum to 1); ``topic_centres`` ``[n_topics, dim]`` unit
    vectors; ``topic_words`` ``[n_topics, 3]``.
    """

    events: pd.DataFrame
    catalog: pd.DataFrame
    item_vectors: np.ndarray
    item_topics: np.ndarray
    user_topics: np.ndarray
    user_mixtures: np.ndarray
    topic_centres: np.ndarray
    topic_words: np.ndarray


def make_synthetic(
    *,
    n_users: int = 200,
    n_items: int = 1_000,
    n_events: int = 10_000,
    n_topics: int = 10,
    dim: int = 32,
    interests_per_user: tuple[int, int] = (1, 3),
    concentration: float | None = 2.0,
    noise: float = 0.6,
    days: float = 365.0,
    unique_pairs: bool = False,
    first_id: int = 1,
    seed: int = 0,
) -> SyntheticData:
    """Generate users, items, events and planted topics (see the module docstring).

    ``noise`` is the norm of the noise added to a topic centre before normalising (0.6 gives a
    within-topic cosine near 0.75 in high dimension). Every user has at least one event and between
    ``interests_per_user[0]`` and ``interests_per_user[1]`` planted topics, mixed by Dirichlet
    weights of ``concentration`` (None: equal weights). With ``unique_pairs`` a user engages an
    item at most once, as in a ratings log (repeated draws are dropped, so ``n_events`` is an
    upper bound).
    """
    low, high = interests_per_user
    if not (1 <= low <= high <= n_topics and n_events >= n_users and n_items >= n_topics):
        raise ValueError(
            f"need 1 <= {low} <= {high} <= n_topics={n_topics}, n_events={n_events} >= n_users={n_users}, "
            f"n_items={n_items} >= n_topics"
        )
    if concentration is not None and not concentration > 0:
        raise ValueError(f"concentration={concentration} should be > 0, or None for equal mixture weights")
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((n_topics, dim)))
    item_topics = np.r_[np.arange(n_topics), rng.integers(0, n_topics, n_items - n_topics)]
    rng.shuffle(item_topics)
    vectors = _unit(centres[item_topics] + noise * rng.standard_normal((n_items, dim)) / np.sqrt(dim))

    n_interests = rng.integers(low, high + 1, n_users)
    user_topics = np.argsort(rng.random((n_users, n_topics)), axis=1)[:, :high]
    slots = np.arange(high)[None, :] < n_interests[:, None]
    user_topics = np.where(slots, user_topics, -1)
    if concentration is None:
        mixtures = slots.astype(np.float64)
    else:
        mixtures = rng.dirichlet(np.full(high, float(concentration)), n_users) * slots
    mixtures /= mixtures.sum(axis=1, keepdims=True)

    counts = rng.multinomial(n_events - n_users, np.full(n_users, 1.0 / n_users)) + 1
    users = np.repeat(np.arange(n_users), counts)
    slot = (rng.random(users.size)[:, None] > np.cumsum(mixtures, axis=1)[users]).sum(axis=1)
    slot = np.minimum(slot, n_interests[users] - 1)
    topics = user_topics[users, slot]
    by_topic = np.argsort(item_topics, kind="stable")
    topic_start = np.searchsorted(item_topics[by_topic], np.arange(n_topics))
    topic_size = np.bincount(item_topics, minlength=n_topics)
    items = by_topic[topic_start[topics] + (rng.random(users.size) * topic_size[topics]).astype(np.int64)]
    timestamps = START + (rng.random(users.size) * days * 86_400).astype(np.int64)
    weights = rng.choice(np.array([0.6, 0.8, 1.0], np.float32), users.size)

    words = _words(rng, n_topics * 3 + 20, 7).reshape(-1)
    topic_words = words[: n_topics * 3].reshape(n_topics, 3)
    common = words[n_topics * 3:]
    picks = rng.integers(0, 3, (n_items, 2))
    titles = [f"{topic_words[t, a]} {topic_words[t, b]} {common[c]}" for t, (a, b), c in
              zip(item_topics, picks, rng.integers(0, common.size, n_items))]
    sections = [f"Section {chr(65 + (t // 5) % 26)}" for t in range(n_topics)]
    catalog = pd.DataFrame({
        "item_id": np.arange(n_items) + first_id,
        "title": titles,
        "categories": [[(sections[t], f"Shelf {t}")] for t in item_topics],
        "tags": [[] for _ in range(n_items)],
        "description": [""] * n_items,
    })
    events = pd.DataFrame({"user_id": users + first_id, "item_id": items + first_id, "timestamp": timestamps,
                           "weight": weights})
    if unique_pairs:
        events = events.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)
    return SyntheticData(events=events, catalog=catalog, item_vectors=vectors, item_topics=item_topics,
                         user_topics=user_topics, user_mixtures=mixtures.astype(np.float32), topic_centres=centres,
                         topic_words=topic_words)


def _words(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    letters = _LETTERS[rng.integers(0, 26, (n, length))]
    return np.array(["".join(row) for row in letters])


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
