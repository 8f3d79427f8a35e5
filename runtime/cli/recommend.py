"""CLI of recommendation and evaluation: ``tastemap recommend``, ``tastemap evaluate``, ``tastemap demo``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from tastemap.console import exits_on_error

app = typer.Typer()

EVENTS_HELP = "Events file (.csv, .parquet, .jsonl); default: the built-in MovieLens sample."
CATALOG_HELP = "Catalog file (item_id, title[, categories, tags, description]); give it with EVENTS."


class ProtocolChoice(str, Enum):
    leave_last_out = "leave-last-out"
    temporal = "temporal"
    both = "both"


def _protocols(choice: ProtocolChoice) -> list[str]:
    return ["leave-last-out", "temporal"] if choice is ProtocolChoice.both else [choice.value]


@app.command("recommend")
@exits_on_error
def recommend_command(
    user: Optional[str] = typer.Option(None, "--user", "-u", help="User id to recommend for."),
    all_users: bool = typer.Option(False, "--all", help="Batch mode: every user, written to --out as Parquet."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Parquet file for --all."),
    k: int = typer.Option(20, "--k", help="Number of recommendations per user."),
    events: Optional[Path] = typer.Option(None, help=EVENTS_HELP),
    catalog: Optional[Path] = typer.Option(None, help=CATALOG_HELP),
    model: Optional[Path] = typer.Option(None, help="Model package folder (default: models/all-MiniLM-L6-v2)."),
    vectors: Optional[Path] = typer.Option(None, help="Precomputed item vectors (.npy, catalog order); skips the encoder."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Recommend items with explanations for one user, or for all users to Parquet.

    Example: tastemap recommend --user 414 --k 10
    """
    from tastemap.console import print_table
    from tastemap.errors import InputError
    from tastemap.runtime.pipeline.demo import load_inputs
    from tastemap.runtime.interests.profile_io import write_atomically
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    if (user is None) == (not all_users):
        raise InputError("give --user USER for one user, or --all --out FILE.parquet for every user")
    if all_users and out is None:
        raise InputError("--all needs --out FILE.parquet")
    inputs = load_inputs(events, catalog, model_dir=model, vectors_path=vectors, seed=seed)
    recommender = TastemapRecommender(catalog=inputs.catalog, item_vectors=inputs.item_vectors, seed=seed)
    recommender.fit(inputs.interactions)
    if all_users:
        frame = recommender.recommend_batch(k=k)
        write_atomically(out.parent, {out.name: lambda path: frame.to_parquet(path, index=False)})
        typer.echo(f"wrote {len(frame):,} recommendations for {frame['user_id'].nunique():,} users to {out}")
        return
    user_id = _as_user_id(user, inputs.interactions.user_ids)
    recs = recommender.recommend(user_id, k=k)
    print_table(f"Recommendations for user {user}", ["#", "item", "title", "layer", "why"],
                [(r.rank, r.item_id, r.title, r.explanation.layer, r.explanation.describe()) for r in recs])


def _as_user_id(text: str, user_ids):
    """Match the command-line string to the ids' type (MovieLens user ids are integers)."""
    import numpy as np

    if np.issubdtype(np.asarray(user_ids).dtype, np.integer):
        try:
            return int(text)
        except ValueError:
            from tastemap.errors import InputError

            raise InputError(f"--user {text!r} is not an integer; this data set's user ids are integers") from None
    return text


@app.command("evaluate")
@exits_on_error
def evaluate_command(
    events: Optional[Path] = typer.Option(None, help=EVENTS_HELP),
    catalog: Optional[Path] = typer.Option(None, help=CATALOG_HELP),
    protocol: ProtocolChoice = typer.Option(ProtocolChoice.leave_last_out, help="Split protocol."),
    tune: bool = typer.Option(False, "--tune", help="Choose the blend weights on the validation split first."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write evaluation.csv into this folder."),
    sample: Optional[int] = typer.Option(None, help="Evaluate on this many users drawn with --seed."),
    model: Optional[Path] = typer.Option(None, help="Model package folder (default: models/all-MiniLM-L6-v2)."),
    vectors: Optional[Path] = typer.Option(
        None, help="Precomputed item vectors (.npy, catalog order); skips the encoder and the content-literal baseline."),
    seed: int = typer.Option(0, help="Random seed (sampling, bootstrap, clustering)."),
) -> None:
    """Compare tastemap with MostPop, ItemKNN, EASE and content baselines (full ranking, 95% CIs).

    Example: tastemap evaluate --protocol both --out eval/
    """
    import pandas as pd

    from tastemap.console import print_table
    from tastemap.runtime.pipeline.demo import load_inputs
    from tastemap.runtime.recommend.evaluate import compare_models, evaluation_table, split_events, tune_blend
    from tastemap.runtime.interests.profile_io import write_atomically
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    inputs = load_inputs(events, catalog, model_dir=model, vectors_path=vectors, sample=sample, seed=seed)
    tables = []
    for name in _protocols(protocol):
        split = split_events(inputs.interactions, name)
        weights = None
        if tune:
            weights, _ = tune_blend(TastemapRecommender(catalog=inputs.catalog, item_vectors=inputs.item_vectors,
                                                        seed=seed), split)
            typer.echo(f"{name}: blend weights chosen on validation: {weights.as_dict()}")
        results = compare_models(split, catalog=inputs.catalog, item_vectors=inputs.item_vectors,
                                 encoder=inputs.encoder, weights=weights, seed=seed)
        table = evaluation_table(results, reference=results[2].name, seed=seed)
        tables.append(table.assign(protocol=name))
        print_table(f"{name}: {int(table['users'].iloc[0]):,} users, mean [95% CI]",
                    ["model", "HR@10", "NDCG@10", "HR@50", "Coverage@10", f"HR@10 vs {results[2].name}"],
                    [(r["model"], _ci(r, "HR@10"), _ci(r, "NDCG@10"), _ci(r, "HR@50"), f"{r['Coverage@10']:.3f}",
                      _ci(r, "HR@10_vs_ref", "{:.2f}")) for _, r in table.iterrows()])
    if out is not None:
        frame = pd.concat(tables, ignore_index=True)
        write_atomically(out, {"evaluation.csv": lambda path: frame.to_csv(path, index=False)})
        typer.echo(f"wrote {out / 'evaluation.csv'}")


def _ci(row, metric: str, fmt: str = "{:.4f}") -> str:
    return f"{fmt.format(row[metric])} [{fmt.format(row[metric + '_low'])}, {fmt.format(row[metric + '_high'])}]"


@app.command("demo")
@exits_on_error
def demo_command(
    out: Path = typer.Option(Path("tastemap-demo"), "--out", "-o", help="Output folder."),
    sample: Optional[int] = typer.Option(None, help="Run on this many users drawn with --seed (faster)."),
    model: Optional[Path] = typer.Option(None, help="Model package folder (default: models/all-MiniLM-L6-v2, exported if missing)."),
    protocol: ProtocolChoice = typer.Option(ProtocolChoice.leave_last_out, help="Evaluation protocol."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Run the whole pipeline on the bundled MovieLens sample and write report.html.

    Example: tastemap demo --out tastemap-demo
    """
    from tastemap.console import print_table
    from tastemap.runtime.pipeline.demo import run_demo

    summary = run_demo(out, sample=sample, model_dir=model, protocols=_protocols(protocol), seed=seed)
    rows = [(name, value) for name, value in summary.items() if name not in ("metrics", "stage_seconds", "out_dir")]
    rows += list(summary["metrics"].items())
    print_table("tastemap demo", ["", "value"], rows)
    typer.echo(f"open {Path(summary['out_dir']) / 'report.html'}")
