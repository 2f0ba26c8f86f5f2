"""advrobust.evaluation.replicas: units in order, at most one per device at a time, errors
passed on; a curve over two logical CPU devices equals the one-device curve."""

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
