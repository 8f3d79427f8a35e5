import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from typer.testing import CliRunner

from planted import make_planted, make_recommender
from tastemap.cli import app
from tastemap.errors import InputError
from tastemap.runtime.io.events import align_events
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.interests.profiles import InterestProfiler
from tastemap.runtime.recommend.explain import interest_name
from tastemap.runtime.recommend.ground import item_terms, join_words
from tastemap.runtime.interests.segments import UserSegmenter
from tastemap.runtime.recommend.collaborative import low_rank_ease
from tastemap.runtime.recommend.recommender import BlendWeights, TastemapRecommender, recency_matrix


@pytest.fixture(scope="module")
def fitted():
    events, catalog, vectors, truth = make_planted(40)
    data, _ = align_events(events, catalog)
    return make_recommender().fit(data, catalog, vectors), data, catalog, vectors, truth


def topic_of(truth, item_id):
    return truth.item_topics[item_id]  # planted item ids are item indices


def test_recommendations_are_unseen_and_follow_planted_interests(fitted):
    recommender, data, _, _, truth = fitted
    on_topic = 0
    for user in (0, 5, 13):
        recs = recommender.recommend(user, k=10)
        assert [r.rank for r in recs] == list(range(1, 11))
        seen = set(data.item_ids[data.items[data.users == user]].tolist())
        assert not seen & {r.item_id for r in recs}
        on_topic += sum(topic_of(truth, r.item_id) in truth.user_topics[user] for r in recs)
    # two of four topics are the user's: chance is 15 of 30; collaborative signal adds co-liked topics
    assert on_topic >= 21


def test_explanations_refer_to_the_users_real_interests(fitted):
    recommender, data, _, _, _ = fitted
    tree, topics = recommender.profiler_.topic_tree_, recommender.profiler_.item_topics_
    terms = item_terms(recommender.profiler_)
    item_index = pd.Index(recommender.item_ids_)
    agreeing = total = 0
    for user in range(data.n_users):
        interests = recommender.state_.interests.of_user(user)
        history = set(data.item_ids[data.items[data.users == user]].tolist())
        for rec in recommender.recommend(user, k=8):
            e = rec.explanation
            assert 0 <= e.interest < len(interests)
            assert e.layer in {"long-term", "short-term", "interest", "category"}
            members = set(data.item_ids[interests[e.interest].members].tolist())
            assert e.seed_item_ids and set(e.seed_item_ids) <= members <= history
            assert e.interest_label == interest_name(interests[e.interest].members, recommender.profiler_)
            item = item_index.get_indexer([rec.item_id])[0]
            seeds = item_index.get_indexer(list(e.seed_item_ids))
            assert topics[item, e.topic_level] == e.topic_id  # the item's topic
            if e.agrees:  # the categories the item and the first seed share, or the topic holding both
                shared = terms.shared(item, seeds[0])
                assert e.topic == join_words(shared.words) if shared else (
                    e.topic == tree.fine.names[e.topic_id] and topics[seeds[0], -1] == e.topic_id)
                assert e.describe().startswith(f"because you like {e.topic}, as in ")
            else:
                assert e.describe().startswith("because you liked ")
            agreeing += e.agrees
            total += 1
    assert agreeing / total >= 0.9


def test_explanation_label_holds_item_and_seeds_on_a_hand_built_history():
    """A user who liked three space films and one western: a space recommendation is explained by
    the space films under the space label, never by the western or a label that misses the item."""
    dim = 8
    axes = np.eye(dim, dtype=np.float32)
    rng = np.random.default_rng(0)
    vectors = np.concatenate([axes[0] + 0.1 * rng.normal(size=(10, dim)), axes[1] + 0.1 * rng.normal(size=(10, dim))])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    catalog = pd.DataFrame({"item_id": np.arange(20), "title": [f"space {i}" for i in range(10)] + [f"western {i}" for i in range(10)],
                            "categories": [[("Sci-Fi",)]] * 10 + [[("Western",)]] * 10})
    rows = [(0, i, 100 + i) for i in (0, 1, 2, 10)] + [(u, i, 100 + i) for u in range(1, 6) for i in range(0, 6)]
    rows += [(u, i, 100 + i) for u in range(6, 9) for i in range(10, 16)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).assign(weight=1.0)
    data, _ = align_events(events, catalog)
    model = TastemapRecommender(profiler=InterestProfiler(n_topics=2, n_coarse_topics=None, seed=0),
                                segmenter=UserSegmenter(n_segments=2, seed=0), l2=1.0).fit(data, catalog, vectors)
    recs = [r for r in model.recommend(0, k=6) if r.item_id < 10]
    assert recs
    for rec in recs:
        e = rec.explanation
        assert e.agrees and e.topic == "sci-fi" and e.interest_label == "sci-fi"
        assert set(e.seed_item_ids) <= {0, 1, 2} and e.describe().startswith("because you like sci-fi, as in space ")


def test_batch_mode_has_one_row_per_user_and_rank(fitted):
    recommender, data, _, _, _ = fitted
    frame = recommender.recommend_batch(k=5)
    assert len(frame) == data.n_users * 5
    assert list(frame.columns) == ["user_id", "rank", "item_id", "title", "score", "interest", "interest_label",
                                   "topic", "layer", "seed_item_ids", "seed_titles", "explanation"]
    first = recommender.recommend(0, k=5)
    assert frame[frame.user_id == 0]["item_id"].tolist() == [r.item_id for r in first]


def test_batch_rows_do_not_depend_on_threads_or_batch_size(fitted):
    recommender, data, _, _, _ = fitted
    alone = recommender.recommend_batch(k=6, batch_size=7, n_jobs=1)
    pd.testing.assert_frame_equal(recommender.recommend_batch(k=6, batch_size=3, n_jobs=3), alone)
    pd.testing.assert_frame_equal(recommender.recommend_batch(k=6), alone)
    assert len(alone) == data.n_users * 6
    with pytest.raises(InputError, match=r"^n_jobs=0 should be None \(one thread per core\) or an integer >= 1$"):
        recommender.recommend_batch(k=6, n_jobs=0)


def test_cold_start_from_items(fitted):
    recommender, truth = fitted[0], fitted[4]
    liked = np.flatnonzero(truth.item_topics == 2)[:4].tolist()  # four items of topic 2
    recs = recommender.recommend_cold(item_ids=liked, k=10)
    assert not set(liked) & {r.item_id for r in recs}
    counts = np.bincount([topic_of(truth, r.item_id) for r in recs], minlength=4)
    assert counts[2] >= 5 and counts[2] == counts.max()
    assert all(r.explanation.segment for r in recs)
    assert set(recs[0].explanation.seed_item_ids) <= set(liked)


class CentreEncoder:
    """Encodes any text as one vector (a planted topic's centre)."""

    def __init__(self, vector):
        self.vector = np.asarray(vector, np.float32)[None, :]

    def encode(self, texts):
        return np.repeat(self.vector, len(texts), axis=0)


def test_cold_start_from_text_goes_through_nearest_topics(fitted):
    recommender, _, _, _, truth = fitted
    recs = recommender.recommend_cold(text="dusty towns and gunfights", encoder=CentreEncoder(truth.topic_centres[1]),
                                      k=10, n_topics=2)
    assert len(recs) == 10
    assert all(topic_of(truth, r.item_id) == 1 for r in recs)
    assert all(r.explanation.layer == "cold-start" and r.explanation.segment for r in recs)


def test_errors_are_clear(fitted):
    recommender = fitted[0]
    with pytest.raises(InputError, match="user 999 is not in the training events"):
        recommender.recommend(999)
    with pytest.raises(InputError, match="k=0 should be an integer >= 1"):
        recommender.recommend(0, k=0)
    with pytest.raises(InputError, match="give exactly one of item_ids"):
        recommender.recommend_cold(item_ids=[100], text="x")
    with pytest.raises(InputError, match=r"item ids \[500\] are not in the catalog"):
        recommender.recommend_cold(item_ids=[500])
    with pytest.raises(InputError, match="blend weights must be >= 0; got {'interests': -1}"):
        BlendWeights(interests=-1)


def test_blend_weights_as_dict_names_every_component_in_order():
    weights = BlendWeights(long_term=0.1, short_term=0.2, interests=0.3, category=0.4, literal=0.5)
    assert weights.as_dict() == {"long_term": 0.1, "short_term": 0.2, "interests": 0.3, "category": 0.4, "literal": 0.5}
    assert list(weights.as_dict()) == [f.name for f in dataclasses.fields(BlendWeights)]


def test_multi_interest_only_needs_no_ease(fitted):
    _, data, catalog, vectors, truth = fitted
    model = make_recommender(weights=BlendWeights(long_term=0, short_term=0, interests=1)).fit(
        data, catalog, vectors)
    assert model.collaborative_ is None and model.collaborative_index_ is None
    recs = model.recommend(2, k=6)
    assert all(topic_of(truth, r.item_id) in truth.user_topics[2] for r in recs)
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
    assert "because you like" in result.output
    out = tmp_path / "recs.parquet"
    result = CliRunner().invoke(app, ["recommend", "--all", "--out", str(out), "--k", "3", *common])
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(out)) == 12 * 3
    result = CliRunner().invoke(app, ["recommend", "--user", "nobody", *common])
    assert result.exit_code == 2
    assert "error: user 'nobody' is not in the training events" in result.output  # CSV ids are text


def test_constructor_takes_no_data():
    recommender = TastemapRecommender()
    assert sorted(recommender.get_params(deep=False)) == [
        "interest_candidates", "l2", "n_candidates", "profiler", "rank", "recency_half_life", "seed", "segmenter", "weights"]
    events, catalog, vectors, _ = make_planted(4)
    with pytest.raises(TypeError):
        TastemapRecommender(catalog=catalog, item_vectors=vectors)
    with pytest.raises(NotFittedError, match=r"this TastemapRecommender is not fitted yet; "
                                             r"call fit\(train, catalog, item_vectors\) first"):
        recommender.recommend_batch()


def test_templates_are_cloned_and_nested_params_reach_them(fitted):
    _, data, catalog, vectors, _ = fitted
    template = make_recommender(weights=BlendWeights(long_term=0, short_term=0, interests=1))
    template.set_params(profiler__n_topics=6, segmenter__n_segments=2)
    assert template.get_params()["profiler__n_topics"] == 6
    model = template.fit(data, catalog, vectors)
    assert model.profiler_ is not template.profiler and model.segmenter_ is not template.segmenter
    assert model.profiler_.topic_tree_.fine.n_topics == 6 and model.segmenter_.n_segments_ == 2
    with pytest.raises(NotFittedError):  # the templates stay unfitted
        check_is_fitted(template.profiler)
    assert model.weights_ == template.weights
    assert make_recommender().fit(data, catalog, vectors).weights_ == BlendWeights()


def test_fit_checks_its_data(fitted):
    _, data, catalog, vectors, _ = fitted
    with pytest.raises(InputError, match=r"training items \(n_items=120\) are not the catalog's 119 items"):
        make_recommender().fit(data, catalog.iloc[1:], vectors[1:])
    small = low_rank_ease(data.matrix()[:, :3], l2=10.0, rank=2)
    with pytest.raises(InputError, match="collaborative weights cover 3 items; expected 120"):
        make_recommender().fit(data, catalog, vectors, collaborative=small)
    with pytest.raises(InputError, match="rank=0 should be an integer >= 1"):
        make_recommender(rank=0).fit(data, catalog, vectors)
    with pytest.raises(InputError, match="interest_candidates=0 should be an integer >= 1"):
        make_recommender(interest_candidates=0).fit(data, catalog, vectors)
    with pytest.raises(InputError, match="weights should be None or a BlendWeights, got dict"):
        make_recommender(weights={"interests": 1}).fit(data, catalog, vectors)


def test_fit_with_a_plain_catalog(fitted):
    _, data, catalog, vectors, truth = fitted
    plain = pd.DataFrame({"item_id": catalog.item_id.tolist(), "title": catalog.title.tolist()})
    model = make_recommender(weights=BlendWeights(long_term=0, short_term=0, interests=1)).fit(data, plain, vectors)
    recs = model.recommend(2, k=6)
    assert all(topic_of(truth, r.item_id) in truth.user_topics[2] for r in recs)


def test_interest_candidates_take_the_medoid_and_latest_neighbours_in_turn_without_repeats():
    rng = np.random.default_rng(0)
    recommender = TastemapRecommender()
    for k in (1, 5, 50):
        neighbours = rng.integers(-1, 30, (40, k)).astype(np.int32)  # -1: an approximate index found fewer
        recommender.item_neighbours_ = neighbours
        medoids, latest = rng.integers(0, 40, 200), rng.integers(0, 40, 200)
        found = recommender._candidates(medoids, latest)
        for row in range(200):
            in_turn = [item for pair in zip(neighbours[medoids[row]], neighbours[latest[row]]) for item in pair]
            distinct = list(dict.fromkeys(in_turn))[:k]
            assert found[row].tolist() == distinct + [-1] * (k - len(distinct))
