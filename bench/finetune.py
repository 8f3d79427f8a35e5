"""Item cold start on the bundled MovieLens sample: the fine-tuned encoder against the frozen one.

The newest 20% of the items (by first interaction) are held out with all their interactions; the
encoder is fine-tuned on the rest only (the data hash is checked); the held-out items are ranked
for every user by content similarity to their training history. Reproduce with::

    python -m tastemap.bench.finetune --out bench/results/finetune.json

Both encoders embed the items through sentence-transformers (the same code path, so the
comparison isolates the weights); the frozen vectors are cached in ``--work``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from tastemap.console import exits_on_error

log = logging.getLogger(__name__)
app = typer.Typer(add_completion=False)


def embed_items(folder: Path, texts: list[str], *, batch_size: int = 128) -> np.ndarray:
    """Unit vectors ``[n_texts, dim]`` float32 of ``texts`` by the sentence-transformers model in ``folder``."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cuda" if torch.cuda.is_available() else "cpu")
    with torch.inference_mode():
        vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=False)
    return vectors.astype(np.float32)


def run_cold_start_bench(
    *,
    work: Path,
    holdout_fraction: float = 0.2,
    aggregate: str = "mean",
    config_overrides: dict | None = None,
    seed: int = 0,
) -> dict:
    """Split, fine-tune on the training part, embed, evaluate. Returns the JSON-ready result."""
    from tastemap.bench.machine import machine_info
    from tastemap.export.finetune import FinetuneConfig, config_dict, finetune_encoder
    from tastemap.export.source import SourceModel
    from tastemap.runtime.encode.providers import usable_cores
    from tastemap.runtime.io.events import load_movielens, render_item_texts
    from tastemap.runtime.recommend.cold_start import ContentModel, evaluate_cold_start, split_new_items

    events, catalog = load_movielens()
    split = split_new_items(events, catalog, holdout_fraction=holdout_fraction)
    config = FinetuneConfig(out=work / "finetuned", template=split.template, seed=seed, **(config_overrides or {}))
    started = time.perf_counter()
    tuned = finetune_encoder(split.train_events, split.train_catalog, config)
    train_seconds = time.perf_counter() - started
    if tuned.data_sha256 != split.train_sha256:
        raise AssertionError("the fine-tune's data hash differs from the training part's: leakage or a changed split")
    texts = render_item_texts(split.catalog, split.template)
    base = SourceModel.resolve(config.base)
    frozen_path = work / f"frozen-{base.sha256[:12]}-{split.train_sha256[:12]}.npy"
    started = time.perf_counter()
    if frozen_path.is_file():
        frozen = np.load(frozen_path)
    else:
        frozen = embed_items(base.path, texts)
        np.save(frozen_path, frozen)
    tuned_vectors = embed_items(tuned.path, texts)
    embed_seconds = time.perf_counter() - started
    result = evaluate_cold_start(split, [
        ContentModel(f"Frozen {base.name}", frozen),
        ContentModel(f"Fine-tuned {base.name}", tuned_vectors, trained_on=tuned.data_sha256),
    ], aggregate=aggregate, seed=seed)
    return {
        "command": "python -m tastemap.bench.finetune",
        "cold_start": result.to_dict(),
        "finetune": {"config": config_dict(config), "record": tuned.record,
                     "train_seconds": round(train_seconds, 1)},
        "embed_seconds": round(embed_seconds, 1),
        "machine": machine_info(usable_cores()),
    }


@app.command()
@exits_on_error
def main(
    out: Path = typer.Option(Path("bench/results/finetune.json"), "--out", "-o", help="JSON result file."),
    work: Path = typer.Option(Path(".finetune-bench"), help="Working folder: the fine-tuned model and cached vectors."),
    epochs: int = typer.Option(1, help="Fine-tuning epochs."),
    max_pairs: int = typer.Option(8_000, help="Co-engaged pairs drawn per epoch."),
    batch_size: int = typer.Option(64, help="Pairs per batch (in-batch negatives)."),
    learning_rate: float = typer.Option(1e-4, help="Peak learning rate."),
    max_seq_len: int = typer.Option(48, help="Token truncation during training."),
    max_steps: Optional[int] = typer.Option(None, help="Cap on optimizer steps."),
    aggregate: str = typer.Option("mean", help="User history to item score: mean or max."),
    seed: int = typer.Option(0, help="Seed of the pair sampling, the batches and the training."),
) -> None:
    """Item cold start Recall/NDCG of the fine-tuned vs the frozen encoder on MovieLens."""
    from tastemap.console import print_table, setup_logging, stdout

    setup_logging()
    overrides = {"epochs": epochs, "max_pairs": max_pairs, "batch_size": batch_size, "learning_rate": learning_rate,
                 "max_seq_len": max_seq_len, "max_steps": max_steps}
    result = run_cold_start_bench(work=work, aggregate=aggregate, config_overrides=overrides, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    cold = result["cold_start"]
    rows = []
    for name, metrics in cold["metrics"].items():
        ratio = cold["ratios_to_reference"][name]["Recall@20"]
        rows.append([name, *(_interval(metrics[m]) for m in ("Recall@10", "Recall@20", "NDCG@10")), _interval(ratio)])
    print_table(f"item cold start: {cold['n_items_held_out']} new items, {cold['n_users']} users ({aggregate} of history)",
                ["model", "Recall@10", "Recall@20", "NDCG@10", f"Recall@20 / {cold['reference']}"], rows)
    stdout.print(cold["not_evaluated"])
    stdout.print(f"fine-tuning: {result['finetune']['train_seconds']} s on {result['machine']['cores_usable']} cores "
                 f"({result['finetune']['record']['steps']} steps); result written to {out}")


def _interval(value: dict) -> str:
    return f"{value['mean']:.4f} [{value['low']:.4f}, {value['high']:.4f}]"


if __name__ == "__main__":
    app()
