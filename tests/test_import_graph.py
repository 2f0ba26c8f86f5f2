"""The import graph: arrows in one direction, no cycle, and TensorFlow only where needed.

Rooms: ``advrobust`` (the harness) may import ``defenses`` and ``attacks``; ``defenses``
may import ``attacks``; ``attacks`` imports neither. Inside ``advrobust`` the pipeline's
stages have ranks (``LAYERS``) and a module imports only from its own rank or lower ones.
Read from the source with ``ast``, so function-level (deferred) imports count too.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from tests.conftest import REPO, run_python

PACKAGES = ("advrobust", "defenses", "attacks")
# Rank of each part of advrobust: the base helpers, then the pipeline in the order data flows.
LAYERS = {
    "advrobust": 0, "advrobust._lazy": 0, "advrobust.files": 0, "advrobust.validation": 0,
    "advrobust.data": 1,
    "advrobust.models": 2,
    "advrobust.training": 3,
    "advrobust.evaluation": 4,
    "advrobust.certify": 4,  # beside evaluation: both measure a trained model; reports read both later
    "advrobust.results": 5,
    "advrobust.plot": 6,
    "advrobust.reporting": 7,
    "advrobust.run": 8,
    "advrobust.cli": 9, "advrobust.__main__": 9,
}
ROOMS = {"attacks": 0, "defenses": 1, "advrobust": 2}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported project module, imported at module level?) for every import in ``path``.

    ``from package import module`` depends on the module, not on the package's __init__.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    modules = _sources()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{alias.name}" for alias in node.names
                          if f"{node.module}.{alias.name}" in modules]
            names = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
        else:
            continue
        found += [(name, id(node) in top_level) for name in names if name.split(".")[0] in PACKAGES]
    return found


@functools.cache
def _sources() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")}


def _rank(module: str) -> int:
    """The rank of the longest LAYERS prefix of ``module``."""
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        if ".".join(parts[:length]) in LAYERS:
            return LAYERS[".".join(parts[:length])]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def test_rooms_import_only_downwards():
    wrong = [f"{source} imports {target}" for source, path in _sources().items()
             for target, _ in _project_imports(path)
             if ROOMS[target.split(".")[0]] > ROOMS[source.split(".")[0]]]
    assert not wrong, wrong


def test_advrobust_stages_import_only_their_own_or_earlier_stages():
    sources = _sources()
    wrong = [f"{source} (rank {_rank(source)}) imports {target} (rank {_rank(target)})"
             for source, path in sources.items() if source.startswith("advrobust")
             for target, _ in _project_imports(path)
             if target.startswith("advrobust") and target in sources and _rank(target) > _rank(source)]
    assert not wrong, wrong


def test_no_cycle_among_module_level_imports():
    sources = _sources()
    graph = {source: {target for target, top in _project_imports(path) if top and target in sources
                      and target != source} for source, path in sources.items()}
    # A package's __init__ is imported before any of its modules: the module depends on it.
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = trail[trail.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, trail + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


READING_WITHOUT_TENSORFLOW = {
    "import advrobust": "import advrobust",
    "results, outcomes, statistics": (
        "from advrobust.results import outcomes, outcome_files, schema\n"
        "from advrobust.evaluation import stats\n"
        "from advrobust import data\n"
        "data.class_name('fashion_mnist', 3); data.DATASETS"),
    "reporting": "from advrobust.reporting import build_report",
    "plotting": "from advrobust import plot",
    "the report and compare commands": (
        "from advrobust import cli\n"
        "parser = cli.build_parser(['report', 'compare'])\n"
        "parser.parse_args(['report', 'x']); parser.parse_args(['compare', 'a', 'b'])"),
}


@pytest.mark.parametrize("code", READING_WITHOUT_TENSORFLOW.values(), ids=READING_WITHOUT_TENSORFLOW)
def test_reading_results_imports_no_tensorflow(code):
    result = run_python(code + "\nimport sys\nprint('TF' if 'tensorflow' in sys.modules else 'NO TF')\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("NO TF")
