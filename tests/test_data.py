"""Events and catalog readers: formats, column mapping, validation errors, alignment, MovieLens."""

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
     "missing column(s) ['ts']; the file has ['uid', 'sku', 'stars', 'kind']"),
    (EVENTS.assign(ts=["1000", "soon", "x", "2000"]), EventColumns(user_id="uid", item_id="sku", timestamp="ts"),
     "row 2, column 'ts': cannot parse timestamp 'soon' (2 such rows)"),
    (EVENTS.assign(stars=["5", "4", "lots", "1"]), EventColumns(user_id="uid", item_id="sku", timestamp="ts", rating="stars"),
     "row 3, column 'stars': value 'lots' is not a number >= 0 (1 such rows)"),
    (EVENTS, EventColumns(user_id="uid", item_id="sku", timestamp="ts", event_type="kind", event_weights={"view": 1}),
     "row 2, column 'kind': event type 'buy' has no weight; known types: ['view']"),
    (EVENTS.assign(uid=["u1", None, "u2", "u2"]), EventColumns(user_id="uid", item_id="sku", timestamp="ts"),
     "row 2, column 'uid': missing value (1 rows)"),
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
    with pytest.raises(InputError, match="events file .*empty.csv is empty: it has no rows"):
        read_events(empty)
    blank = tmp_path / "blank.jsonl"
    blank.write_text("")
    with pytest.raises(InputError, match="is empty"):
        read_events(blank)
    with pytest.raises(InputError, match="unknown extension"):
        read_events(tmp_path / "events.xlsx")
    with pytest.raises(InputError, match="does not exist"):
        read_events(tmp_path / "missing.csv")


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
    with pytest.raises(InputError, match=r"item_id 10 at row 3 \(column 'sku'\) appears more than once"):
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
