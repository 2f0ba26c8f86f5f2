"""The report's figures, written as PNG files into ``DIR/figures/``.

The curves, the adversarial examples and the minimal-eps distribution are drawn by
:mod:`advrobust.plot`, the functions research code calls, so a notebook shows what the
report shows. Figures are :class:`matplotlib.figure.Figure` objects with the Agg canvas,
not pyplot ones, so making a report never changes the caller's global matplotlib
backend or state (a notebook user keeps their inline backend). File names come from
the model's index and a slug of ``[A-Za-z0-9_-]``, never from the raw name.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

from advrobust import plot
from advrobust.files import atomic_write_bytes
from advrobust.reporting.view import Model, Run, Series, dataset_title

DPI = 110
MAX_EXAMPLES = 8
_OUR_FILES = re.compile(r"^(dataset|model)-\d+(-[A-Za-z0-9_-]*)?\.png$")


@dataclass(frozen=True)
class Figure:
    """A written PNG and the sentence that describes it.

    Attributes:
        path: The PNG file.
        caption: One sentence saying what the figure shows.
    """

    path: Path
    caption: str


def dataset_key(dataset: str) -> str:
    """The key of a dataset's figure in :func:`write_figures`'s result.

    Args:
        dataset: The dataset's name.

    Returns:
        ``"dataset:NAME"``.
    """
    return f"dataset:{dataset}"


def model_key(model: Model, kind: str) -> str:
    """The key of one of a model's figures in :func:`write_figures`'s result.

    Args:
        model: The model.
        kind: One of ``"attacks"``, ``"examples"``, ``"minimal_eps"``, ``"training"``.

    Returns:
        ``"model:INDEX:KIND"``.
    """
    return f"model:{model.index}:{kind}"


def slug(text: str, *, limit: int = 40) -> str:
    """``text`` reduced to ``[A-Za-z0-9_-]`` (at most ``limit`` characters); may be empty.

    Args:
        text: Any string.
        limit: The most characters kept.

    Returns:
        ``text`` with each run of other characters as one ``-``, without leading or
        trailing ``-``.
    """
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:limit].strip("-")


def write_figures(run: Run, figures_dir: Path) -> dict[str, Figure]:
    """Draw every figure the run's data allows, as PNG files in ``figures_dir``.

    Old PNGs of this module's naming that were not redrawn are removed, so a rebuilt
    report never shows a stale figure.

    Args:
        run: The run, as :func:`advrobust.reporting.view.load_run` reads it.
        figures_dir: The folder for the PNGs; created if missing.

    Returns:
        The written figures by :func:`dataset_key` / :func:`model_key`; a figure the data
        do not allow (no curves, no examples, no training log) is absent.

    Raises:
        OSError: The folder or a PNG cannot be written.
    """
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Figure] = {}
    for position, dataset in enumerate(run.datasets, start=1):
        figure = _dataset_figure(run.models_of(dataset), dataset, figures_dir / _name("dataset", position, dataset))
        if figure is not None:
            figures[dataset_key(dataset)] = figure
    for model in run.models:
        for kind, draw in (("attacks", _attacks_figure), ("bracket", _bracket_figure), ("examples", _examples_figure),
                           ("minimal_eps", _minimal_eps_figure), ("training", _training_figure)):
            figure = draw(model, figures_dir / _name("model", model.index, model.name, kind.replace("_", "-")))
            if figure is not None:
                figures[model_key(model, kind)] = figure
    written = {figure.path.name for figure in figures.values()}
    for path in figures_dir.iterdir():
        if _OUR_FILES.match(path.name) and path.name not in written:
            path.unlink()
    return figures


def _name(kind: str, index: int, text: str, suffix: str = "") -> str:
    parts = [kind, str(index), slug(text), suffix]
    return "-".join(part for part in parts if part) + ".png"


def _label(text: str, *, limit: int = 40) -> str:
    """A user string made safe as matplotlib text: ``$`` would start mathtext (and a bad
    formula raises), and legend labels that start with ``_`` are silently dropped."""
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    text = text.replace("$", r"\$")
    return "\u200b" + text if text.startswith("_") else text


@dataclass(frozen=True)
class _SeriesCurve:
    """A report :class:`Series` in the fields :func:`advrobust.plot.curves` draws."""

    epsilons: np.ndarray
    robust_accuracy: np.ndarray
    ci95_low: np.ndarray
    ci95_high: np.ndarray


def _draw_series(axes: Axes, labelled: list[tuple[str, Series]], **options) -> None:
    """One :func:`advrobust.plot.curves` call per line, as labels may repeat (two models or
    two runs of one attack of the same name) and a mapping would keep only the last."""
    for label, series in labelled:
        plot.curves({label: _SeriesCurve(series.epsilons, series.accuracy, series.ci_low, series.ci_high)}, ax=axes,
                    **options)


def _new_figure(width: float, height: float) -> MplFigure:
    figure = MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _accuracy_axes(figure: MplFigure, *position: int) -> Axes:
    """An Axes whose lines take the tab10 colours in order, whatever the caller's rcParams."""
    axes = figure.add_subplot(*position)
    axes.set_prop_cycle(color=matplotlib.colormaps["tab10"].colors)
    return axes


def _save(figure: MplFigure, path: Path, caption: str) -> Figure:
    """Write the PNG atomically (temporary file in the same folder, then a rename)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return Figure(path, caption)


def _eps_label(norms: set[str]) -> str:
    return f"ε ({plot.norm_title(next(iter(norms)))})" if len(norms) == 1 else "ε"


def _dataset_figure(models: list[Model], dataset: str, path: Path) -> Figure | None:
    drawn = [model for model in models if model.worst_case is not None]
    if not drawn:
        return None
    figure = _new_figure(7.5, 4.4)
    labelled = [(_label(model.name) + (f", n={model.n_examples}" if model.n_examples is not None else ""),
                 model.worst_case) for model in drawn]
    _draw_series(_accuracy_axes(figure), labelled, xlabel=_eps_label({norm for model in drawn for norm in model.norms}),
                 title=f"{_label(dataset_title(dataset))}: worst-case robust accuracy (bands: 95% CI)")
    caption = (f"{dataset_title(dataset)}: each model's worst-case robust accuracy over all attacks "
               "against ε, with its 95% Wilson confidence band.")
    return _save(figure, path, caption)


def _attacks_figure(model: Model, path: Path) -> Figure | None:
    if not model.curves and model.worst_case is None:
        return None
    norms = model.norms
    groups: list[tuple[str | None, list]] = [(norm, [c for c in model.curves if c.norm == norm]) for norm in norms]
    worst_group = _worst_case_group(model, groups)
    if worst_group is None and model.worst_case is not None:
        groups.append((None, []))
        worst_group = len(groups) - 1
    figure = _new_figure(6.2 * len(groups), 4.0)
    for position, (norm, curves) in enumerate(groups):
        axes = _accuracy_axes(figure, 1, len(groups), position + 1)
        xlabel = "ε" if norm is None else f"ε ({plot.norm_title(norm)})"
        _draw_series(axes, [(_label(curve.label), curve.series) for curve in curves], xlabel=xlabel)
        if position == worst_group:
            # No band: it would only darken the band of the attack that sets the worst case.
            _draw_series(axes, [("worst case", model.worst_case)], xlabel=xlabel, color="black", linestyle="--",
                         marker="s", band=False)
    figure.suptitle(f"{_label(model.name)}: robust accuracy per attack (bands: 95% CI)")
    return _save(figure, path, f"{model.name}: robust accuracy against ε for each attack, with 95% "
                               "confidence bands; dashed: the worst case over all attacks.")


def _bracket_figure(model: Model, path: Path) -> Figure | None:
    if not model.brackets:
        return None
    figure = _new_figure(6.4, 4.0)
    first = model.brackets[0]
    attacked = _SeriesCurve(first.attacked.epsilons, first.attacked.accuracy, first.attacked.ci_low,
                            first.attacked.ci_high)
    certified = {bracket.method: _SeriesCurve(bracket.certified.epsilons, bracket.certified.accuracy,
                                              bracket.certified.ci_low, bracket.certified.ci_high)
                 for bracket in model.brackets}
    plot.bracket(certified, attacked, ax=_accuracy_axes(figure), xlabel=_eps_label({first.norm}),
                 title=f"{_label(model.name)}: certified and attacked (first {first.n_examples})")
    return _save(figure, path, f"{model.name}: the robust accuracy of the first {first.n_examples} test images lies "
                               "in the shaded band: above the accuracy verified by each bound (dashed), below the "
                               "worst case over the attacks (solid).")


def _worst_case_group(model: Model, groups: list[tuple[str | None, list]]) -> int | None:
    """The panel whose epsilons cover the worst-case curve's, or None."""
    if model.worst_case is None:
        return None
    if len(groups) == 1:
        return 0
    for position, (_, curves) in enumerate(groups):
        covered = np.concatenate([curve.series.epsilons for curve in curves])
        if all(np.isclose(covered, eps, rtol=0.0, atol=1e-9).any() for eps in model.worst_case.epsilons):
            return position
    return None


def _examples_figure(model: Model, path: Path) -> Figure | None:
    examples = model.examples
    if examples is None or not len(examples.x):
        return None
    m = min(len(examples.x), MAX_EXAMPLES)
    scale = float(np.max(np.abs(examples.x_adv[:m] - examples.x[:m]))) or 1.0
    figure = _new_figure(1.25 * m + 1.0, 4.9)
    plot.examples(examples.x, examples.x_adv, examples.y, examples.pred_clean, examples.pred_adv,
                  class_names=lambda label: _label(model.class_name(label), limit=12), max_examples=m,
                  perturbation_scale=scale, attack=_label(examples.attack) if examples.attack else None,
                  eps=examples.eps, model_name=_label(model.name), fig=figure)
    shown = f"the first {m} of {len(examples.x)}" if m < len(examples.x) else f"{m}"
    return _save(figure, path, f"{model.name}: {shown} adversarial examples. Top: clean image with true and "
                               "predicted class; middle: adversarial image and its prediction (red: wrong); "
                               f"bottom: the perturbation, amplified so ±{scale:.3g} spans the colour scale.")


def _minimal_eps_figure(model: Model, path: Path) -> Figure | None:
    """The histogram of the minimal eps, and the robust accuracy it implies beside the worst case."""
    minimal = model.minimal_eps
    if minimal is None or not len(minimal.values):
        return None
    values = minimal.values
    never = int(np.sum(~np.isfinite(values)))
    xlabel = f"minimal ε ({plot.norm_title(minimal.norm)})"
    figure = _new_figure(9.0, 3.6)
    plot.minimal_eps(values, ax=figure.add_subplot(1, 2, 1), kind="histogram", color="#4477aa", xlabel=xlabel)
    axes = figure.add_subplot(1, 2, 2)
    plot.minimal_eps(values, ax=axes, kind="robust", color="#4477aa", xlabel=f"ε ({plot.norm_title(minimal.norm)})")
    compared = " Right: the robust accuracy it implies (the share not fooled at or below ε)"
    if model.worst_case is not None and minimal.norm in model.norms:
        axes.plot(model.worst_case.epsilons, 100.0 * model.worst_case.accuracy, color="black", linestyle="--",
                  marker="s", label="worst case over the attacks")
        axes.plot([], [], color="#4477aa", label="implied by minimal ε")
        axes.legend(loc="best", fontsize="small")
        compared += ", beside the worst case over the attacks"
    figure.suptitle(f"{_label(model.name)}: per-example minimal ε ({_label(minimal.attack)})", fontsize=10)
    return _save(figure, path, f"{model.name}: the smallest ε that fools each example ({minimal.attack}); "
                               f"{never} of {len(values)} never fooled.{compared}.")


def _training_figure(model: Model, path: Path) -> Figure | None:
    if not model.history:
        return None
    curves = {key: values for key, values in model.history.items()
              if not key.endswith("seconds") and key not in ("eps", "lr", "learning_rate")}
    losses = {key: values for key, values in curves.items() if "acc" not in key}
    accuracies = {key: values for key, values in curves.items() if "acc" in key}
    panels = [(title, series) for title, series in (("loss", losses), ("accuracy (%)", accuracies)) if series]
    figure = _new_figure(4.6 * len(panels), 3.4)
    for position, (title, series) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), position + 1)
        factor = 100.0 if title.startswith("accuracy") else 1.0
        for key, values in series.items():
            axes.plot(np.arange(1, len(values) + 1), factor * np.asarray(values), marker="o", markersize=3,
                      label=_label(key))
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(title)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(f"{_label(model.name)}: training history", fontsize=10)
    return _save(figure, path, f"{model.name}: training history per epoch (from the model card).")
