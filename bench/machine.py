"""What the bench ran on: CPU model and SIMD flags, cores, GPU, memory, package versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from tastemap.cpu import cpu_info, usable_cores
from tastemap.versions import installed_versions

PACKAGES = ("tastemap", "numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "tokenizers", "torch", "transformers",
            "optimum", "optimum-onnx", "sentence-transformers", "scikit-learn", "faiss-cpu", "faiss-gpu", "cuml-cu12")


def machine_info(threads: int) -> dict:
    """CPU model, SIMD flags and int8 ISA class, usable cores, the thread count used, GPU, memory
    and package versions."""
    cpu = cpu_info()
    return {
        "cpu_model": cpu.model,
        "cpu_flags": list(cpu.flags),
        "cpu_isa": cpu.isa,
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
