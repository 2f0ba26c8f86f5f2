"""defenses.distribute: strategy names, MirroredStrategy on two logical CPUs and
MultiWorkerMirroredStrategy with two worker processes (slow)."""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from advrobust import models
from attacks.backend import tf
from defenses import distribute
from tests.conftest import run_python, write_fake_split


def test_strategy_names_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="unknown strategy 'tpu'; choose one of: auto, default, mirrored, multi_worker"):
        distribute.get_strategy("tpu")
    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribute.get_strategy("multi_worker")
    assert distribute.is_chief(tf.distribute.get_strategy())
    several_gpus = len(tf.config.list_logical_devices("GPU")) > 1
    assert isinstance(distribute.get_strategy("auto"), tf.distribute.MirroredStrategy) == several_gpus


DISTRIBUTED = r"""
import json, sys
import advrobust
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from advrobust import training
from attacks.backend import keras
from defenses import adversarial_training as at, distribute

out = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.random((16, 6), dtype=np.float32)
y = rng.integers(0, 3, 16)

def one_step(strategy, awp_gamma=0.0):
    # One SGD step of PGD-AT (no random start): the same update on 1 or 2 replicas.
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(8, activation="relu")(inputs)))
        before = [w.numpy() for w in model.weights]
        config = at.AdversarialTrainingConfig("pgd_at", eps=0.1, steps=3, random_start=False, awp_gamma=awp_gamma)
        trainer = at.AdversarialTrainer(model, config)
        trainer.compile(optimizer=keras.optimizers.SGD(0.5))
    loss = float(trainer.train_on_batch(x, y, return_dict=True)["loss"])
    return before, [w.numpy() for w in model.weights], loss

mirrored = distribute.get_strategy("mirrored")
before, single, single_loss = one_step(distribute.get_strategy("default"))
_, double, double_loss = one_step(mirrored)
result = {"replicas": mirrored.num_replicas_in_sync, "losses": [single_loss, double_loss],
          "step_change": max(float(np.abs(a - b).max()) for a, b in zip(before, single)),
          "step_difference": max(float(np.abs(a - b).max()) for a, b in zip(single, double))}
# With adversarial weight perturbation the replicas average their weight gradients first.
_, awp_single, _ = one_step(distribute.get_strategy("default"), awp_gamma=0.1)
_, awp_double, _ = one_step(mirrored, awp_gamma=0.1)
result["awp_difference"] = max(float(np.abs(a - b).max()) for a, b in zip(awp_single, awp_double))
result["awp_effect"] = max(float(np.abs(a - b).max()) for a, b in zip(awp_single, single))
for name in ("default", "mirrored"):
    config = training.TrainConfig(dataset="mnist", epochs=1, train_subset=2000, defense="pgd_at", preset="quick",
                                  strategy=name, robust_val_size=200, seed=0)
    card = training.train(config, f"{out}/{name}", verbose=0)["card"]
    result[name] = {"replicas": card["strategy"]["replicas"], "clean": card["clean_test_accuracy"],
                    "robust": card["robust_validation"]["best_robust_accuracy"]}
config = training.TrainConfig(dataset="mnist", epochs=1, train_subset=2000, defense="pgd_at", preset="quick",
                              strategy="mirrored", robust_val_size=200, seed=0, ema_decay=0.9)
card = training.train(config, f"{out}/mirrored_ema", verbose=0)["card"]
result["mirrored_ema"] = {"replicas": card["strategy"]["replicas"], "clean": card["clean_test_accuracy"],
                          "steps": card["weight_averaging"]["steps"]}
print("RESULT " + json.dumps(result))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    completed = run_python(DISTRIBUTED.replace("sys.argv[1]", repr(str(tmp_path))))
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["replicas"] == 2 and result["mirrored"]["replicas"] == 2 and result["default"]["replicas"] == 1
    # Exact: each replica crafts for its half of the batch and the summed gradients of
    # the replica-scaled losses equal the one-device gradient.
    assert result["step_change"] > 1e-3
    assert result["step_difference"] < 1e-5
    assert result["losses"][0] == pytest.approx(result["losses"][1], rel=1e-5)
    assert result["awp_effect"] > 1e-4 and result["awp_difference"] < 1e-5, result
    # End to end (different random starts and dropout masks): within noise. Measured:
    # clean 0.821 / 0.803, robust 0.69 / 0.67.
    assert abs(result["mirrored"]["clean"] - result["default"]["clean"]) < 0.05, result
    assert abs(result["mirrored"]["robust"] - result["default"]["robust"]) < 0.1, result
    assert result["mirrored"]["clean"] > 0.6
    # Weight averaging works under the strategy too: one average per global batch.
    assert result["mirrored_ema"]["replicas"] == 2 and result["mirrored_ema"]["steps"] == 16
    assert result["mirrored_ema"]["clean"] > 0.6


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
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
