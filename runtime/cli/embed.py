"""CLI of the encoder: ``tastemap embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tastemap.console import exits_on_error
from tastemap.paths import MODEL_HELP
from tastemap.runtime.encode.encoder import DEFAULT_CHUNK_ROWS, DEFAULT_MAX_TOKENS
from tastemap.runtime.encode.providers import Device, Variant
from tastemap.runtime.spark.session import Engine

app = typer.Typer()


@app.command("embed")
@exits_on_error
def embed_command(
    input: Path = typer.Argument(..., help="Input table: .csv, .tsv, .jsonl (optionally .gz) or .parquet."),
    text_col: str = typer.Option(..., "--text-col", help="Column holding the texts."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npy (float32, rows x dim); ids go to OUT.ids.parquet."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Column holding the ids (default: row numbers)."),
    model: Optional[Path] = typer.Option(None, "--model", help=MODEL_HELP),
    variant: Variant = typer.Option(Variant.auto, help="ONNX variant: auto is fp16 on a GPU, int8 on the CPU."),
    device: Device = typer.Option(Device.auto, help="auto falls back to the CPU with a warning; cuda fails without CUDA."),
    batch_tokens: Optional[int] = typer.Option(
        DEFAULT_MAX_TOKENS, "--batch-tokens",
        help="Padded tokens per batch [default: 512 on the CPU, 2048 on a GPU]."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime threads (default: usable cores)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Embedding cache folder: unchanged texts are not re-encoded."),
    chunk_rows: int = typer.Option(DEFAULT_CHUNK_ROWS, "--chunk-rows", help="Rows read and written per chunk."),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue an interrupted run, or start over."),
    engine: Engine = typer.Option(Engine.local, help="local: this process; spark: mapInPandas on Spark, OUT is a Parquet folder."),
    master: str = typer.Option("local[*]", help="Spark master with --engine spark (ignored under spark-submit)."),
    partitions: Optional[int] = typer.Option(None, help="With --engine spark: partitions the texts are spread over."),
) -> None:
    """Encode a text column into a memory-mapped .npy of unit vectors.

    Example: tastemap embed movies.csv --text-col title --id-col movieId --out emb.npy
    """
    from tastemap.console import print_table
    from tastemap.runtime.encode.encoder import Encoder
    from tastemap.runtime.encode.streaming import encode_to_file

    if engine is Engine.spark:
        _embed_on_spark(input, out, text_col, id_col, model, variant, device, batch_tokens, threads, cache, master, partitions)
        return
    from tastemap.paths import resolve_model_dir

    encoder = Encoder(
        resolve_model_dir(model), variant=variant.value, device=device.value, threads=threads, max_tokens=batch_tokens, cache_dir=cache
    )
    result = encode_to_file(input, out, text_col, id_col, encoder=encoder, chunk_rows=chunk_rows, resume=resume)
    stats = result.stats
    print_table(
        f"tastemap embed: {result.n_rows:,} texts -> {result.out}",
        ["", "value"],
        [
            ("provider", result.provider),
            ("variant", result.variant),
            ("threads", result.threads),
            ("rows x dim", f"{result.n_rows:,} x {result.dim}"),
            ("resumed rows", f"{result.resumed_rows:,}"),
            ("unique / cached / encoded", f"{stats.unique:,} / {stats.cached:,} / {stats.encoded:,}"),
            ("truncated texts", f"{stats.truncated:,}"),
            ("empty texts", f"{stats.empty:,}"),
            ("padding overhead", f"{stats.padded_tokens / max(stats.tokens, 1) - 1:.1%}"),
            ("texts/s", f"{stats.texts_per_second:,.1f}"),
            ("tokens/s", f"{stats.tokens_per_second:,.1f}"),
            ("ids", str(result.ids_path)),
        ],
    )


def _embed_on_spark(input, out, text_col, id_col, model, variant, device, batch_tokens, threads, cache, master, partitions):
    from tastemap.console import print_table
    from tastemap.errors import InputError
    from tastemap.runtime.spark.embed import embed_with_spark

    if cache is not None:
        raise InputError("--cache is not used with --engine spark; drop it")
    result = embed_with_spark(input, out, text_col=text_col, id_col=id_col, model=model, master=master,
                              variant=variant.value, device=device.value, max_tokens=batch_tokens,
                              threads=threads, partitions=partitions)
    print_table(f"tastemap embed (Spark): {result.n_rows:,} texts -> {result.out}", ["", "value"], [
        ("variant", result.variant), ("workers x threads", f"{result.workers} x {result.threads}"),
        ("partitions", result.partitions), ("rows x dim", f"{result.n_rows:,} x {result.dim}"),
        ("texts/s", f"{result.texts_per_second:,.1f}")])
