"""The run folder (``--out``): one run at a time, and never a folder that is not a run.

:func:`claim` is a context manager held for a whole run. It

1. refuses a non-empty folder that holds no advrobust run (a home directory, a source
   tree), unless ``force``, since a run writes and replaces ``results.*``, ``report.*``,
   ``config.json`` and ``figures/`` there; and refuses, with the fix, a folder it cannot
   write in (no permission, a read-only file system) before any work;
2. takes an exclusive OS lock (``fcntl.flock``) on ``OUT/.advrobust.lock``. The kernel
   drops the lock when the process ends in any way (exit, exception, ``kill -9``), so a
   crashed run never leaves a stale lock; a second run, or a ``--resume`` beside a live
   run, is refused at once with the folder and the holder's process id;
3. once the lock is held, removes the temporary files of atomic writes
   (``advrobust.files``) that a killed run left behind: with the lock, no live process
   can be writing them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Iterator

from advrobust.files import writable_folder

LOCK_NAME = ".advrobust.lock"
# What only an advrobust run folder holds (any one of them marks a run).
RUN_MARKERS = ("store.sqlite", "config.json", "results.json", LOCK_NAME)
# A temporary file of advrobust.files' atomic writes: ".NAME." + 8 random characters + ".tmp".
_LEFTOVER = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


class RunFolderError(RuntimeError):
    """The run folder cannot be used: another run holds it, or it is not a run folder."""


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder that an advrobust run made (holds one of RUN_MARKERS).

    Args:
        path: the folder.

    Returns:
        True for a run folder, False for anything else (missing, a file, a foreign folder).
    """
    path = Path(path)
    return path.is_dir() and any((path / marker).exists() for marker in RUN_MARKERS)


def check_usable(path: str | Path, *, force: bool = False) -> None:
    """Refuse an output folder that is neither new, empty, nor an advrobust run.

    Args:
        path: the ``--out`` folder.
        force: use a non-empty foreign folder anyway.

    Raises:
        RunFolderError: ``path`` is a file, or a non-empty folder without a run in it (and
            not ``force``).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"--out {str(path)!r} is a file, not a folder; choose a folder for the run")
    if force or not path.exists() or is_run_folder(path) or not any(path.iterdir()):
        return
    raise RunFolderError(f"--out {str(path)!r} is a non-empty folder that holds no advrobust run; a run writes "
                         "results.*, report.*, config.json and figures/ there. Choose a new or empty folder, or "
                         "pass --force to use this one anyway.")


def _holder(lock_file: Path) -> str:
    """What the lock file says about the process holding it (best effort)."""
    try:
        owner = json.loads(lock_file.read_text(encoding="utf-8"))
        return f"process {owner['pid']} on {owner['host']}, started {owner['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def claim(path: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Hold ``path`` as this process's run folder for the ``with`` block.

    Args:
        path: the ``--out`` folder; created if missing.
        force: use a non-empty folder that holds no run (see :func:`check_usable`).

    Yields:
        The folder as a Path.

    Raises:
        RunFolderError: the folder is unusable (:func:`check_usable`) or another live
            process holds it.
        PermissionError: the folder, or the parent it would be created in, is not writable;
            the message names it and the fix (:func:`advrobust.files.writable_folder`).
        OSError: the folder is on a read-only file system (``errno.EROFS``), or another
            system error.
    """
    path = Path(path)
    check_usable(path, force=force)
    writable_folder(path)
    lock_file = path / LOCK_NAME
    handle = open(lock_file, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(f"run folder {str(path)!r} is in use by {_holder(lock_file)}; wait for that "
                                 "run to finish (or stop it), or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
        handle.flush()
        _remove_leftover_temporary_files(path)
        yield path
    finally:
        handle.close()  # closing releases the lock; the kernel does the same if the process dies


def _remove_leftover_temporary_files(path: Path) -> None:
    """Delete what a run killed in the middle of an atomic write left under ``path``."""
    for leftover in path.rglob(".*.tmp"):
        if _LEFTOVER.match(leftover.name) and leftover.is_file():
            leftover.unlink(missing_ok=True)
