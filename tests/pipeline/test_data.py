"""Inputs: the table reader, events and catalog (column mapping, validation errors, alignment,
MovieLens), item vectors and the synthetic generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tastemap.errors import InputError
from tastemap.runtime.io.events import (
    CatalogColumns,
    EventColumns,
    align_events,
    load_movielens,
    parse_mapping,
    read_catalog,
    read_events,
    render_item_texts,
)
from tastemap.runtime.io.synthetic import make_synthetic
from tastemap.runtime.io.tables import iter_table, read_table
from tastemap.runtime.io.vectors import load_item_vectors

EVENTS = pd.DataFrame({
    "uid": ["u1", "u1", "u2", "u2"],
    "sku": [10, 11, 10, 12],
    "ts": [1_000, 2_000, 3_000, 4_000],
    "stars": [5.0, 2.5, 4.0, 1.0],
    "kind": ["view", "buy", "buy", "view"],
})


def write(frame: pd.DataFrame, path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_read_events_maps_columns_and_weights_in_every_format(tmp_path, suffix):
    path = tmp_path / f"events{suffix}"
    write(EVENTS, path)
    columns = EventColumns(user_id="uid", item_id="sku", timestamp="ts", rating="stars", event_type="kind",
                           event_weights={"view": 0.5, "buy": 2.0})
    events = read_events(path, columns)
    assert list(events.columns) == ["user_id", "item_id", "timestamp", "weight"]
    assert events["user_id"].tolist() == ["u1", "u1", "u2", "u2"]
    assert events["timestamp"].tolist() == [1_000, 2_000, 3_000, 4_000]
    np.testing.assert_allclose(events["weight"], [1.0 * 0.5, 0.5 * 2.0, 0.8 * 2.0, 0.2 * 0.5])


def test_read_events_parses_iso_dates_and_milliseconds(tmp_path):
    path = tmp_path / "e.csv"
    pd.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "timestamp": ["1970-01-01T00:01:00Z", "1970-01-02"]}).to_csv(path, index=False)
    assert read_events(path)["timestamp"].tolist() == [60, 86_400]
    pd.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [5_500]}).to_csv(path, index=False)
    assert read_events(path, EventColumns(timestamp_unit="ms"))["timestamp"].tolist() == [5]


@pytest.mark.parametrize("frame, columns, message", [
    (EVENTS.drop(columns="ts"), EventColumns(user_id="uid", item_id="sku", timestamp="ts"),
     "missing column(s) ['ts']; it has ['uid', 'sku', 'stars', 'kind']; rename them or pass the column names"),
    (EVENTS.assign(ts=["1000", "soon", "x", "2000"]), EventColumns(user_id="uid", item_id="sku", timestamp="ts"),
     "row 2, column 'ts': cannot parse timestamp 'soon' (2 such rows)"),
    (EVENTS.assign(stars=["5", "4", "lots", "1"]), EventColumns(user_id="uid", item_id="sku", timestamp="ts", rating="stars"),
     "row 3, column 'stars': value 'lots' is not a finite number >= 0 (1 such rows)"),
    (EVENTS, EventColumns(user_id="uid", item_id="sku", timestamp="ts", event_type="kind", event_weights={"view": 1}),
     "row 2, column 'kind': event type 'buy' has no weight; known types: ['view']"),
    (EVENTS.assign(uid=["u1", None, "u2", "u2"]), EventColumns(user_id="uid", item_id="sku", timestamp="ts"),
     "row 2, column 'uid': empty id; every row needs an id"),
])
def test_read_events_errors_name_file_row_and_column(tmp_path, frame, columns, message):
    path = tmp_path / "events.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError) as error:
        read_events(path, columns)
    assert str(error.value).startswith(f"{path}: {message}")


def test_empty_and_unknown_files_are_input_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("user_id,item_id,timestamp\n")
    with pytest.raises(InputError, match="empty.csv is empty: it has no data rows"):
        read_events(empty)
    blank = tmp_path / "blank.jsonl"
    blank.write_text("")
    with pytest.raises(InputError, match="is empty"):
        read_events(blank)
    with pytest.raises(InputError, match=r"events.xlsx: cannot tell the format from its name; use one of \["):
        read_events(tmp_path / "events.xlsx")
    with pytest.raises(InputError, match="missing.csv: the events file does not exist"):
        read_events(tmp_path / "missing.csv")
    (tmp_path / "catalog.csv").mkdir()
    with pytest.raises(InputError, match="catalog.csv is a folder; give the catalog file"):
        read_catalog(tmp_path / "catalog.csv")


def test_read_catalog_parses_paths_lists_and_rejects_duplicates(tmp_path):
    path = tmp_path / "catalog.jsonl"
    frame = pd.DataFrame({
        "sku": [10, 11, 12],
        "name": ["Crime novel", "Atlas", "Mixed"],
        "cats": ["Books > Fiction > Crime", ["Books", "Maps"], "Books > Fiction|Music"],
        "tags": ["dark|noir", None, ["a", "b"]],
    })
    write(frame, path)
    catalog = read_catalog(path, CatalogColumns(item_id="sku", title="name", categories="cats"))
    assert catalog["categories"].tolist() == [[("Books", "Fiction", "Crime")], [("Books", "Maps")],
                                              [("Books", "Fiction"), ("Music",)]]
    assert catalog["tags"].tolist() == [["dark", "noir"], [], ["a", "b"]]
    assert catalog["description"].tolist() == ["", "", ""]
    write(frame.assign(sku=[10, 11, 10]), path)
    with pytest.raises(InputError, match=r"row 3, column 'sku': item_id 10 appears more than once"):
        read_catalog(path, CatalogColumns(item_id="sku", title="name", categories="cats"))


def test_align_events_counts_duplicates_and_unknown_items():
    events = pd.DataFrame({"user_id": ["b", "a", "a", "a", "b"], "item_id": [1, 2, 2, 9, 3],
                           "timestamp": [5, 6, 6, 7, 8], "weight": np.ones(5, np.float32)})
    catalog = pd.DataFrame({"item_id": [3, 2, 1], "title": ["c", "b", "a"]})
    interactions, report = align_events(events, catalog)
    assert (report.n_events_read, report.n_duplicates, report.n_unknown_items, report.n_events) == (5, 1, 1, 3)
    assert report.unknown_item_examples == ["9"]
    assert interactions.user_ids.tolist() == ["a", "b"]
    assert interactions.users.tolist() == [1, 0, 1]
    assert interactions.items.tolist() == [2, 1, 0]
    with pytest.raises(InputError, match="none of the 5 events name an item of the catalog"):
        align_events(events, catalog.assign(item_id=[30, 20, 10]))


def test_render_item_texts_template_drops_empty_parts():
    catalog = pd.DataFrame({"item_id": [1, 2], "title": ["Heat", "Up"], "categories": [[("Action", "Crime")], []],
                            "tags": [["pacino"], []], "description": ["", "Balloons."]})
    assert render_item_texts(catalog) == ["Heat. Action > Crime. Tags: pacino.", "Up. Balloons."]
    assert render_item_texts(catalog, "{title} ({item_id})") == ["Heat (1).", "Up (2)."]
    with pytest.raises(InputError, match=r"unknown field\(s\) \['genre'\]"):
        render_item_texts(catalog, "{genre}")


def test_parse_mapping():
    assert parse_mapping("view=0.5, buy=2", what="w", numeric=True) == {"view": 0.5, "buy": 2.0}
    with pytest.raises(InputError, match="w: 'view' is not of the form name=value"):
        parse_mapping("view", what="w")


def test_load_movielens():
    events, catalog = load_movielens()
    assert (len(events), events["user_id"].nunique(), len(catalog)) == (100_836, 610, 9_742)
    toy = catalog.iloc[0]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["categories"][:2] == [("Adventure",), ("Animation",)]
    assert "pixar" in toy["tags"]
    assert events["weight"].iloc[0] == pytest.approx(4.0 / 5)


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.tsv", "t.tsv.gz", "t.jsonl", "t.json.gz", "t.ndjson", "t.parquet"])
def test_read_table_reads_every_format(tmp_path, name):
    frame = pd.DataFrame({"item_id": [3, 1, 2], "title": ["a b", "c, d", "é"]})
    path = tmp_path / name
    if ".csv" in name or ".tsv" in name:
        frame.to_csv(path, sep="\t" if ".tsv" in name else ",", index=False)
    elif name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    typed = frame if name.endswith(".parquet") or "json" in name else frame.astype(str)  # CSV/TSV: text as written
    pd.testing.assert_frame_equal(read_table(path), typed, check_dtype=False)
    chunks = list(iter_table(path, ["title"], chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 1] and pd.concat(chunks)["title"].tolist() == ["a b", "c, d", "é"]


def test_table_errors_name_the_file(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="bad.parquet cannot be read as Parquet: "):
        read_table(tmp_path / "bad.parquet")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(InputError, match="bad.jsonl cannot be read as JSON lines: "):
        read_table(tmp_path / "bad.jsonl")
    (tmp_path / "latin1.csv").write_bytes(b"item_id,title\n1,caf\xe9\n")
    with pytest.raises(InputError, match=r"latin1.csv is not valid UTF-8: byte 0xe9 at byte offset 19 \(line 2\)"):
        read_table(tmp_path / "latin1.csv")
    pd.DataFrame({"item_id": [1]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(InputError, match=r"t.parquet: missing column\(s\) \['title'\]; it has \['item_id'\]; fix"):
        list(iter_table(tmp_path / "t.parquet", ["title"], 10, fix="fix"))


def test_load_item_vectors_checks_shape_and_kind(tmp_path):
    vectors = np.arange(6, dtype=np.float64).reshape(3, 2)
    np.save(tmp_path / "v.npy", vectors)
    loaded = load_item_vectors(tmp_path / "v.npy", n_items=3)
    assert loaded.dtype == np.float32 and loaded.tolist() == vectors.tolist()
    with pytest.raises(InputError, match=r"v.npy holds a float64 array of shape \(3, 2\); expected numbers of shape \[4, dim\]"):
        load_item_vectors(tmp_path / "v.npy", n_items=4)
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="cannot read item vectors .*o.npy: .*save a float32"):
        load_item_vectors(tmp_path / "o.npy")
    np.savez(tmp_path / "v.npz", a=vectors)
    with pytest.raises(InputError, match=r"holds several arrays \(.npz\)"):
        load_item_vectors(tmp_path / "v.npz")


def test_synthetic_options():
    data = make_synthetic(n_users=30, n_items=60, n_events=600, n_topics=3, dim=8, interests_per_user=(2, 2),
                          concentration=None, unique_pairs=True, first_id=0, seed=3)
    assert not data.events.duplicated(["user_id", "item_id"]).any()
    assert data.events["user_id"].min() == 0 and data.catalog["item_id"].tolist() == list(range(60))
    np.testing.assert_allclose(data.user_mixtures, 0.5)
    assert data.topic_centres.shape == (3, 8)
    topics = data.item_topics[data.events["item_id"].to_numpy()]
    assert all(np.isin(topics[data.events["user_id"].to_numpy() == u], data.user_topics[u]).all() for u in range(30))
    again = make_synthetic(n_users=30, n_items=60, n_events=600, n_topics=3, dim=8, seed=3)
    assert again.events["user_id"].min() == 1 and len(again.events) == 600


def test_ids_are_text_in_csv_and_typed_in_parquet(tmp_path):
    (tmp_path / "c.csv").write_text("item_id,title\n007,a\n7,b\n")
    assert read_catalog(tmp_path / "c.csv")["item_id"].tolist() == ["007", "7"]
    pd.DataFrame({"item_id": [7, 8], "title": ["a", "b"]}).to_parquet(tmp_path / "c.parquet")
    ids = read_catalog(tmp_path / "c.parquet")["item_id"]
    assert ids.tolist() == [7, 8] and ids.dtype == np.int64
    (tmp_path / "d.jsonl").write_text('{"item_id": 7, "title": "a"}\n{"item_id": "7", "title": "b"}\n')
    with pytest.raises(InputError, match=r"row 2, column 'item_id': item_id '7' appears more than once \(first in row 1\)"):
        read_catalog(tmp_path / "d.jsonl")


def test_timestamps_native_zoned_and_in_milliseconds(tmp_path):
    seconds = [1_600_000_000, 1_600_000_061]
    for stamps in (pd.to_datetime(seconds, unit="s").astype("datetime64[us]"),
                   pd.to_datetime(seconds, unit="s", utc=True).tz_convert("Europe/Paris")):
        frame = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["1", "2"], "timestamp": stamps})
        frame.to_parquet(tmp_path / "e.parquet")
        assert read_events(tmp_path / "e.parquet")["timestamp"].tolist() == seconds
    frame = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["1", "2"], "timestamp": [s * 1000 for s in seconds]})
    frame.to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(InputError, match=r"row 1, column 'timestamp': timestamp '1600000000000' is year 52672 when read "
                                         r"as seconds since the epoch \(2 such rows\); if the timestamps are milliseconds"):
        read_events(tmp_path / "e.csv")
    assert read_events(tmp_path / "e.csv", EventColumns(timestamp_unit="ms"))["timestamp"].tolist() == seconds


def test_a_row_spanning_lines_is_named_by_its_lines(tmp_path):
    (tmp_path / "c.csv").write_text('item_id,title\n1,"two\nlines",x\n2,b\n')
    with pytest.raises(InputError, match=r"c.csv: lines 2-3 \(row 1\) has 3 field\(s\); the header has 2"):
        read_table(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("item_id,item_id\n1,2\n")
    with pytest.raises(InputError, match=r"the header names the column\(s\) \['item_id'\] more than once"):
        read_table(tmp_path / "d.csv")


def test_users_whose_events_all_weigh_zero_are_dropped_and_counted():
    events = validate_events_frame({"user_id": ["a", "a", "b"], "item_id": [1, 2, 1], "timestamp": [1, 2, 3],
                                    "weight": [1.0, 0.0, 0.0]})
    catalog = pd.DataFrame({"item_id": [1, 2], "title": ["x", "y"]})
    interactions, report = align_events(events, catalog)
    assert interactions.user_ids.tolist() == ["a"] and report.n_users_without_weight == 1
    with pytest.raises(InputError, match="every event weighs 0"):
        validate_events_frame({"user_id": ["a"], "item_id": [1], "timestamp": [1], "weight": [0.0]})


def validate_events_frame(columns: dict) -> pd.DataFrame:
    from tastemap.runtime.io.events import validate_events

    return validate_events(pd.DataFrame(columns))


def test_validating_a_validated_catalog_changes_nothing():
    from tastemap.runtime.io.events import validate_catalog

    raw = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"],
                        "categories": ["Books > Fiction|Books > Crime", ""], "tags": ["x|y", ""]})
    once = validate_catalog(raw)
    assert once["categories"].tolist() == [[("Books", "Fiction"), ("Books", "Crime")], []]
    twice = validate_catalog(once)
    assert twice["categories"].tolist() == once["categories"].tolist()
    assert twice["tags"].tolist() == once["tags"].tolist() == [["x", "y"], []]
