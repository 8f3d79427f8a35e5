"""Explicit interests a person recognises: what topics cluster, whether labels are true of their
members, and whether explanations name what an item and its seeds share.

``python -m tastemap.bench.explicit`` fits tastemap on the bundled MovieLens sample (the demo's
inputs and defaults), recommends the top 10 to every user and prints one JSON document
(``--out`` writes it to a file). ``--text-only`` drops the catalog's categories first (labels
then come from the text alone); ``--options`` also clusters the alternative item spaces;
``--quality`` also evaluates leave-last-out HR@10 and NDCG@10 against topics on text alone.

- **Topics** (:func:`topic_figures`): normalised mutual information of each topic level with the
  release year (from a title's trailing ``(1995)``) and with the genre set (the catalog's
  categories), each against the same labels shuffled.
- **Labels** (:func:`label_figures`): per topic, the share of members whose categories or tags
  carry the label's first term (their phrases, for a catalog without categories and tags); the
  minimum and the size-weighted mean over topics labelled by phrases, the topics named by their
  medoids instead, and label terms holding a digit or a bracket.
- **Explanations** (:func:`explanation_figures`): the share of recommendations whose explanation
  (seed titles left out) names a category that the item and one of its seeds both carry, against
  the same with explanations shuffled across recommendations; the share of the most frequent
  common ground; explanations by seeds only; ``a mix of`` labels; and the deletion test of
  :func:`tastemap.bench.interests.deletion_test`.
- **Showcase** (:func:`showcase`): the top of the topic tree and ten explanations for five users,
  as a reader sees them.
- **Options** (:func:`topic_options`): the NMI of 50 fine topics clustered on each candidate item
  space: the item text with and without the year, a text of categories and tags, and the text
  joined with the genres or with the collaborative (EASE) item factors.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

logger = logging.getLogger(__name__)

YEAR = re.compile(r"\((\d{4})\)\s*$")
UNNAMED = "(no genres listed)"


def release_years(titles) -> np.ndarray:
    """The trailing ``(1995)`` of each title, ``""`` where there is none ``[n_items]``."""
    return np.array([m.group(1) if (m := YEAR.search(str(t))) else "" for t in titles], dtype=object)


def genre_sets(categories) -> np.ndarray:
    """Each item's sorted category paths joined into one value ``[n_items]``."""
    return np.array(["|".join(sorted(" > ".join(p) for p in paths)) for paths in categories], dtype=object)


def normalise(term: str) -> str:
    """Lower case, hyphens as spaces: ``Sci-Fi`` and ``sci fi`` compare equal."""
    return " ".join(str(term).lower().replace("-", " ").split())


def item_terms(catalog: pd.DataFrame, texts=None) -> list[set[str]]:
    """Each item's terms: its category names (every depth) and tags, normalised; for a catalog with
    neither, the phrases of its text (``texts``, as :mod:`~tastemap.runtime.interests.labels` cuts
    them)."""
    terms = [{normalise(node) for path in paths for node in path} | {normalise(t) for t in tags}
             for paths, tags in zip(catalog["categories"], catalog["tags"])]
    if any(terms) or texts is None:
        return terms
    from tastemap.runtime.interests.labels import stop_word_set, text_phrases

    stop = stop_word_set(["tags"])
    return [{key for key, _ in text_phrases(str(text), stop)} for text in texts]


def _nmi(truth: np.ndarray, labels: np.ndarray, rng) -> dict:
    from sklearn.metrics import normalized_mutual_info_score as nmi

    shuffled = nmi(truth, rng.permutation(labels))
    return {"nmi": round(float(nmi(truth, labels)), 4), "shuffled": round(float(shuffled), 4)}


def topic_figures(tree, catalog: pd.DataFrame, *, seed: int = 0) -> dict:
    """NMI of every topic level (coarse first) with the release year and the genre set."""
    years, genres = release_years(catalog["title"]), genre_sets(catalog["categories"])
    out = []
    for depth, level in enumerate(tree.levels):
        entry = {"level": depth, "n_topics": level.n_topics}
        if np.any(years != ""):
            entry["year"] = _nmi(years, level.labels, np.random.default_rng(seed))
        if np.any(genres != ""):
            entry["genre_set"] = _nmi(genres, level.labels, np.random.default_rng(seed))
        out.append(entry)
    return {"levels": out}


def label_figures(tree, terms: list[set[str]]) -> dict:
    """Per level: the first label term's coverage (share of a topic's members carrying it) over
    topics labelled by phrases, the topics named by medoids, and terms with a digit or bracket."""
    from tastemap.runtime.interests.labels import is_medoid_label

    levels = []
    for depth, level in enumerate(tree.levels):
        coverage, sizes, medoid_named, bad = [], [], [], []
        for topic, name in enumerate(level.names):
            members = np.flatnonzero(level.labels == topic)
            if is_medoid_label(name):
                medoid_named.append(name)
                continue
            words = level.keywords[topic][:3]
            bad += [w for w in words if re.search(r"[\d()\[\]{}]", w) and not is_medoid_label(w)]
            first = normalise(words[0]) if words else ""
            coverage.append(float(np.mean([first in terms[i] for i in members])) if members.size else 0.0)
            sizes.append(members.size)
        coverage, sizes = np.asarray(coverage), np.asarray(sizes, np.float64)
        worst = int(np.argmin(coverage)) if coverage.size else -1
        named = [t for t, n in enumerate(level.names) if not is_medoid_label(n)]
        levels.append({
            "level": depth, "n_topics": level.n_topics, "labelled_by_phrases": int(coverage.size),
            "first_term_coverage_min": round(float(coverage.min()), 4) if coverage.size else None,
            "first_term_coverage_min_label": level.names[named[worst]] if worst >= 0 else None,
            "first_term_coverage_weighted_mean":
                round(float(coverage @ sizes / sizes.sum()), 4) if coverage.size else None,
            "topics_below_half": int((coverage < 0.5).sum()),
            "named_by_medoids": medoid_named, "terms_with_digit_or_bracket": bad,
        })
    return {"levels": levels}


def explanation_figures(recommendations: pd.DataFrame, catalog: pd.DataFrame, *, seed: int = 0) -> dict:
    """The explanation check of the module docstring on a ``recommend_batch`` frame."""
    index = pd.Index(catalog["item_id"])
    categories = [{normalise(node) for path in paths for node in path} - {normalise(UNNAMED)}
                  for paths in catalog["categories"]]
    words = [_without_titles(text, titles) for text, titles in zip(recommendations["explanation"],
                                                                    recommendations["seed_titles"])]
    shared = []
    for item_id, seed_ids in zip(recommendations["item_id"], recommendations["seed_item_ids"]):
        mine = categories[index.get_loc(item_id)]
        shared.append(set().union(*[mine & categories[index.get_loc(s)] for s in seed_ids]) if len(seed_ids) else set())
    named = np.array([_names_any(text, common) for text, common in zip(words, shared)])
    shuffled_words = [words[i] for i in np.random.default_rng(seed).permutation(len(words))]
    shuffled = np.array([_names_any(text, common) for text, common in zip(shuffled_words, shared)])
    grounds = recommendations["topic"].where(recommendations["topic"].astype(bool))
    counts = grounds.value_counts()
    mixes = recommendations["explanation"].str.contains("a mix of ")
    same_mix = recommendations["explanation"].str.extract(r"a mix of ([^+;(]+?) \+ \1\b")[0].notna()
    interests = recommendations["interest_label"].value_counts()
    total = max(len(recommendations), 1)
    return {
        "recommendations": len(recommendations),
        "names_shared_genre": round(float(named.mean()), 4),
        "names_shared_genre_shuffled": round(float(shuffled.mean()), 4),
        "item_and_a_seed_share_a_genre": round(float(np.mean([bool(s) for s in shared])), 4),
        "most_frequent_ground": counts.index[0] if len(counts) else None,
        "most_frequent_ground_share": round(float(counts.iloc[0]) / total, 4) if len(counts) else 0.0,
        "most_frequent_interest_label": interests.index[0] if len(interests) else None,
        "most_frequent_interest_label_share": round(float(interests.iloc[0]) / total, 4) if len(interests) else 0.0,
        "seeds_only": round(float(recommendations["topic"].eq("").mean()), 4),
        "a_mix_of": int(mixes.sum()),
        "a_mix_of_x_plus_x": int(same_mix.sum()),
    }


def _without_titles(text: str, titles) -> str:
    from tastemap.runtime.interests.labels import display_title

    for title in titles:
        text = text.replace(str(title), " ").replace(display_title(title), " ")
    return normalise(text)


def _names_any(text: str, terms: set[str]) -> bool:
    return any(re.search(rf"(?<![\w]){re.escape(term)}(?![\w])", text) for term in terms)


def showcase(tree, recommendations: pd.DataFrame, *, n_coarse: int = 10, n_fine: int = 3, n_users: int = 5,
             per_user: int = 2) -> dict:
    """What a reader sees: the top of the topic tree (the ``n_coarse`` largest coarse topics, each
    with its ``n_fine`` largest fine topics, as in the report) and the first ``per_user``
    explanations of the first ``n_users`` users."""
    coarse, fine = tree.levels[0], tree.fine
    lines = []
    for topic in np.argsort(-coarse.sizes, kind="stable")[:n_coarse]:
        children = np.flatnonzero(fine.parents == topic) if len(tree.levels) > 1 else np.zeros(0, np.int64)
        children = children[np.argsort(-fine.sizes[children], kind="stable")][:n_fine]
        lines.append(f"{coarse.names[topic]} ({coarse.sizes[topic]:,} items): "
                     + "; ".join(f"{fine.names[c]} ({fine.sizes[c]:,})" for c in children))
    users = recommendations["user_id"].drop_duplicates().head(n_users)
    shown = recommendations[recommendations["user_id"].isin(users)].groupby("user_id", sort=False).head(per_user)
    return {"topic_tree": lines,
            "explanations": [f"user {r.user_id}, {r.title}: {r.explanation}" for r in shown.itertuples()]}


def deletion_figures(recommender, data, recommendations: pd.DataFrame, *, max_cases: int = 300, seed: int = 0) -> dict:
    """The deletion test on ``max_cases`` recommendations drawn with ``seed``."""
    from tastemap.bench.interests import deletion_test

    item_index = pd.Index(recommender.item_ids_)
    rows = np.random.default_rng(seed).choice(len(recommendations), min(max_cases, len(recommendations)), replace=False)
    cases = []
    for row in np.sort(rows):
        rec = recommendations.iloc[int(row)]
        user = int(recommender.user_index_.get_indexer([rec["user_id"]])[0])
        seeds = item_index.get_indexer(list(rec["seed_item_ids"]))
        cases.append((user, int(item_index.get_loc(rec["item_id"])), seeds))
    return deletion_test(recommender, data, cases, k=10)


def topic_options(inputs, *, n_topics: int = 50, seed: int = 0) -> dict:
    """NMI with year and genre set of ``n_topics`` spherical k-means topics on each item space."""
    from tastemap.runtime.interests.clustering import resolve_backend
    from tastemap.runtime.interests.layers import category_levels
    from tastemap.runtime.interests.topics import topic_space
    from tastemap.runtime.io.events import render_item_texts
    from tastemap.runtime.recommend.collaborative import low_rank_ease

    from tastemap.runtime.interests.labels import TRAILING_YEAR

    catalog, encoder = inputs.catalog, inputs.encoder
    years, genres = release_years(catalog["title"]), genre_sets(catalog["categories"])
    text = np.asarray(inputs.item_vectors, np.float32)  # the default item text, the year in the title
    undated = catalog.assign(title=[TRAILING_YEAR.sub("", str(t)) for t in catalog["title"]])
    without_year = np.asarray(encoder.encode(render_item_texts(undated)), np.float32)
    described = np.asarray(encoder.encode(render_item_texts(catalog, "{categories}. Tags: {tags}")), np.float32)
    membership = sparse.hstack([level.items for level in category_levels(catalog["categories"].tolist())]).tocsr()
    factors = low_rank_ease(inputs.interactions.matrix(), seed=seed).left
    spaces = {
        "text (year in the title)": text,
        "text without the year": without_year,
        "categories and tags as text": described,
        "text + categories (weight 1, the default)": topic_space(text, membership, 1.0),
        "text without the year + categories (weight 1)": topic_space(without_year, membership, 1.0),
        "text + EASE item factors (equal weight)": _join(text, factors),
    }
    engine = resolve_backend("auto")
    out = {}
    for name, space in spaces.items():
        (labels, _), _ = engine.kmeans(np.ascontiguousarray(space, np.float32), n_topics, seed=seed, spherical=True)
        out[name] = {"year": _nmi(years, labels, np.random.default_rng(seed)),
                     "genre_set": _nmi(genres, labels, np.random.default_rng(seed))}
    return out


def quality_figures(inputs, *, seed: int = 0) -> dict:
    """Leave-last-out HR@10 and NDCG@10 of tastemap with topics on the default space and on the text
    vectors alone (``category_weight=0``, as before the categories joined it), with the paired
    bootstrap interval of the ratio (default over text alone)."""
    from functools import partial
    from unittest import mock

    from tastemap.runtime.interests import profiles
    from tastemap.runtime.recommend.metrics import bootstrap_ratio_ci
    from tastemap.runtime.recommend.model_evaluation import evaluate_model
    from tastemap.runtime.recommend.recommender import TastemapRecommender
    from tastemap.runtime.recommend.splits import split_events

    split = split_events(inputs.interactions, "leave-last-out")
    fit_params = {"catalog": inputs.catalog, "item_vectors": inputs.item_vectors}
    text_alone = partial(profiles.fit_topic_tree, category_weight=0.0)
    with mock.patch.object(profiles, "fit_topic_tree", text_alone):
        before = evaluate_model(TastemapRecommender(seed=seed), split, name="text alone", fit_params=fit_params)
    after = evaluate_model(TastemapRecommender(seed=seed), split, name="default", fit_params=fit_params)
    out = {}
    for metric in ("HR@10", "NDCG@10"):
        ratio = bootstrap_ratio_ci(after.per_user[metric], before.per_user[metric], seed=seed)
        out[metric] = {"default": round(float(after.per_user[metric].mean()), 4),
                       "text alone": round(float(before.per_user[metric].mean()), 4),
                       "ratio": round(ratio.mean, 4), "low": round(ratio.low, 4), "high": round(ratio.high, 4)}
    return out


def _join(vectors: np.ndarray, other: np.ndarray) -> np.ndarray:
    def unit(x):
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)

    return unit(np.hstack([vectors, unit(np.asarray(other, np.float32))])).astype(np.float32)


def run(*, text_only: bool = False, options: bool = False, quality: bool = False, max_cases: int = 300,
        seed: int = 0) -> dict:
    """Fit tastemap on MovieLens with the demo's defaults and measure everything above."""
    from tastemap.runtime.pipeline.inputs import load_inputs
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    started = time.perf_counter()
    inputs = load_inputs(export_missing=True)
    catalog = inputs.catalog
    if text_only:  # genres and tags as words of a description, no category or tag column
        words = [". ".join(part for part in (", ".join(p[-1] for p in paths), ", ".join(tags)) if part)
                 for paths, tags in zip(catalog["categories"], catalog["tags"])]
        empty = [[] for _ in range(len(catalog))]
        catalog = catalog.assign(categories=empty, tags=empty, description=words)
    recommender = TastemapRecommender(seed=seed).fit(inputs.interactions, catalog, inputs.encoder)
    recommendations = recommender.recommend_batch(k=10)
    tree = recommender.profiler_.topic_tree_
    truth = inputs.catalog  # the genres of the check always come from MovieLens
    result = {
        "catalog": "text only" if text_only else "categories and tags",
        "topics": topic_figures(tree, truth, seed=seed),
        "labels": label_figures(tree, item_terms(catalog, recommender.profiler_.item_texts_)),
        "explanations": explanation_figures(recommendations, truth, seed=seed),
        "deletion": deletion_figures(recommender, inputs.interactions, recommendations, max_cases=max_cases, seed=seed),
        "showcase": showcase(tree, recommendations),
    }
    if options:
        result["options"] = topic_options(inputs, seed=seed)
    if quality:
        result["quality"] = quality_figures(inputs, seed=seed)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tastemap.bench.explicit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-only", action="store_true", help="drop the catalog's categories and tags first")
    parser.add_argument("--options", action="store_true", help="also cluster the alternative item spaces")
    parser.add_argument("--quality", action="store_true",
                        help="also evaluate leave-last-out against topics on the text alone")
    parser.add_argument("--deletion-cases", type=int, default=300, help="recommendations in the deletion test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the JSON here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(text_only=args.text_only, options=args.options, quality=args.quality, max_cases=args.deletion_cases,
                 seed=args.seed)
    text = json.dumps(result, indent=1, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
