"""The test tree mirrors the source tree: tests/<folder>/test_<module>.py tests <folder>/<module>.py.

A package's ``__init__.py`` is tested in ``test___init__.py``. Tiers are markers, not folders:
``slow`` (trains or reads real data) and ``crosscheck`` (against cleverhans, foolbox or ART).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO

TESTS = REPO / "tests"
SOURCE_ROOTS = ("attacks", "defenses", "advrobust", "experiments", "benchmarks")

# Test modules that test no single source module: they stay at the top of tests/.
CROSS_CUTTING = {
    "test_docs.py",  # every code block of the documentation runs or is parsed
    "test_docstrings.py",  # the docstrings of every public function, across all packages
    "test_import_graph.py",  # the import arrows between the packages, and lazy TensorFlow
    "test_layout.py",  # this file: the layout of tests/ itself
    "test_bad_inputs.py",  # the bad-input matrix across the public boundaries (evaluation, CLI, run folder)
    "test_crash.py",  # advrobust run killed (SIGKILL) in training, attacks or writing, then resumed
    "test_unwritable_output.py",  # run, train and attack into output folders they cannot write in
}

# Source modules with no test module of their own: each is tested through another one.
UNTESTED_ON_THEIR_OWN = {
    "advrobust/__main__.py": "two lines calling cli.main; tests/advrobust/test_cli.py runs the console script",
    "advrobust/_lazy.py": "the lazy names of the subpackages; tests/test_import_graph.py",
    "advrobust/validation.py": "shared checks; through every refusal test of the harness",
    "advrobust/__init__.py": "re-exports only; tests/test_import_graph.py",
    "advrobust/data/__init__.py": "re-exports only",
    "advrobust/data/catalog.py": "class names; through the report's per-class table (reporting tests)",
    "advrobust/evaluation/__init__.py": "re-exports only",
    "advrobust/reporting/html.py": "through build_report (tests/advrobust/reporting/test___init__.py)",
    "advrobust/reporting/markdown.py": "through build_report (tests/advrobust/reporting/test___init__.py)",
    "advrobust/reporting/tables.py": "through build_report (tests/advrobust/reporting/test___init__.py)",
    "advrobust/reporting/view.py": "load_run, through build_report (tests/advrobust/reporting/test___init__.py)",
    "advrobust/results/__init__.py": "re-exports only",
    "advrobust/run/__init__.py": "re-exports only",
    "advrobust/training/defended.py": "through the defense and CLI training tests",
    "advrobust/training/fitting.py": "fit, set_seed and accuracy; through the training tests",
    "attacks/__init__.py": "re-exports only; tests/attacks/test_backend.py imports it in a fresh process",
    "experiments/torch_crosscheck/evaluate.py": "needs PyTorch, which CI does not install",
    "benchmarks/attack_throughput.py": "a benchmark script, run by hand",
    "benchmarks/autoattack.py": "a benchmark script, run by hand",
    "benchmarks/fast_preset.py": "a benchmark script, run by hand",
    "benchmarks/training_throughput.py": "a benchmark script, run by hand",
    "benchmarks/evaluation_scaling.py": "a benchmark script, run by hand",
    "benchmarks/reference_models.py": "the benchmarks' trained models, used by the benchmark scripts",
    "benchmarks/robust_curve.py": "a benchmark script, run by hand",
    "benchmarks/training_cost.py": "a benchmark script, run by hand",
    "benchmarks/sharding.py": "a benchmark script, run by hand",
    "benchmarks/eot.py": "a benchmark script, run by hand",
}


def _test_modules() -> list[Path]:
    return sorted(path for path in TESTS.rglob("test_*.py") if "__pycache__" not in path.parts)


def _source_modules() -> list[Path]:
    return sorted(path for root in SOURCE_ROOTS for path in (REPO / root).rglob("*.py")
                  if "__pycache__" not in path.parts)


def _source_of(test_module: Path) -> Path:
    relative = test_module.relative_to(TESTS)
    return REPO / relative.parent / relative.name.removeprefix("test_")


def test_every_test_module_is_named_after_the_source_module_it_tests():
    orphans = [str(path.relative_to(REPO)) for path in _test_modules()
               if path.parent != TESTS or path.name not in CROSS_CUTTING
               if not _source_of(path).is_file()]
    assert not orphans, (f"test modules with no source module of the same name: {orphans}; move each test to "
                         "tests/<folder>/test_<module>.py beside the module it tests, or list a cross-cutting "
                         "module in CROSS_CUTTING")


def test_every_cross_cutting_module_exists_at_the_top():
    missing = sorted(name for name in CROSS_CUTTING if not (TESTS / name).is_file())
    assert not missing, f"listed in CROSS_CUTTING but absent from tests/: {missing}"


def test_every_test_folder_is_a_package():
    folders = {path.parent for path in _test_modules()} | {path.parent for path in TESTS.rglob("conftest.py")}
    bare = sorted(str(folder.relative_to(REPO)) for folder in folders if not (folder / "__init__.py").is_file())
    assert not bare, f"test folders without __init__.py (tests import tests.<folder>.conftest): {bare}"


def test_every_source_module_without_a_test_module_is_listed():
    tested = {_source_of(path) for path in _test_modules()}
    untested = {str(path.relative_to(REPO)) for path in _source_modules() if path not in tested}
    unlisted = sorted(untested - set(UNTESTED_ON_THEIR_OWN))
    stale = sorted(set(UNTESTED_ON_THEIR_OWN) - untested)
    assert not unlisted, (f"source modules with no test module: {unlisted}; add tests/<folder>/test_<module>.py "
                          "or list the module in UNTESTED_ON_THEIR_OWN with where it is tested")
    assert not stale, f"listed in UNTESTED_ON_THEIR_OWN but tested by a module of its own now: {stale}"
