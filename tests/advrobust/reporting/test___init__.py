"""advrobust.reporting.build_report: reports rendered from a synthetic results.json: content,
escaping, figures, self-containment."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from advrobust.reporting import build_report, load_run
from advrobust.results.schema import SchemaError
from tests.advrobust.reporting.conftest import EPS, MATH_NAME, PAIRED, SCRIPT_NAME, write_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# defended minus baseline in percentage points: clean, then each eps
EXPECTED_DELTAS = ["-1.0", "-1.0", "+12.0", "+41.0", "+50.0", "+20.0"]
EXPECTED_PAIRED_CELLS = ["-2.1 to +0.1", "-2.1 to +0.1", "+9.0 to +15.0", "+36.0 to +46.0", "+45.0 to +55.0", "—"]
EXPECTED_P_CELLS = ["0.08", "0.08", "1e-06", "1e-20", "3e-30", "—"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run_dir = write_run(tmp_path_factory.mktemp("run"))
    paths = build_report(run_dir)
    return run_dir, paths, paths["html"].read_text(encoding="utf-8"), paths["markdown"].read_text(encoding="utf-8")


def test_report_files_exist_and_mention_every_model(report):
    run_dir, paths, page, markdown = report
    assert paths["html"] == run_dir / "report.html" and paths["markdown"] == run_dir / "report.md"
    for name in ("baseline-cnn", "nsl-cnn"):
        assert name in page and name in markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown
    assert "_$\\frac{bad | *math*" not in markdown  # table-breaking characters are escaped there
    assert "$\\frac{bad | *math*" in page
    for n in (500, 200, 100):  # test images per model, which differ
        assert f"<td class=\"num\">{n}</td>" in page and f"| {n} |" in markdown


def test_user_strings_are_escaped_everywhere(report):
    _, _, page, markdown = report
    assert SCRIPT_NAME not in page and "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    assert "<b>bold?</b>" not in page and "&lt;b&gt;bold?&lt;/b&gt;" in page
    assert "CPU &lt;x86&gt;" in page
    assert SCRIPT_NAME not in markdown.split("```json")[0]  # outside the config code block, which shows it verbatim
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page


def test_failed_check_is_in_the_warning_box_and_the_model_section(report):
    _, _, page, markdown = report
    box = re.search(r'<div class="box warning"[^>]*>(.*?)</div>', page, re.S)
    assert box is not None and page.index(box.group(0)) < page.index('id="summary"')
    assert "1 failed check" in box.group(1)
    assert "nsl-cnn" in box.group(1) and "gradient masking" in box.group(1) and "FGSM stronger than PGD" in box.group(1)
    assert "accuracy falls with eps" not in box.group(1)  # passed checks stay out of the box
    section = page[page.index('id="model-2"'):page.index('id="model-3"')]
    assert '<td class="bad">FAILED</td>' in section and "gradient masking" in section
    assert markdown.index("failed check") < markdown.index("## Summary")
    assert "> - nsl-cnn: **gradient masking**: FGSM stronger than PGD" in markdown


def test_baseline_vs_defended_deltas(report):
    run_dir, _, page, markdown = report
    comparisons = load_run(run_dir).comparisons()
    assert [c.defended.name for c in comparisons] == ["nsl-cnn", MATH_NAME]
    nsl = comparisons[0]
    assert [row.eps for row in nsl.rows] == [None] + EPS
    assert [row.points for row in nsl.rows] == pytest.approx([-1.0, -1.0, 12.0, 41.0, 50.0, 20.0])
    assert "| Δ (percentage points) | " + " | ".join(EXPECTED_DELTAS) + " |" in markdown
    html_row = re.search(r"<td>Δ \(percentage points\)</td>(.*?)</tr>", page)
    assert html_row is not None
    assert re.findall(r">([+-]\d+\.\d)</td>", html_row.group(1)) == EXPECTED_DELTAS
    assert '<td class="num up">+41.0</td>' in html_row.group(1)
    assert comparisons[1].baseline is None and "ghost" in comparisons[1].problem
    assert "is not among the models of this run" in page


def test_paired_intervals_and_p_values_join_the_deltas(report):
    run_dir, _, page, markdown = report
    run = load_run(run_dir)
    nsl = run.comparisons()[0]
    assert [None if row.paired is None else (row.paired.ci95_low, row.paired.ci95_high) for row in nsl.rows] == [
        pytest.approx((low, high)) for _, low, high, _ in PAIRED] + [None]
    assert "| Δ 95% CI, paired per image | " + " | ".join(EXPECTED_PAIRED_CELLS) + " |" in markdown
    assert "| McNemar exact p | " + " | ".join(EXPECTED_P_CELLS) + " |" in markdown
    html_row = re.search(r"<td>Δ 95% CI, paired per image</td>(.*?)</tr>", page)
    assert html_row is not None and re.findall(r">([^<]*)</td>", html_row.group(1)) == EXPECTED_PAIRED_CELLS
    assert "Newcombe" in page and "McNemar" in markdown


def test_figures_are_png_with_safe_names(report):
    run_dir, paths, page, markdown = report
    figures = [path for key, path in paths.items() if key not in ("html", "markdown")]
    names = {path.name for path in figures}
    # two datasets; four attack figures; examples, minimal eps and training where data exists
    assert len([n for n in names if n.startswith("dataset-")]) == 2
    assert len([n for n in names if n.endswith("-attacks.png")]) == 4
    assert {"model-2-nsl-cnn-examples.png", "model-1-baseline-cnn-minimal-eps.png",
            "model-1-baseline-cnn-training.png"} <= names
    for path in figures:
        assert path.parent == run_dir / "figures" and re.fullmatch(r"[A-Za-z0-9_.-]+", path.name)
        assert path.read_bytes().startswith(PNG_SIGNATURE)
        assert f"](figures/{path.name})" in markdown
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == sorted(names)  # no temp files left
    assert page.count('src="data:image/png;base64,') == len(figures)


def test_html_is_self_contained(report):
    _, _, page, _ = report
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert all(value.startswith("data:image/png;base64,") for value in re.findall(r'src="([^"]*)"', page))
    assert all(value.startswith("#") for value in re.findall(r'href="([^"]*)"', page))
    assert "<link" not in page and "@import" not in page


def test_report_states_missing_files_and_renders_summary_numbers(report):
    _, _, page, markdown = report
    assert "examples/missing.npz" in page  # listed as a note
    assert "8 examples, 3 never fooled" in page  # null: robust at every eps of the grid
    assert "Training curves" in page and "Adversarial examples" in page
    assert "Note: grid points: upper bounds." in page
    assert "<th>Worst case over</th><td>fgsm, pgd</td>" in page
    section = page[page.index('id="model-2"'):page.index('id="model-3"')]
    assert "<td>transfer from baseline-cnn</td>" in section and "ε=0.9: 0.0% [0.0, 0.8]" in section
    summary = page[page.index('id="summary"'):page.index('id="comparisons"')]
    assert '<td class="num">92.0%</td>' in summary and '<td class="num">40.0%</td>' in summary


def test_a_rebuilt_report_drops_stale_figures(report, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(report[0], run_dir)  # the full report's figures are there, to go stale
    first = report[1]
    assert (run_dir / "figures" / "model-2-nsl-cnn-examples.png").exists()
    results = json.loads((run_dir / "results.json").read_text())
    for model in results["models"]:
        model.update(examples=None, baseline=None, card="models/none.json")
        model.pop("paired_vs_baseline", None)
    (run_dir / "results.json").write_text(json.dumps(results))
    paths = build_report(run_dir)
    page = paths["html"].read_text(encoding="utf-8")
    assert "nsl-cnn" in page and "No model in this run names a baseline." in page
    assert "Adversarial examples" not in page and "Training curves" not in page
    assert "cannot read the model card models/none.json" in page
    assert not (run_dir / "figures" / "model-2-nsl-cnn-examples.png").exists()  # stale figure removed
    assert set(first) - set(paths) == {"model-2-nsl-cnn-examples", "model-1-baseline-cnn-training"}
    assert paths["markdown"].exists()


def test_missing_or_unreadable_results_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        build_report(tmp_path / "nowhere")
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(SchemaError, match="results.json: expected an object, got list"):
        build_report(tmp_path)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["models"][1]["curves"][0].update(robust_accuracy=[0.1, None]),
     r"models\[1\]\.curves\[0\]\.robust_accuracy\[1\]: None is not a fraction"),
    (lambda r: r["models"][0].update(name=7), r"models\[0\]\.name: expected str, got 7"),
    (lambda r: r.update(schema_version=9), "schema_version: expected 1, got 9"),
    (lambda r: r["models"][3].pop("minimal_eps"), r"models\[3\]: missing 'minimal_eps'"),
    (lambda r: r["models"][2]["per_class"][1].update(n_examples="?"),
     r"models\[2\]\.per_class\[1\]\.n_examples: expected int"),
])
def test_a_malformed_results_json_is_refused_with_the_path_of_the_problem(report, tmp_path, mutate, message):
    results = json.loads((report[0] / "results.json").read_text())
    mutate(results)
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(SchemaError, match=message):
        build_report(tmp_path)


def test_per_class_table_names_the_classes_and_marks_the_weakest(report):
    _, _, page, markdown = report
    assert "#### Per class" in markdown and "<h4>Per class</h4>" in page
    rows = [line for line in markdown.splitlines() if line.startswith(("| Trouser", "| **Shirt"))]
    assert rows[0].startswith("| Trouser | 100 | 97.0% | 90.0% \\[82.6, 94.5\\] |") and " 20.0% \\[" in rows[0]
    assert rows[1].startswith("| **Shirt** | **100** | **61.0%** | **50.0% \\[")  # weakest at eps 0.3: marked
    assert "ε=0 |" not in markdown.split("#### Per class")[1].split("\n\n")[2]  # eps 0 repeats the clean column
    assert '<td class="bad">Shirt</td>' in page
    assert "no per_class or outcomes, written before the run kept them" in page  # the older models: noted
    assert markdown.count("#### Per class") == 1  # models without per-class results show no table


def test_a_searched_minimal_eps_shows_its_median_time_and_implied_robust_accuracy(report, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(report[0], run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    results["models"][0]["minimal_eps"] = {
        "attack": "minimal_epsilon", "norm": "inf", "values": [0.0, 0.03, 0.05, 0.08, 0.15, 0.25, None, None],
        "note": "distance of the closest adversarial example found", "params": {"steps": 10, "n_examples": 8},
        "seconds": 4.0}
    (run_dir / "results.json").write_text(json.dumps(results))
    paths = build_report(run_dir)
    markdown = paths["markdown"].read_text(encoding="utf-8")
    section = markdown[markdown.index("#### Minimal ε per example"):]
    assert "median minimal ε 0.115" in section and "4.0 s (0.5 s per example)" in section
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert "Implied by minimal ε (8 images)" in rows[0] and "Worst case over the attacks (500 images)" in rows[0]
    # eps 0.0, 0.05, 0.1, 0.2, 0.3: the share of values above each, beside the baseline's worst case
    assert [row.split("|")[2].strip() for row in rows[1:6]] == ["87.5%", "62.5%", "50.0%", "37.5%", "25.0%"]
    assert [row.split("|")[3].strip() for row in rows[1:6]] == ["99.0%", "80.0%", "40.0%", "5.0%", "0.0%"]
    assert "beside the worst case over the attacks" in paths["html"].read_text(encoding="utf-8")


def test_each_check_links_to_its_explanation_in_the_report(tmp_path):
    run_dir = write_run(tmp_path / "run")
    results = json.loads((run_dir / "results.json").read_text())
    results["models"][0]["checks"] = [{"name": "large eps (inf 1)", "passed": True, "detail": "fine"},
                                      {"name": "unbounded (deepfool)", "passed": False, "detail": "left 9 of 10"}]
    (run_dir / "results.json").write_text(json.dumps(results))
    paths = build_report(run_dir)
    page, markdown = paths["html"].read_text(encoding="utf-8"), paths["markdown"].read_text(encoding="utf-8")
    for anchor, title in (("check-large-eps", "Check: large eps"), ("check-unbounded", "Check: unbounded")):
        assert f'<a href="#{anchor}">' in page and f'<h3 id="{anchor}">{title}</h3>' in page
        assert f"](#{anchor})" in markdown and f"### {title}" in markdown  # GitHub's anchor of the heading
    assert "docs/guide/report.md#check-unbounded" in page and "An attack without a radius" in page
    assert page.count("<h3 id=\"check-") == 2  # only the checks the run has; "gradient masking" is none
