"""experiments/torch_crosscheck/export.py: what it accepts and what it writes.

The PyTorch side (evaluate.py) cannot run here (CI installs no PyTorch); it checks its
rebuilt model against the ``tf_logits`` written here on every test image before it
attacks, so these tests pin down that those logits and weights are the model's own.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from advrobust import models
from tests.conftest import REPO, write_fake_split


def _export_module():
    spec = importlib.util.spec_from_file_location("torch_crosscheck_export",
                                                  REPO / "experiments" / "torch_crosscheck" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_the_reference_cnn_without_dropout_is_accepted():
    export = _export_module()
    export.check_reference_cnn(models.build_cnn(dropout=False, seed=0))
    export.check_reference_cnn(models.build_cnn(dropout=False, width=2, seed=0))  # evaluate.py reads any width
    with pytest.raises(ValueError, match="not the reference CNN without Dropout"):
        export.check_reference_cnn(models.build_cnn(dropout=True, seed=0))


def test_export_writes_the_test_split_the_weights_and_the_models_own_logits(isolated_lookup, monkeypatch):
    export = _export_module()
    images, labels = write_fake_split(isolated_lookup / "data" / "mnist", "test", n=12)
    monkeypatch.setenv("ADVROBUST_DATA_DIR", str(isolated_lookup / "data"))
    model = models.build_cnn(dropout=False, seed=3)
    path = isolated_lookup / "m.keras"
    models.save(model, path, {"dataset": "mnist", "defense": "none"})
    out = isolated_lookup / "out"

    export.main(["--dataset", "mnist", "--out", str(out), f"tiny={path}"])

    split = np.load(out / "data-mnist.npz")
    np.testing.assert_array_equal(split["x"], images)
    np.testing.assert_array_equal(split["y"], labels)
    archive = np.load(out / "model-tiny.npz")
    x = images[..., None].astype(np.float32) / np.float32(255.0)
    np.testing.assert_allclose(archive["tf_logits"], model(x, training=False).numpy(), rtol=1e-6, atol=1e-6)
    for layer in ("conv1", "conv2", "dense", "logits"):
        kernel, bias = model.get_layer(layer).get_weights()
        np.testing.assert_array_equal(archive[f"{layer}.kernel"], kernel)
        np.testing.assert_array_equal(archive[f"{layer}.bias"], bias)
    assert json.loads(str(archive["card"]))["dataset"] == "mnist"


def test_export_refuses_a_model_trained_on_the_other_dataset(isolated_lookup, monkeypatch):
    export = _export_module()
    write_fake_split(isolated_lookup / "data" / "mnist", "test", n=4)
    monkeypatch.setenv("ADVROBUST_DATA_DIR", str(isolated_lookup / "data"))
    path = isolated_lookup / "m.keras"
    models.save(models.build_cnn(dropout=False, seed=0), path, {"dataset": "fashion_mnist"})
    with pytest.raises(SystemExit, match="trained on 'fashion_mnist'"):
        export.main(["--dataset", "mnist", "--out", str(isolated_lookup / "out"), f"m={path}"])
