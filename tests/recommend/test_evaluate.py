import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from planted import make_planted, make_recommender, write_planted_files
from tastemap.errors import InputError
from tastemap.runtime.io.events import align_events
from tastemap.runtime.recommend.evaluate import (
    compare_models,
    ease_name,
    evaluate_model,
    evaluation_table,
    rank_top_items,
    split_events,
    tune_blend,
    validation_split,
)
from tastemap.runtime.io.interactions import Interactions


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_leave_last_out_takes_latest_event_and_breaks_ties_by_item():
    data = Interactions.from_frame(frame([
        ("a", 1, 30), ("a", 2, 10), ("a", 3, 20),   # latest: item 1
        ("b", 4, 5), ("b", 2, 5),                   # tie at t=5: item 4 (higher index) is last
        ("c", 1, 1),                                # one event: stays in training, not evaluated
    ]))
    split = split_events(data, "leave-last-out")
    test = sorted(zip(data.user_ids[split.test.users], data.item_ids[split.test.items]))
    assert test == [("a", 1), ("b", 4)]
    assert split.train.n_events == 4
    assert data.user_ids[split.test_users].tolist() == ["a", "b"]


def test_temporal_split_holds_out_last_fifth():
    rows = [("u", item, item) for item in range(10)] + [("v", item, item) for item in range(5)]
    split = split_events(Interactions.from_frame(frame(rows)), "temporal", train_fraction=0.8)
    held = {u: sorted(split.test.item_ids[split.test.items[split.test.users == i]].tolist())
            for i, u in enumerate(split.test.user_ids)}
    assert held == {"u": [8, 9], "v": [4]}


def test_validation_split_never_contains_test_events():
    events, catalog, _, _ = make_planted(20)
    data, _ = align_events(events, catalog)
    split = split_events(data, "leave-last-out")
    validation = validation_split(split)
    key = lambda part: set(zip(part.users.tolist(), part.items.tolist(), part.timestamps.tolist()))
    assert not key(validation.train) & key(split.test)
    assert not key(validation.test) & key(split.test)
    assert key(validation.train) | key(validation.test) == key(split.train)


class Oracle:
    """Scores the held-out item highest, and seen items even higher (they must be removed)."""

    def __init__(self, split):
        self.test = split.test.matrix().toarray()
        self.seen = split.train.matrix().toarray()

    def fit(self, train):
        return self

    def score(self, users):
        return self.test[users] + 10 * self.seen[users]


def test_full_ranking_removes_seen_items():
    events, catalog, _, _ = make_planted(20)
    data, _ = align_events(events, catalog)
    split = split_events(data, "leave-last-out")
    result = evaluate_model(Oracle(split), split, name="oracle")
    assert result.per_user["HR@10"].mean() == 1.0
    assert result.per_user["NDCG@10"].mean() == 1.0
    seen = split.train.matrix()
    top = rank_top_items(Oracle(split), result.users, seen, 5)
    assert not any(seen[u, i] for u, row in zip(result.users, top) for i in row)
    table = evaluation_table([result, result], reference="oracle")
    assert table.loc[0, "HR@10_vs_ref"] == 1.0 and table.loc[0, "HR@10_low"] == 1.0


def test_evaluation_table_rejects_unknown_reference():
    events, catalog, _, _ = make_planted(8)
    data, _ = align_events(events, catalog)
    split = split_events(data, "leave-last-out")
    result = evaluate_model(Oracle(split), split, name="oracle")
    with pytest.raises(InputError, match=r"reference='EASE' is not among the evaluated models \['oracle'\]"):
        evaluation_table([result], reference="EASE")


def test_tune_blend_ignores_the_test_part():
    events, catalog, vectors, _ = make_planted(24)
    data, _ = align_events(events, catalog)
    split = split_events(data, "leave-last-out")
    # the same training part with the held-out items scrambled: tuning must not change
    rng = np.random.default_rng(1)
    scrambled = split.test.__class__(**{**split.test.__dict__, "items": rng.permutation(split.test.items)})
    grid = {"long_term": (0.0, 0.5), "short_term": (0.0, 1.0), "interests": (0.0, 0.2)}
    template = make_recommender()
    weights_a, table_a = tune_blend(template, split, catalog=catalog, item_vectors=vectors, grid=grid)
    with pytest.raises(NotFittedError):  # a clone was fitted, the template is left as it was
        template.recommend(0)
    weights_b, table_b = tune_blend(make_recommender(), split.__class__(split.train, scrambled, split.protocol),
                                    catalog=catalog, item_vectors=vectors, grid=grid)
    assert weights_a == weights_b
    pd.testing.assert_frame_equal(table_a, table_b)
    assert len(table_a) == 7  # 2 x 2 x 2 combinations minus all-zero


def test_compare_models_names_the_ease_reference():
    events, catalog, vectors, _ = make_planted(12)
    data, _ = align_events(events, catalog)
    split = split_events(data, "leave-last-out")
    plain = pd.DataFrame({"item_id": catalog.item_id.tolist(), "title": catalog.title.tolist()})
    results = compare_models(split, catalog=plain, item_vectors=vectors, l2=30.0)
    assert ease_name(30.0) == "EASE (l2=30)" and ease_name() == "EASE (l2=500)"
    assert [e.name for e in results] == ["MostPop", "ItemKNN", "EASE (l2=30)", "Content single-vector",
                                         "Content multi-interest", "tastemap"]
    table = evaluation_table(results, reference=ease_name(30.0), n_resamples=50).set_index("model")
    assert table.loc["EASE (l2=30)", "HR@10"] > 0 and table.loc["EASE (l2=30)", "HR@10_vs_ref"] == 1.0


def test_split_errors():
    data = Interactions.from_frame(frame([("a", 1, 1), ("b", 2, 1)]))
    with pytest.raises(InputError, match="no user has more than min_train=1 events"):
        split_events(data)
    with pytest.raises(ValueError, match="'random' is not a valid Protocol"):
        split_events(data, "random")


def test_cli_evaluate_writes_table(tmp_path):
    from typer.testing import CliRunner

    from tastemap.cli import app

    result = CliRunner().invoke(app, ["evaluate", *write_planted_files(tmp_path), "--protocol", "both",
                                      "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "eval" / "evaluation.csv")
    assert table.groupby("protocol")["model"].apply(list).to_dict() == {
        protocol: ["MostPop", "ItemKNN", "EASE (l2=500)", "Content single-vector", "Content multi-interest", "tastemap"]
        for protocol in ("leave-last-out", "temporal")
    }
    assert "│ tastemap" in result.output and "HR@10 vs" in result.output
    missing = CliRunner().invoke(app, ["evaluate", "--events", str(tmp_path / "events.csv")])
    assert missing.exit_code == 2
    assert "give both EVENTS and CATALOG files, or neither" in missing.output
