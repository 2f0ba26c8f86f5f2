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
        handle.write(data)
    os.chmod(handle.name, 0o644)  # NamedTemporaryFile creates 0600; results are for sharing
    os.replace(handle.name, path)
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
