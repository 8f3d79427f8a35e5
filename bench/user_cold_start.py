"""User cold start on MovieLens 100K: the figures of docs/attributes.md.

    python -m tastemap.bench.user_cold_start --data /path/to/ml-100k --out user-cold-start.json

Runs the ``user-cold-start`` protocol (:mod:`tastemap.runtime.recommend.user_cold_start`) with the
default encoder's item vectors, and, with ``--compare``, the attribute models it was chosen
among at level 0 (the ridge model with each user-weighting of its target, at every penalty of
its grid, the weighted popularity it starts from, and the naive-Bayes sum of shrunk
per-attribute lifts) and the blend's ``prior`` over ``--priors``; with ``--segments``,
the segments of a model fitted on every user, described by their over-represented attributes. MovieLens 100K is read
from ``--data`` (or ``$TASTEMAP_ML100K``); it is never copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

from tastemap.runtime.recommend import user_cold_start as protocol
from tastemap.runtime.recommend.attributes import (
    L2_GRID,
    TARGET_POWER,
    AttributeModel,
    blend_with_events,
    engagement_target,
)
from tastemap.runtime.recommend.metrics import bootstrap_ci, bootstrap_ratio_ci

NAIVE_BAYES_SHRINKAGE = (20.0, 50.0, 100.0)
TARGET_POWERS = (0.0, 0.5, 1.0)


def naive_bayes_scores(train_membership, test_membership, history, shrinkage: float) -> np.ndarray:
    """``log p(i) + sum_g log(p_g(i) / p(i))`` with group shares shrunk to the population's by
    ``shrinkage`` pseudo-users: the alternative the ridge model was measured against."""
    counts = np.asarray(train_membership.sum(axis=0)).ravel()
    engaged = np.asarray((train_membership.T @ history).todense())
    population = np.maximum(np.asarray(history.sum(axis=0)).ravel(), 0.5) / history.shape[0]
    shrunk = (engaged + shrinkage * population) / (counts[:, None] + shrinkage)
    return np.log(population)[None, :] + test_membership @ np.log(shrunk / population)


def compare_attribute_models(split, users, seed: int, n_resamples: int) -> list[dict]:
    """Level-0 Recall@20 of each candidate attribute model, paired with global popularity and
    with the popularity the chosen model starts from (users weighted as its target weighs them,
    no attribute): what the attributes themselves add."""
    history = split.train.matrix()
    popularity = np.asarray(history.sum(axis=0), np.float64).ravel()
    n_test = len(split.test_items)
    reference = protocol.rank_metrics(np.broadcast_to(popularity, (n_test, popularity.size)), split.test_items, 0)["Recall@20"]
    weighted = engagement_target(sparse.csr_matrix(history, dtype=np.float64), TARGET_POWER)
    weighted_popularity = np.asarray(weighted.mean(axis=0)).ravel()
    weighted_reference = protocol.rank_metrics(np.broadcast_to(weighted_popularity, (n_test, popularity.size)),
                                               split.test_items, 0)["Recall@20"]
    references = (reference, weighted_reference)
    rows = [_row(f"popularity, users weighted by n_items^-{TARGET_POWER:g} (no attribute)",
                 np.broadcast_to(weighted_popularity, (n_test, popularity.size)), split, references, n_resamples, seed)]
    candidates = [(f"ridge, target n_items^-{power:g}, l2 by cross-validation",
                   lambda power=power: AttributeModel(target_power=power, seed=seed)) for power in TARGET_POWERS]
    candidates += [(f"ridge, target n_items^-{TARGET_POWER:g}, l2={l2:g}",
                    lambda l2=l2: AttributeModel(l2=l2, seed=seed)) for l2 in L2_GRID]
    for name, make in candidates:
        model = make().fit(users, history, split.train.user_ids)
        membership = model.encoder_.transform(users.aligned(split.test_user_ids))
        rows.append(_row(name, model.score(membership), split, references, n_resamples, seed)
                    | ({"l2": model.l2_} if model.l2 is None else {}))
    train_membership = model.encoder_.transform(users.aligned(split.train.user_ids))
    for shrinkage in NAIVE_BAYES_SHRINKAGE:
        scores = naive_bayes_scores(train_membership, membership, history, shrinkage)
        rows.append(_row(f"naive-Bayes lifts, shrinkage={shrinkage:g}", scores, split, references, n_resamples, seed))
    return rows


def compare_priors(split, users, item_vectors, catalog, priors, seed: int, n_resamples: int) -> list[dict]:
    """Recall@20 of attributes + events over ``priors``, paired with the events alone, per level."""
    history = split.train.matrix()
    model = AttributeModel(seed=seed).fit(users, history, split.train.user_ids)
    attributes = model.score(model.encoder_.transform(users.aligned(split.test_user_ids)))
    score_events = protocol.tastemap_event_scorer(item_vectors, catalog, seed=seed)(split.train)
    rows = []
    for level in protocol.LEVELS[1:]:
        events = score_events([items[:level] for items in split.test_items])
        alone = protocol.rank_metrics(events, split.test_items, level)["Recall@20"]
        for prior in priors:
            both = protocol.rank_metrics(blend_with_events(attributes, events, level, prior=prior), split.test_items, level)
            ratio = bootstrap_ratio_ci(both["Recall@20"], alone, n_resamples=n_resamples, seed=seed)
            rows.append({"events_given": level, "prior": prior, "Recall@20": float(both["Recall@20"].mean()),
                         "vs_events": ratio.as_dict()})
    return rows


def describe_segments(inputs, users, seed: int, report: Path | None = None) -> list[dict]:
    """The tastemap recommender fitted on every user; its segments with their labels and the
    attributes over-represented in them (groups of at least 10 users), and, given ``report``,
    the HTML report of that model (its segment table names the attributes too)."""
    from tastemap.runtime.recommend.attributes import add_attribute_descriptions, attributes_text
    from tastemap.runtime.recommend.recommender import TastemapRecommender
    from tastemap.runtime.recommend.report import report_from_recommender, write_report

    recommender = TastemapRecommender(seed=seed).fit(inputs.interactions, inputs.catalog, inputs.item_vectors)
    add_attribute_descriptions(recommender.segmenter_, users)
    if report is not None:
        summary = {"users": f"{inputs.interactions.n_users:,}", "items": f"{inputs.interactions.n_items:,}",
                   "events": f"{inputs.interactions.n_events:,}", "user attributes": ", ".join(users.columns)}
        write_report(report_from_recommender(recommender, title="tastemap: MovieLens 100K with user attributes",
                                             summary=summary, seed=seed), report)
    return [{"segment": int(row.segment), "size": int(row.size), "label": row.label,
             "attributes": list(row.top_attributes), "text": attributes_text(row.top_attributes)}
            for row in recommender.segmenter_.segments_.itertuples()]


def _row(name, scores, split, references, n_resamples, seed) -> dict:
    recall = protocol.rank_metrics(scores, split.test_items, 0)["Recall@20"]
    global_reference, weighted_reference = references
    return {"model": name, "Recall@20": bootstrap_ci(recall, n_resamples=n_resamples, seed=seed).as_dict(),
            "vs_global_popularity": bootstrap_ratio_ci(recall, global_reference, n_resamples=n_resamples, seed=seed).as_dict(),
            "vs_weighted_popularity": bootstrap_ratio_ci(recall, weighted_reference, n_resamples=n_resamples,
                                                         seed=seed).as_dict()}


def main(argv: list[str] | None = None) -> int:
    from tastemap.runtime.io.movielens100k import ENV_VAR, find_movielens_100k
    from tastemap.runtime.pipeline.user_attributes import evaluate_user_cold_start_inputs, load_attribute_inputs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help=f"MovieLens 100K folder (default: ${ENV_VAR})")
    parser.add_argument("--vectors", type=Path, default=None, help="Item vectors (.npy, u.item order); skips the encoder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--compare", action="store_true", help="Also compare attribute models and blend priors")
    parser.add_argument("--priors", default="1,2,4,8")
    parser.add_argument("--segments", action="store_true", help="Also describe the segments of all users by attributes")
    parser.add_argument("--report", type=Path, default=None,
                        help="With --segments: HTML report of the model fitted on every user")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the figures")
    args = parser.parse_args(argv)
    if args.report is not None and not args.segments:
        parser.error("--report writes the report of the segments' model: add --segments")
    folder = find_movielens_100k(args.data)
    if folder is None:
        print(f"error: MovieLens 100K not found; pass --data DIR or set {ENV_VAR}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    inputs, users = load_attribute_inputs(data_dir=folder, vectors_path=args.vectors)
    result = evaluate_user_cold_start_inputs(inputs, users, seed=args.seed, n_resamples=args.resamples)
    table = result.table()
    columns = ["events_given", "model", "Recall@20", "Recall@20_low", "Recall@20_high", "NDCG@10", "HR@10",
               "Recall@20_vs_ref", "Recall@20_vs_ref_low", "Recall@20_vs_ref_high"]
    print(table[columns].round(4).to_string(index=False))
    for name, ratios in result.ratios[0].items():
        print(f"level 0, {name}: Recall@20 ratio {ratios['Recall@20'].mean:.3f} "
              f"[{ratios['Recall@20'].low:.3f}, {ratios['Recall@20'].high:.3f}]")
    summary = {"command": "python -m tastemap.bench.user_cold_start " + " ".join(argv if argv is not None else sys.argv[1:]),
               "result": result.to_dict()}
    if args.compare:
        split = protocol.split_new_users(inputs.interactions, seed=args.seed)
        summary["attribute_models"] = compare_attribute_models(split, users, args.seed, args.resamples)
        priors = [float(p) for p in args.priors.split(",")]
        summary["priors"] = compare_priors(split, users, inputs.item_vectors, inputs.catalog, priors, args.seed,
                                           args.resamples)
        for row in summary["attribute_models"]:
            vs_global, vs_weighted = row["vs_global_popularity"], row["vs_weighted_popularity"]
            chosen = f" (l2={row['l2']:g})" if "l2" in row else ""
            print(f"{row['model'] + chosen:62s} Recall@20 {row['Recall@20']['mean']:.4f}  vs global "
                  f"{vs_global['mean']:.3f} [{vs_global['low']:.3f}, {vs_global['high']:.3f}]  vs weighted "
                  f"{vs_weighted['mean']:.3f} [{vs_weighted['low']:.3f}, {vs_weighted['high']:.3f}]")
        for row in summary["priors"]:
            print(f"events {row['events_given']} prior {row['prior']:g}: Recall@20 {row['Recall@20']:.4f} vs events "
                  f"{row['vs_events']['mean']:.3f} [{row['vs_events']['low']:.3f}, {row['vs_events']['high']:.3f}]")
    if args.segments:
        summary["segments"] = describe_segments(inputs, users, args.seed, args.report)
        for row in summary["segments"]:
            print(f"segment {row['segment']} ({row['size']} users) {row['label']}: {row['text'] or '-'}")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
