"""Docstrings of the public API are in Google style, so mkdocstrings can render a reference.

Every public function, method and class of the modules in ``MODULES`` (every module of
``attacks``, ``defenses`` and ``advrobust``) has a one-line summary that ends with a
period; a function's ``Args:`` section names each of its parameters and nothing else,
and one that can return something other than None (its annotation is not ``-> None``)
has a ``Returns:`` section (a generator or context manager: ``Yields:``). A class
documents its constructor's parameters under ``Args:`` (or ``Attributes:`` for a
dataclass); a ``typing.Protocol`` is never constructed and documents none. Methods that
override a base class's (Keras hooks such as ``call`` or ``on_epoch_end``) keep the
base's contract and are not walked. ``MODULES`` is explicit, and a test checks that it
lists every module of the three packages, so a new module cannot be left out;
``advrobust.__main__`` is left out, as importing it runs the command line.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
from typing import Any, Iterator

import pytest

MODULES = (
    "attacks",
    "attacks.auto_pgd",
    "attacks.deep_fool",
    "attacks.ensemble",
    "attacks.backend",
    "attacks.carlini_wagner",
    "attacks.compiled",
    "attacks.draws",
    "attacks.external",
    "attacks.fab_attack",
    "attacks.gradient",
    "attacks.loop",
    "attacks.losses",
    "attacks.minimal",
    "attacks.noise",
    "attacks.norms",
    "attacks.precision",
    "attacks.spec",
    "attacks.square_attack",
    "attacks.validation",
    "defenses",
    "defenses.adversarial_training",
    "defenses.bounds",
    "defenses.callbacks",
    "defenses.certified",
    "defenses.distribute",
    "defenses.nsl",
    "defenses.nsl_compat",
    "defenses.validation",
    "advrobust",
    "advrobust._lazy",
    "advrobust.certify",
    "advrobust.certify.randomized_smoothing",
    "advrobust.certify.verify",
    "advrobust.cli",
    "advrobust.data",
    "advrobust.data.catalog",
    "advrobust.data.idx",
    "advrobust.data.loading",
    "advrobust.data.pipeline",
    "advrobust.evaluation",
    "advrobust.evaluation.certified",
    "advrobust.evaluation.checks",
    "advrobust.evaluation.probes",
    "advrobust.evaluation.curves",
    "advrobust.evaluation.replicas",
    "advrobust.evaluation.stats",
    "advrobust.files",
    "advrobust.models",
    "advrobust.models.cnn",
    "advrobust.models.files",
    "advrobust.models.vgg19",
    "advrobust.plot",
    "advrobust.reporting",
    "advrobust.reporting.html",
    "advrobust.reporting.markdown",
    "advrobust.reporting.plots",
    "advrobust.reporting.tables",
    "advrobust.reporting.view",
    "advrobust.results",
    "advrobust.results.outcome_files",
    "advrobust.results.outcomes",
    "advrobust.results.schema",
    "advrobust.run",
    "advrobust.run.config",
    "advrobust.run.folder",
    "advrobust.run.interrupt",
    "advrobust.run.merge",
    "advrobust.run.runner",
    "advrobust.run.shard",
    "advrobust.run.store",
    "advrobust.training",
    "advrobust.training.callbacks",
    "advrobust.training.config",
    "advrobust.training.defended",
    "advrobust.training.fitting",
    "advrobust.training.job",
    "advrobust.training.schedules",
    "advrobust.validation",
)

_SECTION = re.compile(r"^(\s*)([A-Z][A-Za-z ]*):\s*$")
_ENTRY = re.compile(r"^\s*(\*{0,2}[A-Za-z_]\w*)\s*(\([^)]*\))?\s*:")


def _sections(docstring: str) -> dict[str, list[str]]:
    """Section title -> the names its entries document (the text before each ``name:``)."""
    lines = inspect.cleandoc(docstring).splitlines()
    sections: dict[str, list[str]] = {}
    index = 0
    while index < len(lines):
        match = _SECTION.match(lines[index])
        index += 1
        if match is None:
            continue
        indent = len(match.group(1))
        names = sections.setdefault(match.group(2), [])
        entry_indent = None
        while index < len(lines) and (not lines[index].strip() or _indent(lines[index]) > indent):
            line = lines[index]
            if line.strip() and entry_indent is None:
                entry_indent = _indent(line)
            entry = _ENTRY.match(line)
            if entry is not None and _indent(line) == entry_indent:
                names.append(entry.group(1).lstrip("*"))
            index += 1
    return sections


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _public(name: str, module: Any) -> bool:
    return not name.startswith("_") or name in getattr(module, "__all__", ())


def _defined_here(obj: Any, module_name: str) -> bool:
    return getattr(obj, "__module__", None) == module_name


def _parameters(function: Any) -> list[str]:
    signature = inspect.signature(function)
    return [name for name in signature.parameters if name not in ("self", "cls")]


def _overrides_a_base(cls: type, name: str) -> bool:
    return any(name in vars(base) for base in cls.__mro__[1:] if base is not object)


def _methods(cls: type) -> Iterator[tuple[str, Any, bool]]:
    """(name, function, is_property) for the public methods ``cls`` itself defines."""
    for name, member in vars(cls).items():
        if name.startswith("_") or _overrides_a_base(cls, name):
            continue
        if isinstance(member, property):
            yield name, member.fget, True
        elif isinstance(member, (classmethod, staticmethod)):
            yield name, member.__func__, False
        elif inspect.isfunction(member):
            yield name, member, False


def _api() -> Iterator[tuple[str, Any, str]]:
    """(qualified name, object, kind) for everything the test checks; kind is
    "function", "method", "property" or "class"."""
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            if not _public(name, module) or not _defined_here(obj, module_name):
                continue
            qualified = f"{module_name}.{name}"
            if inspect.isfunction(obj):
                yield qualified, obj, "function"
            elif inspect.isclass(obj):
                yield qualified, obj, "class"
                for method_name, method, is_property in _methods(obj):
                    yield f"{qualified}.{method_name}", method, "property" if is_property else "method"


API = list(_api())


def _returns_none(function: Any) -> bool:
    return inspect.signature(function).return_annotation in (None, "None")


def _yields(function: Any) -> str:
    """The section that says what ``function`` gives back: ``Yields`` for a generator (also
    one wrapped by ``contextlib.contextmanager``), else ``Returns``."""
    return "Yields" if inspect.isgeneratorfunction(inspect.unwrap(function)) else "Returns"


def _constructor_parameters(cls: type) -> list[str]:
    if getattr(cls, "_is_protocol", False):
        return []  # a Protocol is never constructed; its __init__ is typing's placeholder
    if dataclasses.is_dataclass(cls) or "__init__" in vars(cls):
        return _parameters(cls)
    return []


def _problems(name: str, obj: Any, kind: str) -> list[str]:
    docstring = inspect.getdoc(obj) if kind != "class" else obj.__doc__
    if not docstring or not docstring.strip():
        return [f"{name}: no docstring"]
    docstring = inspect.cleandoc(docstring)
    problems = []
    summary = docstring.splitlines()[0]
    if not summary.rstrip().endswith((".", ".)")):
        problems.append(f"{name}: the first line is not a one-sentence summary: {summary!r}")
    sections = _sections(docstring)
    if kind == "class":
        documented = sections.get("Args", []) + sections.get("Attributes", [])
        missing = [p for p in _constructor_parameters(obj) if p not in documented]
        if missing:
            problems.append(f"{name}: Args/Attributes section does not name {missing}")
        return problems
    if kind == "property":
        return problems
    parameters = _parameters(obj)
    documented = sections.get("Args", [])
    missing = [p for p in parameters if p not in documented]
    if missing:
        problems.append(f"{name}: Args section does not name {missing}")
    stale = [p for p in documented if p not in parameters]
    if stale:
        problems.append(f"{name}: Args section names {stale}, which are not parameters")
    if not _returns_none(obj) and not {"Returns", _yields(obj)} & set(sections):
        problems.append(f"{name}: no {_yields(obj)} section")
    return problems


# Run as ``python -m advrobust``: importing it would run the command line.
_NOT_IMPORTABLE = ("advrobust.__main__",)


@pytest.mark.parametrize("package", ["attacks", "defenses", "advrobust"])
def test_every_module_of_the_walked_packages_is_walked(package):
    path = importlib.import_module(package).__path__
    modules = {info.name for info in pkgutil.walk_packages(path, prefix=f"{package}.")}
    modules -= set(_NOT_IMPORTABLE)
    assert modules <= set(MODULES), f"add {sorted(modules - set(MODULES))} to MODULES"


def test_the_walk_finds_the_public_api():
    names = {name for name, _, _ in API}
    assert {"attacks.gradient.pgd", "defenses.validation.check_radius", "advrobust.models.files.load",
            "defenses.callbacks.RobustEarlyStopping", "defenses.callbacks.RobustEarlyStopping.measure",
            "advrobust.evaluation.stats.PairedComparison", "advrobust.run.store.ResultStore.unit",
            "advrobust.reporting.view.Model.failed_checks", "advrobust.cli.main"} <= names
    assert not any(name.rsplit(".", 1)[-1].startswith("_") for name in names)


@pytest.mark.parametrize("name, obj, kind", API, ids=[name for name, _, _ in API])
def test_public_docstring_has_google_sections(name, obj, kind):
    problems = _problems(name, obj, kind)
    assert not problems, "\n".join(problems)


def test_the_section_parser_reads_google_style():
    docstring = """Summary.

    Args:
        x: The inputs (N, ...), with a note
            that continues: here.
        eps (float): The radius.
        **overrides: Any of PARAMS.

    Returns:
        The thing.
    """
    sections = _sections(docstring)
    assert sections["Args"] == ["x", "eps", "overrides"]
    assert "Returns" in sections
