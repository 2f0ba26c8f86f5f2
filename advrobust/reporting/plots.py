"""The report's figures, written as PNG files into ``DIR/figures/``.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, not
through pyplot, so making a report never changes the caller's global matplotlib
backend or state (a notebook user keeps their inline backend). File names come from
the model's index and a slug of ``[A-Za-z0-9_-]``, never from the raw name.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

from advrobust.files import atomic_write_bytes
from advrobust.reporting.view import Model, Run, Series, dataset_title, norm_title

DPI = 110
MAX_EXAMPLES = 8
_OUR_FILES = re.compile(r"^(dataset|model)-\d+(-[A-Za-z0-9_-]*)?\.png$")


@dataclass(frozen=True)
class Figure:
    """A written PNG and the sentence that describes it."""

    path: Path
    caption: str


def dataset_key(dataset: str) -> str:
    return f"dataset:{dataset}"


def model_key(model: Model, kind: str) -> str:
    """``kind`` is one of attacks, examples, minimal_eps, training."""
    return f"model:{model.index}:{kind}"


def slug(text: str, *, limit: int = 40) -> str:
    """``text`` reduced to ``[A-Za-z0-9_-]`` (at most ``limit`` characters); may be empty."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:limit].strip("-")


def write_figures(run: Run, figures_dir: Path) -> dict[str, Figure]:
    """Draw every figure the run's data allows; return them by :func:`dataset_key` /
    :func:`model_key`. Old PNGs of this module's naming that were not redrawn are removed,
    so a rebuilt report never shows a stale figure."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Figure] = {}
    for position, dataset in enumerate(run.datasets, start=1):
        figure = _dataset_figure(run.models_of(dataset), dataset, figures_dir / _name("dataset", position, dataset))
        if figure is not None:
            figures[dataset_key(dataset)] = figure
    for model in run.models:
        for kind, draw in (("attacks", _attacks_figure), ("examples", _examples_figure),
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


def _percent(values: np.ndarray) -> np.ndarray:
    return 100.0 * np.asarray(values, dtype=np.float64)


def _new_figure(width: float, height: float) -> MplFigure:
    figure = MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: MplFigure, path: Path, caption: str) -> Figure:
    """Write the PNG atomically (temporary file in the same folder, then a rename)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return Figure(path, caption)


def _plot_series(axes, series: Series, *, label: str, color, linestyle: str = "-", marker: str = "o",
                 band: bool = True) -> None:
    x = series.epsilons
    axes.plot(x, _percent(series.accuracy), linestyle=linestyle, marker=marker, markersize=4, color=color,
              label=label)
    known = ~(np.isnan(series.ci_low) | np.isnan(series.ci_high))
    if band and known.any():
        axes.fill_between(x[known], _percent(series.ci_low[known]), _percent(series.ci_high[known]),
                          color=color, alpha=0.18, linewidth=0)


def _style_accuracy_axes(axes, xlabel: str) -> None:
    axes.set_xlabel(xlabel)
    axes.set_ylabel("robust accuracy (%)")
    axes.set_ylim(-2, 102)
    axes.grid(True, alpha=0.3)


def _eps_label(norms: set[str]) -> str:
    return f"ε ({norm_title(next(iter(norms)))})" if len(norms) == 1 else "ε"


def _dataset_figure(models: list[Model], dataset: str, path: Path) -> Figure | None:
    drawn = [model for model in models if model.worst_case is not None]
    if not drawn:
        return None
    figure = _new_figure(7.5, 4.4)
    axes = figure.add_subplot()
    colors = matplotlib.colormaps["tab10"]
    for position, model in enumerate(drawn):
        n = f", n={model.n_examples}" if model.n_examples is not None else ""
        _plot_series(axes, model.worst_case, label=_label(model.name) + n, color=colors(position % 10))
    _style_accuracy_axes(axes, _eps_label({norm for model in drawn for norm in model.norms}))
    axes.set_title(f"{_label(dataset_title(dataset))}: worst-case robust accuracy (bands: 95% CI)")
    axes.legend(loc="best", fontsize=8)
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
    colors = matplotlib.colormaps["tab10"]
    for position, (norm, curves) in enumerate(groups):
        axes = figure.add_subplot(1, len(groups), position + 1)
        for number, curve in enumerate(curves):
            _plot_series(axes, curve.series, label=_label(curve.label), color=colors(number % 10))
        if position == worst_group:
            # No band: it would only darken the band of the attack that sets the worst case.
            _plot_series(axes, model.worst_case, label="worst case", color="black", linestyle="--", marker="s",
                         band=False)
        _style_accuracy_axes(axes, "ε" if norm is None else f"ε ({norm_title(norm)})")
        axes.legend(loc="best", fontsize=8)
    figure.suptitle(f"{_label(model.name)}: robust accuracy per attack (bands: 95% CI)")
    return _save(figure, path, f"{model.name}: robust accuracy against ε for each attack, with 95% "
                               "confidence bands; dashed: the worst case over all attacks.")


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
    perturbation = examples.x_adv[:m] - examples.x[:m]
    scale = float(np.max(np.abs(perturbation))) or 1.0
    figure = _new_figure(1.25 * m + 1.0, 4.9)
    grid = figure.subplots(3, m, squeeze=False)
    for column in range(m):
        truth, clean, adversarial = (int(examples.y[column]), int(examples.pred_clean[column]),
                                     int(examples.pred_adv[column]))
        panels = ((examples.x[column], "gray", 0.0, 1.0, f"true {_label(model.class_name(truth), limit=12)}\n"
                   f"pred {_label(model.class_name(clean), limit=12)}", clean != truth),
                  (examples.x_adv[column], "gray", 0.0, 1.0, f"pred {_label(model.class_name(adversarial), limit=12)}",
                   adversarial != truth),
                  (perturbation[column], "RdBu_r", -scale, scale, "", False))
        for row, (image, cmap, low, high, title, wrong) in enumerate(panels):
            axes = grid[row][column]
            axes.imshow(image, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if title:
                axes.set_title(title, fontsize=7.5, color="#b00020" if wrong else "black")
    for row, text in enumerate(("clean", "adversarial", f"perturbation\n(±{scale:.3g} → full scale)")):
        grid[row][0].set_ylabel(text, fontsize=8)
    what = " ".join(part for part in (
        _label(examples.attack) if examples.attack else None,
        f"ε={examples.eps:g}" if examples.eps is not None else None) if part)
    figure.suptitle(f"{_label(model.name)}: adversarial examples{' (' + what + ')' if what else ''}", fontsize=10)
    shown = f"the first {m} of {len(examples.x)}" if m < len(examples.x) else f"{m}"
    return _save(figure, path, f"{model.name}: {shown} adversarial examples. Top: clean image with true and "
                               "predicted class; middle: adversarial image and its prediction (red: wrong); "
                               f"bottom: the perturbation, amplified so ±{scale:.3g} spans the colour scale.")


def _minimal_eps_figure(model: Model, path: Path) -> Figure | None:
    minimal = model.minimal_eps
    if minimal is None or not len(minimal.values):
        return None
    values = minimal.values
    finite = np.sort(values[np.isfinite(values)])
    never = len(values) - len(finite)
    figure = _new_figure(9.0, 3.6)
    histogram, cdf = figure.subplots(1, 2)
    xlabel = f"minimal ε ({norm_title(minimal.norm)})"
    if len(finite):
        histogram.hist(finite, bins=min(30, max(5, int(math.sqrt(len(finite))) * 2)), color="#4477aa")
        steps = np.concatenate([[0.0], finite])
        fractions = 100.0 * np.arange(len(finite) + 1) / len(values)
        cdf.step(steps, fractions, where="post", color="#4477aa")
    else:
        histogram.text(0.5, 0.5, "never fooled", ha="center", va="center", transform=histogram.transAxes)
    histogram.set_xlabel(xlabel)
    histogram.set_ylabel("examples")
    histogram.set_title(f"histogram ({never} of {len(values)} never fooled)", fontsize=9)
    cdf.set_xlabel(xlabel)
    cdf.set_ylabel("fooled at or below ε (%)")
    cdf.set_ylim(-2, 102)
    cdf.set_title("cumulative distribution", fontsize=9)
    histogram.yaxis.set_major_locator(MaxNLocator(integer=True))
    for axes in (histogram, cdf):
        axes.grid(True, alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(6))
    figure.suptitle(f"{_label(model.name)}: per-example minimal ε ({_label(minimal.attack)})", fontsize=10)
    return _save(figure, path, f"{model.name}: the smallest ε that fools each example ({minimal.attack}); "
                               f"{never} of {len(values)} never fooled.")


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
