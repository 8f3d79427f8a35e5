"""Execution provider and variant selection, and ONNX Runtime session creation.

The choice is made in two steps. :func:`plan_execution` decides, from the requested device and
variant, the providers ONNX Runtime reports as available and the variants the package holds,
which providers to ask for and which ONNX file to load. :func:`create_session` builds the
session and checks, with ``session.get_providers()``, that the first provider asked for really
attached: ONNX Runtime silently drops a provider it cannot initialise (for example the CUDA
provider on a machine without a driver), and that must never go unnoticed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Sequence

from tastemap.errors import DeviceError, InputError, ModelPackageError
from tastemap.package import graph_optimization_level

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"


class Device(str, Enum):
    """Where to run the encoder. ``auto`` is CUDA when it attaches, otherwise the CPU."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"


class Variant(str, Enum):
    """Which exported ONNX file to load. ``auto`` is fp16 on a GPU and int8 on the CPU."""

    auto = "auto"
    fp32 = "fp32"
    int8 = "int8"
    fp16 = "fp16"


_PROVIDERS = {
    Device.cpu: (CPU,),
    Device.cuda: (CUDA, CPU),
    Device.tensorrt: (TENSORRT, CUDA, CPU),
}
_PREFERRED_VARIANT = {Device.cpu: "int8", Device.cuda: "fp16", Device.tensorrt: "fp16"}


@dataclass(frozen=True)
class ExecutionPlan:
    """What to load and where: the resolved device, ONNX Runtime providers and variant.

    ``fallback`` explains, in words, why ``auto`` did not get what it prefers (``""`` when it did).
    """

    device: Device
    providers: tuple[str, ...]
    variant: str
    fallback: str = ""


def available_providers() -> list[str]:
    """The execution providers of the installed onnxruntime build."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def parse_device(device: str | Device) -> Device:
    """``device`` as a :class:`Device`, or an :class:`InputError` listing the allowed values."""
    return _parse(Device, "device", device)


def parse_variant(variant: str | Variant) -> Variant:
    """``variant`` as a :class:`Variant`, or an :class:`InputError` listing the allowed values."""
    return _parse(Variant, "variant", variant)


def _parse(kind, name: str, value):
    try:
        return kind(value)
    except ValueError:
        raise InputError(f"{name}={value!r} is not one of {[item.value for item in kind]}") from None


def plan_execution(
    device: str | Device,
    variant: str | Variant,
    package_variants: Sequence[str],
    available: Sequence[str],
) -> ExecutionPlan:
    """Resolve the requested ``device`` and ``variant`` against what is installed and exported.

    ``device="auto"`` takes CUDA when the CUDA provider is available (onnxruntime-gpu), else the
    CPU; a strict ``cuda`` or ``tensorrt`` request for a provider that is not available raises
    :class:`DeviceError` naming the available ones. ``variant="auto"`` takes fp16 on a GPU and
    int8 on the CPU, or fp32 when the package lacks that variant.
    """
    device, variant = parse_device(device), parse_variant(variant)
    fallback = ""
    if device is Device.auto:
        if CUDA in available:
            device = Device.cuda
        else:
            device = Device.cpu
            fallback = f"the CUDA execution provider is not available (providers: {list(available)})"
    needed = _PROVIDERS[device][0]
    if needed not in available:
        raise DeviceError(
            f"device={device.value!r} needs {needed}, but this onnxruntime build offers only "
            f"{list(available)}; install the GPU build with `pip install tastemap[gpu]` "
            f"(onnxruntime-gpu) on a machine with an NVIDIA GPU, or use device='cpu'"
        )
    chosen = variant.value
    if variant is Variant.auto:
        chosen = _PREFERRED_VARIANT[device]
        if chosen not in package_variants:
            if "fp32" not in package_variants:
                chosen = sorted(package_variants)[0]
            else:
                chosen = "fp32"
            fallback = "; ".join(
                filter(None, [fallback, f"the package has no {_PREFERRED_VARIANT[device]} variant"])
            )
    return ExecutionPlan(device=device, providers=_PROVIDERS[device], variant=chosen, fallback=fallback)


def make_session_options(threads: int, *, cpu_arena: bool, graph_optimization: str = "basic"):
    """Session options: ``threads`` intra-op threads, one inter-op thread, sequential execution.

    ``graph_optimization`` is the level the package's manifest gives for the variant (measured
    per variant at export: ``extended`` for int8, ``basic`` for fp32).

    One inter-op thread and sequential execution keep the total number of busy threads at
    ``threads``. With ``cpu_arena`` ONNX Runtime keeps the memory of the largest batch seen for
    reuse; the encoder's token budget bounds that size.

    The intra-op threads sleep between operators instead of spinning. Spinning threads burn a core
    while they wait, and where other processes want that core they delay the thread with work: on
    a 2-core machine shared with other jobs, MiniLM int8 ran at 1.8x the texts per CPU second and
    1.9x the texts per wall second with spinning off (see docs/performance/int8.md).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = graph_optimization_level(graph_optimization)
    options.enable_cpu_mem_arena = cpu_arena
    options.enable_mem_pattern = False  # shapes change from batch to batch
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def create_session(model_path: Path, plan: ExecutionPlan, threads: int, *, cpu_arena: bool = True,
                   graph_optimization: str = "basic"):
    """An :class:`onnxruntime.InferenceSession` for ``model_path`` on ``plan.providers``.

    Raises :class:`DeviceError` when the first provider of the plan did not attach.
    """
    import onnxruntime as ort

    providers: list = []
    for name in plan.providers:
        if name == CUDA:
            providers.append((CUDA, {"device_id": 0, "arena_extend_strategy": "kSameAsRequested"}))
        else:
            providers.append(name)
    options = make_session_options(threads, cpu_arena=cpu_arena, graph_optimization=graph_optimization)
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises RuntimeError or its own Fail/InvalidGraph classes
        error = ModelPackageError if plan.device is Device.cpu else DeviceError
        raise error(
            f"onnxruntime could not create a session for {model_path} with {list(plan.providers)}: {exc}"
        ) from exc
    attached = session.get_providers()
    if plan.providers[0] not in attached:
        raise DeviceError(
            f"{plan.providers[0]} did not attach for {model_path} (attached: {attached}); check the "
            f"NVIDIA driver and CUDA libraries with `nvidia-smi`, or use device='cpu'"
        )
    return session
