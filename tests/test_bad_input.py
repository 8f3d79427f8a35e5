"""Bad input never gives a wrong answer, a traceback or half an output.

Every command runs on a table of bad inputs: each case checks the exit code, the first line of the
message (``error: ...``) and that the folder it writes into holds nothing new. Cases that must
give the right answer check it. Property-based tests (Hypothesis) cover the table reader, ids,
timestamps and parameters; two ``tastemap embed`` processes race for one output.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tastemap.cli import app
from tastemap.errors import InputError
from tastemap.runtime.io.events import (
    EARLIEST,
    LATEST,
    CatalogColumns,
    EventColumns,
    check_template,
    validate_catalog,
    validate_events,
)
from tastemap.runtime.io.synthetic import make_synthetic
from tastemap.runtime.io.tables import MISSING_MARKERS, normalize_ids, read_table

runner = CliRunner()
PROFILE_OPTIONS = ["--topics", "4", "--coarse-topics", "2", "--backend", "sklearn"]
PROPERTIES = settings(max_examples=60, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- data ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A good data set: events.csv (30 users), catalog.csv (60 items, ids with leading zeros),
    vectors.npy (catalog order), profiles/ (from `tastemap profile`)."""
    folder = tmp_path_factory.mktemp("bad-input-data")
    synth = make_synthetic(n_users=30, n_items=60, n_events=600, n_topics=3, dim=8, noise=0.3, seed=1)
    item = {i: f"{i:03d}" for i in synth.catalog["item_id"]}
    catalog = synth.catalog.assign(item_id=synth.catalog["item_id"].map(item),
                                   categories=[" > ".join(paths[0]) for paths in synth.catalog["categories"]],
                                   tags="")
    catalog[["item_id", "title", "categories", "tags"]].to_csv(folder / "catalog.csv", index=False)
    events = synth.events.assign(user_id=[f"u{u:02d}" for u in synth.events["user_id"]],
                                 item_id=synth.events["item_id"].map(item))
    events[["user_id", "item_id", "timestamp"]].to_csv(folder / "events.csv", index=False)
    np.save(folder / "vectors.npy", synth.item_vectors)
    result = invoke("profile", folder / "events.csv", folder / "catalog.csv", "--out", folder / "profiles",
                    "--vectors", folder / "vectors.npy", *PROFILE_OPTIONS)
    assert result.exit_code == 0, result.output
    return folder


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def events_frame(data: Path) -> pd.DataFrame:
    return pd.read_csv(data / "events.csv", dtype=str)


def catalog_frame(data: Path) -> pd.DataFrame:
    return pd.read_csv(data / "catalog.csv", dtype=str, keep_default_na=False)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def first_error(result) -> str:
    """The first line of the message: the first stderr line starting with ``error:``."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines, f"no error line; exit {result.exit_code}; output:\n{result.output}"
    return lines[0]


def check_refused(result, message: str, *, folder: Path, before: list[str], code: int = 2) -> None:
    """Exit ``code``, ``error: ...`` starting with ``message`` on one line, no traceback, and
    ``folder`` holds what it held before."""
    assert result.exit_code == code, result.output
    line = first_error(result)
    assert line.startswith("error: "), line
    assert message in line, f"{message!r} not in {line!r}"
    assert "Traceback" not in result.output
    assert listing(folder) == before, f"left behind: {sorted(set(listing(folder)) - set(before))}"


def profile_args(data: Path, events: Path, catalog: Path | None = None, *extra) -> list:
    return ["profile", events, catalog or data / "catalog.csv", "--vectors", data / "vectors.npy", *PROFILE_OPTIONS,
            *extra]


# --- the table of bad inputs -----------------------------------------------------------------


def _write(folder: Path, name: str, content) -> Path:
    path = folder / name
    if isinstance(content, pd.DataFrame):
        if name.endswith(".parquet"):
            content.to_parquet(path)
        else:
            content.to_csv(path, index=False)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _events_with(data, **columns) -> pd.DataFrame:
    return events_frame(data).assign(**columns)


def _bad_timestamp_row6(data):
    frame = events_frame(data)
    frame.loc[5, "timestamp"] = "soon"
    return frame


def _huge_timestamp(data):
    frame = events_frame(data)
    frame.loc[3, "timestamp"] = "1e20"
    return frame


def _broken_utf8(data) -> bytes:
    text = (data / "events.csv").read_bytes()
    lines = text.split(b"\n")
    lines[4] = lines[4].replace(b"u", b"\xff", 1)
    return b"\n".join(lines)


# (case, files to write: {name: builder(data)}, argv built from (data, tmp), expected message)
CASES = [
    ("ms timestamps read as seconds",
     {"e.csv": lambda d: _events_with(d, timestamp=events_frame(d)["timestamp"].astype("int64") * 1000)},
     lambda d, t: profile_args(d, t / "e.csv", None, "--out", t / "out"),
     "when read as seconds since the epoch (600 such rows); if the timestamps are milliseconds, pass "
     "timestamp_unit=ms (--event-columns timestamp_unit=ms)"),
    ("boolean timestamps", {"e.parquet": lambda d: _events_with(d, timestamp=True)},
     lambda d, t: profile_args(d, t / "e.parquet", None, "--out", t / "out"),
     "row 1, column 'timestamp': True is a boolean, not a timestamp"),
    ("timestamp 1e20", {"e.csv": _huge_timestamp},
     lambda d, t: profile_args(d, t / "e.csv", None, "--out", t / "out"),
     "row 4, column 'timestamp': timestamp '1e20' is far beyond any date"),
    ("bad timestamp in row 6", {"e.csv": _bad_timestamp_row6},
     lambda d, t: profile_args(d, t / "e.csv", None, "--out", t / "out"),
     "row 6, column 'timestamp': cannot parse timestamp 'soon' (1 such rows)"),
    ("extra field in the first row", {"e.csv": lambda d: "user_id,item_id,timestamp\nu1,001,1600000000,x\n"
                                                         "u1,002,1600000001\n"},
     lambda d, t: profile_args(d, t / "e.csv", None, "--out", t / "out"),
     "e.csv: line 2 (row 1) has 4 field(s); the header has 3"),
    ("short row", {"c.csv": lambda d: "item_id,title,categories\n001,a,x\n002,b\n"},
     lambda d, t: profile_args(d, d / "events.csv", t / "c.csv", "--out", t / "out"),
     "c.csv: line 3 (row 2) has 2 field(s); the header has 3"),
    ("all weights zero", {"e.csv": lambda d: _events_with(d, weight="0")},
     lambda d, t: profile_args(d, t / "e.csv", None, "--out", t / "out"),
     "every event weighs 0"),
    ("NaN weight", {"e.csv": lambda d: _events_with(d, weight=["nan"] + ["1"] * (len(events_frame(d)) - 1))},
     lambda d, t: profile_args(d, t / "e.csv", None, "--out", t / "out"),
     "row 1, column 'weight': value 'nan' is not a finite number >= 0"),
    ("--long-decay inf", {}, lambda d, t: profile_args(d, d / "events.csv", None, "--out", t / "out",
                                                       "--long-decay", "inf"),
     "--long-decay inf should be a finite number"),
    ("--threshold nan", {}, lambda d, t: profile_args(d, d / "events.csv", None, "--out", t / "out",
                                                      "--threshold", "nan"),
     "--threshold nan should be a finite number"),
    ("list-typed ids in Parquet", {"e.parquet": lambda d: pd.DataFrame({"user_id": [["a"], ["b"]],
                                                                         "item_id": ["001", "002"],
                                                                         "timestamp": [1_600_000_000] * 2})},
     lambda d, t: profile_args(d, t / "e.parquet", None, "--out", t / "out"),
     "row 1, column 'user_id': a list (['a']) is not an id"),
    ("missing-value marker as an id", {"e.csv": lambda d: _events_with(d, user_id=["NA"] + ["u1"] * (len(events_frame(d)) - 1))},
     lambda d, t: profile_args(d, t / "e.csv", None, "--out", t / "out"),
     "row 1, column 'user_id': the id 'NA' reads as a missing value"),
    ("unknown --event-columns key", {}, lambda d, t: profile_args(d, d / "events.csv", None, "--out", t / "out",
                                                                  "--event-columns", "foo=bar"),
     "--event-columns: unknown key(s) ['foo']"),
    ("unknown --catalog-columns key", {}, lambda d, t: profile_args(d, d / "events.csv", None, "--out", t / "out",
                                                                    "--catalog-columns", "genre=x"),
     "--catalog-columns: unknown key(s) ['genre']"),
    ("unbalanced --template", {}, lambda d, t: profile_args(d, d / "events.csv", None, "--out", t / "out",
                                                            "--template", "{title"),
     "text template '{title' is not valid: expected '}' before end of string"),
    ("string-typed .npy", {"v.npy": lambda d: None},
     lambda d, t: ["profile", d / "events.csv", d / "catalog.csv", "--vectors", t / "v.npy", "--out", t / "out"],
     "v.npy holds a <U1 array of shape (60, 4)"),
    ("broken UTF-8", {"e.csv": _broken_utf8},
     lambda d, t: profile_args(d, t / "e.csv", None, "--out", t / "out"),
     "e.csv is not valid UTF-8: byte 0xff at byte offset"),
    ("profile --out is a file", {"out": lambda d: "x"},
     lambda d, t: profile_args(d, d / "events.csv", None, "--out", t / "out"),
     "out is a file; give a folder"),
    ("missing recommend --vectors", {},
     lambda d, t: ["recommend", "--user", "u01", "--events", d / "events.csv", "--catalog", d / "catalog.csv",
                   "--vectors", t / "none.npy", *PROFILE_OPTIONS[:4]],
     "none.npy do not exist"),
    ("recommend: a missing column names --event-columns", {"e.csv": lambda d: events_frame(d).rename(columns={"user_id": "uid"})},
     lambda d, t: ["recommend", "--user", "u01", "--events", t / "e.csv", "--catalog", d / "catalog.csv",
                   "--vectors", d / "vectors.npy"],
     "missing column(s) ['user_id']; it has ['uid', 'item_id', 'timestamp']; rename them or pass the column names "
     "(EventColumns; --event-columns on the command line)"),
    ("recommend: a catalog under 50 items names --topics", {"c.csv": lambda d: catalog_frame(d).head(20),
                                                                        "v.npy": lambda d: None},
     lambda d, t: ["recommend", "--user", "u01", "--events", d / "events.csv", "--catalog", t / "c.csv",
                   "--vectors", t / "v20.npy"],
     "should be >= --topics=50"),
    ("recommend --all --out is a folder", {"out.parquet/x": lambda d: "x"},
     lambda d, t: ["recommend", "--all", "--out", t / "out.parquet", "--events", d / "events.csv",
                   "--catalog", d / "catalog.csv", "--vectors", d / "vectors.npy", *PROFILE_OPTIONS[:4]],
     "out.parquet is an existing folder"),
    ("segment --out is a file", {"out": lambda d: "x"},
     lambda d, t: ["segment", d / "profiles", "--out", t / "out", "--k", "3", "--backend", "sklearn"],
     "out is a file; give a folder"),
    ("bench compare on a folder", {"dir/x": lambda d: "x"},
     lambda d, t: ["bench", "compare", t / "dir", t / "dir"],
     "dir is a folder; give a result file"),
    ("bench compare on a deeply nested JSON", {"deep.json": lambda d: "[" * 100_000},
     lambda d, t: ["bench", "compare", t / "deep.json", t / "deep.json"],
     "deep.json nests its JSON too deeply"),
    ("fit --out is a file", {"afile": lambda d: "x"},
     lambda d, t: ["fit", d / "events.csv", d / "catalog.csv", "--vectors", d / "vectors.npy", "--out", t / "afile",
                   *PROFILE_OPTIONS[:4]],
     "afile is an existing file; a model directory never replaces a file"),
    ("fit --out is its own events file", {},
     lambda d, t: ["fit", d / "events.csv", d / "catalog.csv", "--vectors", d / "vectors.npy", "--out",
                   d / "events.csv", *PROFILE_OPTIONS[:4]],
     "events.csv is an existing file; a model directory never replaces a file"),
]


def _prepare(case_files: dict, data: Path, tmp_path: Path) -> None:
    for name, build in case_files.items():
        if name == "v.npy":
            np.save(tmp_path / "v.npy", np.array([["a"] * 4] * 60))
            np.save(tmp_path / "v20.npy", np.load(data / "vectors.npy")[:20])
            continue
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        _write(tmp_path, name, build(data))


@pytest.mark.parametrize("case, files, argv, message", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_cleanly(data, tmp_path, case, files, argv, message):
    _prepare(files, data, tmp_path)
    before = listing(tmp_path)
    data_before = listing(data)
    result = invoke(*argv(data, tmp_path))
    check_refused(result, message, folder=tmp_path, before=before)
    assert listing(data) == data_before


# --- right answers ---------------------------------------------------------------------------


def _profiles(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "profiles.parquet")


@pytest.mark.parametrize("kind", ["timestamp[us]", "timestamp[ns, UTC]", "milliseconds with timestamp_unit=ms"])
def test_timestamps_of_every_kind_give_the_same_profiles(data, tmp_path, kind):
    frame = events_frame(data)
    seconds = frame["timestamp"].astype("int64")
    if kind == "timestamp[us]":
        frame["timestamp"] = pd.to_datetime(seconds, unit="s").astype("datetime64[us]")
        path, extra = tmp_path / "e.parquet", []
        frame.to_parquet(path)
    elif kind == "timestamp[ns, UTC]":
        frame["timestamp"] = pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[ns, UTC]")
        path, extra = tmp_path / "e.parquet", []
        frame.to_parquet(path)
    else:
        frame["timestamp"] = seconds * 1000 + 999
        path, extra = tmp_path / "e.csv", ["--event-columns", "timestamp_unit=ms"]
        frame.to_csv(path, index=False)
    result = invoke(*profile_args(data, path, None, "--out", tmp_path / "out", *extra))
    assert result.exit_code == 0, result.output
    got, expected = _profiles(tmp_path / "out"), _profiles(data / "profiles")
    assert got["last_seen"].tolist() == expected["last_seen"].tolist()
    assert got["last_seen"].max() == seconds.max()


def test_ids_are_strings_in_every_command(data, tmp_path, tiny_package):
    """'0007' and '7' are two items and two users in profile, recommend and embed alike."""
    catalog = catalog_frame(data)[["item_id", "title"]]
    catalog.loc[:3, "item_id"] = ["0007", "7", "00008", "8"]
    catalog.to_csv(tmp_path / "c.csv", index=False)
    events = events_frame(data)
    events.loc[:3, "item_id"] = ["0007", "7", "00008", "8"]
    events.loc[:3, "user_id"] = ["001", "1", "001", "1"]
    events.to_csv(tmp_path / "e.csv", index=False)
    vectors = np.load(data / "vectors.npy")
    np.save(tmp_path / "v.npy", vectors)
    result = invoke(*profile_args(data, tmp_path / "e.csv", tmp_path / "c.csv", "--out", tmp_path / "p",
                                  "--vectors", tmp_path / "v.npy"))
    assert result.exit_code == 0, result.output
    users = _profiles(tmp_path / "p")["user_id"].tolist()
    assert {"001", "1"} <= set(users) and len(users) == 32
    result = invoke("recommend", "--user", "001", "--events", tmp_path / "e.csv", "--catalog", tmp_path / "c.csv",
                    "--vectors", tmp_path / "v.npy", *PROFILE_OPTIONS[:4], "--k", "3")
    assert result.exit_code == 0, result.output
    result = invoke("embed", tmp_path / "c.csv", "--text-col", "title", "--id-col", "item_id", "--out",
                    tmp_path / "emb.npy", "--model", tiny_package, "--variant", "fp32", "--device", "cpu")
    assert result.exit_code == 0, result.output
    ids = pd.read_parquet(tmp_path / "emb.ids.parquet")["id"].tolist()
    assert ids == catalog["item_id"].tolist() and ids[:4] == ["0007", "7", "00008", "8"]


def test_catalog_with_only_id_and_title(data, tmp_path):
    catalog_frame(data)[["item_id", "title"]].to_csv(tmp_path / "c.csv", index=False)
    result = invoke(*profile_args(data, data / "events.csv", tmp_path / "c.csv", "--out", tmp_path / "p"))
    assert result.exit_code == 0, result.output
    assert _profiles(tmp_path / "p")["categories"].map(len).sum() == 0


def test_small_catalog_with_topics(data, tmp_path):
    catalog_frame(data).head(20).to_csv(tmp_path / "c.csv", index=False)
    np.save(tmp_path / "v.npy", np.load(data / "vectors.npy")[:20])
    result = invoke("recommend", "--user", "u01", "--events", data / "events.csv", "--catalog", tmp_path / "c.csv",
                    "--vectors", tmp_path / "v.npy", "--topics", "4", "--coarse-topics", "2", "--k", "3")
    assert result.exit_code == 0, result.output


def test_markup_in_titles_and_categories_is_printed_as_written(data, tmp_path):
    catalog = catalog_frame(data)
    catalog["title"] = "[bold red]" + catalog["title"] + " [/b]"
    catalog["categories"] = catalog["categories"].str.replace(" > ", " [/b] > ", regex=False)
    catalog.to_csv(tmp_path / "c.csv", index=False)
    result = invoke("recommend", "--user", "u01", "--events", data / "events.csv", "--catalog", tmp_path / "c.csv",
                    "--vectors", data / "vectors.npy", *PROFILE_OPTIONS[:4], "--k", "3")
    assert result.exit_code == 0, result.output
    assert "[bold red]" in result.stdout and "[/b]" in result.stdout
    result = invoke(*profile_args(data, data / "events.csv", tmp_path / "c.csv", "--out", tmp_path / "p"))
    assert result.exit_code == 0, result.output
    result = invoke("segment", tmp_path / "p", "--out", tmp_path / "s", "--k", "3", "--features", "topics+categories",
                    "--backend", "sklearn")
    assert result.exit_code == 0, result.output
    assert "[/b]" in result.stdout


# --- outputs: exclusive, atomic, nothing left behind -----------------------------------------


def _fail_writes(monkeypatch, folder: Path, code: int) -> None:
    """Make creating files under ``folder`` fail with ``code`` (a read-only folder: EROFS)."""
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if str(path).startswith(str(folder)) and flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)


@pytest.mark.parametrize("command", ["embed", "profile", "segment", "recommend"])
def test_read_only_folder(data, tmp_path, tiny_package, monkeypatch, command):
    out = tmp_path / "ro"
    out.mkdir()
    argv = {
        "embed": ["embed", data / "catalog.csv", "--text-col", "title", "--out", out / "e.npy", "--model", tiny_package],
        "profile": profile_args(data, data / "events.csv", None, "--out", out / "p"),
        "segment": ["segment", data / "profiles", "--out", out / "s", "--k", "3", "--backend", "sklearn"],
        "recommend": ["recommend", "--all", "--out", out / "r.parquet", "--events", data / "events.csv",
                      "--catalog", data / "catalog.csv", "--vectors", data / "vectors.npy", *PROFILE_OPTIONS[:4]],
    }[command]
    _fail_writes(monkeypatch, out, errno.EROFS)
    before = listing(tmp_path)
    result = invoke(*argv)
    check_refused(result, "Read-only file system; the file system is read-only", folder=tmp_path, before=before)


@pytest.mark.parametrize("command", ["embed", "profile", "segment", "recommend", "fit"])
def test_full_disk(data, tmp_path, tiny_package, monkeypatch, command):
    import pyarrow.parquet as pq

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    monkeypatch.setattr(pq, "write_table", full)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    argv = {
        "embed": ["embed", data / "catalog.csv", "--text-col", "title", "--id-col", "item_id", "--out",
                  tmp_path / "e.npy", "--model", tiny_package],
        "profile": profile_args(data, data / "events.csv", None, "--out", tmp_path / "p"),
        "segment": ["segment", data / "profiles", "--out", tmp_path / "s", "--k", "3", "--backend", "sklearn"],
        "recommend": ["recommend", "--all", "--out", tmp_path / "r.parquet", "--events", data / "events.csv",
                      "--catalog", data / "catalog.csv", "--vectors", data / "vectors.npy", *PROFILE_OPTIONS[:4]],
        "fit": ["fit", data / "events.csv", data / "catalog.csv", "--vectors", data / "vectors.npy", "--out",
                tmp_path / "m", *PROFILE_OPTIONS[:4]],
    }[command]
    if command == "embed" and not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate on this platform")
    if command == "recommend":  # only the writing is under test here
        from tastemap.runtime.recommend.recommender import TastemapRecommender

        monkeypatch.setattr(TastemapRecommender, "recommend_batch",
                            lambda self, k: pd.DataFrame({"user_id": ["u01"], "rank": [1], "item_id": ["001"]}))
    before = listing(tmp_path)
    result = invoke(*argv)
    check_refused(result, "No space left on device; free some space or write elsewhere", folder=tmp_path, before=before)


def test_embed_output_that_is_a_folder_leaves_no_ids(data, tmp_path, tiny_package):
    (tmp_path / "e.npy").mkdir()
    before = listing(tmp_path)
    result = invoke("embed", data / "catalog.csv", "--text-col", "title", "--out", tmp_path / "e.npy",
                    "--model", tiny_package)
    check_refused(result, "--out " + str(tmp_path / "e.npy") + " is an existing folder", folder=tmp_path, before=before)


def test_embed_empty_id_and_malformed_rows(tmp_path, tiny_package):
    (tmp_path / "a.csv").write_text("item_id,title\n1,a\n,b\n")
    (tmp_path / "b.csv").write_text("item_id,title\n1,a,extra\n2,b\n")
    before = listing(tmp_path)
    for name, message in (("a.csv", "a.csv: row 2, column 'item_id': empty id; every row needs an id"),
                          ("b.csv", "b.csv: line 2 (row 1) has 3 field(s); the header has 2")):
        result = invoke("embed", tmp_path / name, "--text-col", "title", "--id-col", "item_id", "--out",
                        tmp_path / "e.npy", "--model", tiny_package)
        check_refused(result, message, folder=tmp_path, before=before)


def test_embed_names_the_option_not_the_parameter(data, tmp_path, tiny_package):
    before = listing(tmp_path)
    result = invoke("embed", data / "catalog.csv", "--text-col", "title", "--out", tmp_path / "e.npy",
                    "--model", tiny_package, "--batch-tokens", "0")
    check_refused(result, "error: --batch-tokens=0 should be an integer >= 1", folder=tmp_path, before=before)


def test_failed_embed_leaves_no_working_folder_and_interrupted_one_says_how_to_resume(
        data, tmp_path, tiny_package, monkeypatch):
    from tastemap.runtime.encode.encoder import Encoder

    real = Encoder.encode
    argv = ["embed", data / "catalog.csv", "--text-col", "title", "--out", tmp_path / "e.npy", "--model", tiny_package,
            "--chunk-rows", "10"]

    def broken(self, texts):
        raise RuntimeError("boom")

    monkeypatch.setattr(Encoder, "encode", broken)
    result = invoke(*argv)
    check_refused(result, "error: unexpected RuntimeError: boom (this is a bug of tastemap", folder=tmp_path,
                  before=[], code=1)

    calls = []

    def interrupted(self, texts):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, texts)

    monkeypatch.setattr(Encoder, "encode", interrupted)
    result = invoke(*argv)
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.stderr
    assert listing(tmp_path) == [".e.npy.partial", ".e.npy.partial/embeddings.npy", ".e.npy.partial/ids.parquet",
                                 ".e.npy.partial/state.json"]
    monkeypatch.setattr(Encoder, "encode", real)
    result = invoke(*argv)
    assert result.exit_code == 0, result.output
    assert "resumed rows" in result.stdout and listing(tmp_path) == ["e.ids.parquet", "e.npy"]


@pytest.mark.parametrize("existing", [False, True])
def test_failed_profile_leaves_no_cache(data, tmp_path, tiny_package, monkeypatch, existing):
    """The embedding cache (OUT/.cache by default) goes with a failed run; a folder that was
    there before stays as it was."""
    import pyarrow.parquet as pq

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if existing:
        (tmp_path / "p").mkdir()
        (tmp_path / "p" / "notes.txt").write_text("mine")
    monkeypatch.setattr(pq, "write_table", full)
    before = listing(tmp_path)
    result = invoke("profile", data / "events.csv", data / "catalog.csv", "--out", tmp_path / "p", "--model",
                    tiny_package, *PROFILE_OPTIONS)
    check_refused(result, "No space left on device", folder=tmp_path, before=before)
    assert "encoded 60" not in result.stdout


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(data, tmp_path, monkeypatch):
    from tastemap.runtime.interests import profiles

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(profiles.InterestProfiler, "fit_transform", broken)
    argv = profile_args(data, data / "events.csv", None, "--out", tmp_path / "p")
    result = invoke(*argv)
    check_refused(result, "error: unexpected ZeroDivisionError: division by zero (this is a bug of tastemap; run "
                  "`tastemap --debug ...` for the traceback and report it)", folder=tmp_path, before=[], code=1)
    result = invoke("--debug", *argv)
    assert result.exit_code == 1 and isinstance(result.exception, ZeroDivisionError)
    assert listing(tmp_path) == []


def test_output_lock_stops_a_second_job(data, tmp_path, tiny_package):
    """While a job holds an output, `tastemap embed` to the same output stops at once."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from tastemap.runtime.io.outputs import claim_output
        with claim_output({str(tmp_path / 'e.npy')!r}):
            print('held', flush=True)
            sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = invoke("embed", data / "catalog.csv", "--text-col", "title", "--out", tmp_path / "e.npy",
                        "--model", tiny_package)
        assert result.exit_code == 2, result.output
        assert first_error(result).startswith(f"error: {tmp_path / 'e.npy'} is being written by another tastemap job "
                                              f"(process {holder.pid})")
    finally:
        holder.communicate("")
    assert listing(tmp_path) == []


def test_two_embed_processes_on_one_output(tmp_path, tiny_package):
    """Two jobs race for one output: one writes it completely, the other stops with a clear error
    (or runs after the first ended); never a half-written or mixed output."""
    rows = 4_000
    words = np.array("the dark star love story city comedy war film king queen ship night space".split())
    rng = np.random.default_rng(0)
    titles = [" ".join(rng.choice(words, 6)) for _ in range(rows)]
    pd.DataFrame({"item_id": np.arange(rows), "title": titles}).to_csv(tmp_path / "items.csv", index=False)
    command = [sys.executable, "-c", "from tastemap.cli import main; main()", "embed", str(tmp_path / "items.csv"),
               "--text-col", "title", "--id-col", "item_id", "--out", str(tmp_path / "e.npy"), "--model",
               str(tiny_package), "--variant", "fp32", "--device", "cpu", "--threads", "1", "--chunk-rows", "500"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.2)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in (first, second)]
    codes = sorted(code for code, _ in outcomes)
    assert codes in ([0, 0], [0, 2]), outcomes
    for code, stderr in outcomes:
        if code == 2:
            errors = [line for line in stderr.splitlines() if line.startswith("error:")]
            assert errors and "is being written by another tastemap job" in errors[0], stderr
    vectors = np.load(tmp_path / "e.npy")
    assert vectors.shape == (rows, 32) and np.all(np.abs(np.linalg.norm(vectors, axis=1) - 1) < 1e-3)
    assert listing(tmp_path) == ["e.ids.parquet", "e.npy", "items.csv"]


# --- packages and other files ----------------------------------------------------------------


def _copy_package(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize("defect, message", [
    ("tokenizer", "tokenizer.json cannot be loaded as a tokenizer"),
    ("dim", "the ONNX model gives vectors of 32 dimensions, the manifest says embedding_dim=16"),
])
def test_package_with_consistent_hashes_but_wrong_content(data, tmp_path, tiny_package, defect, message):
    from tastemap.package import sha256_file

    package = _copy_package(tiny_package, tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    if defect == "tokenizer":
        (package / "tokenizer.json").write_text('{"not": "a tokenizer"')
        manifest["tokenizer"]["files"]["tokenizer.json"] = sha256_file(package / "tokenizer.json")
    else:
        manifest["embedding_dim"] = 16
    (package / "manifest.json").write_text(json.dumps(manifest))
    work = tmp_path / "work"
    work.mkdir()
    result = invoke("embed", data / "catalog.csv", "--text-col", "title", "--out", work / "e.npy", "--model", package)
    check_refused(result, message, folder=work, before=[])


@pytest.mark.parametrize("defect, message", [
    ("garbage", "model.safetensors is not a valid safetensors file"),
    ("pickled", "pytorch_model.bin cannot be read as PyTorch weights"),
])
def test_export_refuses_garbage_or_pickled_weights(tiny_bert, tmp_path, defect, message):
    import pickle

    source = shutil.copytree(tiny_bert, tmp_path / "source")
    (source / "model.safetensors").unlink()
    if defect == "garbage":
        (source / "model.safetensors").write_bytes(os.urandom(4096))
    else:
        (source / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": print}))
    work = tmp_path / "work"
    work.mkdir()
    result = invoke("export", source, "--out", work / "package", "--variants", "fp32")
    check_refused(result, message, folder=work, before=[])


def test_bench_compare_refuses_a_zero_base(tmp_path):
    import tastemap.bench

    base = json.loads((Path(tastemap.bench.__file__).parent / "baseline.json").read_text())
    new = json.loads(json.dumps(base))
    name = next(name for name, item in sorted(base["figures"].items()) if item["gated"])
    base["figures"][name]["value"] = 0.0
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "new.json").write_text(json.dumps(new))
    before = listing(tmp_path)
    result = invoke("bench", "compare", tmp_path / "base.json", tmp_path / "new.json")
    check_refused(result, f"gated base figure {name!r} is 0.0", folder=tmp_path, before=before)


# --- properties ------------------------------------------------------------------------------

_texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=12)


@PROPERTIES
@given(rows=st.lists(st.tuples(_texts, _texts), min_size=1, max_size=8))
def test_csv_values_come_back_exactly_as_written(tmp_path, rows):
    import csv

    path = tmp_path / "t.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(["item_id", "title"])
        writer.writerows(rows)
    frame = read_table(path)
    assert frame.values.tolist() == [list(row) for row in rows]


@PROPERTIES
@given(lines=st.lists(st.lists(st.sampled_from(["a", "1", "", "x y", '"q,r"', '"s\nt"']), min_size=1, max_size=4),
                      min_size=1, max_size=6))
def test_malformed_csv_is_an_input_error_naming_the_line(tmp_path, lines):
    import csv
    import io

    text = "a,b,c\n" + "\n".join(",".join(fields) for fields in lines) + "\n"
    (tmp_path / "t.csv").write_text(text, encoding="utf-8")
    records = [row for row in csv.reader(io.StringIO(text, newline=""))][1:]
    records = [row for row in records if row]
    try:
        frame = read_table(tmp_path / "t.csv")
    except InputError as exc:
        if records:
            assert any(len(row) != 3 for row in records)
            assert "line" in str(exc) and "the header has 3" in str(exc), exc
        else:
            assert "is empty" in str(exc)
    else:
        assert records and all(len(row) == 3 for row in records) and len(frame) == len(records)


_ids = st.one_of(st.text(min_size=1, max_size=6).filter(lambda s: s not in MISSING_MARKERS and "\x00" not in s),
                 st.integers(-2**63, 2**63 - 1))


@PROPERTIES
@given(ids=st.lists(_ids, min_size=1, max_size=10))
def test_ids_keep_their_identity(ids):
    got = normalize_ids(pd.Series(ids, dtype=object), "t", "id")
    if all(isinstance(i, int) for i in ids):
        assert got.dtype == np.int64 and got.tolist() == ids
    else:
        assert got.tolist() == [str(i) for i in ids]
    # two ids are equal after reading exactly when they were equal as written
    assert len(set(got.tolist())) == len({str(i) for i in ids})


@PROPERTIES
@given(bad=st.one_of(st.none(), st.just(float("nan")), st.sampled_from(sorted(MISSING_MARKERS)), st.booleans(),
                     st.floats(allow_nan=False), st.lists(st.integers(), max_size=2)),
       position=st.integers(0, 4))
def test_a_bad_id_is_named_by_its_row(bad, position):
    ids = [f"i{k}" for k in range(5)]
    ids[position] = bad
    with pytest.raises(InputError, match=rf"^t: row {position + 1}, column 'id': "):
        normalize_ids(pd.Series(ids, dtype=object), "t", "id")


@PROPERTIES
@given(seconds=st.lists(st.integers(EARLIEST, LATEST - 1), min_size=1, max_size=6), as_text=st.booleans())
def test_plausible_seconds_are_read_exactly_and_milliseconds_are_caught(seconds, as_text):
    column = [str(s) if as_text else s for s in seconds]
    frame = pd.DataFrame({"user_id": "u", "item_id": "i", "timestamp": column})
    assert validate_events(frame)["timestamp"].tolist() == seconds
    millis = [s * 1000 for s in seconds]
    frame = frame.assign(timestamp=millis)
    assert validate_events(frame, EventColumns(timestamp_unit="ms"))["timestamp"].tolist() == seconds
    if any(not EARLIEST <= m < LATEST for m in millis):
        with pytest.raises(InputError, match="timestamp_unit=ms"):
            validate_events(frame)


@PROPERTIES
@given(value=st.one_of(st.floats(), st.booleans(), st.text(max_size=8), st.none(),
                       st.integers(-10**20, 10**20)))
def test_any_timestamp_is_a_plausible_time_or_an_input_error(value):
    frame = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["i", "j"], "timestamp": [1_600_000_000, value]})
    try:
        got = validate_events(frame)["timestamp"].to_numpy()
    except InputError as exc:
        assert "row" in str(exc)
    else:
        assert np.all((got >= EARLIEST) & (got < LATEST))


@PROPERTIES
@given(weights=st.lists(st.one_of(st.floats(), st.text(max_size=4), st.booleans()), min_size=1, max_size=5))
def test_weights_are_finite_non_negative_and_not_all_zero(weights):
    frame = pd.DataFrame({"user_id": "u", "item_id": "i", "timestamp": 1_600_000_000, "weight": weights})
    try:
        got = validate_events(frame)["weight"].to_numpy()
    except InputError:
        return
    assert np.all(np.isfinite(got)) and np.all(got >= 0) and got.max() > 0


@PROPERTIES
@given(text=st.text(max_size=30))
def test_column_options_parse_or_refuse(text):
    for parse in (EventColumns.from_option, CatalogColumns.from_option):
        try:
            parse(text)
        except InputError:
            pass


@PROPERTIES
@given(template=st.lists(st.sampled_from(list("{}!:.[]0 ab") + ["title", "tags", "item_id"]), max_size=10).map("".join))
def test_any_template_renders_or_is_refused(template):
    from tastemap.runtime.io.events import render_item_texts

    catalog = validate_catalog(pd.DataFrame({"item_id": ["1"], "title": ["t"], "categories": ["a > b"]}))
    try:
        check_template(template)
    except InputError:
        return
    render_item_texts(catalog, template)


@PROPERTIES
@given(value=st.floats())
def test_decay_and_window_parameters_are_finite(value):
    from tastemap.runtime.interests.layers import TimeWindows

    for name in ("short_window_days", "short_decay", "long_decay"):
        try:
            windows = TimeWindows(**{name: value})
        except InputError:
            assert not np.isfinite(value) or value < 0 or (name == "short_window_days" and value == 0)
        else:
            assert np.isfinite(getattr(windows, name))
