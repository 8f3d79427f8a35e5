"""A fitted model that concurrent jobs, crashes and hand-edited files cannot corrupt.

One test (or a few) per cause found when a model directory was served while batch jobs updated
it: ``--out`` onto a file, concurrent updates, readers during updates, the rating scale of
updates, id types in updates, paths in ``model.json``, the schema deciding what a model holds;
then the weaker spots (leftovers of killed writers, options ignored with a fitted model, small
data, a full disk, NaN profiles, deep JSON, the umask). Concurrency is tested with real processes
in bounded loops of a few seconds.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

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
from tastemap.runtime.pipeline import model_io, model_lock
from tastemap.runtime.pipeline.model import TastemapModel

runner = CliRunner()
CLI = [sys.executable, "-c", "from tastemap.cli import main; main()"]
LATER = 1_800_000_000


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small model (20 users, 120 items, integer ids, leave-last-out holdout) in a directory."""
    events, catalog, vectors, _ = make_planted(20)
    data, _ = align_events(events, catalog)
    model = TastemapModel.fit(data, catalog, vectors, recommender=make_recommender(), holdout="leave-last-out")
    return model.save(tmp_path_factory.mktemp("base") / "model")


@pytest.fixture
def model_dir(base, tmp_path):
    """A copy of the small model that a test may change."""
    return shutil.copytree(base, tmp_path / "model")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Events with 1-5 ratings, a catalog and item vectors as files, for `tastemap fit`."""
    folder = tmp_path_factory.mktemp("files")
    events, catalog, vectors, _ = make_planted(12)
    events = events.assign(rating=np.random.default_rng(0).integers(1, 6, len(events))).drop(columns="weight")
    events.to_csv(folder / "events.csv", index=False)
    catalog.assign(categories=[" > ".join(paths[0]) if paths else "" for paths in catalog["categories"]],
                   tags="").to_csv(folder / "catalog.csv", index=False)
    np.save(folder / "vectors.npy", vectors)
    return folder


def current(path):
    return model_io.version_root(path, model_io.current_number(path))


def manifest_of(path) -> dict:
    return json.loads((current(path) / "model.json").read_text())


def edit_manifest(path, change) -> None:
    """Apply ``change(manifest)`` to the current version's model.json in place (a hand edit)."""
    manifest = manifest_of(path)
    change(manifest)
    (current(path) / "model.json").write_text(json.dumps(manifest))


def fit_args(files, out, *extra):
    return ["fit", str(files / "events.csv"), str(files / "catalog.csv"), "--vectors", str(files / "vectors.npy"),
            "--out", str(out), "--topics", "8", "--coarse-topics", "4", *extra]


def new_events(users, *, items=(3, 40), start=LATER) -> pd.DataFrame:
    rows = [(user, item, start + i * 10 + j) for i, user in enumerate(users) for j, item in enumerate(items)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).assign(weight=1.0)


def listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# 1. --out never replaces something that is not a model ----------------------------------------------

@pytest.mark.parametrize("target", ["afile", "input", "folder"])
def test_fit_out_never_replaces_a_file_or_a_folder_of_other_files(files, tmp_path, target):
    work = shutil.copytree(files, tmp_path / "work")
    out = {"afile": work / "afile", "input": work / "events.csv", "folder": work}[target]
    (work / "afile").write_text("keep me\n")
    before = {name: (work / name).read_bytes() for name in ("afile", "events.csv")}
    entries = listing(tmp_path)
    result = runner.invoke(app, fit_args(work, out))
    assert result.exit_code == 2, result.output
    assert "error: --out" in result.output and ("is an existing file" in result.output
                                                or "is a folder of other files" in result.output)
    assert {name: (work / name).read_bytes() for name in before} == before
    assert listing(tmp_path) == entries  # nothing renamed aside, nothing created


def test_update_out_never_replaces_a_file(model_dir, tmp_path):
    new_events([3]).to_csv(tmp_path / "new.csv", index=False)
    (tmp_path / "afile").write_text("keep me\n")
    version = model_io.current_number(model_dir)
    result = runner.invoke(app, ["update", str(model_dir), str(tmp_path / "new.csv"), "--out", str(tmp_path / "afile")])
    assert result.exit_code == 2 and "--out" in result.output and "is an existing file" in result.output
    assert (tmp_path / "afile").read_text() == "keep me\n" and model_io.current_number(model_dir) == version
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".afile")]


# 2. one writer at a time: concurrent updates all land, or are refused, never lost ------------------

def test_concurrent_update_commands_all_land(model_dir, tmp_path):
    before = TastemapModel.load(model_dir).events.n_events
    commands = []
    for k in range(3):
        new_events([5000 + k, 6000 + k]).to_csv(tmp_path / f"new{k}.csv", index=False)
        commands.append([*CLI, "update", str(model_dir), str(tmp_path / f"new{k}.csv")])
    done = [p.communicate(timeout=120) + (p.returncode,) for p in [subprocess.Popen(
        c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]]
    assert [code for _, _, code in done] == [0, 0, 0], [err[-500:] for _, err, _ in done]
    model = TastemapModel.load(model_dir)
    assert model.events.n_events == before + 3 * 4  # every run's events are there
    assert {5000, 5001, 5002, 6000, 6001, 6002} <= set(model.user_ids.tolist())
    assert model_io.current_number(model_dir) == 4


HOLDER = """
import sys, time
from tastemap.runtime.pipeline.model_lock import writer_lock

with writer_lock(sys.argv[1], wait=0):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_lock(path, seconds: float) -> subprocess.Popen:
    """Another process holding the writer lock of ``path`` for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_waits_or_stops_with_a_message(model_dir, tmp_path):
    new_events([5000]).to_csv(tmp_path / "new.csv", index=False)
    command = ["update", str(model_dir), str(tmp_path / "new.csv")]
    holder = hold_lock(model_dir, 30)
    result = runner.invoke(app, [*command, "--wait", "0"])
    holder.kill()
    holder.wait(timeout=30)
    assert result.exit_code == 2, result.output
    assert re.search(r"is being written by another tastemap job \(process \d+\); waited 0 s", result.output)
    assert model_io.current_number(model_dir) == 1
    holder = hold_lock(model_dir, 1.5)
    started = time.perf_counter()
    result = runner.invoke(app, [*command, "--wait", "60"])  # waits for the other process, then lands
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started > 0.5 and holder.wait(timeout=30) == 0
    assert 5000 in TastemapModel.load(model_dir).user_ids


def test_saving_over_another_writers_version_is_refused(model_dir):
    first, second = TastemapModel.load(model_dir), TastemapModel.load(model_dir)
    first.update(new_events([5000]))
    first.save()
    second.update(new_events([6000]))
    with pytest.raises(FittedModelError, match=r"changed by another writer since this model was read from it "
                                               r"\(version 2 is current, this model holds version 1\)"):
        second.save()
    assert 5000 in TastemapModel.load(model_dir).user_ids  # the first writer's update is kept
    with TastemapModel.locked(model_dir) as third:  # the lock from the load to the save: both land
        third.update(new_events([6000]))
        third.save()
    users = set(TastemapModel.load(model_dir).user_ids.tolist())
    assert {5000, 6000} <= users


# 3. readers see one whole version while updates run ------------------------------------------------

def test_readers_see_whole_versions_while_updates_run():
    from tastemap.bench.concurrency import ConcurrencyConfig, run_concurrency

    result = run_concurrency(ConcurrencyConfig(seconds=4, readers=3, writers=2, data="synthetic"))
    assert result["failed_reads"] == 0, result["read_errors"]
    assert result["failed_updates"] == 0, result["update_errors"]
    assert result["reads"] >= 3 and result["updates"] >= 1  # (a loaded machine may finish a single update)
    assert result["lost_events"] == 0 and result["event_count_matches"]
    assert result["events_added"] == result["events_sent"]


def test_a_loaded_model_keeps_its_version_while_writers_publish(model_dir):
    reader = TastemapModel.load(model_dir)
    expected = reader.recommend_batch(k=5)
    for user in (5000, 5001, 5002):
        with TastemapModel.locked(model_dir) as writer:
            writer.update(new_events([user]))
            writer.save()
    assert model_io.version_numbers(model_dir) == [1, 3, 4]  # version 1 pinned by the reader, 2 removed
    assert reader.events.n_events > 0 and reader.holdout is not None  # still readable, lazily
    pd.testing.assert_frame_equal(reader.recommend_batch(k=5), expected)
    reader._source.pin.close()
    with TastemapModel.locked(model_dir) as writer:
        writer.update(new_events([5003]))
        writer.save()
    assert model_io.version_numbers(model_dir) == [4, 5]  # unpinned: removed by the next writer


def test_readers_never_repair_or_rename(model_dir, tmp_path):
    (model_dir / "current").write_text("00000009\n")  # a pointer to a version that is not there
    entries = listing(tmp_path)
    with pytest.raises(FittedModelError, match="current version 00000009 has no model.json"):
        TastemapModel.load(model_dir)
    (model_dir / "current").write_text("../../etc\n")
    with pytest.raises(FittedModelError, match=r"current holds '../../etc'; it should name a version"):
        TastemapModel.load(model_dir)
    assert listing(tmp_path) == entries


# 4. the rating scale of the fit is used by every update --------------------------------------------

def test_update_uses_the_rating_scale_recorded_at_fit(files, tmp_path):
    out = tmp_path / "rated"
    assert runner.invoke(app, fit_args(files, out)).exit_code == 0
    assert manifest_of(out)["data"]["rating_scale"] == 5.0
    pd.DataFrame({"user_id": ["3"], "item_id": ["7"], "timestamp": [LATER], "rating": [1]}).to_csv(
        tmp_path / "new.csv", index=False)
    result = runner.invoke(app, ["update", str(out), str(tmp_path / "new.csv")])
    assert result.exit_code == 0, result.output
    events = TastemapModel.load(out).events
    assert events.weights[-1] == pytest.approx(0.2)  # 1 / 5, not 1 / the file's own largest rating
    result = runner.invoke(app, ["update", str(out), str(tmp_path / "new.csv"), "--rating-scale", "10"])
    assert result.exit_code == 2 and "differs from the scale recorded at fit (5)" in result.output


def test_ratings_given_to_a_model_without_a_scale_are_refused(model_dir, tmp_path):
    assert manifest_of(model_dir)["data"]["rating_scale"] is None
    frame = new_events([3]).drop(columns="weight").assign(rating=4)
    with pytest.raises(InputError, match="the model records no rating scale"):
        TastemapModel.load(model_dir).update(frame)
    frame.to_csv(tmp_path / "new.csv", index=False)
    result = runner.invoke(app, ["update", str(model_dir), str(tmp_path / "new.csv")])
    assert result.exit_code == 2 and "records no rating scale" in result.output
    result = runner.invoke(app, ["update", str(model_dir), str(tmp_path / "new.csv"), "--rating-scale", "5"])
    assert result.exit_code == 0, result.output
    assert TastemapModel.load(model_dir).events.weights[-1] == pytest.approx(0.8)


# 5. ids keep their type rules in update ------------------------------------------------------------

@pytest.mark.parametrize("column, value", [("user_id", "7.5"), ("item_id", "1.9"), ("user_id", "007")])
def test_update_refuses_float_looking_ids_on_an_integer_model(model_dir, tmp_path, column, value):
    frame = new_events([3, 7]).astype({column: object})
    frame.loc[1, column] = value
    frame.to_csv(tmp_path / "new.csv", index=False)
    result = runner.invoke(app, ["update", str(model_dir), str(tmp_path / "new.csv")])
    what = column.split("_")[0]
    assert result.exit_code == 2 and f"new {what} ids such as '{value}' are not integers" in result.output
    assert model_io.current_number(model_dir) == 1
    with pytest.raises(InputError, match="are not integers"):
        TastemapModel.load(model_dir).update(frame)


def test_update_drops_new_users_whose_events_all_weigh_zero(model_dir):
    model = TastemapModel.load(model_dir)
    frame = pd.concat([new_events([5000]).assign(weight=0.0), new_events([5001])], ignore_index=True)
    summary = model.update(frame)
    assert 5000 not in model.user_ids and 5001 in model.user_ids
    assert summary.n_new_users == 1 and summary.n_events_added == 2


# 6. every path in model.json stays inside the directory --------------------------------------------

@pytest.mark.parametrize("bad", ["../outside.parquet", "/etc/passwd", "events/../../outside.parquet", "./events"])
def test_event_parts_outside_the_directory_are_refused(model_dir, tmp_path, bad):
    outside = tmp_path / "outside.parquet"
    new_events([1, 2]).to_parquet(outside, index=False)

    def point_outside(manifest):
        manifest["event_parts"] = [bad]
    edit_manifest(model_dir, point_outside)
    with pytest.raises(FittedModelError, match="is not a relative path inside the model directory"):
        TastemapModel.load(model_dir)
    new_events([3]).to_csv(tmp_path / "new.csv", index=False)
    result = runner.invoke(app, ["update", str(model_dir), str(tmp_path / "new.csv")])
    assert result.exit_code == 2 and "not a relative path inside the model directory" in result.output


def test_an_event_part_must_be_a_listed_file(model_dir):
    def add_part(manifest):
        manifest["event_parts"].append("events/part-00009.parquet")
    edit_manifest(model_dir, add_part)
    with pytest.raises(FittedModelError, match="event part 'events/part-00009.parquet' is not among the files"):
        TastemapModel.load(model_dir)


# 7. the schema, not model.json's own list, says what a model holds ---------------------------------

def collaborative_files(path) -> list[str]:
    return [name for name in manifest_of(path)["files"]
            if name == "ease_weights.npy" or name.startswith("collaborative")]


def test_a_model_without_its_file_list_is_refused(model_dir):
    edit_manifest(model_dir, lambda manifest: manifest.pop("files"))
    with pytest.raises(FittedModelError, match="has no 'files' object"):
        TastemapModel.load(model_dir)


def test_a_required_file_removed_with_its_entry_is_refused(model_dir):
    names = collaborative_files(model_dir)
    assert names

    def drop(manifest):
        for name in names:
            manifest["files"].pop(name)
    edit_manifest(model_dir, drop)
    for name in names:
        (current(model_dir) / name).unlink()
    with pytest.raises(FittedModelError, match=r"does not list \[.*\], which the schema requires of this model"):
        TastemapModel.load(model_dir)
    result = runner.invoke(app, ["recommend", "--model", str(model_dir), "--user", "3"])
    assert result.exit_code == 2 and "which the schema requires" in result.output


def test_an_altered_array_with_its_entry_removed_is_refused(model_dir):
    vectors = current(model_dir) / "item_vectors.npy"
    np.save(vectors, np.ones((120, 16), np.float32))
    edit_manifest(model_dir, lambda manifest: manifest["files"].pop("item_vectors.npy"))
    with pytest.raises(FittedModelError, match=r"does not list \['item_vectors.npy'\]"):
        TastemapModel.load(model_dir, verify=False)


def test_files_the_schema_does_not_know_are_refused(model_dir):
    root = current(model_dir)
    (root / "extra.npy").write_bytes(b"x")
    with pytest.raises(FittedModelError, match=r"does not list the file on disk \['extra.npy'\]"):
        TastemapModel.load(model_dir)
    (root / "extra.npy").unlink()

    def list_extra(manifest):
        manifest["files"]["state/extra.npy"] = {"sha256": "0" * 64, "bytes": 1}
    edit_manifest(model_dir, list_extra)
    with pytest.raises(FittedModelError, match=r"lists \['state/extra.npy'\], which the schema does not know"):
        TastemapModel.load(model_dir)


def test_a_symbolic_link_inside_a_version_is_refused(model_dir, tmp_path):
    target = current(model_dir) / "topic_tree.json"
    shutil.move(target, tmp_path / "tree.json")
    target.symlink_to(tmp_path / "tree.json")
    with pytest.raises(FittedModelError, match="is a symbolic link"):
        TastemapModel.load(model_dir)


def test_a_model_saved_without_the_sums_of_its_ease_factors_sums_them_and_serves_the_same(model_dir):
    fitted = TastemapModel.load(model_dir)
    users = fitted.user_ids[:5]
    expected = [fitted.recommend(user, k=5) for user in users]
    sums = ("collaborative.right_total.npy", "collaborative.right_gram.npy")

    def as_before(manifest):
        del manifest["fitted"]["collaborative"]["sums"]
        for name in sums:
            manifest["files"].pop(name)
    edit_manifest(model_dir, as_before)
    for name in sums:
        (current(model_dir) / name).unlink()
    older = TastemapModel.load(model_dir)
    assert older.recommender.collaborative_.right_gram is None
    for user, recommendations in zip(users, expected):
        got = older.recommend(user, k=5)
        assert [r.item_id for r in got] == [r.item_id for r in recommendations]
        np.testing.assert_allclose([r.score for r in got], [r.score for r in recommendations], rtol=1e-9)


def test_a_model_saved_without_its_phrase_table_scans_the_texts_and_explains_the_same(model_dir):
    fitted = TastemapModel.load(model_dir)
    users = fitted.user_ids[:5]
    expected = [[r.explanation for r in fitted.recommend(user, k=5)] for user in users]

    def as_before(manifest):
        del manifest["shapes"]["item_phrases"]
        for part in ("indptr", "indices", "data", "keys"):
            manifest["files"].pop(f"item_phrases.{part}.npy")
    edit_manifest(model_dir, as_before)
    for part in ("indptr", "indices", "data", "keys"):
        (current(model_dir) / f"item_phrases.{part}.npy").unlink()
    older = TastemapModel.load(model_dir)
    assert "_saved_phrases" not in older.recommender.profiler_.__dict__
    assert [[r.explanation for r in older.recommend(user, k=5)] for user in users] == expected


def test_a_directory_of_the_earlier_schema_asks_for_a_new_fit(model_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(current(model_dir), old)
    manifest = json.loads((old / "model.json").read_text())
    (old / "model.json").write_text(json.dumps({**manifest, "schema_version": 2}))
    assert model_io.is_fitted_model(old)
    with pytest.raises(FittedModelError, match="schema_version=2; this tastemap reads schema_version=3: fit the model"):
        TastemapModel.load(old)


# crashes: a killed writer blocks nobody, and the next writer removes its leftovers -----------------

KILLED_WRITER = """
import sys, time
import pandas as pd
from tastemap.runtime.pipeline import model_io
from tastemap.runtime.pipeline.model import TastemapModel

real, calls = model_io.sha256_file, []

def stall(path):
    calls.append(path)
    if len(calls) == 4:
        print("writing", flush=True)
        time.sleep(120)
    return real(path)

model_io.sha256_file = stall
with TastemapModel.locked(sys.argv[1], verify=False) as model:
    model.update(pd.DataFrame({"user_id": [7000], "item_id": [3], "timestamp": [1800000000], "weight": [1.0]}))
    model.save()
"""


def test_a_killed_writer_leaves_nothing_that_lasts(model_dir):
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(model_dir)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    assert [p.name for p in (model_dir / "versions").iterdir() if p.name.startswith(".tmp-")]
    assert TastemapModel.load(model_dir).n_users == 20  # readers see the version before the crash
    (model_dir.parent / ".model.tmp-abcd1234").mkdir()  # leftovers of the earlier layout, beside it
    (model_dir.parent / ".model.old-0123abcd").mkdir()
    (model_dir / ".current.tmp-0123456789ab").write_text("00000007\n")
    with TastemapModel.locked(model_dir, wait=10) as model:  # the killed writer's lock died with it
        model.update(new_events([5000]))
        model.save()
    assert sorted(p.name for p in (model_dir / "versions").iterdir()) == ["00000001", "00000002"]
    assert sorted(p.name for p in model_dir.iterdir()) == ["current", "versions", "writer.lock", "writer.queue"]
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["model"]


def fresh_model() -> TastemapModel:
    """A small fitted model, never saved (every file is written on save, none is linked)."""
    events, catalog, vectors, _ = make_planted(6)
    data, _ = align_events(events, catalog)
    return TastemapModel.fit(data, catalog, vectors, recommender=make_recommender())


def test_a_failed_first_write_leaves_no_folder(tmp_path, monkeypatch):
    model = fresh_model()

    def full(*args, **kwargs):
        raise OSError("14400 requested and 10208 written")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(InputError, match="cannot write the model directory .*: No space left on device; free some"):
        model.save(tmp_path / "new")
    assert not (tmp_path / "new").exists()


# every option works with a fitted model or is refused ----------------------------------------------

def test_options_a_fitted_model_cannot_honour_are_refused(model_dir):
    path = str(model_dir)
    cases = [
        (["evaluate", "--model", path, "--protocol", "temporal"],
         "--protocol temporal: the model .* holds the held-out split of leave-last-out"),
        (["evaluate", "--model", path, "--protocol", "both"], "--protocol both"),
        (["evaluate", "--model", path, "--event-columns", "user_id=u"], "--event-columns cannot be combined"),
        (["segment", path, "--k", "3"], "--k cannot be combined with it"),
        (["segment", path, "--method", "gmm"], "--method cannot be combined with it"),
        (["recommend", "--model", path, "--user", "3", "--topics", "7"], "--topics cannot be combined with it"),
        (["recommend", "--model", path, "--user", "3", "--event-columns", "user_id=u"],
         "--event-columns cannot be combined"),
    ]
    for argv, message in cases:
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert re.search(message, result.output.replace("\n", " ")), (argv, result.output)
    result = runner.invoke(app, ["evaluate", "--model", path, "--protocol", "leave-last-out"])
    assert result.exit_code == 0, result.output  # the recorded protocol, asked for explicitly


def test_fit_takes_the_number_of_segments_for_a_few_users(files, tmp_path):
    events = pd.read_csv(files / "events.csv")
    events[events["user_id"] < 4].to_csv(tmp_path / "few.csv", index=False)
    argv = fit_args(files, tmp_path / "few-model")
    argv[1] = str(tmp_path / "few.csv")
    result = runner.invoke(app, argv)
    assert result.exit_code == 2 and "--n-segments=K" in result.output, result.output
    assert not (tmp_path / "few-model").exists()
    result = runner.invoke(app, [*argv, "--n-segments", "2"])
    assert result.exit_code == 0, result.output
    assert TastemapModel.load(tmp_path / "few-model").segmenter.n_segments_ == 2


# environment and input errors are `error:` lines, exit 2 -------------------------------------------

@pytest.mark.parametrize("failure", ["numpy", "arrow"])
def test_a_full_disk_is_an_error_line(files, tmp_path, monkeypatch, failure):
    if failure == "numpy":
        def full(*args, **kwargs):
            raise OSError("14400 requested and 10208 written")  # numpy's short write on a full disk
        monkeypatch.setattr(np, "save", full)
    else:
        real = pq.write_table

        def full(table, where, *args, **kwargs):  # Arrow's error on a full disk, for the model's folder only
            if str(tmp_path / "m") in str(where):
                raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
            return real(table, where, *args, **kwargs)
        monkeypatch.setattr(pq, "write_table", full)
    result = runner.invoke(app, fit_args(files, tmp_path / "m"))
    assert result.exit_code == 2, result.output
    assert "error: cannot write the model directory" in result.output and "No space left on device" in result.output
    assert "unexpected" not in result.output and not (tmp_path / "m").exists()


def test_nan_profiles_are_an_error_line(base, tmp_path):
    table = pq.read_table(current(base) / "profiles.parquet")
    rows = table.to_pylist()
    for entry in rows[0]["topics"]:
        entry["weight"] = float("nan")
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), tmp_path / "profiles.parquet")
    result = runner.invoke(app, ["segment", str(tmp_path / "profiles.parquet"), "--out", str(tmp_path / "seg"),
                                 "--k", "2"])
    assert result.exit_code == 2, result.output
    assert "error: the profiles of 1 users hold NaN or infinite weights" in result.output
    assert "unexpected" not in result.output


def test_a_deeply_nested_json_in_bench_compare_is_an_error_line(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000)
    result = runner.invoke(app, ["bench", "compare", str(tmp_path / "deep.json"), str(tmp_path / "deep.json")])
    assert result.exit_code == 2 and "nests its JSON too deeply" in result.output, result.output


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_model_directories_follow_the_umask(tmp_path, umask):
    model = fresh_model()
    previous = os.umask(umask)
    try:
        path = model.save(tmp_path / "m")
    finally:
        os.umask(previous)
    folder_mode, file_mode = 0o777 & ~umask, 0o666 & ~umask
    root = current(path)
    for folder in (path, path / "versions", root, root / "state", root / "events"):
        assert stat.S_IMODE(folder.stat().st_mode) == folder_mode, folder
    for file in (path / "current", root / "model.json", root / "items.parquet", root / "state" / "vectors.npy"):
        assert stat.S_IMODE(file.stat().st_mode) == file_mode, file


def test_the_writer_lock_is_reentrant_within_a_thread_only(model_dir):
    results = []
    with model_lock.writer_lock(model_dir, wait=0):
        with model_lock.writer_lock(model_dir, wait=0):  # the same thread: re-entered
            pass
        thread = threading.Thread(target=lambda: results.append(_try_lock(model_dir)))
        thread.start()
        thread.join()
    assert results == ["refused"]
    assert _try_lock(model_dir) == "held"


def _try_lock(path) -> str:
    try:
        with model_lock.writer_lock(path, wait=0):
            return "held"
    except FittedModelError:
        return "refused"
