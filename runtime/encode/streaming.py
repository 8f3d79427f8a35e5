"""Encode a table too large for memory into a memory-mapped ``.npy`` file, resumably.

:func:`encode_to_file` checks the whole input first (:func:`tastemap.runtime.io.tables.scan_table`),
then encodes it chunk by chunk into ``.<out>.partial/`` beside the output: ``embeddings.npy``
(memory-mapped, float32 ``[n_rows, dim]``), ``ids.parquet`` and ``state.json`` (how many chunks
are done, and a fingerprint of the input, model and settings). A rerun with the same fingerprint
continues after the last finished chunk. When every chunk is done the ids file and then the
embeddings are renamed into place, so ``out`` exists only when it is complete.

One job at a time writes ``out``: a second one stops at once with an error while the first runs
(:func:`tastemap.runtime.io.outputs.claim_output`). The working folder is kept only when the run
is interrupted (Ctrl-C; the log says how to resume); any other failure removes it, and the space
for the vectors is reserved up front, so that a full disk is an error at the start, not a crash.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tastemap.console import progress
from tastemap.errors import InputError
from tastemap.runtime.encode.encoder import DEFAULT_CHUNK_ROWS, EncodeStats, Encoder
from tastemap.runtime.io.outputs import check_output_path, claim_output, write_error
from tastemap.runtime.io.tables import iter_texts, scan_table

logger = logging.getLogger(__name__)


def ids_path_for(out: str | Path) -> Path:
    """Where :func:`encode_to_file` writes the ids of ``out``: ``emb.npy`` -> ``emb.ids.parquet``."""
    out = Path(out)
    return out.with_name(f"{out.name[:-4] if out.name.endswith('.npy') else out.name}.ids.parquet")


def partial_dir_for(out: str | Path) -> Path:
    """The working folder of an unfinished :func:`encode_to_file` run."""
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


@dataclass(frozen=True)
class EncodeFileResult:
    """What :func:`encode_to_file` wrote and how fast: ``n_rows`` vectors of ``dim`` in ``out``.

    ``resumed_rows`` were already done by an interrupted run; ``stats`` counts this run only.
    """

    out: Path
    ids_path: Path
    n_rows: int
    dim: int
    resumed_rows: int
    provider: str
    variant: str
    threads: int
    stats: EncodeStats
    seconds: float


def encode_to_file(
    source: str | Path,
    out: str | Path,
    text_col: str,
    id_col: str | None = None,
    *,
    encoder: Encoder | None = None,
    model_dir: str | Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    resume: bool = True,
    show_progress: bool = True,
) -> EncodeFileResult:
    """Encode column ``text_col`` of ``source`` (CSV, TSV, JSONL, optionally gzipped, or Parquet).

    Writes float32 vectors ``[n_rows, dim]`` to ``out`` (``.npy``, readable with
    ``np.load(out, mmap_mode="r")``) and the ids (column ``id_col``, or row numbers) to
    :func:`ids_path_for` ``(out)`` as a one-column Parquet file named ``id``. Pass an ``encoder``,
    or a ``model_dir`` to build one with default settings (the default model,
    :func:`tastemap.paths.default_model_dir`, when neither is given).
    With ``resume``, an interrupted run with the same input, model and settings continues where it
    stopped; otherwise it starts over.
    """
    source, out = Path(source), Path(out)
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise InputError(f"chunk_rows={chunk_rows!r} should be an integer >= 1")
    if out.suffix != ".npy":
        raise InputError(f"out={str(out)!r} should end in .npy")
    check_output_path(ids_path_for(out))
    started = time.perf_counter()
    with claim_output(out):
        if encoder is None:
            from tastemap.paths import resolve_model_dir

            encoder = Encoder(resolve_model_dir(model_dir))
        encoder.load()
        scan = scan_table(source, text_col, id_col, chunk_rows)
        work = partial_dir_for(out)
        fingerprint = _fingerprint(source, text_col, id_col, chunk_rows, scan.n_rows, encoder)
        done = _chunks_done(work, fingerprint) if resume else 0
        before = replace(encoder.stats)
        try:
            if done == 0:
                shutil.rmtree(work, ignore_errors=True)
                _start(work, fingerprint, scan.ids, scan.n_rows, encoder.dim)
            else:
                logger.info("resuming %s after %d finished chunks of %d rows", out, done, chunk_rows)
            _encode_chunks(source, text_col, chunk_rows, scan.n_rows, work, fingerprint, done, encoder,
                           show_progress)
            _finish(work, out)
        except KeyboardInterrupt:
            logger.warning("interrupted: the finished chunks are kept in %s; run the same command again to "
                           "resume (--restart starts over)", work)
            raise
        except BaseException as exc:
            shutil.rmtree(work, ignore_errors=True)
            if isinstance(exc, OSError):
                raise write_error(out, exc) from exc
            raise
    return EncodeFileResult(
        out=out,
        ids_path=ids_path_for(out),
        n_rows=scan.n_rows,
        dim=encoder.dim,
        resumed_rows=min(done * chunk_rows, scan.n_rows),
        provider=encoder.provider,
        variant=encoder.variant,
        threads=encoder.threads,
        stats=_difference(encoder.stats, before),
        seconds=time.perf_counter() - started,
    )


def _encode_chunks(source: Path, text_col: str, chunk_rows: int, n_rows: int, work: Path, fingerprint: dict,
                   done: int, encoder: Encoder, show_progress: bool) -> None:
    vectors = np.lib.format.open_memmap(work / "embeddings.npy", mode="r+")
    chunks = iter_texts(source, text_col, chunk_rows)
    if show_progress:
        chunks = progress(chunks, total=-(-n_rows // chunk_rows), description=f"embedding {source.name}")
    try:
        for index, texts in enumerate(chunks):
            if index < done:
                continue
            start = index * chunk_rows
            vectors[start : start + len(texts)] = encoder.encode(texts)
            vectors.flush()
            _write_state(work, fingerprint, index + 1)
    finally:
        del vectors


def _fingerprint(source: Path, text_col, id_col, chunk_rows: int, n_rows: int, encoder: Encoder) -> dict:
    stat = source.stat()
    return {
        "source": str(source.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "text_col": text_col,
        "id_col": id_col,
        "chunk_rows": chunk_rows,
        "n_rows": n_rows,
        "model_sha256": encoder.package.variant(encoder.variant).sha256,
        "variant": encoder.variant,
        "dim": encoder.dim,
    }


def _chunks_done(work: Path, fingerprint: dict) -> int:
    """Chunks finished by an earlier run with the same fingerprint (0 when none or different)."""
    try:
        state = json.loads((work / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    if state.get("fingerprint") != fingerprint or not (work / "embeddings.npy").is_file():
        if state:
            logger.info("%s was started with other input or settings; starting over", work)
        return 0
    return int(state.get("chunks_done", 0))


def _start(work: Path, fingerprint: dict, ids: np.ndarray, n_rows: int, dim: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        work.mkdir(parents=True)
        pq.write_table(pa.table({"id": ids}), work / "ids.parquet")
        vectors = np.lib.format.open_memmap(work / "embeddings.npy", mode="w+", dtype=np.float32, shape=(n_rows, dim))
        del vectors
        _reserve(work / "embeddings.npy")
        _write_state(work, fingerprint, 0)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise write_error(work.parent, exc, what="write to") from exc


def _reserve(path: Path) -> None:
    """Allocate the blocks of the sparse file ``path`` now: a disk too small fails here with an
    error, not later with a crash (SIGBUS) while writing to the memory map."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    finally:
        os.close(fd)


def _write_state(work: Path, fingerprint: dict, chunks_done: int) -> None:
    staging = work / "state.json.tmp"
    staging.write_text(json.dumps({"fingerprint": fingerprint, "chunks_done": chunks_done}), encoding="utf-8")
    os.replace(staging, work / "state.json")


def _finish(work: Path, out: Path) -> None:
    """Move the ids, then the vectors into place: ``out`` appears last, when both are complete."""
    ids = ids_path_for(out)
    os.replace(work / "ids.parquet", ids)
    try:
        os.replace(work / "embeddings.npy", out)
    except OSError:
        ids.unlink(missing_ok=True)  # never ids without their vectors
        raise
    shutil.rmtree(work, ignore_errors=True)


def _difference(after: EncodeStats, before: EncodeStats) -> EncodeStats:
    return EncodeStats(**{key: value - getattr(before, key) for key, value in vars(after).items()})
