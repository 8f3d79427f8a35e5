"""Compare two bench results and flag regressions of the gated figures.

Gated figures are ratios measured inside one run (see :mod:`tastemap.bench.schema`), so they
compare across runs on a shared machine; absolute figures (texts/s, ms, MiB) drift with the
machine's load and are compared only when asked (``gate_absolute``). A figure regresses when it
moves in its worse direction by more than ``max_regression`` (a fraction of the base value). A
gated figure of the base that is missing from the new result is a failure too. A gated base
figure that is not > 0 is an error (no relative change can be computed from it); such an
absolute figure is not compared, with a warning. When the two runs' int8 ISA classes differ
(AVX2, AVX-512 VNNI, AMX...), the int8 speed figures measure different kernels against different
ceilings: they are shown with the status ``other ISA`` and not gated (compare against a baseline
of the same class: ``.ci/run`` picks ``bench/baseline-<isa>.json`` when there is one).
"""

from __future__ import annotations

from dataclasses import dataclass

from tastemap.errors import InputError


@dataclass(frozen=True)
class Comparison:
    """One compared figure. ``change`` is ``new / base - 1`` (None when missing); ``status`` is
    ``ok``, ``improved``, ``regressed``, ``missing`` or ``other ISA`` (not gated, see the module
    docstring)."""

    name: str
    unit: str
    base: float
    new: float | None
    change: float | None
    status: str
    gated: bool

    @property
    def failed(self) -> bool:
        return self.status in ("regressed", "missing")


def compare_results(base: dict, new: dict, *, max_regression: float = 0.10,
                    gate_absolute: bool = False) -> tuple[list[Comparison], list[str]]:
    """Compare the gated figures of ``base`` (all figures with ``gate_absolute``) with ``new``.

    Returns ``(comparisons, warnings)``; warnings say when the two runs are not comparable
    (different thread count, CPU, quick/full mode or models).
    """
    if not 0 < max_regression < 1:
        raise InputError(f"max_regression={max_regression} should be a fraction between 0 and 1, e.g. 0.10")
    comparisons, unusable = [], []
    other_isa = base["machine"].get("cpu_isa", "unknown") != new["machine"].get("cpu_isa", "unknown")
    for name, item in sorted(base["figures"].items()):
        if not (item["gated"] or gate_absolute):
            continue
        if not item["value"] > 0:
            if item["gated"]:
                raise InputError(f"gated base figure {name!r} is {item['value']}; a change relative to it cannot be "
                                 "computed (gated figures should be > 0); re-run the baseline")
            unusable.append(f"base figure {name!r} is {item['value']}: not compared (no relative change from it)")
            continue
        other = new["figures"].get(name)
        if other is None:
            comparisons.append(Comparison(name, item["unit"], item["value"], None, None, "missing", item["gated"]))
            continue
        change = other["value"] / item["value"] - 1
        worse = -change if item["better"] == "higher" else change
        status = "regressed" if worse > max_regression else ("improved" if worse < -max_regression else "ok")
        if other_isa and _int8_speed(name):
            status = "other ISA"
        comparisons.append(Comparison(name, item["unit"], item["value"], other["value"], change, status, item["gated"]))
    return comparisons, comparability_warnings(base, new) + unusable


def comparability_warnings(base: dict, new: dict) -> list[str]:
    """Differences of setup that make the two runs hard to compare."""
    warnings = []
    checks = (
        ("threads", base["config"]["threads"], new["config"]["threads"]),
        ("quick mode", base["config"]["quick"], new["config"]["quick"]),
        ("CPU", base["machine"]["cpu_model"], new["machine"]["cpu_model"]),
        # Zen 3 and Zen 5 are both "AMD EPYC"; their int8 kernels (and int8/fp32 ratios) differ.
        ("int8 ISA", base["machine"].get("cpu_isa", "unknown"), new["machine"].get("cpu_isa", "unknown")),
        ("GPU", base["machine"]["gpu"], new["machine"]["gpu"]),
    )
    for what, left, right in checks:
        if left != right:
            warnings.append(f"{what} differs: base {left!r}, new {right!r}")
    return warnings


def _int8_speed(name: str) -> bool:
    """Whether a figure is an int8 speed figure (its value depends on the CPU's int8 kernels)."""
    return "int8" in name and "/quality/" not in name
