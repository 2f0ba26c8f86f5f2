"""advrobust.files: atomic writes that leave nothing behind on failure, digests, paths inside a run."""

from __future__ import annotations

import errno

import pytest

from advrobust import files


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "results.json"
    files.atomic_write_text(target, "first")
    files.atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [path.name for path in target.parent.iterdir()] == ["results.json"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_a_write_that_fails_half_way_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    files.atomic_write_text(target, "finished work")

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        files.atomic_write_text(target, "half")
    assert target.read_text() == "finished work"
    assert [path.name for path in tmp_path.iterdir()] == ["results.json"]


def test_digest_is_canonical():
    assert files.digest({"b": 1, "a": [1, 2]}) == files.digest({"a": [1, 2], "b": 1})
    assert len(files.digest("x")) == 64 and files.digest("x") != files.digest("y")


@pytest.mark.parametrize("relative", ["../outside.json", "/etc/passwd", "models/../../x", "figures/../../../y"])
def test_paths_from_results_json_stay_inside_the_run_folder(tmp_path, relative):
    with pytest.raises(ValueError, match="leads outside the run folder"):
        files.inside(tmp_path / "run", relative)


def test_paths_inside_the_run_folder_are_accepted(tmp_path):
    assert files.inside(tmp_path, "outcomes/00-cnn.npz") == tmp_path / "outcomes" / "00-cnn.npz"
    assert files.inside(tmp_path, "models/../outcomes/x.npz") == tmp_path / "models/../outcomes/x.npz"
