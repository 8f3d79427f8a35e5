"""The one table reader: CSV, TSV, Parquet and JSON lines, text formats optionally gzipped.

Every command reads its tables here, and the Spark engine takes its format detection, column
checks and messages from here too (Spark keeps its own reading engine):

- :func:`detect_format` tells the format from the file name; :func:`check_exists` and
  :func:`check_columns` check the file and its columns;
- :func:`read_table` reads a whole table (events, catalogs);
- :func:`iter_table` reads chosen columns chunk by chunk; :func:`scan_table` and
  :func:`iter_texts` build on it for the text column of ``tastemap embed``;
- :func:`normalize_ids` is the one rule for id columns.

Values: CSV and TSV carry no types, so every value is read as the text written in the file (an
empty field is the empty string); the readers of events and catalogs parse numbers and dates
where their schema has them. Parquet and JSON values keep their own types. So ids are strings
unless the file itself types them (an integer column in Parquet, numbers in JSON): ``007`` and
``7`` are two ids in every command.

A CSV/TSV row whose number of fields differs from the header's is an error naming its line
(pandas would otherwise shift every column, or fill the row with missing values); so is a header
that names a column twice, and text that is not UTF-8.

Messages start with the file (or the frame's name) and name the row and the column where one is
at fault: ``events.csv: row 3, column 'ts': ...``. Rows count data rows from 1 (the header is
not a row); lines count the lines of the file from 1 (the header is line 1).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
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
MISSING_MARKERS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                             "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
"""Texts that mean "no value" in an id column (pandas' list): an id cannot be one of them."""

_CSV_OPTIONS = dict(dtype=str, keep_default_na=False, na_filter=False, index_col=False, encoding="utf-8")


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
    """The whole table at ``path`` as a DataFrame: CSV/TSV values as str, exactly as written;
    Parquet and JSON values with their own types (see the module docstring)."""
    path = Path(path)
    kind = detect_format(path)
    check_exists(path, what=what)
    frame = next(_frames(path, kind, None, None, fix=""), pd.DataFrame())
    if frame.empty:
        raise empty_table(path)
    return frame


def iter_table(path: str | Path, columns: Sequence[str], chunk_rows: int, *, what: str = "input",
               fix: str = TEXT_COLUMNS_FIX) -> Iterator[pd.DataFrame]:
    """Yield ``columns`` of ``path`` in frames of at most ``chunk_rows`` rows (index from 0 in
    each); values as in :func:`read_table`. A missing column is an error naming ``fix``."""
    path = Path(path)
    kind = detect_format(path)
    check_exists(path, what=what)
    yield from _frames(path, kind, list(columns), chunk_rows, fix=fix)


def check_text_table(path: str | Path, kind: str | None = None) -> int:
    """Check a text table from end to end without parsing its values: valid UTF-8 and, for CSV and
    TSV, a header without repeated names and the same number of fields on every row. Returns the
    number of data rows of a CSV/TSV (blank lines are skipped, as the reader does), -1 for JSON
    lines. Parquet is not checked (-1)."""
    path = Path(path)
    kind = kind or detect_format(path)
    if kind == "parquet":
        return -1
    check_utf8(path)
    if kind == "jsonl":
        return -1
    separator = SEPARATORS[kind]
    try:
        header = _csv_header(path, separator)
        if header is None:
            return 0
        try:
            return _count_csv_rows(path, separator, header)
        except _Malformed as exc:
            _check_csv_shape(path, separator)  # raises naming the line
            raise unreadable(path, kind, exc) from None
    except csv.Error as exc:
        raise unreadable(path, kind, exc) from None
    except (OSError, EOFError) as exc:
        raise unreadable(path, kind, exc) from None


class _Malformed(Exception):
    """A CSV/TSV row whose field count differs from the header's (found by the fast pass)."""


def _csv_header(path: Path, separator: str) -> list[str] | None:
    """The header's names (None for an empty file); a name given twice is an error."""
    with _csv_field_limit(), _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        header = next((row for row in csv.reader(text, delimiter=separator) if row), None)
    if header is not None:
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise InputError(f"{path}: the header names the column(s) {repeated} more than once; "
                             "give every column its own name")
    return header


def _count_csv_rows(path: Path, separator: str, header: list[str]) -> int:
    """Data rows, counted by Arrow's CSV parser (fast); :class:`_Malformed` at a row whose field
    count differs from the header's."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    parse = pa_csv.ParseOptions(delimiter=separator, newlines_in_values=True, invalid_row_handler=lambda row: "error")
    convert = pa_csv.ConvertOptions(include_columns=[header[0]], column_types={header[0]: pa.string()})
    try:
        with pa_csv.open_csv(str(path), parse_options=parse, convert_options=convert) as reader:
            return sum(batch.num_rows for batch in reader)
    except (pa.ArrowException, KeyError) as exc:
        raise _Malformed(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


class _csv_field_limit:
    """Lift the csv module's field size limit (128 KiB: descriptions can be longer) for a block."""

    def __enter__(self):
        self.limit = csv.field_size_limit()
        csv.field_size_limit(2**31 - 1)

    def __exit__(self, *exc_info):
        csv.field_size_limit(self.limit)


def _check_csv_shape(path: Path, separator: str) -> int:
    """The slow, exact pass: raise :class:`InputError` naming the line of the first row whose field
    count differs from the header's; else return the number of data rows."""
    with _csv_field_limit(), _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        rows = csv.reader(text, delimiter=separator)
        header = next(rows, None)
        while header == []:  # blank lines before the header
            header = next(rows, None)
        if header is None:
            return 0
        expected, n_rows, line = len(header), 0, rows.line_num
        for fields in rows:
            start, line = line + 1, rows.line_num
            if not fields:  # a blank line
                continue
            if len(fields) != expected:
                where = f"line {start}" if start == line else f"lines {start}-{line}"
                raise InputError(
                    f"{path}: {where} (row {n_rows + 1}) has {len(fields)} field(s); the header has {expected}; "
                    f"quote values that contain {separator!r} and give every row {expected} fields")
            n_rows += 1
        return n_rows


def _frames(path: Path, kind: str, columns: list[str] | None, chunk_rows: int | None, *,
            fix: str) -> Iterator[pd.DataFrame]:
    """Frames of ``path`` (one frame when ``chunk_rows`` is None), restricted to ``columns``."""
    if kind == "parquet":
        yield from _parquet_frames(path, columns, chunk_rows, fix)
        return
    if check_text_table(path, kind) == 0 and kind != "jsonl":
        raise empty_table(path)
    try:
        if kind == "jsonl":
            result = pd.read_json(path, lines=True, dtype=False, chunksize=chunk_rows, encoding="utf-8")
        else:
            result = pd.read_csv(path, sep=SEPARATORS[kind], chunksize=chunk_rows, **_CSV_OPTIONS)
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
        names = table.schema_arrow.names
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InputError(f"{path}: the column(s) {repeated} appear more than once; give every column its own name")
        if columns is not None:
            check_columns(path, names, columns, fix=fix)
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
                if offset == 0 and block[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                    raise InputError(f"{path} is UTF-16 text (it starts with a UTF-16 byte-order mark); "
                                     "re-save the file as UTF-8")
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


def normalize_ids(values, source: str | Path, column: str, *, first_row: int = 0) -> np.ndarray:
    """The ids in ``values`` (a Series or array of ``n`` values): int64 ``[n]`` when every one is
    an integer of the file's own type, else str ``[n]`` (an object array).

    Strings are kept exactly as written (``"007"`` stays ``"007"``, and is another id than
    ``"7"``); a column mixing integers and strings becomes strings. A missing value, an empty
    string or a missing-value marker (:data:`MISSING_MARKERS`), a float, a boolean, a date, a list
    or any other object is an error naming the row (``first_row`` is the 0-based data row of
    ``values[0]``).
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if len(series) == 0:
        return np.zeros(0, np.int64)
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iu":
        return _as_int64(series.to_numpy())
    objects = series.to_numpy(dtype=object)
    kinds = np.fromiter((_id_kind(value) for value in objects), np.int8, len(objects))
    bad = kinds < 0
    if pd.api.types.is_float_dtype(series.dtype) and series.isna().any():
        bad = series.isna().to_numpy()  # integers with a missing value are read as floats: name the missing one
    if bad.any():
        row = int(np.argmax(bad))
        raise row_error(source, first_row + row, column, _id_problem(objects[row]))
    if (kinds == _INT).all():
        return _as_int64(objects)
    if (kinds == _INT).any():
        return np.array([str(value) for value in objects], dtype=object)
    return objects


_INT, _STR = 1, 2


def _id_kind(value) -> int:
    if isinstance(value, str):
        return -1 if value in MISSING_MARKERS else _STR
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return _INT
    return -1


def _id_problem(value) -> str:
    if isinstance(value, str):
        if value == "":
            return "empty id; every row needs an id"
        return f"the id {value!r} reads as a missing value; every row needs an id"
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return "missing id; every row needs an id"
    if isinstance(value, (list, tuple, np.ndarray)):
        shown = value.tolist() if isinstance(value, np.ndarray) else list(value)
        return f"a list ({shown!r}) is not an id; ids are strings or integers"
    shown = value.item() if isinstance(value, np.generic) else value
    return (f"{type(shown).__name__} {shown!r} is not an id; ids are strings or integers "
            "(store the column as text or as integers)")


def _as_int64(values: np.ndarray) -> np.ndarray:
    """int64 when every value fits, else the decimal strings (ids beyond int64 stay exact)."""
    try:
        return np.array(values.tolist(), dtype=np.int64)
    except OverflowError:
        return np.array([str(int(value)) for value in values], dtype=object)


@dataclass(frozen=True)
class TableScan:
    """Result of :func:`scan_table`: ``n_rows`` data rows, ``ids`` (shape ``[n_rows]``) and the format."""

    path: Path
    kind: str
    n_rows: int
    ids: np.ndarray


def scan_table(path: str | Path, text_col: str, id_col: str | None, chunk_rows: int) -> TableScan:
    """Check ``path`` from end to end and collect its ids (row numbers when ``id_col`` is None;
    else as :func:`normalize_ids` reads them)."""
    path = Path(path)
    kind = detect_format(path)
    check_exists(path)
    columns = [text_col] + ([id_col] if id_col and id_col != text_col else [])
    ids, n_rows = [], 0
    for chunk in iter_table(path, columns, chunk_rows):
        check_text_column(chunk[text_col], path, text_col, n_rows)
        if id_col is not None:
            ids.append(chunk[id_col])
        n_rows += len(chunk)
    if n_rows == 0:
        raise empty_table(path)
    if id_col is None:
        return TableScan(path, kind, n_rows, np.arange(n_rows, dtype=np.int64))
    values = pd.concat(ids, ignore_index=True) if len(ids) > 1 else ids[0]
    return TableScan(path, kind, n_rows, normalize_ids(values, path, id_col))


def iter_texts(path: str | Path, text_col: str, chunk_rows: int) -> Iterator[list[str]]:
    """Yield the text column of ``path`` as lists of at most ``chunk_rows`` str (run :func:`scan_table` first)."""
    for chunk in iter_table(path, [text_col], chunk_rows):
        yield chunk[text_col].tolist()


def describe_value(value: object) -> str:
    """Short description of a bad text value for error messages: ``missing (None)``, ``int 42``."""
    if value is None:
        return "missing (None)"
    try:
        missing = bool(pd.isna(value))
    except (TypeError, ValueError):
        missing = False
    if missing:
        return f"missing ({value!r})"
    return f"{type(value).__name__} {value!r}"


def check_text_column(values: pd.Series, path: Path, column: str, first_row: int) -> None:
    """Raise :class:`InputError` for the first value in ``values`` that is not a str; ``first_row``
    is the 0-based data row of ``values[0]``."""
    is_text = np.fromiter((isinstance(value, str) for value in values), dtype=bool, count=len(values))
    if not is_text.all():
        position = int(np.argmin(is_text))
        raise row_error(path, first_row + position, column,
                        f"{describe_value(values.iloc[position])}; every text should be a string")
