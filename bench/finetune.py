"""The fine-tuned encoder against the frozen one on the bundled MovieLens sample.

- item cold start (default): the newest 20% of the items (by first interaction) are held out
  with all their interactions; the encoder is fine-tuned on the rest only (the data hash is
  checked); the held-out items are ranked for every user by content similarity to their
  training history;
- ``--protocol leave-last-out``: the encoder is fine-tuned on every user's history but the last
  event, and the content-only recommenders (single mean vector, multi-interest) rank the whole
  catalogue with each encoder's vectors.

Reproduce with::

    python -m tastemap.bench.finetune --out bench/results/finetune.json
    python -m tastemap.bench.finetune --protocol leave-last-out --out bench/results/finetune-warm.json

Both encoders embed the items through sentence-transformers (the same code path, so the
comparison isolates the weights); the vectors are cached in ``--work``, keyed by the model's and
the texts' hashes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from tastemap.console import exits_on_error
from tastemap.export.finetune_config import DEFAULTS as FINETUNE_DEFAULTS

app = typer.Typer(add_completion=False)


def embed_items(folder: Path, texts: list[str], rows: np.ndarray, *, batch_size: int = 128) -> np.ndarray:
    """Unit vectors ``[n_texts, dim]`` float32 by the sentence-transformers model in ``folder``;
    only ``rows`` are encoded, the other rows are zeros."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cuda" if torch.cuda.is_available() else "cpu")
    with torch.inference_mode():
        encoded = model.encode([texts[i] for i in rows], batch_size=batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
    vectors = np.zeros((len(texts), encoded.shape[1]), np.float32)
    vectors[rows] = encoded
    return vectors


def cached_embeddings(folder: Path, texts: list[str], rows: np.ndarray, cache: Path) -> np.ndarray:
    """:func:`embed_items`, cached in ``cache/<model hash>-<texts hash>.npy``."""
    import hashlib

    from tastemap.export.source import SourceModel

    digest = hashlib.sha256("\n".join(texts).encode() + rows.tobytes()).hexdigest()[:12]
    path = cache / f"{SourceModel.resolve(folder).sha256[:12]}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    vectors = embed_items(folder, texts, rows)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def run_cold_start_bench(
    *,
    work: Path,
    holdout_fraction: float = 0.2,
    config_overrides: dict | None = None,
    seed: int = 0,
    finetuned: Path | None = None,
) -> dict:
    """Split, fine-tune on the training part (or take the ``finetuned`` folder of an earlier run,
    which must have been trained on that same training part), embed, evaluate (mean and max of
    the history). Returns the JSON-ready result."""
    from tastemap.bench.machine import machine_info
    from tastemap.export.finetune import FinetuneConfig, FinetuneResult, config_dict, finetune_encoder, read_record
    from tastemap.export.source import SourceModel
    from tastemap.cpu import usable_cores
    from tastemap.runtime.io.events import load_movielens, render_item_texts
    from tastemap.runtime.recommend.cold_start import (
        AGGREGATES,
        ContentModel,
        evaluate_cold_start,
        scored_items,
        split_new_items,
    )
    from tastemap.runtime.recommend.metrics import bootstrap_ratio_ci

    events, catalog = load_movielens()
    split = split_new_items(events, catalog, holdout_fraction=holdout_fraction)
    config = FinetuneConfig(out=work / "finetuned", template=split.template, seed=seed, **(config_overrides or {}))
    started, cpu_started = time.perf_counter(), time.process_time()
    if finetuned is None:
        tuned = finetune_encoder(split.train_events, split.train_catalog, config)
    else:
        tuned = FinetuneResult(path=finetuned, record=read_record(finetuned) or {"data": {"sha256": None}}, losses=np.empty(0))
    train_seconds, train_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if tuned.data_sha256 != split.train_sha256:
        raise AssertionError("the fine-tune's data hash differs from the training part's: leakage or a changed split")
    texts = render_item_texts(split.catalog, split.template)
    rows = scored_items(split)
    base = SourceModel.resolve(config.base)
    started = time.perf_counter()
    frozen = cached_embeddings(base.path, texts, rows, work / "vectors")
    tuned_vectors = cached_embeddings(tuned.path, texts, rows, work / "vectors")
    embed_seconds = time.perf_counter() - started
    models = [ContentModel(f"{kind} ({aggregate})", vectors, trained_on=trained_on, aggregate=aggregate)
              for kind, vectors, trained_on in (("Frozen", frozen, None), ("Fine-tuned", tuned_vectors, tuned.data_sha256))
              for aggregate in AGGREGATES]
    result = evaluate_cold_start(split, models, reference="Frozen (mean)", seed=seed)
    same_rule = {aggregate: {metric: bootstrap_ratio_ci(result.per_user[f"Fine-tuned ({aggregate})"][metric],
                                                        result.per_user[f"Frozen ({aggregate})"][metric], seed=seed).as_dict()
                             for metric in ("Recall@20", "NDCG@10")} for aggregate in AGGREGATES}
    best_tuned, best_frozen, best = result.best_versus_best("Fine-tuned", "Frozen", seed=seed)
    best = {metric: interval.as_dict() for metric, interval in best.items()}
    return {
        "command": "python -m tastemap.bench.finetune",
        "base": {"name": base.name, "sha256": base.sha256},
        "cold_start": result.to_dict(),
        "fine_tuned_vs_frozen": {"same_aggregate": same_rule,
                                 "best_vs_best": {"fine_tuned": best_tuned, "frozen": best_frozen, **best}},
        "finetune": {"config": None if finetuned else config_dict(config), "record": tuned.record,
                     "train_seconds": tuned.record.get("seconds") if finetuned else round(train_seconds, 1),
                     "train_cpu_seconds": None if finetuned else round(train_cpu_seconds, 1)},
        "embed_seconds": round(embed_seconds, 1),
        "items_embedded": int(rows.size),
        "machine": machine_info(usable_cores()),
    }


def run_warm_bench(*, work: Path, config_overrides: dict | None = None, seed: int = 0) -> dict:
    """Leave-last-out: fine-tune on the training part, embed every item with both encoders, and
    evaluate content single-vector and content multi-interest on each. Returns the JSON-ready result."""
    from tastemap.bench.machine import machine_info
    from tastemap.export.finetune import FinetuneConfig, config_dict, finetune_encoder
    from tastemap.export.source import SourceModel
    from tastemap.cpu import usable_cores
    from tastemap.runtime.io.events import align_events, load_movielens, render_item_texts
    from tastemap.runtime.recommend.baselines import ContentSingleVector
    from tastemap.runtime.recommend.evaluate import evaluate_model, multi_interest_content, split_events
    from tastemap.runtime.recommend.metrics import bootstrap_ci, bootstrap_ratio_ci

    events, catalog = load_movielens()
    split = split_events(align_events(events, catalog)[0], "leave-last-out")
    config = FinetuneConfig(out=work / "finetuned-warm", seed=seed, **(config_overrides or {}))
    tuned = finetune_encoder(split.train.to_frame(), catalog, config)
    texts, rows = render_item_texts(catalog), np.arange(len(catalog))
    base = SourceModel.resolve(config.base)
    vectors = {"Frozen": cached_embeddings(base.path, texts, rows, work / "vectors"),
               "Fine-tuned": cached_embeddings(tuned.path, texts, rows, work / "vectors")}
    per_user = {}
    for encoder, item_vectors in vectors.items():
        models = {"single-vector": (ContentSingleVector(), {"item_vectors": item_vectors}),
                  "multi-interest": (multi_interest_content(seed), {"catalog": catalog, "item_vectors": item_vectors})}
        for name, (model, fit_params) in models.items():
            per_user[f"{encoder} {name}"] = evaluate_model(model, split, fit_params=fit_params).per_user
    metrics = ("HR@10", "NDCG@10")
    return {
        "command": "python -m tastemap.bench.finetune --protocol leave-last-out",
        "base": {"name": base.name, "sha256": base.sha256},
        "metrics": {name: {m: bootstrap_ci(values[m], seed=seed).as_dict() for m in metrics} for name, values in per_user.items()},
        "fine_tuned_vs_frozen": {name: {m: bootstrap_ratio_ci(per_user[f"Fine-tuned {name}"][m], per_user[f"Frozen {name}"][m],
                                                              seed=seed).as_dict() for m in metrics}
                                 for name in ("single-vector", "multi-interest")},
        "finetune": {"config": config_dict(config), "record": tuned.record},
        "machine": machine_info(usable_cores()),
    }


@app.command()
@exits_on_error
def main(
    out: Path = typer.Option(Path("bench/results/finetune.json"), "--out", "-o", help="JSON result file."),
    work: Optional[Path] = typer.Option(None, help="Working folder for the fine-tuned model and the cached vectors "
                                        "(default: finetune/ in the tastemap bench cache, ~/.cache/tastemap/bench on Linux)."),
    protocol: str = typer.Option("item-cold-start", help="item-cold-start or leave-last-out."),
    objective: str = typer.Option(FINETUNE_DEFAULTS.objective, help="history or pairs (see tastemap finetune --help)."),
    epochs: int = typer.Option(FINETUNE_DEFAULTS.epochs, help="Fine-tuning epochs."),
    max_examples: int = typer.Option(FINETUNE_DEFAULTS.max_examples, help="Groups or pairs drawn per epoch."),
    batch_size: int = typer.Option(FINETUNE_DEFAULTS.batch_size, help="Groups or pairs per batch (in-batch negatives)."),
    learning_rate: float = typer.Option(FINETUNE_DEFAULTS.learning_rate, help="Peak learning rate."),
    max_seq_len: int = typer.Option(FINETUNE_DEFAULTS.max_seq_len, help="Token truncation during training."),
    max_steps: Optional[int] = typer.Option(None, help="Cap on optimizer steps."),
    window: int = typer.Option(FINETUNE_DEFAULTS.window, help="Co-engagement window, in events."),
    min_weight: float = typer.Option(FINETUNE_DEFAULTS.min_weight, help="Events below this weight are no positives."),
    popularity_correction: bool = typer.Option(FINETUNE_DEFAULTS.popularity_correction,
                                               help="logQ correction of the in-batch negatives (see tastemap finetune --help)."),
    seed: int = typer.Option(0, help="Seed of the sampling, the batches and the training."),
    finetuned: Optional[Path] = typer.Option(None, help="Evaluate this fine-tuned folder of an earlier run instead of training."),
) -> None:
    """Item cold start Recall/NDCG of the fine-tuned vs the frozen encoder on MovieLens."""
    from tastemap.console import print_table, setup_logging, stdout
    from tastemap.errors import InputError

    from tastemap.paths import cache_dir

    setup_logging()
    work = work or cache_dir("bench") / "finetune"
    overrides = {"objective": objective, "epochs": epochs, "max_examples": max_examples, "batch_size": batch_size,
                 "learning_rate": learning_rate, "max_seq_len": max_seq_len, "max_steps": max_steps,
                 "window": window, "min_weight": min_weight, "popularity_correction": popularity_correction}
    if protocol not in ("item-cold-start", "leave-last-out"):
        raise InputError(f"--protocol {protocol!r} is not item-cold-start or leave-last-out")
    if protocol == "leave-last-out":
        if finetuned is not None:
            raise InputError("--finetuned applies to item-cold-start; leave-last-out fine-tunes its own training part")
        result = run_warm_bench(work=work, config_overrides=overrides, seed=seed)
        _write(out, result)
        print_table("leave-last-out, content only: frozen and fine-tuned encoder, mean [95% CI]", ["model", "HR@10", "NDCG@10"],
                    [[name, _interval(m["HR@10"]), _interval(m["NDCG@10"])] for name, m in result["metrics"].items()])
        for name, ratios in result["fine_tuned_vs_frozen"].items():
            stdout.print(f"fine-tuned / frozen, {name}: HR@10 {_interval(ratios['HR@10'])}, NDCG@10 {_interval(ratios['NDCG@10'])}")
        return
    result = run_cold_start_bench(work=work, config_overrides=overrides, seed=seed, finetuned=finetuned)
    _write(out, result)
    cold = result["cold_start"]
    rows = [[name, *(_interval(metrics[m]) for m in ("Recall@10", "Recall@20", "NDCG@10")),
             _interval(cold["ratios_to_reference"][name]["Recall@20"])] for name, metrics in cold["metrics"].items()]
    print_table(f"item cold start: {cold['n_items_held_out']} new items, {cold['n_users']} users",
                ["model (user history)", "Recall@10", "Recall@20", "NDCG@10", f"Recall@20 / {cold['reference']}"], rows)
    versus = result["fine_tuned_vs_frozen"]
    for aggregate, ratios in versus["same_aggregate"].items():
        stdout.print(f"fine-tuned / frozen, both {aggregate} of history: Recall@20 {_interval(ratios['Recall@20'])}")
    best = versus["best_vs_best"]
    stdout.print(f"{best['fine_tuned']} / {best['frozen']} (each at its better rule): Recall@20 {_interval(best['Recall@20'])}")
    stdout.print(cold["not_evaluated"])
    finetune = result["finetune"]
    stdout.print(f"fine-tuning: {finetune['train_seconds']} s ({finetune['train_cpu_seconds']} s of CPU) on "
                 f"{result['machine']['cores_usable']} cores, {finetune['record'].get('steps')} steps; written to {out}")


def _write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def _interval(value: dict) -> str:
    return f"{value['mean']:.4f} [{value['low']:.4f}, {value['high']:.4f}]"


if __name__ == "__main__":
    app()
