"""Saving and loading models safely, with their JSON model cards."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from advrobust.files import atomic_write_text
from attacks.backend import keras, tf

def card_path(model_path: str | Path) -> Path:
    """Find where the JSON model card of a model file lives.

    Args:
        model_path: The model file, e.g. ``runs/x/NAME.keras``.

    Returns:
        The card's path beside it: ``NAME.keras`` -> ``NAME.card.json``.
    """
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".card.json")


def library_versions() -> dict[str, str]:
    """List the versions of Python and the libraries that determine a model's behaviour.

    Returns:
        A dict from ``"python"``, ``"tensorflow"``, ``"tf_keras"``, ``"numpy"``,
        ``"neural-structured-learning"`` and ``"advrobust"`` to version strings
        (``"not installed"`` for a missing package).
    """
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "tf_keras": keras.__version__, "numpy": np.__version__}
    for package in ("neural-structured-learning", "advrobust"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def save(model: keras.Model, path: str | Path, card: dict[str, Any]) -> Path:
    """Save ``model`` in the native ``.keras`` format and its JSON card beside it.

    Both files are written atomically (temporary file, then rename), so a crash never
    leaves a half-written model.

    Args:
        model: The Keras model.
        path: The model file; must end in ``.keras``. Parent folders are created.
        card: What the caller knows (dataset, architecture, defense, training config,
            seed, clean test accuracy); the format, file name, parameter count and library
            versions are added.

    Returns:
        The path of the card (see :func:`card_path`).

    Raises:
        ValueError: ``path`` does not end in ``.keras``.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model path must end in .keras, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    model.save(temporary)
    os.replace(temporary, path)
    full_card = {"format": "advrobust-model-card/1", "file": path.name,
                 "parameters": int(model.count_params()), **card,
                 "library_versions": library_versions()}
    card_file = card_path(path)
    atomic_write_text(card_file, json.dumps(full_card, indent=2, sort_keys=True, default=str) + "\n")
    return card_file


class ModelFileError(ValueError):
    """A model file that advrobust will not load: unsafe format, foreign code, or unreadable."""


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 allows a user block before the signature, at 0 or a power of two from 512.
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)
# Modules a safe .keras config may name: Keras 2 (tf_keras) and Keras's own aliases.
_SAFE_MODULE_PREFIXES = ("keras", "tf_keras")
_UNSAFE_HELP = ("Load it only if you trust its author: allow_unsafe=True in Python, --unsafe-load on "
                "the command line; or re-save it as .keras with model.save('model.keras') where it was made.")


def model_file_format(path: str | Path) -> str:
    """Tell what ``path`` holds, judged by its bytes, never its name.

    Args:
        path: A file or folder.

    Returns:
        ``"keras"`` (the zip ``.keras`` format with ``config.json``), ``"h5"`` (an HDF5
        file), ``"saved_model"`` (a folder with ``saved_model.pb``) or ``"unknown"``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if path.is_dir():
        return "saved_model" if (path / "saved_model.pb").is_file() else "unknown"
    with open(path, "rb") as handle:
        for offset in _HDF5_OFFSETS:
            handle.seek(offset)
            if handle.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return "h5"
    try:
        with zipfile.ZipFile(path) as archive:
            return "keras" if "config.json" in archive.namelist() else "unknown"
    except (zipfile.BadZipFile, OSError):
        return "unknown"


def _foreign_references(node: Any, where: str = "config") -> list[str]:
    """Places in a ``.keras`` config that name code outside Keras or a Python lambda.

    Keras's safe mode refuses lambdas but imports any module a config names (a config
    naming ``os.system`` gets that function called during loading), so the config is
    checked before Keras sees it. Returns human-readable locations, empty when safe.
    """
    found = []
    if isinstance(node, dict):
        module, class_name = node.get("module"), node.get("class_name")
        if class_name == "__lambda__" or node.get("function_type") == "lambda":
            found.append(f"{where}: a Python lambda")
        elif isinstance(module, str) and module.split(".")[0] not in _SAFE_MODULE_PREFIXES:
            found.append(f"{where}: {module}.{class_name}")
        for key, value in node.items():
            found.extend(_foreign_references(value, f"{where}.{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_foreign_references(value, f"{where}[{index}]"))
    return found


def _read_keras_config(path: Path) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"model file {str(path)!r} is not a readable .keras file ({error}); "
                             "is it truncated or corrupt?") from error


def load(path: str | Path, *, allow_unsafe: bool = False) -> keras.Model:
    """Load a model saved in the zip ``.keras`` format, running no code from the file.

    The format is judged from the file's bytes, whatever it is named. A ``.keras`` file
    loads in Keras's safe mode after its config is checked to name only Keras classes (no
    Python lambdas, no other modules). H5 and SavedModel files can hold arbitrary code
    (Lambda-layer bytecode) and are refused unless ``allow_unsafe=True``, which loads any
    of the three formats with Keras's safe mode off: only for files you trust.

    Args:
        path: The model file (or SavedModel folder).
        allow_unsafe: Load H5 and SavedModel files, and ``.keras`` files naming code
            outside Keras, with Keras's safe mode off.

    Returns:
        The uncompiled Keras model.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelFileError: Naming the file, the reason and the opt-in, for a refused,
            truncated or corrupt file (a ValueError).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist.")
    file_format = model_file_format(path)
    if file_format == "unknown":
        raise ModelFileError(f"model file {str(path)!r} is neither a .keras (zip) model, an H5 file nor a "
                             "SavedModel folder; is it truncated or corrupt?")
    if file_format != "keras":
        if not allow_unsafe:
            raise ModelFileError(
                f"model file {str(path)!r} is in the {file_format.upper().replace('_', ' ')} format, which "
                f"can run arbitrary Python code while loading (Lambda layers); advrobust loads only the "
                f"zip .keras format by default. {_UNSAFE_HELP}")
        return _keras_load(path, safe_mode=False)
    if not allow_unsafe:
        foreign = _foreign_references(_read_keras_config(path))
        if foreign:
            raise ModelFileError(
                f"model file {str(path)!r} names code outside Keras ({'; '.join(foreign[:3])}"
                f"{'; ...' if len(foreign) > 3 else ''}), which would run while loading. {_UNSAFE_HELP}")
    return _keras_load(path, safe_mode=not allow_unsafe)


def _keras_load(path: Path, *, safe_mode: bool) -> keras.Model:
    """Keras's loader; a zip model not named ``.keras`` goes through a ``.keras`` link."""
    try:
        if path.is_file() and path.suffix != ".keras" and model_file_format(path) == "keras":
            with tempfile.TemporaryDirectory() as folder:
                link = Path(folder) / "model.keras"
                link.symlink_to(path.resolve())
                return keras.models.load_model(link, compile=False, safe_mode=safe_mode)
        return keras.models.load_model(path, compile=False, safe_mode=safe_mode)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"model file {str(path)!r} could not be read ({type(error).__name__}: "
                             f"{error}); is it truncated or corrupt?") from error


def load_card(path: str | Path) -> dict[str, Any]:
    """Read the JSON card of a model.

    Args:
        path: The model file, or the card file itself (``*.card.json``).

    Returns:
        The card as a dict (see :func:`save` for its keys).

    Raises:
        FileNotFoundError: The card does not exist.
        json.JSONDecodeError: The card is not valid JSON (a ValueError).
    """
    path = Path(path)
    card_file = path if path.name.endswith(".card.json") else card_path(path)
    return json.loads(card_file.read_text(encoding="utf-8"))
