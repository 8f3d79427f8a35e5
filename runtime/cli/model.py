"""CLI of fitted models: ``tastemap fit`` (write a model directory) and ``tastemap update`` (fold
new events into it). ``recommend``, ``evaluate`` and ``segment`` answer from a model directory
given in place of their inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tastemap.console import exits_on_error
from tastemap.paths import MODEL_HELP
from tastemap.runtime.cli.attributes import USERS_HELP
from tastemap.runtime.pipeline.model_lock import DEFAULT_WAIT
from tastemap.runtime.recommend import protocols
from tastemap.runtime.spark.session import Engine

app = typer.Typer()


# --holdout: none, or a protocol whose split a fitted model can keep (from the protocol registry).
Holdout = protocols.choices("Holdout", ["none", *protocols.protocol_names(fitted_holdout=True)])


@app.command("fit")
@exits_on_error
def fit_command(
    events: Optional[Path] = typer.Argument(None, help="Events file (.csv, .parquet, .jsonl); default: the built-in MovieLens sample."),
    catalog: Optional[Path] = typer.Argument(None, help="Catalog file (item_id, title[, categories, tags, description]); give it with EVENTS."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write: a new or empty folder, or a model directory (a new version of it is published atomically)."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
    vectors: Optional[Path] = typer.Option(None, help="Precomputed item vectors (.npy, catalog order); skips the encoder (then text cold starts and new items need --model later)."),
    sample: Optional[int] = typer.Option(None, help="Fit on this many users drawn with --seed."),
    event_columns: str = typer.Option("", help="Event column names, e.g. user_id=uid,item_id=sku,timestamp=ts,rating_scale=5."),
    catalog_columns: str = typer.Option("", help="Catalog column names, e.g. item_id=sku,title=name,categories=path."),
    topics: int = typer.Option(50, help="Number of fine topics (at most the number of catalog items)."),
    coarse_topics: int = typer.Option(10, help="Number of coarse topics (0: a single level)."),
    holdout: Holdout = typer.Option(Holdout.none, help="Keep held-out events out of the fit for `tastemap evaluate --model DIR`."),
    n_segments: Optional[int] = typer.Option(None, "--n-segments", help="Number of user segments [default: chosen over 4 to 20; give it for fewer than 5 users]."),
    rank: int = typer.Option(512, help="Eigenvectors the EASE weights keep (exact EASE up to this many items with events); memory and request cost grow with it."),
    wait: float = typer.Option(DEFAULT_WAIT, help="Seconds to wait for another job writing --out before giving up."),
    engine: Engine = typer.Option(Engine.local, help="Where the collaborative weights are fitted: local (this process) or spark."),
    master: str = typer.Option("local[2]", help="Spark master with --engine spark (ignored under spark-submit)."),
    seed: int = typer.Option(0, help="Random seed."),
    users: Optional[Path] = typer.Option(None, "--users", help=USERS_HELP),
) -> None:
    """Fit the interest model and the recommender once and write a model directory.

    Example: tastemap fit events.csv catalog.csv --out model/   (then: tastemap recommend --model model/ --user 42)

    Collaborative weights fitted on Spark: tastemap fit events.csv catalog.csv --out model/ --engine spark
    """
    import time

    from tastemap.console import print_table
    from tastemap.runtime.interests.profiles import InterestProfiler
    from tastemap.runtime.interests.segments import UserSegmenter
    from tastemap.runtime.io.events import CatalogColumns, EventColumns
    from tastemap.runtime.io.users import read_users
    from tastemap.runtime.pipeline.inputs import load_inputs
    from tastemap.runtime.pipeline.model import TastemapModel
    from tastemap.runtime.pipeline.model_io import check_model_target
    from tastemap.runtime.recommend.recommender import TastemapRecommender

    started = time.perf_counter()
    check_model_target(out)  # before the fit: a file or a folder of other files is never replaced
    user_table = read_users(users) if users is not None else None  # a bad users table fails before the fit
    columns = EventColumns.from_option(event_columns)
    inputs = load_inputs(events, catalog, model_dir=model, vectors_path=vectors, sample=sample, seed=seed,
                         event_columns=columns, catalog_columns=CatalogColumns.from_option(catalog_columns))
    # the estimator `tastemap recommend` fits when given no --model DIR, with the same options
    segmenter = UserSegmenter(n_segments=n_segments, seed=seed) if n_segments is not None else None
    template = TastemapRecommender(profiler=InterestProfiler(n_topics=topics, n_coarse_topics=coarse_topics or None,
                                                             seed=seed), segmenter=segmenter, rank=rank, seed=seed)
    collaborative = None
    if engine is Engine.spark:
        from tastemap.runtime.spark.collaborative import spark_collaborative

        collaborative = spark_collaborative(l2=template.l2, rank=template.rank, seed=template.seed, master=master)
    fitted = TastemapModel.fit(inputs.interactions, inputs.catalog, inputs.item_vectors, encoder=inputs.encoder,
                               recommender=template, holdout=None if holdout is Holdout.none else holdout.value,
                               rating_scale=inputs.rating_scale, collaborative=collaborative, users=user_table)
    fitted.save(out, wait=wait)
    recommender = fitted.recommender
    segmenter = recommender.segmenter_
    encoder = fitted.meta["encoder"]
    print_table("Fitted model", ["", "value"], [
        ("users / items / events", f"{fitted.n_users:,} / {fitted.n_items:,} / {fitted.events.n_events:,}"),
        ("topics (coarse / fine)", " / ".join(str(level.n_topics) for level in recommender.profiler_.topic_tree_.levels)),
        ("segments", segmenter.n_segments_ if segmenter is not None else 0),
        ("collaborative weights", "none" if recommender.collaborative_ is None else
         f"EASE, {'exact' if recommender.collaborative_.exact else 'low-rank'} (rank {recommender.collaborative_.rank})"),
        ("collaborative weights fitted on", engine.value),
        ("user attributes", "none" if fitted.attributes is None else
         f"{len(fitted.attributes.groups)} groups of >= {fitted.attributes.min_group} users ({', '.join(fitted.attributes.encoder_.columns_)})"),
        ("held out", f"{fitted.meta['holdout']['n_events']:,} events ({holdout.value})" if fitted.meta["holdout"] else "none"),
        ("item vectors", f"{encoder['name']} (manifest {encoder['manifest_sha256'][:12]})" if encoder else str(vectors)),
        ("time", f"{time.perf_counter() - started:.1f} s"),
        ("output", str(out)),
    ])


@app.command("update")
@exits_on_error
def update_command(
    model_dir: Path = typer.Argument(..., help="Fitted model directory (from `tastemap fit`); replaced atomically."),
    events: Optional[Path] = typer.Argument(None, help="New events file (.csv, .parquet, .jsonl): user_id, item_id, timestamp[, weight, rating, event_type]."),
    catalog: Optional[Path] = typer.Option(None, help="Catalog rows of new items (encoded and placed into the fitted topics)."),
    vectors: Optional[Path] = typer.Option(None, help="Precomputed vectors of the --catalog rows (.npy, catalog order); skips the encoder."),
    model: Optional[Path] = typer.Option(None, help="Encoder package for new items [default: the one recorded at fit, checked by its manifest hash]."),
    event_columns: str = typer.Option("", help="Event column names, e.g. user_id=uid,item_id=sku,timestamp=ts,rating=stars."),
    catalog_columns: str = typer.Option("", help="Catalog column names, e.g. item_id=sku,title=name,categories=path."),
    rating_scale: Optional[float] = typer.Option(None, help="Divide ratings by this, for a model fitted without ratings [default: the scale recorded at fit]."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the updated model to this new or empty folder or model directory instead of MODEL_DIR (with --engine spark: the folder of updated profiles [default: MODEL_DIR-updates])."),
    wait: float = typer.Option(DEFAULT_WAIT, help="Seconds to wait for another job writing the model before giving up."),
    engine: Engine = typer.Option(Engine.local, help="local: this process; spark: a Structured Streaming job over --stream."),
    stream: Optional[Path] = typer.Option(None, help="With --engine spark: folder where new event files (Parquet) arrive."),
    checkpoint: Optional[Path] = typer.Option(None, help="With --engine spark: streaming checkpoint folder [default: OUT/checkpoint]."),
    interval: Optional[float] = typer.Option(None, help="With --engine spark: keep running, a micro-batch every INTERVAL seconds [default: process the files present, then stop]."),
    master: str = typer.Option("local[2]", help="Spark master with --engine spark (ignored under spark-submit)."),
) -> None:
    """Fold new events into a fitted model: the users they touch are re-profiled with the fitted topics.

    Example: tastemap update model/ new-events.csv --catalog new-items.csv

    On Spark (new Parquet event files in a folder, processed as they arrive):
    tastemap update model/ --engine spark --stream incoming/
    """
    from tastemap.console import print_table
    from tastemap.errors import InputError
    from tastemap.runtime.pipeline.model import TastemapModel
    from tastemap.runtime.pipeline.model_io import check_is_model, check_model_target
    from tastemap.runtime.pipeline.model_lock import writer_lock

    if engine is Engine.spark:
        if stream is None or events is not None or catalog is not None:
            raise InputError("--engine spark reads new event files from --stream FOLDER; give no EVENTS or --catalog")
        from tastemap.runtime.spark.stream_update import stream_update

        result = stream_update(model_dir, stream, checkpoint=checkpoint, master=master, out=out, interval=interval)
        print_table("Streaming update (Spark)", ["", "value"], [(key, value) for key, value in result.items()])
        return
    if events is None:
        raise InputError("give the new EVENTS file (or --engine spark --stream FOLDER)")
    target = out or model_dir
    check_is_model(model_dir)
    check_model_target(target, flag="--out" if out is not None else "MODEL_DIR")
    with writer_lock(target, wait=wait):  # held from the read to the write: no other update is lost
        fitted = TastemapModel.load(model_dir)
        summary = _fold_in(fitted, events, catalog, vectors, model, event_columns, catalog_columns, rating_scale)
        fitted.save(target, wait=wait)
    print_update(summary, target)


def _fold_in(fitted, events: Path, catalog: Optional[Path], vectors: Optional[Path], model: Optional[Path],
             event_columns: str, catalog_columns: str, rating_scale: Optional[float]):
    """Read the new events (and catalog rows) as the fit read its own, and fold them into ``fitted``."""
    from tastemap.errors import InputError
    from tastemap.runtime.io import events as data
    from tastemap.runtime.pipeline.model_input import check_rating_scale, update_rating_scale

    recorded = fitted.meta["data"].get("rating_scale")
    columns = data.EventColumns.from_option(event_columns, rating_scale=update_rating_scale(recorded, rating_scale))
    frame = data.read_events(events, columns)
    check_rating_scale(columns.rating_scale, frame)
    items, item_vectors = None, None
    if catalog is not None:
        items = data.read_catalog(catalog, data.CatalogColumns.from_option(catalog_columns))
        if vectors is not None:
            from tastemap.runtime.io.vectors import load_item_vectors

            item_vectors = load_item_vectors(vectors, n_items=len(items))
        elif model is not None:
            from tastemap.runtime.encode.default_encoder import make_encoder

            fitted.set_encoder(make_encoder(model))
    elif vectors is not None:
        raise InputError("--vectors gives the vectors of --catalog rows; give --catalog too")
    return fitted.update(frame, items, item_vectors=item_vectors)


def print_update(summary, where: Path) -> None:
    """The update summary table and what waits for the next batch fit."""
    from tastemap.console import print_table

    print_table("Update", ["", "value"], [
        ("events read / added", f"{summary.n_events_read:,} / {summary.n_events_added:,}"),
        ("dropped: duplicates", f"{summary.n_duplicates:,}"),
        ("dropped: unknown items", f"{summary.n_unknown_items:,}" + (
            f" (e.g. {', '.join(map(str, summary.unknown_item_examples))}; give their rows with --catalog)"
            if summary.n_unknown_items else "")),
        ("users updated / new", f"{summary.n_users_updated:,} / {summary.n_new_users:,}"),
        ("users that changed segment", f"{summary.n_segment_changes:,}"),
        ("items added", f"{summary.n_new_items:,}" + (f" ({summary.n_known_catalog_rows:,} catalog rows already known)"
                                                      if summary.n_known_catalog_rows else "")),
        ("time (update)", f"{summary.seconds * 1000:.1f} ms"),
        ("output", str(where)),
    ])
    typer.echo("waits for the next `tastemap fit`: " + "; ".join(summary.deferred))


def evaluate_fitted(model_dir: Path, *, seed: int, protocol: str | None = None):
    """``tastemap evaluate --model DIR``: the fitted state on its held-out split; returns
    ``(protocol, table, reference model name or None)``. ``protocol``: the one asked for on the
    command line (None: the recorded one); another than the split recorded at fit is refused."""
    from tastemap.errors import InputError
    from tastemap.runtime.pipeline.model import TastemapModel, collaborative_reference

    fitted = TastemapModel.load(model_dir)
    recorded = (fitted.meta.get("holdout") or {}).get("protocol")
    if protocol is not None and recorded is not None and protocol != recorded:
        fix = (f"fit a model with --holdout {protocol}" if protocol in protocols.protocol_names(fitted_holdout=True)
               else "evaluate the data files (--events, --catalog) instead of --model DIR")
        raise InputError(f"--protocol {protocol}: the model {model_dir} holds the held-out split of {recorded}, "
                         f"recorded at fit, and is evaluated on that split only; drop --protocol, or {fix}")
    table = fitted.evaluate(seed=seed)
    reference = collaborative_reference(fitted.recommender) if fitted.recommender.collaborative_ is not None else None
    return fitted.meta["holdout"]["protocol"], table, reference


def refuse_inputs(model_dir: Path, **given) -> None:
    """With a fitted model directory, data options would be ignored: refuse them."""
    from tastemap.errors import InputError

    named = [f"--{name.replace('_', '-')}" for name, value in given.items() if value not in (None, False)]
    if named:
        raise InputError(f"--model {model_dir} is a fitted model, which answers from its own data; "
                         f"{', '.join(named)} cannot be combined with it (refit with `tastemap fit`)")


def refuse_options(ctx, model_dir: Path, names: list[str], *, what: str = "--model") -> None:
    """Refuse the options ``names`` of the running command when given on the command line: a
    fitted model answers with what it was fitted with, so they would be ignored silently."""
    from tastemap.errors import InputError

    flags = {param.name: max(param.opts, key=len) for param in ctx.command.params}
    given = [flags.get(name, name) for name in names if option_given(ctx, name)]
    if given:
        raise InputError(f"{what} {model_dir} is a fitted model, which answers with what it was fitted with; "
                         f"{', '.join(given)} cannot be combined with it (fit a model with those options, "
                         "`tastemap fit`, or drop them)")


def option_given(ctx, name: str) -> bool:
    """Whether the option ``name`` of the running command was given (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
