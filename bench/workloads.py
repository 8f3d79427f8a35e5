"""Encoder workloads built from MovieLens: short queries, catalog item texts, long documents.

- ``queries``: ``"<genre> movies like <title>"`` with a tag when the movie has one, kept when the
  model's tokenizer gives 10 to 16 tokens (special tokens included);
- ``items``: the catalog item texts of :func:`tastemap.runtime.io.events.render_item_texts` (title,
  genres, tags);
- ``long``: item texts of random movies concatenated until the text reaches ~256 tokens (the model
  truncates at its maximum length).

Every workload is a list of distinct texts, so an encoder that deduplicates gains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORKLOADS = ("queries", "items", "long")
QUERY_TOKENS = (10, 16)
LONG_TOKENS = 256


@dataclass(frozen=True)
class Workload:
    """Texts and their real token counts ``[n]`` (special tokens included, after truncation)."""

    name: str
    texts: list[str]
    tokens: np.ndarray
    description: str

    @property
    def mean_tokens(self) -> float:
        return float(self.tokens.mean())

    def context(self) -> dict:
        return {"n_texts": len(self.texts), "mean_tokens": round(self.mean_tokens, 2),
                "max_tokens": int(self.tokens.max()), "description": self.description}


def make_workloads(tokenizer, names: tuple[str, ...], sizes: dict[str, int], seed: int = 0) -> dict[str, Workload]:
    """The workloads ``names`` with ``sizes[name]`` texts each, tokenized by ``tokenizer``.

    ``tokenizer`` is a ``tokenizers.Tokenizer`` set to truncate at the model's maximum length
    (:meth:`tastemap.export.ModelPackage.load_tokenizer`).
    """
    from tastemap.runtime.io.events import load_movielens, render_item_texts

    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        from tastemap.errors import InputError

        raise InputError(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)}")
    _, catalog = load_movielens()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(catalog))
    catalog = catalog.iloc[order].reset_index(drop=True)
    items = list(dict.fromkeys(render_item_texts(catalog)))
    builders = {
        "queries": lambda n: _queries(catalog, tokenizer, n),
        "items": lambda n: (items[:n], "MovieLens item texts (title, genres, tags)"),
        "long": lambda n: _long(items, tokenizer, n, rng),
    }
    workloads = {}
    for name in names:
        texts, description = builders[name](sizes[name])
        workloads[name] = Workload(name, texts, count_tokens(tokenizer, texts), description)
    return workloads


def count_tokens(tokenizer, texts: list[str]) -> np.ndarray:
    """Real tokens per text ``[n]`` int64, special tokens included, after truncation."""
    return np.fromiter((len(e.ids) for e in tokenizer.encode_batch(texts)), dtype=np.int64, count=len(texts))


def _queries(catalog, tokenizer, n: int) -> tuple[list[str], str]:
    candidates = []
    for title, categories, tags in zip(catalog["title"], catalog["categories"], catalog["tags"]):
        genre = categories[0][0].lower() if categories else "classic"
        text = f"{genre} movies like {title}" + (f" with {tags[0]}" if tags else "")
        candidates.append(text)
    candidates = list(dict.fromkeys(candidates))
    lengths = count_tokens(tokenizer, candidates)
    low, high = QUERY_TOKENS
    inside = [text for text, length in zip(candidates, lengths) if low <= length <= high]
    if len(inside) < n:  # a tokenizer with a small vocabulary: take the closest lengths
        closeness = np.argsort(np.abs(lengths - (low + high) / 2), kind="stable")
        inside = [candidates[i] for i in closeness]
    return inside[:n], f"short queries of {low}-{high} tokens ('<genre> movies like <title>')"


def _long(items: list[str], tokenizer, n: int, rng: np.random.Generator) -> tuple[list[str], str]:
    texts = []
    for _ in range(n):
        parts: list[str] = []
        length = 0
        while length < LONG_TOKENS:
            piece = items[int(rng.integers(len(items)))]
            parts.append(piece)
            length += len(tokenizer.encode(piece, add_special_tokens=False).ids)
        texts.append(" ".join(parts))
    return texts, f"documents of ~{LONG_TOKENS} tokens (item texts joined; truncated at the model's maximum length)"
