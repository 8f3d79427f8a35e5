"""Resident memory of the encoder over many batch shapes: does it stay flat?

Encodes ``--texts`` random texts (1 to ``--max-words`` words drawn from MovieLens titles, so
every batch has another shape) in calls of ``--chunk`` texts and samples the process's resident
memory after each call. Each chunk is generated just before it is encoded, so a million texts
never sit in memory at once. Prints the RSS after the first call, the highest RSS seen, and the
growth between the middle and the end of the run, which stays near zero when memory is bounded.

    python bench/encoder_memory.py --texts 20000 --variant int8 --arena on
    python bench/encoder_memory.py --texts 20000 --variant int8 --arena off
    python bench/encoder_memory.py --texts 1000000 --chunk 10000 --max-words 12
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def title_words() -> np.ndarray:
    """The distinct words of the MovieLens titles, sorted."""
    import pandas as pd

    from tastemap.runtime.io.events import MOVIELENS_DIR

    titles = pd.read_csv(Path(MOVIELENS_DIR) / "movies.csv.gz")["title"]
    return np.array(sorted({word for title in titles for word in title.split()}))


def make_texts(words: np.ndarray, start: int, n: int, max_words: int) -> list[str]:
    """Texts ``start .. start + n - 1``: distinct (numbered), 1 to ``max_words`` words each."""
    rng = np.random.default_rng(start)
    return [f"{i} " + " ".join(rng.choice(words, size=rng.integers(1, max_words + 1))) for i in range(start, start + n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=20000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--max-words", type=int, default=60)
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--arena", choices=("on", "off"), default="on")
    parser.add_argument("--model", type=Path, default=None, help="model package (default: the default model package)")
    args = parser.parse_args()

    from tastemap.bench.measure import rss_mib
    from tastemap.paths import resolve_model_dir
    from tastemap.runtime import Encoder

    encoder = Encoder(resolve_model_dir(args.model), variant=args.variant, device="cpu", cpu_arena=args.arena == "on")
    encoder.load()
    words = title_words()
    samples = []
    start = time.perf_counter()
    for offset in range(0, args.texts, args.chunk):
        encoder.encode(make_texts(words, offset, min(args.chunk, args.texts - offset), args.max_words))
        samples.append(rss_mib())
    seconds = time.perf_counter() - start
    middle = samples[len(samples) // 2]
    print(
        f"arena={args.arena} variant={encoder.variant} texts={args.texts} batches={encoder.stats.batches} "
        f"texts/s={args.texts / seconds:.1f}\n"
        f"  RSS MiB after first call {samples[0]:.0f}, peak {max(samples):.0f}, middle {middle:.0f}, "
        f"end {samples[-1]:.0f} (growth middle->end {samples[-1] - middle:+.0f})\n"
        f"  every call: {' '.join(f'{value:.0f}' for value in samples)}"
    )


if __name__ == "__main__":
    main()
