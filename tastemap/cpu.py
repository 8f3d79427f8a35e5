"""The running CPU: its model name and the instruction sets that decide which int8 kernels run.

ONNX Runtime picks its integer kernels by instruction set: AMX tiles, VNNI dot products (AVX-512
or the VEX-encoded AVX-VNNI), AVX-512 or AVX2 ``vpmaddubsw`` pairs, ARM64 ``sdot``/``udot``. Export
records the class its parity gate ran on, and the bench reports it beside every figure.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from functools import lru_cache

# /proc/cpuinfo flags that matter for int8 and SIMD kernels, best int8 class first.
INT8_CLASSES = (
    ("amx", "amx_int8"),
    ("avx512_vnni", "avx512_vnni"),
    ("avx_vnni", "avx_vnni"),
    ("avx512f", "avx512f"),
    ("avx2", "avx2"),
    ("arm64_i8mm", "i8mm"),
    ("arm64_dotprod", "asimddp"),
    ("arm64_neon", "asimd"),
)
# Classes whose u8·s8 kernel (vpmaddubsw) adds pairs of products into a saturating int16.
SATURATING_INT8_CLASSES = ("avx512f", "avx2")
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm")


@dataclass(frozen=True)
class CpuInfo:
    """``model``: the CPU's name; ``flags``: the :data:`SIMD_FLAGS` it has; ``isa``: its best
    int8 class from :data:`INT8_CLASSES` (``"unknown"`` where the flags cannot be read)."""

    model: str
    flags: tuple[str, ...]
    isa: str

    def to_dict(self) -> dict:
        return {"model": self.model, "isa": self.isa, "flags": list(self.flags)}


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """The running CPU, read once from ``/proc/cpuinfo`` (Linux); elsewhere the platform's
    processor string with no flags."""
    model, flags = _read_cpuinfo()
    return CpuInfo(model, tuple(f for f in SIMD_FLAGS if f in flags), int8_class(flags))


def int8_class(flags: set[str] | frozenset[str]) -> str:
    """The best int8 kernel class the flags allow, e.g. ``"avx512_vnni"`` or ``"avx2"``."""
    return next((name for name, flag in INT8_CLASSES if flag in flags), "unknown")


def _read_cpuinfo() -> tuple[str, set[str]]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return platform.processor() or platform.machine() or "unknown", set()
    model, flags = "unknown", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and model == "unknown":
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


@lru_cache(maxsize=1)
def _thread_pools():
    """The process's BLAS and OpenMP thread pools, found once (a lookup scans the loaded
    libraries: 4 ms, more than a request or an update of one user costs)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_thread(when: bool = True):
    """A context in which BLAS and OpenMP run on the calling thread only (``when`` true), for
    small work such as one user's request or update: helper threads save nothing on its products
    and keep spinning after them (a request measured 1.4x its wall time in CPU time without this,
    1.0x with it). OpenBLAS's limit is process-wide while the context is open; OpenMP's holds for
    the calling thread only, so a worker thread that wants it opens the context itself. Results do
    not depend on it."""
    return _thread_pools().limit(limits=1) if when else contextlib.nullcontext()


def usable_cores() -> int:
    """Number of CPU cores this process may run on, honouring its CPU affinity mask."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # platforms without sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1
