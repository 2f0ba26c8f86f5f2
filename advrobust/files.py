"""Small file helpers shared by the harness: atomic writes and content digests. No TensorFlow."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

# Refusals of a write that the user fixes by writing elsewhere or changing the folder; the
# error keeps its errno (so its type, and the CLI's one-line handling) and gains a message
# that says what to do.
_FIXES = {
    errno.EACCES: "choose a folder you may write to, or give yourself write permission: chmod u+w {blocked}",
    errno.EPERM: "choose a folder you may write to, or give yourself write permission: chmod u+w {blocked}",
    errno.EROFS: "choose a folder on a writable disk, or remount that file system read-write",
}
# The prefix of the empty file that checks a folder is writable; like the atomic writes'
# temporary files it matches ".NAME.XXXXXXXX.tmp", so a killed check's file is removed
# by the next run that claims the folder.
_CHECK_PREFIX = ".advrobust-write-check."


def writable_folder(folder: str | Path) -> Path:
    """Create ``folder`` if needed and make sure files can be written in it, before any work.

    A long job that finds its output folder unwritable only at its first write has wasted
    its time; this check creates (and at once deletes) an empty file, the same operation
    every later write starts with.

    Args:
        folder: The output folder; created with its parents if missing.

    Returns:
        ``folder`` as a ``Path``.

    Raises:
        PermissionError: The folder, or the parent it would be created in, is not writable
            (``EACCES``/``EPERM``); the message names both and the fix.
        OSError: The folder is on a read-only file system (``errno.EROFS``; the message says
            so), or another system error (a file where a folder belongs, a full disk).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=folder, prefix=_CHECK_PREFIX, suffix=".tmp"):
            pass
    except OSError as error:
        if error.errno not in _FIXES:
            raise
        raise _explained(error, folder) from error
    return folder


def _explained(error: OSError, folder: Path) -> OSError:
    """``error``, a refusal in ``_FIXES`` to create a file or folder for ``folder``, with the
    fix in its message."""
    failed = Path(error.filename) if error.filename else folder
    # Creating X needs write permission on X's parent: that is the folder to fix.
    fix = _FIXES[error.errno].format(blocked=shlex.quote(str(failed.parent)))
    # A temporary file's name, or the folder's own, says nothing the message does not.
    where = "" if folder in (failed, failed.parent) else f": {str(failed)!r}"
    return OSError(error.errno, f"cannot write in {str(folder)!r} ({error.strerror}{where}); {fix}")


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
        PermissionError: The folder cannot be created or written to; the message names the
            folder and the fix (see :func:`writable_folder`).
        OSError: The folder is on a read-only file system (``errno.EROFS``), or another
            system error (a full disk, a folder where the file belongs).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                             delete=False)
    except OSError as error:
        if error.errno not in _FIXES:
            raise
        raise _explained(error, path.parent) from error
    with handle:
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
        PermissionError: The folder cannot be created or written to (see
            :func:`atomic_write_bytes`).
        OSError: A read-only file system or another system error.
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
