"""int8 quantization of the encoder: quality, batch invariance and speed, side by side.

Compares, on one fp32 ONNX model (with ``sentence_embedding`` output and ``tokenizer.json``
beside it):

- ``fp32``: the model itself;
- ``int8 per-token``: :func:`tastemap.export.quantize.quantize_int8` (per-token activations,
  per-channel weights within ±64, batch-invariant), with its ``asymmetric`` (default) and
  ``symmetric`` activation schemes, and the asymmetric one with weights at ±127 (``w127``: more
  accurate, but its products saturate on CPUs without VNNI);
- ``ort per-channel``: ``quantize_dynamic(per_channel=True, op_types_to_quantize=["MatMul"],
  weight_type=QInt8)``;
- ``ort per-tensor``: ``quantize_dynamic`` with its defaults;
- ``fp32, weight products free`` (timed only, :data:`CEILING`): the fp32 graph with every weight
  product replaced by a copy, the speed no int8 scheme can pass on this CPU.

Figures: mean and min cosine to fp32 on real texts (the export's validation texts plus MovieLens
titles with genres), top-10 nearest-neighbour overlap with fp32 within that set, the Spearman
correlation of all pairwise similarities with fp32's (an STS-like figure), min cosine
between a text encoded alone and inside one padded batch of 64, and throughput at ``--threads``
intra-op threads on batches of ``--batch-size`` texts (or, with ``--batch-tokens``, cut by padded
tokens as the runtime cuts them) padded to their own longest, for each ONNX
Runtime graph optimization level, on three workloads (:mod:`tastemap.bench.workloads`): short
queries (10-16 tokens), MovieLens item texts and ~256-token documents, each sorted by length as
the runtime's batching does. Throughput is given per wall second and per CPU second of the
process (thread spinning off): on a machine shared with other jobs the second one is the stable
ratio. Timings are interleaved (round-robin over every session, ``--rounds`` times) and the median
round is reported. Last comes the operator profile of the scheme the export uses (ONNX Runtime's
profiler, item texts, share of kernel time per operator type), and ``--json`` records everything
with this CPU's int8 ISA class, so that figures from several machines can be put side by side.

Run: ``python -m tastemap.bench.quantization ~/.cache/tastemap/models/all-MiniLM-L6-v2/model.onnx
--batch-tokens 512 --json int8-$(hostname).json``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Hashable, TypeVar

import numpy as np
import onnxruntime as ort
import pandas as pd
from tokenizers import Tokenizer

from tastemap.console import print_table
from tastemap.cpu import cpu_info
from tastemap.export.quantize import DEFAULT_SCHEME, SCHEMES, quantize_int8

K = TypeVar("K", bound=Hashable)
LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class Encoder:
    """One ONNX session plus its tokenizer; ``encode`` returns ``[n, dim]`` float32.

    Batches hold ``batch_size`` consecutive texts or, with ``max_tokens``, are cut as the
    runtime's :class:`~tastemap.runtime.encode.encoder.Encoder` cuts them (longest first, at most
    ``max_tokens`` padded tokens and ``batch_size`` texts each), the vectors coming back in input order.
    """

    session: ort.InferenceSession
    tokenizer: Tokenizer
    max_tokens: int | None = None

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        if self.max_tokens is None:
            return np.concatenate([self._batch(self.tokenizer.encode_batch(texts[i : i + batch_size]))
                                   for i in range(0, len(texts), batch_size)])
        from tastemap.runtime.encode.batching import plan_batches

        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.array([len(encoding.ids) for encoding in encodings])
        batches = plan_batches(lengths, max_tokens=self.max_tokens, max_batch_size=batch_size)
        vectors = [self._batch([encodings[i] for i in batch]) for batch in batches]
        out = np.empty((len(texts), vectors[0].shape[1]), np.float32)
        for batch, batch_vectors in zip(batches, vectors):
            out[batch] = batch_vectors
        return out

    def _batch(self, encodings: list) -> np.ndarray:
        """Embeddings of tokenizer ``encodings``, padded to the longest of them."""
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        names = {i.name for i in self.session.get_inputs()}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return self.session.run(["sentence_embedding"], feeds)[0]


def make_texts(n_movies: int, seed: int) -> list[str]:
    """The export's validation texts plus ``n_movies`` more MovieLens titles with genres."""
    validation = (resources.files("tastemap.export") / "data" / "validation.txt").read_text()
    texts = [line.strip() for line in validation.splitlines() if line.strip()]
    movies_path = resources.files("tastemap") / "data" / "movielens-small" / "movies.csv.gz"
    with resources.as_file(movies_path) as path:
        movies = pd.read_csv(path)
    movies = movies.sample(frac=1.0, random_state=seed)
    known = set(texts)
    for title, genres in zip(movies["title"], movies["genres"]):
        if len(texts) >= len(known) + n_movies:
            break
        text = f"{title}. Genres: {genres.replace('|', ', ')}"
        if text not in known:
            texts.append(text)
    return texts


def top10_overlap(reference: np.ndarray, vectors: np.ndarray) -> float:
    """Mean share of each text's 10 nearest neighbours (cosine, itself excluded) kept."""
    def neighbours(v: np.ndarray) -> np.ndarray:
        similarity = v @ v.T
        np.fill_diagonal(similarity, -np.inf)
        return np.argsort(-similarity, axis=1)[:, :10]

    kept = [len(set(a) & set(b)) / 10 for a, b in zip(neighbours(reference), neighbours(vectors))]
    return float(np.mean(kept))


def pair_spearman(reference: np.ndarray, vectors: np.ndarray) -> float:
    """Spearman correlation of all pairwise cosine similarities with the reference's."""
    from scipy.stats import spearmanr

    upper = np.triu_indices(len(reference), 1)
    return float(spearmanr((reference @ reference.T)[upper], (vectors @ vectors.T)[upper]).statistic)


def make_encoder(path: Path, tokenizer: Tokenizer, level: str, threads: int, profile_prefix: str = "",
                 max_tokens: int | None = None) -> Encoder:
    options = ort.SessionOptions()
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = LEVELS[level]
    # No spin-waiting: on a shared machine spinning threads burn the CPU time measured below.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Encoder(session, tokenizer, max_tokens)


def make_variants(fp32_path: Path, folder: Path) -> dict[str, Path]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    variants = {"fp32": fp32_path}
    for scheme in SCHEMES:
        variants[f"int8 per-token {scheme}"] = folder / f"per_token_{scheme}.onnx"
        quantize_int8(fp32_path, variants[f"int8 per-token {scheme}"], scheme=scheme)
    # The same with weights at ±127: what the ±64 limit costs (its products saturate without VNNI).
    variants["int8 per-token asymmetric w127"] = folder / "per_token_w127.onnx"
    quantize_int8(fp32_path, variants["int8 per-token asymmetric w127"], weight_limit=127)
    variants["ort per-channel"] = folder / "ort_per_channel.onnx"
    quantize_dynamic(
        fp32_path,
        variants["ort per-channel"],
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        weight_type=QuantType.QInt8,
    )
    variants["ort per-tensor"] = folder / "ort_per_tensor.onnx"
    quantize_dynamic(fp32_path, variants["ort per-tensor"])
    return variants


CEILING = "fp32, weight products free"
"""A timing-only variant: the fp32 graph with every product that int8 quantizes replaced by a
copy of its input to the product's shape. No int8 scheme can run faster than this graph does
(its vectors mean nothing): the rest of the graph (attention, softmax, layer norm, GELU, the
bias additions) costs what it costs in fp32, whatever the products cost."""


def products_free(fp32_path: Path, out_path: Path) -> Path:
    """Write :data:`CEILING`'s graph: each weight ``MatMul`` that :func:`quantize_int8` would
    quantize becomes an ``Identity``, a ``Concat`` of copies or a ``Slice`` of its input with the
    product's output width (``[K, N]`` weights with ``N = K``, ``N = rK`` or ``N < K``); the bias
    additions and everything else stay."""
    import onnx
    from onnx import helper, numpy_helper

    from tastemap.export.quantize import find_targets, load_onnx, remove_unused_constants

    model = load_onnx(fp32_path)
    graph = model.graph
    replaced = {}
    for target in find_targets(graph)[0]:
        if target.kind != "matmul" or target.node.op_type != "MatMul":
            continue
        (k, n), x, y = target.weight.shape, target.node.input[0], target.node.output[0]
        if n == k:
            replaced[y] = [helper.make_node("Identity", [x], [y])]
        elif n % k == 0:
            replaced[y] = [helper.make_node("Concat", [x] * (n // k), [y], axis=-1)]
        elif n < k:
            names = [f"{y}_free_{part}" for part in ("start", "end", "axis")]
            graph.initializer.extend(numpy_helper.from_array(np.array([value], np.int64), name)
                                     for name, value in zip(names, (0, n, -1)))
            replaced[y] = [helper.make_node("Slice", [x, *names], [y])]
        else:
            raise ValueError(f"{target.name}: no copy gives width {n} from {k}")
    nodes = [new for node in graph.node for new in replaced.get(node.output[0], [copy.deepcopy(node)])]
    del graph.node[:]  # (the kept nodes are copies: the protobuf may reuse the removed ones' memory)
    graph.node.extend(nodes)
    remove_unused_constants(graph)
    onnx.save(model, str(out_path))
    return out_path


def time_encoders(
    encoders: dict[K, Encoder], texts: list[str], batch_size: int, rounds: int
) -> dict[K, tuple[float, float]]:
    """(texts per wall second, texts per CPU second) per encoder.

    Each figure is the median over ``rounds`` passes over ``texts``, the encoders taking turns
    within each round. CPU seconds are the process's (all threads): on a machine shared with other
    jobs they measure the work a variant needs, when wall time also measures the neighbours.
    """
    for encoder in encoders.values():
        encoder.encode(texts[: 2 * batch_size], batch_size)
    wall: dict[K, list[float]] = {key: [] for key in encoders}
    cpu: dict[K, list[float]] = {key: [] for key in encoders}
    for _ in range(rounds):
        for key, encoder in encoders.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            encoder.encode(texts, batch_size)
            wall[key].append(time.perf_counter() - start_wall)
            cpu[key].append(time.process_time() - start_cpu)
    return {
        key: (len(texts) / statistics.median(wall[key]), len(texts) / statistics.median(cpu[key]))
        for key in encoders
    }


def op_profile(path: Path, tokenizer: Tokenizer, texts: list[str], batch_size: int, threads: int,
               folder: Path, max_tokens: int | None = None) -> dict[str, float]:
    """Share of ONNX Runtime's kernel time per operator type (``extended`` level), largest first."""
    encoder = make_encoder(path, tokenizer, "extended", threads, profile_prefix=str(folder / "profile"),
                           max_tokens=max_tokens)
    encoder.encode(texts, batch_size)
    trace = Path(encoder.session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    times: Counter = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["args"]["op_name"]] += event["dur"]
    total = sum(times.values()) or 1
    return {op: duration / total for op, duration in times.most_common()}


def parse_workloads(spec: str, parser: argparse.ArgumentParser) -> dict[str, int]:
    """``"queries=500,items=500"`` -> ``{"queries": 500, "items": 500}``; a bad item is a usage error."""
    from tastemap.bench.workloads import WORKLOADS

    sizes = {}
    for item in spec.split(","):
        name, _, count = (part.strip() for part in item.partition("="))
        if name not in WORKLOADS or not count.isdigit() or int(count) < 1:
            parser.error(f"--workloads item {item!r} should be NAME=COUNT with NAME in {list(WORKLOADS)} and COUNT >= 1")
        sizes[name] = int(count)
    return sizes


def main(argv: list[str] | None = None) -> None:
    from tastemap.bench.workloads import make_workloads

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fp32", type=Path, help="fp32 ONNX model with tokenizer.json beside it")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="texts per timed batch (at most, with --batch-tokens)")
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="cut timed batches by padded tokens as the runtime does (its CPU default: 512)")
    parser.add_argument("--movies", type=int, default=200, help="extra MovieLens texts for the quality figures")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="basic,extended,all")
    parser.add_argument("--quality-level", default="extended", choices=sorted(LEVELS))
    parser.add_argument("--max-seq-len", type=int, default=None,
                        help="truncation length (default: the package manifest's beside the model, else 256)")
    parser.add_argument("--workloads", default="queries=500,items=500,long=48",
                        help="timed workloads and their number of texts")
    parser.add_argument("--json", type=Path, help="write every figure, with this CPU, to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = parse_workloads(args.workloads, parser)
    if args.batch_tokens is not None and args.batch_tokens < 1:
        parser.error(f"--batch-tokens {args.batch_tokens} should be >= 1")

    manifest = args.fp32.parent / "manifest.json"
    if args.max_seq_len is None:
        args.max_seq_len = json.loads(manifest.read_text())["max_seq_len"] if manifest.is_file() else 256
    tokenizer = Tokenizer.from_file(str(args.fp32.parent / "tokenizer.json"))
    tokenizer.enable_truncation(args.max_seq_len)
    tokenizer.no_padding()
    texts = make_texts(args.movies, args.seed)
    workloads = make_workloads(tokenizer, tuple(sizes), sizes, args.seed)
    levels = [level.strip() for level in args.levels.split(",")]
    quality: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        variants = make_variants(args.fp32, Path(folder))
        reference = make_encoder(args.fp32, tokenizer, args.quality_level, args.threads).encode(
            texts, args.batch_size
        )
        for name, path in variants.items():
            encoder = make_encoder(path, tokenizer, args.quality_level, args.threads)
            vectors = encoder.encode(texts, args.batch_size)
            cosine = (vectors * reference).sum(axis=1)
            alone = encoder.encode(texts[:64], 1)
            batched = encoder.encode(texts[:64], 64)
            quality[name] = {
                "size_mb": path.stat().st_size / 1e6,
                "mean_cosine": float(cosine.mean()),
                "min_cosine": float(cosine.min()),
                "top10_overlap": top10_overlap(reference, vectors),
                "pair_spearman": pair_spearman(reference, vectors),
                "batch_invariance_min_cosine": float((alone * batched).sum(axis=1).min()),
            }
        timed = {**variants, CEILING: products_free(args.fp32, Path(folder) / "products_free.onnx")}
        encoders = {
            (name, level): make_encoder(path, tokenizer, level, args.threads, max_tokens=args.batch_tokens)
            for name, path in timed.items()
            for level in levels
        }
        speed = {
            workload.name: time_encoders(encoders, sorted(workload.texts, key=len), args.batch_size, args.rounds)
            for workload in workloads.values()
        }
        chosen = f"int8 per-token {DEFAULT_SCHEME}"
        profile = op_profile(variants[chosen], tokenizer, sorted(workloads["items"].texts, key=len)
                             if "items" in workloads else texts, args.batch_size, args.threads, Path(folder),
                             args.batch_tokens)

    cpu = cpu_info()
    batching = f"batches of {args.batch_size}" + (f" within {args.batch_tokens} tokens" if args.batch_tokens else "")
    print_table(
        f"int8 quality vs fp32 ({len(texts)} texts, batches of {args.batch_size}, "
        f"graph optimization {args.quality_level}; {cpu.model}, int8 ISA class {cpu.isa})",
        ["variant", "size MB", "mean cos", "min cos", "top-10 overlap", "pair Spearman", "alone vs batch-64 min cos"],
        [[name, f"{q['size_mb']:.1f}", f"{q['mean_cosine']:.5f}", f"{q['min_cosine']:.5f}",
          f"{q['top10_overlap']:.3f}", f"{q['pair_spearman']:.5f}", f"{q['batch_invariance_min_cosine']:.6f}"]
         for name, q in quality.items()],
    )
    for workload in workloads.values():
        for index, unit in enumerate(("wall second", "CPU second")):
            base = speed[workload.name]["fp32", levels[0]][index]
            print_table(
                f"{workload.name} ({len(workload.texts)} texts, {workload.mean_tokens:.0f} tokens on average): texts "
                f"per {unit} at {args.threads} intra-op threads, {batching} (median of "
                f"{args.rounds} interleaved rounds; x = ratio to fp32 at {levels[0]}; int8 ISA class {cpu.isa})",
                ["variant", *levels],
                [[name, *(f"{speed[workload.name][name, level][index]:.1f} "
                          f"(x{speed[workload.name][name, level][index] / base:.2f})" for level in levels)]
                 for name in timed],
            )
    print_table(f"operator profile of {chosen} (extended, item texts): share of kernel time",
                ["operator", "share"], [[op, f"{share:.1%}"] for op, share in list(profile.items())[:15]])
    if args.json:
        record = {
            "cpu": cpu.to_dict(), "onnxruntime": ort.__version__, "threads": args.threads,
            "batch_size": args.batch_size, "batch_tokens": args.batch_tokens, "rounds": args.rounds,
            "model": str(args.fp32), "load_average_at_end": os.getloadavg(),
            "quality": quality,
            "workloads": {workload.name: workload.context() for workload in workloads.values()},
            "speed": {
                workload: {f"{name} @ {level}": {"texts_per_s": wall, "texts_per_cpu_s": cpu_s,
                                                 "vs_fp32": wall / figures["fp32", levels[0]][0],
                                                 "cpu_vs_fp32": cpu_s / figures["fp32", levels[0]][1]}
                           for (name, level), (wall, cpu_s) in figures.items()}
                for workload, figures in speed.items()
            },
            "profile": {"variant": chosen, "workload": "items", "share": profile},
        }
        tmp = args.json.with_name(f".{args.json.name}.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
