"""The documentation cannot drift from the code: every code block of README.md and
docs/**/*.md is run or parsed here, and the reference pages are checked against the code.

Code blocks, by the language of their fence:

* ``python``: executed, each page's blocks in order in one namespace, in a temporary
  working folder (so files an example writes do not land in the checkout). Examples
  keep to tiny models and a few hundred test images; the datasets are found as by
  ``advrobust.data.load`` (CI sets ``ADVROBUST_DATA_DIR``).
* ``toml``: a whole run config, validated with ``advrobust.run.config.loads``; a model's
  ``path`` is created (empty) in a temporary folder first, since the config checks that
  the file exists.
* ``bash`` / ``console`` (commands after ``$ ``): each command is checked without being
  run. ``advrobust ...`` is parsed with ``advrobust.cli.build_parser()`` (an unknown flag
  or choice fails) and a config file it names is loaded; ``python SCRIPT.py --flag`` needs
  the script and each flag in it; ``pip install ".[extra]"`` needs each extra in
  pyproject.toml; ``bash FILE`` needs the file.

A block that must not be run carries ``<!-- no-test -->`` on the line before its fence;
at most ``MAX_SKIPPED`` blocks in all may do so (now one: the package diagram on the
home page). Any other language fails.

The reference pages are compared with the code: every attack of ``attacks.ATTACKS`` on
the attacks page, every flag of every subcommand on the CLI page (and no other), every
run-config key with its default, a stable anchor per check of
``advrobust.evaluation.checks``, the performance tables against ``benchmarks/results``,
and the README's time for the quick run against ``quick.toml``. Finally the site builds
with ``mkdocs build --strict`` and loads nothing from the network.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs").rglob("*.md")) + [REPO / "README.md"]
NO_TEST = "<!-- no-test -->"
MAX_SKIPPED = 2
README_MAX_LINES = 120
PYTHON = ("python",)
SHELL = ("bash", "console")
TOML = ("toml",)
# Commands a shell block may hold that need no check beyond their name.
UNCHECKED_COMMANDS = ("export", "cd", "apt-get", "git", ".", "source")

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<language>[\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts, its language, its text, whether it is skipped."""

    page: Path
    line: int
    language: str
    text: str
    skipped: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body, end = [], index + 1
        while end < len(lines) and lines[end].strip() != fence:
            body.append(lines[end][indent:])
            end += 1
        if end == len(lines):
            raise AssertionError(f"{page.relative_to(REPO)}:{index + 1}: code block is never closed")
        previous = lines[index - 1].strip() if index else ""
        blocks.append(Block(page, index + 1, opening["language"], "\n".join(body) + "\n", previous == NO_TEST))
        index = end + 1
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in code_blocks(page)]
TESTED = [block for block in ALL_BLOCKS if not block.skipped]


def _ids(blocks: list[Block]) -> list[str]:
    return [block.where for block in blocks]


def test_every_block_is_tested_or_explicitly_skipped():
    untested = [f"{block.where} ({block.language or 'no language'})" for block in TESTED
                if block.language not in PYTHON + SHELL + TOML]
    assert not untested, ("code blocks in a language this test does not check; use python, toml, bash or "
                          f"console, or mark the block {NO_TEST}: {untested}")


def test_few_blocks_are_skipped():
    skipped = [block.where for block in ALL_BLOCKS if block.skipped]
    assert len(skipped) <= MAX_SKIPPED, f"{len(skipped)} blocks marked {NO_TEST} (at most {MAX_SKIPPED}): {skipped}"


def test_the_docs_have_code_of_every_kind():
    languages = {block.language for block in TESTED}
    assert {"python", "toml", "bash"} <= languages, languages


# ---------------------------------------------------------------------------- python

PYTHON_PAGES = sorted({block.page for block in TESTED if block.language in PYTHON})


# The bad-inputs page saves an H5 file on purpose, to show that loading it is refused.
@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file:UserWarning")
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[str(page.relative_to(REPO)) for page in PYTHON_PAGES])
def test_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for block in (block for block in TESTED if block.page == page and block.language in PYTHON):
        code = compile(block.text, block.where, "exec")
        try:
            exec(code, namespace)  # noqa: S102  (the documentation's own examples)
        except Exception as error:
            raise AssertionError(f"{block.where}: the example raised {type(error).__name__}: {error}") from error


# ---------------------------------------------------------------------------- toml

TOML_BLOCKS = [block for block in TESTED if block.language in TOML]


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=_ids(TOML_BLOCKS))
def test_run_config_examples_are_valid(block, tmp_path):
    from advrobust.run import config

    for model in tomllib.loads(block.text).get("models", []):
        if "path" in model:
            assert not Path(model["path"]).is_absolute(), f"{block.where}: use a relative path in examples"
            (tmp_path / model["path"]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / model["path"]).touch()
    config.loads(block.text, base_dir=tmp_path)


# ---------------------------------------------------------------------------- shell

def shell_commands(block: Block) -> list[list[str]]:
    """The commands of a shell block, each as its words (``&&``, ``;`` and ``|`` split them)."""
    lines = block.text.splitlines()
    if block.language == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    script = "\n".join(lines).replace("\\\n", " ")
    commands = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars="&;|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for token in lexer:
            if token in ("&&", ";", "|", "||"):
                commands.append(words)
                words = []
            else:
                words.append(token)
        commands.append(words)
    return [words for words in commands if words]


def check_advrobust(arguments: list[str], where: str) -> None:
    from advrobust import cli
    from advrobust.run import config

    try:
        parsed = cli.build_parser().parse_args(arguments)
    except SystemExit as error:
        raise AssertionError(f"{where}: `advrobust {shlex.join(arguments)}` does not parse (see stderr)") from error
    if parsed.command == "run" and parsed.config is not None and (REPO / parsed.config).is_file():
        config.load(REPO / parsed.config)
    elif parsed.command == "run" and parsed.config is not None:
        assert parsed.config.isupper() or parsed.config.split(".")[0].isupper(), \
            f"{where}: config {parsed.config!r} does not exist (write placeholders in capitals: CONFIG.toml)"


def check_python_script(arguments: list[str], where: str) -> None:
    if arguments[0] == "-m":
        assert arguments[1] in ("pytest", "mkdocs", "pip", "advrobust"), f"{where}: python -m {arguments[1]}?"
        if arguments[1] == "pip":
            check_pip(arguments[2:], where)
        if arguments[1] == "advrobust":
            check_advrobust(arguments[2:], where)
        return
    script = REPO / arguments[0]
    assert script.is_file(), f"{where}: {arguments[0]} does not exist"
    source = script.read_text(encoding="utf-8")
    for flag in (word.split("=")[0] for word in arguments[1:] if word.startswith("--")):
        assert f'"{flag}"' in source, f"{where}: {arguments[0]} takes no {flag}"


def check_pip(arguments: list[str], where: str) -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    for word in arguments:
        found = re.fullmatch(r"\.\[(?P<extras>[\w,-]+)\]", word)
        if found:
            for extra in found["extras"].split(","):
                assert extra in extras, f"{where}: pyproject.toml has no extra {extra!r}"


def check_command(words: list[str], where: str) -> None:
    name, arguments = words[0], words[1:]
    if "=" in name and name.split("=")[0].isupper():  # VAR=value command ...
        check_command(arguments, where) if arguments else None
    elif name == "advrobust":
        check_advrobust(arguments, where)
    elif name in ("python", "python3"):
        check_python_script(arguments, where)
    elif name in ("pip", "pip3"):
        check_pip(arguments, where)
    elif name == "bash":
        assert (REPO / arguments[0]).is_file(), f"{where}: {arguments[0]} does not exist"
    else:
        assert name in UNCHECKED_COMMANDS, f"{where}: teach tests/test_docs.py how to check `{name}`"


SHELL_BLOCKS = [block for block in TESTED if block.language in SHELL]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=_ids(SHELL_BLOCKS))
def test_shell_commands_parse(block):
    commands = shell_commands(block)
    assert commands, f"{block.where}: a shell block without commands"
    for words in commands:
        check_command(words, block.where)


def test_a_wrong_flag_fails_the_check():
    with pytest.raises(AssertionError, match="does not parse"):
        check_advrobust(["attack", "--model", "m.keras", "--dataset", "mnist", "--eps", "0.1", "--no-such-flag"], "x")
    with pytest.raises(AssertionError, match="takes no"):
        check_python_script(["benchmarks/attack_throughput.py", "--no-such-flag"], "x")


# ---------------------------------------------------------------------------- reference pages

def _page(name: str) -> str:
    return (REPO / "docs" / name).read_text(encoding="utf-8")


def _table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows whose first cell is a code span: {name: [cells after it]}."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        found = re.fullmatch(r"`([^`]+)`", cells[0]) if line.startswith("|") else None
        if found:
            rows[found[1]] = cells[1:]
    return rows


def test_attacks_page_covers_every_attack_the_cli_accepts():
    from attacks import ATTACKS

    page = _page("guide/attacks.md")
    missing = [name for name in ATTACKS if f"`{name}`" not in page]
    assert not missing, f"docs/guide/attacks.md does not describe {missing}"


def test_cli_page_covers_every_flag():
    import argparse

    from advrobust import cli

    sections = dict(re.findall(r"^## advrobust (\w+)\n(.*?)(?=^## |\Z)", _page("guide/cli.md"), flags=re.M | re.S))
    subparsers = next(action for action in cli.build_parser()._actions
                      if isinstance(action, argparse._SubParsersAction))
    assert set(sections) == set(subparsers.choices), f"docs/guide/cli.md sections: {sorted(sections)}"
    for command, parser in subparsers.choices.items():
        flags = {option for action in parser._actions if action.help != argparse.SUPPRESS
                 for option in action.option_strings if option.startswith("--") and option != "--help"}
        documented = set(re.findall(r"^\| `(--[a-z][a-z0-9-]*)", sections[command], flags=re.M))
        assert flags == documented, (f"docs/guide/cli.md, advrobust {command}: undocumented {sorted(flags - documented)}, "
                                     f"not flags of the CLI {sorted(documented - flags)}")


def _toml_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (dict, tuple, list)) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    return repr(value)


def _documented_defaults(rows: dict[str, list[str]], fields, where: str) -> None:
    """Every field has a row whose default cell (the second) starts with its TOML literal,
    with "none" where the default is None, or with "required"."""
    for field in fields:
        assert field.name in rows, f"{where}: key `{field.name}` is not documented"
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            default = "required"
        elif field.default_factory is not dataclasses.MISSING:
            default = f"`{_toml_literal(field.default_factory())}`"
        else:
            default = "none" if field.default is None else f"`{_toml_literal(field.default)}`"
        cell = rows[field.name][1]
        assert cell.startswith(default), f"{where}: `{field.name}` default is {default}, the page says {cell!r}"


def test_run_config_reference_matches_the_code():
    from advrobust.run import config
    from advrobust.training import TrainConfig

    text = _page("guide/run-config.md")
    sections = re.split(r"^## ", text, flags=re.M)
    by_title = {section.split("\n", 1)[0]: _table_rows(section) for section in sections}

    def section(key: str) -> dict[str, list[str]]:
        return next(rows for title, rows in by_title.items() if key in title)

    run_rows, attack_rows, model_rows, train_rows = (section("[run]"), section("[[attacks]]"),
                                                     section("[[models]]"), section("train"))
    run_fields = [field for field in dataclasses.fields(config.RunConfig) if field.name in config._RUN_KEYS]
    assert {field.name for field in run_fields} | {"epsilons"} >= config._RUN_KEYS
    _documented_defaults(run_rows, run_fields, "[run]")
    assert set(run_rows) == config._RUN_KEYS, f"[run] documents {set(run_rows) ^ config._RUN_KEYS} wrongly"
    assert set(attack_rows) == config._ATTACK_KEYS, f"[[attacks]]: {set(attack_rows) ^ config._ATTACK_KEYS}"
    assert set(model_rows) == config._MODEL_KEYS, f"[[models]]: {set(model_rows) ^ config._MODEL_KEYS}"
    train_fields = [field for field in dataclasses.fields(TrainConfig) if field.name != "dataset"]
    _documented_defaults(train_rows, train_fields, "train")
    extra = set(train_rows) - {field.name for field in train_fields}
    assert not extra, f"train table documents keys TrainConfig does not have: {extra}"


def test_report_page_has_a_stable_anchor_per_check():
    from advrobust.evaluation import checks

    page = _page("guide/report.md")
    producers = [name for name, function in inspect.getmembers(checks, inspect.isfunction)
                 if function.__module__ == checks.__name__ and not name.startswith("_")
                 and "Check" in str(inspect.signature(function).return_annotation)]
    assert len(producers) >= 7, producers
    missing = [name for name in producers if "{#check-" + name.replace("_", "-") + "}" not in page]
    assert not missing, f"docs/guide/report.md has no section {{#check-...}} for {missing}"


def test_performance_figures_match_the_benchmark_results():
    rows = _table_rows(_page("guide/performance.md"))
    attack = json.loads((REPO / "benchmarks/results/attack_throughput.json").read_text())
    checked = 0
    for row in attack["rows"]:
        key = f"{row['attack']}, {row['method']}"
        assert key in rows, f"docs/guide/performance.md has no row `{key}`"
        assert rows[key][0] == f"{row['images_per_second']:.1f}", f"{key}: page {rows[key][0]}, JSON {row}"
        assert rows[key][3] == f"{row['advrobust_speedup']:.2f}", f"{key}: page {rows[key][3]}, JSON {row}"
        checked += 1
    training = json.loads((REPO / "benchmarks/results/training_throughput.json").read_text())
    for row in training["rows"]:
        key = f"{training['setup']['method']}, {row['variant']}"
        assert key in rows, f"docs/guide/performance.md has no row `{key}`"
        assert rows[key][0] == f"{row['median']:.1f}", f"{key}: page {rows[key][0]}, JSON {row}"
        checked += 1
    cost = json.loads((REPO / "benchmarks/results/training_cost.json").read_text())
    for row in cost["rows"]:
        key = f"training cost, {row['method']}"
        assert key in rows, f"docs/guide/performance.md has no row `{key}`"
        expected = [str(row["steps"]), f"{row['epoch_seconds']:.2f}", f"{row['expected_seconds']:.2f}",
                    f"{row['ratio']:.2f}"]
        assert rows[key] == expected, f"{key}: page {rows[key]}, JSON {row}"
        checked += 1
    ensemble = json.loads((REPO / "benchmarks/results/autoattack.json").read_text())
    for model, measured in ensemble["results"].items():
        for name, row in measured.items():
            key = f"autoattack, {model}, {name}"
            assert key in rows, f"docs/guide/performance.md has no row `{key}`"
            expected = [str(row["images"]), f"{100 * row['robust_accuracy']:.1f}%", f"{row['seconds']:.1f}",
                        f"{row['forward_passes']:.0f}", f"{row['backward_passes']:.0f}"]
            assert rows[key] == expected, f"{key}: page {rows[key]}, JSON {row}"
            checked += 1
    assert checked >= 16


def test_readme_stays_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (f"README.md has {lines} lines (at most {README_MAX_LINES}): results belong in "
                                       "experiments/README.md, explanations in docs/")


def test_readme_times_follow_the_quick_config():
    from advrobust.run import config

    minutes = re.search(r"about (\d+) minutes", config.default_text())
    assert minutes, "advrobust/run/configs/quick.toml no longer states its duration"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"about {minutes[1]} minutes" in readme, "README.md's time for the quick run differs from quick.toml's"


def test_the_site_builds_strictly_without_outside_assets(tmp_path):
    import subprocess
    import sys

    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    outside = {match for page in tmp_path.rglob("*.html")
               for match in re.findall(r'<(?:script|link|img)[^>]*(?:src|href)="(https?://[^"]+)"', page.read_text())}
    assert not outside, f"the site loads assets from the network: {sorted(outside)}"
