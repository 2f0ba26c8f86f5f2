"""Crash safety of ``advrobust run``: a run killed with SIGKILL while it trains, mid-attack or
while it writes its results, then continued with ``--resume``, ends with the results of an
uninterrupted run, no unit twice, no temporary file left and the run folder free.

Kill points are deterministic without hooks in the product: the killed run is
``python -c`` code that wraps one product function so that its N-th call kills the
process (SIGKILL, so no handler, ``finally`` or atexit runs), then calls the CLI's main.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advrobust.run.folder import LOCK_NAME
from tests.conftest import REPO

pytestmark = pytest.mark.slow

# A tiny run with several units: 2 attacks x 2 chunks of 60 images, plus the checks' units.
CONFIG = """
[run]
dataset = "mnist"
epsilons = [0.0, 0.1, 0.2]
n_examples = 120
batch_size = 60
check_examples = 30
noise_draws = 1
examples = 2

[[attacks]]
name = "fgsm"

[[attacks]]
name = "pgd"
params = { steps = 5, seed = 0 }

[[models]]
name = "cnn"
train = { model = "cnn", epochs = 2, batch_size = 64, train_subset = 512, test_subset = 50, augment = "shift" }
"""

# argv: module, attribute path, N, "before"/"after" (kill before or after the N-th call
# runs), a file name (count only calls whose first argument is a path with that name) or
# "*" (count every call), then the CLI's arguments.
KILL_AT_NTH_CALL = """
import functools, importlib, os, pathlib, signal, sys
import advrobust
module, path, nth, when, file_name = sys.argv[1:6]
owner = importlib.import_module(module)
*parents, name = path.split(".")
for parent in parents:
    owner = getattr(owner, parent)
original, calls = getattr(owner, name), []
@functools.wraps(original)
def dying(*args, **kwargs):
    if file_name == "*" or pathlib.Path(str(args[0])).name == file_name:
        calls.append(1)
    if when == "before" and len(calls) == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    if when == "after" and len(calls) == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(owner, name, dying)
from advrobust.cli import main
sys.exit(main(sys.argv[6:]))
"""

# What differs between two runs of one config by design: compute and wall times (every
# ``seconds``, a model's ``training_seconds``) and when the run began and ended
# (``started`` is the store's creation, ``finished`` the end). The environment is compared:
# all runs here share one machine.
VARYING = {"seconds", "training_seconds", "started", "finished"}


def _advrobust_run(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advrobust", "run", str(config), "--out", str(out), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def _killed_run(config: Path, out: Path, target: str, nth: int, when: str, *extra: str, file_name: str = "*") -> None:
    """Run ``advrobust run`` and SIGKILL it at the ``nth`` call of ``target`` ("module:attr.path")
    (counting only calls on a file named ``file_name`` unless it is ``"*"``)."""
    module, path = target.split(":")
    result = subprocess.run([sys.executable, "-c", KILL_AT_NTH_CALL, module, path, str(nth), when, file_name, "run",
                             str(config), "--out", str(out), *extra],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == -signal.SIGKILL, f"not killed at {target} #{nth}: {result.stderr[-3000:]}"


def _without(node, keys=VARYING):
    if isinstance(node, dict):
        return {key: _without(value, keys) for key, value in node.items() if key not in keys}
    if isinstance(node, list):
        return [_without(value, keys) for value in node]
    return node


def _units(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "store.sqlite") as connection:
        return connection.execute("SELECT model, attack, batch, n, epsilons, clean, robust, spec FROM units "
                                  "ORDER BY model, attack, batch").fetchall()


def _npz_files(out: Path) -> dict[str, dict[str, np.ndarray]]:
    files = {}
    for path in sorted([*out.glob("outcomes/*.npz"), *out.glob("examples/*.npz")]):
        with np.load(path) as loaded:
            files[str(path.relative_to(out))] = {key: loaded[key] for key in loaded.files}
    return files


def _card(out: Path) -> dict:
    card = json.loads((out / "models" / "00-cnn" / "model.card.json").read_text())
    return _without(card, VARYING | {"epoch_seconds"})


def assert_same_as_uninterrupted(out: Path, reference: Path) -> None:
    """``out`` holds what the uninterrupted ``reference`` run holds, and nothing half-done."""
    results = json.loads((out / "results.json").read_text())
    assert _without(results) == _without(json.loads((reference / "results.json").read_text()))
    assert (out / "results.csv").is_file()
    # Every unit once, each equal to the reference's (the table's key forbids duplicates;
    # the count shows none was lost or added under another key).
    assert _units(out) == _units(reference)
    mine, theirs = _npz_files(out), _npz_files(reference)
    assert mine.keys() == theirs.keys() and mine
    for name in mine:
        assert mine[name].keys() == theirs[name].keys(), name
        for key in mine[name]:
            np.testing.assert_array_equal(mine[name][key], theirs[name][key], err_msg=f"{name}: {key}")
    assert _card(out) == _card(reference)  # the same training, epoch by epoch
    leftovers = [path for path in out.rglob("*") if path.name.endswith((".tmp", "-journal")) or "_temp" in path.name]
    assert not leftovers, leftovers
    with open(out / LOCK_NAME, "a") as handle:  # released: this process can take it at once
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "run.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference(config) -> Path:
    """The uninterrupted run that every killed and resumed run must equal."""
    out = config.parent / "uninterrupted"
    result = _advrobust_run(config, out, "--no-report")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _copy_run(reference: Path, out: Path, *, keep_units: bool) -> None:
    """``out`` as a run of the same config killed after it committed its model (and, with
    ``keep_units``, all its units) but before it wrote its results."""
    shutil.copytree(reference, out, ignore=shutil.ignore_patterns("results.*", "report.*", "figures", "outcomes",
                                                                  "examples"))
    if not keep_units:
        with sqlite3.connect(out / "store.sqlite") as connection:
            connection.execute("DELETE FROM units")


def test_killed_while_training_resumes_the_epoch_and_ends_as_an_uninterrupted_run(config, reference):
    out = config.parent / "killed-training"
    # Epoch 1 logged but not yet backed up: the restart restores epoch 0 and redoes epoch 1.
    _killed_run(config, out, "advrobust.training.callbacks:CSVLog.on_epoch_end", 2, "after", "--no-report")
    assert (out / "models" / "00-cnn" / "backup").is_dir() and not (out / "results.json").exists()
    resumed = _advrobust_run(config, out, "--resume", "--no-report")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch 2/2" in resumed.stdout and "Epoch 1/2" not in resumed.stdout  # only the unfinished epoch ran
    assert_same_as_uninterrupted(out, reference)


def test_killed_mid_attack_keeps_the_committed_units_and_a_new_run_is_told_to_resume(config, reference):
    out = config.parent / "killed-attack"
    _copy_run(reference, out, keep_units=False)
    # Two units committed; the third is computed but the process dies before committing it.
    _killed_run(config, out, "advrobust.run.store:ResultStore.put_unit", 3, "before", "--resume", "--no-report")
    assert len(_units(out)) == 2
    # The dead run's lock file is still there, but the kernel released its lock: a new run
    # is not told the folder is in use, only that it holds results (as documented).
    again = _advrobust_run(config, out, "--no-report")
    assert again.returncode == 2 and "in use" not in again.stderr
    assert "already holds results of this config; pass --resume" in again.stderr
    resumed = _advrobust_run(config, out, "--resume", "--no-report")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_as_uninterrupted(out, reference)


def test_killed_between_two_report_files_rewrites_them_all_on_resume(config, reference):
    out = config.parent / "killed-report"
    _copy_run(reference, out, keep_units=True)
    _killed_run(config, out, "advrobust.files:atomic_write_bytes", 1, "before", "--resume", file_name="report.md")
    assert (out / "results.json").is_file() and (out / "report.html").is_file() and not (out / "report.md").exists()
    resumed = _advrobust_run(config, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert_same_as_uninterrupted(out, reference)
