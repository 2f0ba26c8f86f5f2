"""advrobust.training.config: TrainConfig's choices come from the registries, it is checked once
before training, it resolves the defense, and the architecture's name on the card."""

import dataclasses
import re

import pytest

import defenses
from advrobust import data, models, training
from defenses import distribute


def test_train_config_rejects_a_dropout_that_is_not_a_bool():
    with pytest.raises(TypeError, match="dropout must be true or false, got 'no'"):
        training.TrainConfig(dropout="no")


@pytest.mark.parametrize("kwargs, match", [
    ({"defense": "adv"}, "unknown defense 'adv'; choose one of: none, nsl, pgd_at, trades, fgsm_rs"),
    ({"defense": "nsl", "preset": "fast"}, "unknown NSL preset 'fast'; choose one of: lecture, mnist, fashion_mnist, quick"),
    ({"defense": "pgd_at", "preset": "lecture"}, "unknown pgd_at preset 'lecture'; choose one of: mnist, fashion_mnist, quick"),
    ({"defense": "nsl", "defense_eps": 0.0}, r"L-inf eps must be in \(0, 1\] for inputs in \[0, 1\], got 0.0"),
    ({"defense": "pgd_at", "defense_eps": 1.5}, r"L-inf eps must be in \(0, 1\].*got 1.5"),
    ({"defense": "trades", "defense_eps": -0.1}, r"L-inf eps must be in \(0, 1\].*got -0.1"),
    ({"defense": "nsl", "defense_params": {"norm": "l2"}, "defense_eps": -1.0}, "eps must be > 0, got -1.0"),
    ({"defense": "nsl", "defense_params": {"multiplier": -0.5}}, "multiplier must be a finite number >= 0, got -0.5"),
    ({"defense": "nsl", "defense_params": {"pgd_iterations": 0}}, "pgd_iterations must be an integer >= 1, got 0"),
    ({"defense": "pgd_at", "defense_params": {"steps": 0}}, "steps must be an integer >= 1, got 0"),
    ({"defense": "nsl", "defense_params": {"beta": 1.0}}, r"unknown NSL parameter\(s\) \['beta'\]"),
    ({"defense": "fgsm_rs", "defense_params": {"steps": 3}}, "fgsm_rs takes exactly one step"),
    ({"defense": "none", "defense_eps": 0.1}, "defense 'none' takes no preset, eps or defense parameters"),
    ({"defense": "none", "preset": "quick"}, "defense 'none' takes no preset"),
    ({"strategy": "tpu"}, "unknown strategy 'tpu'; choose one of: auto, default, mirrored, multi_worker"),
    ({"defense": "pgd_at", "robust_val_size": 0}, "robust_val_size must be >= 1"),
    ({"defense": "pgd_at", "ema_decay": 1.0}, r"ema_decay must be a number in \(0, 1\) or None, got 1.0"),
    ({"defense": "trades", "ema_decay": 0}, r"ema_decay must be a number in \(0, 1\) or None, got 0"),
    ({"defense": "nsl", "ema_decay": True}, r"ema_decay must be a number in \(0, 1\) or None, got True"),
    ({"ema_decay": 0.999}, "ema_decay needs a defense"),
    ({"augment": "flip_shift"}, "mirrors images, which changes digits"),
    ({"augment": "mixup"}, "unknown augmentation 'mixup'; choose one of: none, shift, flip_shift"),
])
def test_train_config_rejects_bad_defense_settings_before_training(kwargs, match, monkeypatch, tmp_path):
    from advrobust import data

    def no_loading(*args, **kw):
        raise AssertionError("training started: data was loaded before the config was checked")

    monkeypatch.setattr(data, "load", no_loading)
    with pytest.raises(ValueError, match=match):
        training.train(training.TrainConfig(dataset="mnist", **kwargs), tmp_path)


@pytest.mark.parametrize("dataset, preset, eps, expected_eps", [
    ("mnist", None, None, 0.3), ("fashion_mnist", None, None, 0.1), ("mnist", "quick", None, 0.1),
    ("fashion_mnist", None, 0.05, 0.05), ("mnist", "lecture", None, None),
])
def test_train_config_resolves_the_defense(dataset, preset, eps, expected_eps):
    config = training.TrainConfig(dataset=dataset, defense="nsl", preset=preset, defense_eps=eps)
    assert config.defense_config().eps == expected_eps
    assert training.TrainConfig(dataset=dataset).defense_config() is None


def _metadata(name: str):
    return next(spec for spec in dataclasses.fields(training.TrainConfig) if spec.name == name).metadata


@pytest.mark.parametrize("name, registry", [
    ("dataset", data.DATASETS), ("model", models.MODELS), ("vgg_mode", models.VGG_MODES),
    ("defense", defenses.DEFENSES), ("lr_schedule", training.LR_SCHEDULES), ("augment", data.AUGMENTATIONS),
    ("strategy", distribute.STRATEGIES),
])
def test_choices_are_the_registries(name, registry):
    assert _metadata(name)["choices"] == registry
    assert getattr(training.TrainConfig(), name) in registry


@pytest.mark.parametrize("kwargs, match", [
    ({"dataset": "cifar10"}, "unknown dataset 'cifar10'; choose one of: mnist, fashion_mnist"),
    ({"model": "resnet"}, "unknown model 'resnet'; choose one of: cnn, vgg19"),
    ({"vgg_mode": "half"}, "unknown VGG-19 mode 'half'"),
    ({"lr_schedule": "linear"}, "unknown learning-rate schedule 'linear'; choose one of: constant, cosine, piecewise"),
    ({"pretrain_dataset": "cifar10"}, "unknown dataset 'cifar10'"),
    ({"epochs": 0}, "epochs must be >= 1, got 0"),
    ({"train_subset": 0}, "train_subset must be >= 1, got 0"),
    ({"learning_rate": 0.0}, "learning_rate must be > 0, got 0.0"),
    ({"robust_val_steps": 0}, "robust_val_steps must be >= 1, got 0"),
    ({"model": "vgg19", "base_blocks": 6}, r"base_blocks must be in 1\.\.5, got 6"),
    ({"model": "vgg19", "base_blocks": 3, "trainable_blocks": 4},
     r"trainable_blocks must be in 0\.\.base_blocks \(3\), got 4"),
])
def test_bad_values_are_refused_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.TrainConfig(**kwargs)


def test_a_missing_vgg_weights_file_is_refused(tmp_path):
    message = "does not exist; use imagenet | none | PATH | pretrained-run"
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        training.TrainConfig(model="vgg19", weights=str(tmp_path / "absent.h5"))


@pytest.mark.parametrize("options, weights", [
    ({"model": "vgg19"}, "pretrained-run"), ({"model": "vgg19", "weights": None}, "pretrained-run"),
    ({"model": "vgg19", "weights": "imagenet"}, "imagenet"), ({"model": "vgg19", "weights": "none"}, "none"),
    ({}, None), ({"model": "cnn"}, None),
])
def test_the_command_line_transfers_a_vgg19_without_weights_from_a_pretrained_run(options, weights):
    assert training.TrainConfig.from_command_line(**options).weights == weights
    assert training.TrainConfig(**options).weights == options.get("weights")


@pytest.mark.parametrize("kwargs, rate", [
    ({}, 1e-3), ({"model": "vgg19", "vgg_mode": "finetune"}, 1e-4), ({"model": "vgg19"}, 1e-3),
    ({"model": "vgg19", "vgg_mode": "finetune", "learning_rate": 0.05}, 0.05),
])
def test_the_effective_learning_rate_depends_on_the_mode(kwargs, rate):
    assert training.TrainConfig(**kwargs).effective_learning_rate == rate


@pytest.mark.parametrize("kwargs, expected", [
    ({}, "cnn"), ({"width": 2, "dropout": False}, "cnn-w2-no-dropout"),
    ({"model": "vgg19", "weights": None}, "vgg19-frozen"),
    ({"model": "vgg19", "weights": None, "base_blocks": 3}, "vgg19-frozen-blocks1to3"),
    ({"model": "vgg19", "weights": None, "vgg_mode": "finetune", "dropout": False}, "vgg19-finetune-no-dropout"),
])
def test_the_card_names_the_architecture(kwargs, expected):
    from advrobust import training

    assert training.architecture_name(training.TrainConfig(**kwargs)) == expected
