"""What the report shows of a run, built from its results.json and the files it references.

:func:`load_run` reads results.json through :mod:`advrobust.results.schema` (leniently, so
a run written before per-image outcomes were kept still gets its report; see
:meth:`~advrobust.results.schema.Results.from_dict`) and adds what the report needs
beyond the file: curves as NumPy arrays sorted by eps, the training history from each
model card, the adversarial examples, the defended-vs-baseline rows. A referenced file
that cannot be read becomes a line in :attr:`Run.notes`, which the report shows; a
malformed results.json raises :class:`~advrobust.results.schema.SchemaError`. Nothing
here knows about HTML, Markdown or plotting, and nothing imports TensorFlow.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advrobust.data.catalog import class_name
from advrobust.evaluation.checks import Check
from advrobust.files import inside
from advrobust.plot import norm_title
from advrobust.results import schema
from advrobust.results.schema import PairedRow

DATASET_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


@dataclass(frozen=True)
class Series:
    """Accuracy against eps: equal-length float arrays sorted by eps.

    Attributes:
        epsilons: The radii (K,), ascending.
        accuracy: The robust accuracy at each eps (K,), fractions in [0, 1].
        ci_low: The lower ends of the 95% intervals (K,); NaN where unknown.
        ci_high: The upper ends of the 95% intervals (K,); NaN where unknown.
    """

    epsilons: np.ndarray
    accuracy: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray

    def at(self, eps: float) -> tuple[float, float, float] | None:
        """(accuracy, low, high) at ``eps`` (matched to 1e-9), or None if not evaluated there.

        Args:
            eps: The radius.

        Returns:
            The accuracy and its 95% interval at ``eps`` as floats, or None.
        """
        hits = np.flatnonzero(np.isclose(self.epsilons, eps, rtol=0.0, atol=1e-9))
        if not len(hits):
            return None
        i = hits[0]
        return float(self.accuracy[i]), float(self.ci_low[i]), float(self.ci_high[i])


@dataclass(frozen=True)
class AttackCurve:
    """One attack's robust accuracy against eps, with what it was run with.

    Attributes:
        attack: The attack's name.
        norm: The norm: ``"inf"`` or ``"l2"``.
        params: The attack's parameters besides ``eps`` and ``norm``.
        series: Robust accuracy against eps.
        n_examples: The number of test images attacked.
        seconds: The attack's compute time.
        broken_by: Per eps of ``series`` (same order), the points broken as ``{label:
            count}`` (an ensemble's members, else the attack); None in an older
            results.json.
    """

    attack: str
    norm: str
    params: dict[str, Any]
    series: Series
    n_examples: int
    seconds: float
    broken_by: list[dict[str, int]] | None = None

    def broken_at(self, eps: float) -> dict[str, int] | None:
        """The points broken at ``eps`` (matched to 1e-9), by whom.

        Args:
            eps: The radius.

        Returns:
            ``{label: count}``, or None if the curve has no counts or no such eps.
        """
        hits = np.flatnonzero(np.isclose(self.series.epsilons, eps, rtol=0.0, atol=1e-9))
        if self.broken_by is None or not len(hits):
            return None
        return self.broken_by[hits[0]]

    @property
    def label(self) -> str:
        """The attack and its norm, e.g. ``"pgd (L∞)"``."""
        return f"{self.attack} ({norm_title(self.norm)})"


@dataclass(frozen=True)
class ClassResult:
    """Clean accuracy and the worst case against eps within one class of the test images.

    Attributes:
        label: The class label.
        n_examples: The test images of this class.
        clean_accuracy: Their clean accuracy, in [0, 1].
        worst_case: Their worst-case robust accuracy against eps.
    """

    label: int
    n_examples: int
    clean_accuracy: float
    worst_case: Series


@dataclass(frozen=True)
class Examples:
    """Adversarial examples: images (M, H, W) in [0, 1], labels as ints.

    Attributes:
        x: The clean images (M, H, W), float32 (a single channel is squeezed).
        x_adv: Their adversarial versions (M, H, W).
        y: The true labels (M,), int64.
        pred_clean: The predictions on ``x`` (M,).
        pred_adv: The predictions on ``x_adv`` (M,).
        eps: The radius of the attack, or None if the file does not say.
        attack: The attack's name, or None if the file does not say.
    """

    x: np.ndarray
    x_adv: np.ndarray
    y: np.ndarray
    pred_clean: np.ndarray
    pred_adv: np.ndarray
    eps: float | None
    attack: str | None


@dataclass(frozen=True)
class MinimalEps:
    """Per-example smallest adversarial eps; ``inf`` where the attack never succeeded.

    Attributes:
        attack: The method (``"minimal_epsilon"``, or the eps grid's worst case in older runs).
        norm: Its norm.
        values: The smallest eps per example (N,), float64; ``inf`` where never fooled.
        note: How to read the values, e.g. that they are grid points, so upper bounds.
        seconds: The search's compute time, or None when results.json does not say.
    """

    attack: str
    norm: str
    values: np.ndarray
    note: str  # e.g. that values are grid points, so upper bounds
    seconds: float | None = None

    def robust_accuracy(self, eps: float) -> float:
        """The robust accuracy the values imply at ``eps``.

        That is the share of examples not fooled at or below ``eps``: an upper bound, like
        a fixed-eps attack's.

        Args:
            eps: The radius, >= 0.

        Returns:
            A fraction in [0, 1]; NaN when there are no values.
        """
        return float(np.mean(self.values > eps)) if len(self.values) else math.nan


@dataclass(frozen=True)
class Bracket:
    """Verified accuracy under one bound method beside the attacks, on the same images.

    Attributes:
        method: The bound method (``"ibp"``, ``"crown_ibp"``).
        norm: Its norm.
        n_examples: The test images certified (the model's first n).
        seconds: The bounds' compute time.
        certified: The verified accuracy and its 95% interval, sorted by eps: the lower bound.
        attacked: The worst case over the attacks on the same images, at the same sorted
            epsilons (no interval): the upper bound.
    """

    method: str
    norm: str
    n_examples: int
    seconds: float
    certified: Series
    attacked: Series


@dataclass(frozen=True)
class Model:
    """One model of the run as the report shows it.

    Attributes:
        index: The 1-based position in results.json; names figure files and anchors.
        name: The model's name in the run.
        dataset: Its dataset's name.
        defense: Its defense (``"none"`` for a plain model).
        architecture: Its architecture.
        baseline: The name of the model it is compared with, or None.
        path: Its model file, relative to the run folder.
        n_examples: The test images it was evaluated on.
        clean_accuracy: Its clean accuracy, in [0, 1].
        training_seconds: Its training time (from the model card when results.json has
            none), or None.
        curves: One curve per attack.
        worst_case: The worst case over ``worst_case_over``, against eps.
        checks: The sanity and masking checks.
        examples: Adversarial examples, or None.
        minimal_eps: The per-example smallest adversarial eps.
        history: The training history by metric, from the model card; empty when it has none.
        worst_case_over: The attacks the worst case is the minimum of.
        check_curves: ``(what it checks, curve)``: the extra attacks run for the checks.
        paired: The per-example comparison with ``baseline``, one row per eps (may be empty).
        per_class: Per-class results in label order (empty in older results.json).
        brackets: Per bound method, verified accuracy beside the attacks (empty unless the
            run config certified the model).
    """

    index: int  # 1-based position in results.json; names figure files and anchors
    name: str
    dataset: str
    defense: str
    architecture: str
    baseline: str | None
    path: str
    n_examples: int
    clean_accuracy: float
    training_seconds: float | None  # from the model card when results.json has none
    curves: list[AttackCurve]
    worst_case: Series
    checks: list[Check]
    examples: Examples | None
    minimal_eps: MinimalEps
    history: dict[str, list[float]]  # from the model card; empty when it has none
    worst_case_over: list[str]  # the attacks the worst case is the minimum of
    check_curves: list[tuple[str, AttackCurve]]  # (what it checks, curve): extra attacks run for the checks
    paired: list[PairedRow] = field(default_factory=list)  # vs ``baseline``, per example (may be empty)
    per_class: list[ClassResult] = field(default_factory=list)  # label order (empty in older results.json)
    brackets: list[Bracket] = field(default_factory=list)  # per bound method (empty unless certified)

    @property
    def failed_checks(self) -> list[Check]:
        """The checks that did not pass, in order."""
        return [check for check in self.checks if not check.passed]

    @property
    def norms(self) -> list[str]:
        """The norms of the attack curves, sorted, each once."""
        return sorted({curve.norm for curve in self.curves})

    def class_name(self, label: int) -> str:
        """The name of a class of the model's dataset.

        Args:
            label: The class label.

        Returns:
            E.g. ``"T-shirt/top"`` for Fashion-MNIST, the digit for MNIST (see
            :func:`advrobust.data.catalog.class_name`).
        """
        return class_name(self.dataset, label)


@dataclass(frozen=True)
class Delta:
    """Worst-case robust accuracy of a defended model against its baseline at one eps.

    Attributes:
        eps: The radius; None for the clean-accuracy row.
        baseline: The baseline's accuracy, in [0, 1].
        defended: The defended model's accuracy, in [0, 1].
        paired: The per-example comparison, when the run recorded it.
    """

    eps: float | None  # None: the clean-accuracy row
    baseline: float
    defended: float
    paired: PairedRow | None = None  # the per-example comparison, when the run recorded it

    @property
    def points(self) -> float:
        """Defended minus baseline, in percentage points."""
        return 100.0 * (self.defended - self.baseline)


@dataclass(frozen=True)
class Comparison:
    """A defended model against its baseline: one :class:`Delta` per eps both share.

    Attributes:
        defended: The model that names a baseline.
        baseline: The baseline, or None if the run has no model of that name.
        rows: The clean row, then one per eps both worst cases share.
        problem: Why no rows (beyond the clean one) could be computed, or None.
    """

    defended: Model
    baseline: Model | None
    rows: list[Delta]
    problem: str | None  # why no rows could be computed, or None


@dataclass
class Run:
    """A finished run as the report shows it; ``notes``: what could not be read.

    Attributes:
        run_dir: The run folder.
        config: The run's configuration, as results.json holds it.
        config_hash: The digest of the configuration.
        started: When the run started (ISO 8601).
        finished: When it finished (ISO 8601).
        seconds: How long it took.
        environment: Versions, device, platform and CPU count.
        models: The models, in the order of results.json.
        notes: What could not be read, one line each.
    """

    run_dir: Path
    config: dict[str, Any]
    config_hash: str
    started: str
    finished: str
    seconds: float
    environment: dict[str, Any]
    models: list[Model]
    notes: list[str] = field(default_factory=list)

    @property
    def datasets(self) -> list[str]:
        """Dataset names in order of first appearance."""
        return list(dict.fromkeys(model.dataset for model in self.models))

    def models_of(self, dataset: str) -> list[Model]:
        """The models on one dataset.

        Args:
            dataset: The dataset's name.

        Returns:
            Its models, in run order (empty if none).
        """
        return [model for model in self.models if model.dataset == dataset]

    @property
    def failed_checks(self) -> list[tuple[Model, Check]]:
        """``(model, check)`` for every failed check of every model, in run order."""
        return [(model, check) for model in self.models for check in model.failed_checks]

    def comparisons(self) -> list[Comparison]:
        """One :class:`Comparison` for every model that names a baseline.

        Returns:
            The comparisons in run order; one whose baseline is missing, or on another
            dataset, has no rows and says why in ``problem``.
        """
        return [_compare(model, self.models) for model in self.models if model.baseline is not None]


def dataset_title(dataset: str) -> str:
    """How the report names a dataset.

    Args:
        dataset: The dataset's name.

    Returns:
        E.g. ``"Fashion-MNIST"`` for ``"fashion_mnist"``; an unknown name as it is.
    """
    return DATASET_TITLES.get(dataset, dataset)




def load_run(run_dir: str | Path) -> Run:
    """Read ``run_dir/results.json`` and the files it references.

    Reads leniently (``strict=False``): a current results.json reads exactly as strictly,
    an older one without per-image outcomes gets notes in place of its per-class rows.

    Args:
        run_dir: a run folder.

    Returns:
        The :class:`Run`; files it references that cannot be read are notes.

    Raises:
        FileNotFoundError: there is no results.json.
        SchemaError: results.json is not JSON or does not follow the schema (a ValueError).
    """
    run_dir = Path(run_dir)
    results = schema.read(run_dir / "results.json", strict=False)
    notes = list(results.notes)
    models = [_model(index, record, run_dir, notes) for index, record in enumerate(results.models, start=1)]
    return Run(run_dir=run_dir, config=results.config, config_hash=results.config_hash, started=results.started,
               finished=results.finished, seconds=results.seconds, environment=results.environment.to_dict(),
               models=models, notes=notes)


def _compare(defended: Model, models: list[Model]) -> Comparison:
    matches = [model for model in models if model.name == defended.baseline and model is not defended]
    if not matches:
        return Comparison(defended, None, [], f"baseline {defended.baseline!r} is not among the models of this run")
    baseline = matches[0]
    if baseline.dataset != defended.dataset:
        return Comparison(defended, baseline, [], f"baseline is on {baseline.dataset}, the defended model on "
                                                  f"{defended.dataset}")
    rows = [Delta(None, baseline.clean_accuracy, defended.clean_accuracy, _paired_at(defended, None))]
    for eps in defended.worst_case.epsilons:
        base = baseline.worst_case.at(float(eps))
        mine = defended.worst_case.at(float(eps))
        if base is not None and mine is not None:
            rows.append(Delta(float(eps), base[0], mine[0], _paired_at(defended, float(eps))))
    problem = None if len(rows) > 1 else "the two worst-case curves share no epsilon"
    return Comparison(defended, baseline, rows, problem)


def _paired_at(model: Model, eps: float | None) -> PairedRow | None:
    for row in model.paired:
        if (eps is None) == (row.eps is None) and (eps is None or math.isclose(row.eps, eps, abs_tol=1e-9)):
            return row
    return None


def _paired(record: schema.ModelRecord, where: str, notes: list[str]) -> list[PairedRow]:
    paired = record.paired_vs_baseline
    if paired is None:
        return []
    if paired.baseline != record.baseline:
        notes.append(f"{where}: its paired comparison is with {paired.baseline!r}, not its baseline "
                     f"{record.baseline!r}; left out")
        return []
    return list(paired.rows)


def _model(index: int, record: schema.ModelRecord, run_dir: Path, notes: list[str]) -> Model:
    where = f"model {record.name!r}"
    card = _load_card(run_dir, record.card, where, notes)
    training_seconds = record.training_seconds
    if training_seconds is None:
        training_seconds = _float(card.get("training_seconds"))
    worst_case = _series(record.worst_case.epsilons, record.worst_case)
    return Model(index=index, name=record.name, dataset=record.dataset, defense=record.defense,
                 architecture=record.architecture, baseline=record.baseline, path=record.path,
                 n_examples=record.n_examples, clean_accuracy=record.clean_accuracy,
                 training_seconds=training_seconds, curves=[_curve(curve) for curve in record.curves],
                 worst_case=worst_case, checks=list(record.checks),
                 examples=_load_examples(run_dir, record.examples, where, notes),
                 minimal_eps=_minimal_eps(record.minimal_eps), history=_history(card),
                 worst_case_over=[str(attack) for attack in record.worst_case.params.get("attacks", [])],
                 check_curves=_titled_check_curves(record.check_curves), paired=_paired(record, where, notes),
                 per_class=sorted((ClassResult(entry.label, entry.n_examples, entry.clean_accuracy,
                                               _series(record.worst_case.epsilons, entry))
                                   for entry in record.per_class or []), key=lambda result: result.label),
                 brackets=[_bracket(certified) for certified in record.certified or []])


def _bracket(record: schema.CertifiedRecord) -> Bracket:
    order = np.argsort(np.asarray(record.epsilons, dtype=np.float64), kind="stable")  # as _series sorts
    attacked = np.asarray(record.attacked_accuracy, dtype=np.float64)[order]
    unknown = np.full(len(order), np.nan)
    return Bracket(method=record.method, norm=record.norm, n_examples=record.n_examples, seconds=record.seconds,
                   certified=_series(record.epsilons, record, "certified_accuracy"),
                   attacked=Series(np.asarray(record.epsilons, dtype=np.float64)[order], attacked, unknown, unknown))


def _titled_check_curves(check_curves: schema.CheckCurves) -> list[tuple[str, AttackCurve]]:
    """(what it checks, curve) for each extra attack the checks ran."""
    titled = [("large eps", _curve(check_curves.large_eps)), ("noise", _curve(check_curves.noise))]
    titled += [(f"transfer from {curve.source}", _curve(curve)) for curve in check_curves.transfer]
    return titled


def _curve(record: schema.CurveRecord) -> AttackCurve:
    order = np.argsort(np.asarray(record.epsilons, dtype=np.float64), kind="stable")  # as _series sorts
    broken_by = None if record.broken_by is None else [record.broken_by[index] for index in order]
    return AttackCurve(attack=record.attack, norm=record.norm, params=record.params,
                       series=_series(record.epsilons, record), n_examples=record.n_examples, seconds=record.seconds,
                       broken_by=broken_by)


def _series(epsilons: list[float], accuracies: Any, value: str = "robust_accuracy") -> Series:
    """``accuracies``' ``value`` and interval against ``epsilons``, sorted by eps."""
    epsilons = np.asarray(epsilons, dtype=np.float64)
    order = np.argsort(epsilons, kind="stable")
    values = [np.asarray(getattr(accuracies, key), dtype=np.float64)[order]
              for key in (value, "ci95_low", "ci95_high")]
    return Series(epsilons[order], *values)


def _minimal_eps(record: schema.MinimalEpsRecord) -> MinimalEps:
    values = np.array([math.inf if value is None else value for value in record.values], dtype=np.float64)
    return MinimalEps(record.attack, record.norm, values, record.note, record.seconds)


def _load_card(run_dir: Path, relative: str, where: str, notes: list[str]) -> dict[str, Any]:
    try:
        card = json.loads(inside(run_dir, relative).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        notes.append(f"{where}: cannot read the model card {relative}: {error}")
        return {}
    return card if isinstance(card, dict) else {}


def _history(card: dict[str, Any]) -> dict[str, list[float]]:
    history = card.get("history")
    if not isinstance(history, dict):
        return {}
    out = {}
    for key, values in history.items():
        numbers = [_float(value) for value in values] if isinstance(values, list) else []
        if numbers and None not in numbers:
            out[str(key)] = numbers
    return out


def _load_examples(run_dir: Path, relative: str | None, where: str, notes: list[str]) -> Examples | None:
    if relative is None:
        return None
    try:
        # allow_pickle=False: a results folder from elsewhere must not run code on load.
        with np.load(inside(run_dir, relative), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        notes.append(f"{where}: cannot read the examples file {relative}: {error}")
        return None
    missing = [key for key in ("x", "x_adv", "y", "pred_clean", "pred_adv") if key not in arrays]
    if missing:
        notes.append(f"{where}: examples file {relative} lacks {', '.join(missing)}")
        return None
    x, x_adv = (np.asarray(arrays[key], dtype=np.float32) for key in ("x", "x_adv"))
    if x.ndim == 4 and x.shape[-1] == 1:
        x, x_adv = x[..., 0], x_adv[..., 0]
    labels = [np.asarray(arrays[key]).reshape(-1).astype(np.int64) for key in ("y", "pred_clean", "pred_adv")]
    m = len(x)
    if x.ndim != 3 or x_adv.shape != x.shape or any(len(label) != m for label in labels):
        notes.append(f"{where}: examples file {relative} has inconsistent shapes "
                     f"(x {x.shape}, x_adv {x_adv.shape})")
        return None
    eps = _float(arrays["eps"].item()) if "eps" in arrays and arrays["eps"].size == 1 else None
    attack = str(arrays["attack"].item()) if "attack" in arrays and arrays["attack"].size == 1 else None
    return Examples(x, x_adv, *labels, eps=eps, attack=attack)


def _float(value: Any) -> float | None:
    """A finite number as a float; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
