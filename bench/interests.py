"""Interest quality: planted interests recovered per user, and explanations checked on MovieLens.

``python -m tastemap.bench.interests`` runs both parts and prints one JSON document (``--out``
writes it to a file); ``--part planted`` or ``--part movielens`` runs one.

**Planted** (:func:`make_planted_interests`): users with one to four long-term interests and a
recent burst, drawn from 32 fine categories in 8 groups. Per user, the interests found by
:class:`~tastemap.runtime.interests.profiles.InterestProfiler` over the items it clusters are
compared with the planted ones (:func:`interest_figures`): the share of users with a planted
interest split (it is the majority of two or more found interests), the share with two planted
interests merged (one found interest holds at least two items of each), item purity (an item's
found interest has the item's planted interest as its majority) and item recall (the share of a
planted interest's items in the found interest holding most of them).

**MovieLens** (:func:`movielens_figures`): the label rules per topic level (duplicates, stop
words, numbers), the share of users with two interests under one label, and for the top-10
recommendations of every user: the share of explanations whose label's topic (fine or coarse) is
the recommended item's and at least one seed's, and a deletion test (the seed items removed from
the history: how often the item's score drops, and how often it leaves the top 10). The
leave-last-out HR@10 and NDCG@10 of tastemap are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

START = 1_600_000_000
DAY = 86_400


@dataclass(frozen=True)
class PlantedInterests:
    """A planted log: ``events`` (``user_id, item_id, timestamp, weight``), ``catalog`` (``item_id,
    title, categories``), unit ``item_vectors`` ``[n_items, dim]``, ``item_category`` ``[n_items]``
    fine category (0..31), ``category_group`` ``[n_categories]`` its group, and per user
    ``user_categories`` ``[n_users, 5]`` (long-term categories, then the burst's; -1 padded) with
    ``n_long`` ``[n_users]`` long-term interests. Ids are 0-based indices."""

    events: pd.DataFrame
    catalog: pd.DataFrame
    item_vectors: np.ndarray
    item_category: np.ndarray
    category_group: np.ndarray
    user_categories: np.ndarray
    n_long: np.ndarray


def make_planted_interests(
    n_users: int = 300,
    *,
    n_groups: int = 8,
    per_group: int = 4,
    items_per_category: int = 80,
    dim: int = 64,
    variances: tuple[float, ...] = (0.2, 0.1, 0.2, 0.15, 0.35),
    n_sub: int = 3,
    long_interests: tuple[int, int] = (1, 4),
    items_per_interest: tuple[int, int] = (5, 12),
    burst_items: tuple[int, int] = (4, 8),
    days: float = 365.0,
    burst_days: float = 10.0,
    seed: int = 0,
) -> PlantedInterests:
    """Users with ``long_interests`` long-term interests and one recent burst.

    Categories: ``n_groups * per_group`` fine categories (32 by default), ``per_group`` per group,
    each with ``n_sub`` sub-groups (franchises, sub-genres). An item vector is the unit sum of a
    common direction, its group's, its category's, its sub-group's and its own noise, with
    variances ``variances`` (0.2, 0.1, 0.2, 0.15, 0.35): cosine about 0.69 within a sub-group, 0.5
    within a category, 0.3 between sibling categories (same group) and 0.2 between unrelated ones.
    Each user has 1 to 4 distinct long-term categories (siblings allowed), each with
    ``items_per_interest`` items rated over ``days``, and a burst: a further category with 4 to 8
    items in the last ``burst_days`` days.
    """
    rng = np.random.default_rng(seed)
    n_categories = n_groups * per_group
    group_of = np.repeat(np.arange(n_groups), per_group)
    common = _unit(rng.standard_normal((1, dim)))
    groups = _unit(rng.standard_normal((n_groups, dim)))
    offsets = _unit(rng.standard_normal((n_categories, dim)))
    v_common, v_group, v_category, v_sub, v_noise = variances
    signal = np.sqrt(v_common) * common + np.sqrt(v_group) * groups[group_of] + np.sqrt(v_category) * offsets
    item_category = np.repeat(np.arange(n_categories), items_per_category)
    item_sub = np.tile(np.arange(items_per_category) % n_sub, n_categories)
    subs = _unit(rng.standard_normal((n_categories * n_sub, dim))) * np.sqrt(v_sub)
    noise = subs[item_category * n_sub + item_sub] + _unit(rng.standard_normal((item_category.size, dim))) * np.sqrt(v_noise)
    vectors = _unit(signal[item_category] + noise)

    low, high = long_interests
    n_long = rng.integers(low, high + 1, n_users)
    chosen = np.argsort(rng.random((n_users, n_categories)), axis=1)[:, : high + 1]
    user_categories = np.full((n_users, high + 1), -1, np.int64)
    users, items, stamps = [], [], []
    for user in range(n_users):
        cats = chosen[user, : n_long[user] + 1]
        user_categories[user, : cats.size] = cats
        for slot, category in enumerate(cats):
            burst = slot == cats.size - 1
            lo, hi = burst_items if burst else items_per_interest
            count = int(rng.integers(lo, hi + 1))
            pool = np.flatnonzero(item_category == category)
            picked = rng.choice(pool, count, replace=False)
            if burst:
                age = rng.random(count) * burst_days
            else:
                age = burst_days + rng.random(count) * (days - burst_days)
            users.append(np.full(count, user))
            items.append(picked)
            stamps.append(START + ((days - age) * DAY).astype(np.int64))
    users, items, stamps = np.concatenate(users), np.concatenate(items), np.concatenate(stamps)
    words = [f"group{g}" for g in range(n_groups)]
    catalog = pd.DataFrame({
        "item_id": np.arange(item_category.size),
        "title": [f"{words[group_of[c]]} category{c} item{i}" for i, c in enumerate(item_category)],
        "categories": [[(f"Group {group_of[c]}", f"Category {c}")] for c in item_category],
    })
    events = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": stamps,
                           "weight": rng.choice(np.array([0.6, 0.8, 1.0], np.float32), users.size)})
    return PlantedInterests(events=events, catalog=catalog, item_vectors=vectors, item_category=item_category,
                            category_group=group_of, user_categories=user_categories, n_long=n_long)


def interest_figures(interests, item_category: np.ndarray) -> dict:
    """Compare found interests (:class:`~tastemap.runtime.interests.profiles.UserInterests`, user
    rows in planted user order) with the planted category of each member item.

    Returns the share of users with a planted interest split and with two planted interests merged,
    item purity and item recall, the mean numbers of found and planted interests (over the
    clustered items) and the share of users whose count is right.
    """
    n_users = interests.indptr.size - 1
    split = merged = right = 0
    pure = total = recalled = 0
    found_counts, planted_counts = [], []
    for user in range(n_users):
        found = interests.of_user(user)
        if not found:
            continue
        member_cats = [item_category[i.members] for i in found]
        cats = np.concatenate(member_cats)
        planted = np.unique(cats)
        majority = [np.bincount(c).argmax() for c in member_cats]
        counts = {int(p): int((cats == p).sum()) for p in planted}
        split += any(majority.count(p) >= 2 for p in planted)
        merged += any(np.count_nonzero(np.bincount(c) >= 2) >= 2 for c in member_cats)
        right += len(found) == planted.size
        pure += sum(int((c == m).sum()) for c, m in zip(member_cats, majority))
        recalled += sum(max(int((c == p).sum()) for c in member_cats) for p in counts)
        total += cats.size
        found_counts.append(len(found))
        planted_counts.append(planted.size)
    return {
        "users": n_users,
        "split_share": round(split / n_users, 4),
        "merged_share": round(merged / n_users, 4),
        "purity": round(pure / total, 4),
        "recall": round(recalled / total, 4),
        "interests_per_user": round(float(np.mean(found_counts)), 3),
        "planted_per_user": round(float(np.mean(planted_counts)), 3),
        "count_right_share": round(right / n_users, 4),
    }


def planted_figures(n_users: int = 300, seed: int = 0, data_params: dict | None = None, **profiler_params) -> dict:
    """Fit an :class:`InterestProfiler` (default parameters unless given) on
    :func:`make_planted_interests` and return :func:`interest_figures` with the data's shape."""
    from tastemap.runtime.interests.profiles import InterestProfiler

    data = make_planted_interests(n_users, seed=seed, **(data_params or {}))
    params = {"n_topics": 32, "n_coarse_topics": 8, "backend": "sklearn", "seed": 0, **profiler_params}
    started = time.perf_counter()
    profiler = InterestProfiler(**params).fit(data.events, data.catalog, data.item_vectors)
    figures = interest_figures(profiler.profiles_.interests, data.item_category)
    return {
        "data": {"users": n_users, "seed": seed, "categories": int(data.category_group.size),
                 "groups": int(data.category_group.max() + 1), "events": len(data.events),
                 "long_term_interests": "1-4",
                 "items_per_interest": "{}-{}".format(*(data_params or {}).get("items_per_interest", (5, 12))),
                 "burst": "1 category, 4-8 items in the last 10 days"},
        "params": {k: v for k, v in params.items() if k != "backend"},
        **figures,
        "seconds": round(time.perf_counter() - started, 2),
    }


def label_figures(tree) -> dict:
    """Per topic level: topics, label sets used twice, labels holding a stop word, a number or a
    one- or two-letter fragment, coarse labels equal to a child's, and the labels."""
    import re

    from tastemap.runtime.interests.labels import stop_word_set

    stop = stop_word_set()
    levels = []
    for depth, level in enumerate(tree.levels):
        sets = [frozenset(words[:3]) for words in level.keywords]
        words = [[w for phrase in words[:3] for w in phrase.split()] for words in level.keywords]
        entry = {
            "topics": level.n_topics,
            "duplicate_labels": len(sets) - len(set(sets)),
            "with_stop_word": sum(any(w in stop for w in ws) for ws in words),
            "with_number": sum(any(any(c.isdigit() for c in w) for w in ws) for ws in words),
            "with_fragment": sum(any(len(w) < 3 for w in ws) for ws in words),
            "labels": list(level.names),
        }
        if depth + 1 < len(tree.levels):
            child = tree.levels[depth + 1]
            entry["same_as_a_child"] = sum(
                any(frozenset(child.keywords[c][:3]) == sets[t] for c in np.flatnonzero(child.parents == t))
                for t in range(level.n_topics))
        levels.append(entry)
    return {"levels": levels}


def explanation_figures(recommender, data, *, k: int = 10, users: np.ndarray | None = None,
                        max_cases: int = 1500, seed: int = 0) -> dict:
    """For the top ``k`` of every user (or ``users``): the share of explanations whose label's
    topic holds the recommended item and at least one seed, the share that name a mixed interest,
    and the deletion test on ``max_cases`` explanations drawn with ``seed`` (the seeds removed from
    the history: share of items whose blended score drops, and share that leave the top ``k``)."""
    from tastemap.runtime.interests.profiles import shared_topic

    topics = recommender.profiler_.item_topics_
    item_index = pd.Index(recommender.item_ids_)
    users = np.arange(recommender.user_index_.size) if users is None else np.asarray(users)
    agree = mixed = total = 0
    layers: dict[str, int] = {}
    cases = []
    for start in range(0, users.size, 128):
        batch = users[start:start + 128]
        for user, recs in zip(batch, recommender._recommend_rows(batch, recommender.state_, k)):
            for rec in recs:
                e = rec.explanation
                item = int(item_index.get_indexer([rec.item_id])[0])
                seeds = item_index.get_indexer(list(e.seed_item_ids))
                level = e.topic_level
                ok = level >= 0 and topics[item, level] == e.topic_id and bool(seeds.size) and bool(
                    np.any(topics[seeds, level] == e.topic_id))
                agree += ok
                interests = recommender.state_.interests.of_user(int(user))
                if 0 <= e.interest < len(interests):
                    mixed += shared_topic(interests[e.interest].members, topics)[0] < 0
                layers[e.layer] = layers.get(e.layer, 0) + 1
                total += 1
                if seeds.size:
                    cases.append((int(user), item, seeds))
    if len(cases) > max_cases:
        picked = np.sort(np.random.default_rng(seed).choice(len(cases), max_cases, replace=False))
        cases = [cases[i] for i in picked]
    deletion = deletion_test(recommender, data, cases, k=k)
    return {"explanations": total, "label_holds_item_and_seed": round(agree / max(total, 1), 4),
            "mixed_interest_share": round(mixed / max(total, 1), 4), "layers": layers, **deletion}


def deletion_test(recommender, data, cases: list, *, k: int = 10) -> dict:
    """Each case ``(user row, item, seed items)``: the user's events without the seeds are profiled
    again (``profiler_.transform``) and scored; returns the share of cases whose item scores lower
    than with the full history (profiled the same way), and the share whose item leaves the top
    ``k`` (seeds excluded from the ranking in both)."""
    from tastemap.runtime.io.interactions import Interactions
    from tastemap.runtime.recommend.recommender import recency_matrix

    if not cases:
        return {"deletion_cases": 0}
    rows_full, rows_cut = [], []
    for pseudo, (user, item, seeds) in enumerate(cases):
        mine = np.flatnonzero(data.users == user)
        rows_full.append((np.full(mine.size, pseudo), mine))
        keep = mine[~np.isin(data.items[mine], seeds)]
        rows_cut.append((np.full(keep.size, pseudo), keep))
    ranks = []
    scores = []
    for rows in (rows_full, rows_cut):
        pseudo_users = np.concatenate([r[0] for r in rows])
        events = np.concatenate([r[1] for r in rows])
        part = Interactions(users=pseudo_users.astype(np.int64), items=data.items[events],
                            timestamps=data.timestamps[events], weights=data.weights[events],
                            user_ids=np.arange(len(cases)), item_ids=data.item_ids)
        profiles = recommender.profiler_.transform(part)
        state = recommender.scoring_state(part.matrix(), recency_matrix(part, recommender.recency_half_life), profiles)
        case_scores, case_ranks = [], []
        for start in range(0, len(cases), 256):
            batch = np.arange(start, min(start + 256, len(cases)))
            blended = recommender._blend(recommender._components(batch, state, recommender._weighted()))
            seen = state.history[batch]
            blended[np.repeat(np.arange(batch.size), np.diff(seen.indptr)), seen.indices] = -np.inf
            for local, case in enumerate(batch):
                user, item, seeds = cases[case]
                row = blended[local]
                row[seeds] = -np.inf
                case_scores.append(row[item])
                case_ranks.append(int((row > row[item]).sum()))
        scores.append(np.array(case_scores))
        ranks.append(np.array(case_ranks))
    in_top = ranks[0] < k
    return {"deletion_cases": len(cases),
            "deletion_score_drops": round(float(np.mean(scores[1] < scores[0])), 4),
            "deletion_leaves_top": round(float(np.mean(ranks[1][in_top] >= k)), 4) if in_top.any() else None,
            "deletion_mean_rank_after": round(float(np.mean(ranks[1][in_top])), 1) if in_top.any() else None}


def movielens_figures(*, vectors_path: Path | None = None, seed: int = 0, evaluate: bool = True) -> dict:
    """Labels, interests, explanations and the deletion test on MovieLens (every user, top 10),
    and the leave-last-out HR@10 / NDCG@10 of tastemap (with 95% bootstrap intervals)."""
    from tastemap.runtime.interests.profiles import interest_label
    from tastemap.runtime.pipeline.inputs import load_inputs
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    started = time.perf_counter()
    inputs = load_inputs(vectors_path=vectors_path, seed=seed)
    vectors = inputs.encoder if inputs.encoder is not None else inputs.item_vectors
    recommender = TastemapRecommender(seed=seed).fit(inputs.interactions, inputs.catalog, vectors)
    profiler = recommender.profiler_
    interests = recommender.state_.interests
    same_label = 0
    labels_per_user = []
    for user in range(interests.indptr.size - 1):
        labels = [interest_label(i.members, profiler.item_topics_, profiler.topic_tree_) for i in interests.of_user(user)]
        same_label += len(set(labels)) < len(labels)
        labels_per_user.append(labels)
    result = {
        "phrase_vectors": "encoder" if inputs.encoder is not None else "item means",
        "labels": label_figures(profiler.topic_tree_),
        "interests": {"per_user": round(float(interests.counts().mean()), 3),
                      "users_with_two_interests_under_one_label": round(same_label / len(labels_per_user), 4)},
        "explanations": explanation_figures(recommender, inputs.interactions),
    }
    if recommender.segmenter_ is not None:
        seg = recommender.segmenter_
        result["segments"] = {"k": int(seg.n_segments_), "criterion": seg.criterion_,
                              "scores": {int(k): round(v, 4) for k, v in seg.criterion_scores_.items()},
                              "sizes": seg.segments_["size"].tolist(),
                              "over_represented": [
                                  {"topics": [(t["label"], round(t["lift"], 1)) for t in row.top_topics],
                                   "categories": [(c["category"], round(c["lift"], 1)) for c in row.top_categories]}
                                  for row in seg.segments_.itertuples()]}
    if evaluate:
        result["leave_last_out"] = evaluate_tastemap(inputs, seed=seed)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def evaluate_tastemap(inputs, *, seed: int = 0) -> dict:
    """Leave-last-out HR@10 and NDCG@10 of tastemap (default blend) with 95% intervals."""
    from tastemap.runtime.recommend.evaluate import evaluate_model, split_events
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    split = split_events(inputs.interactions, "leave-last-out")
    model = TastemapRecommender(seed=seed)
    evaluation = evaluate_model(model, split, name="tastemap",
                                fit_params={"catalog": inputs.catalog, "item_vectors": inputs.item_vectors})
    summary = evaluation.summary(seed=seed)
    return {metric: {"mean": round(summary[metric].mean, 4), "low": round(summary[metric].low, 4),
                     "high": round(summary[metric].high, 4)} for metric in ("HR@10", "NDCG@10")}


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tastemap.bench.interests", description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "planted", "movielens"), default="all")
    parser.add_argument("--users", type=int, default=300, help="planted users")
    parser.add_argument("--items-per-interest", type=int, nargs=2, default=(5, 12), metavar=("MIN", "MAX"),
                        help="planted items per long-term interest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vectors", type=Path, default=None,
                        help="MovieLens item vectors (.npy, catalog order) instead of encoding with the default model")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = {}
    if args.part in ("all", "planted"):
        result["planted"] = planted_figures(args.users, args.seed,
                                            data_params={"items_per_interest": tuple(args.items_per_interest)})
    if args.part in ("all", "movielens"):
        result["movielens"] = movielens_figures(vectors_path=args.vectors, seed=args.seed)
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
