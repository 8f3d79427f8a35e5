"""InterestProfiler: planted interests recovered, distinct users distinct, determinism, files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from tastemap.runtime.io.synthetic import make_synthetic
from tastemap.errors import InputError
from tastemap.runtime.interests.profile_io import read_profiles, strings, write_atomically, write_profiles
from tastemap.runtime.interests.profiles import InterestProfiler


@pytest.fixture(scope="module")
def planted():
    return make_synthetic(n_users=120, n_items=400, n_events=4_000, n_topics=6, dim=24, noise=0.4,
                          interests_per_user=(1, 2), seed=2)


@pytest.fixture(scope="module")
def fitted(planted):
    profiler = InterestProfiler(n_topics=6, n_coarse_topics=2, backend="sklearn", seed=0)
    return profiler.fit(planted.events, planted.catalog, planted.item_vectors)


def test_planted_interest_mixtures_are_recovered(planted, fitted):
    interests = fitted.profiles_.interests
    planted_counts = (planted.user_topics >= 0).sum(axis=1)
    clustered = interests.counts()
    fine = fitted.item_topics_[:, 1]
    indptr, positions = fitted.user_items_.recent(fitted.max_items_per_user)
    for user in range(120):
        found = interests.of_user(user)
        clustered_items = fitted.user_items_.items[positions[indptr[user]:indptr[user + 1]]]
        visible = np.unique(planted.item_topics[clustered_items]).size
        assert clustered[user] == visible, (user, planted.user_topics[user])
        assert sum(i.size for i in found) == clustered_items.size
        for interest in found:
            members_topics = planted.item_topics[interest.members]
            assert np.all(members_topics == members_topics[0])
            assert fine[interest.medoid] == interest.topic
            assert interest.medoid == interest.members[0]
        assert [i.importance for i in found] == sorted((i.importance for i in found), reverse=True)
        assert sum(i.share for i in found) == pytest.approx(1.0, rel=1e-5)
    assert (planted_counts == 2).sum() > 30


def test_different_histories_give_different_profiles(planted, fitted):
    topics = fitted.profiles_.topics[-1].toarray()
    single = planted.user_topics[:, 1] < 0
    a, b = np.flatnonzero(single & (planted.user_topics[:, 0] == 0))[:2]
    c = np.flatnonzero(single & (planted.user_topics[:, 0] == 3))[0]
    cosine = lambda u, v: float(topics[u] @ topics[v] / np.linalg.norm(topics[u]) / np.linalg.norm(topics[v]))  # noqa: E731
    assert cosine(a, b) > 0.99
    assert cosine(a, c) < 0.01
    vectors = fitted.profiles_.vectors
    assert vectors[a] @ vectors[b] > 0.9
    assert vectors[a] @ vectors[b] > vectors[a] @ vectors[c] + 0.5


def test_fit_is_deterministic_and_transform_matches(planted, fitted):
    again = InterestProfiler(n_topics=6, n_coarse_topics=2, backend="sklearn", seed=0).fit(
        planted.events, planted.catalog, planted.item_vectors)
    for name in ("medoid", "importance", "members", "indptr"):
        np.testing.assert_array_equal(getattr(again.profiles_.interests, name), getattr(fitted.profiles_.interests, name))
    np.testing.assert_array_equal(again.item_topics_, fitted.item_topics_)
    subset = planted.events[planted.events.user_id.isin([3, 7])]
    partial = fitted.transform(subset)
    assert partial.user_ids.tolist() == [3, 7]
    np.testing.assert_allclose(partial.topics[-1].toarray(), fitted.profiles_.topics[-1][[2, 6]].toarray())
    assert [i.medoid for i in partial.interests.of_user(1)] == [i.medoid for i in fitted.profiles_.interests.of_user(6)]


def test_interest_clustering_in_worker_processes_equals_the_clustering_in_process(planted, fitted, monkeypatch):
    from tastemap.runtime.interests import profiles

    monkeypatch.setattr(profiles, "CHUNK_USERS", 16)  # 8 tasks
    monkeypatch.setattr(profiles, "PARALLEL_USERS", 1)
    monkeypatch.setattr(profiles, "usable_cores", lambda: 2)
    parallel = InterestProfiler(n_topics=6, n_coarse_topics=2, backend="sklearn", seed=0).fit(
        planted.events, planted.catalog, planted.item_vectors)
    for name in ("indptr", "medoid", "importance", "share", "size", "topic", "member_indptr", "members"):
        np.testing.assert_array_equal(getattr(parallel.profiles_.interests, name),
                                      getattr(fitted.profiles_.interests, name))


def test_encoder_objects_are_called_with_item_texts(planted):
    class FakeEncoder:
        def __init__(self):
            self.calls = []

        def encode(self, texts):
            self.calls.append(list(texts))
            if len(texts) == 400:
                return planted.item_vectors * 3.0
            return np.random.default_rng(len(texts)).normal(size=(len(texts), 24))  # label phrases

    encoder = FakeEncoder()
    profiler = InterestProfiler(n_topics=6, n_coarse_topics=None, backend="sklearn").fit(
        planted.events, planted.catalog, encoder)
    texts = encoder.calls[0]
    assert len(texts) == 400 and texts[0].startswith(planted.catalog.title[0])
    assert len(encoder.calls) >= 2  # the candidate label phrases are encoded too
    np.testing.assert_allclose(np.linalg.norm(profiler.item_vectors_, axis=1), 1.0, rtol=1e-5)
    assert len(profiler.topic_tree_.levels) == 1


def test_profiles_files_round_trip(tmp_path, fitted):
    written = write_profiles(fitted, tmp_path, extra={"model": "test"})
    assert sorted(written) == ["profiles.jsonl", "profiles.parquet", "topics.json"]
    back = read_profiles(tmp_path)
    profiles = fitted.profiles_
    np.testing.assert_array_equal(back.user_ids, profiles.user_ids)
    for mine, theirs in zip(back.topics + back.categories, profiles.topics + profiles.categories):
        np.testing.assert_allclose(mine.toarray(), theirs.toarray())
    np.testing.assert_allclose(back.vectors, profiles.vectors)
    rows = [json.loads(line) for line in (tmp_path / "profiles.jsonl").read_text().splitlines()]
    assert len(rows) == 120 and "vector" not in rows[0]
    first = profiles.interests.of_user(0)[0]
    assert rows[0]["interests"][0]["medoid_item_id"] == int(fitted.item_ids_[first.medoid])
    assert rows[0]["interests"][0]["item_ids"] == fitted.item_ids_[first.members].tolist()
    assert [t["weight"] for t in rows[0]["long_term"]] == sorted((t["weight"] for t in rows[0]["long_term"]), reverse=True)
    table = pq.read_table(tmp_path / "profiles.parquet")
    assert table.column_names == ["user_id", "n_events", "last_seen", "short_term", "long_term", "topics",
                                  "categories", "interests", "vector"]
    topics = json.loads((tmp_path / "topics.json").read_text())
    assert topics["model"] == "test" and topics["backend"] == "sklearn" and topics["n_topics"] == [2, 6]


def test_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("old")

    def fail(path):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path, {"a.txt": lambda p: p.write_text("new"), "b.txt": fail})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old"


@pytest.mark.parametrize("params, message", [
    ({"n_topics": 1}, "n_topics=1 should be an integer >= 2"),
    ({"distance_threshold": 0}, "distance_threshold=0 should be > 0"),
    ({"max_items_per_user": 0}, "max_items_per_user=0 should be an integer >= 1"),
    ({"backend": "gpu"}, "backend='gpu' is not supported"),
])
def test_invalid_params(planted, params, message):
    with pytest.raises(InputError, match=message):
        InterestProfiler(**params).fit(planted.events, planted.catalog, planted.item_vectors)


def test_vectors_must_match_catalog(planted):
    with pytest.raises(InputError, match=r"item vectors have shape \(10, 24\); expected \[n_items=400, dim\]"):
        InterestProfiler(n_topics=6, n_coarse_topics=2).fit(planted.events, planted.catalog, planted.item_vectors[:10])
    with pytest.raises(InputError, match="not fitted yet"):
        InterestProfiler().transform(pd.DataFrame())


def test_clone_keeps_the_parameters_and_drops_the_fit(fitted):
    twin = clone(InterestProfiler(n_topics=20))
    assert twin.n_topics == 20 and twin.get_params() == InterestProfiler(n_topics=20).get_params()
    refit = clone(fitted)
    assert refit.get_params() == fitted.get_params()
    assert not hasattr(refit, "profiles_")
    params = fitted.get_params()
    assert InterestProfiler().set_params(**params).get_params() == params


def test_unfitted_profiler_says_how_to_fit():
    with pytest.raises(NotFittedError, match=r"this InterestProfiler is not fitted yet; "
                                             r"call fit\(events, catalog, item_vectors\) first"):
        InterestProfiler(n_topics=20).transform(pd.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [3]}))


def test_fit_with_only_the_required_columns(planted, fitted):
    events = pd.DataFrame(planted.events[["user_id", "item_id", "timestamp"]].to_dict("list"))
    catalog = pd.DataFrame(planted.catalog[["item_id", "title"]].to_dict("list"))
    profiler = InterestProfiler(n_topics=6, n_coarse_topics=2, backend="sklearn", seed=0).fit(
        events, catalog, planted.item_vectors)
    check_is_fitted(profiler)
    assert profiler.profiles_.n_users == fitted.profiles_.n_users
    assert profiler.category_levels_ == [] and profiler.profiles_.categories == []
    from tastemap.runtime.interests.topics import fit_topic_tree

    tree, _ = fit_topic_tree(planted.item_vectors, profiler.item_texts_, n_topics=6, n_coarse_topics=2,
                             backend="sklearn", seed=0)
    np.testing.assert_array_equal(profiler.item_topics_[:, -1], tree.fine.labels)  # without categories: the vectors
    assert profiler.profiles_.interests.counts().sum() > 0
    later = profiler.transform(events[events.user_id.isin(planted.events.user_id.unique()[:3])])
    assert later.n_users == 3
    text_dates = events.assign(timestamp=pd.to_datetime(events.timestamp, unit="s").astype(str))
    again = InterestProfiler(n_topics=6, n_coarse_topics=2, backend="sklearn", seed=0).fit(
        text_dates, catalog.assign(categories=["Books > Crime"] * len(catalog)), planted.item_vectors)
    assert [level.names for level in again.category_levels_] == [["Books"], ["Books > Crime"]]


# one interest per real interest ------------------------------------------------------------------

from planted import make_planted_interests  # noqa: E402
from tastemap.bench.interests import interest_figures  # noqa: E402
from tastemap.runtime.interests.partition import InterestScale, partition_user  # noqa: E402
from tastemap.runtime.interests.profiles import interest_label, shared_topic  # noqa: E402


@pytest.fixture(scope="module")
def planted_interests():
    data = make_planted_interests(150, seed=1)
    profiler = InterestProfiler(n_topics=32, n_coarse_topics=8, backend="sklearn", seed=0)
    return data, profiler.fit(data.events, data.catalog, data.item_vectors)


def test_planted_interests_are_neither_split_nor_merged(planted_interests):
    data, profiler = planted_interests
    figures = interest_figures(profiler.profiles_.interests, data.item_category)
    assert figures["split_share"] <= 0.10
    assert figures["merged_share"] <= 0.05
    assert figures["purity"] >= 0.95 and figures["recall"] >= 0.95
    assert abs(figures["interests_per_user"] - figures["planted_per_user"]) < 0.3


def _clusters(rng, centres, sizes, noise):
    x = np.concatenate([c + noise * rng.normal(size=(n, c.size)) for c, n in zip(centres, sizes)])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_a_large_interest_with_sub_groups_stays_one():
    rng = np.random.default_rng(0)
    dim = 48
    interest = rng.normal(size=dim)
    subs = [interest + 0.8 * rng.normal(size=dim) for _ in range(3)]  # three franchises of one taste
    x = _clusters(rng, subs, (12, 12, 12), 0.9 / np.sqrt(dim) * 6)
    scale = InterestScale(centre=np.zeros(dim, np.float32), prior=0.3)
    labels = partition_user(x, scale, distance_threshold=1.5, max_interests=8)
    assert labels.max() == 0
    # the fixed Ward threshold of the previous cut splits it
    from scipy.cluster.hierarchy import linkage

    from tastemap.runtime.interests.profiles import cut_tree
    upper = np.triu_indices(len(x), 1)
    tree = linkage(np.sqrt(np.maximum(2 - 2 * (x @ x.T)[upper], 0)), method="ward")
    assert cut_tree(tree, len(x), int((tree[:, 2] <= 1.5).sum())).max() >= 1


def test_two_related_but_different_interests_are_not_merged():
    rng = np.random.default_rng(1)
    dim = 48
    shared = rng.normal(size=dim)
    centres = [shared + 1.2 * rng.normal(size=dim) for _ in range(2)]  # siblings: same group, two tastes
    x = _clusters(rng, centres, (10, 4), 0.25)
    scale = InterestScale(centre=np.zeros(dim, np.float32), prior=0.5)
    labels = partition_user(x, scale, distance_threshold=1.5, max_interests=8)
    assert labels.max() == 1
    assert np.all(labels[:10] == labels[0]) and np.all(labels[10:] == labels[10]) and labels[0] != labels[10]


def test_an_interest_is_labelled_by_what_its_members_share(planted_interests):
    _, profiler = planted_interests
    topics, tree = profiler.item_topics_, profiler.topic_tree_
    fine = np.flatnonzero(topics[:, 1] == 0)[:6]
    assert shared_topic(fine, topics)[:2] == (1, 0)
    assert interest_label(fine, topics, tree) == tree.fine.names[0]
    siblings = np.concatenate([np.flatnonzero(topics[:, 1] == c)[:3] for c in np.flatnonzero(tree.fine.parents == 0)[:2]])
    level, topic, share = shared_topic(siblings, topics)
    assert (level, topic) == (0, 0) and share == 1.0
    spread = np.array([np.flatnonzero(topics[:, 0] == c)[0] for c in range(4)])
    assert shared_topic(spread, topics)[0] == -1
    assert interest_label(spread, topics, tree).startswith("a mix of ")


def test_merging_close_interests_keeps_every_pair_it_did_not_merge():
    from tastemap.runtime.interests import partition

    def reference(groups, gram, prior, min_affinity, max_interests):  # every pair scored again after each merge
        groups = list(groups)
        while len(groups) > 1:
            best, pair = -np.inf, None
            for i in range(len(groups)):
                for j in range(i + 1, len(groups)):
                    value = partition.affinity(gram, groups[i], groups[j], prior)
                    if value > best:
                        best, pair = value, (i, j)
            if best < min_affinity and len(groups) <= max_interests:
                break
            i, j = pair
            groups[i] = np.concatenate([groups[i], groups[j]])
            del groups[j]
        return groups

    rng = np.random.default_rng(11)
    for trial in range(30):
        x = rng.standard_normal((int(rng.integers(2, 40)), 16))
        units = x / np.linalg.norm(x, axis=1, keepdims=True)
        gram = units @ units.T
        groups = np.array_split(rng.permutation(len(x)), int(rng.integers(1, min(12, len(x)) + 1)))
        min_affinity, max_interests = rng.uniform(-0.2, 0.6), int(rng.integers(1, 6))
        mine = partition._merge_close(groups, gram, 0.1, min_affinity, 3.0, max_interests)
        theirs = reference(groups, gram, 0.1, min_affinity, max_interests)
        assert [g.tolist() for g in mine] == [g.tolist() for g in theirs], trial


def test_titles_become_one_arrow_array_however_many():
    """pyarrow chunks a NumPy unicode array of a million strings, which a struct field of the
    profiles table cannot hold (a model of a million users failed to save)."""
    titles = np.array(["a title of twenty-three"] * 1_000_000)
    found = strings(titles)
    assert isinstance(found, pa.StringArray) and len(found) == 1_000_000 and found[0].as_py() == titles[0]
    assert strings(np.array([12, "x", 3.5], dtype=object)).to_pylist() == ["12", "x", "3.5"]
