"""results.json as dataclasses: the one definition the run writes, the validator checks and
reports read. NumPy only, no TensorFlow.

::

    Results: {"schema_version": 1, "config": {...}, "config_hash": str, "started": str,
              "finished": str, "seconds": float,
              "environment": {"versions": {...}, "device": str, "platform": str, "cpu_count": int | null},
              "models": [ModelRecord]}
    ModelRecord: {"name", "dataset", "defense", "architecture", "baseline" (str | null),
                  "path" (saved .keras, relative to the run folder), "card" (relative),
                  "n_examples" (the first n of the test split), "clean_accuracy",
                  "training_seconds" (float | null), "curves": [CurveRecord] (at least one),
                  "worst_case": WorstCaseRecord, "checks": [Check],
                  "check_curves": {"large_eps": CurveRecord, "noise": CurveRecord,
                                   "transfer": [CurveRecord with "source" first]},
                  "examples": str | null (npz, relative), "minimal_eps": MinimalEpsRecord,
                  "per_class": [ClassRecord] (label order; aligned with worst_case.epsilons),
                  "outcomes": str (npz of per-image outcomes, relative; advrobust.results.outcome_files),
                  "paired_vs_baseline" (only for a model with a baseline): PairedVsBaseline,
                  "certified" (only for a model the config's [certified] table names): [CertifiedRecord]}
    CurveRecord: {"attack", "norm", "params", "epsilons", "robust_accuracy", "ci95_low", "ci95_high",
                  "n_examples", "clean_accuracy", "seconds",
                  "broken_by": [{label: count}] (per eps, the points broken: correct clean, not robust;
                                the ensemble "autoattack" per member, others under the attack's name)}
    WorstCaseRecord: {"params": {"attacks": [...]}, "epsilons", "robust_accuracy", "ci95_low", "ci95_high"}
    CertifiedRecord: {"method", "norm", "epsilons", "certified_accuracy", "ci95_low", "ci95_high",
                      "n_examples", "seconds", "attacked_accuracy" (the worst case on the same images)}
    Check: {"name", "passed", "detail"} (advrobust.evaluation.checks.Check)
    MinimalEpsRecord: {"attack", "norm", "values" (float | null per example), "note",
                       "params" and "seconds" (written since the run searches each example's
                       minimal eps with attacks.minimal_epsilon; absent in older files)}
    ClassRecord: {"label", "n_examples", "clean_accuracy", "robust_accuracy", "ci95_low", "ci95_high"}
    PairedVsBaseline: {"baseline", "n_examples", "method",
                       "rows": [{"eps" (null: clean), "baseline", "defended", "difference", "ci95_low",
                                 "ci95_high", "only_baseline", "only_defended", "p_value"}]}

Accuracies are fractions in [0, 1]; intervals are 95% Wilson intervals, except in
``paired_vs_baseline`` (a 95% interval of the difference, in [-1, 1]). Each record's
``to_dict`` gives its JSON object with the keys in the order above, so a document read
and written again is the same text.

Reading (:meth:`Results.from_dict`, :func:`read`) is strict by default: every field the
run writes must be there with the right type and range, else :class:`SchemaError` names
its path (``models[1].curves[0].robust_accuracy: 1.2 is not a fraction in [0, 1]``).
``strict=False`` reads results.json files of older versions of schema 1, written before
the run kept per-image outcomes or counted the points each attack broke: a model's missing
``per_class`` or ``outcomes``, or a curve's missing ``broken_by``, then reads as None, and
:attr:`Results.notes` says so. Lenient reading fills in nothing else:
a field every version wrote that is missing or malformed is an error in both modes,
because a report that silently dropped it would show numbers nobody can trust.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from advrobust.evaluation.checks import Check

SCHEMA_VERSION = 1
NEWER_MODEL_FIELDS = ("per_class", "outcomes")  # missing in older results.json; allowed with strict=False
NEWER_CURVE_FIELDS = ("broken_by",)  # the same, for a curve
_TOLERANCE = 1e-12
_T = TypeVar("_T")


class SchemaError(ValueError):
    """results.json does not follow the schema; the message starts with the path of the problem."""


def _path(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SchemaError(f"{where or 'results.json'}: expected an object, got {type(value).__name__}")
    return value


def _field(raw: dict[str, Any], key: str, where: str, read: Callable[[Any, str], _T]) -> _T:
    if key not in raw:
        raise SchemaError(f"{where or 'results.json'}: missing {key!r}")
    return read(raw[key], _path(where, key))


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"{where}: expected str, got {value!r}")
    return value


def _optional(read: Callable[[Any, str], _T]) -> Callable[[Any, str], _T | None]:
    return lambda value, where: None if value is None else read(value, where)


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SchemaError(f"{where}: expected int, got {value!r}")
    return value


def _count(value: Any, where: str) -> int:
    if _integer(value, where) < 0:
        raise SchemaError(f"{where}: {value} is negative")
    return value


def _real(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise SchemaError(f"{where}: expected a finite number, got {value!r}")
    return value


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise SchemaError(f"{where}: {value!r} is not a fraction in [0, 1]")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(f"{where}: expected bool, got {value!r}")
    return value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SchemaError(f"{where}: expected an object, got {value!r}")
    return value


def _list(read: Callable[[Any, str], _T]) -> Callable[[Any, str], list[_T]]:
    def read_list(value: Any, where: str) -> list[_T]:
        if not isinstance(value, list):
            raise SchemaError(f"{where}: expected a list, got {value!r}")
        return [read(item, _path(where, index)) for index, item in enumerate(value)]

    return read_list


def _accuracies(raw: dict[str, Any], where: str, length: int,
                value_key: str = "robust_accuracy") -> dict[str, list[float]]:
    """``value_key`` and its interval: ``length`` fractions each, the value inside."""
    read = {key: _field(raw, key, where, _list(_fraction)) for key in (value_key, "ci95_low", "ci95_high")}
    for key, values in read.items():
        if len(values) != length:
            raise SchemaError(f"{_path(where, key)}: {len(values)} values for {length} epsilons")
    for low, value, high in zip(read["ci95_low"], read[value_key], read["ci95_high"]):
        if not low - _TOLERANCE <= value <= high + _TOLERANCE:
            raise SchemaError(f"{where}: interval [{low}, {high}] does not contain {value}")
    return read


def _floats(values: Any) -> list[float]:
    """NumPy arrays and scalars as plain Python floats, for JSON."""
    return [float(value) for value in values]


def _broken_by(raw: dict[str, Any], where: str, accuracies: dict[str, list[float]], n: int,
               clean_accuracy: float) -> list[dict[str, int]]:
    """``broken_by``: per eps ``{label: count}``, the counts adding up to the correct-clean
    points minus the robust ones (as the curve's accuracies give them)."""
    counts = _field(raw, "broken_by", where, _list(lambda value, at: {
        label: _count(count, _path(at, label)) for label, count in _mapping(value, at).items()}))
    where = _path(where, "broken_by")
    if len(counts) != len(accuracies["robust_accuracy"]):
        raise SchemaError(f"{where}: {len(counts)} entries for {len(accuracies['robust_accuracy'])} epsilons")
    for index, (eps_counts, robust) in enumerate(zip(counts, accuracies["robust_accuracy"])):
        broken = round((clean_accuracy - robust) * n)
        if sum(eps_counts.values()) != broken:
            raise SchemaError(f"{_path(where, index)}: the counts add up to {sum(eps_counts.values())}, but "
                              f"{broken} of the {n} examples were correct clean and not robust")
    return counts


@dataclass(frozen=True)
class CurveRecord:
    """Robust accuracy against eps under one attack.

    :class:`advrobust.evaluation.Curve` without its per-example masks.

    Attributes:
        attack: The attack's name.
        norm: Its norm (``"inf"`` or ``"l2"``).
        params: Its parameters besides ``eps`` and ``norm``.
        epsilons: The K radii, in the order evaluated.
        robust_accuracy: K fractions in [0, 1].
        ci95_low: The lower ends of the 95% Wilson intervals, K fractions.
        ci95_high: The upper ends of the 95% Wilson intervals, K fractions.
        n_examples: The test images attacked.
        clean_accuracy: Their clean accuracy, in [0, 1].
        seconds: The attack's compute time.
        source: For a transfer check, the model the attack was computed on (None otherwise).
        broken_by: Per eps, the points broken (correct clean, not robust) as ``{label:
            count}``: for the ensemble ``"autoattack"`` per member (the one that broke the
            point first), else ``{attack: count}``. None only in an older results.json
            read with ``strict=False``.
    """

    attack: str
    norm: str
    params: dict[str, Any]
    epsilons: list[float]
    robust_accuracy: list[float]
    ci95_low: list[float]
    ci95_high: list[float]
    n_examples: int
    clean_accuracy: float
    seconds: float
    source: str | None = None
    broken_by: list[dict[str, int]] | None = None

    @classmethod
    def of(cls, curve: Any, source: str | None = None) -> CurveRecord:
        """The record of an :class:`advrobust.evaluation.Curve` (its masks are left out).

        Args:
            curve: The curve.
            source: For a transfer check, the model the attack was computed on.

        Returns:
            The record, arrays as lists of Python floats, counts as ints.
        """
        return cls(attack=curve.attack, norm=curve.norm, params=curve.params, epsilons=_floats(curve.epsilons),
                   robust_accuracy=_floats(curve.robust_accuracy), ci95_low=_floats(curve.ci95_low),
                   ci95_high=_floats(curve.ci95_high), n_examples=int(curve.n_examples),
                   clean_accuracy=float(curve.clean_accuracy), seconds=float(curve.seconds), source=source,
                   broken_by=[{str(label): int(count) for label, count in counts.items()}
                              for counts in curve.broken_by])

    @classmethod
    def from_dict(cls, raw: Any, where: str, *, transfer: bool = False) -> CurveRecord:
        """Read one curve from its JSON object.

        Args:
            raw: The parsed JSON object.
            where: Its path in results.json, for error messages (e.g. ``"models[0].worst_case"``).
            transfer: The curve is a transfer check's: it must name its ``source``.

        Returns:
            The record.

        Raises:
            SchemaError: A field is missing or malformed, or the ``broken_by`` counts do not
                add up to the correct-clean points minus the robust ones; the message starts
                with its path. A missing ``broken_by`` reads as None (the model's reader
                decides whether that is allowed).
        """
        raw = _object(raw, where)
        epsilons = _field(raw, "epsilons", where, _list(_real))
        accuracies = _accuracies(raw, where, len(epsilons))
        n_examples = _field(raw, "n_examples", where, _count)
        clean_accuracy = _field(raw, "clean_accuracy", where, _fraction)
        return cls(attack=_field(raw, "attack", where, _text), norm=_field(raw, "norm", where, _text),
                   params=_field(raw, "params", where, _mapping), epsilons=epsilons, **accuracies,
                   n_examples=n_examples, clean_accuracy=clean_accuracy, seconds=_field(raw, "seconds", where, _real),
                   source=_field(raw, "source", where, _text) if transfer else None,
                   broken_by=_broken_by(raw, where, accuracies, n_examples, clean_accuracy)
                   if "broken_by" in raw else None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the schema's order.

        Returns:
            The curve's fields, ``source`` first when there is one, ``broken_by`` last
            when set.
        """
        return {**({} if self.source is None else {"source": self.source}), "attack": self.attack,
                "norm": self.norm, "params": self.params, "epsilons": self.epsilons,
                "robust_accuracy": self.robust_accuracy, "ci95_low": self.ci95_low, "ci95_high": self.ci95_high,
                "n_examples": self.n_examples, "clean_accuracy": self.clean_accuracy, "seconds": self.seconds,
                **({} if self.broken_by is None else {"broken_by": self.broken_by})}


@dataclass(frozen=True)
class WorstCaseRecord:
    """Per example and eps robust under every attack; ``params["attacks"]`` names them.

    Attributes:
        params: ``{"attacks": [names]}``.
        epsilons: The K radii.
        robust_accuracy: K fractions in [0, 1].
        ci95_low: The lower ends of the 95% Wilson intervals.
        ci95_high: The upper ends of the 95% Wilson intervals.
    """

    params: dict[str, Any]
    epsilons: list[float]
    robust_accuracy: list[float]
    ci95_low: list[float]
    ci95_high: list[float]

    @classmethod
    def of(cls, worst: Any) -> WorstCaseRecord:
        """The record of :func:`advrobust.evaluation.worst_case`'s curve.

        Args:
            worst: The worst-case curve.

        Returns:
            The record, arrays as lists of Python floats.
        """
        return cls(params=worst.params, epsilons=_floats(worst.epsilons),
                   robust_accuracy=_floats(worst.robust_accuracy), ci95_low=_floats(worst.ci95_low),
                   ci95_high=_floats(worst.ci95_high))

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> WorstCaseRecord:
        """Read the worst case from its JSON object.

        Args:
            raw: The parsed JSON object.
            where: Its path in results.json, for error messages (e.g. ``"models[0].worst_case"``).

        Returns:
            The record.

        Raises:
            SchemaError: A field is missing or malformed; the message starts with its path.
        """
        raw = _object(raw, where)
        epsilons = _field(raw, "epsilons", where, _list(_real))
        return cls(params=_field(raw, "params", where, _mapping), epsilons=epsilons,
                   **_accuracies(raw, where, len(epsilons)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the schema's order.

        Returns:
            ``params``, ``epsilons``, ``robust_accuracy`` and its interval.
        """
        return {"params": self.params, "epsilons": self.epsilons, "robust_accuracy": self.robust_accuracy,
                "ci95_low": self.ci95_low, "ci95_high": self.ci95_high}


@dataclass(frozen=True)
class CertifiedRecord:
    """Verified accuracy against eps under one bound method, beside the attacks' worst case.

    Attributes:
        method: The bound method (``"ibp"`` or ``"crown_ibp"``).
        norm: Its norm.
        epsilons: The K radii.
        certified_accuracy: K fractions: the share certified, a lower bound of robust accuracy.
        ci95_low: The lower ends of the 95% Wilson intervals.
        ci95_high: The upper ends of the 95% Wilson intervals.
        n_examples: The test images certified (the model's first n).
        seconds: The bounds' compute time.
        attacked_accuracy: K fractions: the worst case over the attacks on the same
            images, an upper bound. The bracket's width is ``attacked - certified``.
    """

    method: str
    norm: str
    epsilons: list[float]
    certified_accuracy: list[float]
    ci95_low: list[float]
    ci95_high: list[float]
    n_examples: int
    seconds: float
    attacked_accuracy: list[float]

    @classmethod
    def of(cls, curve: Any, rows: Sequence[Any]) -> CertifiedRecord:
        """The record of a verified-accuracy curve and its bracket.

        Args:
            curve: A curve of :func:`advrobust.evaluation.certified.certified_curve`.
            rows: :func:`advrobust.evaluation.certified.bracket` of it and the worst case.

        Returns:
            The record, arrays as lists of Python floats.
        """
        return cls(method=curve.attack, norm=curve.norm, epsilons=_floats(curve.epsilons),
                   certified_accuracy=_floats(curve.robust_accuracy), ci95_low=_floats(curve.ci95_low),
                   ci95_high=_floats(curve.ci95_high), n_examples=int(curve.n_examples), seconds=float(curve.seconds),
                   attacked_accuracy=[float(row.attacked) for row in rows])

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> CertifiedRecord:
        """Read one verified-accuracy curve from its JSON object.

        Args:
            raw: The parsed JSON object.
            where: Its path in results.json, for error messages.

        Returns:
            The record.

        Raises:
            SchemaError: A field is missing or malformed, or a list's length is not the
                number of epsilons; the message starts with its path.
        """
        raw = _object(raw, where)
        epsilons = _field(raw, "epsilons", where, _list(_real))
        attacked = _field(raw, "attacked_accuracy", where, _list(_fraction))
        if len(attacked) != len(epsilons):
            raise SchemaError(f"{_path(where, 'attacked_accuracy')}: {len(attacked)} values for {len(epsilons)} "
                              f"epsilons")
        return cls(method=_field(raw, "method", where, _text), norm=_field(raw, "norm", where, _text),
                   epsilons=epsilons, **_accuracies(raw, where, len(epsilons), "certified_accuracy"),
                   n_examples=_field(raw, "n_examples", where, _count), seconds=_field(raw, "seconds", where, _real),
                   attacked_accuracy=attacked)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the schema's order.

        Returns:
            The record's fields.
        """
        return {"method": self.method, "norm": self.norm, "epsilons": self.epsilons,
                "certified_accuracy": self.certified_accuracy, "ci95_low": self.ci95_low, "ci95_high": self.ci95_high,
                "n_examples": self.n_examples, "seconds": self.seconds, "attacked_accuracy": self.attacked_accuracy}


@dataclass(frozen=True)
class CheckCurves:
    """The extra attacks the checks ran.

    Attributes:
        large_eps: The attack at a radius that reaches every image.
        noise: Random noise in the ball.
        transfer: Transfers from the run's other models of the same dataset, each naming
            its ``source``.
    """

    large_eps: CurveRecord
    noise: CurveRecord
    transfer: list[CurveRecord]

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> CheckCurves:
        """Read the check curves from its JSON object.

        Args:
            raw: The parsed JSON object.
            where: Its path in results.json, for error messages (e.g. ``"models[0].worst_case"``).

        Returns:
            The record.

        Raises:
            SchemaError: A field is missing or malformed; the message starts with its path.
        """
        raw = _object(raw, where)
        return cls(large_eps=_field(raw, "large_eps", where, CurveRecord.from_dict),
                   noise=_field(raw, "noise", where, CurveRecord.from_dict),
                   transfer=_field(raw, "transfer", where,
                                   _list(lambda value, at: CurveRecord.from_dict(value, at, transfer=True))))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the schema's order.

        Returns:
            ``large_eps``, ``noise`` and ``transfer`` as curve objects.
        """
        return {"large_eps": self.large_eps.to_dict(), "noise": self.noise.to_dict(),
                "transfer": [curve.to_dict() for curve in self.transfer]}


def _check(raw: Any, where: str) -> Check:
    raw = _object(raw, where)
    return Check(name=_field(raw, "name", where, _text), passed=_field(raw, "passed", where, _flag),
                 detail=_field(raw, "detail", where, _text))


@dataclass(frozen=True)
class MinimalEpsRecord:
    """Per example, the smallest eps at which an adversarial example was found (None: none was).

    Written by the run from :func:`attacks.minimal_epsilon` on the check examples (then
    ``params`` and ``seconds`` are set); older results.json hold the smallest eps of the
    grid at which the worst case fooled each example, without them.

    Attributes:
        attack: The method (``"minimal_epsilon"``, or ``"worst case over the eps grid"``).
        norm: Its norm.
        values: One eps >= 0 or None per example.
        note: How to read the values (e.g. grid points, so upper bounds).
        params: The search's settings (``steps``, ``search_steps``, ``loss``, ``seed``,
            ``n_examples``), or None in older results.json.
        seconds: The search's compute time, or None in older results.json.
    """

    attack: str
    norm: str
    values: list[float | None]
    note: str
    params: dict[str, Any] | None = None
    seconds: float | None = None

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> MinimalEpsRecord:
        """Read the minimal eps from its JSON object (``params`` and ``seconds`` may be absent).

        Args:
            raw: The parsed JSON object.
            where: Its path in results.json, for error messages (e.g. ``"models[0].worst_case"``).

        Returns:
            The record.

        Raises:
            SchemaError: A field is missing or malformed; the message starts with its path.
        """
        raw = _object(raw, where)
        return cls(attack=_field(raw, "attack", where, _text), norm=_field(raw, "norm", where, _text),
                   values=_field(raw, "values", where, _list(_optional(_real))),
                   note=_field(raw, "note", where, _text),
                   params=_field(raw, "params", where, _mapping) if "params" in raw else None,
                   seconds=_field(raw, "seconds", where, _real) if "seconds" in raw else None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the schema's order.

        Returns:
            ``attack``, ``norm``, ``values`` and ``note``; ``params`` and ``seconds`` only when set.
        """
        document = {"attack": self.attack, "norm": self.norm, "values": self.values, "note": self.note}
        if self.params is not None:
            document["params"] = self.params
        if self.seconds is not None:
            document["seconds"] = self.seconds
        return document


@dataclass(frozen=True)
class ClassRecord:
    """Clean and worst-case robust accuracy within one class.

    Attributes:
        label: The class label.
        n_examples: The test images of this class.
        clean_accuracy: Their clean accuracy, in [0, 1].
        robust_accuracy: Their worst-case robust accuracy, aligned with the model's
            ``worst_case.epsilons``.
        ci95_low: The lower ends of the 95% Wilson intervals.
        ci95_high: The upper ends of the 95% Wilson intervals.
    """

    label: int
    n_examples: int
    clean_accuracy: float
    robust_accuracy: list[float]
    ci95_low: list[float]
    ci95_high: list[float]

    @classmethod
    def from_dict(cls, raw: Any, where: str, *, length: int) -> ClassRecord:
        """Read one class from its JSON object.

        Args:
            raw: The parsed JSON object.
            where: Its path in results.json, for error messages (e.g. ``"models[0].worst_case"``).
            length: The number of the model's worst-case epsilons; each list must be as long.

        Returns:
            The record.

        Raises:
            SchemaError: A field is missing or malformed; the message starts with its path.
        """
        raw = _object(raw, where)
        return cls(label=_field(raw, "label", where, _integer), n_examples=_field(raw, "n_examples", where, _count),
                   clean_accuracy=_field(raw, "clean_accuracy", where, _fraction), **_accuracies(raw, where, length))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the schema's order.

        Returns:
            The class's fields.
        """
        return {"label": self.label, "n_examples": self.n_examples, "clean_accuracy": self.clean_accuracy,
                "robust_accuracy": self.robust_accuracy, "ci95_low": self.ci95_low, "ci95_high": self.ci95_high}


@dataclass(frozen=True)
class PairedRow:
    """A defended model against its baseline on the same images at one eps.

    Attributes:
        eps: The radius; None for clean accuracy.
        baseline: The baseline's accuracy, in [0, 1].
        defended: The defended model's accuracy, in [0, 1].
        difference: Defended minus baseline, in [-1, 1].
        ci95_low: The lower end of the paired 95% interval of the difference.
        ci95_high: The upper end of the paired 95% interval of the difference.
        only_baseline: The images only the baseline gets right.
        only_defended: The images only the defended model gets right.
        p_value: The exact McNemar p-value, in [0, 1].
    """

    eps: float | None
    baseline: float
    defended: float
    difference: float
    ci95_low: float
    ci95_high: float
    only_baseline: int
    only_defended: int
    p_value: float

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> PairedRow:
        """Read one row from its JSON object.

        Args:
            raw: The parsed JSON object.
            where: Its path in results.json, for error messages (e.g. ``"models[0].worst_case"``).

        Returns:
            The record.

        Raises:
            SchemaError: A field is missing or malformed; the message starts with its path. Also when
                the interval does not hold the difference within [-1, 1].
        """
        raw = _object(raw, where)
        row = cls(eps=_field(raw, "eps", where, _optional(_real)),
                  baseline=_field(raw, "baseline", where, _fraction),
                  defended=_field(raw, "defended", where, _fraction),
                  difference=_field(raw, "difference", where, _real),
                  ci95_low=_field(raw, "ci95_low", where, _real), ci95_high=_field(raw, "ci95_high", where, _real),
                  only_baseline=_field(raw, "only_baseline", where, _count),
                  only_defended=_field(raw, "only_defended", where, _count),
                  p_value=_field(raw, "p_value", where, _fraction))
        if not -1.0 <= row.ci95_low <= row.difference <= row.ci95_high <= 1.0:
            raise SchemaError(f"{where}: need -1 <= ci95_low <= difference <= ci95_high <= 1")
        return row

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the schema's order.

        Returns:
            The row's fields.
        """
        return {"eps": self.eps, "baseline": self.baseline, "defended": self.defended,
                "difference": self.difference, "ci95_low": self.ci95_low, "ci95_high": self.ci95_high,
                "only_baseline": self.only_baseline, "only_defended": self.only_defended, "p_value": self.p_value}


_AS_BASELINE = {"first": "baseline", "second": "defended", "only_first": "only_baseline",
                "only_second": "only_defended"}


@dataclass(frozen=True)
class PairedVsBaseline:
    """A defended model compared image by image with its baseline.

    Attributes:
        baseline: The baseline's name.
        n_examples: The test images both were evaluated on.
        method: How the interval and p-value are computed, in words.
        rows: The clean row, then one per eps both were evaluated at.
    """

    baseline: str
    n_examples: int
    method: str
    rows: list[PairedRow]

    @classmethod
    def of(cls, comparison: dict[str, Any]) -> PairedVsBaseline:
        """From :func:`advrobust.results.outcomes.compare`, the rows' fields named after the two roles.

        Args:
            comparison: The result of ``compare(baseline, defended)`` (baseline first).

        Returns:
            The record; ``first``/``second`` become ``baseline``/``defended``.
        """
        rows = [PairedRow(**{_AS_BASELINE.get(key, key): value for key, value in row.items()})
                for row in comparison["rows"]]
        return cls(baseline=comparison["first"], n_examples=comparison["n_examples"], method=comparison["method"],
                   rows=rows)

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> PairedVsBaseline:
        """Read the paired comparison from its JSON object.

        Args:
            raw: The parsed JSON object.
            where: Its path in results.json, for error messages (e.g. ``"models[0].worst_case"``).

        Returns:
            The record.

        Raises:
            SchemaError: A field is missing or malformed; the message starts with its path.
        """
        raw = _object(raw, where)
        return cls(baseline=_field(raw, "baseline", where, _text), n_examples=_field(raw, "n_examples", where, _count),
                   method=_field(raw, "method", where, _text),
                   rows=_field(raw, "rows", where, _list(PairedRow.from_dict)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the schema's order.

        Returns:
            ``baseline``, ``n_examples``, ``method`` and ``rows``.
        """
        return {"baseline": self.baseline, "n_examples": self.n_examples, "method": self.method,
                "rows": [row.to_dict() for row in self.rows]}


@dataclass(frozen=True)
class ModelRecord:
    """One model of the run and everything measured on it.

    ``per_class`` and ``outcomes`` are None only in an older results.json read with
    ``strict=False``; ``paired_vs_baseline`` is None when the model has no baseline.

    Attributes:
        name: The model's name in the run.
        dataset: Its dataset.
        defense: Its defense (``"none"`` for a plain model).
        architecture: Its architecture.
        baseline: The model it is compared with, or None.
        path: The saved .keras file, relative to the run folder.
        card: The model card, relative to the run folder.
        n_examples: The first n test images it was evaluated on (>= 1).
        clean_accuracy: Its clean accuracy, in [0, 1].
        training_seconds: Its training time, or None.
        curves: One curve per attack (at least one).
        worst_case: The worst case over the attacks.
        checks: The sanity and masking checks.
        check_curves: The extra attacks the checks ran.
        examples: The adversarial examples' .npz, relative, or None.
        minimal_eps: The per-example smallest adversarial eps.
        per_class: Per-class results in label order, holding all n examples.
        outcomes: The per-image outcomes' .npz, relative.
        paired_vs_baseline: The per-image comparison with ``baseline``.
        certified: Per bound method, the verified accuracy and the bracket (only for a
            model the run config's ``[certified]`` table names; None otherwise).
    """

    name: str
    dataset: str
    defense: str
    architecture: str
    baseline: str | None
    path: str
    card: str
    n_examples: int
    clean_accuracy: float
    training_seconds: float | None
    curves: list[CurveRecord]
    worst_case: WorstCaseRecord
    checks: list[Check]
    check_curves: CheckCurves
    examples: str | None
    minimal_eps: MinimalEpsRecord
    per_class: list[ClassRecord] | None
    outcomes: str | None
    paired_vs_baseline: PairedVsBaseline | None = None
    certified: list[CertifiedRecord] | None = None

    @classmethod
    def from_dict(cls, raw: Any, where: str, *, strict: bool = True, notes: list[str] | None = None) -> ModelRecord:
        """Read one model from its JSON object (see the module docstring for ``strict``).

        Args:
            raw: The parsed JSON object.
            where: Its path in results.json, for error messages (e.g. ``"models[0]"``).
            strict: Require ``per_class``, ``outcomes`` and each curve's ``broken_by``;
                False accepts an older model without them.
            notes: Where lenient reading appends a line for each model missing them.

        Returns:
            The record.

        Raises:
            SchemaError: A field is missing or malformed, ``n_examples`` is 0, there are
                no curves, or the classes do not hold ``n_examples``; the message starts
                with the path.
        """
        raw = _object(raw, where)
        missing = [key for key in NEWER_MODEL_FIELDS if key not in raw]
        if missing and strict:
            raise SchemaError(f"{where}: missing {missing[0]!r} (an older results.json: read it with strict=False)")
        if missing and notes is not None:
            notes.append(f"{where} ({raw.get('name')!r}): no {' or '.join(missing)}, written before the run kept "
                         f"them; `advrobust run CONFIG --out RUN --resume` adds them without attacking again")
        worst_case = _field(raw, "worst_case", where, WorstCaseRecord.from_dict)
        record = cls(
            name=_field(raw, "name", where, _text), dataset=_field(raw, "dataset", where, _text),
            defense=_field(raw, "defense", where, _text), architecture=_field(raw, "architecture", where, _text),
            baseline=_field(raw, "baseline", where, _optional(_text)), path=_field(raw, "path", where, _text),
            card=_field(raw, "card", where, _text), n_examples=_field(raw, "n_examples", where, _count),
            clean_accuracy=_field(raw, "clean_accuracy", where, _fraction),
            training_seconds=_field(raw, "training_seconds", where, _optional(_real)),
            curves=_field(raw, "curves", where, _list(CurveRecord.from_dict)), worst_case=worst_case,
            checks=_field(raw, "checks", where, _list(_check)),
            check_curves=_field(raw, "check_curves", where, CheckCurves.from_dict),
            examples=_field(raw, "examples", where, _optional(_text)),
            minimal_eps=_field(raw, "minimal_eps", where, MinimalEpsRecord.from_dict),
            per_class=None if "per_class" not in raw else _field(raw, "per_class", where, _list(
                lambda value, at: ClassRecord.from_dict(value, at, length=len(worst_case.epsilons)))),
            outcomes=None if "outcomes" not in raw else _field(raw, "outcomes", where, _text),
            paired_vs_baseline=_field(raw, "paired_vs_baseline", where, _optional(PairedVsBaseline.from_dict))
            if "paired_vs_baseline" in raw else None,
            certified=_field(raw, "certified", where, _list(CertifiedRecord.from_dict)) if "certified" in raw else None)
        record._check_totals(where)
        record._check_counted(where, strict, notes)
        return record

    def _check_counted(self, where: str, strict: bool, notes: list[str] | None) -> None:
        """Every curve has its ``broken_by`` counts, or (lenient) a note says which lack them."""
        titled = [(_path(_path(where, "curves"), index), curve) for index, curve in enumerate(self.curves)]
        checked = _path(where, "check_curves")
        titled += [(_path(checked, "large_eps"), self.check_curves.large_eps),
                   (_path(checked, "noise"), self.check_curves.noise)]
        titled += [(_path(_path(checked, "transfer"), index), curve)
                   for index, curve in enumerate(self.check_curves.transfer)]
        uncounted = [at for at, curve in titled if curve.broken_by is None]
        if uncounted and strict:
            raise SchemaError(f"{uncounted[0]}: missing {NEWER_CURVE_FIELDS[0]!r} (an older results.json: read it "
                              f"with strict=False)")
        if uncounted and notes is not None:
            notes.append(f"{where} ({self.name!r}): curves without broken_by counts, written before the run kept "
                         f"them; `advrobust run CONFIG --out RUN --resume` adds them without attacking again")

    def _check_totals(self, where: str) -> None:
        if self.n_examples < 1:
            raise SchemaError(f"{_path(where, 'n_examples')}: must be >= 1")
        if not self.curves:
            raise SchemaError(f"{_path(where, 'curves')}: empty")
        held = sum(entry.n_examples for entry in self.per_class or [])
        if self.per_class is not None and held != self.n_examples:
            raise SchemaError(f"{_path(where, 'per_class')}: the classes hold {held} examples, the model was "
                              f"evaluated on {self.n_examples}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the schema's order.

        Returns:
            The model's fields; ``per_class``, ``outcomes``, ``paired_vs_baseline`` and
            ``certified`` only when set.
        """
        document = {
            "name": self.name, "dataset": self.dataset, "defense": self.defense, "architecture": self.architecture,
            "baseline": self.baseline, "path": self.path, "card": self.card, "n_examples": self.n_examples,
            "clean_accuracy": self.clean_accuracy, "training_seconds": self.training_seconds,
            "curves": [curve.to_dict() for curve in self.curves], "worst_case": self.worst_case.to_dict(),
            "checks": [check.to_dict() for check in self.checks],
            "check_curves": self.check_curves.to_dict(), "examples": self.examples,
            "minimal_eps": self.minimal_eps.to_dict()}
        if self.per_class is not None:
            document["per_class"] = [entry.to_dict() for entry in self.per_class]
        if self.outcomes is not None:
            document["outcomes"] = self.outcomes
        if self.paired_vs_baseline is not None:
            document["paired_vs_baseline"] = self.paired_vs_baseline.to_dict()
        if self.certified is not None:
            document["certified"] = [record.to_dict() for record in self.certified]
        return document


@dataclass(frozen=True)
class Environment:
    """Where the run ran: library versions, the compute device, the platform.

    Attributes:
        versions: Library name to version.
        device: The compute device, in words.
        platform: The operating system and Python.
        cpu_count: The CPU cores, or None if unknown.
    """

    versions: dict[str, Any]
    device: str
    platform: str
    cpu_count: int | None

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Environment:
        """Read the environment from its JSON object.

        Args:
            raw: The parsed JSON object.
            where: Its path in results.json, for error messages (e.g. ``"models[0].worst_case"``).

        Returns:
            The record.

        Raises:
            SchemaError: A field is missing or malformed; the message starts with its path.
        """
        raw = _object(raw, where)
        return cls(versions=_field(raw, "versions", where, _mapping), device=_field(raw, "device", where, _text),
                   platform=_field(raw, "platform", where, _text),
                   cpu_count=_field(raw, "cpu_count", where, _optional(_count)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the schema's order.

        Returns:
            ``versions``, ``device``, ``platform`` and ``cpu_count``.
        """
        return {"versions": self.versions, "device": self.device, "platform": self.platform,
                "cpu_count": self.cpu_count}


@dataclass(frozen=True)
class Results:
    """A whole results.json.

    Attributes:
        config: The run's configuration.
        config_hash: The digest of the configuration.
        started: When the run started (ISO 8601).
        finished: When it finished (ISO 8601).
        seconds: How long it took.
        environment: Where it ran.
        models: The models, in run order.
        notes: What lenient reading found missing (never written).
    """

    config: dict[str, Any]
    config_hash: str
    started: str
    finished: str
    seconds: float
    environment: Environment
    models: list[ModelRecord]
    notes: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_dict(cls, document: Any, *, strict: bool = True) -> Results:
        """Read a parsed results.json.

        Args:
            document: the parsed JSON (a dict).
            strict: True (default): every field the run writes must be present and valid.
                False: also accept results.json of older versions, which lack a model's
                ``per_class`` and ``outcomes``; each gap becomes a line of ``notes``.

        Returns:
            The :class:`Results`.

        Raises:
            SchemaError: a field is missing or malformed; the message starts with its path.
        """
        document = _object(document, "")
        version = _field(document, "schema_version", "", _integer)
        if version != SCHEMA_VERSION:
            raise SchemaError(f"schema_version: expected {SCHEMA_VERSION}, got {version} (this advrobust reads "
                              f"version {SCHEMA_VERSION})")
        notes: list[str] = []
        models = _field(document, "models", "", _list(
            lambda value, at: ModelRecord.from_dict(value, at, strict=strict, notes=notes)))
        return cls(config=_field(document, "config", "", _mapping),
                   config_hash=_field(document, "config_hash", "", _text),
                   started=_field(document, "started", "", _text), finished=_field(document, "finished", "", _text),
                   seconds=_field(document, "seconds", "", _real),
                   environment=_field(document, "environment", "", Environment.from_dict), models=models,
                   notes=tuple(notes))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the order the run has always written them.

        Returns:
            The document, ``schema_version`` first; ``notes`` are not part of it.
        """
        return {"schema_version": SCHEMA_VERSION, "config": self.config, "config_hash": self.config_hash,
                "started": self.started, "finished": self.finished, "seconds": self.seconds,
                "environment": self.environment.to_dict(), "models": [model.to_dict() for model in self.models]}

    def to_json(self) -> str:
        """results.json's text: indented JSON, a newline at the end.

        Returns:
            The text of :meth:`to_dict`.

        Raises:
            ValueError: A number is NaN or infinite.
        """
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def validate(document: Any) -> None:
    """Check a parsed results.json strictly.

    Args:
        document: the parsed JSON.

    Raises:
        SchemaError: it does not follow schema version 1; the message names the path.
    """
    Results.from_dict(document)


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a finished `advrobust run` folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SchemaError(f"{path} is not valid JSON: {error}") from error


def read(path: str | Path, *, strict: bool = True) -> Results:
    """Read a results.json file.

    Args:
        path: the file.
        strict: see :meth:`Results.from_dict`.

    Returns:
        The :class:`Results`.

    Raises:
        FileNotFoundError: there is no such file.
        SchemaError: it is not JSON, or does not follow the schema (the message names the path).
    """
    return Results.from_dict(_load_json(Path(path)), strict=strict)


def outcome_paths(path: str | Path) -> dict[str, str | None]:
    """Each model's per-image outcomes file, as the run's results.json names it.

    Reads only ``models[i].name`` and ``models[i].outcomes``, so it also reads the
    outcomes-only results.json that scripts without TensorFlow write
    (``experiments/torch_crosscheck/evaluate.py``).

    Args:
        path: a results.json file.

    Returns:
        ``{model name: outcomes file relative to the run folder, or None for a run
        written before outcomes were kept}``, in the file's order.

    Raises:
        FileNotFoundError: there is no such file.
        SchemaError: it lacks a list of models, or a model's name or outcomes is malformed.
    """
    document = _object(_load_json(Path(path)), "")
    paths = {}
    for index, model in enumerate(_field(document, "models", "", _list(_object))):
        where = _path("models", index)
        outcomes = model.get("outcomes")
        paths[_field(model, "name", where, _text)] = _optional(_text)(outcomes, _path(where, "outcomes"))
    return paths

