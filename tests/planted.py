"""The planted log of the recommendation tests: a small synthetic catalog with four topics and
users who each like two of them equally (a preset of :func:`tastemap.runtime.io.synthetic.make_synthetic`)."""

from __future__ import annotations

from tastemap.runtime.io.synthetic import make_synthetic

N_TOPICS = 4


def make_planted(n_users: int = 40, *, events_per_user: int = 24, dim: int = 16, seed: int = 0):
    """Return ``(events, catalog, item_vectors, truth)``; ``truth`` is the
    :class:`~tastemap.runtime.io.synthetic.SyntheticData` (``item_topics``, ``user_topics``,
    ``topic_centres``...).

    120 items in 4 topics; each user draws about ``events_per_user`` items from two topics with
    equal probability, each item at most once. User and item ids are their 0-based indices
    (``truth.item_topics[item_id]``, ``truth.user_topics[user_id]``).
    """
    truth = make_synthetic(n_users=n_users, n_items=30 * N_TOPICS, n_events=events_per_user * n_users,
                           n_topics=N_TOPICS, dim=dim, interests_per_user=(2, 2), concentration=None,
                           unique_pairs=True, first_id=0, seed=seed)
    return truth.events, truth.catalog, truth.item_vectors, truth


def make_recommender(**kwargs):
    """An unfitted TastemapRecommender with a profiler and segmenter sized for the planted catalog;
    fit it with ``fit(train, catalog, vectors)``."""
    from tastemap.runtime.interests.profiles import InterestProfiler
    from tastemap.runtime.recommend.recommender import TastemapRecommender
    from tastemap.runtime.interests.segments import UserSegmenter

    profiler = InterestProfiler(n_topics=8, n_coarse_topics=4, seed=0)
    segmenter = UserSegmenter(n_segments=3, seed=0)
    return TastemapRecommender(profiler=profiler, segmenter=segmenter, l2=10.0, **kwargs)


def make_planted_interests(n_users: int = 150, **kwargs):
    """Users with 1 to 4 long-term interests and a recent burst from 32 fine categories in 8
    groups (:func:`tastemap.bench.interests.make_planted_interests`, the data of the interest bench)."""
    from tastemap.bench.interests import make_planted_interests as make

    return make(n_users, **kwargs)


def write_planted_files(folder, n_users: int = 16) -> list[str]:
    """Write :func:`make_planted` data as ``events.csv``, ``catalog.csv`` (first category as text)
    and ``vectors.npy`` into ``folder``; returns the matching ``tastemap evaluate`` arguments."""
    import numpy as np

    events, catalog, vectors, _ = make_planted(n_users)
    events.to_csv(folder / "events.csv", index=False)
    catalog.assign(categories=[c[0][0] for c in catalog.categories], tags="").to_csv(folder / "catalog.csv", index=False)
    np.save(folder / "vectors.npy", vectors)
    return ["--events", str(folder / "events.csv"), "--catalog", str(folder / "catalog.csv"),
            "--vectors", str(folder / "vectors.npy")]
