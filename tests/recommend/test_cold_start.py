"""Item cold start protocol: the split holds the newest items out, ranking uses content only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tastemap.errors import InputError
from tastemap.runtime.io.events import render_item_texts, validate_catalog, validate_events
from tastemap.runtime.io.fingerprint import training_data_sha256
from tastemap.runtime.recommend.cold_start import (
    COLLABORATIVE_NOTE,
    RANDOM_NAME,
    ContentModel,
    evaluate_cold_start,
    split_new_items,
)

N_ITEMS, N_TOPICS = 200, 5


def make_log(n_users: int = 30, seed: int = 0):
    """Item ``i`` belongs to topic ``i % 5`` and first appears at time ``i``; user ``u`` likes topic
    ``u % 5`` and engages with a random half of its items. Returns ``(events, catalog, vectors)``
    with topic-axis vectors (plus noise) that know the topics."""
    rng = np.random.default_rng(seed)
    topics = np.arange(N_ITEMS) % N_TOPICS
    catalog = validate_catalog(pd.DataFrame({"item_id": np.arange(N_ITEMS) + 500,
                                             "title": [f"item {i}" for i in range(N_ITEMS)]}))
    rows = [(f"seed{i}", 500 + i, i, 1.0) for i in range(N_ITEMS)]  # fixes each item's first interaction at time i
    for user in range(n_users):
        mine = np.flatnonzero(topics == user % N_TOPICS)
        for item in rng.choice(mine, size=mine.size // 2, replace=False):
            rows.append((f"u{user}", 500 + int(item), 1000 + int(item), float(rng.integers(1, 6)) / 5))
    events = validate_events(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "weight"]))
    vectors = np.eye(N_TOPICS, 8)[topics] + rng.normal(0, 0.05, size=(N_ITEMS, 8))
    return events, catalog, vectors.astype(np.float32)


@pytest.fixture(scope="module")
def log():
    return make_log()


@pytest.fixture(scope="module")
def split(log):
    events, catalog, _ = log
    return split_new_items(events, catalog, holdout_fraction=0.2)


def test_newest_items_are_held_out_with_all_their_events(log, split):
    events, catalog, _ = log
    held_ids = catalog["item_id"].to_numpy()[split.held_out]
    assert sorted(held_ids) == list(range(500 + 160, 500 + 200))
    assert split.cutoff == 160
    assert not split.train_events["item_id"].isin(held_ids).any()
    assert split.test_events["item_id"].isin(held_ids).all()
    assert len(split.train_events) + len(split.test_events) == len(events)
    assert not split.train_catalog["item_id"].isin(held_ids).any()
    assert split.train_sha256 == training_data_sha256(split.train_events, catalog, render_item_texts(catalog))
    # the hash ignores the catalog rows no training event names, so the training catalog hashes the same
    train_catalog = split.train_catalog
    assert split.train_sha256 == training_data_sha256(split.train_events, train_catalog, render_item_texts(train_catalog))


def test_data_hash_ignores_row_order_and_sees_every_change(split):
    catalog, train = split.catalog, split.train_events
    texts = render_item_texts(catalog)
    assert training_data_sha256(train.sample(frac=1, random_state=1), catalog, texts) == split.train_sha256
    changed = train.assign(weight=train["weight"].where(train.index != 0, 0.123))
    assert training_data_sha256(changed, catalog, texts) != split.train_sha256
    renamed = texts.copy()
    renamed[0] = "another title."
    assert training_data_sha256(train, catalog, renamed) != split.train_sha256


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_content_that_knows_the_topics_beats_random(log, split, aggregate):
    vectors = log[2]
    result = evaluate_cold_start(split, [ContentModel("topics", vectors)], aggregate=aggregate, n_resamples=200)
    assert set(result.metrics) == {"topics", RANDOM_NAME}
    assert result.n_users == 30 and result.n_items_held_out == 40
    # each user's held-out items are among the 8 of their topic: all within the top 10
    assert result.metrics["topics"]["Recall@10"].mean == pytest.approx(1.0)
    assert result.metrics["topics"]["NDCG@10"].low > result.metrics[RANDOM_NAME]["NDCG@10"].high
    assert result.metrics[RANDOM_NAME]["Recall@20"].high < 0.8
    assert result.reference == "topics"
    assert result.ratios[RANDOM_NAME]["Recall@20"].high < 1
    assert result.not_evaluated == COLLABORATIVE_NOTE and "cannot score items without interactions" in COLLABORATIVE_NOTE
    table = result.table()
    assert list(table["model"]) == ["topics", RANDOM_NAME] and "Recall@20_vs_ref_low" in table
    assert result.to_dict()["metrics"]["topics"]["Recall@20"]["mean"] == pytest.approx(1.0)


def test_same_seed_same_figures(log, split):
    noise = np.random.default_rng(5).normal(size=log[2].shape).astype(np.float32)
    runs = [evaluate_cold_start(split, [ContentModel("noise", noise)], n_resamples=100, seed=3) for _ in range(2)]
    assert runs[0].to_dict() == runs[1].to_dict()


def test_reference_defaults_to_the_frozen_encoder(log, split):
    vectors = log[2]
    tuned = ContentModel("tuned", vectors, trained_on=split.train_sha256)
    frozen = ContentModel("frozen", np.random.default_rng(1).normal(size=vectors.shape))
    result = evaluate_cold_start(split, [tuned, frozen], n_resamples=100)
    assert result.reference == "frozen"
    assert result.ratios["tuned"]["Recall@20"].low > 1


def test_a_model_trained_on_other_data_is_refused(log, split):
    events, catalog, vectors = log
    everything = training_data_sha256(events, catalog, render_item_texts(catalog))
    with pytest.raises(InputError, match="may have seen the held-out items"):
        evaluate_cold_start(split, [ContentModel("leaky", vectors, trained_on=everything)])
    with pytest.raises(InputError, match=r"expected \[n_catalog_items=200, dim\]"):
        evaluate_cold_start(split, [ContentModel("short", vectors[:10])])


@pytest.mark.parametrize("kwargs, message", [
    ({"holdout_fraction": 0.0}, "holdout_fraction=0.0"),
    ({"holdout_fraction": 1.0}, "holdout_fraction=1.0"),
    ({"holdout_fraction": 0.001}, "holds out 0"),
])
def test_bad_split_parameters(log, kwargs, message):
    events, catalog, _ = log
    with pytest.raises(InputError, match=message):
        split_new_items(events, catalog, **kwargs)


def test_bad_inputs(log, split):
    events, catalog, vectors = log
    with pytest.raises(InputError, match=r"missing column\(s\) \['item_id'\]"):
        split_new_items(events.drop(columns="item_id"), catalog)
    with pytest.raises(InputError, match="empty"):
        split_new_items(events.iloc[:0], catalog)
    with pytest.raises(InputError, match=r"lacks column\(s\) \['tags'\]"):
        split_new_items(events, catalog.drop(columns="tags"))
    with pytest.raises(InputError, match="aggregate='median'"):
        evaluate_cold_start(split, [ContentModel("a", vectors)], aggregate="median")
    with pytest.raises(InputError, match="repeat a name"):
        evaluate_cold_start(split, [ContentModel("a", vectors), ContentModel("a", vectors)])
    with pytest.raises(InputError, match="models is empty"):
        evaluate_cold_start(split, [])
