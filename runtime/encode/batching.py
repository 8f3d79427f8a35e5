"""Padding-aware batching: dedupe, length sorting, token-budget batches and padded input arrays.

Padding is the enemy: texts are sorted by tokenized length (longest first), each batch holds as
many texts as fit in a budget of padded tokens, and each batch is padded only to its own longest
text. A batch also ends where padding it to its first (longest) text would waste more than a
``max_padding`` fraction of its tokens. Lengths may be rounded up to a multiple of
``pad_multiple`` to limit the number of distinct input shapes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np


def dedupe(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Unique texts in first-seen order and ``inverse`` with ``unique[inverse[i]] == texts[i]``.

    Returns ``(unique, inverse)``; ``inverse`` is int64 of shape ``[len(texts)]``.
    """
    index: dict[str, int] = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    for position, text in enumerate(texts):
        inverse[position] = index.setdefault(text, len(index))
    return list(index), inverse


def round_up(length: int, multiple: int, limit: int) -> int:
    """``length`` rounded up to a multiple of ``multiple``, but never above ``limit``."""
    return min(-(-length // multiple) * multiple, max(limit, length))


def plan_batches(
    lengths: np.ndarray,
    *,
    max_tokens: int,
    max_batch_size: int,
    max_padding: float = 0.1,
    pad_multiple: int = 1,
    max_len: int | None = None,
) -> list[np.ndarray]:
    """Cut texts into batches whose padded size fits ``max_tokens``.

    ``lengths`` (int, shape ``[n]``) are token counts. Returns index arrays into ``lengths``,
    longest texts first, each batch sorted by decreasing length, together covering every index
    exactly once. A batch of ``b`` texts (at least one) has ``b <= max_batch_size``,
    ``b * padded_len <= max_tokens``, where ``padded_len`` is its longest length rounded by
    :func:`round_up` (capped at ``max_len``), and at most a ``max_padding`` fraction of padding
    tokens when padded to its longest text.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    ordered = lengths[order]
    limit = max_len if max_len is not None else np.iinfo(np.int64).max
    batches = []
    start = 0
    while start < len(order):
        longest = int(ordered[start])
        padded = round_up(longest, pad_multiple, limit)
        cap = max(1, min(max_batch_size, max_tokens // max(padded, 1)))
        sizes = np.arange(1, min(cap, len(order) - start) + 1)
        real = np.cumsum(ordered[start : start + len(sizes)])
        # Sorted by decreasing length, so the padding fraction only grows with the batch size.
        fits = sizes * longest - real <= max_padding * sizes * longest
        size = max(1, int(np.argmin(fits)) if not fits.all() else len(sizes))
        batches.append(order[start : start + size])
        start += size
    return batches


def pad_batch(
    encodings: Sequence,
    input_names: Sequence[str],
    *,
    pad_token_id: int,
    pad_multiple: int = 1,
    max_len: int,
) -> dict[str, np.ndarray]:
    """ONNX inputs for ``encodings`` (tokenizers ``Encoding`` objects, no padding applied).

    Returns int64 arrays of shape ``[batch, padded_len]`` for each name in ``input_names``
    (``input_ids``, ``attention_mask``, ``token_type_ids``), padded with ``pad_token_id`` to the
    longest encoding rounded up to ``pad_multiple`` (never beyond ``max_len``).
    """
    longest = max(len(encoding.ids) for encoding in encodings)
    width = round_up(longest, pad_multiple, max_len)
    input_ids = np.full((len(encodings), width), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(encodings), width), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        input_ids[row, : len(encoding.ids)] = encoding.ids
        attention_mask[row, : len(encoding.ids)] = 1
    arrays = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in input_names:
        arrays["token_type_ids"] = np.zeros_like(input_ids)
    return {name: arrays[name] for name in input_names}


def tokenize_ahead(tokenizer, texts: Sequence[str], window: int) -> Iterator[tuple[int, list]]:
    """Yield ``(start, encodings)`` for consecutive windows of ``texts``, tokenizing one ahead.

    While the caller runs inference on window ``k``, a background thread tokenizes window
    ``k + 1`` with the fast tokenizer's ``encode_batch`` (which releases the GIL).
    """
    starts = range(0, len(texts), window)
    if len(starts) <= 1:  # nothing to overlap with: no thread
        if starts:
            yield 0, tokenizer.encode_batch(list(texts))
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as pool:
        pending = pool.submit(tokenizer.encode_batch, list(texts[0:window]))
        for start in starts:
            encodings = pending.result()
            following = start + window
            if following < len(texts):
                pending = pool.submit(tokenizer.encode_batch, list(texts[following : following + window]))
            yield start, encodings
