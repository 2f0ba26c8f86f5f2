"""Reports of a finished run: ``DIR/report.html``, ``DIR/report.md`` and ``DIR/figures/*.png``.

Reporting only reads ``DIR/results.json`` and the files it references; it never runs an
attack or touches TensorFlow, so a report rebuilds in seconds.
"""

from __future__ import annotations

from pathlib import Path

from advrobust import __version__
from advrobust.files import atomic_write_text
from advrobust.reporting.html import render_html
from advrobust.reporting.markdown import render_markdown
from advrobust.reporting.plots import write_figures
from advrobust.reporting.results import Run, load_run

__all__ = ["build_report", "load_run", "Run"]


def build_report(run_dir: str | Path) -> dict[str, Path]:
    """Render the report of the run in ``run_dir`` from its ``results.json``.

    Returns the written paths: ``"html"`` (report.html, self-contained), ``"markdown"``
    (report.md, linking the PNGs) and one entry per figure, keyed by its file name
    without ``.png``. Raises FileNotFoundError when results.json is missing and
    ValueError when it is not a JSON object; missing or malformed fields inside it are
    listed in the report instead.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    figures = write_figures(run, run_dir / "figures")
    paths = {"html": atomic_write_text(run_dir / "report.html", render_html(run, figures, version=__version__)),
             "markdown": atomic_write_text(run_dir / "report.md",
                                           render_markdown(run, figures, report_dir=run_dir, version=__version__))}
    paths.update({figure.path.stem: figure.path for figure in figures.values()})
    return paths
