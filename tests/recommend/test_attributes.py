"""User attributes: the users table, attribute groups, the attribute model, segment descriptions
and the user cold-start protocol, on planted data where attributes decide tastes (always run) and
on MovieLens 100K (skipped when its folder is absent)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tastemap.errors import InputError
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.io.movielens100k import ENV_VAR, find_movielens_100k, read_movielens_100k
from tastemap.runtime.io.users import parse_attributes, read_users, users_from_frame
from tastemap.runtime.recommend.attributes import (
    AttributeEncoder,
    AttributeModel,
    blend_with_events,
    describe_segments_by_attributes,
)
from tastemap.runtime.recommend.user_cold_start import (
    AGE_GENDER,
    ATTRIBUTES,
    BOTH,
    EVENTS,
    GLOBAL,
    evaluate_user_cold_start,
    split_new_users,
)

N_BLOCK = 20  # items per planted taste


def planted(n_users: int = 240, seed: int = 0):
    """Students aged 18–24 like items 0–19, retired users aged 60+ items 20–39, engineers aged
    30–40 items 40–59; everybody also sees a few of the 20 generally popular items 60–79."""
    rng = np.random.default_rng(seed)
    kinds = np.arange(n_users) % 3
    ages = np.where(kinds == 0, rng.integers(18, 25, n_users), np.where(kinds == 1, rng.integers(60, 75, n_users),
                                                                         rng.integers(30, 41, n_users)))
    occupations = np.array(["student", "retired", "engineer"])[kinds]
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(n_users)], "age": ages.astype(str),
                          "gender": rng.choice(["F", "M"], n_users), "occupation": occupations})
    rows = []
    for user, kind in enumerate(kinds):
        liked = rng.choice(N_BLOCK, 8, replace=False) + N_BLOCK * kind
        popular = rng.choice(N_BLOCK, 3, replace=False) + 3 * N_BLOCK
        for step, item in enumerate(np.concatenate([liked, popular])[rng.permutation(11)]):
            rows.append((f"u{user}", int(item), 1000 + step))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return users, events


def test_parse_attributes_reads_pairs_and_refuses_bad_text():
    assert parse_attributes("age=24, gender=M,occupation=student") == {"age": "24", "gender": "M", "occupation": "student"}
    with pytest.raises(InputError, match=r"'age24' is not key=value"):
        parse_attributes("age24,gender=M")
    with pytest.raises(InputError, match=r"'age' is given twice"):
        parse_attributes("age=24,age=25")
    with pytest.raises(InputError, match="are empty"):
        parse_attributes(" , ")


def test_users_table_errors_name_file_row_and_column(tmp_path):
    bad_age = tmp_path / "users.csv"
    bad_age.write_text("user_id,age,gender\n1,24,M\n2,twenty,F\n")
    with pytest.raises(InputError, match=r"users.csv: row 2, column 'age': 'twenty' is not a number; age is numeric"):
        read_users(bad_age)
    no_id = tmp_path / "no_id.csv"
    no_id.write_text("id,age\n1,24\n")
    with pytest.raises(InputError, match=r"no_id.csv: missing column\(s\) \['user_id'\]"):
        read_users(no_id)
    twice = tmp_path / "twice.csv"
    twice.write_text("user_id,age\n1,24\n1,25\n")
    with pytest.raises(InputError, match=r"row 2, column 'user_id': user '1' appears twice"):
        read_users(twice)
    with pytest.raises(InputError, match=r"numeric column\(s\) \['income'\] are not in the table"):
        read_users(bad_age, numeric=("income",))


def test_users_table_allows_missing_values(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("user_id,age,occupation\n1,24,student\n2,,\n3,NA,writer\n")
    users = read_users(path)
    assert users.numeric == ("age",)
    assert users.user_ids.tolist() == ["1", "2", "3"]
    np.testing.assert_array_equal(users.values["age"].isna().to_numpy(), [False, True, True])
    assert users.values["occupation"].tolist() == ["student", None, "writer"]
    assert users.aligned(np.array(["3", "9"]))["occupation"].iloc[0] == "writer"
    assert users.aligned(np.array(["3", "9"]))["age"].isna().tolist() == [True, True]


def test_encoder_bands_merge_small_groups_and_keep_no_group_under_min_size():
    ages = [20] * 12 + [30] * 15 + [52] * 3 + [70] * 12  # 50–55 holds 3 users: merged into a neighbour
    frame = pd.DataFrame({"user_id": range(len(ages)), "age": ages,
                          "occupation": ["student"] * 12 + ["writer"] * 15 + ["poet"] * 3 + ["retired"] * 12,
                          "zip_code": ["94043"] * 20 + ["10001"] * 22})
    encoder = AttributeEncoder(min_group=10).fit(users_from_frame(frame))
    bands = [g.value for g in encoder.groups_ if g.column == "age"]
    assert bands == ["under 25", "25–34", "35+"]  # empty and small bands join their smaller neighbour
    assert [g.value for g in encoder.groups_ if g.column == "occupation"] == ["retired", "student", "writer"]  # poet: too few
    assert [g.value for g in encoder.groups_ if g.column == "zip_code"] == ["1", "9"]
    membership = encoder.transform(pd.DataFrame({"age": [52.0, np.nan], "occupation": ["poet", "student"]}))
    first = [encoder.groups_[i].describe() for i in membership[0].indices]
    assert first == ["aged 35+"]  # an unseen occupation belongs to no group (no "other" group held 10 users)
    assert [encoder.groups_[i].describe() for i in membership[1].indices] == ["occupation student"]
    with pytest.raises(InputError, match=r"unknown attribute\(s\) \['income'\]; the model knows \['age', 'occupation', 'zip_code'\]"):
        encoder.encode_one({"income": "3"})
    with pytest.raises(InputError, match=r"attribute age='old' is not a number; age is numeric"):
        encoder.encode_one({"age": "old"})
    restored = AttributeEncoder.from_dict(encoder.to_dict())
    assert (restored.encode_one({"age": "21", "zip_code": "9"}) != encoder.encode_one({"age": "21", "zip_code": "9"})).nnz == 0


def _fitted(users: pd.DataFrame, events: pd.DataFrame) -> tuple[AttributeModel, Interactions]:
    data = Interactions.from_frame(events, item_ids=np.arange(4 * N_BLOCK))
    return AttributeModel(seed=0).fit(users_from_frame(users), data.matrix(), data.user_ids), data


def test_attribute_model_recovers_the_planted_tastes():
    users, events = planted()
    model, _ = _fitted(users, events)
    assert model.l2_ in model.validation_ and len(model.validation_) == 5
    for attributes, block in (({"age": "21", "occupation": "student"}, 0), ({"age": 66, "occupation": "retired"}, 1),
                              ({"occupation": "engineer"}, 2)):
        scores, groups = model.score_attributes(attributes)
        top = np.argsort(-scores)[:N_BLOCK]
        assert (top // N_BLOCK == block).mean() >= 0.9, (attributes, top)
        audience = model.audience(int(top[0]), groups, float(scores[top[0]]))
        assert audience.startswith(f"occupation {['student', 'retired', 'engineer'][block]}"), audience
        assert float(audience.split("(")[1].split("×")[0]) > 2
    nobody, groups = model.score_attributes({"gender": None})
    assert groups == []
    np.testing.assert_allclose(nobody, model.item_mean_)  # no known attribute: population popularity
    restored = AttributeModel.from_arrays(*model.to_arrays())
    np.testing.assert_array_equal(restored.score_attributes({"age": "21"})[0], model.score_attributes({"age": "21"})[0])


def test_blend_weighs_attributes_less_as_events_grow():
    attributes = np.array([[0.0, 1.0, 2.0]])
    events = np.array([[2.0, 1.0, 0.0]])
    one = blend_with_events(attributes, events, 1, prior=2.0)
    many = blend_with_events(attributes, events, 18, prior=2.0)
    z = (attributes - 1.0) / np.sqrt(2 / 3)
    np.testing.assert_allclose(one, 2 / 3 * z - 1 / 3 * z, rtol=1e-5)
    np.testing.assert_allclose(many, 0.1 * z - 0.9 * z, rtol=1e-5)


def test_segments_are_described_by_over_represented_attributes_of_at_least_min_group_users():
    users, _ = planted(n_users=90)
    frame = users_from_frame(users)
    encoder = AttributeEncoder(min_group=10).fit(frame)
    membership = encoder.transform(frame.values)
    labels = np.arange(90) % 3
    labels[:3] = 2  # three students in the engineers' segment: too few to be shown there
    described = describe_segments_by_attributes(membership, labels, encoder.groups_, min_group=10)
    top_two = {(e["attribute"], e["value"], e["users"]) for e in described[0][:2]}
    assert top_two == {("occupation", "student", 29), ("age", "under 25", 29)}  # no one under 18: the band widened
    assert described[0][0]["share"] == pytest.approx(1.0) and described[0][0]["lift"] == pytest.approx(3.0)
    assert all(entry["users"] >= 10 for entries in described for entry in entries)
    assert not any(e["value"] == "student" for e in described[2])


def test_user_cold_start_protocol_on_planted_users():
    users, events = planted(n_users=300)
    data = Interactions.from_frame(events, item_ids=np.arange(4 * N_BLOCK))
    split = split_new_users(data, holdout_fraction=0.2, seed=0)
    assert len(split.test_items) == 60 and split.train.n_users == 240
    assert not set(split.test_user_ids) & set(split.train.user_ids)

    def cooccurrence(train: Interactions):  # events alone: items seen with the given ones
        matrix = train.matrix()
        gram = (matrix.T @ matrix).toarray()
        return lambda given: np.stack([gram[row].sum(axis=0) for row in given])

    result = evaluate_user_cold_start(split, users_from_frame(users), cooccurrence, n_resamples=200)
    table = result.table()
    assert list(table["events_given"]) == [0, 0, 0, 0, 1, 1, 3, 3, 5, 5]
    recall = table.set_index(["events_given", "model"])["Recall@20"]
    assert recall[(0, ATTRIBUTES)] > 0.6 > recall[(0, GLOBAL)]
    assert recall[(0, AGE_GENDER)] > recall[(0, GLOBAL)]
    assert result.ratios[0][ATTRIBUTES]["Recall@20"].low > 1
    assert result.references[1] == {BOTH: EVENTS}
    assert recall[(1, BOTH)] > recall[(1, EVENTS)]


def test_splitting_refuses_an_impossible_fraction():
    users, events = planted(n_users=30)
    data = Interactions.from_frame(events, item_ids=np.arange(4 * N_BLOCK))
    with pytest.raises(InputError, match="holdout_fraction=1.5 should be between 0 and 1"):
        split_new_users(data, holdout_fraction=1.5)


def test_movielens_100k_folder_detection(tmp_path):
    with pytest.raises(InputError, match=r"not a MovieLens 100K folder \(missing \['u.data', 'u.item', 'u.user'\]\)"):
        find_movielens_100k(tmp_path)


@pytest.mark.skipif(find_movielens_100k() is None,
                    reason=f"MovieLens 100K is not here: set {ENV_VAR} to the folder holding u.data, u.item and u.user")
def test_movielens_100k_attributes():
    data = read_movielens_100k(find_movielens_100k())
    assert len(data.events) == 100_000 and len(data.catalog) == 1682 and data.users.n_users == 943
    encoder = AttributeEncoder().fit(data.users)
    assert [g.value for g in encoder.groups_ if g.column == "age"] == ["under 18", "18–24", "25–34", "35–44", "45–49",
                                                                      "50–55", "56+"]
    counts = np.asarray(encoder.transform(data.users.values).sum(axis=0)).ravel()
    assert counts.min() >= 10


def test_fitted_model_stores_group_aggregates_and_recovers_the_planted_segment(tmp_path):
    import pyarrow.parquet as pq

    from tastemap.runtime.pipeline.model import TastemapModel
    from tastemap.runtime.pipeline.model_io import open_version
    from planted import make_recommender

    users, events = planted(n_users=150)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    vectors = (np.repeat(centres, N_BLOCK, axis=0) + 0.3 * rng.normal(size=(4 * N_BLOCK, 16))).astype(np.float32)
    catalog = pd.DataFrame({"item_id": np.arange(4 * N_BLOCK), "title": [f"film {i}" for i in range(4 * N_BLOCK)]})
    data = Interactions.from_frame(events, item_ids=catalog["item_id"].to_numpy())
    model = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender(), users=users_from_frame(users))
    model.save(tmp_path / "model")
    loaded = TastemapModel.load(tmp_path / "model")

    recs = loaded.recommend_cold(attributes={"age": "20", "occupation": "student"}, k=10)
    assert sum(r.item_id < N_BLOCK for r in recs) >= 9
    assert recs[0].explanation.describe().startswith("popular with occupation student")
    with_items = loaded.recommend_cold([25, 27], attributes={"occupation": "student"}, k=10)
    assert not {25, 27} & {r.item_id for r in with_items}
    assert with_items[0].explanation.describe().endswith("(and you liked film 25, film 27)")
    with pytest.raises(InputError, match=r"unknown attribute\(s\) \['income'\]"):
        loaded.recommend_cold(attributes={"income": "3"})

    version = open_version(tmp_path / "model")
    segments = pq.read_table(version.root / "segments.parquet").to_pandas()
    students = [row for row in segments.itertuples() if any(e["value"] == "student" for e in row.top_attributes)]
    assert len(students) == 1  # the students' segment is named by its planted attribute
    assert all(e["users"] >= 10 for row in segments.itertuples() for e in row.top_attributes)
    members = loaded.user_ids[loaded.segmenter.labels_ == students[0].segment]
    assert np.isin(members, users["user_id"][users["occupation"] == "student"]).mean() > 0.9

    with TastemapModel.locked(tmp_path / "model") as updating:  # an update keeps the description and the model
        updating.update(pd.DataFrame({"user_id": ["u0", "new"], "item_id": [3, 4], "timestamp": [5000, 5001]}))
        updating.save()
    updated = open_version(tmp_path / "model")
    again = pq.read_table(updated.root / "segments.parquet").to_pandas()
    assert [list(map(dict, row)) for row in again["top_attributes"]] == [list(map(dict, row)) for row in segments["top_attributes"]]
    assert TastemapModel.load(tmp_path / "model").recommend_cold(attributes={"occupation": "student"}, k=3)[0].item_id < N_BLOCK

    stored = set(version.manifest["files"])
    assert {"attributes.group_mean.npy", "attributes.item_mean.npy", "attributes.coef.npy"} <= stored
    assert pq.read_table(version.root / "users.parquet").column_names == ["user_id", "n_events", "last_seen", "segment"]


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    """Planted events, catalog, users and item vectors as files, for the command line."""
    folder = tmp_path_factory.mktemp("planted-users")
    users, events = planted(n_users=150)
    rng = np.random.default_rng(0)
    vectors = (np.repeat(rng.normal(size=(4, 16)), N_BLOCK, axis=0) + 0.3 * rng.normal(size=(4 * N_BLOCK, 16)))
    events.to_csv(folder / "events.csv", index=False)
    pd.DataFrame({"item_id": np.arange(4 * N_BLOCK), "title": [f"film {i}" for i in range(4 * N_BLOCK)]}).to_csv(
        folder / "catalog.csv", index=False)
    users.to_csv(folder / "users.csv", index=False)
    np.save(folder / "vectors.npy", vectors.astype(np.float32))
    return folder


def test_command_line_fit_recommend_segment_and_evaluate_with_users(planted_files, tmp_path):
    from typer.testing import CliRunner

    from tastemap.cli import app

    runner = CliRunner()
    f = planted_files
    inputs = [str(f / "events.csv"), str(f / "catalog.csv"), "--vectors", str(f / "vectors.npy")]
    model = tmp_path / "model"
    result = runner.invoke(app, ["fit", *inputs, "--out", str(model), "--users", str(f / "users.csv"), "--n-segments", "3",
                                 "--topics", "8", "--coarse-topics", "4"])
    assert result.exit_code == 0, result.output
    assert "user attributes" in result.output and "groups of >= 10 users" in result.output.replace("\n", " ")
    result = runner.invoke(app, ["recommend", "--model", str(model), "--attributes", "age=20,occupation=student", "--k", "5"])
    assert result.exit_code == 0, result.output
    assert "popular with occupation student" in result.output
    result = runner.invoke(app, ["recommend", "--model", str(model), "--attributes", "age=old"])
    assert result.exit_code == 2 and "attribute age='old' is not a number" in result.output
    liked = ",".join(str(i) for i in range(3))
    result = runner.invoke(app, ["recommend", "--model", str(model), "--items", liked, "--k", "5"])  # items alone
    assert result.exit_code == 0, result.output
    assert f"Recommendations for a new user (items {liked})" in " ".join(result.output.split())
    assert "popular with" not in result.output
    result = runner.invoke(app, ["recommend", "--model", str(model), "--items", liked, "--text", "gadgets"])
    assert result.exit_code == 2 and "give --text or --items for a new user, not both" in result.output
    result = runner.invoke(app, ["recommend", "--model", str(model), "--text", "gadgets", "--user", "u0"])
    assert result.exit_code == 2 and "describe a new user: drop --user and --all" in result.output
    result = runner.invoke(app, ["recommend", "--model", str(model), "--text", "gadgets"])  # fitted on --vectors
    assert result.exit_code == 2 and "fitted on precomputed item vectors, so it has no encoder package" in result.output
    result = runner.invoke(app, ["segment", str(model)])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())  # the table wraps its cells at the terminal's width
    assert "over-represented" in flat and "×" in flat

    bad = tmp_path / "bad_users.csv"
    bad.write_text("user_id,age\nu0,twenty\n")
    result = runner.invoke(app, ["fit", *inputs, "--out", str(tmp_path / "never"), "--users", str(bad)])
    assert result.exit_code == 2 and "row 1, column 'age': 'twenty' is not a number" in result.output
    assert not (tmp_path / "never").exists()

    result = runner.invoke(app, ["evaluate", "--protocol", "user-cold-start", "--events", *inputs[:1], "--catalog",
                                 inputs[1], "--vectors", inputs[3], "--users", str(f / "users.csv"),
                                 "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "eval" / "evaluation.csv")
    assert table["model"].tolist()[:4] == [GLOBAL, AGE_GENDER, "group popularity (occupation)", ATTRIBUTES]
    assert set(table["protocol"]) == {"user-cold-start"}
    result = runner.invoke(app, ["evaluate", "--users", str(f / "users.csv")])
    assert result.exit_code == 2 and "--users and --data go with --protocol user-cold-start" in result.output
    result = runner.invoke(app, ["evaluate", "--protocol", "user-cold-start", "--tune"])
    assert result.exit_code == 2 and "--tune do not apply to --protocol user-cold-start" in result.output
