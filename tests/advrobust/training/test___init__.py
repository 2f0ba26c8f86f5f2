"""advrobust.training: the package re-exports the public names of its modules."""

from advrobust import training
from advrobust.training import config as train_config


def test_the_package_re_exports_the_public_names():
    for name in ("TrainConfig", "architecture_name", "WEIGHT_CHOICES_HELP"):
        assert getattr(training, name) is getattr(train_config, name)
    for name in ("fit", "train", "set_seed", "accuracy", "LR_SCHEDULES", "logged_epochs", "learning_rate_at",
                 "standard_callbacks", "schedule_callbacks", "CSVLog", "EpochSeconds", "fit_defended"):
        assert not isinstance(getattr(training, name), type(train_config)), name
    assert callable(training.fit) and training.fit.__module__ == "advrobust.training.fitting"
