"""The report's tables as plain text cells, shared by the HTML and Markdown renderers.

Cells hold raw, unescaped text; each renderer escapes for its own format.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from advrobust.evaluation.checks import CHECKS_PAGE, describe, doc_anchor, kind_of
from advrobust.plot import norm_title
from advrobust.reporting.view import Comparison, Model, Run, Series, dataset_title

Tone = Literal["good", "bad", "up", "down", "muted"]  # up/down: sign of a difference
MISSING = "—"


@dataclass(frozen=True)
class Cell:
    """One table cell: raw text and how to colour it.

    Attributes:
        text: The unescaped text.
        tone: How the renderers colour the cell (``"good"``, ``"bad"``, ``"up"``,
            ``"down"``, ``"muted"``), or None for plain.
        link: Where the text links to (unescaped), or None for no link.
    """

    text: str
    tone: Tone | None = None
    link: str | None = None


@dataclass(frozen=True)
class Table:
    """A table of cells under a header; a header of empty strings makes a key/value table.

    Attributes:
        header: The column titles.
        rows: The rows, each a list of cells as long as ``header``.
        numeric: The right-aligned columns; None: all but the first.
    """

    header: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    numeric: tuple[int, ...] | None = None  # right-aligned columns; None: all but the first

    def is_numeric(self, column: int) -> bool:
        """Whether a column is right-aligned.

        Args:
            column: The column's index, from 0.

        Returns:
            True if ``column`` is in ``numeric`` (or, when that is None, is not the first).
        """
        return column > 0 if self.numeric is None else column in self.numeric


def percent(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage.

    Args:
        value: A fraction, usually in [0, 1], or None.
        digits: The decimals shown.

    Returns:
        E.g. ``"97.3%"``; ``MISSING`` for None, NaN or infinity.
    """
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{100.0 * value:.{digits}f}%"


def eps_text(eps: float) -> str:
    """A radius with at most four significant digits.

    Args:
        eps: The radius.

    Returns:
        E.g. ``"0.3"`` or ``"0.03137"``.
    """
    return f"{eps:.4g}"


def seconds_text(seconds: float | None) -> str:
    """A duration in seconds, minutes or hours, whichever reads best.

    Args:
        seconds: The duration in seconds, or None.

    Returns:
        E.g. ``"12.5 s"``, ``"3.2 min"`` or ``"2.1 h"``; ``MISSING`` for None.
    """
    if seconds is None:
        return MISSING
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def delta_text(points: float) -> str:
    """A difference in percentage points, always with its sign.

    Args:
        points: The difference.

    Returns:
        E.g. ``"+4.2"`` or ``"-0.7"``.
    """
    return f"{points:+.1f}"


def _union_epsilons(series: list[Series]) -> list[float]:
    out: list[float] = []
    for eps in sorted(float(e) for s in series for e in s.epsilons):
        if not out or not math.isclose(out[-1], eps, rel_tol=0.0, abs_tol=1e-9):
            out.append(eps)
    return out


def _with_ci(point: tuple[float, float, float] | None) -> str:
    if point is None:
        return ""
    accuracy, low, high = point
    if math.isnan(low) or math.isnan(high):
        return percent(accuracy)
    return f"{percent(accuracy)} [{100 * low:.1f}, {100 * high:.1f}]"


def summary_table(run: Run, dataset: str) -> Table:
    """One row per model of ``dataset``: clean accuracy and worst-case robust accuracy per eps.

    Args:
        run: The run.
        dataset: The dataset whose models are listed.

    Returns:
        Columns Model, Defense, Architecture, Test images, Clean and one per eps of any
        model's worst case; a model with failed checks has its name cell marked ``"bad"``.
    """
    models = run.models_of(dataset)
    epsilons = _union_epsilons([model.worst_case for model in models if model.worst_case is not None])
    header = ["Model", "Defense", "Architecture", "Test images", "Clean"] + [f"ε={eps_text(eps)}" for eps in epsilons]
    table = Table(header, numeric=tuple(range(3, len(header))))
    for model in models:
        cells = [Cell(model.name), Cell(model.defense), Cell(model.architecture),
                 Cell(MISSING if model.n_examples is None else str(model.n_examples)),
                 Cell(percent(model.clean_accuracy))]
        for eps in epsilons:
            point = model.worst_case.at(eps) if model.worst_case is not None else None
            cells.append(Cell(percent(point[0])) if point else Cell(MISSING, "muted"))
        if model.failed_checks:
            cells[0] = Cell(f"{model.name} (⚠ {len(model.failed_checks)} failed check"
                            f"{'s' if len(model.failed_checks) > 1 else ''})", "bad")
        table.rows.append(cells)
    return table


COMPARISON_INTRO = (
    "Worst-case robust accuracy of each defended model against its baseline on the same dataset; Δ is "
    "defended minus baseline in percentage points. Where the run compared the two per image (on the test "
    "images both saw), the Δ row has its 95% interval (Newcombe's paired score interval) and the exact "
    "McNemar p-value: only the images one model gets right and the other wrong count, so a Δ can be "
    "clear while the two models' own intervals overlap.")


def comparison_table(comparison: Comparison) -> Table:
    """Baseline, defended and their difference (percentage points) at clean and each eps.

    Args:
        comparison: A comparison whose ``baseline`` was found (not None).

    Returns:
        One column per row of the comparison; rows baseline, defended, Δ and, if any row
        was compared per image, the paired 95% interval and the McNemar p-value.
    """
    assert comparison.baseline is not None
    table = Table([""] + ["clean" if row.eps is None else f"ε={eps_text(row.eps)}" for row in comparison.rows])
    table.rows.append([Cell(f"baseline: {comparison.baseline.name}")]
                      + [Cell(percent(row.baseline)) for row in comparison.rows])
    table.rows.append([Cell(f"defended: {comparison.defended.name}")]
                      + [Cell(percent(row.defended)) for row in comparison.rows])
    table.rows.append([Cell("Δ (percentage points)")]
                      + [Cell(delta_text(row.points), "up" if row.points > 0 else "down" if row.points < 0 else None)
                         for row in comparison.rows])
    if any(row.paired is not None for row in comparison.rows):
        table.rows.append([Cell("Δ 95% CI, paired per image")]
                          + [Cell(MISSING if row.paired is None else
                                  " to ".join(delta_text(100.0 * v) for v in (row.paired.ci95_low,
                                                                              row.paired.ci95_high)))
                             for row in comparison.rows])
        table.rows.append([Cell("McNemar exact p")]
                          + [Cell(MISSING if row.paired is None else f"{row.paired.p_value:.2g}")
                             for row in comparison.rows])
    return table


def curves_table(model: Model) -> Table:
    """Robust accuracy [95% CI] per eps (rows) and attack (columns), worst case last.

    Args:
        model: The model.

    Returns:
        One row per eps of any curve; a cell is empty where an attack did not run at that eps.
    """
    series = [curve.series for curve in model.curves]
    if model.worst_case is not None:
        series.append(model.worst_case)
    table = Table(["ε"] + [curve.label for curve in model.curves]
                  + (["worst case"] if model.worst_case is not None else []))
    for eps in _union_epsilons(series):
        table.rows.append([Cell(eps_text(eps))] + [Cell(_with_ci(s.at(eps))) for s in series])
    return table


BRACKET_INTRO = (
    "A certificate proves that no perturbation within ε changes a test image's class, so the verified accuracy is a "
    "lower bound of robust accuracy; the attacks' worst case is an upper bound. Both are on the same test images, "
    "and the width is what neither decides: a stronger attack can only lower the upper bound, a tighter bound only "
    "raise the lower one.")


def bracket_table(model: Model) -> Table | None:
    """Per eps, each bound's verified accuracy, the attacks' worst case and the width between.

    The worst case is on the same images as the bounds; the width is the worst case minus
    the best verified accuracy, in percentage points.

    Args:
        model: The model.

    Returns:
        One row per eps of the brackets; None if the model was not certified.
    """
    if not model.brackets:
        return None
    first = model.brackets[0]
    table = Table(["ε"] + [f"verified ({bracket.method})" for bracket in model.brackets]
                  + [f"attacks (worst case, first {first.n_examples})", "width (points)"])
    for at, eps in enumerate(first.attacked.epsilons):
        best = max(bracket.certified.accuracy[at] for bracket in model.brackets)
        table.rows.append([Cell(eps_text(eps))] + [Cell(_with_ci(bracket.certified.at(eps)))
                                                   for bracket in model.brackets]
                          + [Cell(percent(first.attacked.accuracy[at])),
                             Cell(f"{100 * (first.attacked.accuracy[at] - best):.1f}")])
    return table


BROKEN_INTRO = (
    "How many test images each attack broke at each ε: classified correctly clean, not robust under it. "
    "An ensemble's members are credited with the images each broke first, since each attacks only what the "
    "ones before it left robust; the worst case counts the images any attack broke. An attack run on the first "
    "images only says so.")


def broken_table(model: Model) -> Table | None:
    """The images each attack (and each ensemble member) broke, per eps > 0.

    Args:
        model: The model.

    Returns:
        One row per attack, an ensemble's members (``"autoattack › apgd-ce"``) below its
        own total, and the worst case last; one column per eps > 0 of any counted curve.
        None if no curve has counts (a results.json written before the run kept them).
    """
    counted = [curve for curve in model.curves if curve.broken_by is not None]
    if not counted:
        return None
    epsilons = [eps for eps in _union_epsilons([curve.series for curve in counted]) if eps > 0]
    correct = round(model.clean_accuracy * model.n_examples)
    table = Table(["Attack"] + [f"ε={eps_text(eps)}" for eps in epsilons])
    for curve in counted:
        at = [curve.broken_at(eps) for eps in epsilons]
        limited = curve.n_examples is not None and curve.n_examples != model.n_examples
        title = f"{curve.label}, first {curve.n_examples} images" if limited else curve.label
        table.rows.append([Cell(title)] + [_count(counts, None) for counts in at])
        labels = list(dict.fromkeys(label for counts in at if counts for label in counts))
        if labels != [curve.attack]:
            table.rows.extend([Cell(f"{curve.attack} › {label}", "muted")] + [_count(counts, label) for counts in at]
                              for label in labels)
    if model.worst_case is not None and len(model.curves) > 1:
        worst = [model.worst_case.at(eps) for eps in epsilons]
        table.rows.append([Cell("worst case (any attack)")] + [
            Cell(MISSING, "muted") if point is None else Cell(str(correct - round(point[0] * model.n_examples)))
            for point in worst])
    return table


def _count(counts: dict[str, int] | None, label: str | None) -> Cell:
    """A count cell: one member's (``label``) or, for None, all of them together."""
    if counts is None:
        return Cell(MISSING, "muted")
    return Cell(str(sum(counts.values()) if label is None else counts.get(label, 0)))


PER_CLASS_INTRO = (
    "Clean accuracy and worst-case robust accuracy [95% Wilson interval] within each class of the test "
    "images; the class with the lowest worst case at the largest ε is marked.")


def per_class_table(model: Model) -> Table:
    """One row per class: its test images, clean accuracy, worst case [95% CI] at each eps > 0.

    Args:
        model: A model with per-class results.

    Returns:
        The table; the row of the class with the lowest worst case at the largest eps is
        marked ``"bad"``.
    """
    epsilons = _union_epsilons([result.worst_case for result in model.per_class])
    epsilons = [eps for eps in epsilons if eps > 0] or epsilons
    table = Table(["Class", "Test images", "Clean"] + [f"ε={eps_text(eps)}" for eps in epsilons])
    weakest = None
    if epsilons:
        scored = [(point[0], result.label) for result in model.per_class
                  if (point := result.worst_case.at(epsilons[-1])) is not None]
        weakest = min(scored)[1] if scored else None
    for result in model.per_class:
        cells = [Cell(model.class_name(result.label)), Cell(str(result.n_examples)),
                 Cell(percent(result.clean_accuracy))]
        cells += [Cell(_with_ci(result.worst_case.at(eps)) or MISSING) for eps in epsilons]
        if result.label == weakest:
            cells = [Cell(cell.text, "bad") for cell in cells]
        table.rows.append(cells)
    return table


def attacks_table(model: Model) -> Table:
    """One row per attack curve: the attack, its norm, test images, time and parameters.

    Args:
        model: The model.

    Returns:
        The table; parameters as sorted JSON.
    """
    table = Table(["Attack", "Norm", "Test images", "Time", "Parameters"], numeric=(2, 3))
    for curve in model.curves:
        params = json.dumps(curve.params, sort_keys=True, default=str) if curve.params else MISSING
        table.rows.append([Cell(curve.attack), Cell(curve.norm),
                           Cell(MISSING if curve.n_examples is None else str(curve.n_examples)),
                           Cell(seconds_text(curve.seconds)), Cell(params)])
    return table


def checks_table(model: Model) -> Table:
    """One row per sanity check: passed or FAILED, its name and what it measured.

    Args:
        model: The model.

    Returns:
        The table, status cells toned ``"good"`` or ``"bad"``; each check's name links
        to the section of the checks page that explains it.
    """
    table = Table(["Status", "Check", "Detail"], numeric=())
    for check in model.checks:
        table.rows.append([Cell("passed", "good") if check.passed else Cell("FAILED", "bad"),
                           Cell(check.name, link=check_link(check.name)), Cell(check.detail)])
    return table


def check_link(name: str) -> str | None:
    """The report's link to the explanation of the check that gave a verdict of this name.

    Args:
        name: A verdict's name, e.g. ``"large eps (inf 1)"``.

    Returns:
        The in-page link, e.g. ``"#check-large-eps"``; None for a name no check gives.
    """
    kind = kind_of(name)
    return None if kind is None else "#" + doc_anchor(kind)


def explained_checks(run: Run) -> list[tuple[str, str, str]]:
    """The explanation of every check the run's models have a verdict of, in order of appearance.

    Args:
        run: The run.

    Returns:
        ``(anchor, title, text)`` per check: e.g. ``"check-large-eps"``, ``"Check: large
        eps"`` and what the check asserts, with where the documentation explains it.
    """
    kinds = dict.fromkeys(kind for model in run.models for check in model.checks
                          if (kind := kind_of(check.name)) is not None)
    return [(doc_anchor(kind), "Check: " + kind.replace("_", " "),
             f"{describe(kind)} Why it matters and what to do: advrobust documentation, Report and checks "
             f"({CHECKS_PAGE}#{doc_anchor(kind)}).") for kind in kinds]


def minimal_eps_summary(model: Model) -> str | None:
    """The minimal-eps distribution in one sentence: count, never fooled, median, range, time.

    Args:
        model: The model.

    Returns:
        The sentence (with the record's note, if any), or None if the model has no
        minimal eps values.
    """
    minimal = model.minimal_eps
    if minimal is None or not len(minimal.values):
        return None
    values = minimal.values
    finite = values[np.isfinite(values)]
    never = len(values) - len(finite)
    parts = [f"{len(values)} examples, {never} never fooled ({minimal.attack}, {norm_title(minimal.norm)})"]
    if len(finite):
        median = float(np.median(values))  # inf when more than half are never fooled
        parts.append(f"median minimal ε {eps_text(median) if math.isfinite(median) else '∞'}")
        parts.append(f"smallest {eps_text(float(finite.min()))}, largest finite {eps_text(float(finite.max()))}")
    if minimal.seconds is not None:
        parts.append(f"{seconds_text(minimal.seconds)} ({minimal.seconds / len(values):.3g} s per example)")
    text = "; ".join(parts) + "."
    return f"{text} Note: {minimal.note}." if minimal.note else text


def minimal_eps_table(model: Model) -> Table | None:
    """The robust accuracy the minimal eps implies at each eps of the grid, beside the worst case.

    An example counts as robust at eps when its minimal eps is larger; both columns are
    upper bounds of the true robust accuracy.

    Args:
        model: The model.

    Returns:
        One row per eps of the worst case, or None without minimal eps values or a worst case.
    """
    minimal = model.minimal_eps
    if minimal is None or not len(minimal.values) or model.worst_case is None:
        return None
    table = Table(["ε", f"Implied by minimal ε ({len(minimal.values)} images)",
                   f"Worst case over the attacks ({MISSING if model.n_examples is None else model.n_examples} "
                   "images)"])
    for eps, worst in zip(model.worst_case.epsilons, model.worst_case.accuracy):
        table.rows.append([Cell(eps_text(float(eps))), Cell(percent(minimal.robust_accuracy(float(eps)))),
                           Cell(percent(float(worst)))])
    return table


def check_curves_table(model: Model) -> Table:
    """The extra attacks run for the checks: robust accuracy [95% CI] at each of their eps.

    Args:
        model: The model.

    Returns:
        One row per check curve (large eps, noise, transfers).
    """
    table = Table(["Check attack", "Attack", "Test images", "Robust accuracy by ε"], numeric=(2,))
    for title, curve in model.check_curves:
        points = "; ".join(f"ε={eps_text(float(eps))}: {_with_ci(curve.series.at(float(eps)))}"
                           for eps in curve.series.epsilons)
        table.rows.append([Cell(title), Cell(curve.label),
                           Cell(MISSING if curve.n_examples is None else str(curve.n_examples)), Cell(points)])
    return table


def model_facts(model: Model) -> Table:
    """The model's facts as a key/value table: dataset, defense, baseline, accuracy, time, file.

    Args:
        model: The model.

    Returns:
        A key/value table (empty header).
    """
    table = Table(["", ""], numeric=())
    facts = [("Dataset", dataset_title(model.dataset)), ("Defense", model.defense),
             ("Architecture", model.architecture), ("Baseline", model.baseline or MISSING),
             ("Test images", MISSING if model.n_examples is None else str(model.n_examples)),
             ("Clean accuracy", percent(model.clean_accuracy, 2)),
             ("Worst case over", ", ".join(model.worst_case_over) or MISSING),
             ("Training time", seconds_text(model.training_seconds)),
             ("Model file", model.path or MISSING)]
    table.rows.extend([Cell(key), Cell(value)] for key, value in facts)
    return table


def environment_table(run: Run) -> Table:
    """When and where the run ran, and the versions of its packages, as a key/value table.

    Args:
        run: The run.

    Returns:
        A key/value table (empty header); entries the results lack are left out.
    """
    table = Table(["", ""], numeric=())
    environment = run.environment
    rows = [("Started", run.started), ("Finished", run.finished),
            ("Duration", seconds_text(run.seconds) if run.seconds is not None else None),
            ("Config hash", run.config_hash), ("Device", environment.get("device")),
            ("Platform", environment.get("platform")), ("CPU cores", environment.get("cpu_count"))]
    versions = environment.get("versions")
    if isinstance(versions, dict):
        rows.extend((str(name), version) for name, version in versions.items())
    table.rows.extend([Cell(key), Cell(str(value))] for key, value in rows if value is not None)
    return table


def config_text(run: Run) -> str:
    """The run's configuration as indented JSON.

    Args:
        run: The run.

    Returns:
        JSON with sorted keys; values JSON cannot hold are written as their ``str()``.
    """
    return json.dumps(run.config, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def lede(run: Run) -> str:
    """One line under the title: models, datasets, when finished, the config hash (plain text).

    Args:
        run: The run.

    Returns:
        The parts joined by `` · ``, e.g. ``"2 models on MNIST · finished ... · config 1a2b..."``.
    """
    datasets = ", ".join(dataset_title(dataset) for dataset in run.datasets) or "no dataset"
    parts = [f"{len(run.models)} model{'s' if len(run.models) != 1 else ''} on {datasets}"]
    if run.finished:
        parts.append(f"finished {run.finished}")
    if run.config_hash:
        parts.append(f"config {run.config_hash[:12]}")
    return " · ".join(parts)
