"""EmbeddingCache on its own: round trip, misses, and a file that belongs to another model."""

from __future__ import annotations

import numpy as np
import pytest

from tastemap.errors import InputError
from tastemap.runtime.encode.cache import EmbeddingCache, hash_text, model_key


def test_round_trip_and_misses(tmp_path):
    cache = EmbeddingCache(tmp_path, key=model_key("a" * 64, "b" * 64, 128), variant="int8", dim=3)
    hashes = [hash_text(text) for text in ("x", "y", "z")]
    cache.put(hashes[:2], np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
    found, vectors = cache.get([hashes[2], hashes[1], hashes[0], hashes[1]])
    assert found.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(vectors, [[4, 5, 6], [1, 2, 3], [4, 5, 6]])
    assert len(cache) == 2
    cache.close()


def test_keys_differ_with_every_part():
    base = model_key("a" * 64, "b" * 64, 128)
    assert len({base, model_key("c" * 64, "b" * 64, 128), model_key("a" * 64, "c" * 64, 128), model_key("a" * 64, "b" * 64, 256)}) == 4
    assert hash_text("é") != hash_text("e") and len(hash_text("")) == 16


def test_a_file_of_another_shape_is_refused(tmp_path):
    key = model_key("a" * 64, "b" * 64, 128)
    EmbeddingCache(tmp_path, key=key, variant="int8", dim=3).put([hash_text("x")], np.zeros((1, 3)))
    with pytest.raises(InputError, match=r"belongs to \{'key': '.*', 'variant': 'int8', 'dim': '3'\}, not .*'dim': '4'\}; delete the file to rebuild it"):
        EmbeddingCache(tmp_path, key=key, variant="int8", dim=4).get([hash_text("x")])
