"""advrobust.run.folder: one run per folder (an OS lock), and never a folder that is not a run."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from advrobust.run import folder
from tests.conftest import REPO

HOLD = """
import sys, time
from advrobust.run import folder
with folder.claim(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(path):
    """A child process that claims ``path`` and sleeps; returns it once the lock is held."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_claim_is_refused_while_the_first_holds_the_folder(tmp_path):
    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(folder.RunFolderError, match=rf"run folder .*run' is in use by process {holder.pid} on"):
            with folder.claim(tmp_path / "run"):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    holder = _holder(tmp_path / "run")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with folder.claim(tmp_path / "run") as claimed:
        assert claimed == tmp_path / "run"


def test_the_lock_is_released_when_the_block_ends_even_by_an_exception(tmp_path):
    with pytest.raises(KeyError):
        with folder.claim(tmp_path / "run"):
            raise KeyError("boom")
    with folder.claim(tmp_path / "run"):
        pass


def test_a_non_empty_foreign_folder_is_refused_unless_forced(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(folder.RunFolderError, match="non-empty folder that holds no advrobust run.*--force"):
        with folder.claim(tmp_path / "home"):
            pass
    with folder.claim(tmp_path / "home", force=True):
        pass
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def test_new_empty_and_existing_run_folders_are_accepted(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "old_run").mkdir()
    (tmp_path / "old_run" / "store.sqlite").write_bytes(b"")
    for name in ("new", "empty", "old_run"):
        with folder.claim(tmp_path / name):
            pass
    assert folder.is_run_folder(tmp_path / "new") and not folder.is_run_folder(tmp_path / "missing")


def test_a_file_is_not_a_run_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(folder.RunFolderError, match="is a file, not a folder"):
        folder.check_usable(tmp_path / "file")


def test_the_holder_waits_no_longer_than_needed(tmp_path):
    # The refusal is immediate (non-blocking lock), not a wait for the other run.
    holder = _holder(tmp_path / "run")
    try:
        started = time.monotonic()
        with pytest.raises(folder.RunFolderError):
            with folder.claim(tmp_path / "run"):
                pass
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()


def test_claiming_removes_the_temporary_files_of_writes_a_killed_run_left(tmp_path):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "store.sqlite").write_bytes(b"")
    leftovers = [run / ".results.json.ab12cd_9.tmp", run / "figures" / ".curves.png.x1y2z3w4.tmp"]
    kept = [run / ".notes.tmp", run / "figures" / "plot.tmp", run / "results.json"]
    for path in leftovers + kept:
        path.write_text("x")
    with folder.claim(run):
        assert not any(path.exists() for path in leftovers)
        assert all(path.exists() for path in kept)


@pytest.mark.parametrize("code, fix", [(errno.EACCES, r"chmod u\+w"), (errno.EROFS, "writable disk")])
def test_a_folder_that_cannot_be_written_in_is_refused_before_the_lock_is_taken(tmp_path, monkeypatch, code, fix):
    run = tmp_path / "run"
    run.mkdir()
    real_open = os.open

    def refusing_open(path, flags, mode=0o777, *, dir_fd=None):
        if flags & os.O_CREAT and os.path.dirname(os.fsdecode(path)) == str(run):
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", refusing_open)  # the kernel's refusal; mode bits do not bind root
    with pytest.raises(OSError, match=fix) as refused:
        with folder.claim(run):
            pytest.fail("claimed a folder that cannot be written in")
    assert refused.value.errno == code and str(run) in str(refused.value)
    assert list(run.iterdir()) == []
