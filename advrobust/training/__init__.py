"""Training: the options of a run, Keras training with callbacks, and the train job.

    from advrobust import training
    config = training.TrainConfig(dataset="mnist", defense="pgd_at", epochs=10)
    result = training.train(config, "runs/pgd-cnn")      # model.keras, model.card.json, logs

Modules, one job each:

* :mod:`~advrobust.training.config`: :class:`TrainConfig`, every option of a run and its
  checks; its field metadata are the flags of ``advrobust train``.
* :mod:`~advrobust.training.schedules`: learning-rate schedules (:data:`LR_SCHEDULES`).
* :mod:`~advrobust.training.callbacks`: checkpoints, early stopping, TensorBoard, a CSV
  log that survives restarts, and reading it back; backup and restore after which a
  killed training ends as an uninterrupted one.
* :mod:`~advrobust.training.fitting`: seeding, training without a defense, clean accuracy.
* :mod:`~advrobust.training.defended`: training with a defense from :mod:`defenses`,
  selecting the most robust epoch.
* :mod:`~advrobust.training.job`: :func:`train`, one configured run from data to card.

Names load their module on first use (``advrobust/_lazy.py``).
"""

from advrobust._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("TrainConfig", "architecture_name", "WEIGHT_CHOICES_HELP"), "config"),
    **dict.fromkeys(("LR_SCHEDULES", "learning_rate_at", "schedule_callbacks"), "schedules"),
    **dict.fromkeys(("EpochSeconds", "CSVLog", "logged_epochs", "standard_callbacks", "EpochBackup",
                     "ResumableEarlyStopping", "ResumableCheckpoint", "epoch_seed"), "callbacks"),
    **dict.fromkeys(("set_seed", "fit", "accuracy"), "fitting"),
    **dict.fromkeys(("fit_defended", "CO_CHECKS_PER_EPOCH"), "defended"),
    **dict.fromkeys(("train",), "job"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
