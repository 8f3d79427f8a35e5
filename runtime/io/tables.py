"""Tables read in chunks: CSV, JSONL (optionally gzipped) and Parquet, with input checks.

:func:`scan_table` makes a first, cheap pass that checks everything that could go wrong later
(encoding, columns, missing or non-string texts, missing ids) and returns the row count and the
ids; :func:`iter_texts` then yields the text column chunk by chunk. Row numbers in messages are
0-based positions among the data rows (the CSV header is not a row).
"""

from __future__ import annotations

import codecs
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from tastemap.errors import InputError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: Path) -> str:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet`` from the file name (a ``.gz`` suffix is allowed)."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    kind = FORMATS.get(suffixes[-1]) if suffixes else None
    if kind is None:
        raise InputError(f"{path}: cannot tell the format from its name; use one of {sorted(FORMATS)} (optionally .gz)")
    return kind


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def check_utf8(path: Path, block_size: int = 1 << 20) -> None:
    """Raise :class:`InputError` naming the byte offset and line of the first invalid UTF-8 byte.

    Offsets count bytes of the (decompressed) text, from 0; lines count from 1.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    try:
        with _open_binary(path) as handle:
            while block := handle.read(block_size):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    raise _utf8_error(path, exc, block, offset, lines) from None
                offset += len(block)
                lines += block.count(b"\n")
            pending = len(decoder.getstate()[0])
            if pending:
                raise InputError(
                    f"{path} is not valid UTF-8: it ends inside a multi-byte character that starts at "
                    f"byte offset {offset - pending} (line {lines}); re-save the file as UTF-8"
                )
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _utf8_error(path: Path, exc: UnicodeDecodeError, block: bytes, offset: int, lines: int) -> InputError:
    # exc.object is the bytes the decoder still held from the previous block followed by ``block``.
    start = exc.start - (len(exc.object) - len(block))
    line = lines + block[: max(start, 0)].count(b"\n")
    bad = exc.object[exc.start : exc.start + 1].hex()
    return InputError(
        f"{path} is not valid UTF-8: byte 0x{bad} at byte offset {offset + start} (line {line}); "
        f"re-save the file as UTF-8"
    )


@dataclass(frozen=True)
class TableScan:
    """Result of :func:`scan_table`: ``n_rows`` data rows, ``ids`` (shape ``[n_rows]``) and the format."""

    path: Path
    kind: str
    n_rows: int
    ids: np.ndarray


def scan_table(path: str | Path, text_col: str, id_col: str | None, chunk_rows: int) -> TableScan:
    """Check ``path`` from end to end and collect its ids (row numbers when ``id_col`` is None)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} does not exist")
    kind = detect_format(path)
    if kind != "parquet":
        check_utf8(path)
    columns = [text_col] + ([id_col] if id_col and id_col != text_col else [])
    ids, n_rows = [], 0
    for chunk in _iter_frames(path, kind, columns, chunk_rows):
        check_text_column(chunk[text_col], path, text_col, n_rows)
        if id_col is not None:
            missing = chunk[id_col].isna().to_numpy()
            if missing.any():
                row = n_rows + int(np.argmax(missing))
                raise InputError(f"{path}: column {id_col!r} has no value at row {row}; every row needs an id")
            ids.append(chunk[id_col].to_numpy())
        n_rows += len(chunk)
    if n_rows == 0:
        raise InputError(f"{path} has no data rows; nothing to encode")
    if id_col is None:
        return TableScan(path, kind, n_rows, np.arange(n_rows, dtype=np.int64))
    return TableScan(path, kind, n_rows, _normalize_ids(np.concatenate(ids), kind))


def iter_texts(path: str | Path, text_col: str, chunk_rows: int) -> Iterator[list[str]]:
    """Yield the text column of ``path`` as lists of at most ``chunk_rows`` str (run :func:`scan_table` first)."""
    path = Path(path)
    for chunk in _iter_frames(path, detect_format(path), [text_col], chunk_rows):
        yield chunk[text_col].tolist()


def check_text_column(values: pd.Series, path: Path, column: str, first_row: int) -> None:
    """Raise :class:`InputError` for the first value in ``values`` that is not a str."""
    from tastemap.runtime.encode.encoder import describe_value

    is_text = np.fromiter((isinstance(value, str) for value in values), dtype=bool, count=len(values))
    if not is_text.all():
        position = int(np.argmin(is_text))
        raise InputError(
            f"{path}: column {column!r} at row {first_row + position} is "
            f"{describe_value(values.iloc[position])}; every text should be a string"
        )


def _iter_frames(path: Path, kind: str, columns: list[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    if kind == "parquet":
        yield from _iter_parquet(path, columns, chunk_rows)
        return
    try:
        if kind in ("csv", "tsv"):
            # Every value is read as a string; an empty field is the empty text, not a missing one.
            reader = pd.read_csv(
                path, sep="\t" if kind == "tsv" else ",", dtype=str, keep_default_na=False,
                na_filter=False, chunksize=chunk_rows, encoding="utf-8",
            )
        else:
            reader = pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False, encoding="utf-8")
        with reader:
            for chunk in reader:
                _check_columns(path, chunk.columns, columns)
                yield chunk[columns].reset_index(drop=True)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty; nothing to encode") from None
    except (pd.errors.ParserError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path} cannot be parsed as {kind.upper()}: {exc}") from exc


def _iter_parquet(path: Path, columns: list[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path} cannot be read as Parquet: {exc}") from exc
    _check_columns(path, table.schema_arrow.names, columns)
    for batch in table.iter_batches(batch_size=chunk_rows, columns=columns):
        yield batch.to_pandas()


def _check_columns(path: Path, present, wanted: list[str]) -> None:
    missing = [column for column in wanted if column not in present]
    if missing:
        raise InputError(
            f"{path} has no column {missing[0]!r} (it has {list(present)}); "
            f"pass one of those with --text-col / --id-col"
        )


def _normalize_ids(ids: np.ndarray, kind: str) -> np.ndarray:
    """CSV ids are read as strings; turn them into int64 when every one is a plain integer."""
    if kind in ("csv", "tsv") and ids.dtype == object:
        series = pd.Series(ids, dtype=str)
        if series.str.fullmatch(r"-?(0|[1-9][0-9]{0,17})").all():
            return series.astype(np.int64).to_numpy()
        return series.to_numpy(dtype=object)
    return ids
