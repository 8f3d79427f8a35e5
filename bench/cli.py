"""CLI commands of the bench stage: ``tastemap bench``, ``tastemap bench compare``, ``tastemap bench report``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tastemap.console import exits_on_error

app = typer.Typer(
    help="Throughput, latency, quality, roofline, clustering and pipeline benchmarks; a CI regression gate.\n\n"
    "Example: tastemap bench --quick --out bench/results/quick.json",
)


@app.callback(invoke_without_command=True)
@exits_on_error
def bench(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="CI-sized run (MiniLM only, small workloads)."),
    out: Path = typer.Option(Path("bench/results/result.json"), "--out", "-o", help="JSON result file."),
    threads: Optional[int] = typer.Option(None, help="Threads for every library (default: usable cores)."),
    suite: str = typer.Option("encoder,roofline,cluster,pipeline", help="Comma-separated suites to run."),
    models: Optional[str] = typer.Option(
        None, help="Comma-separated presets (minilm, bert-base) or package folders "
                   "(default: minilm,bert-base; minilm with --quick)."),
    models_dir: Optional[Path] = typer.Option(
        None, help="Where presets are exported on first use [default: minilm is the default model package "
                   "(exported there if missing), bert-base goes to the tastemap models folder]."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache of sentence-transformers' ONNX exports "
                                                        "[default: ~/.cache/tastemap/bench on Linux]."),
    seed: int = typer.Option(0, help="Random seed of workloads and clustering."),
) -> None:
    """Run the bench suites and write a JSON result with machine info; every figure has a unit.

    Example: tastemap bench --quick --out bench/results/quick.json
    """
    if ctx.invoked_subcommand is not None:
        return
    from tastemap.bench.report import print_summary
    from tastemap.bench.runner import DEFAULT_SUITES, BenchConfig, default_cache_dir, run_bench
    from tastemap.bench.schema import write_result
    from tastemap.console import stderr
    from tastemap.cpu import usable_cores

    chosen = {
        "quick": quick,
        "threads": threads or usable_cores(),
        "suites": _split(suite),
        "models_dir": models_dir,
        "cache_dir": cache_dir or default_cache_dir(),
        "seed": seed,
    }
    if models is not None:
        chosen["models"] = _split(models)
    config = BenchConfig.quick_preset(**chosen) if quick else BenchConfig(**chosen)
    command = " ".join(["tastemap bench", *(["--quick"] if quick else []), f"--threads {config.threads}",
                        *([f"--suite {suite}"] if set(config.suites) != set(DEFAULT_SUITES) else []),
                        *([f"--models {models}"] if models is not None else [])])
    doc = run_bench(config, command=command)
    write_result(doc, out)
    print_summary(doc)
    stderr.print(f"wrote {out} ({doc['seconds']:.1f} s)", highlight=False)


@app.command("compare")
@exits_on_error
def compare_command(
    base: Path = typer.Argument(..., help="Baseline result (e.g. bench/baseline.json)."),
    new: Path = typer.Argument(..., help="New result."),
    max_regression: float = typer.Option(0.10, help="Largest allowed relative loss of a gated figure."),
    gate_absolute: bool = typer.Option(False, "--gate-absolute", help="Also gate absolute figures (texts/s, ms, MiB)."),
) -> None:
    """Exit 1 when a gated figure of NEW is worse than BASE by more than --max-regression.

    Example: tastemap bench compare bench/baseline.json bench/results/quick.json --max-regression 0.5
    """
    from tastemap.bench.compare import compare_results
    from tastemap.bench.schema import read_result
    from tastemap.console import print_table, stderr

    comparisons, warnings = compare_results(read_result(base), read_result(new), max_regression=max_regression,
                                            gate_absolute=gate_absolute)
    rows = [[c.name, f"{c.base:.4g}", "-" if c.new is None else f"{c.new:.4g}", c.unit,
             "-" if c.change is None else f"{c.change:+.1%}", c.status.upper() if c.failed else c.status]
            for c in comparisons]
    print_table(f"{new} vs {base} (max regression {max_regression:.0%})",
                ["figure", "base", "new", "unit", "change", "status"], rows)
    for warning in warnings:
        stderr.print(f"warning: {warning}", highlight=False, markup=False)
    failed = [c for c in comparisons if c.failed]
    if failed:
        stderr.print(f"{len(failed)} of {len(comparisons)} gated figures regressed or are missing: "
                     + ", ".join(c.name for c in failed), highlight=False, markup=False)
        raise typer.Exit(code=1)
    other = sum(c.status == "other ISA" for c in comparisons)
    stderr.print(f"ok: {len(comparisons) - other} gated figures within {max_regression:.0%}"
                 + (f"; {other} int8 speed figures of another int8 ISA class not gated" if other else ""),
                 highlight=False)


@app.command("report")
@exits_on_error
def report_command(
    result: Path = typer.Argument(..., help="Result file written by `tastemap bench`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Markdown file (default: print to stdout)."),
) -> None:
    """Render a result as the README's markdown performance section.

    Example: tastemap bench report bench-full.json --out perf.md
    """
    from tastemap.bench.report import render_markdown
    from tastemap.bench.schema import read_result

    text = render_markdown(read_result(result), source=result.name)
    if out is None:
        typer.echo(text, nl=False)
        return
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(out)


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())

