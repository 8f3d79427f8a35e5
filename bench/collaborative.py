"""Quality of the collaborative weights and of two-stage serving on MovieLens (leave-last-out).

    python -m tastemap.bench.collaborative --out collaborative.json

Fits tastemap's default blend on the training part of MovieLens ml-latest-small with the
default model package's item vectors, then evaluates (HR@10, NDCG@10, 95% bootstrap intervals
over users):

- ``dense EASE, exhaustive``: the blend with dense EASE weights (every eigenvector kept), every
  item scored: the path tastemap served before two-stage serving, the reference;
- ``low-rank EASE rank=R, two-stage``: the blend with ``R`` eigenvectors, served from the
  candidates only (what ``recommend`` does), for each ``--ranks``;

with the paired-bootstrap ratio of each to the reference and the share of the exhaustive top 10
(same weights, every item scored) that the two-stage top 10 holds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


class _Exhaustive:
    """Every item's blended score (the reference path)."""

    def __init__(self, recommender):
        self.recommender = recommender

    def score(self, users: np.ndarray) -> np.ndarray:
        recommender = self.recommender
        return recommender._blend(recommender._components(np.asarray(users), recommender.state_,
                                                          recommender._weighted()))


def run(ranks: list[int], seed: int = 0) -> dict:
    from tastemap.runtime.io.events import align_events, load_movielens, render_item_texts
    from tastemap.runtime.encode.default_encoder import make_encoder
    from tastemap.runtime.recommend.collaborative import low_rank_ease
    from tastemap.runtime.recommend.evaluate import evaluate_model, split_events
    from tastemap.runtime.recommend.metrics import bootstrap_ci, bootstrap_ratio_ci
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    events, catalog = load_movielens()
    data, _ = align_events(events, catalog)
    vectors = make_encoder(None, export_missing=True).encode(render_item_texts(catalog))
    split = split_events(data, "leave-last-out")
    reference_model = TastemapRecommender(seed=seed).fit(
        split.train, catalog, vectors, collaborative=low_rank_ease(split.train.matrix(), l2=500.0,
                                                                   rank=split.train.n_items))
    reference = evaluate_model(_Exhaustive(reference_model), split, fit=False)
    rows = [_row("dense EASE, exhaustive", reference, reference, None, None, bootstrap_ci, bootstrap_ratio_ci)]
    for rank in ranks:
        start = time.perf_counter()
        model = TastemapRecommender(seed=seed, rank=rank).fit(split.train, catalog, vectors)
        fit_seconds = time.perf_counter() - start
        served = evaluate_model(model, split, fit=False)
        exhaustive = evaluate_model(_Exhaustive(model), split, fit=False)
        coverage = float(np.mean([len(set(a[:10]) & set(b[:10])) / 10
                                  for a, b in zip(served.top_items, exhaustive.top_items)]))
        rows.append(_row(f"low-rank EASE rank={rank}, two-stage", served, reference, coverage, fit_seconds,
                         bootstrap_ci, bootstrap_ratio_ci))
    return {"data": "MovieLens ml-latest-small", "protocol": "leave-last-out", "n_users": int(reference.users.size),
            "rows": rows}


def _row(name, evaluation, reference, coverage, fit_seconds, bootstrap_ci, bootstrap_ratio_ci) -> dict:
    row = {"model": name}
    for metric in ("HR@10", "NDCG@10"):
        interval = bootstrap_ci(evaluation.per_user[metric])
        ratio = bootstrap_ratio_ci(evaluation.per_user[metric], reference.per_user[metric])
        row[metric] = [round(interval.mean, 4), round(interval.low, 4), round(interval.high, 4)]
        row[f"{metric} vs reference"] = [round(ratio.mean, 4), round(ratio.low, 4), round(ratio.high, 4)]
    row["top-10 share of exhaustive"] = None if coverage is None else round(coverage, 4)
    row["fit seconds"] = None if fit_seconds is None else round(fit_seconds, 1)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="128,256,512,1024", help="Comma-separated ranks.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON file for the figures.")
    args = parser.parse_args(argv)
    report = run([int(r) for r in args.ranks.split(",")], seed=args.seed)
    for row in report["rows"]:
        print(json.dumps(row))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
