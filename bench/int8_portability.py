"""The int8 variant on two CPUs in one run: this machine and qemu-user's AVX2-only CPU model.

Encodes the export's validation texts with a package's fp32 and int8 files here and, in a child
process under ``qemu-x86_64 -cpu Haswell-v4`` (AVX2, FMA, no AVX-512, no VNNI: the CPUs whose
u8·s8 kernel adds pairs of products into a saturating int16), prints how far the two CPUs' vectors
are apart and each CPU's int8 parity against fp32. ``--weight-limit 127`` quantizes a copy with
weights at ±127 to show what the ±64 limit prevents. x86-64 Linux with qemu-user only.

Run: ``python -m tastemap.bench.int8_portability models/all-MiniLM-L6-v2 [--weight-limit 127]``
(minutes: the emulated CPU is slow).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tastemap.console import print_table
from tastemap.cpu import cpu_info

EMULATED_CPU = "Haswell-v4"


def encode(package: Path, int8_file: Path, out: Path) -> None:
    """Write ``fp32`` and ``int8`` vectors ``[n_texts, dim]`` of the validation texts to ``out`` (.npz)."""
    from tastemap.bench.quantization import make_encoder
    from tastemap.package import ModelPackage
    from tastemap.export.parity import validation_texts

    tokenizer = ModelPackage.load(package).load_tokenizer()
    texts = validation_texts(None)
    vectors = {name: make_encoder(path, tokenizer, level, 2).encode(texts, 32)
               for name, path, level in (("fp32", package / "model.onnx", "basic"), ("int8", int8_file, "extended"))}
    np.savez(out, **vectors)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help="model package with model.onnx and model.int8.onnx")
    parser.add_argument("--weight-limit", type=int, default=None, help="re-quantize with this weight limit")
    parser.add_argument("--encode-to", type=Path, help=argparse.SUPPRESS)  # the child's side
    parser.add_argument("--int8-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.encode_to:
        return encode(args.package, args.int8_file, args.encode_to)
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        sys.exit("error: needs qemu-x86_64 (apt-get install qemu-user) on an x86-64 Linux host")
    with tempfile.TemporaryDirectory() as folder:
        int8_file = args.package / "model.int8.onnx"
        if args.weight_limit is not None:
            from tastemap.export.quantize import quantize_int8

            int8_file = Path(folder) / "int8.onnx"
            quantize_int8(args.package / "model.onnx", int8_file, weight_limit=args.weight_limit)
        here, emulated = Path(folder) / "here.npz", Path(folder) / "emulated.npz"
        child = ["-m", "tastemap.bench.int8_portability", str(args.package), "--int8-file", str(int8_file)]
        subprocess.run([sys.executable, *child, "--encode-to", str(here)], check=True)
        subprocess.run([qemu, "-cpu", EMULATED_CPU, sys.executable, *child, "--encode-to", str(emulated)],
                       check=True, stderr=subprocess.DEVNULL)
        a, b = np.load(here), np.load(emulated)
    rows = [[name, f"{np.abs(a[name] - b[name]).max():.2e}", f"{(a[name] * b[name]).sum(1).min():.6f}"]
            for name in ("fp32", "int8")]
    print_table(f"{cpu_info().model} ({cpu_info().isa}) vs emulated {EMULATED_CPU} (avx2), {len(a['fp32'])} texts",
                ["variant", "max abs diff", "min cosine"], rows)
    parity = [[where, f"{(v['int8'] * a['fp32']).sum(1).mean():.6f}", f"{(v['int8'] * a['fp32']).sum(1).min():.6f}"]
              for where, v in ((cpu_info().isa, a), ("avx2 (emulated)", b))]
    print_table("int8 against fp32 (this machine)", ["int8 run on", "mean cosine", "min cosine"], parity)


if __name__ == "__main__":
    main()
