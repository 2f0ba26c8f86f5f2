"""Seeding, plain (undefended) Keras training, and clean accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advrobust.training.callbacks import standard_callbacks
from attacks.backend import keras, tf
from defenses import distribute


def set_seed(seed: int, *, deterministic_ops: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TensorFlow ops deterministic.

    Args:
        seed: The seed of all three generators.
        deterministic_ops: Also make TensorFlow ops deterministic (slower; for exact reruns).
    """
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def fit(model: keras.Model, train: tf.data.Dataset, validation: tf.data.Dataset | None, *,
        epochs: int, learning_rate: float = 1e-3, out_dir: str | Path | None = None,
        callbacks: list[keras.callbacks.Callback] | None = None, compile_model: bool = True,
        patience: int = 3, verbose: int | str = "auto", epoch: tf.Variable | None = None,
        seed: int | None = None) -> keras.callbacks.History:
    """Train ``model`` in place on batched ``(x, y)`` datasets, without a defense.

    Keras prints progress per epoch.

    Args:
        model: A logits model.
        train: Batched ``(x, y)`` training data.
        validation: Batched ``(x, y)`` validation data, or None.
        epochs: Epochs to train, >= 1.
        learning_rate: Adam's rate, > 0 (used only with ``compile_model``).
        out_dir: If given, the callbacks of
            :func:`~advrobust.training.callbacks.standard_callbacks` are added, monitoring
            ``val_accuracy`` when there is validation data, else ``accuracy``.
        callbacks: Callbacks run before the standard ones.
        compile_model: Compile with Adam(``learning_rate``), sparse cross-entropy on logits
            and accuracy; False for a model that brings its own ``train_step`` and loss.
        patience: Early-stopping patience in epochs (with ``out_dir``).
        verbose: Keras's ``verbose``.
        epoch: With ``out_dir``: the epoch variable ``train`` was made with
            (:func:`advrobust.data.make_dataset`), set before each epoch; None if none.
        seed: With ``out_dir``: reseed every epoch from ``(seed, epoch)``, so a training
            killed and started again in ``out_dir`` ends as an uninterrupted one; None: no
            reseeding (see :class:`~advrobust.training.callbacks.EpochBackup`).

    Returns:
        Keras's History of the epochs run (after a restart: those run since).

    Raises:
        ValueError: ``epochs`` < 1 or ``learning_rate`` <= 0.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if compile_model:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    distribute.report_global_metrics(model)
    all_callbacks = list(callbacks or [])
    if out_dir is not None:
        monitor = "val_accuracy" if validation is not None else "accuracy"
        all_callbacks += standard_callbacks(out_dir, monitor=monitor, patience=patience, epoch=epoch, seed=seed)
    return model.fit(train, validation_data=validation, epochs=epochs, callbacks=all_callbacks,
                     verbose=verbose)


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> float:
    """Clean accuracy of ``model``, in inference mode.

    Args:
        model: A logits model.
        x: Images, (N, 28, 28, 1) float32 in [0, 1].
        y: Labels, (N,) ints.
        batch_size: Images per prediction batch.

    Returns:
        The fraction of ``x`` whose argmax logit equals ``y``, in [0, 1].

    Raises:
        ValueError: ``x`` is empty.
    """
    if len(x) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))
