"""Read a run's ``results.json`` (schema v1) into plain objects the renderers share.

Every field of the file may be missing or malformed without stopping the report: what
cannot be read becomes ``None`` (or an empty list) and a line in :attr:`Run.notes`, which
the report shows. Nothing here knows about HTML, Markdown or plotting.
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

SCHEMA_VERSION = 1
DATASET_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
NORM_TITLES = {"inf": "L∞", "l2": "L2"}


@dataclass(frozen=True)
class Series:
    """Accuracy against eps: equal-length float arrays; CI arrays hold NaN where unknown."""

    epsilons: np.ndarray
    accuracy: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray

    def at(self, eps: float) -> tuple[float, float, float] | None:
        """(accuracy, low, high) at ``eps`` (matched to 1e-9), or None if not evaluated there."""
        hits = np.flatnonzero(np.isclose(self.epsilons, eps, rtol=0.0, atol=1e-9))
        if not len(hits):
            return None
        i = hits[0]
        return float(self.accuracy[i]), float(self.ci_low[i]), float(self.ci_high[i])


@dataclass(frozen=True)
class AttackCurve:
    attack: str
    norm: str
    params: dict[str, Any]
    series: Series
    n_examples: int | None
    seconds: float | None

    @property
    def label(self) -> str:
        return f"{self.attack} ({norm_title(self.norm)})"


@dataclass(frozen=True)
class ClassResult:
    """Clean accuracy and the worst case against eps within one class of the test images."""

    label: int
    n_examples: int
    clean_accuracy: float
    worst_case: Series


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Examples:
    """Adversarial examples: images (M, 28, 28) in [0, 1], labels as ints."""

    x: np.ndarray
    x_adv: np.ndarray
    y: np.ndarray
    pred_clean: np.ndarray
    pred_adv: np.ndarray
    eps: float | None
    attack: str | None


@dataclass(frozen=True)
class MinimalEps:
    """Per-example smallest adversarial eps; ``inf`` where the attack never succeeded."""

    attack: str
    norm: str
    values: np.ndarray
    note: str | None  # e.g. that values are grid points, so upper bounds


@dataclass(frozen=True)
class Model:
    index: int  # 1-based position in results.json; names figure files and anchors
    name: str
    dataset: str
    defense: str
    architecture: str
    baseline: str | None
    path: str | None
    n_examples: int | None
    clean_accuracy: float | None
    training_seconds: float | None
    curves: list[AttackCurve]
    worst_case: Series | None
    checks: list[Check]
    examples: Examples | None
    minimal_eps: MinimalEps | None
    history: dict[str, list[float]]
    worst_case_over: list[str]  # the attacks the worst case is the minimum of, when recorded
    check_curves: list[tuple[str, AttackCurve]]  # (what it checks, curve): extra attacks run for the checks
    paired: list[PairedRow] = field(default_factory=list)  # vs ``baseline``, per example (may be empty)
    per_class: list[ClassResult] = field(default_factory=list)  # label order (empty in older results)

    @property
    def failed_checks(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    @property
    def norms(self) -> list[str]:
        return sorted({curve.norm for curve in self.curves})

    def class_name(self, label: int) -> str:
        return class_name(self.dataset, label)


@dataclass(frozen=True)
class PairedRow:
    """A per-example comparison with the baseline at one eps (None: clean): the 95%
    interval of the difference (defended minus baseline, fractions) and the McNemar p."""

    eps: float | None
    ci_low: float
    ci_high: float
    p_value: float
    n_examples: int

    @property
    def points(self) -> tuple[float, float]:
        return 100.0 * self.ci_low, 100.0 * self.ci_high


@dataclass(frozen=True)
class Delta:
    """Worst-case robust accuracy of a defended model against its baseline at one eps."""

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
    defended: Model
    baseline: Model | None
    rows: list[Delta]
    problem: str | None  # why no rows could be computed, or None


@dataclass
class Run:
    run_dir: Path
    config: dict[str, Any]
    config_hash: str | None
    started: str | None
    finished: str | None
    seconds: float | None
    environment: dict[str, Any]
    models: list[Model]
    notes: list[str] = field(default_factory=list)

    @property
    def datasets(self) -> list[str]:
        """Dataset names in order of first appearance."""
        return list(dict.fromkeys(model.dataset for model in self.models))

    def models_of(self, dataset: str) -> list[Model]:
        return [model for model in self.models if model.dataset == dataset]

    @property
    def failed_checks(self) -> list[tuple[Model, Check]]:
        return [(model, check) for model in self.models for check in model.failed_checks]

    def comparisons(self) -> list[Comparison]:
        """One :class:`Comparison` for every model that names a baseline."""
        return [_compare(model, self.models) for model in self.models if model.baseline is not None]


def dataset_title(dataset: str) -> str:
    return DATASET_TITLES.get(dataset, dataset)


def norm_title(norm: str) -> str:
    return NORM_TITLES.get(norm, norm)


def load_run(run_dir: str | Path) -> Run:
    """Read ``run_dir/results.json`` and the files it references.

    Raises FileNotFoundError if results.json is missing and ValueError if it is not a
    JSON object; anything wrong inside it becomes a note instead.
    """
    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"no results.json in {run_dir}")
    try:
        raw = json.loads(results_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{results_path} is not valid JSON: {error}") from error
    if not isinstance(raw, dict):
        raise ValueError(f"{results_path} must hold a JSON object, got {type(raw).__name__}")
    notes: list[str] = []
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        notes.append(f"results.json has schema_version {version!r}; this report reads version "
                     f"{SCHEMA_VERSION}, so some fields may be missing")
    raw_models = raw.get("models")
    if not isinstance(raw_models, list):
        notes.append("results.json has no list of models")
        raw_models = []
    models = [_model(index, entry, run_dir, notes) for index, entry in enumerate(raw_models, start=1)
              if isinstance(entry, dict)]
    environment = raw.get("environment")
    config = raw.get("config")
    return Run(run_dir=run_dir, config=config if isinstance(config, dict) else {},
               config_hash=_text_or_none(raw.get("config_hash")), started=_text_or_none(raw.get("started")),
               finished=_text_or_none(raw.get("finished")), seconds=_float(raw.get("seconds")),
               environment=environment if isinstance(environment, dict) else {}, models=models, notes=notes)


def _compare(defended: Model, models: list[Model]) -> Comparison:
    matches = [model for model in models if model.name == defended.baseline and model is not defended]
    if not matches:
        return Comparison(defended, None, [], f"baseline {defended.baseline!r} is not among the models of this run")
    baseline = matches[0]
    if baseline.dataset != defended.dataset:
        return Comparison(defended, baseline, [], f"baseline is on {baseline.dataset}, the defended model on "
                                                  f"{defended.dataset}")
    rows = []
    if baseline.clean_accuracy is not None and defended.clean_accuracy is not None:
        rows.append(Delta(None, baseline.clean_accuracy, defended.clean_accuracy, _paired_at(defended, None)))
    if baseline.worst_case is None or defended.worst_case is None:
        which = "the baseline" if baseline.worst_case is None else "the defended model"
        return Comparison(defended, baseline, rows, f"no worst-case curve for {which}")
    robust_rows = []
    for eps in defended.worst_case.epsilons:
        base = baseline.worst_case.at(float(eps))
        mine = defended.worst_case.at(float(eps))
        if base is not None and mine is not None and math.isfinite(base[0]) and math.isfinite(mine[0]):
            robust_rows.append(Delta(float(eps), base[0], mine[0], _paired_at(defended, float(eps))))
    problem = None if robust_rows else "the two worst-case curves share no epsilon"
    return Comparison(defended, baseline, rows + robust_rows, problem)


def _paired_at(model: Model, eps: float | None) -> PairedRow | None:
    for row in model.paired:
        if (eps is None) == (row.eps is None) and (eps is None or math.isclose(row.eps, eps, abs_tol=1e-9)):
            return row
    return None


def _paired(raw: Any, baseline: str | None, where: str, notes: list[str]) -> list[PairedRow]:
    """The runner's ``paired_vs_baseline`` rows; unreadable rows become notes."""
    if not isinstance(raw, dict):
        return []
    if raw.get("baseline") != baseline:
        notes.append(f"{where}: its paired comparison is with {raw.get('baseline')!r}, not its baseline "
                     f"{baseline!r}; left out")
        return []
    out = []
    n = _int(raw.get("n_examples"))
    for entry in _list(raw.get("rows")):
        values = [_float(entry.get(key)) if isinstance(entry, dict) else None
                  for key in ("ci95_low", "ci95_high", "p_value")]
        eps = entry.get("eps") if isinstance(entry, dict) else None
        if None in values or n is None or (eps is not None and _float(eps) is None):
            notes.append(f"{where}: a paired-comparison row could not be read; left out")
            continue
        out.append(PairedRow(None if eps is None else float(eps), *values, n))
    return out


def _model(index: int, raw: dict[str, Any], run_dir: Path, notes: list[str]) -> Model:
    name = _text(raw.get("name"), f"model {index}")
    where = f"model {name!r}"
    dataset = _text(raw.get("dataset"), "unknown")
    curves = [curve for entry in _list(raw.get("curves"))
              if (curve := _curve(entry, f"{where}, curve", notes)) is not None]
    worst_case = _series(raw.get("worst_case"), "robust_accuracy", f"{where}, worst case", notes)
    if raw.get("worst_case") is None and curves:
        notes.append(f"{where} has no worst-case curve")
    checks = [Check(_text(entry.get("name"), "unnamed check"), entry.get("passed") is True,
                    _text(entry.get("detail"), ""))
              for entry in _list(raw.get("checks")) if isinstance(entry, dict)]
    card = _load_card(run_dir, raw.get("card"), where, notes)
    training_seconds = _float(raw.get("training_seconds"))
    if training_seconds is None:
        training_seconds = _float(card.get("training_seconds"))
    return Model(index=index, name=name, dataset=dataset, defense=_text(raw.get("defense"), "unknown"),
                 architecture=_text(raw.get("architecture"), "unknown"), baseline=_text_or_none(raw.get("baseline")),
                 path=_text_or_none(raw.get("path")), n_examples=_int(raw.get("n_examples")),
                 clean_accuracy=_float(raw.get("clean_accuracy")), training_seconds=training_seconds,
                 curves=curves, worst_case=worst_case, checks=checks,
                 examples=_load_examples(run_dir, raw.get("examples"), where, notes),
                 minimal_eps=_minimal_eps(raw.get("minimal_eps"), where, notes), history=_history(card),
                 worst_case_over=_worst_case_over(raw.get("worst_case")),
                 check_curves=_check_curves(raw.get("check_curves"), where, notes),
                 paired=_paired(raw.get("paired_vs_baseline"), _text_or_none(raw.get("baseline")), where, notes),
                 per_class=_per_class(raw.get("per_class"), raw.get("worst_case"), where, notes))


def _per_class(raw: Any, worst_case: Any, where: str, notes: list[str]) -> list[ClassResult]:
    if raw is None:
        return []
    epsilons = worst_case.get("epsilons") if isinstance(worst_case, dict) else None
    out = []
    for entry in _list(raw):
        fields = entry if isinstance(entry, dict) else {}
        label, n = _int(fields.get("label")), _int(fields.get("n_examples"))
        clean = _float(fields.get("clean_accuracy"))
        series = None
        if None not in (label, n, clean):
            series = _series({**fields, "epsilons": epsilons}, "robust_accuracy", f"{where}, class {label}", notes)
        if series is None:
            notes.append(f"{where}: a per-class entry could not be read; left out")
            continue
        out.append(ClassResult(label, n, clean, series))
    return sorted(out, key=lambda result: result.label)


def _worst_case_over(raw: Any) -> list[str]:
    params = raw.get("params") if isinstance(raw, dict) else None
    attacks = params.get("attacks") if isinstance(params, dict) else None
    return [str(attack) for attack in attacks] if isinstance(attacks, list) else []


def _check_curves(raw: Any, where: str, notes: list[str]) -> list[tuple[str, AttackCurve]]:
    """The runner's ``check_curves``: {"large_eps": curve, "noise": curve, "transfer": [curve + "source"]}."""
    if not isinstance(raw, dict):
        return []
    out = []
    for key, value in raw.items():
        for entry in value if isinstance(value, list) else [value]:
            curve = _curve(entry, f"{where}, check curve {key}", notes)
            if curve is None:
                continue
            title = str(key).replace("_", " ")
            if isinstance(entry, dict) and entry.get("source") is not None:
                title = f"{title} from {entry['source']}"
            out.append((title, curve))
    return out


def _curve(raw: Any, where: str, notes: list[str]) -> AttackCurve | None:
    if not isinstance(raw, dict):
        return None
    attack = _text(raw.get("attack"), "attack")
    series = _series(raw, "robust_accuracy", f"{where} {attack}", notes)
    if series is None:
        return None
    params = raw.get("params")
    return AttackCurve(attack=attack, norm=_text(raw.get("norm"), "?"),
                       params=params if isinstance(params, dict) else {}, series=series,
                       n_examples=_int(raw.get("n_examples")), seconds=_float(raw.get("seconds")))


def _series(raw: Any, key: str, where: str, notes: list[str]) -> Series | None:
    if not isinstance(raw, dict):
        return None
    epsilons = _floats(raw.get("epsilons"))
    accuracy = _floats(raw.get(key))
    if epsilons is None or accuracy is None or not len(epsilons):
        notes.append(f"{where}: no usable epsilons/{key}")
        return None
    n = min(len(epsilons), len(accuracy))
    if len(epsilons) != len(accuracy):
        notes.append(f"{where}: {len(epsilons)} epsilons but {len(accuracy)} accuracies; using the first {n}")

    def ci(name: str) -> np.ndarray:
        values = _floats(raw.get(name))
        out = np.full(n, np.nan)
        if values is not None:
            out[:min(n, len(values))] = values[:n]
        return out

    order = np.argsort(epsilons[:n], kind="stable")
    return Series(epsilons[:n][order], accuracy[:n][order], ci("ci95_low")[order], ci("ci95_high")[order])


def _minimal_eps(raw: Any, where: str, notes: list[str]) -> MinimalEps | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("values"), list):
        notes.append(f"{where}: minimal_eps has no list of values")
        return None
    values = np.array([_eps_value(value) for value in raw["values"]], dtype=np.float64)
    values = values[~np.isnan(values)]
    return MinimalEps(_text(raw.get("attack"), "attack"), _text(raw.get("norm"), "?"), values,
                      _text_or_none(raw.get("note")))


def _eps_value(value: Any) -> float:
    """A minimal eps; null, "inf" and Infinity all mean never fooled."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("inf", "infinity", "+inf")):
        return math.inf
    number = _float(value, allow_inf=True)
    return math.nan if number is None else number


def _load_card(run_dir: Path, relative: Any, where: str, notes: list[str]) -> dict[str, Any]:
    if relative is None:
        return {}
    path = run_dir / str(relative)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
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
        numbers = _floats(values)
        if numbers is not None and len(numbers):
            out[str(key)] = numbers.tolist()
    return out


def _load_examples(run_dir: Path, relative: Any, where: str, notes: list[str]) -> Examples | None:
    if relative is None:
        return None
    path = run_dir / str(relative)
    try:
        # allow_pickle=False: a results folder from elsewhere must not run code on load.
        with np.load(path, allow_pickle=False) as archive:
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


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any, default: str) -> str:
    return default if value is None else str(value)


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _float(value: Any, *, allow_inf: bool = False) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        return None
    return number


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _floats(value: Any) -> np.ndarray | None:
    """A list of numbers as float64 (None entries become NaN), or None if it is not one."""
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        number = _float(item, allow_inf=True)
        out.append(math.nan if number is None else number)
    return np.asarray(out, dtype=np.float64)
