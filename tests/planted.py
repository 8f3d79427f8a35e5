"""A small synthetic catalog with planted topics and users who each like two of them."""

from __future__ import annotations

import numpy as np
import pandas as pd

N_TOPICS = 4
ITEMS_PER_TOPIC = 30
TOPIC_NAMES = ("space", "western", "romance", "horror")


def make_planted(n_users: int = 40, *, events_per_user: int = 24, dim: int = 16, seed: int = 0):
    """Return ``(events, catalog, item_vectors, user_topics)``.

    Items ``t * 30 .. t * 30 + 29`` belong to topic ``t``: their vectors are the topic's axis plus
    small noise, their category is ``Genre <name>``. User ``u`` likes topics ``u % 4`` and
    ``(u + 1) % 4`` and rates items of those two topics, alternating, at increasing timestamps.
    """
    rng = np.random.default_rng(seed)
    n_items = N_TOPICS * ITEMS_PER_TOPIC
    topics = np.repeat(np.arange(N_TOPICS), ITEMS_PER_TOPIC)
    vectors = np.zeros((n_items, dim), np.float32)
    vectors[np.arange(n_items), topics] = 1.0
    vectors += rng.normal(0, 0.15, size=vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog = pd.DataFrame({
        "item_id": np.arange(100, 100 + n_items),
        "title": [f"{TOPIC_NAMES[t]} film {i}" for i, t in enumerate(topics)],
        "categories": [[(f"Genre {TOPIC_NAMES[t]}",)] for t in topics],
        "tags": [[TOPIC_NAMES[t]] for t in topics],
        "description": [""] * n_items,
    })
    rows = []
    user_topics = {}
    for user in range(n_users):
        liked = (user % N_TOPICS, (user + 1) % N_TOPICS)
        user_topics[user] = liked
        for step in range(events_per_user):
            topic = liked[step % 2]
            item = topic * ITEMS_PER_TOPIC + rng.integers(ITEMS_PER_TOPIC)
            rows.append((user, 100 + item, 1_600_000_000 + 3600 * step + user, 1.0))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "weight"])
    events = events.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)
    return events, catalog, vectors, user_topics


def make_recommender(catalog, vectors, **kwargs):
    """A TastemapRecommender with a profiler and segmenter sized for the planted catalog."""
    from tastemap.runtime.interests.profiles import InterestProfiler
    from tastemap.runtime.recommend.recommender import TastemapRecommender
    from tastemap.runtime.interests.segments import UserSegmenter

    profiler = InterestProfiler(n_topics=8, n_coarse_topics=4, seed=0)
    segmenter = UserSegmenter(n_segments=3, seed=0)
    return TastemapRecommender(catalog=catalog, item_vectors=vectors, profiler=profiler, segmenter=segmenter,
                               l2=10.0, **kwargs)
