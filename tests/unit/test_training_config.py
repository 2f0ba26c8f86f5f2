"""TrainConfig: its choices come from the registries, and it is checked once, before training."""

import dataclasses
import re

import pytest

import defenses
from advrobust import data, models, training
from advrobust.training import config as train_config
from defenses import distribute


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


def test_the_package_re_exports_the_public_names():
    for name in ("TrainConfig", "architecture_name", "WEIGHT_CHOICES_HELP"):
        assert getattr(training, name) is getattr(train_config, name)
    for name in ("fit", "train", "set_seed", "accuracy", "LR_SCHEDULES", "logged_epochs", "learning_rate_at",
                 "standard_callbacks", "schedule_callbacks", "CSVLog", "EpochSeconds", "fit_defended"):
        assert not isinstance(getattr(training, name), type(train_config)), name
    assert callable(training.fit) and training.fit.__module__ == "advrobust.training.fitting"
