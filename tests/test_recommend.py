import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from planted import ITEMS_PER_TOPIC, make_planted, make_recommender
from tastemap.cli import app
from tastemap.errors import InputError
from tastemap.runtime.io.events import align_events
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.recommend.recommender import BlendWeights, recency_matrix


@pytest.fixture(scope="module")
def fitted():
    events, catalog, vectors, user_topics = make_planted(40)
    data, _ = align_events(events, catalog)
    return make_recommender(catalog, vectors).fit(data), data, catalog, vectors, user_topics


def topic_of(item_id):
    return (item_id - 100) // ITEMS_PER_TOPIC


def test_recommendations_are_unseen_and_follow_planted_interests(fitted):
    recommender, data, _, _, user_topics = fitted
    on_topic = 0
    for user in (0, 5, 13):
        recs = recommender.recommend(user, k=10)
        assert [r.rank for r in recs] == list(range(1, 11))
        seen = set(data.item_ids[data.items[data.users == user]].tolist())
        assert not seen & {r.item_id for r in recs}
        on_topic += sum(topic_of(r.item_id) in user_topics[user] for r in recs)
    # two of four topics are the user's: chance is 15 of 30; collaborative signal adds co-liked topics
    assert on_topic >= 21


def test_explanations_refer_to_the_users_real_interests(fitted):
    recommender, data, _, _, _ = fitted
    fine_names = recommender.profiler_.topic_tree_.fine.names
    for user in (0, 7):
        interests = recommender.state_.interests.of_user(user)
        history = set(data.item_ids[data.items[data.users == user]].tolist())
        assert len(interests) == 2  # two planted tastes
        for rec in recommender.recommend(user, k=8):
            e = rec.explanation
            assert 0 <= e.interest < len(interests)
            assert e.topic == fine_names[interests[e.interest].topic]
            assert e.layer in {"long-term", "short-term", "interest", "category"}
            members = set(data.item_ids[interests[e.interest].members].tolist())
            assert e.seed_item_ids and set(e.seed_item_ids) <= members <= history
            assert e.describe().startswith(f"because you like: {e.topic} (from ")


def test_batch_mode_has_one_row_per_user_and_rank(fitted):
    recommender, data, _, _, _ = fitted
    frame = recommender.recommend_batch(k=5)
    assert len(frame) == data.n_users * 5
    assert list(frame.columns) == ["user_id", "rank", "item_id", "title", "score", "interest", "topic", "layer",
                                   "seed_item_ids", "seed_titles", "explanation"]
    first = recommender.recommend(0, k=5)
    assert frame[frame.user_id == 0]["item_id"].tolist() == [r.item_id for r in first]


def test_cold_start_from_items(fitted):
    recommender = fitted[0]
    liked = [100 + 2 * ITEMS_PER_TOPIC + i for i in range(4)]  # four items of topic 2
    recs = recommender.recommend_cold(item_ids=liked, k=10)
    assert not set(liked) & {r.item_id for r in recs}
    counts = np.bincount([topic_of(r.item_id) for r in recs], minlength=4)
    assert counts[2] >= 5 and counts[2] == counts.max()
    assert all(r.explanation.segment for r in recs)
    assert set(recs[0].explanation.seed_item_ids) <= set(liked)


class AxisEncoder:
    """Encodes any text as the planted axis of one topic."""

    def __init__(self, topic, dim):
        self.vector = np.zeros((1, dim), np.float32)
        self.vector[0, topic] = 1.0

    def encode(self, texts):
        return np.repeat(self.vector, len(texts), axis=0)


def test_cold_start_from_text_goes_through_nearest_topics(fitted):
    recommender, _, _, vectors, _ = fitted
    recs = recommender.recommend_cold(text="dusty towns and gunfights", encoder=AxisEncoder(1, vectors.shape[1]),
                                      k=10, n_topics=2)
    assert len(recs) == 10
    assert all(topic_of(r.item_id) == 1 for r in recs)
    assert all(r.explanation.layer == "cold-start" and r.explanation.segment for r in recs)


def test_errors_are_clear(fitted):
    recommender = fitted[0]
    with pytest.raises(InputError, match="user 999 is not in the training events"):
        recommender.recommend(999)
    with pytest.raises(InputError, match="k=0 should be an integer >= 1"):
        recommender.recommend(0, k=0)
    with pytest.raises(InputError, match="give exactly one of item_ids"):
        recommender.recommend_cold(item_ids=[100], text="x")
    with pytest.raises(InputError, match=r"item ids \[5\] are not in the catalog"):
        recommender.recommend_cold(item_ids=[5])
    with pytest.raises(InputError, match="blend weights must be >= 0; got {'interests': -1}"):
        BlendWeights(interests=-1)


def test_multi_interest_only_needs_no_ease(fitted):
    _, data, catalog, vectors, user_topics = fitted
    model = make_recommender(catalog, vectors, weights=BlendWeights(long_term=0, short_term=0, interests=1)).fit(data)
    assert model.ease_ is None
    recs = model.recommend(2, k=6)
    assert all(topic_of(r.item_id) in user_topics[2] for r in recs)
    assert {r.explanation.layer for r in recs} == {"interest"}


def test_recency_matrix_counts_later_items():
    events = pd.DataFrame({"user_id": [1, 1, 1, 1], "item_id": [7, 8, 7, 9], "timestamp": [1, 2, 3, 4]})
    rec = recency_matrix(Interactions.from_frame(events), half_life=1.0).toarray()
    # order of last events: 8 (t=2), 7 (t=3), 9 (t=4) -> 2, 1, 0 later items
    np.testing.assert_allclose(rec, [[0.5, 0.25, 1.0]])


def test_cli_recommend_one_user_and_batch(tmp_path):
    events, catalog, vectors, _ = make_planted(12)
    events.to_csv(tmp_path / "events.csv", index=False)
    catalog.assign(categories=[c[0][0] for c in catalog.categories], tags="").to_csv(tmp_path / "catalog.csv", index=False)
    np.save(tmp_path / "vectors.npy", vectors)
    common = ["--events", str(tmp_path / "events.csv"), "--catalog", str(tmp_path / "catalog.csv"),
              "--vectors", str(tmp_path / "vectors.npy")]
    result = CliRunner().invoke(app, ["recommend", "--user", "3", "--k", "4", *common])
    assert result.exit_code == 0, result.output
    assert "because you like:" in result.output
    out = tmp_path / "recs.parquet"
    result = CliRunner().invoke(app, ["recommend", "--all", "--out", str(out), "--k", "3", *common])
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(out)) == 12 * 3
    result = CliRunner().invoke(app, ["recommend", "--user", "nobody", *common])
    assert result.exit_code == 2
    assert "error: --user 'nobody' is not an integer" in result.output
