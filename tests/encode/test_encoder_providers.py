"""Provider and variant selection, with CUDA simulated where the machine has none."""

from __future__ import annotations

import logging
import os

import numpy as np
import onnxruntime as ort
import pytest

from tastemap.errors import DeviceError
from tastemap.runtime import Encoder
from tastemap.runtime.encode import encoder as encoder_module
from tastemap.cpu import usable_cores
from tastemap.runtime.encode.providers import CPU, CUDA, TENSORRT, Device, plan_execution

BOTH = ("fp32", "int8", "fp16")


def test_auto_without_cuda_takes_cpu_int8_and_says_why():
    plan = plan_execution("auto", "auto", BOTH, [CPU])
    assert (plan.device, plan.providers, plan.variant) == (Device.cpu, (CPU,), "int8")
    assert plan.fallback == "the CUDA execution provider is not available (providers: ['CPUExecutionProvider'])"


def test_auto_with_cuda_takes_fp16():
    plan = plan_execution("auto", "auto", BOTH, [TENSORRT, CUDA, CPU])
    assert (plan.device, plan.providers, plan.variant, plan.fallback) == (Device.cuda, (CUDA, CPU), "fp16", "")


def test_auto_variant_falls_back_to_fp32_when_missing():
    plan = plan_execution("cpu", "auto", ("fp32",), [CPU])
    assert (plan.variant, plan.fallback) == ("fp32", "the package has no int8 variant")
    plan = plan_execution("cuda", "auto", ("fp32", "int8"), [CUDA, CPU])
    assert (plan.variant, plan.fallback) == ("fp32", "the package has no fp16 variant")


def test_explicit_choices_are_kept():
    plan = plan_execution("tensorrt", "fp32", BOTH, [TENSORRT, CUDA, CPU])
    assert (plan.providers, plan.variant, plan.fallback) == ((TENSORRT, CUDA, CPU), "fp32", "")


def test_strict_cuda_without_cuda_fails_naming_what_is_available():
    with pytest.raises(DeviceError) as error:
        plan_execution("cuda", "auto", BOTH, ["AzureExecutionProvider", CPU])
    assert str(error.value) == (
        "device='cuda' needs CUDAExecutionProvider, but this onnxruntime build offers only "
        "['AzureExecutionProvider', 'CPUExecutionProvider']; install the GPU build with "
        "`pip install tastemap[gpu]` (onnxruntime-gpu) on a machine with an NVIDIA GPU, or use device='cpu'"
    )


def test_usable_cores_honours_affinity():
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.fixture
def cuda_listed_but_broken(monkeypatch):
    """CUDA is listed as available, but (on this CPU machine) it cannot attach."""
    if CUDA in ort.get_available_providers():
        pytest.skip("the CUDA provider is really installed here")
    monkeypatch.setattr(encoder_module, "available_providers", lambda: [CUDA, CPU])


def test_auto_falls_back_loudly_when_cuda_does_not_attach(tiny_package, cuda_listed_but_broken, caplog):
    with caplog.at_level(logging.WARNING, logger="tastemap.runtime.encode.encoder"):
        encoder = Encoder(tiny_package).load()
    assert (encoder.provider, encoder.variant, encoder.device) == (CPU, "int8", "cpu")
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.getMessage().startswith(
        "auto selection fell back to CPUExecutionProvider with the int8 variant: CUDAExecutionProvider did not attach"
    )


def test_strict_cuda_fails_when_cuda_does_not_attach(tiny_package, cuda_listed_but_broken):
    with pytest.raises(DeviceError, match=r"^CUDAExecutionProvider did not attach for .*model.onnx \(attached: \['CPUExecutionProvider'\]\)"):
        Encoder(tiny_package, device="cuda").load()


def _has_cuda() -> bool:
    return CUDA in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_cuda_matches_cpu(tiny_package):
    texts = ["the dark star", "comedy", "a love story in the city", "comedy"]
    gpu = Encoder(tiny_package, device="cuda", variant="fp32")
    cpu = Encoder(tiny_package, device="cpu", variant="fp32")
    assert gpu.provider == CUDA
    np.testing.assert_allclose(gpu.encode(texts), cpu.encode(texts), atol=1e-4)
