"""advrobust.reporting.plots: the report's figures are drawn through advrobust.plot."""

from __future__ import annotations

import json

import pytest

from advrobust import plot
from tests.advrobust.conftest import legend_labels
from tests.advrobust.reporting.conftest import write_run

pytestmark = pytest.mark.filterwarnings("error")


def test_the_report_draws_its_curves_examples_and_minimal_eps_through_advrobust_plot(tmp_path, monkeypatch):
    from advrobust.reporting import build_report

    run_dir = write_run(tmp_path / "run")
    results = json.loads((run_dir / "results.json").read_text())
    twin = json.loads(json.dumps(results["models"][0]))
    twin["curves"] += [{**twin["curves"][1], "robust_accuracy": [0.5] * 5,  # a second "pgd (L∞)" curve
                        "ci95_low": [0.45] * 5, "ci95_high": [0.55] * 5}]
    results["models"].append(twin)  # and a second model named "baseline-cnn"
    (run_dir / "results.json").write_text(json.dumps(results))
    calls: dict[str, list] = {"curves": [], "examples": [], "minimal_eps": []}
    for name, calls_of in calls.items():
        def spy(*args, _draw=getattr(plot, name), _calls=calls_of, **kwargs):
            figure = _draw(*args, **kwargs)
            _calls.append(kwargs.get("ax") or figure.axes[0])
            return figure
        monkeypatch.setattr(plot, name, spy)
    build_report(run_dir)
    with_minimal_eps = sum(1 for model in results["models"] if model.get("minimal_eps"))
    assert len(calls["examples"]) == 1 and len(calls["minimal_eps"]) == 2 * with_minimal_eps  # histogram and cdf
    panels = {id(ax): ax for ax in calls["curves"]}.values()
    mnist = next(ax for ax in panels if ax.get_title().startswith("MNIST"))
    assert legend_labels(mnist) == ["baseline-cnn, n=500", "nsl-cnn, n=500", "baseline-cnn, n=500"]
    twin_panel = [ax for ax in panels if len(ax.lines) == 4]
    assert len(twin_panel) == 1
    assert legend_labels(twin_panel[0]) == ["fgsm (L∞)", "pgd (L∞)", "pgd (L∞)", "worst case"]
