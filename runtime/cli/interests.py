"""CLI of interest modeling: ``tastemap profile`` and ``tastemap segment``."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from tastemap.console import exits_on_error
from tastemap.paths import MODEL_HELP
from tastemap.runtime.interests.clustering import BACKENDS
from tastemap.runtime.spark.session import Engine

app = typer.Typer()

Backend = Enum("Backend", {name: name for name in BACKENDS}, type=str)


class Method(str, Enum):
    kmeans = "kmeans"
    gmm = "gmm"
    agglomerative = "agglomerative"
    bisecting = "bisecting"


class Features(str, Enum):
    topics = "topics"
    categories = "categories"
    topics_categories = "topics+categories"


@app.command("profile")
@exits_on_error
def profile_command(
    events: Optional[Path] = typer.Argument(None, help="Events file (.csv, .parquet, .jsonl): user_id, item_id, timestamp[, weight, rating, event_type]."),
    catalog: Optional[Path] = typer.Argument(None, help="Catalog file: item_id, title[, categories, tags, description]."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for profiles.parquet, profiles.jsonl, topics.json."),
    movielens: bool = typer.Option(False, "--movielens", help="Use the built-in MovieLens sample instead of EVENTS and CATALOG."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
    vectors: Optional[Path] = typer.Option(None, help="Precomputed item vectors (.npy, n_items x dim, catalog order); skips the encoder."),
    cache: Optional[Path] = typer.Option(None, help="Embedding cache folder (default: OUT/.cache)."),
    device: str = typer.Option("auto", help="Encoder device: auto, cpu, cuda."),
    event_columns: str = typer.Option("", help="Event column names, e.g. user_id=uid,item_id=sku,timestamp=ts,rating=stars."),
    catalog_columns: str = typer.Option("", help="Catalog column names, e.g. item_id=sku,title=name,categories=path."),
    event_weights: str = typer.Option("", help="Weight per event type, e.g. view=0.2,cart=1,purchase=3."),
    template: Optional[str] = typer.Option(None, help="Item text template; fields {title} {categories} {tags} {description} {item_id}."),
    topics: int = typer.Option(50, help="Number of fine topics."),
    coarse_topics: int = typer.Option(10, help="Number of coarse topics (0: a single level)."),
    threshold: float = typer.Option(1.5, help="Ward distance threshold splitting a user's items into interests."),
    max_items: int = typer.Option(50, help="Most recent items clustered per user."),
    max_interests: int = typer.Option(8, help="Most interests per user."),
    short_window: float = typer.Option(90.0, help="Short-term window in days."),
    short_decay: float = typer.Option(math.log(2) / 30, help="Short-term decay rate per day (default: 30-day half-life)."),
    long_decay: float = typer.Option(math.log(2) / 365, help="Long-term decay rate per day (default: 365-day half-life)."),
    backend: Backend = typer.Option(Backend.auto, help="Clustering backend."),
    seed: int = typer.Option(0, help="Random seed."),
    engine: Engine = typer.Option(Engine.local, help="local: this process; spark: events grouped by user on Spark."),
    master: str = typer.Option("local[*]", help="Spark master with --engine spark (ignored under spark-submit)."),
    buckets: Optional[int] = typer.Option(None, help="With --engine spark: hash users into N groups per call (default: one group per user)."),
    users: Optional[Path] = typer.Option(None, "--users", help="Users table (user_id plus attribute columns): topics.json also describes each attribute group (10 users or more) by the topics over-represented in it; no user's attributes are written."),
) -> None:
    """Build layered interest profiles (time, category, topic layers and interest clusters).

    Example: tastemap profile events.csv catalog.csv --out profiles/

    Attribute groups described by topics: tastemap profile events.csv catalog.csv --out profiles/ --users users.csv

    On Spark (events as Parquet, CSV or JSONL; output profiles.parquet is a folder of parts):
    tastemap profile events.parquet catalog.csv --out profiles/ --engine spark --master local[4]
    """
    import time

    from tastemap.console import print_table
    from tastemap.errors import InputError
    from tastemap.paths import resolve_model_dir
    from tastemap.runtime.interests.profile_io import write_profiles
    from tastemap.runtime.interests.profiles import InterestProfiler
    from tastemap.runtime.io import events as data
    from tastemap.runtime.io.outputs import hold_output
    from tastemap.runtime.pipeline.inputs import load_inputs

    started = time.perf_counter()
    spark = engine is Engine.spark
    if template is not None:
        data.check_template(template)
    if users is not None and spark:
        raise InputError("--users describes attribute groups with --engine local only; drop --users or --engine spark")
    user_table = None
    if users is not None:
        from tastemap.runtime.io.users import read_users

        user_table = read_users(users)  # first: a bad users table fails before anything is encoded or written
    hold_output(out, folder=True, scratch=[] if cache else [out / ".cache"])
    if not movielens and (events is None or catalog is None):
        raise InputError("give EVENTS and CATALOG files, or --movielens for the built-in sample")
    columns, catalog_columns = data.MOVIELENS_COLUMNS, data.CatalogColumns.from_option(catalog_columns)
    if not movielens:
        weights = data.parse_mapping(event_weights, what="--event-weights", numeric=True) or None
        columns = data.EventColumns.from_option(event_columns, event_weights=weights)
    profiler = InterestProfiler(
        n_topics=topics, n_coarse_topics=coarse_topics or None, distance_threshold=threshold,
        max_items_per_user=max_items, max_interests=max_interests, short_window_days=short_window,
        short_decay=short_decay, long_decay=long_decay, backend=backend.value, seed=seed,
        **({"text_template": template} if template else {}),
    )
    cache = cache or out / ".cache"
    if spark:
        from tastemap.runtime.encode.default_encoder import make_encoder
        from tastemap.runtime.io.vectors import load_item_vectors
        from tastemap.runtime.spark.profile import profile_with_spark

        if movielens:
            events, items = data.MOVIELENS_DIR / data.MOVIELENS_RATINGS, data.load_movielens()[1]
        else:
            items = data.read_catalog(catalog, catalog_columns)
        if vectors is not None:
            item_vectors, extra = load_item_vectors(vectors, n_items=len(items)), {"vectors": str(vectors)}
        else:
            item_vectors = make_encoder(model, cache_dir=cache, device=device)
            extra = {"model": str(resolve_model_dir(model))}
        summary = profile_with_spark(events, items, out, profiler=profiler, item_vectors=item_vectors, columns=columns,
                                     master=master, buckets=buckets, extra=extra)
        report = summary.report
        print_table("Profiles (Spark)", ["", "value"], [
            ("users", f"{summary.n_users:,}"),
            ("events read", f"{report['n_events_read']:,}"),
            ("dropped: duplicates, unknown items", f"{report['n_duplicates']:,}, {report['n_unknown_items']:,}"),
            ("topics (coarse / fine)", " / ".join(map(str, summary.n_topics))),
            ("backend (topics)", summary.backend),
            ("time", f"{summary.seconds:.1f} s"),
            ("output", str(out)),
        ])
        return
    inputs = load_inputs(None if movielens else events, None if movielens else catalog, model_dir=model,
                         vectors_path=vectors, cache_dir=cache, event_columns=columns, catalog_columns=catalog_columns,
                         template=template, device=device)
    encoder = inputs.encoder
    extra = {"vectors": str(vectors)}
    if encoder is not None:  # what embedding the items cost, before the profiler reads them back from the cache
        extra = {"model": str(resolve_model_dir(model)), "encoder": {
            "variant": encoder.variant, "provider": encoder.provider, "encoded": encoder.stats.encoded,
            "cached": encoder.stats.cached}}
    # the encoder, not only its vectors: the topic labels are chosen with it
    profiles = profiler.fit_transform(inputs.interactions, inputs.catalog,
                                      encoder if encoder is not None else inputs.item_vectors)
    if user_table is not None:
        from tastemap.runtime.recommend.attributes import describe_groups_by_topics

        extra["attribute_groups"] = describe_groups_by_topics(user_table, profiles.user_ids, profiles.topics[-1],
                                                              profiles.topic_names[-1])
    write_profiles(profiler, out, extra=extra)
    report = inputs.report
    counts = profiles.interests.counts()
    rows = [
        ("users", f"{report.n_users:,}"),
        ("items (with events)", f"{report.n_items:,} ({report.n_items_with_events:,})"),
        ("events used / read", f"{report.n_events:,} / {report.n_events_read:,}"),
        ("dropped: duplicates, unknown items", f"{report.n_duplicates:,}, {report.n_unknown_items:,}"),
        ("interests per user (mean, max)", f"{counts.mean():.2f}, {counts.max()}"),
        ("topics (coarse / fine)", " / ".join(str(level.n_topics) for level in profiler.topic_tree_.levels)),
        ("backend", profiler.backend_),
        ("item vectors", "encoded {encoded}, cached {cached}".format(**extra["encoder"]) if "encoder" in extra else str(vectors)),
        ("time", f"{time.perf_counter() - started:.1f} s"),
        ("output", str(out)),
    ]
    print_table("Profiles", ["", "value"], rows)
    if user_table is not None:
        from tastemap.runtime.cli.attributes import print_attribute_groups

        print_attribute_groups(extra["attribute_groups"])


@app.command("segment")
@exits_on_error
def segment_command(
    ctx: typer.Context,
    profiles: Path = typer.Argument(..., help="profiles.parquet (or the folder holding it) from `tastemap profile`; or a fitted model directory (`tastemap fit`), whose segments are shown without refitting."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder for segments.parquet and user_segments.parquet (required unless PROFILES is a fitted model)."),
    method: Method = typer.Option(Method.kmeans, help="Clustering method (bisecting: Spark's BisectingKMeans hierarchy, --engine spark only; agglomerative: local only)."),
    k: Optional[int] = typer.Option(None, "--k", help="Number of segments (default: chosen over --k-min..--k-max)."),
    k_min: int = typer.Option(4, help="Smallest k tried."),
    k_max: int = typer.Option(20, help="Largest k tried."),
    features: Features = typer.Option(Features.topics, help="Profile layers clustered."),
    backend: Backend = typer.Option(Backend.auto, help="Clustering backend."),
    seed: int = typer.Option(0, help="Random seed."),
    engine: Engine = typer.Option(Engine.local, help="local: this process; spark: Spark MLlib."),
    master: str = typer.Option("local[*]", help="Spark master with --engine spark (ignored under spark-submit)."),
    users: Optional[Path] = typer.Option(None, "--users", help="Users table (user_id plus attribute columns): each segment is also described by the attributes over-represented in it (groups of 10 users or more)."),
) -> None:
    """Cluster users into segments on their interest profiles.

    Example: tastemap segment profiles/ --out segments/ --method gmm

    A fitted model's segments (no clustering): tastemap segment model/

    On Spark MLlib: tastemap segment profiles/ --out segments/ --engine spark --method bisecting
    """
    import time

    from tastemap.runtime.interests.profile_io import read_profiles
    from tastemap.runtime.interests.segments import UserSegmenter, write_segments

    started = time.perf_counter()
    from tastemap.runtime.pipeline.model_io import is_fitted_model

    if is_fitted_model(profiles):
        from tastemap.runtime.cli.model import refuse_options
        from tastemap.runtime.pipeline.model import TastemapModel

        refuse_options(ctx, profiles, ["method", "k", "k_min", "k_max", "features", "backend", "seed", "engine",
                                       "master", "users"], what="PROFILES")
        fitted = TastemapModel.load(profiles).segmenter
        if fitted is None:
            from tastemap.errors import InputError

            raise InputError(f"the fitted model {profiles} has no segments (it was fitted on fewer than 3 users)")
        if out is not None:
            write_segments(fitted, out)
        _print_segments(fitted, fitted.method, fitted.backend_, started, out or profiles)
        return
    if out is None:
        from tastemap.errors import InputError

        raise InputError("--out FOLDER is required to segment profiles (it is optional only for a fitted model directory)")
    from tastemap.runtime.io.outputs import hold_output

    hold_output(out, folder=True)
    if engine is Engine.spark:
        if users is not None:
            from tastemap.errors import InputError

            raise InputError("--users describes segments with --engine local only; drop --users or --engine spark")
        from tastemap.runtime.spark.segment import SparkSegmenter, segment_with_spark

        spark_segmenter = SparkSegmenter(method=method.value, n_segments=k, k_range=(k_min, k_max),
                                         features=features.value, seed=seed)
        result = segment_with_spark(profiles, out, segmenter=spark_segmenter, master=master)
        _print_segments(result, method.value, "spark-mllib", started, out)
        return
    segmenter = UserSegmenter(method=method.value, n_segments=k, k_range=(k_min, k_max), features=features.value,
                              backend=backend.value, seed=seed).fit(read_profiles(profiles))
    if users is not None:
        from tastemap.runtime.io.users import read_users
        from tastemap.runtime.recommend.attributes import add_attribute_descriptions

        add_attribute_descriptions(segmenter, read_users(users))
    write_segments(segmenter, out)
    _print_segments(segmenter, method.value, segmenter.backend_, started, out)


def _print_segments(fitted, method: str, backend: str, started: float, out: Path) -> None:
    """The segments table and the run summary, for a local or a Spark segmenter."""
    import time

    from tastemap.console import print_table

    from tastemap.runtime.recommend.attributes import attributes_text

    table = fitted.segments_
    described = "top_attributes" in table  # segments described by user attributes too
    print_table("Segments", ["segment", "users", "share", "label"] + (["over-represented attributes"] if described else []),
                [(row.segment, row.size, row.share, row.label) + ((attributes_text(row.top_attributes),) if described else ())
                 for row in table.itertuples()])
    scores = fitted.criterion_scores_
    if scores:
        print_table(f"k chosen by {fitted.criterion_}", ["k", "score", ""],
                    [(k, "too small a segment" if v != v else f"{v:.4f}", "chosen" if k == fitted.n_segments_ else "")
                     for k, v in sorted(scores.items())])
    score = scores.get(fitted.n_segments_)
    print_table("Summary", ["", "value"], [
        ("users", f"{int(table['size'].sum()):,}"),
        ("segments", fitted.n_segments_),
        ("method", method),
        ("k chosen by", fitted.criterion_ + (f" ({score:.4f})" if score is not None else "")),
        ("backend", backend),
        ("time", f"{time.perf_counter() - started:.1f} s"),
        ("output", str(out)),
    ])

