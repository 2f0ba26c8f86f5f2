"""Reports of a finished run: ``DIR/report.html``, ``DIR/report.md`` and ``DIR/figures/*.png``.

Reporting only reads ``DIR/results.json`` (:mod:`advrobust.results.schema`) and the files
it references (:mod:`advrobust.reporting.view` turns them into what the report shows); it
never runs an attack or touches TensorFlow, so a report rebuilds in seconds.
"""

from __future__ import annotations

from pathlib import Path

from advrobust import __version__
from advrobust.files import atomic_write_text
from advrobust.reporting.html import render_html
from advrobust.reporting.markdown import render_markdown
from advrobust.reporting.plots import write_figures
from advrobust.reporting.view import Run, load_run

__all__ = ["build_report", "load_run", "Run"]


def build_report(run_dir: str | Path) -> dict[str, Path]:
    """Render the report of the run in ``run_dir`` from its ``results.json``.

    Args:
        run_dir: a run folder.

    Returns:
        The written paths: ``"html"`` (report.html, self-contained), ``"markdown"``
        (report.md, linking the PNGs) and one entry per figure, keyed by its file name
        without ``.png``.

    Raises:
        FileNotFoundError: results.json is missing.
        advrobust.results.schema.SchemaError: results.json is not JSON or does not follow
            the schema (read leniently, so older runs still get a report; see
            :func:`advrobust.reporting.view.load_run`). Files it references that cannot
            be read are listed in the report instead.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    figures = write_figures(run, run_dir / "figures")
    paths = {"html": atomic_write_text(run_dir / "report.html", render_html(run, figures, version=__version__)),
             "markdown": atomic_write_text(run_dir / "report.md",
                                           render_markdown(run, figures, report_dir=run_dir, version=__version__))}
    paths.update({figure.path.stem: figure.path for figure in figures.values()})
    return paths
