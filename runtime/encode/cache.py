"""On-disk embedding cache, so that a catalog is re-encoded incrementally.

Entries are keyed by (model key, variant, text hash). The model key is the sha256 of the
variant's ONNX file combined with the sha256 of ``tokenizer.json`` and the maximum sequence
length, so re-exporting a model (or changing its tokenizer) starts a fresh cache instead of
returning stale vectors. One SQLite file per (model key, variant) holds ``text hash -> float32
vector`` rows; SQLite makes concurrent readers and an interrupted writer safe.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np

from tastemap.errors import InputError

logger = logging.getLogger(__name__)

_QUERY_CHUNK = 500  # below SQLite's limit on bound parameters


def hash_text(text: str) -> bytes:
    """16-byte BLAKE2b digest of a text's UTF-8 bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def model_key(variant_sha256: str, tokenizer_sha256: str, max_seq_len: int) -> str:
    """Hex digest identifying what produces the vectors: ONNX file, tokenizer, truncation length."""
    material = f"{variant_sha256}:{tokenizer_sha256}:{max_seq_len}".encode()
    return hashlib.sha256(material).hexdigest()


class EmbeddingCache:
    """Vectors of shape ``[dim]`` (float32) stored under ``cache_dir`` for one model and variant."""

    def __init__(self, cache_dir: str | Path, *, key: str, variant: str, dim: int):
        self.cache_dir = Path(cache_dir)
        self.key = key
        self.variant = variant
        self.dim = dim
        self._connection: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        return self.cache_dir / f"{self.key[:32]}.{self.variant}.sqlite"

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(self.path, check_same_thread=False)
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS vectors (hash BLOB PRIMARY KEY, vector BLOB NOT NULL)"
                    " WITHOUT ROWID"
                )
                connection.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
                connection.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('key', ?), ('variant', ?), ('dim', ?)",
                    (self.key, self.variant, str(self.dim)),
                )
                connection.commit()
                stored = dict(connection.execute("SELECT name, value FROM meta"))
            except (OSError, sqlite3.Error) as exc:
                raise InputError(f"cannot use the embedding cache {self.path}: {exc}") from exc
            expected = {"key": self.key, "variant": self.variant, "dim": str(self.dim)}
            if stored != expected:
                connection.close()
                raise InputError(
                    f"the embedding cache {self.path} belongs to {stored}, not {expected}; "
                    f"delete the file to rebuild it"
                )
            self._connection = connection
        return self._connection

    def get(self, hashes: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Look up ``hashes``: returns ``(found, vectors)``.

        ``found`` is an int64 array of positions in ``hashes`` that are cached and ``vectors``
        their float32 vectors, shape ``[len(found), dim]``.
        """
        connection = self._connect()
        rows: dict[bytes, bytes] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), _QUERY_CHUNK):
            chunk = unique[start : start + _QUERY_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows.update(connection.execute(f"SELECT hash, vector FROM vectors WHERE hash IN ({marks})", chunk))
        found = [position for position, digest in enumerate(hashes) if digest in rows]
        vectors = np.empty((len(found), self.dim), dtype=np.float32)
        for row, position in enumerate(found):
            vectors[row] = np.frombuffer(rows[hashes[position]], dtype=np.float32)
        return np.asarray(found, dtype=np.int64), vectors

    def put(self, hashes: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store ``vectors`` (float32, shape ``[len(hashes), dim]``) under ``hashes``."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        connection = self._connect()
        with connection:
            connection.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                ((digest, vector.tobytes()) for digest, vector in zip(hashes, vectors)),
            )

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
