"""The vectorised explanations (``explain_items``) against the rule applied item by item, and the
pieces they are built from."""

import numpy as np
import pandas as pd
import pytest

from planted import make_planted, make_recommender
from tastemap.runtime.io.events import align_events
from tastemap.runtime.recommend import explain, serving
from tastemap.runtime.recommend.explain import explain_items, explain_user_items, interest_name, interest_names
from tastemap.runtime.recommend.ground import COMMON_INFORMATION, Shared, item_terms
from tastemap.runtime.recommend.recommender import LAYER_NAMES

GENRES = ["Western", "Horror", "Musical", "Crime"]
TAGS = ["twist ending", "based on a book", "dark humor", "time travel", "cult classic"]


def tagged_catalog(catalog: pd.DataFrame) -> pd.DataFrame:
    """The planted catalog with genres a person can name: each topic's own genre, ``Drama`` on most
    items (a common ground), a second genre on some, and tags shared across topics (phrases)."""
    rows = np.arange(len(catalog))
    topic = rows // 30
    categories = [[(GENRES[t],)] + ([("Drama",)] if i % 4 else []) + ([(GENRES[(t + 1) % 4],)] if i % 7 == 0 else [])
                  for i, t in zip(rows, topic)]
    tags = [[TAGS[t]] if i % 3 else [TAGS[4]] if i % 6 else [] for i, t in zip(rows, topic)]
    return catalog.assign(categories=categories, tags=tags)


@pytest.fixture(scope="module")
def fitted():
    events, catalog, vectors, _ = make_planted(40)
    catalog = tagged_catalog(catalog)
    data, _ = align_events(events, catalog)
    return make_recommender().fit(data, catalog, vectors)


def top_recommendations(recommender, k: int = 10):
    rows = np.arange(recommender.user_index_.size)
    scored = serving.score_candidates(recommender, rows, recommender.state_, segments=recommender._segments_of(rows))
    top = scored.top(k)
    components = list(scored.layers(top))
    return rows[scored.rows[top]], scored.items[top], components, [LAYER_NAMES[c] for c in components]


def test_batch_explanations_are_the_item_by_item_rule(fitted):
    users, items, components, layers = top_recommendations(fitted)
    batch = explain_items(fitted, users, items, fitted.state_, components, layers, None)
    one_by_one = []
    for user in np.unique(users):
        mine = np.flatnonzero(users == user)
        explained = explain_user_items(fitted, int(user), items[mine], fitted.state_, [components[i] for i in mine],
                                       [layers[i] for i in mine], None)
        one_by_one += list(zip(mine, explained))
    assert len(batch) == len(one_by_one) == users.size
    for position, expected in one_by_one:
        assert batch[position] == expected
    grounds = {e.topic for e in batch}
    assert "drama" in grounds and any(tag in ground for ground in grounds for tag in TAGS)  # both kinds of ground
    assert all(e.seed_item_ids for e in batch) and np.mean([e.agrees for e in batch]) > 0.9
    # the order of the recommendations does not matter
    shuffled = np.random.default_rng(0).permutation(users.size)
    again = explain_items(fitted, users[shuffled], items[shuffled], fitted.state_, [components[i] for i in shuffled],
                          [layers[i] for i in shuffled], None)
    assert list(again) == [batch[i] for i in shuffled]


def test_blocks_of_any_size_give_the_same_explanations(fitted, monkeypatch):
    users, items, components, layers = top_recommendations(fitted)
    whole = explain_items(fitted, users, items, fitted.state_, components, layers, None)
    monkeypatch.setattr(explain, "MEMBER_BUDGET", 30)  # a user or two per block
    assert explain_items(fitted, users, items, fitted.state_, components, layers, None) == whole
    assert len(explain_items(fitted, users[:0], items[:0], fitted.state_, [], [], None)) == 0


def test_recommend_batch_explains_like_recommend(fitted):
    frame = fitted.recommend_batch([0, 7], k=5)
    single = [r.explanation.describe() for user in (0, 7) for r in fitted.recommend(user, k=5)]
    assert frame["explanation"].tolist() == single


def test_shared_many_matches_shared_pair_by_pair(fitted):
    terms = item_terms(fitted.profiler_)
    rng = np.random.default_rng(1)
    items, others = rng.integers(0, 120, 400), rng.integers(0, 120, 400)
    many = terms.shared_many(items, others)
    for p, (item, other) in enumerate(zip(items, others)):
        one = terms.shared(int(item), int(other))
        assert terms.term_names(many.words[p]) == one.words
        assert (many.has_phrase[p], many.has_categories[p]) == (bool(one.phrases), bool(one.categories))
        assert many.information[p] == one.information and many.phrase_information[p] == one.phrase_information
        assert many.common[p] == one.common
    assert many.any.mean() > 0.5 and many.has_phrase.any()
    assert terms.item_phrases(0) == frozenset()  # item 0 has no tag
    assert terms.item_phrases(31) == frozenset({"based", "book"})  # "based on a book": stop words break it
    assert terms.item_phrases(61) == frozenset({"dark humor"})


def test_a_common_ground_names_terms_on_many_items():
    assert Shared(categories=("drama",), information=0.7).common
    assert not Shared(categories=("film-noir",), information=COMMON_INFORMATION + 0.1).common
    assert not Shared(phrases=("twist ending",), categories=("drama",), information=0.7, phrase_information=4.0).common
    assert Shared(phrases=("action",), phrase_information=1.7).common  # a genre written in the text


def categories_most_members_carry(members, terms) -> str:
    """The categories half of an interest's members carry, counted one interest at a time."""
    held = np.bincount(np.concatenate([terms.nodes(int(m)) for m in members]), minlength=terms.n_nodes)
    common = np.flatnonzero(held > 0.5 * len(members))
    common = np.setdiff1d(common, terms.parents[common])
    return " and ".join(str(terms.names[n]) for n in common[np.lexsort((common, -held[common]))][:2])


def test_interest_names_match_one_at_a_time(fitted):
    interests = fitted.state_.interests
    groups = [interests.members[interests.member_indptr[i]:interests.member_indptr[i + 1]]
              for i in range(interests.member_indptr.size - 1)]
    names = interest_names(groups, fitted.profiler_)
    assert names == [interest_name(g, fitted.profiler_) for g in groups]
    terms = item_terms(fitted.profiler_)
    by_categories = [categories_most_members_carry(g, terms) for g in groups]
    assert sum(map(bool, by_categories)) > len(groups) / 2
    for name, expected in zip(names, by_categories):
        assert name == expected if expected else (", " in name or name.startswith("like “")), name


def test_a_saved_model_keeps_the_phrase_table_a_scan_of_the_texts_gives(tmp_path, monkeypatch):
    from tastemap.runtime.pipeline.model import TastemapModel
    from tastemap.runtime.recommend import ground

    events, catalog, vectors, _ = make_planted(40)
    data, _ = align_events(events, tagged_catalog(catalog))
    model = TastemapModel.fit(data, tagged_catalog(catalog), vectors, recommender=make_recommender())
    scanned = item_terms(model.recommender.profiler_)
    assert scanned.phrases.shape == (120, 4) and scanned.phrases.nnz == 80
    loaded = TastemapModel.load(model.save(tmp_path / "model"))
    monkeypatch.setattr(ground, "phrase_matrix", lambda *args: pytest.fail("the texts were scanned again"))
    terms = item_terms(loaded.recommender.profiler_)
    assert terms.keys.tolist() == scanned.keys.tolist() and (terms.phrases != scanned.phrases).nnz == 0
    for user in model.user_ids[:5]:
        assert [r.explanation for r in loaded.recommend(user, k=5)] == [r.explanation for r in model.recommend(user, k=5)]
