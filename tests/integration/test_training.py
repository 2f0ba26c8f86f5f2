"""Training on real Fashion-MNIST / MNIST subsets (slow; run in CI)."""

import csv
import json

import numpy as np
import pytest

from advrobust import cli, models, training

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


def test_cli_train_vgg19_pretrained_run_transfers_the_base(tmp_path, capsys):
    # Tiny subsets: this checks the offline transfer pipeline, not its accuracy.
    status = cli.main(["train", "--dataset", "fashion_mnist", "--model", "vgg19", "--vgg-mode", "frozen",
                       "--weights", "pretrained-run", "--epochs", "1", "--train-subset", "256",
                       "--pretrain-subset", "256", "--out", str(tmp_path)])
    assert status == 0
    card = json.loads((tmp_path / "model.card.json").read_text())
    assert card["architecture"] == "vgg19-frozen" and card["pretrained_on"] == "mnist"
    pretrained = models.load(tmp_path / "pretrain" / "model.keras")
    transferred = models.load(tmp_path / "model.keras")
    # The frozen base is the pretrained one, unchanged by training the head.
    for got, want in zip(models.vgg_base(transferred).get_weights(), models.vgg_base(pretrained).get_weights()):
        np.testing.assert_array_equal(got, want)
    assert "clean test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("width_args, architecture, conv2_filters", [
    ([], "cnn-no-dropout", 64),
    (["--width", "2"], "cnn-w2-no-dropout", 128),
])
def test_cli_train_no_dropout_builds_the_reference_cnn(width_args, architecture, conv2_filters, tmp_path):
    status = cli.main(["train", "--dataset", "mnist", "--no-dropout", *width_args, "--epochs", "1",
                       "--train-subset", "256", "--out", str(tmp_path)])
    assert status == 0
    card = json.loads((tmp_path / "model.card.json").read_text())
    assert card["architecture"] == architecture and card["training_config"]["dropout"] is False
    model = models.load(tmp_path / "model.keras")
    assert [layer.name for layer in model.layers] == ["image", "conv1", "conv2", "pool", "flatten", "dense", "logits"]
    assert model.get_layer("conv2").filters == conv2_filters
