"""advrobust.run.interrupt: Ctrl-C finishes the unit in progress, saves, says how to resume,
and the resumed run equals an uninterrupted one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advrobust import models
from advrobust.run.interrupt import CheckedUnits, Interrupts, RunInterrupted
from tests.advrobust.run.conftest import count_units
from tests.conftest import REPO

CONFIG = """
[run]
dataset = "mnist"
epsilons = [0.0, 0.1, 0.2]
n_examples = 300
batch_size = 20
check_examples = 40
examples = 2

[[attacks]]
name = "pgd"
params = {{ steps = 20, seed = 0 }}

[[models]]
name = "cnn"
path = "{model}"
"""



def _without_timings(node):
    """results.json's models without any ``seconds`` entry (compute times differ per run)."""
    if isinstance(node, Path):
        return _without_timings(json.loads(node.read_text())["models"])
    if isinstance(node, dict):
        return {key: _without_timings(value) for key, value in node.items() if key != "seconds"}
    if isinstance(node, list):
        return [_without_timings(value) for value in node]
    return node


class _Units:
    def __init__(self):
        self.stored = []

    def get(self, *args):
        return None

    def put(self, *args):
        self.stored.append(args)


def test_the_first_interrupt_waits_for_the_unit_then_stops():
    interrupts = Interrupts()
    units = CheckedUnits(_Units(), interrupts)
    with interrupts.deferred():
        interrupts._handle(signal.SIGINT, None)
        assert interrupts.requested
        with pytest.raises(RunInterrupted, match="every finished unit is saved"):
            units.put("pgd", 0)
    assert units._units.stored == [("pgd", 0)]  # stored first, then stopped
    with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C stops at once
        with interrupts.deferred():
            interrupts._handle(signal.SIGINT, None)


def test_outside_attacks_an_interrupt_stops_at_once():
    with pytest.raises(KeyboardInterrupt):
        Interrupts()._handle(signal.SIGINT, None)


@pytest.mark.slow
def test_ctrl_c_mid_attack_saves_says_how_to_resume_and_resuming_equals_an_uninterrupted_run(
        trained_mnist_cnn, tmp_path):
    model, _, _ = trained_mnist_cnn
    models.save(model, tmp_path / "model.keras", {"dataset": "mnist"})
    config = tmp_path / "run.toml"
    config.write_text(CONFIG.format(model=tmp_path / "model.keras"))
    base = [sys.executable, "-m", "advrobust", "run", str(config), "--no-report"]

    whole = subprocess.run(base + ["--out", str(tmp_path / "whole")], cwd=REPO, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]

    out = tmp_path / "interrupted"
    process = subprocess.Popen(base + ["--out", str(out)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while count_units(out / "store.sqlite") < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "stopping after the unit in progress" in stderr
    assert f"Continue with: advrobust run {config} --out {out} --resume" in stderr
    saved = count_units(out / "store.sqlite")
    assert saved >= 2 and not (out / "results.json").exists()

    resumed = subprocess.run(base + ["--out", str(out), "--resume"], cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _without_timings(out / "results.json") == _without_timings(tmp_path / "whole" / "results.json")
    assert count_units(out / "store.sqlite") == count_units(tmp_path / "whole" / "store.sqlite")  # no unit twice
