"""A fitted recommender's state as the files of a model directory, and back, without refitting.

:func:`state_files` turns a fitted :class:`~tastemap.runtime.recommend.recommender.TastemapRecommender`
(its profiler, segmenter, EASE weights and per-user state) into writers keyed by file name plus
the metadata ``model.json`` needs; :func:`restore_recommender` rebuilds an equal recommender from
those files by setting the fitted attributes (no ``fit`` runs). :class:`EventLog` holds the
training events a model keeps for online updates and for its own evaluation.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import sparse

from tastemap.errors import FittedModelError
from tastemap.runtime.interests.layers import TimeWindows, category_levels
from tastemap.runtime.interests.partition import InterestScale
from tastemap.runtime.interests.profiles import InterestProfiler, UserInterests, UserProfiles
from tastemap.runtime.interests.segments import UserSegmenter
from tastemap.runtime.interests.topics import TopicLevel, TopicTree
from tastemap.runtime.pipeline.model_io import (
    array_writer,
    json_writer,
    load_array,
    load_sparse,
    read_json,
    sparse_writers,
)
from tastemap.runtime.recommend.candidates import build_item_index, collaborative_index, index_kind, index_writer, read_index
from tastemap.runtime.recommend.collaborative import LowRankEASE
from tastemap.runtime.recommend.ground import SAVED_PHRASES, item_terms
from tastemap.runtime.recommend.recommender import BlendWeights, TastemapRecommender

logger = logging.getLogger(__name__)

INTEREST_FIELDS = ("indptr", "medoid", "importance", "share", "size", "topic", "member_indptr", "members")
MIXTURE_FIELDS = ("weights_", "means_", "covariances_", "precisions_cholesky_")
EVENT_PART = "events/part-{:05d}.parquet"
EVENT_ROW_GROUP = 1 << 22
"""Events per row group of an event part: what a save holds of the log at a time."""
HOLDOUT = "holdout.parquet"
USER_FILES = ("users.parquet", "profiles.parquet", "segments.parquet", "user_segments.parquet",
              "segment_popularity.npy")
ITEM_INDEX = "item_index.npy"
"""The serialised IVF item index (a flat index is rebuilt from the item vectors)."""
ITEM_NEIGHBOURS = "item_neighbours.npy"
"""Each item's nearest items (int32 ``[n_items, interest_candidates]``): the interests' candidates."""
COLLABORATIVE_INDEX = "collaborative_index.npy"
"""The serialised IVF index over the collaborative item factors (a flat one is rebuilt)."""
COLLABORATIVE_PARTS = ("right", "diagonal", "shrink")
"""The low-rank EASE weights: ``collaborative.<part>.npy``."""
ITEM_PHRASES = "item_phrases"
"""The explanations' phrase table (``item_phrases.{indptr,indices,data,keys}.npy``): which topic
keywords each item's text holds outside its title."""
COLLABORATIVE_SUMS = ("right_total", "right_gram")
"""The sums of ``right`` that serving needs, saved with the weights when they have them
(``fitted.collaborative.sums``; a model saved before them sums ``right`` at its first request)."""
ITEM_FILES = (ITEM_INDEX, ITEM_NEIGHBOURS, "items.parquet", "item_vectors.npy", "item_topics.npy", "topic_tree.json", "topics.json")


def file_group(name: str) -> str:
    """``items`` (rewritten when items are added), ``users`` (rewritten when events are added)
    or ``fixed`` (written by the batch fit only)."""
    if name in ITEM_FILES or name.startswith(f"{ITEM_PHRASES}."):
        return "items"
    if name in USER_FILES or name.startswith("state/"):
        return "users"
    return "fixed"


class EventLog:
    """The events a fitted model was trained on, plus those folded in since.

    ``users`` and ``items`` int64 ``[n_events]`` are rows of the model's users and items;
    ``timestamps`` int64 seconds and ``weights`` float32 ``[n_events]``. ``parts`` names the
    Parquet parts on disk holding the first ``n_saved`` events, in order. Appended events go to a
    tail (buffers grown by doubling, indexed by user) until the columns are read, and
    :meth:`of_users` finds a few users' events through the indexes by user, so that an update
    costs its own events, not the log's nor the number of updates before it.
    """

    COLUMNS = ("users", "items", "timestamps", "weights")
    DTYPES = (np.int64, np.int64, np.int64, np.float32)

    def __init__(self, users, items, timestamps, weights, parts: list | None = None, n_saved: int = 0):
        self._columns = [np.asarray(c, d) for c, d in zip((users, items, timestamps, weights), self.DTYPES)]
        self._by_user: tuple | None = None  # (positions of the consolidated events by user, their users)
        self._clear_tail()
        self.parts, self.n_saved = list(parts or []), n_saved

    users = property(lambda self: self._column(0))
    items = property(lambda self: self._column(1))
    timestamps = property(lambda self: self._column(2))
    weights = property(lambda self: self._column(3))

    @property
    def n_events(self) -> int:
        return int(self._columns[0].size + self._tail_size)

    def append(self, users, items, timestamps, weights) -> None:
        columns = [np.asarray(c, d).ravel() for c, d in zip((users, items, timestamps, weights), self.DTYPES)]
        start, n = self._tail_size, columns[0].size
        if start + n > self._tail[0].size:
            capacity = max(2 * self._tail[0].size, start + n, 1024)
            self._tail = [np.concatenate([buffer[:start], np.empty(capacity - start, buffer.dtype)])
                          for buffer in self._tail]
        for buffer, column in zip(self._tail, columns):
            buffer[start : start + n] = column
        self._tail_size += n
        order = np.argsort(columns[0], kind="stable")
        distinct, first = np.unique(columns[0][order], return_index=True)
        for user, positions in zip(distinct.tolist(), np.split(start + order, first[1:])):
            self._tail_by_user.setdefault(user, []).append(positions)

    def of_users(self, users: np.ndarray) -> tuple[np.ndarray, ...]:
        """The columns ``(users, items, timestamps, weights)`` of every event of ``users``
        (sorted unique rows), in the log's order."""
        if self._by_user is None:
            logged = self._columns[0]
            in_order = logged.size < 2 or bool((logged[1:] >= logged[:-1]).all())  # a fitted log is by user
            order = np.arange(logged.size) if in_order else np.argsort(logged, kind="stable")
            self._by_user = (order, logged if in_order else logged[order])
        by_user, sorted_users = self._by_user
        starts = np.searchsorted(sorted_users, users, side="left")
        ends = np.searchsorted(sorted_users, users, side="right")
        positions = np.sort(np.concatenate([by_user[a:b] for a, b in zip(starts, ends)] or [np.zeros(0, np.int64)]))
        in_tail = [part for user in np.asarray(users).tolist() for part in self._tail_by_user.get(user, ())]
        tail = np.sort(np.concatenate(in_tail)) if in_tail else np.zeros(0, np.int64)
        return tuple(np.concatenate([column[positions], buffer[tail]])
                     for column, buffer in zip(self._columns, self._tail))

    def _column(self, position: int) -> np.ndarray:
        if self._tail_size:
            self._columns = [np.concatenate([column, buffer[: self._tail_size]])
                             for column, buffer in zip(self._columns, self._tail)]
            self._clear_tail()
            self._by_user = None
        return self._columns[position]

    def _clear_tail(self) -> None:
        self._tail = [np.empty(0, dtype) for dtype in self.DTYPES]
        self._tail_size = 0
        self._tail_by_user: dict[int, list[np.ndarray]] = {}

    def parquet_writer(self, user_ids: np.ndarray, item_ids: np.ndarray, start: int = 0):
        """A writer of the events from ``start`` on as Parquet ``user_id, item_id, timestamp,
        weight`` with the caller's ids, a row group at a time (the log is not copied whole)."""
        user_ids, item_ids = np.asarray(user_ids), np.asarray(item_ids)

        def write(path: Path) -> None:
            schema = _event_schema(user_ids, item_ids)
            with pq.ParquetWriter(path, schema) as writer:
                for first in range(start, max(self.n_events, start + 1), EVENT_ROW_GROUP):
                    rows = slice(first, first + EVENT_ROW_GROUP)
                    writer.write_table(pa.table({"user_id": user_ids[self.users[rows]],
                                                 "item_id": item_ids[self.items[rows]],
                                                 "timestamp": self.timestamps[rows], "weight": self.weights[rows]},
                                                schema=schema))

        return write

    @classmethod
    def read(cls, root: Path, parts: list[str], user_ids: pd.Index, item_ids: pd.Index) -> "EventLog":
        if not parts:
            return cls(*(np.zeros(0, dtype) for dtype in cls.DTYPES))
        table = pa.concat_tables([pq.read_table(root / part) for part in parts])  # the parts' chunks, not copied
        users, items = _rows_of(table["user_id"], user_ids), _rows_of(table["item_id"], item_ids)
        if users is None or items is None:
            raise FittedModelError(f"{root}: the stored events name users or items the model does not hold; "
                                   "the directory is inconsistent, fit the model again")
        return cls(users=users, items=items, timestamps=table["timestamp"].to_numpy(),
                   weights=table["weight"].to_numpy(), parts=list(parts), n_saved=users.size)


def _rows_of(ids: pa.ChunkedArray, index: pd.Index) -> np.ndarray | None:
    """The row in ``index`` of each of ``ids``, int64, looked up in Arrow's hash table (string ids
    never become Python objects); None when one of them is not there. Through pandas, the first
    update after a load at 200k items (15M events) took 1.5x as long."""
    try:
        values = pa.array(index.to_numpy(), type=ids.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # ids of another type: none is there
        return None
    found = pc.index_in(ids, value_set=values)
    return None if found.null_count else found.to_numpy().astype(np.int64)


def state_files(recommender: TastemapRecommender, categories: list, *, scratch: Path) -> tuple[dict, dict]:
    """Writers for every file of the fitted state except the events and the holdout, and the
    metadata (``params``, ``fitted``, ``shapes``) that ``model.json`` records.

    ``categories`` holds each item's category paths (tuples). ``scratch`` is an empty folder for
    the files written through the profile and segment writers (same formats as ``tastemap
    profile`` and ``tastemap segment``).
    """
    from tastemap.runtime.interests.profile_io import strings, write_profiles
    from tastemap.runtime.interests.segments import write_segments

    recommender.settle()
    profiler, segmenter = recommender.profiler_, recommender.segmenter_
    profiles, state = profiler.profiles_, recommender.state_
    tree = profiler.topic_tree_
    writers = {
        "items.parquet": _table_writer(pa.table({
            "item_id": pa.array(recommender.item_ids_),
            "title": strings(profiler.item_titles_),
            "text": pa.array(list(profiler.item_texts_), pa.string()),
            "categories": pa.array([[list(path) for path in paths] for paths in categories],
                                   pa.list_(pa.list_(pa.string()))),
        })),
        "item_vectors.npy": array_writer(profiler.item_vectors_),
        "item_topics.npy": array_writer(profiler.item_topics_.astype(np.int64)),
        "topic_tree.json": json_writer({"levels": [
            {"parents": level.parents, "sizes": level.sizes, "keywords": level.keywords, "medoids": level.medoids}
            for level in tree.levels]}),
        "users.parquet": _table_writer(pa.table({
            "user_id": pa.array(np.asarray(recommender.user_index_)),
            "n_events": pa.array(profiles.n_events.astype(np.int64)),
            "last_seen": pa.array(profiles.last_seen.astype(np.int64)),
            "segment": pa.array((segmenter.labels_ if segmenter is not None
                                 else np.full(profiles.n_users, -1)).astype(np.int32)),
        })),
    }
    for depth, level in enumerate(tree.levels):
        writers[f"topic_centroids_{depth}.npy"] = array_writer(level.centroids)
    shapes = {}
    matrices = {**{f"state/topics_{d}": m for d, m in enumerate(profiles.topics)},
                "state/short_term": profiles.short_term,
                **{f"state/categories_{d}": m for d, m in enumerate(profiles.categories)},
                "state/history": state.history, "state/recency": state.recency}
    for name, matrix in matrices.items():
        writers.update(sparse_writers(name, matrix))
        shapes[name] = list(matrix.shape)
    for name in ("vectors", "short_vectors"):
        writers[f"state/{name}.npy"] = array_writer(getattr(profiles, name))
    for name in INTEREST_FIELDS:
        writers[f"state/interests.{name}.npy"] = array_writer(getattr(profiles.interests, name))
    writers[ITEM_NEIGHBOURS] = array_writer(recommender.item_neighbours_)
    terms = item_terms(profiler)  # the explanations' phrase table: a scan of every item's text, saved
    writers.update(sparse_writers(ITEM_PHRASES, terms.phrases))
    writers[f"{ITEM_PHRASES}.keys.npy"] = array_writer(terms.keys.astype(str))
    shapes[ITEM_PHRASES] = list(terms.phrases.shape)
    if recommender.collaborative_ is not None:
        for part in _collaborative_parts(recommender.collaborative_.right_gram is not None):
            writers[f"{COLLABORATIVE}.{part}.npy"] = array_writer(getattr(recommender.collaborative_, part))
    for name, index in ((ITEM_INDEX, recommender.index_), (COLLABORATIVE_INDEX, recommender.collaborative_index_)):
        if (writer := index_writer(index)) is not None:
            writers[name] = writer
    write_profiles(profiler, scratch, profiles, jsonl=False)
    writers["profiles.parquet"] = _move_writer(scratch / "profiles.parquet")
    writers["topics.json"] = _move_writer(scratch / "topics.json")
    if segmenter is not None:
        write_segments(segmenter, scratch)
        writers["segments.parquet"] = _move_writer(scratch / "segments.parquet")
        writers["user_segments.parquet"] = _move_writer(scratch / "user_segments.parquet")
        writers["segment_centroids.npy"] = array_writer(segmenter.centroids_)
        writers["segment_of_cluster.npy"] = array_writer(segmenter.segment_of_cluster_)
        writers["segment_popularity.npy"] = array_writer(recommender.segment_popularity_)
        if segmenter.mixture_ is not None:
            for name in MIXTURE_FIELDS:
                writers[f"segment_mixture.{name.rstrip('_')}.npy"] = array_writer(getattr(segmenter.mixture_, name))
    meta = {
        "params": {
            "recommender": {"l2": recommender.l2, "rank": recommender.rank,
                            "recency_half_life": recommender.recency_half_life,
                            "n_candidates": recommender.n_candidates,
                            "interest_candidates": recommender.interest_candidates, "seed": recommender.seed},
            "weights": recommender.weights_.as_dict(),
            "profiler": profiler.get_params(),
            "segmenter": segmenter.get_params() if segmenter is not None else None,
        },
        "fitted": {
            "topics": {"backend": profiler.backend_, "n_topics": [level.n_topics for level in tree.levels]},
            "interest_scale": {"centre": profiler.interest_scale_.centre, "prior": profiler.interest_scale_.prior},
            COLLABORATIVE: None if recommender.collaborative_ is None else {
                "method": "ease-exact" if recommender.collaborative_.exact else "ease-low-rank",
                "rank": recommender.collaborative_.rank,
                "index": index_kind(recommender.collaborative_index_),
                "sums": recommender.collaborative_.right_gram is not None},
            "item_index": index_kind(recommender.index_),
            "segments": None if segmenter is None else {
                "n_segments": int(segmenter.n_segments_), "criterion": segmenter.criterion_,
                "criterion_scores": {str(k): v for k, v in segmenter.criterion_scores_.items()},
                "dispersion": {str(k): v for k, v in (getattr(segmenter, "dispersion_", None) or {}).items()},
                "backend": segmenter.backend_, "feature_names": segmenter.feature_names_},
        },
        "shapes": shapes,
    }
    return writers, meta


def restore_recommender(root: Path, manifest: dict) -> tuple[TastemapRecommender, list]:
    """The fitted recommender stored in ``root`` (fitted attributes set, no ``fit``) and each
    item's category paths."""
    params, fitted, shapes = manifest["params"], manifest["fitted"], manifest["shapes"]
    items = pq.read_table(root / "items.parquet")
    item_ids = items["item_id"].to_numpy()
    titles = items["title"].to_numpy(zero_copy_only=False)
    categories = [[tuple(path) for path in paths] for paths in items["categories"].to_pylist()]
    vectors = load_array(root / "item_vectors.npy")
    item_topics = np.asarray(load_array(root / "item_topics.npy"))
    tree_doc = read_json(root / "topic_tree.json")
    tree = TopicTree(levels=[
        TopicLevel(labels=item_topics[:, depth].copy(), parents=np.asarray(level["parents"], np.int64),
                   centroids=np.asarray(load_array(root / f"topic_centroids_{depth}.npy")),
                   sizes=np.asarray(level["sizes"], np.int64), keywords=level["keywords"],
                   medoids=np.asarray(level["medoids"], np.int64).reshape(len(level["sizes"]), -1))
        for depth, level in enumerate(tree_doc["levels"])])

    profiler = InterestProfiler(**params["profiler"])
    profiler.item_ids_, profiler.item_titles_ = item_ids, titles
    profiler.item_texts_ = items["text"].to_pylist()
    profiler.item_vectors_ = vectors
    profiler.topic_tree_, profiler.item_topics_ = tree, item_topics
    profiler.category_levels_ = category_levels(categories)
    profiler.time_windows_ = TimeWindows(short_window_days=profiler.short_window_days, short_decay=profiler.short_decay,
                                         long_decay=profiler.long_decay, reference=profiler.time_reference)
    profiler.backend_, profiler.stats_, profiler.data_report_, profiler.user_items_ = fitted["topics"]["backend"], {}, None, None
    profiler.interest_scale_ = InterestScale(centre=np.asarray(fitted["interest_scale"]["centre"], np.float32),
                                             prior=float(fitted["interest_scale"]["prior"]))
    if ITEM_PHRASES in shapes:  # folders saved before it hold none: scanned at the first explanation
        profiler.__dict__[SAVED_PHRASES] = (np.asarray(load_array(root / f"{ITEM_PHRASES}.keys.npy")),
                                            load_sparse(root, ITEM_PHRASES, shapes[ITEM_PHRASES]))

    users = pq.read_table(root / "users.parquet")
    user_ids = users["user_id"].to_numpy()
    state = root / "state"
    interests = UserInterests(**{name: np.asarray(load_array(state / f"interests.{name}.npy")) for name in INTEREST_FIELDS})
    profiles = UserProfiles(
        user_ids=user_ids, n_events=users["n_events"].to_numpy(), last_seen=users["last_seen"].to_numpy(),
        topics=[load_sparse(root, f"state/topics_{d}", shapes[f"state/topics_{d}"]) for d in range(len(tree.levels))],
        topic_names=[level.names for level in tree.levels],
        short_term=load_sparse(root, "state/short_term", shapes["state/short_term"]),
        categories=[load_sparse(root, f"state/categories_{d}", shapes[f"state/categories_{d}"])
                    for d in range(len(profiler.category_levels_))],
        category_names=[level.names for level in profiler.category_levels_],
        vectors=load_array(state / "vectors.npy"), short_vectors=load_array(state / "short_vectors.npy"),
        interests=interests,
    )
    profiler.profiles_ = profiles

    segmenter = None
    if params["segmenter"] is not None:
        segmenter = _restore_segmenter(root, params["segmenter"], fitted["segments"], user_ids,
                                       users["segment"].to_numpy().astype(np.int64))
    recommender = TastemapRecommender(
        weights=BlendWeights(**params["weights"]), profiler=InterestProfiler(**params["profiler"]),
        segmenter=UserSegmenter(**_segmenter_params(params["segmenter"])) if segmenter is not None else None,
        **params["recommender"])
    recommender.weights_ = BlendWeights(**params["weights"])
    recommender.profiler_, recommender.segmenter_ = profiler, segmenter
    n_items = item_ids.size
    recommender.collaborative_, recommender.collaborative_index_ = None, None
    if fitted[COLLABORATIVE] is not None:
        parts = {part: np.asarray(load_array(root / f"{COLLABORATIVE}.{part}.npy"))
                 for part in _collaborative_parts(fitted[COLLABORATIVE].get("sums", False))}
        recommender.collaborative_ = LowRankEASE(**parts, exact=fitted[COLLABORATIVE]["method"] == "ease-exact")
        recommender.collaborative_index_ = _restore_index(
            root, COLLABORATIVE_INDEX, fitted[COLLABORATIVE]["index"],
            lambda: collaborative_index(parts["right"], exact_limit=parts["right"].shape[0]))
        recommender.collaborative_ = recommender.collaborative_.padded(n_items)
    recommender.item_neighbours_ = np.asarray(load_array(root / ITEM_NEIGHBOURS))
    recommender.segment_popularity_ = None
    if segmenter is not None:
        popularity = np.asarray(load_array(root / "segment_popularity.npy"))
        recommender.segment_popularity_ = pad_columns(popularity, n_items)
    recommender.index_ = _restore_index(root, ITEM_INDEX, fitted["item_index"],
                                        lambda: build_item_index(vectors, exact_limit=len(vectors)))
    recommender.titles_ = titles.astype(str)
    recommender.item_ids_ = item_ids
    recommender.user_index_ = pd.Index(user_ids)
    history = load_sparse(root, "state/history", shapes["state/history"])
    recency = load_sparse(root, "state/recency", shapes["state/recency"])
    recommender.state_ = recommender.scoring_state(resize(history, n_items), resize(recency, n_items), profiles)
    return recommender, categories


def _restore_index(root: Path, name: str, kind: str, rebuild):
    """A faiss index as saved: ``rebuild()`` when exact (flat), read from ``name`` when IVF."""
    return rebuild() if kind == "exact" else read_index(load_array(root / name))


def _restore_segmenter(root: Path, params: dict, fitted: dict, user_ids: np.ndarray, labels: np.ndarray) -> UserSegmenter:
    segmenter = UserSegmenter(**_segmenter_params(params))
    segmenter.feature_names_ = fitted["feature_names"]
    segmenter.criterion_ = fitted["criterion"]
    segmenter.criterion_scores_ = {int(k): v for k, v in fitted["criterion_scores"].items()}
    segmenter.dispersion_ = {int(k): v for k, v in fitted.get("dispersion", {}).items()}
    segmenter.backend_ = fitted["backend"]
    segmenter.n_segments_ = int(fitted["n_segments"])
    segmenter.centroids_ = np.asarray(load_array(root / "segment_centroids.npy"))
    segmenter.segment_of_cluster_ = np.asarray(load_array(root / "segment_of_cluster.npy"))
    segmenter.mixture_ = None
    if (root / "segment_mixture.weights.npy").is_file():
        from sklearn.mixture import GaussianMixture

        mixture = GaussianMixture(n_components=segmenter.segment_of_cluster_.size,
                                  covariance_type=segmenter.covariance_type)
        for name in MIXTURE_FIELDS:
            setattr(mixture, name, np.asarray(load_array(root / f"segment_mixture.{name.rstrip('_')}.npy")))
        mixture.n_features_in_ = mixture.means_.shape[1]
        segmenter.mixture_ = mixture
    table = pq.read_table(root / "segments.parquet").drop_columns(["centroid"])
    segmenter.segments_ = pd.DataFrame(table.to_pylist(), columns=table.column_names)
    segmenter.user_ids_ = user_ids
    segmenter.labels_ = labels
    return segmenter


def _segmenter_params(params: dict) -> dict:
    return {**params, "k_range": tuple(params["k_range"])}


def pad_columns(matrix: np.ndarray, n: int) -> np.ndarray:
    """``matrix`` ``[r, m]`` zero-padded to ``[r, n]``."""
    if matrix.shape[1] == n:
        return matrix
    return np.hstack([matrix, np.zeros((matrix.shape[0], n - matrix.shape[1]), matrix.dtype)])


def resize(matrix: sparse.csr_matrix, n_columns: int) -> sparse.csr_matrix:
    """A CSR matrix with more (empty) columns."""
    if matrix.shape[1] == n_columns:
        return matrix
    return sparse.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], n_columns))


def scratch_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="tastemap-model-"))


def _event_schema(user_ids: np.ndarray, item_ids: np.ndarray) -> pa.Schema:
    return pa.schema([("user_id", pa.array(user_ids[:1]).type), ("item_id", pa.array(item_ids[:1]).type),
                      ("timestamp", pa.int64()), ("weight", pa.float32())])


def _table_writer(table: pa.Table):
    return lambda path: pq.write_table(table, path)


def _move_writer(source: Path):
    return lambda path: shutil.move(source, path)


# what a model holds: the schema, not model.json's own list ----------------------------------------

CSR_PARTS = ("indptr", "indices", "data")
BASE_FILES = ("items.parquet", "item_vectors.npy", "item_topics.npy", ITEM_NEIGHBOURS, "topic_tree.json", "topics.json",
              "users.parquet", "profiles.parquet", "state/vectors.npy", "state/short_vectors.npy",
              *(f"state/interests.{name}.npy" for name in INTEREST_FIELDS))
"""Files every fitted model holds."""
BASE_MATRICES = ("state/short_term", "state/history", "state/recency")
"""CSR matrices every fitted model holds (besides ``state/topics_<level>``, one per topic level)."""
SEGMENT_FILES = ("segments.parquet", "user_segments.parquet", "segment_centroids.npy", "segment_of_cluster.npy",
                 "segment_popularity.npy")
"""Files of a model with segments (fitted on 3 users or more)."""
COLLABORATIVE = "collaborative"
"""The collaborative weights' file prefix and ``fitted`` record (None without them)."""


def required_files(manifest: dict) -> set[str]:
    """The files a fitted model of this schema holds, derived from its ``params``, ``fitted``,
    ``shapes``, ``holdout`` and ``event_parts``: the loader refuses a version that lacks one of
    them or holds any other (besides ``model.json``)."""
    from tastemap.runtime.pipeline.model_attributes import attribute_files

    params, fitted, shapes = manifest["params"], manifest["fitted"], manifest["shapes"]
    n_levels = len(fitted["topics"]["n_topics"])
    files = set(BASE_FILES) | {f"topic_centroids_{depth}.npy" for depth in range(n_levels)}
    matrices = set(BASE_MATRICES) | {f"state/topics_{depth}" for depth in range(n_levels)} | set(shapes)
    files |= {f"{name}.{part}.npy" for name in matrices for part in CSR_PARTS}
    files |= _collaborative_files(manifest)
    if ITEM_PHRASES in shapes:
        files.add(f"{ITEM_PHRASES}.keys.npy")
    files |= attribute_files(manifest)
    if manifest["fitted"]["item_index"] != "exact":
        files.add(ITEM_INDEX)
    segmenter = params["segmenter"]
    if segmenter is not None:
        files |= set(SEGMENT_FILES)
        if segmenter["method"] == "gmm":
            files |= {f"segment_mixture.{name.rstrip('_')}.npy" for name in MIXTURE_FIELDS}
    if manifest["holdout"] is not None:
        files.add(HOLDOUT)
    files |= set(manifest["event_parts"])
    return files


def _collaborative_files(manifest: dict) -> set[str]:
    """The collaborative part's files: the low-rank EASE factors (:data:`COLLABORATIVE_PARTS`)
    and, for an IVF index over them, the index, when ``fitted`` records the part."""
    record = manifest["fitted"][COLLABORATIVE]
    if record is None:
        return set()
    return {f"{COLLABORATIVE}.{part}.npy" for part in _collaborative_parts(record.get("sums", False))} | (
        {COLLABORATIVE_INDEX} if record["index"] != "exact" else set())


def _collaborative_parts(sums: bool) -> tuple[str, ...]:
    return COLLABORATIVE_PARTS + (COLLABORATIVE_SUMS if sums else ())
