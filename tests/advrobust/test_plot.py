"""advrobust.plot: each figure draws exactly its input, in every documented form, without
pyplot or TensorFlow, and rejects bad input with an error that names it."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import matplotlib.figure
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba

from advrobust import plot
from advrobust.evaluation.stats import wilson_interval
from tests.advrobust.conftest import legend_labels
from tests.conftest import run_python

pytestmark = pytest.mark.filterwarnings("error")

EPS = np.array([0.0, 0.1, 0.2, 0.3])
N = 50


@dataclass(frozen=True)
class FakeCurve:
    """The fields of advrobust.evaluation.Curve that plotting reads, without TensorFlow."""

    attack: str
    epsilons: np.ndarray
    robust_accuracy: np.ndarray
    ci95_low: np.ndarray
    ci95_high: np.ndarray
    norm: str = "inf"
    robust_mask: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FakeEvaluation:
    curves: tuple
    worst_case: FakeCurve


def make_curve(attack: str, robust: list[int], *, norm: str = "inf", eps=EPS) -> FakeCurve:
    """A curve whose example ``i`` is robust at the first ``robust[i]`` epsilons."""
    mask = np.arange(len(eps))[:, None] < np.asarray(robust)[None, :]
    counts = mask.sum(axis=1)
    low, high = wilson_interval(counts, mask.shape[1])
    return FakeCurve(attack, np.asarray(eps, dtype=float), counts / mask.shape[1], low, high, norm, mask)


def falling(attack: str = "pgd", *, shift: int = 0, norm: str = "inf") -> FakeCurve:
    return make_curve(attack, [(i + shift) % (len(EPS) + 1) for i in range(N)], norm=norm)


def bands(ax) -> list[PolyCollection]:
    return [artist for artist in ax.collections if isinstance(artist, PolyCollection)]


def assert_band(collection: PolyCollection, curve: FakeCurve) -> None:
    vertices = {tuple(np.round(point, 9)) for point in collection.get_paths()[0].vertices}
    for eps, low, high in zip(curve.epsilons, curve.ci95_low, curve.ci95_high):
        assert (round(eps, 9), round(100 * low, 9)) in vertices and (round(eps, 9), round(100 * high, 9)) in vertices


def test_a_single_curve_is_one_line_in_percent_with_its_band():
    curve = falling()
    fig = plot.curves(curve)
    assert type(fig) is matplotlib.figure.Figure
    (ax,) = fig.axes
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_xdata(), EPS)
    np.testing.assert_allclose(line.get_ydata(), 100 * curve.robust_accuracy)
    (band,) = bands(ax)
    assert_band(band, curve)
    assert to_rgba(band.get_facecolor()[0], alpha=1) == to_rgba(line.get_color())
    assert legend_labels(ax) == ["pgd"]
    assert ax.get_xlabel() == "ε (L∞)" and ax.get_ylabel() == "robust accuracy (%)"
    assert ax.get_ylim() == (-2, 102)


def test_a_list_is_labelled_by_attack_and_by_norm_when_norms_differ():
    same = plot.curves([falling("fgsm"), falling("pgd", shift=2)]).axes[0]
    assert legend_labels(same) == ["fgsm", "pgd"] and same.get_xlabel() == "ε (L∞)"
    assert len(same.lines) == 2 and len(bands(same)) == 2
    assert same.lines[0].get_color() != same.lines[1].get_color()
    mixed = plot.curves((falling("pgd"), falling("pgd", norm="l2"))).axes[0]
    assert legend_labels(mixed) == ["pgd (L∞)", "pgd (L2)"] and mixed.get_xlabel() == "ε"


def test_a_mapping_draws_one_labelled_line_and_band_per_curve():
    drawn = {"baseline": falling(shift=1), "defended": falling(shift=3), "third": falling(shift=4)}
    ax = plot.curves(drawn, title="MNIST").axes[0]
    assert legend_labels(ax) == list(drawn) and ax.get_title() == "MNIST"
    for line, band, curve in zip(ax.lines, bands(ax), drawn.values(), strict=True):
        np.testing.assert_allclose(line.get_ydata(), 100 * curve.robust_accuracy)
        assert_band(band, curve)


def test_a_model_evaluation_draws_its_attacks_then_the_worst_case_dashed_without_band():
    attacks = (falling("fgsm", shift=3), falling("pgd", shift=1))
    worst = falling("worst_case")
    ax = plot.curves(FakeEvaluation(attacks, worst)).axes[0]
    assert legend_labels(ax) == ["fgsm", "pgd", "worst case"]
    assert len(bands(ax)) == 2
    last = ax.lines[-1]
    np.testing.assert_allclose(last.get_ydata(), 100 * worst.robust_accuracy)
    assert last.get_linestyle() == "--" and to_rgba(last.get_color()) == to_rgba("black")


def test_a_mapping_of_model_evaluations_draws_each_models_worst_case():
    results = {"cnn": FakeEvaluation((falling(),), falling(shift=1)),
               "nsl": FakeEvaluation((falling(),), falling(shift=3))}
    ax = plot.curves(results).axes[0]
    assert legend_labels(ax) == ["cnn", "nsl"]
    for line, evaluation in zip(ax.lines, results.values(), strict=True):
        np.testing.assert_allclose(line.get_ydata(), 100 * evaluation.worst_case.robust_accuracy)


def test_the_real_curve_and_model_evaluation_are_drawn():
    from advrobust.evaluation import Curve, ModelEvaluation, worst_case

    def real(attack: str, fake: FakeCurve) -> Curve:
        return Curve(attack, "inf", {}, fake.epsilons, fake.robust_accuracy, fake.ci95_low, fake.ci95_high, N,
                     float(fake.robust_accuracy[0]), 1.0, fake.robust_mask, fake.robust_mask[0])

    attacks = (real("fgsm", falling(shift=2)), real("pgd", falling(shift=1)))
    evaluation = ModelEvaluation(attacks[0].clean_accuracy, N, attacks, worst_case(attacks))
    ax = plot.curves(evaluation).axes[0]
    assert legend_labels(ax) == ["fgsm", "pgd", "worst case"]
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), 100 * evaluation.worst_case.robust_accuracy)
    histogram = plot.minimal_eps(evaluation, kind="histogram").axes[0]
    fooled = (~evaluation.worst_case.robust_mask).any(axis=0)
    assert sum(patch.get_height() for patch in histogram.patches) == fooled.sum() > 0


def test_drawing_on_a_given_ax_adds_to_it_and_returns_its_figure():
    fig = matplotlib.figure.Figure()
    ax = fig.add_subplot()
    assert plot.curves(falling(), ax=ax) is fig
    assert plot.curves({"worst case": falling(shift=2)}, ax=ax, color="black", linestyle="--", band=False) is fig
    assert len(ax.lines) == 2 and len(bands(ax)) == 1
    assert to_rgba(ax.lines[1].get_color()) == to_rgba("black") and legend_labels(ax) == ["pgd", "worst case"]
    inner = fig.subfigures(1, 2)[1].add_subplot()
    assert plot.curves(falling(), ax=inner) is fig


def test_the_band_covers_only_epsilons_with_known_bounds_and_nan_accuracy_is_a_gap():
    curve = falling()
    low = curve.ci95_low.copy()
    low[1] = np.nan
    accuracy = curve.robust_accuracy.copy()
    accuracy[2] = np.nan
    ax = plot.curves(FakeCurve("pgd", EPS, accuracy, low, curve.ci95_high)).axes[0]
    xs = {round(x, 9) for x in bands(ax)[0].get_paths()[0].vertices[:, 0]}
    assert 0.1 not in xs and {0.0, 0.2, 0.3} <= xs
    assert np.isnan(ax.lines[0].get_ydata()[2])


@pytest.mark.parametrize("bad, error, message", [
    ([], ValueError, "empty"),
    ({}, ValueError, "empty"),
    (FakeEvaluation((), falling()), ValueError, "empty"),
    ("pgd", TypeError, "got str"),
    (3.5, TypeError, "got float"),
    ([falling(), object()], TypeError, r"curves\[1\] is a object, not a curve: it has no epsilons"),
    ({1: falling()}, TypeError, "labels must be str"),
    (FakeCurve("pgd", EPS, np.ones(3), np.ones(4), np.ones(4)), ValueError,
     "lengths epsilons 4, robust_accuracy 3, ci95_low 4, ci95_high 4"),
    (FakeCurve("pgd", EPS[None], np.ones((1, 4)), np.ones(4), np.ones(4)), ValueError, r"epsilons must be 1-D"),
    (FakeCurve("pgd", np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)), ValueError, "has no epsilons"),
])
def test_curves_rejects_what_it_cannot_draw(bad, error, message):
    with pytest.raises(error, match=message):
        plot.curves(bad)


def example_arrays(m: int = 5, shape: tuple[int, ...] = (6, 7)) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = rng.random((m, *shape))
    x_adv = np.clip(x + rng.uniform(-0.1, 0.1, x.shape), 0, 1)
    y = np.arange(m) % 10
    return {"x": x, "x_adv": x_adv, "y": y, "pred_clean": y.copy(), "pred_adv": (y + np.arange(m) % 2) % 10}


def images_of(fig) -> list[np.ndarray]:
    return [image.get_array() for ax in fig.axes for image in ax.images]


def test_examples_draws_clean_adversarial_and_perturbation_rows_with_predictions():
    arrays = example_arrays()
    fig = plot.examples(**arrays, class_names=[f"c{i}" for i in range(10)], attack="pgd", eps=0.1,
                        model_name="cnn")
    assert type(fig) is matplotlib.figure.Figure
    assert len(fig.axes) == 15 and all(len(ax.images) == 1 for ax in fig.axes)
    grid = np.array(fig.axes).reshape(3, 5)
    scale = np.max(np.abs(arrays["x_adv"] - arrays["x"]))
    for column in range(5):
        np.testing.assert_allclose(grid[0, column].images[0].get_array(), arrays["x"][column])
        np.testing.assert_allclose(grid[1, column].images[0].get_array(), arrays["x_adv"][column])
        np.testing.assert_allclose(grid[2, column].images[0].get_array(), arrays["x_adv"][column] - arrays["x"][column])
        assert grid[2, column].images[0].get_clim() == pytest.approx((-scale, scale))
        assert grid[0, column].get_title() == f"true c{column}\npred c{column}"
        wrong = column % 2 == 1
        assert grid[1, column].get_title() == f"pred c{arrays['pred_adv'][column]}"
        assert to_rgba(grid[1, column].title.get_color()) == to_rgba("#b00020" if wrong else "black")
    assert fig.get_suptitle() == "cnn: adversarial examples (pgd ε=0.1)"
    assert grid[2, 0].get_ylabel() == f"perturbation\n(±{scale:.3g} → full scale)"


def test_examples_shows_at_most_max_examples_and_names_classes_by_function():
    fig = plot.examples(**example_arrays(m=12), max_examples=4, class_names=lambda label: f"<{label}>",
                        perturbation_scale=0.5)
    assert len(images_of(fig)) == 12  # 3 rows x 4
    assert fig.axes[0].get_title() == "true <0>\npred <0>" and fig.get_suptitle() == "adversarial examples"
    assert fig.axes[8].images[0].get_clim() == (-0.5, 0.5)


def test_examples_reads_the_runs_npz_and_single_channel_or_rgb_images():
    arrays = example_arrays(m=3, shape=(6, 6, 1))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, eps=np.float64(0.25), attack=np.str_("fgsm"))
    buffer.seek(0)
    with np.load(buffer) as archive:
        fig = plot.examples(**archive)
    assert len(images_of(fig)) == 9 and fig.get_suptitle() == "adversarial examples (fgsm ε=0.25)"
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), arrays["x"][0, ..., 0])
    rgb = plot.examples(**example_arrays(m=2, shape=(4, 4, 3)))
    assert all(image.shape == (4, 4, 3) for image in images_of(rgb))


def test_examples_draws_into_a_given_subfigure_and_returns_the_top_figure():
    fig = matplotlib.figure.Figure()
    left, right = fig.subfigures(1, 2)
    assert plot.examples(**example_arrays(m=2), fig=right) is fig
    assert len(right.axes) == 6 and not left.axes


@pytest.mark.parametrize("change, message", [
    ({"x_adv": np.zeros((5, 6, 8))}, r"x_adv must have the shape of x \(5, 6, 7\)"),
    ({"y": np.arange(4)}, r"y must hold one class per image, shape \(5,\)"),
    ({"pred_adv": np.zeros((5, 1))}, r"pred_adv must hold one class per image"),
    ({"x": np.zeros((5, 6)), "x_adv": np.zeros((5, 6))}, r"x must be images"),
    ({"x": np.zeros((0, 6, 7)), "x_adv": np.zeros((0, 6, 7)), "y": [], "pred_clean": [], "pred_adv": []},
     "no example"),
    ({"max_examples": 0}, "max_examples must be at least 1"),
    ({"perturbation_scale": 0.0}, "perturbation_scale must be positive"),
    ({"class_names": ["zero", "one"]}, r"class_names has 2 names, so none for class\(es\) \[2, 3, 4\]"),
])
def test_examples_rejects_inconsistent_input(change, message):
    with pytest.raises(ValueError, match=message):
        plot.examples(**{**example_arrays(), **change})


VALUES = [0.05, None, 0.1, 0.1, float("inf"), 0.3, 0.02, 0.1]  # two never fooled


def test_minimal_eps_cdf_steps_to_the_fraction_fooled():
    fig = plot.minimal_eps(VALUES, norm="l2")
    assert type(fig) is matplotlib.figure.Figure
    (ax,) = fig.axes
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_xdata(), [0.0, 0.02, 0.05, 0.1, 0.1, 0.1, 0.3])
    np.testing.assert_allclose(line.get_ydata(), 100 * np.arange(7) / 8)
    assert ax.get_xlabel() == "minimal ε (L2)" and ax.get_title() == "cumulative distribution"


def test_minimal_eps_robust_is_the_share_not_fooled_at_or_below_eps():
    ax = plot.minimal_eps(VALUES, kind="robust").axes[0]
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_xdata(), [0.0, 0.02, 0.05, 0.1, 0.1, 0.1, 0.3])
    np.testing.assert_allclose(line.get_ydata(), 100 - 100 * np.arange(7) / 8)
    assert ax.get_ylabel() == "robust accuracy (%)" and ax.get_title() == "implied robust accuracy"


def test_minimal_eps_histogram_counts_the_fooled_and_titles_the_never_fooled():
    ax = plot.minimal_eps(VALUES, kind="histogram", bins=3).axes[0]
    assert [patch.get_height() for patch in ax.patches] == [5, 0, 1]
    assert ax.get_title() == "histogram (2 of 8 never fooled)" and ax.get_xlabel() == "minimal ε"


def test_minimal_eps_of_a_curve_is_the_smallest_grid_eps_where_not_robust():
    eps = np.array([0.3, 0.0, 0.1])  # unsorted on purpose
    robust = np.array([[1, 0, 0, 1], [1, 1, 0, 1], [0, 1, 0, 1]], dtype=bool)  # rows: eps; columns: examples
    curve = FakeCurve("pgd", eps, robust.mean(1), robust.mean(1), robust.mean(1), "inf", robust)
    ax = plot.minimal_eps(curve).axes[0]
    # example 0: fooled at 0.1; 1: at 0.3; 2: at 0.0; 3: never
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0.0, 0.0, 0.1, 0.3])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0, 25, 50, 75])
    assert ax.get_xlabel() == "minimal ε (L∞)"


def test_minimal_eps_on_a_given_ax_and_when_nothing_is_fooled():
    fig = matplotlib.figure.Figure()
    ax = fig.add_subplot()
    assert plot.minimal_eps([None, float("inf")], ax=ax, kind="histogram", title="") is fig
    assert not ax.patches and [text.get_text() for text in ax.texts] == ["never fooled"] and ax.get_title() == ""


@pytest.mark.parametrize("bad, kind, error, message", [
    ([0.1], "pdf", ValueError, "kind must be one of cdf, histogram, robust; got 'pdf'"),
    ([], "cdf", ValueError, "values is empty"),
    ([0.1, float("nan")], "cdf", ValueError, "NaN at index 1: use inf"),
    ([[0.1, 0.2]], "cdf", ValueError, r"got shape \(1, 2\)"),
    (["a"], "cdf", TypeError, "values must be numbers"),
    ("0.1", "cdf", TypeError, "got str"),
    (FakeCurve("pgd", EPS, EPS, EPS, EPS, "inf", np.ones((3, 2), dtype=bool)), "cdf", ValueError,
     r"robust_mask must be \(K, N\) with K = 4"),
])
def test_minimal_eps_rejects_what_it_cannot_draw(bad, kind, error, message):
    with pytest.raises(error, match=message):
        plot.minimal_eps(bad, kind=kind)


def test_plotting_imports_neither_tensorflow_nor_pyplot():
    code = f"""
import io, json, sys
from types import SimpleNamespace
import numpy as np
import advrobust.plot as plot
eps = np.array([0.0, 0.1, 0.2])
curve = SimpleNamespace(attack="pgd", norm="inf", epsilons=eps, robust_accuracy=np.array([0.9, 0.5, 0.1]),
                        ci95_low=np.array([0.8, 0.4, 0.05]), ci95_high=np.array([0.95, 0.6, 0.2]),
                        robust_mask=np.array([[1, 1], [1, 0], [0, 0]], dtype=bool))
arrays = {repr({k: v.tolist() for k, v in example_arrays(m=2).items()})}
figures = [plot.curves(curve), plot.curves(SimpleNamespace(curves=[curve], worst_case=curve)),
           plot.examples(**{{k: np.array(v) for k, v in arrays.items()}}), plot.minimal_eps(curve),
           plot.minimal_eps([0.1, None], kind="histogram")]
for figure in figures:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")  # what Jupyter's inline display does with a returned Figure
    assert buffer.getvalue().startswith(b"\\x89PNG")
print(json.dumps({{"tensorflow": "tensorflow" in sys.modules, "pyplot": "matplotlib.pyplot" in sys.modules,
                  "types": sorted({{type(f).__module__ + "." + type(f).__name__ for f in figures}})}}))
"""
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {"tensorflow": False, "pyplot": False, "types": ["matplotlib.figure.Figure"]}


@dataclass(frozen=True)
class FakeCertified:
    """What advrobust.certify.certified_accuracy_curve returns, as plotting reads it."""

    method: str
    epsilons: np.ndarray
    certified_accuracy: np.ndarray
    ci95_low: np.ndarray
    ci95_high: np.ndarray
    norm: str = "inf"


def test_the_bracket_shades_from_the_best_certified_curve_to_the_attacked_one():
    attacked = make_curve("worst_case", [4] * 30 + [2] * 20)  # 100% 100% 60% 60%
    ibp = make_curve("ibp", [4] * 10 + [1] * 40)
    crown = FakeCertified("crown_ibp", EPS, np.array([1.0, 0.8, 0.5, 0.3]), np.zeros(4), np.ones(4))
    fig = plot.bracket([ibp, crown], attacked, title="bracket")
    ax = fig.axes[0]
    assert legend_labels(ax) == ["undecided: robust accuracy lies here", "attacks (worst case)",
                                 "verified, ibp", "verified, crown_ibp"]
    (shade,) = bands(ax)
    vertices = {tuple(np.round(point, 9)) for point in shade.get_paths()[0].vertices}
    for eps, low, high in zip(EPS, [100.0, 80.0, 50.0, 30.0], [100.0, 100.0, 60.0, 60.0]):
        assert (round(eps, 9), low) in vertices and (round(eps, 9), high) in vertices
    assert ax.get_xlabel() == "ε (L∞)" and ax.get_title() == "bracket"


def test_the_bracket_needs_the_same_epsilons():
    attacked = make_curve("worst_case", [4] * 50)
    other = make_curve("ibp", [2] * 50, eps=np.array([0.0, 0.05, 0.2, 0.3]))
    with pytest.raises(ValueError, match="a bracket needs both at the same epsilons"):
        plot.bracket({"ibp": other}, attacked)
    with pytest.raises(TypeError, match="not a curve"):
        plot.bracket([object()], attacked)
