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
    long_interests: tuple[int, int] = (1, 4),
    items_per_interest: tuple[int, int] = (5, 12),
    burst_items: tuple[int, int] = (4, 8),
    days: float = 365.0,
    burst_days: float = 10.0,
    seed: int = 0,
) -> PlantedInterests:
    """Users with ``long_interests`` long-term interests and one recent burst.

    Categories: ``n_groups * per_group`` fine categories (32 by default), ``per_group`` per group.
    An item vector is ``unit(0.45 common + 0.39 group + 0.5 category + 0.63 noise)`` (variances
    0.2, 0.15, 0.25, 0.4): cosine about 0.6 between items of one category, 0.35 between sibling
    categories (same group) and 0.2 between unrelated ones. Each user has 1 to 4 distinct
    long-term categories (siblings allowed), each with 5 to 12 items rated over ``days``, and a
    burst: a further category with 4 to 8 items in the last ``burst_days`` days.
    """
    rng = np.random.default_rng(seed)
    n_categories = n_groups * per_group
    group_of = np.repeat(np.arange(n_groups), per_group)
    common = _unit(rng.standard_normal((1, dim)))
    groups = _unit(rng.standard_normal((n_groups, dim)))
    offsets = _unit(rng.standard_normal((n_categories, dim)))
    signal = np.sqrt(0.2) * common + np.sqrt(0.15) * groups[group_of] + np.sqrt(0.25) * offsets
    item_category = np.repeat(np.arange(n_categories), items_per_category)
    noise = _unit(rng.standard_normal((item_category.size, dim))) * np.sqrt(0.4)
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


def planted_figures(n_users: int = 300, seed: int = 0, **profiler_params) -> dict:
    """Fit an :class:`InterestProfiler` (default parameters unless given) on
    :func:`make_planted_interests` and return :func:`interest_figures` with the data's shape."""
    from tastemap.runtime.interests.profiles import InterestProfiler

    data = make_planted_interests(n_users, seed=seed)
    params = {"n_topics": 32, "n_coarse_topics": 8, "backend": "sklearn", "seed": 0, **profiler_params}
    started = time.perf_counter()
    profiler = InterestProfiler(**params).fit(data.events, data.catalog, data.item_vectors)
    figures = interest_figures(profiler.profiles_.interests, data.item_category)
    return {
        "data": {"users": n_users, "seed": seed, "categories": int(data.category_group.size),
                 "groups": int(data.category_group.max() + 1), "events": len(data.events),
                 "long_term_interests": "1-4", "burst": "1 category, 4-8 items in the last 10 days"},
        "params": {k: v for k, v in params.items() if k != "backend"},
        **figures,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tastemap.bench.interests", description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "planted", "movielens"), default="all")
    parser.add_argument("--users", type=int, default=300, help="planted users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vectors", type=Path, default=None,
                        help="MovieLens item vectors (.npy, catalog order) instead of encoding with the default model")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = {}
    if args.part in ("all", "planted"):
        result["planted"] = planted_figures(args.users, args.seed)
    if args.part in ("all", "movielens"):
        result["movielens"] = movielens_figures(vectors_path=args.vectors, seed=args.seed)
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
