"""User attributes beyond the attribute model: a description plus attributes, attribute groups
described by topics (``tastemap profile --users``), and the report's segment table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from test_attributes import N_BLOCK, planted
from tastemap.errors import InputError
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.io.movielens100k import ENV_VAR, find_movielens_100k, read_movielens_100k
from tastemap.runtime.io.users import users_from_frame
from tastemap.runtime.recommend.attributes import (
    TEXT_AS_EVENTS,
    AttributeModel,
    blend_with_events,
    cold_text_scores,
    describe_groups_by_topics,
    engagement_target,
)


def planted_vectors(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Item vectors: one centre per block of :data:`N_BLOCK` items, plus noise; and the centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16))
    vectors = np.repeat(centres, N_BLOCK, axis=0) + 0.3 * rng.normal(size=(4 * N_BLOCK, 16))
    return vectors.astype(np.float32), centres.astype(np.float32)


class CentreEncoder:
    """Embeds any text as one fixed vector (the description of one planted taste)."""

    def __init__(self, vector: np.ndarray):
        self.vector = vector

    def encode(self, texts):
        return np.repeat(self.vector[None, :], len(texts), axis=0)


@pytest.fixture(scope="module")
def fitted():
    from planted import make_recommender
    from tastemap.runtime.pipeline.model import TastemapModel

    users, events = planted(n_users=150)
    vectors, centres = planted_vectors()
    catalog = pd.DataFrame({"item_id": np.arange(4 * N_BLOCK), "title": [f"film {i}" for i in range(4 * N_BLOCK)]})
    data = Interactions.from_frame(events, item_ids=catalog["item_id"].to_numpy())
    model = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender(), users=users_from_frame(users))
    return model, centres


def test_engagement_target_divides_each_row_by_the_root_of_its_item_count():
    history = sparse.csr_matrix(np.array([[1, 1, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]], np.float32))
    np.testing.assert_allclose(engagement_target(history, 0.5).toarray(),
                               [[0.5, 0.5, 0.5, 0.5], [0, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(engagement_target(history, 0.0).toarray(), history.toarray())
    users, events = planted()
    data = Interactions.from_frame(events, item_ids=np.arange(4 * N_BLOCK))
    with pytest.raises(InputError, match=r"target_power=2 should be between 0 and 1"):
        AttributeModel(target_power=2).fit(users_from_frame(users), data.matrix(), data.user_ids)


def test_a_description_plus_attributes_keeps_the_text_candidates_and_lets_attributes_reorder(fitted):
    model, centres = fitted
    model.set_encoder(CentreEncoder(centres[2]))  # a description of the engineers' taste (items 40–59)
    recs = model.recommend_cold("gadgets and circuits", attributes={"occupation": "engineer"}, k=10)
    assert len(recs) == 10 and all(N_BLOCK * 2 <= r.item_id < N_BLOCK * 3 for r in recs)
    assert all(r.explanation.describe().endswith("; close to your description") for r in recs)
    assert recs[0].explanation.describe().startswith("popular with occupation engineer")

    # the ranking is the attribute blend over the text cold start's candidates, the text counting as one item
    recommender, attributes = model.recommender, model.attributes
    candidates, text = cold_text_scores(recommender, centres[2])
    scores, _ = attributes.score_attributes({"occupation": "engineer"})
    blended = blend_with_events(scores[None, candidates], text[None, :], TEXT_AS_EVENTS)[0]
    expected = candidates[np.argsort(-blended, kind="stable")[:10]]
    assert [r.item_id for r in recs] == recommender.item_ids_[expected].tolist()

    students = model.recommend_cold("gadgets and circuits", attributes={"occupation": "student"}, k=10)
    assert [r.item_id for r in students] != [r.item_id for r in recs]  # other attributes, another order
    with pytest.raises(InputError, match="text is empty; describe the user's tastes in a few words"):
        model.recommend_cold("  ", attributes={"occupation": "engineer"})
    with pytest.raises(InputError, match=r"the text vector has 3 dimensions; the item vectors have 16"):
        cold_text_scores(recommender, np.ones(3))
    model.set_encoder(None)
    with pytest.raises(InputError, match="fitted on precomputed item vectors, so it has no encoder package"):
        model.recommend_cold("gadgets", attributes={"occupation": "engineer"})


def test_attribute_groups_are_described_by_their_over_represented_topics():
    users, _ = planted(n_users=90)
    table = users_from_frame(users)
    kinds = np.arange(90) % 3  # students, retired, engineers: each mostly in their own topic
    weights = np.full((90, 4), 0.1)
    weights[np.arange(90), kinds] = 0.7
    names = ["campus", "gardens", "circuits", "hits"]
    groups = describe_groups_by_topics(table, table.user_ids, sparse.csr_matrix(weights), names, min_group=10)
    by_name = {(g["attribute"], g["value"]): g for g in groups}
    student = by_name[("occupation", "student")]
    assert student["users"] == 30 and student["top_topics"][0]["label"] == "campus"
    assert student["top_topics"][0]["weight"] == pytest.approx(0.7)
    assert student["top_topics"][0]["population"] == pytest.approx(0.3)
    assert student["top_topics"][0]["lift"] == pytest.approx(0.7 / 0.3)
    assert len(student["top_topics"]) == 1  # the other topics are under-represented among students
    assert all(g["users"] >= 10 for g in groups)
    with pytest.raises(InputError, match=r"none of the 2 profiled users is in the users table"):
        describe_groups_by_topics(table, np.array(["x", "y"]), sparse.csr_matrix(weights[:2]), names)


def test_profile_with_users_writes_group_aggregates_only(tmp_path):
    from typer.testing import CliRunner

    from tastemap.cli import app

    users, events = planted(n_users=150)
    vectors, _ = planted_vectors()
    events.to_csv(tmp_path / "events.csv", index=False)
    pd.DataFrame({"item_id": np.arange(4 * N_BLOCK), "title": [f"film {i}" for i in range(4 * N_BLOCK)]}).to_csv(
        tmp_path / "catalog.csv", index=False)
    users.to_csv(tmp_path / "users.csv", index=False)
    np.save(tmp_path / "vectors.npy", vectors)
    inputs = [str(tmp_path / "events.csv"), str(tmp_path / "catalog.csv"), "--vectors", str(tmp_path / "vectors.npy"),
              "--topics", "8", "--coarse-topics", "4"]
    runner = CliRunner()
    result = runner.invoke(app, ["profile", *inputs, "--out", str(tmp_path / "profiles"), "--users",
                                 str(tmp_path / "users.csv")])
    assert result.exit_code == 0, result.output
    assert "Attribute groups" in result.output and "occupation student" in result.output
    groups = json.loads((tmp_path / "profiles" / "topics.json").read_text())["attribute_groups"]
    assert {(g["attribute"], g["value"]) for g in groups} >= {("occupation", "student"), ("occupation", "engineer")}
    assert all(g["users"] >= 10 for g in groups)
    assert set(groups[0]) == {"attribute", "value", "users", "top_topics"}  # no user id, no user's attribute
    student = next(g for g in groups if g["value"] == "student")
    assert student["top_topics"][0]["lift"] > 2

    bad = tmp_path / "bad_users.csv"
    bad.write_text("user_id,age\nu0,twenty\n")
    result = runner.invoke(app, ["profile", *inputs, "--out", str(tmp_path / "never"), "--users", str(bad)])
    assert result.exit_code == 2 and "row 1, column 'age': 'twenty' is not a number" in result.output
    assert not (tmp_path / "never").exists()
    result = runner.invoke(app, ["profile", *inputs, "--out", str(tmp_path / "spark"), "--users",
                                 str(tmp_path / "users.csv"), "--engine", "spark"])
    assert result.exit_code == 2 and "--users describes attribute groups with --engine local only" in result.output


def test_report_shows_segments_described_by_attributes():
    from tastemap.runtime.recommend.report import _segments

    segments = pd.DataFrame({"segment": [0, 1], "size": [60, 40], "share": [0.6, 0.4], "label": ["a", "b"],
                             "top_topics": [[], []], "top_categories": [[], []],
                             "top_attributes": [[{"attribute": "occupation", "value": "student", "share": 0.5,
                                                  "population": 0.25, "lift": 2.0, "users": 30}], []]})
    html = _segments(segments)
    assert "<th>over-represented attributes</th>" in html
    assert "occupation student" in html and "50%, ×2.0" in html
    assert "over-represented attributes" not in _segments(segments.drop(columns="top_attributes"))


@pytest.mark.skipif(find_movielens_100k() is None,
                    reason=f"MovieLens 100K is not here: set {ENV_VAR} to the folder holding u.data, u.item and u.user")
def test_movielens_100k_attributes_alone_beat_global_popularity_at_seed_0():
    from tastemap.runtime.io.events import align_events
    from tastemap.runtime.recommend.metrics import bootstrap_ratio_ci
    from tastemap.runtime.recommend.user_cold_start import rank_metrics, split_new_users

    data = read_movielens_100k(find_movielens_100k())
    interactions, _ = align_events(data.events, data.catalog)
    split = split_new_users(interactions, seed=0)
    history = split.train.matrix()
    model = AttributeModel(seed=0).fit(data.users, history, split.train.user_ids)
    assert model.l2_ == 300
    popularity = np.asarray(history.sum(axis=0)).ravel()
    n_test = len(split.test_items)
    reference = rank_metrics(np.broadcast_to(popularity, (n_test, popularity.size)), split.test_items, 0)["Recall@20"]
    scores = model.score(model.encoder_.transform(data.users.aligned(split.test_user_ids)))
    recall = rank_metrics(scores, split.test_items, 0)["Recall@20"]
    ratio = bootstrap_ratio_ci(recall, reference, seed=0)
    assert recall.mean() == pytest.approx(0.1400, abs=5e-5)  # docs/attributes.md, seed 0
    assert ratio.mean == pytest.approx(1.082, abs=5e-4) and ratio.low > 1
