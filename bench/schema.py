"""The bench result document: figures with units, and its validation.

A result file is one JSON object::

    {
      "schema_version": 1,
      "created": "2026-01-01T12:00:00+00:00",
      "command": "tastemap bench --quick",
      "config": {"quick": true, "threads": 2, "suites": ["encoder", ...], "models": [...], "seed": 0},
      "machine": {"cpu_model": ..., "cpu_flags": [...], "cpu_isa": "avx512_vnni", "cores_usable": 2, "threads": 2,
                  "gpu": ..., "memory_gib": ..., "python": ..., "packages": {...}},
      "seconds": 41.2,
      "suites": {"encoder": {"seconds": 20.1, "context": {...}}, ...},
      "figures": {"encoder/all-MiniLM-L6-v2/items/tastemap-int8/texts_per_s":
                      {"value": 1234.5, "unit": "texts/s", "gated": false, "better": "higher"}, ...},
      "notes": ["cuml: not available (not installed)", ...]
    }

Figure names are ``suite/...`` paths. ``gated`` figures are ratios measured inside one run
(int8 over fp32, tastemap over sentence-transformers, fraction of the roofline ceiling, quality
retention); ``tastemap bench compare`` fails when one of them regresses. ``better`` says which
direction is an improvement.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tastemap.errors import InputError

SCHEMA_VERSION = 1
BETTER = ("higher", "lower")
_TOP_LEVEL = {
    "schema_version": int,
    "created": str,
    "command": str,
    "config": dict,
    "machine": dict,
    "seconds": (int, float),
    "suites": dict,
    "figures": dict,
    "notes": list,
}
_CONFIG = {"quick": bool, "threads": int, "suites": list, "models": list, "seed": int}
_MACHINE = {"cpu_model": str, "cpu_flags": list, "cores_usable": int, "threads": int, "gpu": str,
            "python": str, "packages": dict}
_FIGURE = {"value": (int, float), "unit": str, "gated": bool, "better": str}


def figure(value: float, unit: str, *, gated: bool = False, better: str = "higher") -> dict:
    """One measured figure: ``{"value", "unit", "gated", "better"}``."""
    if better not in BETTER:
        raise InputError(f"better={better!r} should be one of {list(BETTER)}")
    if not unit:
        raise InputError("every figure needs a unit (e.g. 'texts/s', 'ms', 'x')")
    return {"value": float(value), "unit": unit, "gated": gated, "better": better}


def validate_result(doc: object, source: str = "result") -> dict:
    """Return ``doc`` if it is a valid bench result, else raise :class:`InputError` naming the field."""
    _check_fields(doc, _TOP_LEVEL, source)
    if doc["schema_version"] != SCHEMA_VERSION:
        raise InputError(
            f"{source}: schema_version={doc['schema_version']} is not supported (this tastemap reads "
            f"{SCHEMA_VERSION}); re-run `tastemap bench` to produce a new file"
        )
    _check_fields(doc["config"], _CONFIG, f"{source}: config")
    _check_fields(doc["machine"], _MACHINE, f"{source}: machine")
    for name, suite in doc["suites"].items():
        _check_fields(suite, {"seconds": (int, float), "context": dict}, f"{source}: suites.{name}")
    for name, item in doc["figures"].items():
        where = f"{source}: figures[{name!r}]"
        _check_fields(item, _FIGURE, where)
        if not math.isfinite(item["value"]):
            raise InputError(f"{where}.value={item['value']} should be a finite number")
        if item["better"] not in BETTER:
            raise InputError(f"{where}.better={item['better']!r} should be one of {list(BETTER)}")
        if not item["unit"]:
            raise InputError(f"{where}.unit is empty; every figure needs a unit")
    for i, note in enumerate(doc["notes"]):
        if not isinstance(note, str):
            raise InputError(f"{source}: notes[{i}] should be a string, got {type(note).__name__}")
    return doc


def read_result(path: str | Path) -> dict:
    """Load and validate a result file; errors name the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; write one with `tastemap bench --out {path}`") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder; give a result file written by `tastemap bench --out FILE.json`") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InputError(f"{path} nests its JSON too deeply to be a bench result; give a result file written by "
                         "`tastemap bench --out FILE.json`") from None
    return validate_result(doc, str(path))


def write_result(doc: dict, path: str | Path) -> Path:
    """Validate ``doc`` and write it to ``path`` (temporary name, then rename)."""
    path = Path(path)
    validate_result(doc, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def _check_fields(obj: object, fields: dict, where: str) -> None:
    if not isinstance(obj, dict):
        raise InputError(f"{where} should be a JSON object, got {type(obj).__name__}")
    for key, kind in fields.items():
        if key not in obj:
            raise InputError(f"{where} lacks the field {key!r}")
        value = obj[key]
        if isinstance(value, bool) and kind is not bool:
            raise InputError(f"{where}.{key}={value!r} should be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise InputError(f"{where}.{key}={value!r} should be {_kind_name(kind)}, got {type(value).__name__}")


def _kind_name(kind) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", dict: "an object",
             list: "a list"}
    if isinstance(kind, tuple):
        return "a number" if set(kind) == {int, float} else " or ".join(names[k] for k in kind)
    return names[kind]
