"""The one table reader: CSV, TSV, Parquet and JSON lines, text formats optionally gzipped.

Every command reads its tables here, and the Spark engine takes its format detection, column
checks and messages from here too (Spark keeps its own reading engine):

- :func:`detect_format` tells the format from the file name; :func:`check_exists` and
  :func:`check_columns` check the file and its columns;
- :func:`read_table` reads a whole table with types inferred (events, catalogs);
- :func:`iter_table` reads chosen columns chunk by chunk; :func:`scan_table` and
  :func:`iter_texts` build on it for the text column of ``tastemap embed``.

Messages start with the file (or the frame's name) and name the row and the column where one is
at fault: ``events.csv: row 3, column 'ts': ...``. Rows count data rows from 1 (the header is
not a row).
"""

from __future__ import annotations

import codecs
import gzip
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from tastemap.errors import InputError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
FORMAT_NAMES = {"csv": "CSV", "tsv": "TSV", "parquet": "Parquet", "jsonl": "JSON lines"}
SEPARATORS = {"csv": ",", "tsv": "\t"}
TEXT_COLUMNS_FIX = "pass one of those with --text-col / --id-col"


def detect_format(path: str | Path) -> str:
    """``csv``, ``tsv``, ``parquet`` or ``jsonl`` from the name of ``path`` (a file, a folder of
    Parquet parts or a URI); a ``.gz`` suffix is allowed."""
    suffixes = [suffix.lower() for suffix in PurePosixPath(str(path).rstrip("/")).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    kind = FORMATS.get(suffixes[-1]) if suffixes else None
    if kind is None:
        raise InputError(f"{path}: cannot tell the format from its name; use one of {sorted(FORMATS)} (optionally .gz)")
    return kind


def check_exists(path: str | Path, *, what: str = "input", folders: bool = False) -> None:
    """Raise :class:`InputError` unless ``path`` is a file (or, with ``folders``, a folder of parts)."""
    location = Path(path)
    if location.is_file() or (folders and location.is_dir()):
        return
    if location.is_dir():
        raise InputError(f"{path} is a folder; give the {what} file")
    raise InputError(f"{path}: the {what} file does not exist")


def check_columns(source: str | Path, present: Iterable, wanted: Sequence[str], *,
                  fix: str = "rename them or pass the column names") -> None:
    """Raise :class:`InputError` naming the ``wanted`` columns missing from ``present``."""
    present = [str(column) for column in present]
    missing = [column for column in wanted if column not in present]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}; it has {present}; {fix}")


def row_error(source: str | Path, row: int, column, problem: str) -> InputError:
    """``source: row R, column 'C': problem`` for the 0-based data row ``row`` (shown from 1)."""
    return InputError(f"{source}: row {row + 1}, column {str(column)!r}: {problem}")


def unreadable(path: str | Path, kind: str, reason) -> InputError:
    """The error for a file that is not valid ``kind`` (a key of :data:`FORMAT_NAMES`)."""
    return InputError(f"{path} cannot be read as {FORMAT_NAMES[kind]}: {reason}")


def empty_table(path: str | Path) -> InputError:
    return InputError(f"{path} is empty: it has no data rows")


def read_table(path: str | Path, *, what: str = "table") -> pd.DataFrame:
    """The whole table at ``path`` as a DataFrame (types inferred; text columns as object)."""
    path = Path(path)
    kind = detect_format(path)
    check_exists(path, what=what)
    frame = next(_frames(path, kind, None, None, strings=False, fix=""), pd.DataFrame())
    if frame.empty:
        raise empty_table(path)
    return frame


def iter_table(path: str | Path, columns: Sequence[str], chunk_rows: int, *, what: str = "input",
               strings: bool = False, fix: str = TEXT_COLUMNS_FIX) -> Iterator[pd.DataFrame]:
    """Yield ``columns`` of ``path`` in frames of at most ``chunk_rows`` rows (index from 0 in
    each). With ``strings``, CSV/TSV values are read as str and an empty field is the empty
    string, not a missing value. A missing column is an error naming ``fix``."""
    path = Path(path)
    kind = detect_format(path)
    check_exists(path, what=what)
    yield from _frames(path, kind, list(columns), chunk_rows, strings=strings, fix=fix)


def _frames(path: Path, kind: str, columns: list[str] | None, chunk_rows: int | None, *, strings: bool,
            fix: str) -> Iterator[pd.DataFrame]:
    """Frames of ``path`` (one frame when ``chunk_rows`` is None), restricted to ``columns``."""
    if kind == "parquet":
        yield from _parquet_frames(path, columns, chunk_rows, fix)
        return
    try:
        if kind == "jsonl":
            result = pd.read_json(path, lines=True, dtype=False, chunksize=chunk_rows, encoding="utf-8")
        else:
            text = dict(dtype=str, keep_default_na=False, na_filter=False) if strings else {}
            result = pd.read_csv(path, sep=SEPARATORS[kind], chunksize=chunk_rows, encoding="utf-8", **text)
        if chunk_rows is None:
            yield _select(result, columns, path, fix)
            return
        with result:
            for chunk in result:
                yield _select(chunk, columns, path, fix)
    except pd.errors.EmptyDataError:
        raise empty_table(path) from None
    except UnicodeDecodeError as exc:
        check_utf8(path)  # raises with the byte offset and line
        raise unreadable(path, kind, exc) from None
    except (pd.errors.ParserError, ValueError, OSError, EOFError) as exc:
        if isinstance(exc, InputError):
            raise
        raise unreadable(path, kind, exc) from None


def _parquet_frames(path: Path, columns: list[str] | None, chunk_rows: int | None, fix: str) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        if columns is not None:
            check_columns(path, table.schema_arrow.names, columns, fix=fix)
        if chunk_rows is None:
            yield table.read(columns=columns).to_pandas()
            return
        for batch in table.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise unreadable(path, "parquet", exc) from None


def _select(frame: pd.DataFrame, columns: list[str] | None, path: Path, fix: str) -> pd.DataFrame:
    if columns is None:
        return frame
    check_columns(path, frame.columns, columns, fix=fix)
    return frame[columns].reset_index(drop=True)


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
    kind = detect_format(path)
    check_exists(path)
    if kind != "parquet":
        check_utf8(path)
    columns = [text_col] + ([id_col] if id_col and id_col != text_col else [])
    ids, n_rows = [], 0
    for chunk in iter_table(path, columns, chunk_rows, strings=True):
        check_text_column(chunk[text_col], path, text_col, n_rows)
        if id_col is not None:
            missing = chunk[id_col].isna().to_numpy()
            if missing.any():
                raise row_error(path, n_rows + int(np.argmax(missing)), id_col, "missing value; every row needs an id")
            ids.append(chunk[id_col].to_numpy())
        n_rows += len(chunk)
    if n_rows == 0:
        raise empty_table(path)
    if id_col is None:
        return TableScan(path, kind, n_rows, np.arange(n_rows, dtype=np.int64))
    return TableScan(path, kind, n_rows, _normalize_ids(np.concatenate(ids), kind))


def iter_texts(path: str | Path, text_col: str, chunk_rows: int) -> Iterator[list[str]]:
    """Yield the text column of ``path`` as lists of at most ``chunk_rows`` str (run :func:`scan_table` first)."""
    for chunk in iter_table(path, [text_col], chunk_rows, strings=True):
        yield chunk[text_col].tolist()


def check_text_column(values: pd.Series, path: Path, column: str, first_row: int) -> None:
    """Raise :class:`InputError` for the first value in ``values`` that is not a str; ``first_row``
    is the 0-based data row of ``values[0]``."""
    from tastemap.runtime.encode.encoder import describe_value

    is_text = np.fromiter((isinstance(value, str) for value in values), dtype=bool, count=len(values))
    if not is_text.all():
        position = int(np.argmin(is_text))
        raise row_error(path, first_row + position, column,
                        f"{describe_value(values.iloc[position])}; every text should be a string")


def _normalize_ids(ids: np.ndarray, kind: str) -> np.ndarray:
    """CSV ids are read as strings; turn them into int64 when every one is a plain integer."""
    if kind in ("csv", "tsv") and ids.dtype == object:
        series = pd.Series(ids, dtype=str)
        if series.str.fullmatch(r"-?(0|[1-9][0-9]{0,17})").all():
            return series.astype(np.int64).to_numpy()
        return series.to_numpy(dtype=object)
    return ids
