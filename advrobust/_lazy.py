"""Public names of a subpackage, imported from their module on first use.

A subpackage's ``__init__`` lists its public names and the module each lives in; the
module is imported only when the name is first used. So ``from advrobust.evaluation
import stats`` or ``advrobust.data.class_name`` do not import TensorFlow, while
``advrobust.evaluation.robust_accuracy_curve`` (which needs it) still works as a plain
attribute. The same scheme as NumPy's and SciPy's lazy submodules (PEP 562).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Make the module ``__getattr__`` and ``__dir__`` of a package with lazy public names.

    A name that is not listed but is a submodule imports that submodule. Each name is
    imported once: its value is then set on the package.

    Args:
        package: The package's ``__name__``.
        exports: Maps each public name to the submodule (relative to ``package``) that
            defines it.

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's top level. ``__getattr__``
        raises AttributeError for a name that is neither listed nor a submodule.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is not None:
            value = getattr(importlib.import_module(f"{package}.{module}"), name)
        else:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
