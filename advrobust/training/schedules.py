"""Learning-rate schedules over the epochs of one training run."""

from __future__ import annotations

import math

from advrobust.validation import check_choice
from attacks.backend import keras

LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "piecewise")


def learning_rate_at(schedule: str, base: float, epoch: int, epochs: int, *, hold: int = 0) -> float:
    """The learning rate of 0-based ``epoch`` out of ``epochs`` under ``schedule``.

    ``constant``: ``base`` throughout. ``cosine``: ``base * (1 + cos(pi * epoch / epochs)) / 2``,
    from ``base`` at epoch 0 down towards 0 (never 0: the last epoch still learns).
    ``piecewise``: ``base``, then ``base / 10`` from half of the epochs and ``base / 100``
    from three quarters (the decay of Madry et al. and Rice et al.).

    With ``hold`` = h > 0 the first h epochs run at ``base`` and the schedule spans the
    other ``epochs - h`` (epoch h is its epoch 0): certified training ramps its radius over
    its first epochs and decays the rate only once the full radius is reached (Gowal et
    al. 2018; Zhang et al. 2020).

    Args:
        schedule: One of :data:`LR_SCHEDULES`.
        base: The rate at epoch 0, > 0.
        epoch: The 0-based epoch, in ``[0, epochs)``.
        epochs: The number of epochs of the training.
        hold: Epochs at ``base`` before the schedule starts, >= 0; from ``epochs - 1`` on,
            every epoch runs at ``base``.

    Returns:
        The learning rate, in (0, base].

    Raises:
        ValueError: ``schedule`` is not one of :data:`LR_SCHEDULES`, or ``hold`` < 0.
    """
    check_choice(schedule, LR_SCHEDULES, "learning-rate schedule")
    if hold < 0:
        raise ValueError(f"hold must be >= 0 epochs, got {hold}")
    hold = min(hold, epochs - 1)
    if epoch < hold:
        return base
    epoch, epochs = epoch - hold, epochs - hold
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "piecewise":
        return base * (0.01 if epoch >= 0.75 * epochs else 0.1 if epoch >= 0.5 * epochs else 1.0)
    return base


def schedule_callbacks(schedule: str, base: float, epochs: int, *, hold: int = 0) -> list[keras.callbacks.Callback]:
    """Keras callbacks that set the learning rate of each epoch as :func:`learning_rate_at` says.

    Keras's LearningRateScheduler logs ``lr`` each epoch, and after a restart picks the
    rate of the epoch it resumes at.

    Args:
        schedule: One of :data:`LR_SCHEDULES`.
        base: The rate at epoch 0, > 0.
        epochs: The number of epochs of the training.
        hold: Epochs at ``base`` before the schedule starts (see :func:`learning_rate_at`).

    Returns:
        ``[]`` for ``constant`` (the optimizer's rate stays), else one LearningRateScheduler.
    """
    if schedule == "constant":
        return []
    return [keras.callbacks.LearningRateScheduler(
        lambda epoch, lr: learning_rate_at(schedule, base, epoch, epochs, hold=hold))]
