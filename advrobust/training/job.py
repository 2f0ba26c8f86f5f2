"""The train-a-model job behind ``advrobust train`` and the run's ``train`` tables.

:func:`train` runs one :class:`~advrobust.training.config.TrainConfig` in named steps:
the ``tf.distribute`` strategy, the data splits, the model (with its VGG-19 weights,
pretraining first if asked), training with or without a defense, the model card, and a
one-line summary. The saved ``model.keras`` is always the plain logits base model,
whatever the defense.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advrobust import data, models
from advrobust.files import writable_folder
from advrobust.training.callbacks import logged_epochs
from advrobust.training.config import TrainConfig, architecture_name
from advrobust.training.defended import fit_defended, selection_start
from advrobust.training.fitting import accuracy, fit, set_seed
from advrobust.training.schedules import schedule_callbacks
from attacks.backend import keras, tf
from defenses import distribute


@dataclass(frozen=True)
class _Splits:
    """Training, validation and test images (N, 28, 28, 1) and labels (N,) of one run."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def train(config: TrainConfig, out_dir: str | Path, *, data_dir=None, verbose: int | str = "auto") -> dict[str, Any]:
    """Train one model as configured (with its defense, under its strategy) and save it.

    Writes ``out_dir/model.keras`` (the plain logits base model), ``out_dir/model.card.json``,
    TensorBoard logs in ``out_dir/logs``, ``out_dir/training_log.csv`` and the best
    checkpoint (``checkpoints/best.keras``; with a defense ``checkpoints/best_robust.keras``,
    and for ibp and crown_ibp both: the kept model is the best verified epoch of ``best.keras``).
    Training interrupted in ``out_dir`` (even killed) and started again there goes on from
    the last finished epoch and ends with the model an uninterrupted training makes (each
    epoch's data order, augmentation and random draws follow ``(config.seed, epoch)``).
    Prints a one-line summary.

    Args:
        config: The run.
        out_dir: Its folder (under multi-worker training, each worker but the chief
            writes to a folder of its own; see ``defenses.distribute.output_dir``).
        data_dir: The folder with the dataset files (None: the default lookup).
        verbose: Keras's ``verbose``.

    Returns:
        ``{"model": keras.Model, "model_path": Path, "card": dict}``. The card's
        ``clean_test_accuracy`` (in [0, 1]) is measured on the test split (its first
        ``test_subset`` images if set; ``test_examples`` says how many). With a defense the
        card also holds ``defense_config`` (the resolved parameters), ``robust_validation``
        (the per-epoch robust accuracy and best epoch), for ``fgsm_rs``
        ``catastrophic_overfitting``, with ``ema_decay`` ``weight_averaging`` (the saved
        model then holds the averaged weights of the most robust epoch), and for ibp and
        crown_ibp ``model_selection`` (the kept epoch, chosen by ``val_verified_accuracy``
        from the first epoch at full radius on; the learning-rate schedule also starts there).

    Raises:
        ValueError: The defense does not resolve, or the data are missing or malformed.
    """
    # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs other ops.
    strategy = distribute.get_strategy(config.strategy)
    defense = config.defense_config()
    out_dir = distribute.output_dir(out_dir, strategy)
    writable_folder(out_dir)  # before the data and the model: a refused folder fails in a second
    set_seed(config.seed)
    splits = _split_data(config, data_dir)
    model, build_info = _build_model(config, strategy, out_dir, data_dir=data_dir, verbose=verbose)
    # The training data read the epoch's index from it (outside the strategy: not a model variable).
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    with strategy.scope():
        history, defense_info, seconds = _fit(config, defense, model, splits, out_dir, epoch, verbose=verbose)
        test_accuracy = accuracy(model, splits.x_test, splits.y_test)
    epochs, seconds = _all_epochs(out_dir, history, seconds)
    card = {
        "dataset": config.dataset,
        "architecture": architecture_name(config),
        "defense": config.defense,
        **defense_info,
        "training_config": {**asdict(config), "learning_rate": config.effective_learning_rate,
                            "train_examples": int(len(splits.x_train)), "val_examples": int(len(splits.x_val))},
        "strategy": {"name": config.strategy, "class": type(strategy).__name__,
                     "replicas": int(strategy.num_replicas_in_sync)},
        **build_info,
        "seed": config.seed,
        "clean_test_accuracy": test_accuracy,
        "test_examples": int(len(splits.x_test)),
        "training_seconds": round(seconds, 1),
        "epochs_run": len(epochs.get("loss", [])),
        "history": {key: [float(v) for v in values] for key, values in epochs.items()},
    }
    model_path = out_dir / "model.keras"
    models.save(model, model_path, card)
    _print_summary(config, card, model_path, seconds)
    return {"model": model, "model_path": model_path, "card": card}


def _split_data(config: TrainConfig, data_dir) -> _Splits:
    """The dataset's training split cut into training and validation (both cut down with
    ``train_subset``), and the first ``test_subset`` test images."""
    x, y = data.load(config.dataset, "train", data_dir)
    x_test, y_test = data.load(config.dataset, "test", data_dir)
    (x_train, y_train), (x_val, y_val) = data.train_val_split(
        x, y, val_fraction=config.val_fraction, seed=config.seed)
    if config.train_subset is not None:
        keep = np.random.default_rng(config.seed).permutation(len(x_train))[:config.train_subset]
        x_train, y_train = x_train[keep], y_train[keep]
        x_val, y_val = x_val[: max(1, config.train_subset // 5)], y_val[: max(1, config.train_subset // 5)]
    return _Splits(x_train, y_train, x_val, y_val, x_test[:config.test_subset], y_test[:config.test_subset])


def _build_model(config: TrainConfig, strategy: tf.distribute.Strategy, out_dir: Path, *, data_dir,
                 verbose: int | str) -> tuple[keras.Model, dict[str, Any]]:
    """The untrained model under ``strategy``, and the card entries on its weights."""
    if config.model == "cnn":
        with strategy.scope():
            return models.build("cnn", dropout=config.dropout, width=config.width, seed=config.seed), {}
    weights, build_info = _vgg_weights(config, out_dir, data_dir=data_dir, verbose=verbose)
    set_seed(config.seed)  # pretraining drew random numbers
    with strategy.scope():
        model = models.build("vgg19", mode=config.vgg_mode, weights=weights, image_size=config.image_size,
                             trainable_blocks=config.trainable_blocks, base_blocks=config.base_blocks,
                             head_dropout=0.5 if config.dropout else 0.0, seed=config.seed)
    return model, build_info


def _vgg_weights(config: TrainConfig, out_dir: Path, *, data_dir, verbose: int | str) -> tuple[Any, dict[str, Any]]:
    """``config.weights`` as build_vgg19 takes them, pretraining first for ``pretrained-run``;
    and the card entries that say where they came from."""
    weights = config.weights
    if weights is None or str(weights).lower() == "none":
        return None, {"weights": None}
    if weights == "imagenet":
        return "imagenet", {"weights": "imagenet"}
    if weights == "pretrained-run":
        source = config.pretrain_dataset or ("mnist" if config.dataset == "fashion_mnist" else "fashion_mnist")
        pretrain = TrainConfig(dataset=source, model="vgg19", vgg_mode="finetune",
                               trainable_blocks=config.base_blocks, base_blocks=config.base_blocks,
                               weights=None, image_size=config.image_size, epochs=config.pretrain_epochs,
                               batch_size=config.batch_size, learning_rate=1e-4,
                               train_subset=config.pretrain_subset, test_subset=config.test_subset,
                               seed=config.seed, strategy=config.strategy)
        print(f"[advrobust] pretraining VGG-19 on {source} for transfer to {config.dataset}")
        pretrained = train(pretrain, out_dir / "pretrain", data_dir=data_dir, verbose=verbose)
        path = pretrained["model_path"]
        return str(path), {"weights": "pretrained-run", "pretrained_on": source,
                           "pretrained_model": str(path),
                           "pretrain_clean_accuracy": pretrained["card"]["clean_test_accuracy"]}
    return str(weights), {"weights": str(weights)}


def _fit(config: TrainConfig, defense: Any, model: keras.Model, splits: _Splits, out_dir: Path,
         epoch: tf.Variable, *, verbose: int | str) -> tuple[keras.callbacks.History, dict[str, Any], float]:
    """Train ``model`` in place, with ``defense`` if not None; returns the History, the
    defense's card entries and the seconds it took. Each epoch's data order, augmentation
    and random draws follow ``(config.seed, epoch)``, so a training killed and started
    again in ``out_dir`` redoes an epoch exactly as an uninterrupted one runs it."""
    train_ds = data.make_dataset(splits.x_train, splits.y_train, batch_size=config.batch_size, shuffle=True,
                                 seed=config.seed, augment=config.augment, epoch=epoch)
    val_ds = data.make_dataset(splits.x_val, splits.y_val, batch_size=256)
    started = time.perf_counter()
    # Certified training decays the rate only once its radius is full.
    hold = 0 if defense is None else selection_start(config, defense)
    schedule = schedule_callbacks(config.lr_schedule, config.effective_learning_rate, config.epochs, hold=hold)
    if defense is None:
        history = fit(model, train_ds, val_ds, epochs=config.epochs, learning_rate=config.effective_learning_rate,
                      out_dir=out_dir, patience=config.patience, callbacks=schedule, verbose=verbose, epoch=epoch,
                      seed=config.seed)
        return history, {}, time.perf_counter() - started
    history, defense_info = fit_defended(
        config, defense, model, train_ds, val_ds, splits.x_val, splits.y_val,
        steps_per_epoch=math.ceil(len(splits.x_train) / config.batch_size), out_dir=out_dir,
        extra_callbacks=schedule, verbose=verbose, epoch=epoch)
    return history, defense_info, time.perf_counter() - started


def _all_epochs(out_dir: Path, history: keras.callbacks.History, seconds: float
                ) -> tuple[dict[str, list[float]], float]:
    """Every epoch's logs and the training seconds, counting the epochs run before a restart."""
    # After a restart, History holds only the epochs run since; the CSV log holds them all.
    epochs = logged_epochs(out_dir / "training_log.csv") or {k: list(v) for k, v in history.history.items()}
    earlier_epochs = len(epochs.get("loss", [])) - len(history.history.get("loss", []))
    return epochs, seconds + sum(epochs.get("epoch_seconds", [])[:max(earlier_epochs, 0)])


def _print_summary(config: TrainConfig, card: dict[str, Any], model_path: Path, seconds: float) -> None:
    """One line: the model, its clean test accuracy, the best robust validation accuracy
    (with a defense), the kept epoch (certified training), the epochs and seconds, and
    where it was saved."""
    robust = card.get("robust_validation", {}).get("best_robust_accuracy")
    kept = card.get("model_selection", {})
    print(f"[advrobust] {card['architecture']} on {config.dataset}"
          + ("" if config.defense == "none" else f" with {config.defense}")
          + f": clean test accuracy {card['clean_test_accuracy']:.4f}"
          + ("" if robust is None else f", best validation robust accuracy {robust:.4f}")
          + ("" if kept.get("best_epoch") is None else
             f", kept epoch {kept['best_epoch']} (validation verified accuracy {kept['best_verified_accuracy']:.4f})")
          + f" after {card['epochs_run']} epochs ({seconds:.0f} s); saved {model_path}")
