"""load_inputs: the one assembly of events, catalog and item vectors behind recommend, evaluate and demo."""

import numpy as np
import pandas as pd
import pytest

from planted import make_planted
from tastemap.errors import InputError
from tastemap.runtime.pipeline.inputs import Inputs, load_inputs, sample_users
from tastemap.runtime.recommend.recommender import TastemapRecommender


@pytest.fixture
def files(tmp_path):
    events, catalog, vectors, _ = make_planted(12)
    events[["user_id", "item_id", "timestamp"]].to_csv(tmp_path / "events.csv", index=False)
    catalog[["item_id", "title"]].to_csv(tmp_path / "catalog.csv", index=False)
    np.save(tmp_path / "vectors.npy", vectors)
    return tmp_path


def test_inputs_from_files_with_precomputed_vectors(files):
    inputs = load_inputs(files / "events.csv", files / "catalog.csv", vectors_path=files / "vectors.npy")
    assert isinstance(inputs, Inputs) and inputs.encoder is None
    assert inputs.item_vectors.dtype == np.float32 and inputs.item_vectors.shape == (len(inputs.catalog), 16)
    assert inputs.interactions.n_users == 12 and inputs.report.n_users == 12
    np.testing.assert_array_equal(inputs.interactions.item_ids, inputs.catalog["item_id"].to_numpy())
    model = TastemapRecommender(l2=10.0).fit(inputs.interactions, inputs.catalog, inputs.item_vectors)
    assert len(model.recommend(inputs.interactions.user_ids[0], k=3)) == 3


def test_inputs_errors(files):
    with pytest.raises(InputError, match="give both EVENTS and CATALOG files, or neither"):
        load_inputs(files / "events.csv")
    with pytest.raises(InputError, match="--sample cannot be combined with precomputed --vectors"):
        load_inputs(files / "events.csv", files / "catalog.csv", vectors_path=files / "vectors.npy", sample=3)
    np.save(files / "short.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(InputError, match=r"short.npy .*shape \(5, 4\).* \[120, dim\]"):
        load_inputs(files / "events.csv", files / "catalog.csv", vectors_path=files / "short.npy")


def test_sample_users_keeps_their_items():
    events = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [10, 11, 12, 13], "timestamp": [0, 1, 2, 3]})
    catalog = pd.DataFrame({"item_id": [10, 11, 12, 13, 14], "title": list("abcde")})
    kept, items = sample_users(events, catalog, 2, seed=0)
    assert kept["user_id"].nunique() == 2
    assert set(items["item_id"]) == set(kept["item_id"])
    with pytest.raises(InputError, match="sample=0 should be >= 1 users"):
        sample_users(events, catalog, 0)
