"""Shared by the harness tests: tiny CNNs and data, hostile model files, outcomes and run folders,
and legend labels of a figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from advrobust import models
from advrobust.results import outcome_files, outcomes
from attacks.backend import keras


def cnn_and_data(seed=0, n=40):
    model = models.build("cnn", dropout=False, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=1)  # the model is right on every clean point
    return model, x, y


def lambda_model(marker: Path) -> keras.Model:
    """A model whose Lambda layer creates ``marker`` when its code runs after saving.

    Building the model calls the lambda too, so it acts only once ``marker``'s folder
    holds an ``armed`` file, which the test writes after saving.
    """
    armed, command = str(marker.parent / "armed"), f"touch {marker}"
    inputs = keras.Input((2,))
    outputs = keras.layers.Lambda(
        lambda t: (__import__("os").path.exists(armed) and __import__("os").system(command), t)[1])(inputs)
    return keras.Model(inputs, outputs)


def arm(marker: Path) -> None:
    (marker.parent / "armed").touch()


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "code-ran"
    yield path
    assert not path.exists(), "code from a model file ran"


def make_outcomes(name, n, *, dataset="fashion_mnist", epsilons=(0.0, 0.1), seed=0, norm="inf", labels=None):
    rng = np.random.default_rng(seed)
    clean = rng.random(n) < 0.9
    worst = np.stack([clean & (rng.random(n) < 1.0 - 0.3 * k) for k in range(len(epsilons))])
    return outcomes.Outcomes(name=name, dataset=dataset, norm=norm, epsilons=np.array(epsilons, np.float64),
                             clean=clean, worst=worst, per_attack={'pgd {"steps": 10}': worst,
                                                                   "fgsm {}": worst | clean},
                             labels=None if labels is None else np.asarray(labels[:n], np.int64))


LABELS = np.random.default_rng(42).integers(0, 10, 300)


def make_run_folder(folder, *items):
    """A finished-run folder as the runner leaves it: results.json naming each model's outcomes."""
    records = []
    for index, item in enumerate(items):
        relative = f"outcomes/{index:02d}-{item.name}.npz"
        outcome_files.write(item, folder / relative)
        records.append({"name": item.name, "outcomes": relative})
    (folder / "results.json").write_text(json.dumps({"schema_version": 1, "models": records}))
    return folder


def legend_labels(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]
