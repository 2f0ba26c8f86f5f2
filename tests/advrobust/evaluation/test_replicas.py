"""advrobust.evaluation.replicas: units in order, at most one per device at a time, errors
passed on; a curve over two logical CPU devices equals the one-device curve."""

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from advrobust.evaluation import replicas
from attacks.backend import tf

REPO = Path(__file__).resolve().parents[3]


def test_one_replica_runs_in_the_calling_thread():
    assert replicas.replica_devices(tf.distribute.get_strategy()) == ("",)
    threads = list(replicas.map_on_replicas(lambda item: (item, threading.current_thread()), [1, 2, 3]))
    assert [item for item, _ in threads] == [1, 2, 3]
    assert {thread for _, thread in threads} == {threading.current_thread()}


def test_units_come_back_in_order_and_never_share_a_device(monkeypatch):
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    lock = threading.Lock()
    on_device = replicas._on_device

    def counting(function, item, device):
        with lock:
            running[device] = running.get(device, 0) + 1
            most[device] = max(most.get(device, 0), running[device])
        try:
            return on_device(function, item, device)
        finally:
            with lock:
                running[device] -= 1

    def unit(item):
        time.sleep(0.02 * (6 - item))  # later items finish first
        return item * 10

    monkeypatch.setattr(replicas, "_on_device", counting)
    devices = ("/device:CPU:0", "/job:localhost/replica:0/task:0/device:CPU:0")
    assert list(replicas.map_on_replicas(unit, range(6), devices)) == [0, 10, 20, 30, 40, 50]
    assert most == {device: 1 for device in devices}


def test_an_error_in_a_unit_is_raised_in_its_turn():
    def unit(item):
        if item == 2:
            raise ValueError("unit 2 failed")
        return item

    results = replicas.map_on_replicas(unit, range(4), ("/cpu:0", "/cpu:0"))
    assert next(results) == 0
    assert next(results) == 1
    with pytest.raises(ValueError, match="unit 2 failed"):
        next(results)


TWO_LOGICAL_CPUS = """
import json
import numpy as np
from attacks.backend import keras, tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from advrobust import evaluation
from defenses.distribute import get_strategy

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(3)])
rng = np.random.default_rng(0)
x = rng.random((90, 6, 6, 1), dtype=np.float32)
y = np.argmax(model.predict(x, verbose=0), axis=1)  # every clean point correct: all are attacked
curves = {}
for name in ("default", "mirrored"):
    strategy = get_strategy(name)
    result = evaluation.evaluate({"m": model}, x, y, attacks=["fgsm", ("pgd", {"steps": 5, "seed": 0})],
                                 epsilons=[0.0, 0.05, 0.2], batch_size=20, progress=False, strategy=strategy)
    curves[name] = {"replicas": strategy.num_replicas_in_sync,
                    "masks": [curve.robust_mask.tolist() for curve in result["m"].curves]}
print(json.dumps(curves))
"""


def test_a_curve_on_two_logical_cpus_equals_the_one_device_curve():
    done = subprocess.run([sys.executable, "-c", TWO_LOGICAL_CPUS], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    curves = json.loads(done.stdout.strip().splitlines()[-1])
    assert (curves["default"]["replicas"], curves["mirrored"]["replicas"]) == (1, 2)
    assert curves["mirrored"]["masks"] == curves["default"]["masks"]
    robust = [sum(map(sum, mask[1:])) for mask in curves["default"]["masks"]]
    assert all(0 < count < 2 * 90 for count in robust)  # the attacks break some points, not all
