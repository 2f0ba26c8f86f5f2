"""Output folders advrobust cannot write in (issue 23, item 6 of the bad-input matrix).

``advrobust run|train --out DIR`` with ``DIR`` not writable, or not creatable because its
parent is not; ``advrobust attack --out FILE.json`` into an unwritable folder; and a folder
on a read-only file system. Each must end with exit status 2, one ``advrobust: error:``
line naming the path (and, where advrobust checks the folder itself, the fix), no
traceback, and no file left behind: neither output nor the ``.NAME.*.tmp`` of a write.

The refusal is met three ways, since these tests run as root in CI and root ignores mode
bits:

- simulated at the OS boundary in this process (``os.mkdir`` and creating ``os.open``
  refuse every path inside the folder), so the CLI's error path runs on every machine;
- for real, mode 0o555, in a subprocess. As root the subprocess keeps uid 0 (the owner of
  the folders) but loses ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH`` from its
  capability bounding set, so the kernel applies the owner's mode bits. (Dropping to the
  user ``nobody`` does not work where the Python install lives under ``/root``, mode
  0700: the exec itself is refused.) Skipped only where the capabilities cannot be
  dropped, with the reason;
- for real, a read-only tmpfs mounted over a folder (``EROFS``, which binds root too);
  skipped, with ``mount``'s own message, where mounting is refused (no ``CAP_SYS_ADMIN``).

``train`` and ``attack`` check their folder before they load data or a model: two
tests make that work fail if it starts.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from advrobust import cli, models
from advrobust.files import writable_folder
from attacks.backend import keras
from tests.conftest import REPO

# What the message of advrobust.files says to do, per refusal.
FIX = {errno.EACCES: "chmod u+w", errno.EROFS: "choose a folder on a writable disk"}
# The CLI's attack, as cheap as it gets: FGSM on 4 MNIST test images.
ATTACK = ["attack", "--dataset", "mnist", "--attack", "fgsm", "--eps", "0.1", "--n", "4", "--batch-size", "4",
          "--strategy", "default"]
TRAIN = ["train", "--dataset", "mnist", "--epochs", "1", "--train-subset", "20"]
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory) -> str:
    """A saved MNIST-shaped logits model (one dense layer), for ``advrobust attack``."""
    inputs = keras.Input((28, 28, 1))
    logits = keras.layers.Dense(10, kernel_initializer=keras.initializers.GlorotUniform(seed=0))(
        keras.layers.Flatten()(inputs))
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    models.save(keras.Model(inputs, logits), path, {"dataset": "mnist"})
    return str(path)


def _refuse_inside(monkeypatch, folder: Path, code: int) -> None:
    """Make the OS refuse, with ``code``, to create any folder or file inside ``folder``."""
    real_mkdir, real_open = os.mkdir, os.open
    folder = folder.resolve()

    def refused(path) -> bool:
        return folder in Path(os.fsdecode(path)).resolve().parents

    def mkdir(path, mode=0o777, *, dir_fd=None):
        if refused(path):
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real_mkdir(path, mode, dir_fd=dir_fd)

    def open_(path, flags, mode=0o777, *, dir_fd=None):
        if flags & os.O_CREAT and refused(path):
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


def _assert_refused(status: int, stderr: str, path: Path, fix: str | None) -> None:
    """Exit 2 with one error line naming ``path`` (and ``fix``, if given), no traceback.

    Only the attack's progress bar (redrawn with carriage returns) may come before the line.
    """
    lines = [line for line in re.split(r"[\r\n]", stderr) if line.strip()]
    assert status == 2, stderr
    assert "Traceback" not in stderr
    assert lines and lines[-1].startswith("advrobust: error: "), stderr
    assert all("|" in line for line in lines[:-1]), stderr
    assert str(path) in lines[-1], lines[-1]
    if fix is not None:
        assert fix in lines[-1], lines[-1]


def _files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")) if folder.exists() else []


# --- simulated at the OS boundary: every machine --------------------------------------------

@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS], ids=["no-permission", "read-only"])
def test_run_refuses_an_existing_folder_it_cannot_write_in(tmp_path, monkeypatch, capsys, code):
    out = tmp_path / "out"
    out.mkdir()
    _refuse_inside(monkeypatch, out, code)
    status = cli.main(["run", "--out", str(out)])
    _assert_refused(status, capsys.readouterr().err, out, FIX[code])
    assert _files_under(out) == []


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS], ids=["no-permission", "read-only"])
def test_run_refuses_a_folder_whose_parent_it_cannot_write_in(tmp_path, monkeypatch, capsys, code):
    out = tmp_path / "parent" / "out"
    out.parent.mkdir()
    _refuse_inside(monkeypatch, out.parent, code)
    status = cli.main(["run", "--out", str(out)])
    _assert_refused(status, capsys.readouterr().err, out, FIX[code])
    assert not out.exists()


def test_the_fix_names_the_folder_that_needs_write_permission(tmp_path, monkeypatch):
    out = tmp_path / "parent" / "out"
    out.parent.mkdir()
    _refuse_inside(monkeypatch, out.parent, errno.EACCES)
    with pytest.raises(PermissionError, match=re.escape(f"chmod u+w {out.parent}") + "$"):
        writable_folder(out)


def test_train_refuses_a_folder_whose_parent_it_cannot_write_in(tmp_path, monkeypatch, capsys):
    out = tmp_path / "parent" / "out"
    out.parent.mkdir()
    _refuse_inside(monkeypatch, out.parent, errno.EACCES)
    status = cli.main([*TRAIN, "--out", str(out)])
    _assert_refused(status, capsys.readouterr().err, out, f"chmod u+w {out.parent}")
    assert not out.exists()


def test_train_refuses_an_existing_folder_it_cannot_write_in(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    _refuse_inside(monkeypatch, out, errno.EACCES)
    status = cli.main([*TRAIN, "--out", str(out)])
    _assert_refused(status, capsys.readouterr().err, out, FIX[errno.EACCES])
    assert _files_under(out) == []


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS], ids=["no-permission", "read-only"])
def test_attack_refuses_a_json_file_in_a_folder_it_cannot_write_in(tmp_path, monkeypatch, capsys,
                                                                    tiny_model_file, code):
    folder = tmp_path / "results"
    folder.mkdir()
    _refuse_inside(monkeypatch, folder, code)
    status = cli.main([*ATTACK, "--model", tiny_model_file, "--out", str(folder / "attack.json")])
    _assert_refused(status, capsys.readouterr().err, folder, FIX[code])
    assert _files_under(folder) == []


def _no_work(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} before the output folder was checked")
    return refuse


def test_train_checks_the_folder_before_it_loads_the_data(tmp_path, monkeypatch, capsys):
    from advrobust import data

    out = tmp_path / "out"
    out.mkdir()
    _refuse_inside(monkeypatch, out, errno.EACCES)
    monkeypatch.setattr(data, "load", _no_work("the data were loaded"))
    status = cli.main([*TRAIN, "--out", str(out)])
    _assert_refused(status, capsys.readouterr().err, out, FIX[errno.EACCES])


def test_attack_checks_the_folder_before_it_loads_the_model(tmp_path, monkeypatch, capsys, tiny_model_file):
    folder = tmp_path / "results"
    folder.mkdir()
    _refuse_inside(monkeypatch, folder, errno.EACCES)
    monkeypatch.setattr(models, "load", _no_work("the model was loaded"))
    status = cli.main([*ATTACK, "--model", tiny_model_file, "--out", str(folder / "attack.json")])
    _assert_refused(status, capsys.readouterr().err, folder, FIX[errno.EACCES])


# --- for real: mode 0o555 in a subprocess ------------------------------------------------------

# Runs each case through advrobust.cli.main and writes {case: [status, stderr]} as JSON.
_CASES_SCRIPT = textwrap.dedent("""
    import contextlib, io, json, sys, traceback
    from advrobust import cli

    cases, report = json.loads(sys.argv[1]), sys.argv[2]
    outcome = {}
    for name, argv in cases.items():
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            try:
                status = cli.main(argv)
            except BaseException:
                status, stderr = None, io.StringIO(traceback.format_exc())
        outcome[name] = [status, stderr.getvalue()]
    with open(report, "w") as handle:
        json.dump(outcome, handle)
""")


def _without_dac_override() -> None:
    """In the child before exec: drop the capabilities that let root ignore mode bits."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {capability})")


def _obeys_mode_bits(folder: Path, preexec) -> None:
    """Fail unless a Python started with ``preexec`` is refused a file in ``folder`` (0o555);
    skip where ``preexec`` itself is refused."""
    try:
        probe = subprocess.run([sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"], preexec_fn=preexec,
                               capture_output=True, text=True, timeout=60)
    except subprocess.SubprocessError as error:  # the preexec_fn failed: no CAP_SETPCAP
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE for a subprocess here ({error}); the simulated tests cover "
                    "the error path")
    assert probe.returncode != 0, f"a process meant to obey mode bits wrote into {folder}: the test would not be real"
    assert "PermissionError" in probe.stderr, probe.stderr


def _run_cases_under_mode_bits(cases: dict[str, list[str]], workspace: Path, read_only: list[Path]):
    """Run ``cases`` through the CLI in a Python that obeys mode bits, with the ``read_only``
    folders at mode 0o555; return ``{case: [exit status, stderr]}``."""
    preexec = _without_dac_override if os.geteuid() == 0 else None
    report = workspace / "report.json"
    for folder in read_only:
        folder.chmod(0o555)
    try:
        _obeys_mode_bits(read_only[0], preexec)
        result = subprocess.run([sys.executable, "-c", _CASES_SCRIPT, json.dumps(cases), str(report)],
                                preexec_fn=preexec, capture_output=True, text=True, cwd=REPO, timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(report.read_text())
    finally:
        for folder in read_only:
            folder.chmod(0o755)


def test_run_train_and_attack_refuse_folders_without_write_permission(tmp_path, tiny_model_file):
    locked = tmp_path / "locked"  # exists, mode 0o555
    shut = tmp_path / "shut"  # mode 0o555: the --out folders inside it cannot be created
    for folder in (locked, shut):
        folder.mkdir()
    model = shutil.copy(tiny_model_file, tmp_path / "tiny.keras")
    shutil.copy(models.card_path(tiny_model_file), models.card_path(model))
    cases = {
        "run into DIR": ["run", "--out", str(locked)],
        "run into PARENT/DIR": ["run", "--out", str(shut / "run")],
        "train into DIR": [*TRAIN, "--out", str(locked)],
        "train into PARENT/DIR": [*TRAIN, "--out", str(shut / "train")],
        "attack into DIR/FILE.json": [*ATTACK, "--model", str(model), "--out", str(locked / "attack.json")],
    }
    outcome = _run_cases_under_mode_bits(cases, tmp_path, [locked, shut])
    expected = {
        "run into DIR": (locked, FIX[errno.EACCES]),
        "run into PARENT/DIR": (shut / "run", f"chmod u+w {shut}"),
        "train into DIR": (locked, FIX[errno.EACCES]),
        "train into PARENT/DIR": (shut / "train", f"chmod u+w {shut}"),
        "attack into DIR/FILE.json": (locked, f"chmod u+w {locked}"),
    }
    for name, (path, fix) in expected.items():
        status, stderr = outcome[name]
        _assert_refused(status, stderr, path, fix)
    assert _files_under(locked) == [] and _files_under(shut) == []


# --- for real: a read-only file system ----------------------------------------------------------

@pytest.fixture
def read_only_mount(tmp_path):
    """An empty folder on a read-only tmpfs, unmounted afterwards."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                                 capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command here to make a read-only file system; the simulated EROFS tests cover it")
    if mounted.returncode != 0:
        pytest.skip(f"mounting a read-only tmpfs is refused here (needs root with CAP_SYS_ADMIN): "
                    f"{mounted.stderr.strip()}; the simulated EROFS tests cover the error path")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True, timeout=30)


def test_run_train_and_attack_refuse_a_read_only_file_system(read_only_mount, capsys, tiny_model_file):
    fix = FIX[errno.EROFS]
    cases = [
        (["run", "--out", str(read_only_mount)], read_only_mount, fix),
        (["run", "--out", str(read_only_mount / "run")], read_only_mount / "run", fix),
        ([*TRAIN, "--out", str(read_only_mount / "train")], read_only_mount / "train", fix),
        ([*ATTACK, "--model", tiny_model_file, "--out", str(read_only_mount / "a.json")], read_only_mount, fix),
    ]
    for argv, path, expected_fix in cases:
        status = cli.main(argv)
        _assert_refused(status, capsys.readouterr().err, path, expected_fix)
    assert _files_under(read_only_mount) == []
