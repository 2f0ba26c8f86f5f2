"""advrobust.training.job: training on real Fashion-MNIST / MNIST subsets (slow)."""

import csv

import numpy as np
import pytest

from advrobust import models, training

pytestmark = pytest.mark.slow


def test_short_cnn_training_beats_80_percent_on_fashion_mnist(tmp_path):
    config = training.TrainConfig(dataset="fashion_mnist", model="cnn", epochs=3, train_subset=12000, seed=0)
    result = training.train(config, tmp_path, verbose=0)
    card = result["card"]
    assert card["clean_test_accuracy"] > 0.80, card["clean_test_accuracy"]
    assert card["test_examples"] == 10000 and card["training_config"]["train_examples"] == 12000
    # Checkpoint, TensorBoard logs, CSV log and the saved model with its card.
    assert (tmp_path / "checkpoints" / "best.keras").is_file()
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))
    with open(tmp_path / "training_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == card["epochs_run"] and "val_accuracy" in rows[0]
    saved = models.load(result["model_path"])
    assert training.accuracy(saved, *_first_test(500)) == training.accuracy(result["model"], *_first_test(500))
    assert models.load_card(result["model_path"])["clean_test_accuracy"] == card["clean_test_accuracy"]


def _first_test(n):
    from advrobust import data
    x, y = data.load("fashion_mnist", "test", download=False)
    return x[:n], y[:n]


def test_same_seed_same_model(tmp_path):
    config = training.TrainConfig(dataset="mnist", model="cnn", epochs=1, train_subset=1000, seed=5)
    first = training.train(config, tmp_path / "a", verbose=0)["model"]
    second = training.train(config, tmp_path / "b", verbose=0)["model"]
    x, _ = _first_test(64)
    np.testing.assert_allclose(first(x).numpy(), second(x).numpy(), rtol=1e-5, atol=1e-5)
