"""Batching helpers: dedupe, token-budget batches, padding, tokenizing ahead."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tastemap.runtime.encode.batching import dedupe, pad_batch, plan_batches, round_up, tokenize_ahead


def test_dedupe_keeps_first_seen_order_and_inverse():
    unique, inverse = dedupe(["b", "a", "b", "c", "a"])
    assert unique == ["b", "a", "c"]
    assert inverse.tolist() == [0, 1, 0, 2, 1]


@pytest.mark.parametrize(("length", "multiple", "limit", "expected"), [(9, 8, 128, 16), (16, 8, 128, 16), (9, 1, 128, 9), (125, 8, 128, 128), (130, 8, 128, 130)])
def test_round_up(length, multiple, limit, expected):
    assert round_up(length, multiple, limit) == expected


def test_plan_batches_respects_budget_and_covers_every_index_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=500)
    batches = plan_batches(lengths, max_tokens=640, max_batch_size=32, pad_multiple=8, max_len=128)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for batch in batches:
        padded = round_up(int(lengths[batch].max()), 8, 128)
        assert len(batch) * padded <= 640 and len(batch) <= 32
        assert (np.diff(lengths[batch]) <= 0).all()
    assert lengths[batches[0][0]] == lengths.max()


def test_plan_batches_cuts_exact_sizes():
    lengths = np.array([3, 10, 10, 3, 3, 3])
    batches = plan_batches(lengths, max_tokens=20, max_batch_size=8, pad_multiple=1)
    assert [b.tolist() for b in batches] == [[1, 2], [0, 3, 4, 5]]


def test_plan_batches_keeps_a_text_longer_than_the_budget():
    batches = plan_batches(np.array([50, 2]), max_tokens=16, max_batch_size=8, pad_multiple=1)
    assert [b.tolist() for b in batches] == [[0], [1]]


def _encoding(ids):
    return SimpleNamespace(ids=ids)


def test_pad_batch_pads_to_rounded_longest():
    inputs = pad_batch(
        [_encoding([101, 7, 102]), _encoding([101, 102])],
        ("input_ids", "attention_mask", "token_type_ids"),
        pad_token_id=0,
        pad_multiple=4,
        max_len=128,
    )
    assert inputs["input_ids"].tolist() == [[101, 7, 102, 0], [101, 102, 0, 0]]
    assert inputs["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert inputs["token_type_ids"].tolist() == [[0] * 4, [0] * 4]
    assert all(array.dtype == np.int64 for array in inputs.values())


def test_pad_batch_omits_token_type_ids_when_the_model_has_none():
    inputs = pad_batch([_encoding([1, 2])], ("input_ids", "attention_mask"), pad_token_id=9, pad_multiple=1, max_len=8)
    assert list(inputs) == ["input_ids", "attention_mask"]


def test_tokenize_ahead_yields_every_window_in_order():
    class Upper:
        def encode_batch(self, texts):
            return [text.upper() for text in texts]

    texts = [f"t{i}" for i in range(7)]
    windows = list(tokenize_ahead(Upper(), texts, window=3))
    assert windows == [(0, ["T0", "T1", "T2"]), (3, ["T3", "T4", "T5"]), (6, ["T6"])]
    assert list(tokenize_ahead(Upper(), [], window=3)) == []
