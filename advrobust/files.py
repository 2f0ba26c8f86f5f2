"""Small file helpers shared by the harness: atomic writes and content digests. No TensorFlow."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and a rename.

    Readers (and a crash) never see a half-written file. Parent folders are created; the
    file is readable by everyone (mode 0644).

    Args:
        path: The file to write; replaced if it exists.
        data: The bytes to write.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OSError: The folder cannot be created or written to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False) as handle:
        try:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the rename makes them the file
        except BaseException:
            handle.close()
            os.unlink(handle.name)  # a failed write (disk full, Ctrl-C) leaves no temporary file
            raise
    try:
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile creates 0600; results are for sharing
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` as UTF-8, atomically (see :func:`atomic_write_bytes`).

    Args:
        path: The file to write; replaced if it exists.
        text: The text to write.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OSError: The folder cannot be created or written to.
    """
    return atomic_write_bytes(path, text.encode("utf-8"))


def inside(folder: str | Path, relative: str) -> Path:
    """The path of ``relative`` inside ``folder``, refusing one that leads out of it.

    Run folders name their files in results.json; a results.json from elsewhere must not
    make the report or ``compare`` read files outside its folder.

    Args:
        folder: The run folder.
        relative: A path relative to ``folder``, as results.json records it.

    Returns:
        ``folder / relative``.

    Raises:
        ValueError: ``relative`` is absolute or resolves outside ``folder``.
    """
    folder = Path(folder)
    path = folder / relative
    if Path(relative).is_absolute() or not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"{relative!r} leads outside the run folder {str(folder)!r}; results.json may only name "
                         "files inside its own folder")
    return path


def digest(value: Any) -> str:
    """Compute the SHA-256 digest of ``value``'s canonical JSON (sorted keys, no spaces).

    Args:
        value: A JSON-serializable value.

    Returns:
        The hex digest, 64 lowercase characters.

    Raises:
        TypeError: ``value`` is not JSON-serializable.
    """
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
