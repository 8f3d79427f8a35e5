"""The end-to-end MovieLens demo: export (if needed), embed, profile, segment, recommend, evaluate
and write everything, ``report.html`` included, into one folder.

>>> summary = run_demo("tastemap-demo")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from tastemap.runtime.encode.default_encoder import default_cache_dir, make_encoder  # noqa: F401 (re-exported)
from tastemap.runtime.pipeline.inputs import Inputs, load_inputs

logger = logging.getLogger(__name__)

COLD_START_TEXT = "space adventure with robots and aliens"


def run_demo(
    out_dir: str | Path = "tastemap-demo",
    *,
    sample: int | None = None,
    model_dir: Path | None = None,
    vectors_path: Path | None = None,
    cache_dir: Path | None = None,
    protocols: Sequence[str] = ("leave-last-out",),
    tuned_encoder=None,
    k: int = 10,
    n_example_users: int = 3,
    seed: int = 0,
) -> dict:
    """Run the whole pipeline on the bundled MovieLens sample and write into ``out_dir``:
    ``profiles.parquet``, ``profiles.jsonl``, ``topics.json``, ``segments.parquet``,
    ``user_segments.parquet``, ``recommendations.parquet``, ``evaluation.csv``, ``summary.json``
    and ``report.html``. ``sample`` keeps that many users (seeded); item embeddings are cached in
    ``cache_dir`` (default
    :func:`~tastemap.runtime.encode.default_encoder.default_cache_dir`, shared with ``tastemap recommend``).

    With ``tuned_encoder`` (a :data:`~tastemap.runtime.pipeline.evaluation.TunedEncoder`), each
    protocol is also evaluated with an encoder fine-tuned on its training part, and the interests,
    topics and recommendations use the encoder fine-tuned on the first protocol's training part.
    Returns the summary."""
    from tastemap.runtime.pipeline.evaluation import evaluate_warm
    from tastemap.runtime.recommend.comparison import ease_name
    from tastemap.runtime.recommend.splits import split_events
    from tastemap.runtime.interests.profile_io import write_profiles
    from tastemap.runtime.io.outputs import write_atomically
    from tastemap.runtime.recommend.recommender import TastemapRecommender
    from tastemap.runtime.recommend.report import ExampleUser, report_from_recommender, write_report
    from tastemap.runtime.interests.segments import write_segments
    from tastemap.runtime.io.events import render_item_texts

    out_dir = Path(out_dir)
    started = time.perf_counter()
    seconds = {}
    inputs = load_inputs(model_dir=model_dir, vectors_path=vectors_path, sample=sample, seed=seed,
                         cache_dir=cache_dir, export_missing=True)
    seconds["load and embed"] = time.perf_counter() - started

    tick = time.perf_counter()
    evaluations, tables = {}, []
    reference = ease_name() if protocols else None
    for protocol in protocols:
        warm = evaluate_warm(inputs, protocol, tuned_encoder=tuned_encoder, seed=seed)
        evaluations[protocol] = warm.table
        tables.append(warm.table.assign(protocol=protocol))
    seconds["evaluate"] = time.perf_counter() - tick

    if tuned_encoder is not None:
        tick = time.perf_counter()
        first = split_events(inputs.interactions, protocols[0]) if protocols else None
        train = first.train if first is not None else inputs.interactions
        encoder, _ = tuned_encoder(train.to_frame(), inputs.catalog, f"the {protocols[0]} split" if protocols else "all events")
        inputs = Inputs(interactions=inputs.interactions, catalog=inputs.catalog, report=inputs.report, encoder=encoder,
                        item_vectors=np.asarray(encoder.encode(render_item_texts(inputs.catalog)), np.float32))
        seconds["fine-tune"] = time.perf_counter() - tick
    tick = time.perf_counter()
    vectors = inputs.encoder if inputs.encoder is not None else inputs.item_vectors  # the encoder also labels topics
    recommender = TastemapRecommender(seed=seed).fit(inputs.interactions, inputs.catalog, vectors)
    recommendations = recommender.recommend_batch(k=k)
    seconds["profile, segment, recommend"] = time.perf_counter() - tick

    counts = recommender.state_.interests.counts()
    example_rows = np.lexsort((np.arange(counts.size), -np.minimum(counts, 4),
                               np.abs(np.log(np.maximum(recommender.profiler_.profiles_.n_events, 1) / 100.0))))
    example_users = [recommender.user_index_[i] for i in example_rows[:n_example_users]]
    summary = _summary(inputs, recommender, evaluations, reference, seconds, started)
    data = report_from_recommender(recommender, title="tastemap: MovieLens interest map", summary=summary["report"],
                                   example_users=example_users, evaluations=evaluations,
                                   reference=reference, k=k, seed=seed)
    if inputs.encoder is not None:
        cold = recommender.recommend_cold(text=COLD_START_TEXT, encoder=inputs.encoder, k=k)
        data.users.append(ExampleUser(user_id=f'new user: "{COLD_START_TEXT}"', n_events=0, interests=[],
                                      recommendations=cold))

    write_profiles(recommender.profiler_, out_dir)
    write_segments(recommender.segmenter_, out_dir)
    evaluation = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    write_atomically(out_dir, {
        "recommendations.parquet": lambda path: recommendations.to_parquet(path, index=False),
        "evaluation.csv": lambda path: evaluation.to_csv(path, index=False),
        "summary.json": lambda path: path.write_text(json.dumps(summary["json"], indent=1, default=str)),
    })
    write_report(data, out_dir / "report.html")
    summary["json"]["out_dir"] = str(out_dir)
    return summary["json"]


def _summary(inputs: Inputs, recommender, evaluations: dict, reference: str | None, seconds: dict,
             started: float) -> dict:
    from tastemap.runtime.recommend.comparison import FINETUNED

    interactions = inputs.interactions
    profiler = recommender.profiler_
    info = {
        "users": interactions.n_users,
        "items": interactions.n_items,
        "events": interactions.n_events,
        "topics": profiler.topic_tree_.fine.n_topics,
        "coarse topics": profiler.topic_tree_.levels[0].n_topics,
        "interests per user": float(recommender.state_.interests.counts().mean()),
        "segments": recommender.segmenter_.n_segments_ if recommender.segmenter_ is not None else 0,
        "clustering backend": profiler.backend_,
    }
    if inputs.encoder is not None:
        info["encoder"] = f"{inputs.encoder.package.name} ({inputs.encoder.variant}, {inputs.encoder.provider})"
        finetune = inputs.encoder.package.manifest.get("finetune")
        if finetune:
            info["encoder"] += (f", fine-tuned from {finetune['base']['name']} on {finetune['data']['n_events']:,} "
                                f"events (data sha256 {finetune['data']['sha256'][:12]})")
    metrics = {}
    for protocol, table in evaluations.items():
        rows = table.set_index("model")
        for model in ("tastemap", "tastemap" + FINETUNED, reference):
            if model not in rows.index:
                continue
            for metric in ("HR@10", "NDCG@10"):
                metrics[f"{protocol} {metric} {model}"] = float(rows.loc[model, metric])
    info["seconds"] = round(time.perf_counter() - started, 1)
    as_json = {**info, "metrics": metrics, "stage_seconds": {k: round(v, 1) for k, v in seconds.items()}}
    return {"json": as_json, "report": {**info, **metrics}}
