"""Fit once, serve many: the fitted model directory, answering without refitting, online updates."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from planted import make_planted, make_recommender
from tastemap.cli import app
from tastemap.errors import FittedModelError, InputError
from tastemap.runtime.io.events import align_events
from tastemap.runtime.pipeline import model_io
from tastemap.runtime.pipeline.model import TastemapModel
from tastemap.runtime.recommend.recommender import recency_matrix

runner = CliRunner()
NEW_ITEM = 500


@pytest.fixture(scope="module")
def planted():
    events, catalog, vectors, truth = make_planted(40)
    data, _ = align_events(events, catalog)
    return events, catalog, vectors, truth, data


@pytest.fixture(scope="module")
def saved(planted, tmp_path_factory):
    """The planted log fitted with a leave-last-out holdout and written to a directory."""
    _, catalog, vectors, _, data = planted
    model = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender(), holdout="leave-last-out")
    path = model.save(tmp_path_factory.mktemp("model") / "planted")
    return model, path


def copy_model(path, tmp_path):
    return shutil.copytree(path, tmp_path / "copy")


def current(path):
    """The folder of the current version of the model directory ``path``."""
    return model_io.version_root(path, model_io.current_number(path))


def test_round_trip_answers_like_the_fitted_model(saved):
    fitted, path = saved
    loaded = TastemapModel.load(path)
    pd.testing.assert_frame_equal(loaded.recommend_batch(k=8), fitted.recommend_batch(k=8))
    assert loaded.recommend(5, k=4) == fitted.recommend(5, k=4)
    assert loaded.recommend_cold([3, 40, 41], k=5) == fitted.recommend_cold([3, 40, 41], k=5)
    assert loaded.segment_of(5) == fitted.segment_of(5)
    top = loaded.recommend(5, k=3)
    for rec in top:
        assert loaded.explain(5, rec.item_id) == rec.explanation
    np.testing.assert_array_equal(loaded.segmenter.labels_, fitted.segmenter.labels_)
    assert loaded.segmenter.criterion_scores_ == fitted.segmenter.criterion_scores_
    assert loaded.segmenter.dispersion_ == (getattr(fitted.segmenter, "dispersion_", None) or {})
    assert loaded.n_users == 40 and loaded.n_items == 120


def test_directory_is_safe_formats_with_recorded_hashes(saved):
    _, saved_path = saved
    assert sorted(p.name for p in saved_path.iterdir()) == ["current", "versions", "writer.lock", "writer.queue"]
    path = current(saved_path)
    manifest = json.loads((path / "model.json").read_text())
    assert manifest["format"] == "tastemap-fitted-model" and manifest["schema_version"] == model_io.SCHEMA_VERSION
    assert manifest["version"] == 1 and path.name == "00000001"
    files = manifest["files"]
    for name in ("items.parquet", "item_vectors.npy", "collaborative.right.npy", "collaborative.shrink.npy",
                 "collaborative.right_total.npy", "collaborative.right_gram.npy",
                 "collaborative.diagonal.npy", "item_neighbours.npy", "topic_tree.json", "users.parquet",
                 "profiles.parquet", "topics.json", "segments.parquet", "user_segments.parquet", "holdout.parquet",
                 "events/part-00000.parquet", "state/interests.members.npy"):
        assert name in files, name
    on_disk = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - {"model.json"}
    assert on_disk == set(files)
    for name, record in files.items():
        assert model_io.sha256_file(path / name) == record["sha256"]
        assert name.endswith((".npy", ".parquet", ".json")), name
        if name.endswith(".npy"):
            np.load(path / name, allow_pickle=False)
    assert manifest["params"]["weights"] == {"long_term": 0.3, "short_term": 0.7, "interests": 0.1, "category": 0.0,
                                            "literal": 0.0}
    assert manifest["holdout"]["protocol"] == "leave-last-out" and manifest["holdout"]["n_users"] == 40
    assert manifest["encoder"] is None  # fitted on precomputed vectors


def test_load_refuses_changed_files_and_other_schemas(saved, tmp_path):
    _, path = saved
    copy = copy_model(path, tmp_path)
    vectors = current(copy) / "item_vectors.npy"
    raw = bytearray(vectors.read_bytes())
    raw[-1] ^= 0xFF
    vectors.write_bytes(bytes(raw))
    with pytest.raises(FittedModelError, match=r"item_vectors.npy has sha256 .*model.json records .* was changed"):
        TastemapModel.load(copy)
    result = runner.invoke(app, ["recommend", "--model", str(copy), "--user", "5"])
    assert result.exit_code == 2 and "item_vectors.npy has sha256" in result.output
    manifest_path = current(copy) / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(FittedModelError, match=r"schema_version=99; this tastemap reads schema_version=3"):
        TastemapModel.load(copy)
    manifest_path.unlink()
    with pytest.raises(FittedModelError, match="has no model.json"):
        TastemapModel.load(copy)
    (copy / "current").unlink()
    shutil.rmtree(copy / "versions")
    with pytest.raises(FittedModelError, match="has no current pointer, so it is not a fitted tastemap model"):
        TastemapModel.load(copy)


def forbid_fitting(monkeypatch):
    """Every estimator fit, EASE inversion and topic clustering raises."""
    from tastemap.runtime.interests import profiles, segments, topics
    from tastemap.runtime.recommend import baselines, recommender

    def fail(*args, **kwargs):
        raise AssertionError("a fit ran while answering from a fitted model")

    for owner, name in ((profiles.InterestProfiler, "fit"), (segments.UserSegmenter, "fit"),
                        (recommender.TastemapRecommender, "fit"), (baselines.EASE, "fit"),
                        (baselines, "ease_weights"), (recommender, "low_rank_ease"),
                        (topics, "fit_topic_tree"), (profiles, "fit_topic_tree")):
        monkeypatch.setattr(owner, name, fail)


def test_commands_answer_from_the_directory_without_fitting(saved, tmp_path, monkeypatch):
    fitted, path = saved
    forbid_fitting(monkeypatch)
    result = runner.invoke(app, ["recommend", "--model", str(path), "--user", "5", "--k", "4"])
    assert result.exit_code == 0, result.output
    assert all(str(r.item_id) in result.output for r in fitted.recommend(5, k=4))
    out = tmp_path / "recs.parquet"
    result = runner.invoke(app, ["recommend", "--model", str(path), "--all", "--out", str(out), "--k", "3"])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(out), fitted.recommend_batch(k=3), check_dtype=False)
    result = runner.invoke(app, ["segment", str(path)])
    assert result.exit_code == 0, result.output
    assert "Segments" in result.output and str(fitted.segmenter.segments_.loc[0, "size"]) in result.output
    result = runner.invoke(app, ["evaluate", "--model", str(path), "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "eval" / "evaluation.csv")
    assert table["model"].tolist() == ["EASE (l2=10)", "tastemap"] and table["users"].eq(40).all()
    result = runner.invoke(app, ["recommend", "--model", str(path), "--user", "5", "--events", "x.csv"])
    assert result.exit_code == 2 and "--events cannot be combined with it" in result.output


def test_evaluate_equals_the_refit_evaluation(saved, planted):
    from tastemap.runtime.recommend.evaluate import evaluate_model, evaluation_table, split_events

    fitted, path = saved
    _, catalog, vectors, _, data = planted
    split = split_events(data, "leave-last-out")
    refit = evaluate_model(make_recommender(), split, name="tastemap",
                           fit_params={"catalog": catalog, "item_vectors": vectors})
    expected = evaluation_table([refit], n_resamples=200).set_index("model")
    table = TastemapModel.load(path).evaluate(n_resamples=200).set_index("model")
    for metric in ("HR@10", "NDCG@10", "HR@50", "Coverage@10"):
        assert table.loc["tastemap", metric] == pytest.approx(expected.loc["tastemap", metric])
    with pytest.raises(InputError, match="fitted on all events, so it has no held-out split"):
        TastemapModel.fit(data, catalog, vectors, recommender=make_recommender()).evaluate()


def test_profile_files_are_a_compatible_subset(saved, tmp_path):
    from tastemap.runtime.interests.profile_io import read_profiles

    fitted, path = saved
    profiles = read_profiles(path)
    assert profiles.n_users == 40
    result = runner.invoke(app, ["segment", str(current(path) / "profiles.parquet"), "--out", str(tmp_path / "seg"),
                                 "--k", "2"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["segment", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "--out FOLDER is required" in result.output


# online updates ---------------------------------------------------------------------------------

def new_events(truth) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Events for two old users, two new users and a new item; one unknown item, one duplicate."""
    later = 1_700_000_000
    topic_items = [np.flatnonzero(truth.item_topics == t) for t in range(4)]
    rows = [(3, int(topic_items[0][5]), later), (3, NEW_ITEM, later + 60), (17, int(topic_items[2][1]), later),
            ("new-a", int(topic_items[1][0]), later), ("new-a", int(topic_items[1][1]), later + 5),
            ("new-a", NEW_ITEM, later + 9), ("new-b", int(topic_items[3][2]), later),
            ("new-b", 99_999, later), (17, int(topic_items[2][1]), later)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    frame["weight"] = np.float32(1.0)
    frame["user_id"] = frame["user_id"].map(lambda u: 1000 + ord(u[-1]) if isinstance(u, str) else u)
    catalog = pd.DataFrame({"item_id": [NEW_ITEM, 7], "title": ["a brand new thing", "known"],
                            "categories": [[("Section A", "Shelf 0"), ("Section Z",)], []],
                            "tags": [[], []], "description": ["", ""]})
    vector = truth.topic_centres[0] + 0.05 * np.random.default_rng(3).standard_normal(truth.topic_centres.shape[1])
    return frame, catalog, np.stack([vector, np.ones_like(vector)]).astype(np.float32)


def test_update_equals_a_rebuild_with_the_fitted_topics(planted):
    events, catalog, vectors, truth, data = planted
    model = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender())
    before = copy.deepcopy(model)
    frame, items, item_vectors = new_events(truth)
    summary = model.update(frame, items, item_vectors=item_vectors)
    assert (summary.n_events_read, summary.n_events_added, summary.n_duplicates, summary.n_unknown_items) == (9, 7, 1, 1)
    assert summary.unknown_item_examples == [99_999]
    assert (summary.n_users_updated, summary.n_new_users, summary.n_new_items, summary.n_known_catalog_rows) == (2, 2, 1, 1)
    assert any("collaborative" in line for line in summary.deferred)

    rec = model.recommender
    assert model.n_items == 121 and rec.index_.ntotal == 121
    assert rec.profiler_.item_topics_[-1].tolist() == rec.profiler_.topic_tree_.assign(item_vectors[:1])[0].tolist()
    assert model._categories[-1] == [("Section A", "Shelf 0")]  # the unknown section waits for the next fit
    assert rec.collaborative_.n_items == 121 and not rec.collaborative_.left[-1].any()
    assert rec.item_neighbours_.shape[0] == 121 and rec.item_neighbours_[-1, 0] == 120  # its own nearest item

    # the rebuild: every event through the batch transform with the same (extended) fitted topics
    all_catalog = pd.concat([catalog, items.iloc[:1]], ignore_index=True)
    everything, _ = align_events(pd.concat([events, frame], ignore_index=True), all_catalog)
    reference = rec.profiler_.transform(everything)
    state = rec.scoring_state(everything.matrix(), recency_matrix(everything, rec.recency_half_life), reference)
    order = pd.Index(everything.user_ids).get_indexer(model.user_ids)
    assert (order >= 0).all() and model.n_users == everything.n_users == 42
    profiles = model.profiles
    np.testing.assert_array_equal(profiles.user_ids, everything.user_ids[order])
    np.testing.assert_array_equal(profiles.n_events, reference.n_events[order])
    np.testing.assert_array_equal(profiles.last_seen, reference.last_seen[order])
    for mine, theirs in [*zip(profiles.topics, reference.topics), (profiles.short_term, reference.short_term),
                         *zip(profiles.categories, reference.categories), (rec.state_.history, state.history),
                         (rec.state_.recency, state.recency)]:
        assert (abs(mine - theirs[order]) > 0).nnz == 0
    np.testing.assert_array_equal(profiles.vectors, reference.vectors[order])
    for row, ref_row in enumerate(order):
        mine, theirs = profiles.interests.of_user(row), reference.interests.of_user(ref_row)
        assert [(i.medoid, i.importance, i.share, i.topic, i.members.tolist()) for i in mine] == \
               [(i.medoid, i.importance, i.share, i.topic, i.members.tolist()) for i in theirs]
        shares = rec.state_.interests.share[rec.state_.interests.indptr[row]:rec.state_.interests.indptr[row + 1]]
        np.testing.assert_array_equal(shares, state.interests.share[state.interests.indptr[ref_row]:
                                                                    state.interests.indptr[ref_row + 1]])
    # untouched users are unchanged; touched ones are in their nearest fitted segment
    touched = model.recommender.user_index_.get_indexer([3, 17, 1097, 1098])
    untouched = np.setdiff1d(np.arange(40), touched)
    np.testing.assert_array_equal(model.segmenter.labels_[untouched], before.segmenter.labels_[untouched])
    from tastemap.runtime.interests.layers import onehot
    from tastemap.runtime.pipeline.model_update import take_profiles

    segmenter = model.segmenter
    np.testing.assert_array_equal(segmenter.labels_[touched],
                                  segmenter.predict(take_profiles(reference, order[touched])))
    assert segmenter.segments_["size"].sum() == 42
    labels = np.empty(42, np.int64)
    labels[order] = segmenter.labels_
    popularity = onehot(labels, segmenter.n_segments_).T @ everything.matrix()
    np.testing.assert_array_equal(rec.segment_popularity_, popularity.toarray())
    # recommendations equal those of a recommender holding the rebuilt state
    rebuilt = copy.copy(rec)
    rebuilt.user_index_, rebuilt.state_ = pd.Index(everything.user_ids), state
    ids = [3, 17, 1097, 1098, 0, 25]
    pd.testing.assert_frame_equal(model.recommend_batch(ids, k=10), rebuilt.recommend_batch(ids, k=10))
    _, nearest = rec.index_.search(rec.profiler_.item_vectors_[-1:], 1)
    assert rec.item_ids_[nearest[0, 0]] == NEW_ITEM  # retrievable as an interest candidate


def test_updated_model_round_trips_and_keeps_unchanged_files(saved, planted, tmp_path):
    _, path = saved
    truth = planted[3]
    copy = copy_model(path, tmp_path)
    model = TastemapModel.load(copy)
    frame, items, item_vectors = new_events(truth)
    model.update(frame, items, item_vectors=item_vectors)
    ease_inode = (current(copy) / "collaborative.right.npy").stat().st_ino
    model.save()
    assert current(copy).name == "00000002"
    assert (current(copy) / "collaborative.right.npy").stat().st_ino == ease_inode  # linked, not rewritten
    manifest = json.loads((current(copy) / "model.json").read_text())
    assert manifest["event_parts"] == ["events/part-00000.parquet", "events/part-00001.parquet"]
    assert manifest["updates"][-1]["n_events_added"] == 7 and manifest["data"]["n_items"] == 121
    again = TastemapModel.load(copy)
    ids = [3, 1097, 1098, 10]
    pd.testing.assert_frame_equal(again.recommend_batch(ids, k=6), model.recommend_batch(ids, k=6))
    assert again.recommender.collaborative_.n_items == 121 and again.events.n_events == model.events.n_events
    assert again.segment_of(1097) == model.segment_of(1097)
    assert not list(tmp_path.glob(".copy.*"))  # nothing beside the directory
    assert sorted(p.name for p in (copy / "versions").iterdir()) == ["00000001", "00000002"]  # the previous kept


def test_event_parts_are_written_a_row_group_at_a_time(tmp_path, monkeypatch):
    from tastemap.runtime.pipeline import model_state

    monkeypatch.setattr(model_state, "EVENT_ROW_GROUP", 4)
    user_ids, item_ids = np.array(["ann", "bo", "cy"], dtype=object), np.array([10, 20])
    log = model_state.EventLog(users=[0, 1, 2, 0, 1, 2, 0, 1, 2, 0], items=[0, 1] * 5,
                               timestamps=np.arange(10) + 100, weights=np.linspace(1, 2, 10))
    log.append([2, 1], [1, 0], [200, 201], [0.5, 0.25])  # a tail, read through the columns
    log.parquet_writer(user_ids, item_ids, start=3)(tmp_path / "part.parquet")
    table = pq.read_table(tmp_path / "part.parquet")
    assert table.schema.types == [pa.string(), pa.int64(), pa.int64(), pa.float32()]
    assert pq.ParquetFile(tmp_path / "part.parquet").metadata.num_row_groups == 3  # 9 events, 4 a group
    assert table.column("user_id").to_pylist() == ["ann", "bo", "cy", "ann", "bo", "cy", "ann", "cy", "bo"]
    assert table.column("item_id").to_pylist() == [20, 10, 20, 10, 20, 10, 20, 20, 10]
    assert table.column("timestamp").to_pylist() == [103, 104, 105, 106, 107, 108, 109, 200, 201]
    read = model_state.EventLog.read(tmp_path, ["part.parquet"], pd.Index(user_ids), pd.Index(item_ids))
    np.testing.assert_array_equal(read.users, log.users[3:])
    np.testing.assert_array_equal(read.items, log.items[3:])
    np.testing.assert_array_equal(read.timestamps, log.timestamps[3:])
    np.testing.assert_array_equal(read.weights, log.weights[3:])
    assert read.weights.dtype == np.float32 and read.n_saved == 9
    for users, items in ((pd.Index(["ann", "bo"]), pd.Index(item_ids)), (pd.Index(user_ids), pd.Index(["10", "20"]))):
        with pytest.raises(FittedModelError, match="the stored events name users or items the model does not hold"):
            model_state.EventLog.read(tmp_path, ["part.parquet"], users, items)
    log.parquet_writer(user_ids, item_ids, start=log.n_events)(tmp_path / "empty.parquet")
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0


def test_an_interrupted_update_leaves_the_previous_model(saved, planted, tmp_path, monkeypatch):
    _, path = saved
    copy = copy_model(path, tmp_path)
    before = TastemapModel.load(copy).recommend_batch(k=5)
    model = TastemapModel.load(copy)
    model.update(new_events(planted[3])[0])
    real_hash, calls = model_io.sha256_file, []

    def crash_mid_write(file):
        calls.append(file)
        if len(calls) == 6:
            raise KeyboardInterrupt("simulated crash while writing")
        return real_hash(file)

    monkeypatch.setattr(model_io, "sha256_file", crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        model.save()
    monkeypatch.undo()
    assert sorted(p.name for p in (copy / "versions").iterdir()) == ["00000001"]  # the temporary folder removed
    pd.testing.assert_frame_equal(TastemapModel.load(copy).recommend_batch(k=5), before)

    real_point = model_io._point

    def crash_before_the_pointer(home, number):
        raise OSError("simulated crash between the version's rename and the pointer's")

    monkeypatch.setattr(model_io, "_point", crash_before_the_pointer)
    with pytest.raises(FittedModelError, match="simulated crash"):
        model.save()
    monkeypatch.undo()
    assert model_io.current_number(copy) == 1 and (copy / "versions" / "00000002").is_dir()  # finished, unpublished
    pd.testing.assert_frame_equal(TastemapModel.load(copy).recommend_batch(k=5), before)  # readers see version 1
    assert model_io._point is real_point
    model.save()  # the next writer removes what the crash left and publishes version 3
    assert sorted(p.name for p in (copy / "versions").iterdir()) == ["00000001", "00000003"]
    assert TastemapModel.load(copy).events.n_events == model.events.n_events


def test_update_command(saved, planted, tmp_path):
    _, path = saved
    copy = copy_model(path, tmp_path)
    frame, items, item_vectors = new_events(planted[3])
    frame.to_csv(tmp_path / "new.csv", index=False)
    items.assign(categories=["Section A > Shelf 0", ""], tags="").to_csv(tmp_path / "items.csv", index=False)
    np.save(tmp_path / "vectors.npy", item_vectors)
    result = runner.invoke(app, ["update", str(copy), str(tmp_path / "new.csv"), "--catalog", str(tmp_path / "items.csv"),
                                 "--vectors", str(tmp_path / "vectors.npy")])
    assert result.exit_code == 0, result.output
    assert "7" in result.output and "99999" in result.output and "waits for the next `tastemap fit`" in result.output
    result = runner.invoke(app, ["recommend", "--model", str(copy), "--user", "1097", "--k", "3"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["update", str(copy), str(tmp_path / "new.csv"), "--catalog", str(tmp_path / "items.csv")])
    assert result.exit_code == 0, result.output  # the item is known now: no encoder needed
    result = runner.invoke(app, ["update", str(copy), str(tmp_path / "new.csv"), "--vectors", str(tmp_path / "vectors.npy")])
    assert result.exit_code == 2 and "give --catalog too" in result.output


def test_update_errors(planted):
    _, catalog, vectors, truth, data = planted
    model = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender())
    frame, items, item_vectors = new_events(truth)
    with pytest.raises(InputError, match="fitted on precomputed item vectors, so it has no encoder package"):
        model.update(frame, items)
    with pytest.raises(InputError, match=r"new item vectors have shape \(2, 3\); expected \[2, 16\]"):
        model.update(frame, items, item_vectors=np.ones((2, 3), np.float32))
    with pytest.raises(InputError, match="new user ids such as 'x' are not integers"):
        model.update(frame.assign(user_id="x"))
    global_time = make_recommender()
    global_time.set_params(profiler__time_reference="global")
    fitted = TastemapModel.fit(data, catalog, vectors, recommender=global_time)
    with pytest.raises(InputError, match="time_reference='global'"):
        fitted.update(frame)


def test_text_cold_start_and_new_items_use_the_recorded_encoder(planted, tiny_package, tmp_path):
    from tastemap.runtime.encode.encoder import Encoder

    _, catalog, _, truth, data = planted
    encoder = Encoder(tiny_package, variant="fp32", device="cpu", threads=1)
    model = TastemapModel.fit(data, catalog, encoder=encoder, recommender=make_recommender())
    path = model.save(tmp_path / "with-encoder")
    record = json.loads((current(path) / "model.json").read_text())["encoder"]
    assert record["manifest_sha256"] == model_io.sha256_file(tiny_package / "manifest.json")
    assert record["variant"] == "fp32" and record["dim"] == 32
    loaded = TastemapModel.load(path)
    recs = loaded.recommend_cold("space adventure with robots", k=5)
    assert len(recs) == 5 and all(r.explanation.layer == "cold-start" for r in recs)
    from typer.testing import CliRunner

    from tastemap.cli import app

    result = CliRunner().invoke(app, ["recommend", "--model", str(path), "--text", "space adventure with robots",
                                      "--k", "5"])
    assert result.exit_code == 0, result.output
    assert all(str(r.title) in result.output for r in recs)  # the same five items as the library's
    frame, items, _ = new_events(truth)
    summary = loaded.update(frame, items)  # the new item goes through the recorded package
    assert summary.n_new_items == 1
    np.testing.assert_allclose(loaded.recommender.profiler_.item_vectors_[-1],
                               encoder.encode(loaded.recommender.profiler_.item_texts_[-1:])[0], atol=1e-5)
    other = shutil.copytree(tiny_package, tmp_path / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "source": "changed"}))
    with pytest.raises(FittedModelError, match="would not match the item vectors"):
        TastemapModel.load(path, encoder=Encoder(other))


# the bundled MovieLens sample --------------------------------------------------------------------

@pytest.fixture(scope="module")
def movielens_files(tmp_path_factory):
    """Ten MovieLens users (414 among them) with their movies, as files, and hashed text vectors."""
    from sklearn.feature_extraction.text import HashingVectorizer

    from tastemap.runtime.io.events import load_movielens, render_item_texts

    folder = tmp_path_factory.mktemp("movielens")
    events, catalog = load_movielens()
    users = set(np.random.default_rng(0).choice(events["user_id"].unique(), 9, replace=False).tolist()) | {414}
    events = events[events["user_id"].isin(users)]
    catalog = catalog[catalog["item_id"].isin(events["item_id"].unique())].reset_index(drop=True)
    events.to_csv(folder / "events.csv", index=False)
    pd.DataFrame({"item_id": catalog["item_id"], "title": catalog["title"],
                  "categories": ["|".join(" > ".join(p) for p in paths) for paths in catalog["categories"]],
                  "tags": ["|".join(tags) for tags in catalog["tags"]]}).to_csv(folder / "catalog.csv", index=False)
    hashed = HashingVectorizer(n_features=2048, alternate_sign=False).transform(render_item_texts(catalog))
    projection = np.random.default_rng(1).standard_normal((2048, 24)).astype(np.float32)
    np.save(folder / "vectors.npy", np.asarray(hashed @ projection, np.float32) + 0.01)
    return folder


def test_fit_then_recommend_equals_the_refit_path_on_movielens(movielens_files, tmp_path, monkeypatch):
    files = [str(movielens_files / name) for name in ("events.csv", "catalog.csv")]
    vectors = ["--vectors", str(movielens_files / "vectors.npy")]
    refit = runner.invoke(app, ["recommend", "--user", "414", "--k", "10", "--events", files[0],
                                "--catalog", files[1], *vectors])
    assert refit.exit_code == 0, refit.output
    refit_all = runner.invoke(app, ["recommend", "--all", "--out", str(tmp_path / "refit.parquet"), "--events",
                                    files[0], "--catalog", files[1], *vectors])
    assert refit_all.exit_code == 0, refit_all.output
    result = runner.invoke(app, ["fit", *files, "--out", str(tmp_path / "ml"), *vectors])
    assert result.exit_code == 0, result.output
    forbid_fitting(monkeypatch)
    served = runner.invoke(app, ["recommend", "--model", str(tmp_path / "ml"), "--user", "414", "--k", "10"])
    assert served.exit_code == 0, served.output
    table = lambda output: output[output.index("Recommendations for user 414"):]  # noqa: E731
    assert table(served.output) == table(refit.output)
    served_all = runner.invoke(app, ["recommend", "--model", str(tmp_path / "ml"), "--all", "--out",
                                     str(tmp_path / "served.parquet")])
    assert served_all.exit_code == 0, served_all.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "served.parquet"), pd.read_parquet(tmp_path / "refit.parquet"))


def test_serving_bench_suite_measures_both_paths():
    from tastemap.bench.serving import ServingSuiteConfig, run_serving_suite

    config = ServingSuiteConfig(max_users=6, n_requests=5, refit_calls=1, n_updates=3, load_repeats=1)
    figures, context, notes = run_serving_suite(None, config, threads=1)
    prefix = "serving/movielens"
    for name in ("load_seconds", "recommend/served/p50_ms", "recommend/served/p99_ms", "recommend/refit/p50_ms",
                 "batch/served/users_per_s", "batch/refit/users_per_s", "update/one_user/p50_ms"):
        assert figures[f"{prefix}/{name}"]["value"] > 0, name
    assert figures[f"{prefix}/recommend/refit_over_served_p50"]["gated"]
    assert context["n_users"] == 6 and context["encoder"] is None and notes
