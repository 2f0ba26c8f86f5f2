"""advrobust.models.files: save and load with a card, and safe loading: no code from a model file
runs unless the user opts in.

Each hostile file, when Keras's own loaders read it without advrobust's checks, would
create a marker file; every test that reads one asserts that the marker does not exist afterwards.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from advrobust import models
from attacks.backend import keras
from tests.advrobust.conftest import arm, lambda_model
from tests.advrobust.models.conftest import X


def _plain_model() -> keras.Model:
    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(inputs))


def _rewrite_config(source: Path, target: Path, edit) -> Path:
    """Copy the .keras zip ``source`` to ``target`` with ``edit(config)`` applied."""
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, payload in files.items():
            archive.writestr(name, payload)
    return target


def test_keras_itself_runs_code_from_an_h5_file(tmp_path, marker):
    """The hole the checks close: tf-keras's loader runs a Lambda from H5 even in safe mode."""
    lambda_model(marker).save(tmp_path / "lambda.h5")
    arm(marker)
    keras.models.load_model(tmp_path / "lambda.h5", compile=False, safe_mode=True)
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("name", ["lambda.h5", "model.keras", "model.hdf5", "model"])
def test_h5_is_refused_whatever_its_name(tmp_path, marker, name):
    lambda_model(marker).save(tmp_path / "made.h5")
    arm(marker)
    shutil.copy(tmp_path / "made.h5", tmp_path / name)
    with pytest.raises(models.ModelFileError, match=rf"{name}.* H5 format.*arbitrary.*--unsafe-load"):
        models.load(tmp_path / name)


def test_savedmodel_folder_is_refused(tmp_path, marker):
    model = _plain_model()
    model.export(tmp_path / "saved") if hasattr(model, "export") else model.save(tmp_path / "saved", save_format="tf")
    with pytest.raises(models.ModelFileError, match="SAVED MODEL format.*allow_unsafe=True"):
        models.load(tmp_path / "saved")


def test_lambda_in_a_keras_zip_is_refused_even_renamed_h5(tmp_path, marker):
    lambda_model(marker).save(tmp_path / "lambda.keras")
    arm(marker)
    shutil.copy(tmp_path / "lambda.keras", tmp_path / "lambda.h5")
    for path in (tmp_path / "lambda.keras", tmp_path / "lambda.h5"):
        with pytest.raises(models.ModelFileError, match="names code outside Keras.*a Python lambda"):
            models.load(path)


@pytest.mark.parametrize("module, class_name", [("os", "system"), ("subprocess", "getoutput"),
                                                 ("builtins", "eval")])
def test_a_config_naming_a_non_keras_callable_is_refused(tmp_path, marker, module, class_name):
    _plain_model().save(tmp_path / "plain.keras")

    def point_at_foreign_code(config):
        layer = config["config"]["layers"][1]
        layer.update(module=module, class_name=class_name, config=f"touch {marker}")

    path = _rewrite_config(tmp_path / "plain.keras", tmp_path / "evil.keras", point_at_foreign_code)
    with pytest.raises(models.ModelFileError, match=rf"evil.keras.*{module}.{class_name}.*allow_unsafe"):
        models.load(path)


def test_a_foreign_activation_deep_in_the_config_is_refused(tmp_path, marker):
    _plain_model().save(tmp_path / "plain.keras")

    def foreign_activation(config):
        config["config"]["layers"][1]["config"]["activation"] = {
            "module": "os", "class_name": "function", "config": "system", "registered_name": None}

    path = _rewrite_config(tmp_path / "plain.keras", tmp_path / "act.keras", foreign_activation)
    with pytest.raises(models.ModelFileError, match=r"layers\[1\]\.config\.activation: os\.function"):
        models.load(path)


@pytest.mark.parametrize("keep", [0, 40, 300])
def test_truncated_files_give_a_clear_error(tmp_path, keep):
    _plain_model().save(tmp_path / "plain.keras")
    path = tmp_path / "cut.keras"
    path.write_bytes((tmp_path / "plain.keras").read_bytes()[:keep])
    with pytest.raises(models.ModelFileError, match="cut.keras.*truncated or corrupt"):
        models.load(path)


def test_a_safe_keras_zip_loads_whatever_its_name(tmp_path):
    model = _plain_model()
    model.save(tmp_path / "plain.keras")
    shutil.copy(tmp_path / "plain.keras", tmp_path / "plain.h5")
    x = np.ones((4, 2), np.float32)
    for path in (tmp_path / "plain.keras", tmp_path / "plain.h5"):
        np.testing.assert_array_equal(models.load(path)(x).numpy(), model(x).numpy())


def test_allow_unsafe_loads_a_trusted_h5_file(tmp_path):
    model = _plain_model()
    model.save(tmp_path / "trusted.h5")
    x = np.ones((4, 2), np.float32)
    np.testing.assert_allclose(models.load(tmp_path / "trusted.h5", allow_unsafe=True)(x).numpy(),
                               model(x).numpy())


def test_model_file_format_reads_bytes_not_names(tmp_path):
    _plain_model().save(tmp_path / "a.keras")
    _plain_model().save(tmp_path / "b.h5")
    (tmp_path / "c.keras").write_text("not a model")
    shutil.copy(tmp_path / "b.h5", tmp_path / "d.keras")
    assert [models.model_file_format(tmp_path / name) for name in ("a.keras", "b.h5", "c.keras", "d.keras")] == [
        "keras", "h5", "unknown", "h5"]


def test_save_load_round_trip_gives_identical_predictions_and_a_card(cnn, tmp_path):
    card_file = models.save(cnn, tmp_path / "m.keras", {"dataset": "mnist", "seed": 0,
                                                         "clean_test_accuracy": 0.5})
    loaded = models.load(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(X, training=False).numpy(), cnn(X, training=False).numpy())
    card = json.loads(card_file.read_text())
    assert card_file.name == "m.card.json" and card == models.load_card(tmp_path / "m.keras")
    assert card["dataset"] == "mnist" and card["parameters"] == cnn.count_params()
    assert {"tensorflow", "tf_keras", "neural-structured-learning", "numpy", "python"} <= set(card["library_versions"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.card.json", "m.keras"], "temporary files left behind"


def test_save_requires_keras_suffix(cnn, tmp_path):
    with pytest.raises(ValueError, match="must end in .keras"):
        models.save(cnn, tmp_path / "m.h5", {})


def test_loading_refuses_arbitrary_code(tmp_path):
    inputs = keras.Input((2,))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="(?i)unsafe|safe_mode|lambda"):
        models.load(tmp_path / "lambda.keras")


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file .*gone.keras"):
        models.load(tmp_path / "gone.keras")
