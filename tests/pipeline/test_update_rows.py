"""An update of known users reads and writes their rows only: no catalogue-wide quantity is
recomputed, duplicates are found among their own events, and what serving derives from the
segment popularity stays exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from planted import make_planted, make_recommender
from tastemap.runtime.io.events import align_events
from tastemap.runtime.pipeline.model import TastemapModel
from tastemap.runtime.recommend import serving


@pytest.fixture()
def model():
    events, catalog, vectors, _ = make_planted(40)
    data, _ = align_events(events, catalog)
    model = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender())
    model.recommend(3, k=5)  # the serving caches an update must keep
    return model


def one_event(user, item, at):
    return pd.DataFrame({"user_id": [user], "item_id": [item], "timestamp": [at], "weight": [1.0]})


def unseen_item_of_own_topic(model, user):
    """An item the user has not seen, of the fine topic of the user's first interest."""
    rec = model.recommender
    row = int(rec.user_index_.get_indexer([user])[0])
    topics = rec.profiler_.topic_tree_.fine.labels
    seen = set(rec.state_.history[row].indices.tolist())
    medoid = rec.state_.interests.medoid[rec.state_.interests.indptr[row]]
    return next(int(rec.item_ids_[i]) for i in np.flatnonzero(topics == topics[medoid]) if i not in seen)


def test_an_update_of_a_known_user_recomputes_nothing_catalogue_wide(model, monkeypatch):
    from tastemap.runtime.interests import profiles

    rec = model.recommender
    item_index = rec._item_index()
    model.update(one_event(5, unseen_item_of_own_topic(model, 5), 1_700_000_000))  # loads the event log
    model.recommend(5, k=5)

    def refuse(*args, **kwargs):
        raise AssertionError("an update of one user recomputed a catalogue-wide quantity")

    monkeypatch.setattr(profiles, "interest_scale", refuse)  # the fitted scale is used
    monkeypatch.setattr(serving, "_top_items", refuse)  # the favourites are kept, not searched again
    monkeypatch.setattr(type(model.events), "read", refuse)
    popularity = rec.segment_popularity_
    summary = model.update(one_event(11, unseen_item_of_own_topic(model, 11), 1_700_000_001))
    assert (summary.n_events_added, summary.n_users_updated, summary.n_segment_changes) == (1, 1, 0)
    assert rec._item_index() is item_index  # the item ids are hashed once, not per update
    assert rec.segment_popularity_ is popularity  # changed in place
    assert set(rec.__dict__["_overlay"].where) == {int(rec.user_index_.get_indexer([11])[0])}  # its rows only


def test_duplicates_are_found_among_the_users_own_events(model):
    stored = model.events.of_users(model.recommender.user_index_.get_indexer([7]))
    item, at = model.item_ids[stored[1][0]], int(stored[2][0])
    frame = pd.DataFrame({"user_id": [7, 7, 7, 9999, 9999], "item_id": [item, item, 3, 3, 3],
                          "timestamp": [at, at + 1, at + 1, at, at], "weight": [1.0] * 5})
    before = model.events.n_events
    summary = model.update(frame)
    # (7, item, at) is stored; the second (9999, 3, at) repeats the first; the rest are new
    assert (summary.n_events_added, summary.n_duplicates, summary.n_new_users) == (3, 2, 1)
    assert model.events.n_events == before + 3
    users, items, times, _ = model.events.of_users(model.recommender.user_index_.get_indexer([9999]))
    assert items.tolist() == [model.recommender._item_index().get_loc(3)] and times.tolist() == [at]


def test_the_favourites_stay_the_most_popular_items_through_updates(model):
    rec = model.recommender
    coarse = rec.profiler_.topic_tree_.levels[0].labels
    rng = np.random.default_rng(4)
    moves = 0
    for step in range(12):  # a burst of one coarse topic: some users move segment, some favourites fall
        user, topic = int(rng.integers(0, 40)), int(rng.integers(0, coarse.max() + 1))
        items = rec.item_ids_[rng.choice(np.flatnonzero(coarse == topic), 12, replace=False)]
        summary = model.update(pd.DataFrame({"user_id": user, "item_id": items, "weight": 1.0,
                                             "timestamp": 1_700_000_000 + 100 * step + np.arange(12)}))
        moves += summary.n_segment_changes
        popularity = np.asarray(rec.segment_popularity_)
        favourites = serving.favourite_items(rec, np.arange(popularity.shape[0]), popularity.shape[0])
        m = favourites.shape[1]
        for segment in range(popularity.shape[0]):
            np.testing.assert_array_equal(np.sort(popularity[segment, favourites[segment]]),
                                          np.sort(popularity[segment])[-m:])
            assert np.all(np.diff(favourites[segment]) > 0)  # distinct, in item order
    assert moves > 0
