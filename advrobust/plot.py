"""Figures of robustness results for research code: the report's figures, one call each.

Four functions draw what the run's report shows:

- :func:`curves`: robust accuracy against eps with 95% Wilson bands, one line per curve;
- :func:`bracket`: verified accuracy (a lower bound) below the attacks' worst case (an
  upper bound), the band between them shaded: where the true robust accuracy lies;
- :func:`examples`: clean and adversarial images with true and predicted classes;
- :func:`minimal_eps`: the distribution of the per-example minimal adversarial eps, or
  the robust-accuracy curve it implies.

In a notebook::

    %matplotlib inline
    from advrobust import evaluation, plot
    results = evaluation.evaluate({"cnn": cnn, "nsl": nsl}, x, y, attacks=["fgsm", "pgd"],
                                  epsilons=[0.0, 0.1, 0.2, 0.3])
    plot.curves(results)          # each model's worst case, with its 95% band
    plot.curves(results["nsl"])   # every attack on one model, then its worst case
    plot.minimal_eps(results["nsl"], kind="histogram")

Every function returns the :class:`matplotlib.figure.Figure` it drew on (the top-level
one when it drew into a subfigure): ``fig.axes`` holds the panels. ``curves`` and
``minimal_eps`` draw one panel, on ``ax`` when given; ``examples`` draws a grid, into
``fig`` when given. Without one they make a new Figure directly, never through pyplot: no
global figure is opened or left behind, and the caller's backend is untouched. In Jupyter,
run ``%matplotlib inline`` once: a returned Figure then shows as the cell's value (or with
``IPython.display.display(fig)``), once, as pyplot does not hold it; without it the cell
shows only the Figure's text.

Curves are duck-typed: anything with ``epsilons``, ``robust_accuracy``, ``ci95_low`` and
``ci95_high`` (as :class:`advrobust.evaluation.Curve` has) is drawn, so this module never
imports TensorFlow. User text (labels, names) goes to matplotlib as given: ``$...$`` is
mathtext and a legend label that starts with ``_`` is left out of the legend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import MaxNLocator

from advrobust.evaluation.stats import minimal_eps_on_grid

__all__ = ["bracket", "curves", "examples", "minimal_eps"]

CURVE_FIELDS = ("epsilons", "robust_accuracy", "ci95_low", "ci95_high")
MINIMAL_EPS_KINDS = ("cdf", "histogram", "robust")
NORM_TITLES = {"inf": "L∞", "l2": "L2"}  # how a norm is written in titles and labels
_WRONG_COLOR = "#b00020"
_BAND_ALPHA = 0.18
_BRACKET_ALPHA = 0.22


@dataclass(frozen=True)
class _Line:
    """One curve, checked and ready to draw; accuracies are fractions."""

    label: str
    epsilons: np.ndarray
    accuracy: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    norm: str | None
    worst_case: bool = False


def curves(curves: Any, ax: Axes | None = None, *, band: bool = True, color: Any = None, linestyle: str = "-",
           marker: str = "o", xlabel: str | None = None, title: str | None = None, legend: bool = True) -> Figure:
    """Draw robust accuracy (%) against eps, one line per curve, each with its 95% band.

    Args:
      curves: what to draw, one of:
        a curve (an :class:`advrobust.evaluation.Curve`, or any object with ``epsilons``,
        ``robust_accuracy``, ``ci95_low`` and ``ci95_high``: equal-length 1-D arrays,
        accuracies as fractions in [0, 1]; NaN leaves a gap);
        a list of curves (labelled by their ``attack``, with the norm when they differ);
        a mapping ``{label: curve}``;
        a :class:`~advrobust.evaluation.ModelEvaluation` (anything with ``curves`` and
        ``worst_case``): its attack curves, then its worst case dashed black without band;
        a mapping ``{label: ModelEvaluation}``, such as what
        :func:`advrobust.evaluation.evaluate` returns: each model's worst case.
      ax: the Axes to draw on; None makes a new Figure (without pyplot) with one Axes.
        Calling again on the same Axes adds lines to it.
      band: draw the 95% confidence band where both bounds are known.
      color: one matplotlib colour for every line; None takes each line's colour from the
        Axes' property cycle (a ModelEvaluation's worst case stays black).
      linestyle: matplotlib line style of the lines.
      marker: matplotlib marker at each eps.
      xlabel: the x-axis label; None: "ε", with the norm when all curves share one.
      title: the Axes title; None sets none.
      legend: draw a legend of the lines on the Axes.

    Returns:
      The Figure drawn on: the new one, or the top-level Figure of ``ax``. The y axis
      is robust accuracy in percent, from -2 to 102.

    Raises:
      TypeError: if ``curves`` or one of its entries is not a curve, or a label is not a str.
      ValueError: if there is no curve, or a curve's arrays are not 1-D of one non-zero length.
    """
    lines = _lines(curves)
    if ax is None:
        ax = _new_figure(6.4, 4.0).add_subplot()
    for line in lines:
        if line.worst_case:
            _draw_line(ax, line, color="black", linestyle="--", marker="s", band=False)
        else:
            _draw_line(ax, line, color=color, linestyle=linestyle, marker=marker, band=band)
    return _accuracy_axes(ax, lines, xlabel=xlabel, title=title, legend=legend)


def bracket(certified: Any, attacked: Any, ax: Axes | None = None, *, xlabel: str | None = None,
            title: str | None = None, legend: bool = True) -> Figure:
    """Draw the robustness bracket: verified accuracy below, the attacks above, shaded between.

    A certificate (IBP, CROWN-IBP) is a lower bound of robust accuracy, an attack an upper
    bound; on the same examples the true robust accuracy lies in the shaded band, whose
    height is what neither side can yet decide.

    Args:
      certified: the lower bound(s): a curve of
        :func:`advrobust.evaluation.certified_curve` or
        :func:`advrobust.certify.certified_accuracy_curve` (one with ``certified_accuracy``
        is read as its robust accuracy), a list of them (labelled by their method), or a
        mapping ``{label: curve}``.
      attacked: the upper bound: a curve, usually the worst case over the attacks, on the
        same examples and at the same epsilons as every certified curve.
      ax: the Axes to draw on; None makes a new Figure (without pyplot) with one Axes.
      xlabel: the x-axis label; None: "ε", with the norm when all curves share one.
      title: the Axes title; None sets none.
      legend: draw a legend on the Axes.

    Returns:
      The Figure drawn on: the new one, or the top-level Figure of ``ax``. The y axis is
      robust accuracy in percent, from -2 to 102; the band spans, per eps, the highest
      certified accuracy to the attacked one.

    Raises:
      TypeError: if a curve is not a curve.
      ValueError: if there is no certified curve, or one's epsilons differ from ``attacked``'s.
    """
    lowers = _lines(_as_robust(certified))
    upper = _line(attacked, "attacks (worst case)", "attacked")
    for line in lowers:
        if line.epsilons.shape != upper.epsilons.shape or not np.allclose(line.epsilons, upper.epsilons):
            raise ValueError(f"certified curve {line.label!r} is at epsilons {line.epsilons.tolist()}, the attacked "
                             f"curve at {upper.epsilons.tolist()}: a bracket needs both at the same epsilons")
    if ax is None:
        ax = _new_figure(6.4, 4.0).add_subplot()
    highest = np.max([line.accuracy for line in lowers], axis=0)
    ax.fill_between(upper.epsilons, 100.0 * highest, 100.0 * upper.accuracy, color="tab:gray", alpha=_BRACKET_ALPHA,
                    linewidth=0, label="undecided: robust accuracy lies here")
    _draw_line(ax, upper, color="black", linestyle="-", marker="s", band=False)
    for line in lowers:
        _draw_line(ax, _Line(f"verified, {line.label}", line.epsilons, line.accuracy, line.ci_low, line.ci_high,
                             line.norm), color=None, linestyle="--", marker="o", band=False)
    return _accuracy_axes(ax, [upper, *lowers], xlabel=xlabel, title=title, legend=legend)


@dataclass(frozen=True)
class _Certified:
    """A curve of :func:`advrobust.certify.certified_accuracy_curve` in the fields of a curve."""

    attack: str
    norm: str | None
    epsilons: Any
    robust_accuracy: Any
    ci95_low: Any
    ci95_high: Any


def _as_robust(certified: Any) -> Any:
    """``certified`` with every curve that has ``certified_accuracy`` read as a curve."""
    def one(curve: Any) -> Any:
        if hasattr(curve, "certified_accuracy") and not hasattr(curve, "robust_accuracy"):
            return _Certified(getattr(curve, "method", "certified"), getattr(curve, "norm", None), curve.epsilons,
                              curve.certified_accuracy, curve.ci95_low, curve.ci95_high)
        return curve

    if isinstance(certified, Mapping):
        return {label: one(curve) for label, curve in certified.items()}
    if _is_curve(certified) or hasattr(certified, "certified_accuracy"):
        return one(certified)
    if isinstance(certified, Iterable) and not isinstance(certified, (str, bytes)):
        return [one(curve) for curve in certified]
    return certified


def examples(x: Any, x_adv: Any, y: Any, pred_clean: Any, pred_adv: Any, *,
             class_names: Sequence[str] | Callable[[int], str] | None = None, max_examples: int = 8,
             perturbation_scale: float | None = None, attack: Any = None, eps: Any = None,
             model_name: str | None = None, title: str | None = None,
             fig: Figure | SubFigure | None = None) -> Figure:
    """Draw a grid of clean images, their adversarial versions and the perturbations.

    One column per example. Top row: the clean image, titled with its true and predicted
    class; middle: the adversarial image and its prediction; bottom: the perturbation
    ``x_adv - x``, amplified so that ``±perturbation_scale`` spans the colour scale. A
    wrong prediction is titled in red. The arrays are those of the run's examples file,
    so ``examples(**np.load("examples/NAME.npz"))`` draws it.

    Args:
      x: clean images, (M, H, W), (M, H, W, 1) or (M, H, W, 3), values in [0, 1].
      x_adv: their adversarial versions, the same shape.
      y: true classes, (M,) ints.
      pred_clean: the model's classes for ``x``, (M,) ints.
      pred_adv: the model's classes for ``x_adv``, (M,) ints.
      class_names: a class's name: a sequence indexed by class, or a function of the
        class; None shows the class number.
      max_examples: draw the first ``min(M, max_examples)`` examples.
      perturbation_scale: the perturbation shown at full colour; None: the largest
        absolute perturbation drawn (1 if there is none).
      attack: the attack's name, for the default title.
      eps: the attack's eps, for the default title.
      model_name: the model's name, at the start of the default title.
      title: the figure title; None: "[model_name: ]adversarial examples (attack ε=eps)".
      fig: an empty Figure or SubFigure to draw the grid into; None makes a new Figure
        (without pyplot), sized to the number of columns.

    Returns:
      The Figure drawn on (the top-level one of a SubFigure); its axes are the 3 x m
      panels, row by row.

    Raises:
      ValueError: if the shapes disagree, there is no example, ``max_examples`` or
        ``perturbation_scale`` is not positive, or a class has no name in ``class_names``.
    """
    images, adversarial, labels = _checked_examples(x, x_adv, y, pred_clean, pred_adv)
    if max_examples < 1:
        raise ValueError(f"max_examples must be at least 1, got {max_examples}")
    m = min(len(images), max_examples)
    images, adversarial, labels = images[:m], adversarial[:m], [label[:m] for label in labels]
    scale = _perturbation_scale(adversarial - images, perturbation_scale)
    name_of = _class_namer(class_names, np.concatenate(labels))
    if fig is None:
        fig = _new_figure(1.25 * m + 1.0, 4.9)
    grid = fig.subplots(3, m, squeeze=False)
    for column, (clean, attacked, truth, clean_pred, adv_pred) in enumerate(zip(images, adversarial, *labels)):
        panels = ((clean, f"true {name_of(truth)}\npred {name_of(clean_pred)}", clean_pred != truth),
                  (attacked, f"pred {name_of(adv_pred)}", adv_pred != truth))
        for row, (image, text, wrong) in enumerate(panels):
            _show_image(grid[row][column], image)
            grid[row][column].set_title(text, fontsize=7.5, color=_WRONG_COLOR if wrong else "black")
        _show_perturbation(grid[2][column], attacked - clean, scale)
    for row, text in enumerate(("clean", "adversarial", f"perturbation\n(±{scale:.3g} → full scale)")):
        grid[row][0].set_ylabel(text, fontsize=8)
    fig.suptitle(title if title is not None else _examples_title(attack, eps, model_name), fontsize=10)
    return fig.figure


def minimal_eps(values: Any, ax: Axes | None = None, *, kind: Literal["cdf", "histogram", "robust"] = "cdf",
                norm: str | None = None, bins: int | None = None, color: Any = None, xlabel: str | None = None,
                title: str | None = None) -> Figure:
    """Draw the distribution of the per-example minimal adversarial eps.

    An example's minimal eps is the smallest eps at which the attack fools it; examples
    never fooled have none and are counted in the title (histogram) or keep the curve
    below 100% (cdf).

    Args:
      values: the minimal eps per example, (N,) floats >= 0, ``inf`` or None where never
        fooled (as results.json's ``minimal_eps.values``); or a curve with a
        ``robust_mask`` (K, N) and ``epsilons`` (K,), such as
        :class:`advrobust.evaluation.Curve` (a ModelEvaluation: its worst case), whose
        smallest eps of the grid at which each example is not robust is used (an upper
        bound of its true minimal eps; an example misclassified clean counts as fooled
        at the grid's smallest eps, as results.json records it).
      ax: the Axes to draw on; None makes a new Figure (without pyplot) with one Axes.
      kind: "cdf": the percentage of examples fooled at or below each eps, a step
        function; "robust": the robust accuracy it implies, the percentage not fooled at
        or below each eps (100 minus the cdf); "histogram": the number of examples per
        bin of minimal eps.
      norm: the eps norm ("inf", "l2") for the x label; None: the curve's, if given one.
      bins: histogram bins; None: 2 sqrt(n), at least 5 and at most 30.
      color: matplotlib colour; None: the first colour of the property cycle.
      xlabel: the x-axis label; None: "minimal ε", with the norm when known.
      title: the Axes title; None: "histogram (k of N never fooled)",
        "cumulative distribution" or "implied robust accuracy"; "" sets none.

    Returns:
      The Figure drawn on: the new one, or the top-level Figure of ``ax``.

    Raises:
      TypeError: if ``values`` is neither numbers nor a curve with a robust mask.
      ValueError: if ``kind`` is unknown, there is no value, a value is NaN, or the
        curve's mask and epsilons disagree in shape.
    """
    if kind not in MINIMAL_EPS_KINDS:
        raise ValueError(f"kind must be one of {', '.join(MINIMAL_EPS_KINDS)}; got {kind!r}")
    eps_values, curve_norm = _minimal_eps_values(values)
    norm = norm if norm is not None else curve_norm
    finite = np.sort(eps_values[np.isfinite(eps_values)])
    never = len(eps_values) - len(finite)
    if ax is None:
        ax = _new_figure(4.8, 3.6).add_subplot()
    color = "C0" if color is None else color
    if not len(finite):
        ax.text(0.5, 0.5, "never fooled", ha="center", va="center", transform=ax.transAxes)
    elif kind == "histogram":
        ax.hist(finite, bins=bins if bins is not None else min(30, max(5, int(math.sqrt(len(finite))) * 2)),
                color=color)
    else:
        fractions = 100.0 * np.arange(len(finite) + 1) / len(eps_values)
        ax.step(np.concatenate([[0.0], finite]), fractions if kind == "cdf" else 100.0 - fractions, where="post",
                color=color)
    if kind == "histogram":
        ax.set_ylabel("examples")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        default_title = f"histogram ({never} of {len(eps_values)} never fooled)"
    else:
        ax.set_ylabel("fooled at or below ε (%)" if kind == "cdf" else "robust accuracy (%)")
        ax.set_ylim(-2, 102)
        default_title = "cumulative distribution" if kind == "cdf" else "implied robust accuracy"
    ax.set_xlabel(xlabel if xlabel is not None else _eps_label("minimal ε", {norm}))
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.grid(True, alpha=0.3)
    if title != "":
        ax.set_title(default_title if title is None else title, fontsize="medium")
    return _root(ax)


def _accuracy_axes(ax: Axes, lines: list[_Line], *, xlabel: str | None, title: str | None, legend: bool) -> Figure:
    """Label ``ax`` as robust accuracy (%) against eps (with the lines' norm when they share
    one), add the title and legend; the top-level Figure."""
    ax.set_xlabel(xlabel if xlabel is not None else _eps_label("ε", {line.norm for line in lines}))
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(True, alpha=0.3)
    if title is not None:
        ax.set_title(title)
    if legend:
        ax.legend(loc="best", fontsize="small")
    return _root(ax)


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _root(ax: Axes) -> Figure:
    """The top-level Figure of ``ax`` (``ax.figure`` is a SubFigure when drawn in one)."""
    return ax.figure.figure


def norm_title(norm: str) -> str:
    """How ``norm`` is written in titles and labels.

    Args:
        norm: ``"inf"`` or ``"l2"`` (anything else is written as it is).

    Returns:
        ``"L∞"``, ``"L2"``, or ``norm`` itself.
    """
    return NORM_TITLES.get(norm, norm)


def _eps_label(text: str, norms: set[str | None]) -> str:
    """``text`` with the norm when every curve has the same known one."""
    if len(norms) == 1 and None not in norms:
        return f"{text} ({norm_title(next(iter(norms)))})"
    return text


def _is_evaluation(value: Any) -> bool:
    return hasattr(value, "curves") and hasattr(value, "worst_case")


def _is_curve(value: Any) -> bool:
    return all(hasattr(value, name) for name in CURVE_FIELDS)


def _lines(curves: Any) -> list[_Line]:
    """``curves`` in any of the forms :func:`curves` takes, as checked lines in order."""
    if isinstance(curves, Mapping):
        if not curves:
            raise ValueError("curves is an empty mapping: pass at least one {label: curve}")
        lines = []
        for label, value in curves.items():
            if not isinstance(label, str):
                raise TypeError(f"curve labels must be str, got {label!r} ({type(label).__name__})")
            curve = value.worst_case if _is_evaluation(value) else value
            lines.append(_line(curve, label, f"curves[{label!r}]"))
        return lines
    if _is_evaluation(curves):
        lines = _listed(list(curves.curves), "curves.curves")
        return lines + [_line(curves.worst_case, "worst case", "curves.worst_case", worst_case=True)]
    if _is_curve(curves):
        return _listed([curves], "curves")
    if isinstance(curves, (str, bytes)) or not isinstance(curves, Iterable):
        raise TypeError(f"curves must be a curve, a list of curves, a mapping {{label: curve}} or a "
                        f"ModelEvaluation; got {type(curves).__name__}")
    return _listed(list(curves), "curves")


def _listed(items: list[Any], where: str) -> list[_Line]:
    """Unlabelled curves: labelled by attack, with the norm when the norms differ."""
    if not items:
        raise ValueError(f"{where} is empty: pass at least one curve")
    lines = [_line(curve, _attack_of(curve, number), f"{where}[{number}]") for number, curve in enumerate(items)]
    if len({line.norm for line in lines}) > 1:
        lines = [_Line(f"{line.label} ({norm_title(line.norm)})" if line.norm else line.label, line.epsilons,
                       line.accuracy, line.ci_low, line.ci_high, line.norm) for line in lines]
    return lines


def _attack_of(curve: Any, number: int) -> str:
    attack = getattr(curve, "attack", None)
    return attack if isinstance(attack, str) and attack else f"curve {number + 1}"


def _line(curve: Any, label: str, where: str, *, worst_case: bool = False) -> _Line:
    missing = [name for name in CURVE_FIELDS if not hasattr(curve, name)]
    if missing:
        raise TypeError(f"{where} is a {type(curve).__name__}, not a curve: it has no {', '.join(missing)} "
                        "(as advrobust.evaluation.Curve has)")
    arrays = [np.asarray(getattr(curve, name), dtype=np.float64) for name in CURVE_FIELDS]
    for name, array in zip(CURVE_FIELDS, arrays):
        if array.ndim != 1:
            raise ValueError(f"{where}.{name} must be 1-D (one value per eps), got shape {array.shape}")
    if len({len(array) for array in arrays}) != 1:
        lengths = ", ".join(f"{name} {len(array)}" for name, array in zip(CURVE_FIELDS, arrays))
        raise ValueError(f"{where}: its arrays must have one entry per eps, got lengths {lengths}")
    if not len(arrays[0]):
        raise ValueError(f"{where} has no epsilons")
    norm = getattr(curve, "norm", None)
    return _Line(label, *arrays, norm=norm if isinstance(norm, str) else None, worst_case=worst_case)


def _draw_line(ax: Axes, line: _Line, *, color: Any, linestyle: str, marker: str, band: bool) -> None:
    (drawn,) = ax.plot(line.epsilons, 100.0 * line.accuracy, linestyle=linestyle, marker=marker, markersize=4,
                       color=color, label=line.label)
    known = ~(np.isnan(line.ci_low) | np.isnan(line.ci_high))
    if band and known.any():
        ax.fill_between(line.epsilons[known], 100.0 * line.ci_low[known], 100.0 * line.ci_high[known],
                        color=drawn.get_color(), alpha=_BAND_ALPHA, linewidth=0)


def _checked_examples(x: Any, x_adv: Any, y: Any, pred_clean: Any,
                      pred_adv: Any) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Images as (M, H, W) or (M, H, W, 3) floats and the three label arrays as (M,) ints."""
    images, adversarial = (np.asarray(array, dtype=np.float64) for array in (x, x_adv))
    if images.ndim == 4 and images.shape[-1] == 1:
        images, adversarial = images[..., 0], adversarial[..., 0]
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise ValueError(f"x must be images (M, H, W), (M, H, W, 1) or (M, H, W, 3), got shape {np.shape(x)}")
    if adversarial.shape != images.shape:
        raise ValueError(f"x_adv must have the shape of x {np.shape(x)}, got {np.shape(x_adv)}")
    if not len(images):
        raise ValueError("x holds no example: pass at least one image")
    labels = []
    for name, values in (("y", y), ("pred_clean", pred_clean), ("pred_adv", pred_adv)):
        array = np.asarray(values)
        if array.shape != (len(images),):
            raise ValueError(f"{name} must hold one class per image, shape ({len(images)},); got {array.shape}")
        labels.append(array.astype(np.int64))
    return images, adversarial, labels


def _perturbation_scale(perturbation: np.ndarray, scale: float | None) -> float:
    if scale is None:
        return float(np.max(np.abs(perturbation))) or 1.0
    if not scale > 0:
        raise ValueError(f"perturbation_scale must be positive, got {scale}")
    return float(scale)


def _class_namer(class_names: Sequence[str] | Callable[[int], str] | None, labels: np.ndarray) -> Callable[[int], str]:
    if class_names is None:
        return str
    if callable(class_names):
        return lambda label: str(class_names(int(label)))
    missing = sorted({int(label) for label in labels if not 0 <= label < len(class_names)})
    if missing:
        raise ValueError(f"class_names has {len(class_names)} names, so none for class(es) {missing}")
    return lambda label: str(class_names[int(label)])


def _show_image(ax: Axes, image: np.ndarray) -> None:
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _show_perturbation(ax: Axes, perturbation: np.ndarray, scale: float) -> None:
    """Grey images: a diverging colour map (red up, blue down); colour images: 0.5 grey ± the scaled change."""
    if perturbation.ndim == 2:
        ax.imshow(perturbation, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
    else:
        ax.imshow(np.clip(0.5 + 0.5 * perturbation / scale, 0.0, 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _examples_title(attack: Any, eps: Any, model_name: str | None) -> str:
    what = " ".join(part for part in (None if attack is None else str(attack),
                                      None if eps is None else f"ε={float(eps):g}") if part)
    title = f"adversarial examples{f' ({what})' if what else ''}"
    return f"{model_name}: {title}" if model_name else title


def _minimal_eps_values(values: Any) -> tuple[np.ndarray, str | None]:
    """(N,) minimal eps (``inf``: never fooled) and the norm, if ``values`` is a curve that has one."""
    if _is_evaluation(values):
        values = values.worst_case
    if hasattr(values, "robust_mask"):
        return _grid_minimal_eps(values), getattr(values, "norm", None)
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise TypeError(f"values must be minimal epsilons (N,) or a curve with a robust_mask; "
                        f"got {type(values).__name__}")
    items = list(values)
    if not items:
        raise ValueError("values is empty: pass the minimal eps of at least one example")
    try:
        array = np.array([math.inf if item is None else item for item in items], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"values must be numbers (or None: never fooled): {error}") from None
    if array.ndim != 1:
        raise ValueError(f"values must be one minimal eps per example, (N,); got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"values holds NaN at index {int(np.flatnonzero(np.isnan(array))[0])}: "
                         "use inf (or None) for an example never fooled")
    return array, None


def _grid_minimal_eps(curve: Any) -> np.ndarray:
    """Per example, the smallest eps of the curve's grid at which it is not robust; inf if none."""
    return minimal_eps_on_grid(curve.epsilons, curve.robust_mask)