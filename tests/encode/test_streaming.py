"""encode_to_file: formats, resume after an interruption, bad input and no partial output."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from tastemap.errors import InputError
from tastemap.runtime import Encoder, encode_to_file
from tastemap.runtime.io.tables import check_utf8
from tastemap.runtime.encode.streaming import ids_path_for, partial_dir_for

WORDS = "the dark star love story city comedy war film king queen ship night space adventure horror".split()


@pytest.fixture(scope="module")
def catalog():
    rng = np.random.default_rng(0)
    titles = [" ".join(rng.choice(WORDS, size=rng.integers(1, 12))) for _ in range(45)]
    titles[7] = titles[3]  # a duplicate
    return pd.DataFrame({"item_id": np.arange(100, 145), "title": titles, "genres": "Drama"})


@pytest.fixture(scope="module")
def expected(tiny_package, catalog):
    return Encoder(tiny_package, variant="fp32", device="cpu").encode(catalog.title.tolist())


def _encoder(package):
    return Encoder(package, variant="fp32", device="cpu")


@pytest.mark.parametrize("name", ["items.csv", "items.csv.gz", "items.jsonl", "items.parquet"])
def test_each_format_gives_the_same_vectors_and_ids(tiny_package, catalog, expected, tmp_path, name):
    source = tmp_path / name
    if name.startswith("items.csv"):
        catalog.to_csv(source, index=False)
    elif name.endswith(".jsonl"):
        catalog.to_json(source, orient="records", lines=True)
    else:
        catalog.to_parquet(source)
    out = tmp_path / "emb.npy"
    result = encode_to_file(source, out, "title", "item_id", encoder=_encoder(tiny_package), chunk_rows=10)
    np.testing.assert_allclose(np.load(out, mmap_mode="r"), expected, atol=1e-5)
    ids = pd.read_parquet(ids_path_for(out))["id"]
    if ".csv" in name:  # CSV carries no types: ids are the text written
        assert ids.tolist() == [str(i) for i in range(100, 145)]
    else:
        assert ids.tolist() == list(range(100, 145)) and ids.dtype == np.int64
    assert (result.n_rows, result.resumed_rows, result.stats.texts, result.stats.unique) == (45, 0, 45, 44)
    assert not partial_dir_for(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "emb.npy", "emb.ids.parquet"])


def test_without_id_column_ids_are_row_numbers(tiny_package, catalog, tmp_path):
    catalog.to_csv(tmp_path / "items.csv", index=False)
    encode_to_file(tmp_path / "items.csv", tmp_path / "emb.npy", "title", encoder=_encoder(tiny_package))
    assert pd.read_parquet(tmp_path / "emb.ids.parquet")["id"].tolist() == list(range(45))


def test_resume_after_an_interruption_redoes_no_finished_chunk(tiny_package, catalog, expected, tmp_path, monkeypatch):
    source, out = tmp_path / "items.csv", tmp_path / "emb.npy"
    catalog.to_csv(source, index=False)
    encoder = _encoder(tiny_package)
    calls = []
    original = Encoder.encode

    def interrupted(self, texts):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(Encoder, "encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        encode_to_file(source, out, "title", "item_id", encoder=encoder, chunk_rows=10)
    assert not out.exists() and not ids_path_for(out).exists()
    assert partial_dir_for(out).is_dir()
    monkeypatch.setattr(Encoder, "encode", original)
    result = encode_to_file(source, out, "title", "item_id", encoder=_encoder(tiny_package), chunk_rows=10)
    assert (result.resumed_rows, result.stats.texts) == (30, 15)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    assert not partial_dir_for(out).exists()


def test_changed_settings_start_over(tiny_package, catalog, tmp_path, monkeypatch):
    source, out = tmp_path / "items.csv", tmp_path / "emb.npy"
    catalog.to_csv(source, index=False)
    original = Encoder.encode
    calls = []

    def interrupted(self, texts):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return original(self, texts)

    monkeypatch.setattr(Encoder, "encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        encode_to_file(source, out, "title", "item_id", encoder=_encoder(tiny_package), chunk_rows=10)
    monkeypatch.setattr(Encoder, "encode", original)
    result = encode_to_file(source, out, "title", "item_id", encoder=_encoder(tiny_package), chunk_rows=20)
    assert (result.resumed_rows, result.stats.texts) == (0, 45)


def _write(path, content: bytes):
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", b"", "a.csv is empty: it has no data rows"),
        ("a.csv", b"item_id,title\n", "a.csv is empty: it has no data rows"),
        ("a.csv", b"item_id,name\n1,x\n", "a.csv: missing column(s) ['title']; it has ['item_id', 'name']; pass one of those with --text-col / --id-col"),
        ("a.jsonl", b'{"item_id": 1, "title": "x"}\n{"item_id": 2, "title": null}\n', "a.jsonl: row 2, column 'title': missing (nan); every text should be a string"),
        ("a.jsonl", b'{"item_id": 1, "title": "x"}\n{"item_id": 2, "title": 1984}\n', "a.jsonl: row 2, column 'title': int 1984; every text should be a string"),
        ("a.jsonl", b'{"item_id": 1, "title": "x"}\n{"title": "y"}\n', "a.jsonl: row 2, column 'item_id': missing id; every row needs an id"),
        ("a.csv", b"item_id,title\n1,ok\n2,caf\xe9\n", "a.csv is not valid UTF-8: byte 0xe9 at byte offset 24 (line 3); re-save the file as UTF-8"),
        ("a.txt", b"x", "a.txt: cannot tell the format from its name; use one of ['.csv', '.json', '.jsonl', '.ndjson', '.parquet', '.pq', '.tsv'] (optionally .gz)"),
    ],
)
def test_bad_input_is_named_and_writes_nothing(tiny_package, tmp_path, name, content, message):
    source = _write(tmp_path / name, content)
    out = tmp_path / "emb.npy"
    with pytest.raises(InputError) as error:
        encode_to_file(source, out, "title", "item_id", encoder=_encoder(tiny_package))
    assert str(error.value) == f"{tmp_path}/{message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_missing_value_in_parquet_names_the_row(tiny_package, tmp_path):
    pd.DataFrame({"item_id": [1, 2, 3], "title": ["a", "b", None]}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(InputError, match=r"a.parquet: row 3, column 'title': missing \(nan\); every text should be a string"):
        encode_to_file(tmp_path / "a.parquet", tmp_path / "e.npy", "title", encoder=_encoder(tiny_package))


def test_empty_csv_field_is_an_empty_text(tiny_package, tmp_path):
    _write(tmp_path / "a.csv", b"item_id,title\n1,\n2,comedy\n")
    encoder = _encoder(tiny_package)
    result = encode_to_file(tmp_path / "a.csv", tmp_path / "e.npy", "title", "item_id", encoder=encoder)
    assert (result.n_rows, result.stats.empty) == (2, 1)


def test_utf8_error_position_across_blocks_and_gzip(tmp_path):
    content = "é".encode() * 10 + b"\nabc\xff"
    source = tmp_path / "a.csv.gz"
    with gzip.open(source, "wb") as handle:
        handle.write(content)
    with pytest.raises(InputError, match=r"byte 0xff at byte offset 24 \(line 2\)"):
        check_utf8(source, block_size=3)
    check_utf8(_write(tmp_path / "ok.csv", "é".encode() * 10), block_size=3)
    with pytest.raises(InputError, match=r"ends inside a multi-byte character that starts at byte offset 3 \(line 1\)"):
        check_utf8(_write(tmp_path / "cut.csv", "é".encode() + b"a\xc3"), block_size=2)


def test_a_held_output_stops_a_second_job(tiny_package, catalog, tmp_path):
    from tastemap.runtime.io.outputs import claim_output

    catalog.to_csv(tmp_path / "items.csv", index=False)
    with claim_output(tmp_path / "emb.npy"):
        with pytest.raises(InputError, match=r"emb.npy is being written by another tastemap job \(process \d+\)"):
            encode_to_file(tmp_path / "items.csv", tmp_path / "emb.npy", "title", encoder=_encoder(tiny_package))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.csv"]


def test_a_failure_after_the_start_removes_the_working_folder(tiny_package, catalog, tmp_path, monkeypatch):
    catalog.to_csv(tmp_path / "items.csv", index=False)

    def broken(self, texts):
        raise RuntimeError("boom")

    monkeypatch.setattr(Encoder, "encode", broken)
    with pytest.raises(RuntimeError, match="boom"):
        encode_to_file(tmp_path / "items.csv", tmp_path / "emb.npy", "title", encoder=_encoder(tiny_package))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.csv"]


def test_ids_never_appear_without_their_vectors(tiny_package, catalog, tmp_path, monkeypatch):
    import errno
    import os

    catalog.to_csv(tmp_path / "items.csv", index=False)
    real_replace = os.replace

    def replace(source, target):
        if str(target).endswith("emb.npy"):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(InputError, match=r"cannot write .*emb.npy: "):
        encode_to_file(tmp_path / "items.csv", tmp_path / "emb.npy", "title", encoder=_encoder(tiny_package))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.csv"]
