"""The encoder a command uses: the model package chosen by :func:`tastemap.paths.resolve_model_dir`,
caching item embeddings in the shared embedding cache.

>>> encoder = make_encoder(None)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path


def default_cache_dir() -> Path:
    """Where item embeddings are cached between runs: ``embeddings`` in the tastemap folder
    (:func:`tastemap.paths.cache_dir`; ``~/.cache/tastemap/embeddings`` on Linux)."""
    from tastemap.paths import cache_dir

    return cache_dir("embeddings")


def make_encoder(model_dir: Path | None, *, cache_dir: Path | None = None, export_missing: bool = False,
                 device: str = "auto"):
    """An :class:`~tastemap.runtime.encode.encoder.Encoder` on ``device`` for ``model_dir``, or for
    the default package, which is exported first when ``export_missing`` (see
    :func:`tastemap.paths.resolve_model_dir`); item embeddings are cached in ``cache_dir``
    (default :func:`default_cache_dir`)."""
    from tastemap.paths import resolve_model_dir
    from tastemap.runtime.encode.encoder import Encoder

    model_dir = resolve_model_dir(model_dir, export_missing=export_missing)
    return Encoder(model_dir, device=device, cache_dir=cache_dir or default_cache_dir())
