"""Fit once, serve many: :class:`TastemapModel`, a fitted model that lives in a directory.

>>> model = TastemapModel.fit(inputs.interactions, inputs.catalog, inputs.item_vectors,
...                           encoder=inputs.encoder)                          # doctest: +SKIP
>>> model.save("ml-model")                                                     # doctest: +SKIP
>>> model = TastemapModel.load("ml-model")                                    # doctest: +SKIP
>>> model.recommend(414, k=10)                                                 # doctest: +SKIP
>>> with TastemapModel.locked("ml-model") as model:  # one writer: read, update, write  # doctest: +SKIP
...     model.update(new_events)
...     model.save()

The directory holds immutable versions and a ``current`` pointer (``DIR/current``,
``DIR/versions/<number>/``, the writer lock ``DIR/writer.lock`` and ``DIR/writer.queue``; see
:mod:`~tastemap.runtime.pipeline.model_io`).
One writer at a time holds the writer lock (:meth:`TastemapModel.save`, :meth:`TastemapModel.locked`,
``tastemap fit --out`` and ``tastemap update``; a second one waits, then stops with an error);
:meth:`TastemapModel.load` reads one whole version and keeps it on disk while the model is used,
however many versions writers publish meanwhile. A :meth:`~TastemapModel.save` to the directory a
model was loaded from is refused when another writer published a version since (its changes would
be lost); :meth:`~TastemapModel.locked` holds the lock from the load to the save instead.

A version (schema version 3; every file's sha256 and size in ``model.json``, the files required
by the schema in :func:`~tastemap.runtime.pipeline.model_state.required_files`):

- ``model.json``: format, schema version, version number, parameters, fitted scalars, the encoder
  package (path, name, sha256 of its ``manifest.json``, variant, dimension), data counts and the
  rating scale, the held-out split, update summaries, CSR shapes and the files;
- items: ``items.parquet`` (``item_id, title, text, categories``; row = item index),
  ``item_vectors.npy`` (float32 ``[n_items, dim]``, unit rows), ``item_topics.npy`` (int64
  ``[n_items, n_levels]``), ``topic_tree.json`` and ``topic_centroids_<level>.npy``, plus
  ``topics.json`` in the format of ``tastemap profile``;
- collaborative: the item-item weights (``n`` the items at the batch fit);
- users: ``users.parquet`` (``user_id, n_events, last_seen, segment``; row = user index),
  ``state/`` (per-user layers, vectors, interests, history and recency as ``.npy`` arrays, CSR
  matrices as ``.indptr/.indices/.data``), ``profiles.parquet`` in the format of ``tastemap
  profile``;
- segments: ``segments.parquet`` and ``user_segments.parquet`` in the format of ``tastemap
  segment``, ``segment_centroids.npy``, ``segment_of_cluster.npy``, ``segment_popularity.npy``
  (and ``segment_mixture.*.npy`` for GMM);
- events: ``events/part-*.parquet`` (training events and those folded in by updates) and
  ``holdout.parquet`` (the held-out events of ``fit(..., holdout=...)``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

import tastemap
from tastemap.cpu import one_thread
from tastemap.errors import FittedModelError, InputError
from tastemap.runtime.io.interactions import Interactions
from tastemap.runtime.pipeline import model_attributes, model_io, model_lock, model_state, model_update
from tastemap.runtime.pipeline.model_input import check_rating_scale, like_model_ids
from tastemap.runtime.recommend.candidates import SINGLE_THREAD_QUERIES
from tastemap.runtime.recommend.recommender import (Explanation, Recommendation, TastemapRecommender,
                                                   embed_description)

logger = logging.getLogger(__name__)

MAX_UPDATE_RECORDS = 50
_MANIFEST_ONLY = ("files", "params", "fitted", "shapes", "format", "schema_version", "version", "written")
"""Sections of ``model.json`` that describe the stored version, not the model's ``meta``."""


@dataclass(frozen=True)
class Segment:
    """A user's segment: number, label, size (users) and share."""

    segment: int
    label: str
    size: int
    share: float


class TastemapModel:
    """A fitted tastemap model: build it with :meth:`fit` or :meth:`load`, never by hand.

    Answers without refitting: :meth:`recommend`, :meth:`recommend_batch`, :meth:`recommend_cold`,
    :meth:`explain`, :meth:`segment_of`, :meth:`evaluate`; folds new events in with
    :meth:`update`; writes itself with :meth:`save`. ``recommender`` is the fitted
    :class:`~tastemap.runtime.recommend.recommender.TastemapRecommender` underneath.
    """

    def __init__(self, recommender: TastemapRecommender, *, categories: list, meta: dict,
                 events: model_state.EventLog | None = None, holdout: pd.DataFrame | None = None,
                 encoder=None, source: model_io.ModelVersion | None = None):
        self.recommender = recommender
        self.meta = meta
        self._categories = categories
        self._events = events
        self._holdout = holdout
        self._encoder = encoder
        self._source = source
        self._dirty = {"items", "users", "fixed"} if source is None else set()
        self.attributes = None  # the AttributeModel of fit(..., users=...): group-level aggregates only

    # building -----------------------------------------------------------------------------------

    @classmethod
    def fit(cls, data: Interactions, catalog: pd.DataFrame, item_vectors=None, *, encoder=None,
            recommender: TastemapRecommender | None = None, holdout: str | None = None,
            rating_scale: float | None = None, seed: int = 0, collaborative=None, users=None) -> "TastemapModel":
        """Fit on ``data`` (aligned with ``catalog``: ``align_events``).

        ``item_vectors`` ``[n_items, dim]`` in catalog order (None: ``encoder.encode`` the item
        texts); ``encoder`` (an :class:`~tastemap.runtime.encode.encoder.Encoder`) is recorded by
        its package's manifest hash and serves text cold starts and new items. ``recommender``: an
        unfitted template (default ``TastemapRecommender(seed=seed)``, as ``tastemap recommend``
        uses). ``holdout`` (``"leave-last-out"`` or ``"temporal"``): fit on the training part and
        keep the held-out events for :meth:`evaluate`. ``rating_scale``: what ratings were divided
        by (recorded for updates). ``collaborative``: a function of the training events
        (:class:`~tastemap.runtime.io.interactions.Interactions`, after the held-out split) that
        returns their EASE weights, such as
        :func:`~tastemap.runtime.spark.collaborative.spark_collaborative` (default: fitted here).
        ``users``: the users' attributes (:func:`~tastemap.runtime.io.users.read_users`) for
        ``recommend_cold(attributes=...)`` and segments described by attributes
        (:mod:`~tastemap.runtime.pipeline.model_attributes`: only group aggregates are kept).
        """
        from sklearn.base import clone

        from tastemap.runtime.interests.base import as_catalog
        from tastemap.runtime.recommend.splits import split_events

        if item_vectors is None and encoder is None:
            raise InputError("give item_vectors [n_items, dim] or an encoder to embed the item texts")
        catalog = as_catalog(catalog)
        started = time.perf_counter()
        train, held_out, protocol = data, None, None
        if holdout is not None:
            split = split_events(data, holdout)
            train, protocol = split.train, split.protocol
            test = split.test
            held_out = pd.DataFrame({"user_id": test.user_ids[test.users], "item_id": test.item_ids[test.items],
                                     "timestamp": test.timestamps, "weight": test.weights})
        estimator = clone(recommender) if recommender is not None else TastemapRecommender(seed=seed)
        if estimator.weights is not None and estimator.weights.literal > 0:  # would need re-encoding on every update
            raise InputError("a model directory cannot hold the literal content signal (weights.literal > 0); "
                             "fit it with the interests signal")
        estimator.fit(train, catalog, item_vectors if item_vectors is not None else encoder,
                      collaborative=collaborative(train) if collaborative is not None else None)
        events = model_state.EventLog(users=train.users.copy(), items=train.items.copy(),
                                      timestamps=train.timestamps.copy(), weights=train.weights.copy())
        meta = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tastemap_version": getattr(tastemap, "__version__", None),
            "encoder": _encoder_record(encoder),
            "data": {"n_users": train.n_users, "n_items": train.n_items, "n_events": train.n_events,
                     "dim": int(estimator.profiler_.item_vectors_.shape[1]), "rating_scale": rating_scale},
            "holdout": None if protocol is None else {"protocol": protocol, "n_events": int(len(held_out)),
                                                      "n_users": int(held_out["user_id"].nunique())},
            "fit_seconds": round(time.perf_counter() - started, 2),
            "updates": [],
        }
        model = cls(estimator, categories=list(catalog["categories"]), meta=meta, events=events,
                    holdout=held_out, encoder=encoder)
        model.attributes = model_attributes.fit_attributes(estimator, train, users, seed=seed)
        return model

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True, encoder=None) -> "TastemapModel":
        """Load the current version of the fitted model in ``path``: checks it against the schema
        (every required file present, nothing else, every path inside the directory) and (with
        ``verify``) the sha256 of every file, then restores the fitted state (no ``fit`` runs;
        large arrays are memory-mapped). The version stays on disk while the model is used, however
        many versions writers publish meanwhile. ``encoder``: the encoder to use for text cold
        starts and new items (default: the recorded package, checked against its manifest hash
        when first needed)."""
        version = model_io.open_version(path, verify=verify)
        return cls._restore(version, encoder=encoder)

    @classmethod
    @contextlib.contextmanager
    def locked(cls, path: str | Path, *, verify: bool = True, encoder=None,
               wait: float = model_io.DEFAULT_WAIT) -> Iterator["TastemapModel"]:
        """Hold the writer lock of the model directory ``path`` (waiting up to ``wait`` seconds
        for another writer) and yield its current version, loaded: updates applied and saved
        within the block cannot be lost to another writer, nor make another writer's be lost."""
        with model_lock.writer_lock(path, wait=wait):
            yield cls.load(path, verify=verify, encoder=encoder)

    @classmethod
    def _restore(cls, version: model_io.ModelVersion, *, encoder=None) -> "TastemapModel":
        manifest = version.manifest
        try:
            recommender, categories = model_state.restore_recommender(version.root, manifest)
        except (KeyError, ValueError, IndexError, TypeError, OSError) as exc:
            raise FittedModelError(f"{version.home} (version {version.number}) is inconsistent "
                                   f"({type(exc).__name__}: {exc}); fit the model again") from None
        meta = {key: value for key, value in manifest.items() if key not in _MANIFEST_ONLY}
        model = cls(recommender, categories=categories, meta=meta, source=version)
        model.attributes = model_attributes.restore_attributes(version.root, manifest)
        if encoder is not None:
            model.set_encoder(encoder)
        return model

    def save(self, path: str | Path | None = None, *, wait: float = model_io.DEFAULT_WAIT) -> Path:
        """Publish the model as a new version of the directory ``path`` (default: where it was
        loaded from) under its writer lock, waiting up to ``wait`` seconds for another writer.
        Files the loaded version holds unchanged (collaborative weights, stored event parts...)
        are hard-linked. Saving to the directory the model was loaded from is refused when
        another writer published a version since (use :meth:`locked` to hold the lock from the
        load on)."""
        if path is None:
            if self._source is None:
                raise InputError("this model was never saved; give the directory to write (save(path))")
            path = self._source.home
        path = Path(path)
        scratch = model_state.scratch_folder()
        try:
            writers, state_meta = model_state.state_files(self.recommender, self._categories, scratch=scratch)
            attribute_writers, state_meta["fitted"][model_attributes.RECORD] = model_attributes.attribute_state(self.attributes)
            writers.update(attribute_writers)
            parts, event_writers = self._event_files()
            writers.update(event_writers)
            reuse = self._reusable(writers, parts)
            for name in reuse:
                writers.pop(name, None)
            meta = {**self.meta, **state_meta, "event_parts": parts, "data": {**self.meta["data"], **self._counts()}}
            version = model_io.write_model(path, writers, meta, reuse=reuse, expect=self._expected_version(path),
                                           wait=wait)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.meta.update(event_parts=parts, data=meta["data"])
        self._source = version
        self._dirty = set()
        if self._events is not None:
            self._events.parts, self._events.n_saved = parts, self._events.n_events
        return path

    def _expected_version(self, path: Path) -> int | None:
        """The version this model was read from when ``path`` is its directory (None otherwise:
        writing elsewhere replaces what is there)."""
        if self._source is None or not path.exists():
            return None
        return self._source.number if os.path.samefile(path, self._source.home) else None

    def _event_files(self) -> tuple[list, dict]:
        """The event part names of the new version and writers of the parts not on disk yet (and
        of the holdout, when it is not)."""
        writers = {}
        stored = self._source.manifest["files"] if self._source is not None else {}
        if self._holdout is not None and model_state.HOLDOUT not in stored:
            holdout = self._holdout
            writers[model_state.HOLDOUT] = lambda path: holdout.to_parquet(path, index=False)
        if self._events is None:  # never read, so unchanged: the stored parts are the events
            return list(self._source.manifest.get("event_parts", [])), writers
        log = self._events
        parts = list(log.parts)
        if log.n_saved < log.n_events or not parts:
            name = model_state.EVENT_PART.format(len(parts))
            writers[name] = log.parquet_writer(self.user_ids, self.item_ids, log.n_saved)
            parts.append(name)
        return parts, writers

    def _reusable(self, writers: dict, parts: list) -> dict:
        """Files of the loaded version that did not change: ``name -> (path, record)``."""
        if self._source is None:
            return {}
        root, manifest = self._source.root, self._source.manifest
        return {name: (root / name, record) for name, record in manifest["files"].items()
                if (name in parts and name not in writers) or name == model_state.HOLDOUT
                or (name in writers and model_state.file_group(name) not in self._dirty)}

    def _counts(self) -> dict:
        n_events = self._events.n_events if self._events is not None else self.meta["data"]["n_events"]
        return {"n_users": int(self.n_users), "n_items": int(self.n_items), "n_events": int(n_events)}

    # what the model holds ---------------------------------------------------------------------

    @property
    def user_ids(self) -> np.ndarray:
        return np.asarray(self.recommender.user_index_)

    @property
    def item_ids(self) -> np.ndarray:
        return np.asarray(self.recommender.item_ids_)

    @property
    def n_users(self) -> int:
        return int(self.recommender.user_index_.size)

    @property
    def n_items(self) -> int:
        return int(self.recommender.item_ids_.size)

    @property
    def profiles(self):
        """The users' :class:`~tastemap.runtime.interests.profiles.UserProfiles` (rows follow :attr:`user_ids`)."""
        self.recommender.settle()  # updated users' profiles wait in the overlay until then
        return self.recommender.profiler_.profiles_

    @property
    def segmenter(self):
        return self.recommender.segmenter_

    @property
    def events(self) -> model_state.EventLog:
        """The stored events (read from the directory when first needed)."""
        if self._events is None:
            self._events = model_state.EventLog.read(self._source.root, self._source.manifest["event_parts"],
                                                     self.recommender.user_index_, pd.Index(self.item_ids))
        return self._events

    @property
    def holdout(self) -> pd.DataFrame | None:
        """The held-out events recorded at fit time (None without ``holdout``)."""
        if self._holdout is None and self._source is not None and model_state.HOLDOUT in self._source.manifest["files"]:
            self._holdout = pd.read_parquet(self._source.root / model_state.HOLDOUT)
        return self._holdout

    @property
    def encoder(self):
        """The encoder of the recorded package (loaded and checked against its manifest hash when first used)."""
        if self._encoder is None:
            record = self.meta.get("encoder")
            if record is None:
                raise InputError("this model was fitted on precomputed item vectors, so it has no encoder package; "
                                 "pass the encoder that embedded them (TastemapModel.load(path, encoder=...), or "
                                 "--model PACKAGE on the command line)")
            from tastemap.runtime.encode.encoder import Encoder
            from tastemap.runtime.encode.default_encoder import default_cache_dir

            # the variant that embedded the items, so that new vectors match them
            self.set_encoder(Encoder(Path(record["path"]), variant=record.get("variant", "auto"),
                                     cache_dir=default_cache_dir()))
        return self._encoder

    def set_encoder(self, encoder) -> None:
        """Use ``encoder`` for text cold starts and new items; an
        :class:`~tastemap.runtime.encode.encoder.Encoder` is checked against the recorded manifest hash."""
        record = self.meta.get("encoder")
        found = _encoder_record(encoder)
        if record is not None and found is not None and found["manifest_sha256"] != record["manifest_sha256"]:
            raise FittedModelError(
                f"the encoder package {found['path']} has manifest sha256 {found['manifest_sha256'][:16]}...; the "
                f"model was fitted with {record['path']} (sha256 {record['manifest_sha256'][:16]}...): its vectors "
                "would not match the item vectors; use that package or fit again")
        self._encoder = encoder

    # serving ------------------------------------------------------------------------------------

    def recommend(self, user_id, k: int = 20) -> list[Recommendation]:
        """The top ``k`` unseen items for a known user, with explanations."""
        return self.recommender.recommend(user_id, k=k)

    def recommend_batch(self, user_ids: Sequence | None = None, k: int = 20, *, n_jobs: int | None = None) -> pd.DataFrame:
        """Recommendations for many users (default: all), one row per (user, rank), on ``n_jobs``
        threads (None: one per core)."""
        return self.recommender.recommend_batch(user_ids, k=k, n_jobs=n_jobs)

    def recommend_cold(self, text_or_items: str | Sequence | None = None, k: int = 20, *,
                       attributes: dict | None = None) -> list[Recommendation]:
        """Recommendations for a new user described by a short text (needs the encoder package)
        or by a few item ids (in the order they were liked, latest last), and/or by their
        ``attributes`` (``{"age": 24, "occupation": "student"}``; a model fitted with ``users``),
        which weigh less the more items are given
        (:func:`~tastemap.runtime.recommend.attributes.recommend_from_attributes`)."""
        if attributes is not None:
            from tastemap.runtime.recommend.attributes import recommend_from_attributes

            if self.attributes is None:
                raise InputError("this model was fitted without user attributes; fit it with a users table "
                                 "(TastemapModel.fit(..., users=read_users(path)) or tastemap fit --users users.csv)")
            if isinstance(text_or_items, str):
                return recommend_from_attributes(self.recommender, self.attributes, attributes, k=k,
                                                 text_vector=embed_description(self.encoder, text_or_items))
            return recommend_from_attributes(self.recommender, self.attributes, attributes,
                                             item_ids=list(text_or_items or []), k=k)
        if text_or_items is None:
            raise InputError("give a short text, a few item ids or attributes for a cold start")
        if isinstance(text_or_items, str):
            return self.recommender.recommend_cold(text=text_or_items, encoder=self.encoder, k=k)
        return self.recommender.recommend_cold(item_ids=list(text_or_items), k=k)

    def explain(self, user_id, item_id) -> Explanation:
        """Why ``item_id`` would be recommended to ``user_id`` (layer, interest, seed items)."""
        return self.recommender.explain(user_id, item_id)

    def segment_of(self, user_id) -> Segment:
        """The segment of a known user."""
        if self.segmenter is None:
            raise InputError("this model has no segments (it was fitted on fewer than 3 users)")
        row = self.recommender.user_index_.get_indexer([user_id])[0]
        if row < 0:
            raise InputError(f"user {user_id!r} is not in the model ({self.n_users} users); "
                             "update the model with their events, or use recommend_cold")
        segment = int(self.segmenter.labels_[row])
        entry = self.segmenter.segments_.loc[segment]
        return Segment(segment=segment, label=str(entry["label"]), size=int(entry["size"]), share=float(entry["share"]))

    def evaluate(self, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
        """The fitted state on its own held-out split (see ``fit(..., holdout=)``): tastemap and
        the stored collaborative weights alone (the reference), full ranking, seen items filtered; one row
        per model as :func:`~tastemap.runtime.recommend.model_evaluation.evaluation_table`."""
        from tastemap.runtime.recommend.comparison import genre_features
        from tastemap.runtime.recommend.model_evaluation import evaluate_model, evaluation_table
        from tastemap.runtime.recommend.splits import Split

        holdout = self.holdout
        if holdout is None:
            raise InputError("this model was fitted on all events, so it has no held-out split to evaluate on; "
                             "fit it with --holdout leave-last-out (or temporal) to evaluate it")
        if self.meta.get("updates"):
            logger.warning("the model was updated after the fit; held-out events folded in since count as seen")
        log = self.events
        train = Interactions(users=log.users, items=log.items, timestamps=log.timestamps, weights=log.weights,
                             user_ids=self.user_ids, item_ids=self.item_ids)
        users = self.recommender.user_index_.get_indexer(holdout["user_id"].to_numpy())
        items = pd.Index(self.item_ids).get_indexer(holdout["item_id"].to_numpy())
        keep = (users >= 0) & (items >= 0)
        test = Interactions(users=users[keep].astype(np.int64), items=items[keep].astype(np.int64),
                            timestamps=holdout["timestamp"].to_numpy(np.int64)[keep],
                            weights=holdout["weight"].to_numpy(np.float32)[keep],
                            user_ids=self.user_ids, item_ids=self.item_ids)
        split = Split(train=train, test=test, protocol=self.meta["holdout"]["protocol"])
        catalog = pd.DataFrame({"item_id": self.item_ids, "title": self.recommender.titles_,
                                "categories": self._categories})
        features = genre_features(catalog)
        results = [evaluate_model(self.recommender, split, name="tastemap", fit=False, item_features=features)]
        reference = None
        if self.recommender.collaborative_ is not None:
            reference = collaborative_reference(self.recommender)
            scorer = _StoredCollaborative(train.matrix(), self.recommender.collaborative_)
            results.insert(0, evaluate_model(scorer, split, name=reference, fit=False, item_features=features))
        return evaluation_table(results, reference=reference, n_resamples=n_resamples, seed=seed)

    # online updates -----------------------------------------------------------------------------

    def update(self, events: pd.DataFrame, catalog: pd.DataFrame | None = None, *,
               item_vectors: np.ndarray | None = None) -> model_update.UpdateSummary:
        """Fold new ``events`` into the users they touch (see :mod:`~tastemap.runtime.pipeline.model_update`
        for what is refreshed and what waits for the next batch fit).

        ``events``: ``user_id, item_id, timestamp`` and optionally ``weight`` / ``rating`` /
        ``event_type`` (ratings divided by the rating scale recorded at fit; ratings given to a
        model that records none are refused). Ids follow the model's id type (a user ``"7.5"``
        is refused by a model of integer ids, never truncated). Events of items the model does
        not hold are dropped and counted, unless ``catalog`` gives their rows: those items are
        embedded (``item_vectors`` ``[len(catalog), dim]`` in catalog order, or the encoder
        package) and placed into the fitted topics. New users whose events all weigh 0 are
        dropped, as ``align_events`` drops them at fit. Changes stay in memory until :meth:`save`.
        """
        from tastemap.runtime.interests.base import as_catalog

        model_update.check_updatable(self.recommender)
        started = time.perf_counter()
        frame = self._validated(events)
        new_user_ids = like_model_ids(frame["user_id"].to_numpy(), self.user_ids, "user")
        new_item_ids = like_model_ids(frame["item_id"].to_numpy(), self.item_ids, "item")
        n_new_items, n_known_rows = 0, 0
        if catalog is not None:
            catalog = as_catalog(catalog)
            catalog = catalog.assign(item_id=like_model_ids(catalog["item_id"].to_numpy(), self.item_ids, "item"))
            fresh = self.recommender._item_index().get_indexer(catalog["item_id"].to_numpy()) < 0
            n_known_rows = int((~fresh).sum())
            if item_vectors is not None:
                item_vectors = self._check_vectors(item_vectors, len(catalog))[fresh]
            if fresh.any():
                added = catalog[fresh].reset_index(drop=True)
                self._categories, n_new_items = model_update.add_items(
                    self.recommender, self._categories, added, self._new_item_vectors(added, item_vectors))
                self._dirty |= {"items", "users"}
        user_ids, users = np.unique(new_user_ids, return_inverse=True)
        items = self.recommender._item_index().get_indexer(new_item_ids)  # hashed once, not per update
        unknown = items < 0
        examples = []
        if unknown.any():
            examples = pd.unique(frame["item_id"].to_numpy()[unknown])[:10].tolist()
            logger.warning("%d new events name items the model does not hold (e.g. %s); they are dropped",
                           int(unknown.sum()), examples[:5])
        weights = frame["weight"].to_numpy(np.float32)
        kept = ~unknown & ~self._weightless_new_users(user_ids, users, ~unknown, weights)
        with one_thread(user_ids.size < SINGLE_THREAD_QUERIES):  # a few users' rows: products too small for threads
            counts = model_update.fold_events(
                self.recommender, self.events, users[kept], items[kept].astype(np.int64),
                frame["timestamp"].to_numpy(np.int64)[kept], weights[kept], user_ids)
        if counts["n_events_added"]:
            self._dirty.add("users")
        summary = model_update.timed_summary(
            started, counts, n_events_read=len(frame), n_unknown_items=int(unknown.sum()),
            unknown_item_examples=[_plain(x) for x in examples], n_new_items=n_new_items,
            n_known_catalog_rows=n_known_rows)
        record = summary.record()
        self.meta["updates"] = (self.meta.get("updates", []) + [
            {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **record}])[-MAX_UPDATE_RECORDS:]
        return summary

    def _validated(self, events) -> pd.DataFrame:
        """``events`` validated as ``read_events`` does, ratings divided by the recorded scale."""
        from tastemap.runtime.io.events import EventColumns, validate_events

        if _is_canonical(events):
            return events
        scale = self.meta["data"].get("rating_scale")
        frame = validate_events(events, EventColumns(rating_scale=scale), source="new events")
        check_rating_scale(scale, frame)
        return frame

    def _weightless_new_users(self, user_ids: np.ndarray, users: np.ndarray, known: np.ndarray,
                              weights: np.ndarray) -> np.ndarray:
        """``[n_events]`` True for the events of new users none of whose known events weighs more
        than 0: they say nothing about what the user likes (``align_events`` drops them at fit)."""
        best = np.full(user_ids.size, -np.inf)
        np.maximum.at(best, users[known], weights[known])
        weightless = (self.recommender.user_index_.get_indexer(user_ids) < 0) & (best <= 0) & np.isfinite(best)
        if weightless.any():
            logger.warning("%d new users have no event with a weight > 0 (e.g. %s); they say nothing about what "
                           "they like and are dropped", int(weightless.sum()),
                           [_plain(x) for x in user_ids[weightless][:5]])
        return weightless[users]

    def _new_item_vectors(self, catalog: pd.DataFrame, item_vectors) -> np.ndarray:
        from tastemap.runtime.io.events import render_item_texts

        if item_vectors is None:
            texts = render_item_texts(catalog, self.recommender.profiler_.text_template)
            item_vectors = self._check_vectors(self.encoder.encode(texts), len(catalog))
        return item_vectors

    def _check_vectors(self, item_vectors, n_rows: int) -> np.ndarray:
        """Unit rows of ``item_vectors`` ``[n_rows, dim]`` (the model's dimension)."""
        vectors = np.asarray(item_vectors, dtype=np.float32)
        dim = self.recommender.profiler_.item_vectors_.shape[1]
        if vectors.shape != (n_rows, dim):
            raise InputError(f"new item vectors have shape {vectors.shape}; expected [{n_rows}, {dim}] "
                             "(one row per catalog row, the model's dimension)")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
            raise InputError("new item vectors contain zero rows or non-finite values; every item needs a vector")
        return vectors / norms


def collaborative_reference(recommender) -> str:
    """The name of the reference of :meth:`TastemapModel.evaluate`, the model's own EASE weights
    alone: ``"EASE (l2=500)"`` when they are exact, ``"EASE (l2=500, rank=512)"`` when low-rank."""
    from tastemap.runtime.recommend.comparison import ease_name

    name = ease_name(recommender.l2)
    return name if recommender.collaborative_.exact else f"{name[:-1]}, rank={recommender.collaborative_.rank})"


class _StoredCollaborative:
    """Collaborative scores from the stored sparse weights (no fit): ``history[users] @ weights``."""

    def __init__(self, history, weights):
        self.history, self.weights = history, weights

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.weights.scores(self.history[users])


def _encoder_record(encoder) -> dict | None:
    """Path, name, manifest sha256, variant and dimension of an encoder's model package (None for
    an object without a package folder)."""
    folder = getattr(encoder, "model_dir", None)
    if folder is None or not (Path(folder) / "manifest.json").is_file():
        return None
    record = {"path": str(Path(folder).absolute()), "name": Path(folder).name,
              "manifest_sha256": model_io.sha256_file(Path(folder) / "manifest.json")}
    if getattr(encoder, "package", None) is not None:
        record.update(name=encoder.package.name, variant=encoder.variant, dim=int(encoder.dim))
    return record


def _is_canonical(events) -> bool:
    if not (isinstance(events, pd.DataFrame) and list(events.columns) == ["user_id", "item_id", "timestamp", "weight"]):
        return False
    dtypes = events.dtypes  # one lookup: selecting columns costs more than an update's arithmetic
    return pd.api.types.is_integer_dtype(dtypes.iloc[2]) and pd.api.types.is_float_dtype(dtypes.iloc[3])


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
