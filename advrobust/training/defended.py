"""Training with a defense, selecting the most robust epoch.

Model selection is by robustness: ``defenses.callbacks.RobustEarlyStopping`` measures PGD
robust accuracy on a validation subset every epoch (``val_robust_accuracy`` in the logs,
TensorBoard and CSV), keeps the most robust epoch (``checkpoints/best_robust.keras``),
stops after ``patience`` epochs without improvement and restores it. Gaussian augmentation
(the base classifier of randomized smoothing) has no radius to attack: its epoch is chosen
by ``val_noisy_accuracy``, the accuracy on noisy validation images
(``checkpoints/best.keras``). Certified training (IBP, CROWN-IBP) is chosen by what it
trains for, ``val_verified_accuracy``: the share of the whole validation split that IBP
certifies at the defense's eps, a lower bound of robust accuracy where PGD's is an upper
one (``checkpoints/best.keras``; PGD robust accuracy is still measured and logged, and its
best epoch kept in ``checkpoints/best_robust.keras``). Only epochs from the first at full
radius on are candidates, and only they count towards early stopping: during the warm-up
and the ramp the verified accuracy at the final radius climbs with the radius, not with
the model's quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from advrobust.training.callbacks import logged_epochs, standard_callbacks
from advrobust.training.config import TrainConfig
from attacks.backend import keras, tf
import defenses
from defenses import callbacks as defense_callbacks

# The radius robust validation uses when the defense has none (NSL's lecture preset).
_DATASET_EPS = {"mnist": 0.3, "fashion_mnist": 0.1}
CO_CHECKS_PER_EPOCH = 4  # fgsm_rs: catastrophic overfitting can set in within an epoch
CERTIFIED_DEFENSES = ("ibp", "crown_ibp")
VERIFIED_MONITOR = "val_verified_accuracy"


def fit_defended(config: TrainConfig, defense: Any, model: keras.Model, train_ds: tf.data.Dataset,
                 val_ds: tf.data.Dataset, x_val: np.ndarray, y_val: np.ndarray, *, steps_per_epoch: int,
                 out_dir: Path, verbose: int | str, extra_callbacks: list[keras.callbacks.Callback] = (),
                 epoch: tf.Variable | None = None) -> tuple[keras.callbacks.History, dict[str, Any]]:
    """Train ``model`` in place with ``defense``, selecting the most robust epoch.

    With ``config.ema_decay`` the robust callback measures, keeps and restores the
    averaged weights, and ``model`` ends with the best epoch's averages.

    Args:
        config: The run's config (epochs, patience, robust validation, ``ema_decay``).
        defense: ``config.defense_config()``.
        model: The logits model to train.
        train_ds: Batched ``(x, y)`` training data.
        val_ds: Batched ``(x, y)`` validation data.
        x_val: The validation images; robust validation attacks the first
            ``config.robust_val_size``.
        y_val: Their labels.
        steps_per_epoch: Training batches per epoch.
        out_dir: The run's folder (checkpoints, logs).
        verbose: Keras's ``verbose``.
        extra_callbacks: Callbacks run first (the learning-rate schedule).
        epoch: The epoch variable ``train_ds`` was made with
            (:func:`advrobust.data.make_dataset`), or None. Every epoch is reseeded from
            ``(config.seed, epoch)`` either way, so a training killed and started again in
            ``out_dir`` ends as an uninterrupted one (see
            :class:`~advrobust.training.callbacks.EpochBackup`).

    Returns:
        The Keras History and the card entries ``defense_config``, ``robust_validation``,
        (fgsm_rs) ``catastrophic_overfitting``, (with ``ema_decay``) ``weight_averaging``
        and (ibp, crown_ibp) ``model_selection``.
    """
    if config.defense == "gaussian":
        return _fit_noisy(config, defense, model, train_ds, val_ds, steps_per_epoch=steps_per_epoch, out_dir=out_dir,
                          verbose=verbose, extra_callbacks=extra_callbacks, epoch=epoch)
    certified = config.defense in CERTIFIED_DEFENSES
    norm, eps = defense.norm, defense.eps
    if eps is None:
        norm, eps = "inf", _DATASET_EPS[config.dataset]
    size = min(config.robust_val_size, len(x_val))
    averaging = None
    if config.ema_decay is not None:
        averaging = defense_callbacks.WeightAveraging(
            model, decay=config.ema_decay, state_path=out_dir / "checkpoints" / "weight_averaging.npz")
    # Certified training: PGD is measured and its best epoch saved, but selection is by the verified accuracy.
    robust = defense_callbacks.RobustEarlyStopping(
        x_val[:size], y_val[:size], eps=eps, norm=norm, steps=config.robust_val_steps, seed=config.seed,
        model=model if averaging is None else averaging.averaged,
        filepath=out_dir / "checkpoints" / "best_robust.keras", patience=None if certified else config.patience,
        restore_best_weights=not certified)
    # The averages are updated after each batch, before the robust callback measures them.
    callbacks: list[keras.callbacks.Callback] = [*extra_callbacks, *([averaging] if averaging else []), robust]
    monitor = None
    if config.defense == "fgsm_rs":
        size = min(config.co_check_size, len(x_val))
        monitor = defense_callbacks.CatastrophicOverfittingMonitor(
            x_val[:size], y_val[:size], eps=eps, norm=norm, model=model, seed=config.seed,
            every_batches=max(1, steps_per_epoch // CO_CHECKS_PER_EPOCH), action="stop")
        callbacks.insert(0, monitor)
    # After the robust callback, so TensorBoard and the CSV log see val_robust_accuracy.
    start = selection_start(config, defense)
    callbacks += standard_callbacks(out_dir, monitor=VERIFIED_MONITOR, patience=config.patience,
                                    start_from_epoch=start, epoch=epoch, seed=config.seed) if certified else \
        standard_callbacks(out_dir, checkpoint=False, early_stopping=False, epoch=epoch, seed=config.seed)
    history = defenses.fit(defense, model, train_ds, val_ds, epochs=config.epochs,
                           learning_rate=config.effective_learning_rate, callbacks=callbacks, verbose=verbose,
                           steps_per_epoch=steps_per_epoch)
    info = {"defense_config": defense.to_dict(), "robust_validation": robust.record()}
    if certified:
        info["model_selection"] = _verified_selection(out_dir, start)
    if averaging is not None:
        model.set_weights(averaging.averaged.get_weights())  # the best averaged epoch (restored above)
        info["weight_averaging"] = averaging.record()
    if monitor is not None:
        info["catastrophic_overfitting"] = monitor.record()
    return history, info


def selection_start(config: TrainConfig, defense: Any) -> int:
    """The first 0-based epoch whose model may be kept.

    Args:
        config: The training's config.
        defense: ``config.defense_config()``.

    Returns:
        For ibp and crown_ibp the first epoch at full radius
        (``defense.full_strength_epoch``, but at most the last epoch, ``epochs - 1``);
        else 0.
    """
    if config.defense not in CERTIFIED_DEFENSES:
        return 0
    return min(defense.full_strength_epoch, config.epochs - 1)


def _verified_selection(out_dir: Path, start: int) -> dict[str, Any]:
    """The card's ``model_selection`` of certified training: the monitor, the first
    candidate epoch and the kept epoch (1-based) with its verified validation accuracy,
    read from the CSV log so that epochs before a restart count."""
    values = logged_epochs(out_dir / "training_log.csv").get(VERIFIED_MONITOR, [])
    candidates = values[start:]
    best = int(np.argmax(candidates)) + start if candidates else None
    return {"monitor": VERIFIED_MONITOR, "first_candidate_epoch": start + 1,
            "best_epoch": None if best is None else best + 1,
            "best_verified_accuracy": None if best is None else float(values[best])}


def _fit_noisy(config: TrainConfig, defense: Any, model: keras.Model, train_ds: tf.data.Dataset,
               val_ds: tf.data.Dataset, *, steps_per_epoch: int, out_dir: Path, verbose: int | str,
               extra_callbacks: list[keras.callbacks.Callback], epoch: tf.Variable | None
               ) -> tuple[keras.callbacks.History, dict[str, Any]]:
    """Gaussian augmentation, keeping the epoch with the best accuracy on noisy validation
    images (and stopping after ``patience`` epochs without a better one)."""
    callbacks = [*extra_callbacks, *standard_callbacks(out_dir, monitor="val_noisy_accuracy",
                                                       patience=config.patience, epoch=epoch, seed=config.seed)]
    history = defenses.fit(defense, model, train_ds, val_ds, epochs=config.epochs,
                           learning_rate=config.effective_learning_rate, callbacks=callbacks, verbose=verbose,
                           steps_per_epoch=steps_per_epoch)
    return history, {"defense_config": defense.to_dict()}
