"""Phrases cut from a whole catalogue at once, and labels that name medoid titles."""

import numpy as np
import pytest

from tastemap.runtime.interests import labels
from tastemap.runtime.interests.labels import (
    is_medoid_label,
    medoid_label,
    phrase_matrix,
    quoted_title,
    stop_word_set,
    text_phrases,
)

STOP = stop_word_set(["tags"])
TEXTS = [
    "Back to the Future Part III (1990). Adventure, Comedy, Sci-Fi. Tags: time travel, sci fi, Sci-Fi",
    "Foo 1995)bar. film-noir; Film Noir! world war ii / ii war x-men 3 - baz > qux & quux",
    "",
    "l'amour d'été: the dog's day, rock-n-roll '90s mind-bending",
    "a b c de fgh. ΑΣ mind ΑΣ",
    "null\x00byte film noir",
    "Tags: twist ending, twist ending, twist-ending. Time Travel",
]


def test_phrase_matrix_is_text_phrases_for_every_text(monkeypatch):
    per_text = [{key for key, _ in text_phrases(text, STOP)} for text in TEXTS]
    keys = sorted(set().union(*per_text)) + ["never used"]
    monkeypatch.setattr(labels, "PHRASE_CHUNK", 3)  # texts cut across chunks
    matrix = phrase_matrix(TEXTS, keys, STOP)
    assert matrix.shape == (len(TEXTS), len(keys)) and set(matrix.data.tolist()) == {1}
    for row, expected in enumerate(per_text):
        assert {keys[j] for j in matrix[row].indices} == expected, TEXTS[row]
    assert {"sci fi", "film noir", "time travel", "twist ending", "world war ii"} <= set(keys)
    assert matrix[:, keys.index("never used")].nnz == 0


def test_phrase_matrix_finds_only_the_keys_asked_for():
    matrix = phrase_matrix(TEXTS, ["sci fi", "film noir", "twist ending"], STOP)
    assert matrix.toarray().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert phrase_matrix([], ["sci fi"], STOP).shape == (0, 1)
    assert phrase_matrix(["a text"], [], STOP).shape == (1, 0)


def test_phrase_matrix_scales_linearly():
    rng = np.random.default_rng(0)
    words = ["space", "opera", "film", "noir", "time", "travel", "dark", "humor", "the", "of", "1999", "ii"]
    texts = [" ".join(rng.choice(words, 12)) + ". Tags: time travel" for _ in range(20_000)]
    matrix = phrase_matrix(texts, ["time travel", "space opera", "film noir"], STOP)
    assert matrix[:, 0].nnz == 20_000
    sample = rng.choice(20_000, 200, replace=False)
    for row in sample:
        found = {key for key, _ in text_phrases(texts[row], STOP)}
        expected = [k in found for k in ("time travel", "space opera", "film noir")]
        assert expected == matrix[row].toarray()[0].astype(bool).tolist()


@pytest.mark.parametrize("title, quoted", [
    ("They (2002)", "“They” (2002)"),
    ("Night, The (Notte, La) (1961)", "“The Night” (1961)"),
    ("Heat", "“Heat”"),
    ("Cosmos (1980-1981)", "“Cosmos” (1980-1981)"),
])
def test_a_medoid_title_is_quoted_with_its_year(title, quoted):
    assert quoted_title(title) == quoted


def test_medoid_labels_read_as_titles():
    name = medoid_label(["They (2002)", "Boys (1996)", "Mother (1996)"])
    assert name == "like “They” (2002), “Boys” (1996)"
    assert is_medoid_label(name) and not is_medoid_label("comedy, crime")
    assert medoid_label(["Mother (1996)"], 1) == "like “Mother” (1996)"
