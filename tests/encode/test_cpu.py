"""The CPU description recorded by export and bench: int8 ISA classes from /proc/cpuinfo flags."""

from __future__ import annotations

import pytest

from tastemap.cpu import INT8_CLASSES, SATURATING_INT8_CLASSES, SIMD_FLAGS, cpu_info, int8_class


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"sse4_2", "avx", "avx2", "fma"}, "avx2"),  # AMD Zen 3, Intel Haswell
        ({"avx2", "avx512f", "avx512bw"}, "avx512f"),  # Intel Skylake-SP: AVX-512 without VNNI
        ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, "avx512_vnni"),  # AMD Zen 4/5, Cascade Lake
        ({"avx2", "avx_vnni"}, "avx_vnni"),  # Intel Alder Lake
        ({"avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"}, "amx"),  # Sapphire Rapids
        ({"fp", "asimd", "asimddp", "i8mm"}, "arm64_i8mm"),  # Graviton 3
        ({"fp", "asimd", "asimddp"}, "arm64_dotprod"),
        ({"fp", "asimd"}, "arm64_neon"),
        (set(), "unknown"),
    ],
)
def test_int8_class_is_the_best_kernel_the_flags_allow(flags, expected):
    assert int8_class(flags) == expected


def test_saturating_classes_are_the_x86_ones_without_vnni():
    assert SATURATING_INT8_CLASSES == ("avx512f", "avx2")
    assert {name for name, _ in INT8_CLASSES} >= set(SATURATING_INT8_CLASSES)


def test_cpu_info_describes_this_machine():
    info = cpu_info()
    assert info.isa == int8_class(set(info.flags)) and set(info.flags) <= set(SIMD_FLAGS)
    assert info.to_dict() == {"model": info.model, "isa": info.isa, "flags": list(info.flags)}


def test_one_thread_limits_blas_while_open_and_restores_it():
    import numpy  # noqa: F401  (loads the BLAS library)
    from threadpoolctl import threadpool_info

    from tastemap.cpu import one_thread

    blas = lambda: [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]  # noqa: E731
    before = blas()
    assert before, "numpy's BLAS is not visible to threadpoolctl"
    with one_thread():
        assert blas() == [1] * len(before)
    assert blas() == before
