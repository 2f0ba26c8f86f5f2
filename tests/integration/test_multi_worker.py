"""MultiWorkerMirroredStrategy for real: two worker processes on localhost train one model
together (slow). Checks that both finish, hold the same weights (synchronous training),
that only the chief writes the outputs, and that logged metrics are not summed over the
workers (accuracy <= 1, the warm-up eps as configured)."""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from advrobust import models
from tests.conftest import write_fake_split

pytestmark = pytest.mark.slow


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.parametrize("defense", ["pgd_at", "nsl"])
def test_two_workers_train_one_model(tmp_path, defense):
    data_dir = tmp_path / "data"
    write_fake_split(data_dir / "mnist", "train", n=400)
    write_fake_split(data_dir / "mnist", "test", n=50)
    out = tmp_path / "out"
    cluster = [f"localhost:{port}" for port in _free_ports(2)]
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": cluster},
                                                     "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "advrobust", "train", "--dataset", "mnist", "--model", "cnn", "--epochs", "2",
             "--batch-size", "64", "--defense", defense, "--preset", "quick", "--strategy", "multi_worker",
             "--data-dir", str(data_dir), "--out", str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]

    card = json.loads((out / "model.card.json").read_text())
    assert card["strategy"]["name"] == "multi_worker" and card["strategy"]["replicas"] == 2
    chief = models.load(out / "model.keras")
    other = models.load(out / ".worker-1" / "model.keras")
    for a, b in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    with open(out / "training_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for row in rows:
        for key, value in row.items():
            if "acc" in key:
                assert 0.0 <= float(value) <= 1.0, (key, value)
        if "eps" in row:
            assert float(row["eps"]) == pytest.approx(card["defense_config"]["eps"])
