"""The results.json schema (version 1) and its validator.

::

    {"schema_version": 1, "config": {...}, "config_hash": str, "started": str, "finished": str,
     "seconds": float, "environment": {"versions": {...}, "device": str, "platform": str, "cpu_count": int},
     "models": [{"name", "dataset", "defense", "architecture", "baseline" (str | null),
                 "path" (saved .keras, relative to the run folder), "card" (relative),
                 "n_examples" (the first n of the test split), "clean_accuracy",
                 "training_seconds" (float | null),
                 "curves": [{"attack", "norm", "params", "epsilons", "robust_accuracy",
                             "ci95_low", "ci95_high", "n_examples", "clean_accuracy", "seconds"}],
                 "worst_case": {"epsilons", "robust_accuracy", "ci95_low", "ci95_high", "params"},
                 "checks": [{"name", "passed", "detail"}],
                 "check_curves": {"large_eps", "noise", "transfer": [...]},
                 "examples": str | null (npz, relative),
                 "minimal_eps": {"attack", "norm", "values" (float | null per example), "note"},
                 "outcomes": str (npz of per-example outcomes, relative; see advrobust.outcomes),
                 "per_class" (optional): [{"label", "n_examples", "clean_accuracy", "robust_accuracy",
                                           "ci95_low", "ci95_high"}] (worst case within each class,
                                           aligned with worst_case.epsilons),
                 "paired_vs_baseline" (only for a model with a baseline):
                     {"baseline", "n_examples", "method",
                      "rows": [{"eps" (null: clean), "baseline", "defended", "difference",
                                "ci95_low", "ci95_high", "only_baseline", "only_defended", "p_value"}]}}]}

Accuracies are fractions in [0, 1]; intervals are 95% Wilson intervals, except in
``paired_vs_baseline`` (a 95% interval of the difference, in [-1, 1]).
"""

from __future__ import annotations

import numbers
from typing import Any

SCHEMA_VERSION = 1
_TOP = {"schema_version": int, "config": dict, "config_hash": str, "environment": dict, "models": list,
        "seconds": numbers.Real}
_MODEL = {"name": str, "dataset": str, "defense": str, "architecture": str, "path": str, "n_examples": int,
          "clean_accuracy": numbers.Real, "curves": list, "worst_case": dict, "checks": list}
_CURVE = {"attack": str, "norm": str, "params": dict, "epsilons": list, "robust_accuracy": list,
          "ci95_low": list, "ci95_high": list, "seconds": numbers.Real}
_CHECK = {"name": str, "passed": bool, "detail": str}
_CLASS = {"label": int, "n_examples": int, "clean_accuracy": numbers.Real, "robust_accuracy": list,
          "ci95_low": list, "ci95_high": list}
_PAIRED = {"baseline": str, "n_examples": int, "rows": list}
_PAIRED_ROW = {"baseline": numbers.Real, "defended": numbers.Real, "difference": numbers.Real,
               "ci95_low": numbers.Real, "ci95_high": numbers.Real, "only_baseline": int, "only_defended": int,
               "p_value": numbers.Real}


class SchemaError(ValueError):
    """results.json does not follow the schema; the message gives the path of the problem."""


def _fields(document: Any, required: dict[str, type], where: str) -> None:
    if not isinstance(document, dict):
        raise SchemaError(f"{where}: expected an object, got {type(document).__name__}")
    for key, kind in required.items():
        if key not in document:
            raise SchemaError(f"{where}: missing {key!r}")
        value = document[key]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            raise SchemaError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")


def _fractions(values: list, where: str, length: int) -> None:
    if len(values) != length:
        raise SchemaError(f"{where}: {len(values)} values for {length} epsilons")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
            raise SchemaError(f"{where}: {value!r} is not a fraction in [0, 1]")


def _curve(curve: Any, where: str, required: dict[str, type]) -> None:
    _fields(curve, required, where)
    k = len(curve["epsilons"])
    for key in ("robust_accuracy", "ci95_low", "ci95_high"):
        _fractions(curve[key], f"{where}.{key}", k)
    for low, value, high in zip(curve["ci95_low"], curve["robust_accuracy"], curve["ci95_high"]):
        if not low - 1e-12 <= value <= high + 1e-12:
            raise SchemaError(f"{where}: interval [{low}, {high}] does not contain {value}")


def _paired(paired: Any, where: str) -> None:
    _fields(paired, _PAIRED, where)
    for number, row in enumerate(paired["rows"]):
        at = f"{where}.rows[{number}]"
        _fields(row, _PAIRED_ROW, at)
        _fractions([row["baseline"], row["defended"], row["p_value"]], at, 3)
        if not -1.0 <= row["ci95_low"] <= row["difference"] <= row["ci95_high"] <= 1.0:
            raise SchemaError(f"{at}: need -1 <= ci95_low <= difference <= ci95_high <= 1")


def validate(document: Any) -> None:
    """Raise :class:`SchemaError` unless ``document`` is a valid schema-1 results dict."""
    _fields(document, _TOP, "results")
    if document["schema_version"] != SCHEMA_VERSION:
        raise SchemaError(f"results.schema_version: expected {SCHEMA_VERSION}, got {document['schema_version']}")
    for index, model in enumerate(document["models"]):
        where = f"results.models[{index}]"
        _fields(model, _MODEL, where)
        _fractions([model["clean_accuracy"]], f"{where}.clean_accuracy", 1)
        if model["n_examples"] < 1:
            raise SchemaError(f"{where}.n_examples: must be >= 1")
        if not model["curves"]:
            raise SchemaError(f"{where}.curves: empty")
        for number, curve in enumerate(model["curves"]):
            _curve(curve, f"{where}.curves[{number}]", _CURVE)
        _curve(model["worst_case"], f"{where}.worst_case",
               {key: _CURVE[key] for key in ("epsilons", "robust_accuracy", "ci95_low", "ci95_high")})
        for number, check in enumerate(model["checks"]):
            _fields(check, _CHECK, f"{where}.checks[{number}]")
        if model.get("paired_vs_baseline") is not None:
            _paired(model["paired_vs_baseline"], f"{where}.paired_vs_baseline")
        if model.get("per_class") is not None:
            _per_class(model["per_class"], model, f"{where}.per_class")


def _per_class(classes: Any, model: dict, where: str) -> None:
    if not isinstance(classes, list):
        raise SchemaError(f"{where}: expected a list, got {type(classes).__name__}")
    epsilons = {"epsilons": model["worst_case"]["epsilons"]}
    for number, entry in enumerate(classes):
        at = f"{where}[{number}]"
        _fields(entry, _CLASS, at)
        _fractions([entry["clean_accuracy"]], f"{at}.clean_accuracy", 1)
        _curve({**entry, **epsilons}, at, {key: _CLASS[key] for key in ("robust_accuracy", "ci95_low", "ci95_high")})
    if sum(entry["n_examples"] for entry in classes) != model["n_examples"]:
        raise SchemaError(f"{where}: the classes hold {sum(entry['n_examples'] for entry in classes)} examples, "
                          f"the model was evaluated on {model['n_examples']}")
