"""The report as one self-contained HTML page.

Figures are embedded as base64 PNG data URIs and the CSS is inline, so the file can be
mailed or archived alone. Every string that comes from the results (model names, config
values, check details, versions) passes through :func:`html.escape`; a Content Security
Policy that allows only inline styles and data: images backs that up, so even a missed
escape could neither run a script nor load anything from the network.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable

from advrobust.reporting.plots import Figure, dataset_key, model_key
from advrobust.reporting.view import Comparison, Model, Run, dataset_title
from advrobust.reporting.tables import (BRACKET_INTRO, BROKEN_INTRO, COMPARISON_INTRO, PER_CLASS_INTRO, Table,
                                        attacks_table, bracket_table, broken_table, check_curves_table, check_link,
                                        checks_table, comparison_table, config_text, curves_table, environment_table,
                                        explained_checks, lede, minimal_eps_summary, minimal_eps_table, model_facts,
                                        per_class_table, summary_table)

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
:root { --ink: #1f2328; --muted: #636c76; --line: #d0d7de; --soft: #f6f8fa; --bad: #b00020;
        --bad-bg: #fff1f0; --good: #1a7f37; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink); line-height: 1.5;
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 28px; margin: 8px 0 4px; }
h2 { font-size: 22px; margin: 40px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 18px; margin: 28px 0 8px; }
h4 { font-size: 15px; margin: 20px 0 6px; color: var(--muted); }
.lede { color: var(--muted); margin: 0 0 16px; }
.box { border-radius: 6px; padding: 12px 16px; margin: 16px 0; border: 1px solid var(--line); background: var(--soft); }
.box.warning { border: 2px solid var(--bad); background: var(--bad-bg); }
.box.warning strong.title { color: var(--bad); font-size: 17px; }
.box ul { margin: 6px 0 0; padding-left: 20px; }
nav ol { columns: 2; margin: 4px 0; padding-left: 20px; }
a { color: var(--accent); }
.scroll { overflow-x: auto; margin: 8px 0 12px; }
table { border-collapse: collapse; font-size: 13.5px; }
th, td { border: 1px solid var(--line); padding: 4px 9px; vertical-align: top; }
thead th { background: var(--soft); text-align: left; white-space: nowrap; }
tbody th { background: var(--soft); text-align: left; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.good { color: var(--good); font-weight: 600; }
td.bad { color: var(--bad); font-weight: 600; }
td.up { color: var(--good); }
td.down { color: var(--bad); }
td.muted { color: var(--muted); }
td.wrap { overflow-wrap: anywhere; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 4px; }
section.model { border: 1px solid var(--line); border-radius: 8px; margin: 24px 0; padding: 4px 20px 12px; }
section.model.failed { border-left: 6px solid var(--bad); }
section.model > h3 { margin-top: 14px; }
.row { display: flex; flex-wrap: wrap; gap: 8px 28px; align-items: flex-start; }
.row > div > h4:first-child { margin-top: 8px; }
.row > .fig { flex: 1 1 520px; min-width: 0; max-width: 700px; }
.badge { display: inline-block; font-size: 12px; font-weight: 600; border-radius: 10px; padding: 1px 9px;
         margin-left: 8px; vertical-align: middle; background: var(--soft); border: 1px solid var(--line); }
.badge.bad { background: var(--bad); color: #fff; border-color: var(--bad); }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 4px; padding: 10px;
      overflow-x: auto; font-size: 12.5px; }
details summary { cursor: pointer; color: var(--accent); }
.name { overflow-wrap: anywhere; }
footer { color: var(--muted); font-size: 13px; margin-top: 48px; border-top: 1px solid var(--line); padding-top: 8px; }
"""


def e(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute.

    Args:
        value: Anything; its ``str()`` is escaped.

    Returns:
        The text with ``&``, ``<``, ``>``, ``"`` and ``'`` as entities.
    """
    return html.escape(str(value), quote=True)


def render_html(run: Run, figures: dict[str, Figure], *, version: str) -> str:
    """The whole report page as a string.

    Args:
        run: The run, as :func:`advrobust.reporting.view.load_run` reads it.
        figures: The written figures, keyed as :func:`advrobust.reporting.plots.write_figures`
            returns them; their PNGs are embedded.
        version: The advrobust version named in the footer.

    Returns:
        A self-contained HTML document (inline CSS, PNGs as data URIs).

    Raises:
        OSError: A figure's PNG cannot be read.
    """
    body = ["<h1>Robustness report</h1>", f'<p class="lede">{e(lede(run))}</p>']
    body += _failed_checks_box(run)
    if run.notes:
        body.append('<div class="box"><strong>Notes on the results file</strong><ul>'
                    + "".join(f"<li>{e(note)}</li>" for note in run.notes) + "</ul></div>")
    body.append(_contents(run))
    body += _summary(run)
    body += _comparisons(run)
    body += _dataset_figures(run, figures)
    body.append('<h2 id="models">Models</h2>')
    for model in run.models:
        body += _model_section(model, figures)
    body += _checks_explained(run)
    body += _environment(run)
    body.append(f"<footer>Generated by advrobust {e(version)} from results.json. Accuracies are fractions of "
                "the test images stated for each model; brackets and bands are 95% Wilson intervals.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>advrobust report{e(_title_suffix(run))}</title>\n<style>{_CSS}</style>\n</head>\n"
            "<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


def _title_suffix(run: Run) -> str:
    return f" ({run.finished})" if run.finished else ""


def _failed_checks_box(run: Run) -> list[str]:
    failed = run.failed_checks
    if not failed:
        return []
    items = "".join(f'<li><a href="#model-{model.index}" class="name">{e(model.name)}</a>: '
                    f"<strong>{_linked(check.name, check_link(check.name))}</strong> — {e(check.detail)}</li>"
                    for model, check in failed)
    return [f'<div class="box warning" role="alert"><strong class="title">⚠ {len(failed)} failed check'
            f"{'s' if len(failed) != 1 else ''}: some numbers below may not be trustworthy</strong>"
            f"<ul>{items}</ul></div>"]


def _linked(text: str, link: str | None) -> str:
    return e(text) if link is None else f'<a href="{e(link)}">{e(text)}</a>'


def _contents(run: Run) -> str:
    entries = [("summary", "Summary"), ("comparisons", "Defended vs baseline"),
               ("curves", "Robust accuracy against ε")]
    entries += [(f"model-{model.index}", f"Model: {model.name}") for model in run.models]
    if explained_checks(run):
        entries.append(("checks", "What the checks mean"))
    entries.append(("environment", "Environment and configuration"))
    return ('<nav class="box"><strong>Contents</strong><ol>'
            + "".join(f'<li><a href="#{anchor}" class="name">{e(text)}</a></li>' for anchor, text in entries)
            + "</ol></nav>")


def table_html(table: Table, *, wrap_last: bool = False) -> str:
    """A table; cells are escaped here. Key/value tables (empty header) get row headers.

    Args:
        table: The table; numeric columns are right-aligned, a cell's tone is its class.
        wrap_last: Let the last column wrap anywhere (long details and parameters).

    Returns:
        The ``<table>`` in a horizontally scrolling ``<div>``.
    """
    key_value = not any(table.header)
    out = ['<div class="scroll"><table>']
    if not key_value:
        out.append("<thead><tr>" + "".join(f"<th>{e(text)}</th>" for text in table.header) + "</tr></thead>")
    out.append("<tbody>")
    for row in table.rows:
        cells = []
        for column, cell in enumerate(row):
            if key_value and column == 0:
                cells.append(f"<th>{e(cell.text)}</th>")
                continue
            classes = [name for name, wanted in (("num", table.is_numeric(column)), (cell.tone, cell.tone is not None),
                                                 ("wrap", wrap_last and column == len(row) - 1)) if wanted]
            attribute = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attribute}>{_linked(cell.text, cell.link)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def figure_html(figure: Figure | None) -> str:
    """A figure with its PNG embedded as a data URI and its caption.

    Args:
        figure: The figure, or None.

    Returns:
        A ``<figure>`` element, or ``""`` for None.

    Raises:
        OSError: The PNG cannot be read.
    """
    if figure is None:
        return ""
    data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{e(figure.caption)}">'
            f"<figcaption>{e(figure.caption)}</figcaption></figure>")


def _summary(run: Run) -> list[str]:
    out = ['<h2 id="summary">Summary</h2>',
           "<p>Clean accuracy and worst-case robust accuracy (the minimum over all attacks run) at each ε. "
           "Each model states how many test images it was evaluated on.</p>"]
    if not run.models:
        out.append("<p>No models in this run.</p>")
    for dataset in run.datasets:
        out.append(f"<h3>{e(dataset_title(dataset))}</h3>")
        out.append(table_html(summary_table(run, dataset)))
    return out


def _comparisons(run: Run) -> list[str]:
    out = ['<h2 id="comparisons">Defended vs baseline</h2>']
    comparisons = run.comparisons()
    if not comparisons:
        return out + ["<p>No model in this run names a baseline.</p>"]
    out.append(f"<p>{e(COMPARISON_INTRO)}</p>")
    for comparison in comparisons:
        out += _comparison(comparison)
    return out


def _comparison(comparison: Comparison) -> list[str]:
    defended = comparison.defended
    title = (f'<h3><span class="name">{e(defended.name)}</span> vs '
             f'<span class="name">{e(defended.baseline)}</span></h3>')
    out = [title]
    if comparison.baseline is not None and comparison.rows:
        out.append(table_html(comparison_table(comparison)))
    if comparison.problem:
        out.append(f"<p><em>{e(comparison.problem)}.</em></p>")
    return out


def _dataset_figures(run: Run, figures: dict[str, Figure]) -> list[str]:
    out = ['<h2 id="curves">Robust accuracy against ε</h2>']
    for dataset in run.datasets:
        figure = figures.get(dataset_key(dataset))
        out.append(f"<h3>{e(dataset_title(dataset))}</h3>")
        out.append(figure_html(figure) if figure else "<p>No worst-case curves for this dataset.</p>")
    return out


def _model_section(model: Model, figures: dict[str, Figure]) -> list[str]:
    failed = model.failed_checks
    badge = (f'<span class="badge bad">{len(failed)} failed check{"s" if len(failed) != 1 else ""}</span>'
             if failed else "")
    checks = table_html(checks_table(model), wrap_last=True) if model.checks else "<p>No checks recorded.</p>"
    if model.check_curves:
        checks += table_html(check_curves_table(model), wrap_last=True)
    out = [f'<section class="model{" failed" if failed else ""}" id="model-{model.index}">',
           f'<h3><span class="name">{e(model.name)}</span>{badge}</h3>',
           f'<div class="row"><div>{table_html(model_facts(model))}</div><div><h4>Checks</h4>{checks}</div></div>',
           "<h4>Robust accuracy per attack</h4>"]
    tables = []
    if model.curves or model.worst_case is not None:
        tables.append(table_html(curves_table(model)))
    tables.append(table_html(attacks_table(model), wrap_last=True) if model.curves
                  else "<p>No attack curves recorded.</p>")
    out.append(f'<div class="row"><div class="fig">{figure_html(figures.get(model_key(model, "attacks")))}</div>'
               f'<div>{"".join(tables)}</div></div>')
    bracketed = bracket_table(model)
    if bracketed is not None:
        out += ["<h4>Certified and attacked: the bracket</h4>", f"<p>{e(BRACKET_INTRO)}</p>",
                f'<div class="row"><div class="fig">{figure_html(figures.get(model_key(model, "bracket")))}</div>'
                f"<div>{table_html(bracketed)}</div></div>"]
    broken = broken_table(model)
    if broken is not None:
        out += ["<h4>Images broken per attack</h4>", f"<p>{e(BROKEN_INTRO)}</p>", table_html(broken)]
    if model.per_class:
        out += ["<h4>Per class</h4>", f"<p>{e(PER_CLASS_INTRO)}</p>", table_html(per_class_table(model))]
    out += _optional(figures.get(model_key(model, "examples")), "Adversarial examples")
    summary, implied = minimal_eps_summary(model), minimal_eps_table(model)
    out += _optional(figures.get(model_key(model, "minimal_eps")), "Minimal ε per example",
                     (f"<p>{e(summary)}</p>" if summary else "") + (table_html(implied) if implied else ""))
    out += _optional(figures.get(model_key(model, "training")), "Training curves")
    out.append("</section>")
    return out


def _optional(figure: Figure | None, heading: str, extra: str = "") -> Iterable[str]:
    if figure is None:
        return []
    return [f"<h4>{e(heading)}</h4>", extra, figure_html(figure)]


def _checks_explained(run: Run) -> list[str]:
    explained = explained_checks(run)
    if not explained:
        return []
    return (['<h2 id="checks">What the checks mean</h2>']
            + [f'<h3 id="{e(anchor)}">{e(title)}</h3><p>{e(text)}</p>' for anchor, title, text in explained])


def _environment(run: Run) -> list[str]:
    out = ['<h2 id="environment">Environment and configuration</h2>', table_html(environment_table(run))]
    out.append("<details><summary>Run configuration (JSON)</summary>"
               f"<pre>{e(config_text(run))}</pre></details>")
    return out
