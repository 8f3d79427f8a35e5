"""What the bench ran on: CPU model and SIMD flags, cores, GPU, memory, package versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from tastemap.runtime.providers import usable_cores
from tastemap.versions import installed_versions

# The flags that decide which kernels ONNX Runtime, PyTorch and faiss can use.
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm")
PACKAGES = ("tastemap", "numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "tokenizers", "torch", "transformers",
            "optimum", "optimum-onnx", "sentence-transformers", "scikit-learn", "faiss-cpu", "faiss-gpu", "cuml-cu12")


def machine_info(threads: int) -> dict:
    """CPU model, SIMD flags, usable cores, the thread count used, GPU, memory and package versions."""
    model, flags = cpu_model_and_flags()
    return {
        "cpu_model": model,
        "cpu_flags": [flag for flag in SIMD_FLAGS if flag in flags],
        "cores_usable": usable_cores(),
        "threads": threads,
        "gpu": gpu_name(),
        "memory_gib": round(_memory_bytes() / 2**30, 1),
        "load_average": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }


def load_average() -> float:
    """The 1-minute load average (runnable processes): above the core count, the machine is shared."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def cpu_model_and_flags() -> tuple[str, set[str]]:
    """``(model name, flags)`` from ``/proc/cpuinfo``; the platform's processor string elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return platform.processor() or "unknown", set()
    model, flags = "unknown", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and model == "unknown":
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def gpu_name() -> str:
    """The first NVIDIA GPU's name from ``nvidia-smi``, or ``"none"``."""
    if shutil.which("nvidia-smi") is None:
        return "none"
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "none"
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return names[0] if names else "none"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the figures (absent ones left out)."""
    return installed_versions(PACKAGES)


def _memory_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
