"""Training on tf.data with Keras callbacks, and the train-a-model job behind the CLI.

:func:`fit` trains without a defense: it compiles with a logits loss unless the model
brings its own ``train_step`` and loss (``compile_model=False``), then runs ``model.fit``
with a best-model checkpoint, early stopping, TensorBoard and CSV logs.

:func:`train` runs one configured job (:class:`TrainConfig`), with or without a defense
from :mod:`defenses` (``nsl``, ``pgd_at``, ``trades``, ``fgsm_rs``), under a
``tf.distribute`` strategy (``defenses.distribute``). With a defense, model selection is
by robustness: ``defenses.callbacks.RobustEarlyStopping`` measures PGD robust accuracy on
a validation subset every epoch (``val_robust_accuracy`` in the logs, TensorBoard and
CSV), keeps the most robust epoch (``checkpoints/best_robust.keras``), stops after
``patience`` epochs without improvement and restores it. The saved ``model.keras`` is
always the plain logits base model, whatever the defense.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advrobust import data, models
from advrobust.files import atomic_write_text
from advrobust.validation import check_choice
from attacks.backend import keras, tf
import defenses
from defenses import callbacks as defense_callbacks
from defenses import distribute

WEIGHT_CHOICES_HELP = "imagenet | none | PATH | pretrained-run"
LR_SCHEDULES = ("constant", "cosine", "piecewise")


def learning_rate_at(schedule: str, base: float, epoch: int, epochs: int) -> float:
    """The learning rate of 0-based ``epoch`` out of ``epochs`` under ``schedule``.

    ``constant``: ``base`` throughout. ``cosine``: ``base * (1 + cos(pi * epoch / epochs)) / 2``,
    from ``base`` at epoch 0 down towards 0 (never 0: the last epoch still learns).
    ``piecewise``: ``base``, then ``base / 10`` from half of the epochs and ``base / 100``
    from three quarters (the decay of Madry et al. and Rice et al.). In (0, base].
    """
    check_choice(schedule, LR_SCHEDULES, "learning-rate schedule")
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "piecewise":
        return base * (0.01 if epoch >= 0.75 * epochs else 0.1 if epoch >= 0.5 * epochs else 1.0)
    return base


def schedule_callbacks(schedule: str, base: float, epochs: int) -> list[keras.callbacks.Callback]:
    """Keras's LearningRateScheduler following :func:`learning_rate_at` (it logs ``lr``
    each epoch, and after a restart picks the rate of the epoch it resumes at); [] for
    ``constant``."""
    if schedule == "constant":
        return []
    return [keras.callbacks.LearningRateScheduler(
        lambda epoch, lr: learning_rate_at(schedule, base, epoch, epochs))]


def set_seed(seed: int, *, deterministic_ops: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


class EpochSeconds(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (wall time of the epoch, validation included) to the epoch
    logs, so the CSV log keeps each finished epoch's time across restarts."""

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._started


class CSVLog(keras.callbacks.CSVLogger):
    """Keras's CSVLogger that keeps one header when appending after a restart.

    Keras appends rows under whatever header the file already has. When the restarted
    training logs other columns (a new metric, or a log begun by an older version without
    ``epoch_seconds``), every value after the new column lands under the wrong name. Here,
    before the first row is appended, the file is rewritten (atomically) under the union
    of both headers; earlier rows are left empty in the new columns, and the restarted
    rows hold ``NA`` in columns it no longer logs.
    """

    def on_epoch_end(self, epoch, logs=None):
        if self.writer is None and self.append and not self.append_header:
            self.keys = self._union_header(sorted((logs or {}).keys()))
        super().on_epoch_end(epoch, logs)

    def _union_header(self, keys: list[str]) -> list[str]:
        """The file's columns (without ``epoch``) followed by any new ``keys``; rewrites
        the file first if there are new ones."""
        path = Path(self.filename)
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        header = rows[0]
        added = [key for key in keys if key not in header]
        if added:
            self.csv_file.close()
            buffer = io.StringIO()
            writer = csv.writer(buffer, dialect=_dialect(self.sep))
            writer.writerow(header + added)
            writer.writerows(row + [""] * len(added) for row in rows[1:])
            atomic_write_text(path, buffer.getvalue())
            self.csv_file = tf.io.gfile.GFile(self.filename, "a")
        return [key for key in header if key != "epoch"] + added


def _dialect(separator: str) -> type[csv.Dialect]:
    """Keras CSVLogger's dialect: excel with ``separator``."""
    return type("KerasCSV", (csv.excel,), {"delimiter": separator})


def logged_epochs(csv_path: str | Path) -> dict[str, list[float]]:
    """Every epoch in a Keras CSV log (all restarts), as {column: values}; {} if absent.

    Only columns with a number in every row are kept (a log begun by an older version
    may lack ``epoch_seconds`` in its first rows).
    """
    path = Path(csv_path)
    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = {}
    for key in (rows[0] if rows else {}):
        try:
            values = [float(row[key]) for row in rows]
        except (KeyError, TypeError, ValueError):
            continue
        if key != "epoch":
            columns[key] = values
    return columns


def standard_callbacks(out_dir: str | Path, *, monitor: str = "val_accuracy", patience: int = 3,
                       checkpoint: bool = True, early_stopping: bool = True) -> list[keras.callbacks.Callback]:
    """Backup and restore, best-model checkpoint, early stopping (restores the best
    weights), TensorBoard, CSV.

    Writes ``out_dir/checkpoints/best.keras``, ``out_dir/logs/`` (TensorBoard) and
    ``out_dir/training_log.csv`` (with ``epoch_seconds``). ``checkpoint``/``early_stopping``
    leave those out. ``out_dir/backup/`` holds the state after the last finished epoch
    (Keras's BackupAndRestore): training interrupted in ``out_dir`` and started again there
    goes on from that epoch (the CSV log is appended to, and :func:`logged_epochs` reads
    all epochs back; the returned History and Keras's EarlyStopping/ModelCheckpoint
    best-so-far cover only the epochs run after the restart). Keras deletes the backup
    when training ends.
    """
    out_dir = Path(out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    mode = "max" if "acc" in monitor else "min"
    backup = out_dir / "backup"
    resuming = backup.is_dir() and any(backup.iterdir())
    callbacks = [
        keras.callbacks.BackupAndRestore(backup_dir=str(backup)),
        EpochSeconds(),
        keras.callbacks.TensorBoard(log_dir=str(out_dir / "logs")),
        CSVLog(str(out_dir / "training_log.csv"), append=resuming),
    ]
    if early_stopping:
        callbacks.insert(1, keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                                          restore_best_weights=True))
    if checkpoint:
        callbacks.insert(1, keras.callbacks.ModelCheckpoint(
            str(out_dir / "checkpoints" / "best.keras"), monitor=monitor, mode=mode,
            save_best_only=True))
    return callbacks


def fit(model: keras.Model, train: tf.data.Dataset, validation: tf.data.Dataset | None, *,
        epochs: int, learning_rate: float = 1e-3, out_dir: str | Path | None = None,
        callbacks: list[keras.callbacks.Callback] | None = None, compile_model: bool = True,
        patience: int = 3, verbose: int | str = "auto") -> keras.callbacks.History:
    """Train ``model`` on batched ``(x, y)`` datasets; returns the Keras History.

    With ``compile_model`` the model is compiled with Adam(``learning_rate``), sparse
    cross-entropy on logits and accuracy. With ``out_dir`` the standard callbacks of
    :func:`standard_callbacks` are added (they monitor ``val_accuracy`` when there is
    validation data, else ``accuracy``). Keras prints progress per epoch.
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
        all_callbacks += standard_callbacks(out_dir, monitor=monitor, patience=patience)
    return model.fit(train, validation_data=validation, epochs=epochs, callbacks=all_callbacks,
                     verbose=verbose)


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> float:
    """Fraction of ``x`` whose argmax logit equals ``y``, in inference mode; in [0, 1]."""
    if len(x) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (stored in the model card)."""

    dataset: str = "fashion_mnist"
    model: str = "cnn"
    vgg_mode: str = "frozen"
    weights: str | None = None  # VGG-19 only: "imagenet", None, a path, or "pretrained-run"
    image_size: int = 32
    trainable_blocks: int = 1
    base_blocks: int = 5  # VGG-19 convolution blocks kept (see models.build_vgg19)
    dropout: bool = True  # the model's Dropout layers (CNN: 0.25, 0.5; VGG-19 head: 0.5); False: none
    width: int = 1  # CNN only: channel multiplier (models.build_cnn); 1 is the reference CNN
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float | None = None  # None: 1e-3, or 1e-4 when fine-tuning VGG-19
    lr_schedule: str = "constant"  # constant | cosine | piecewise, over `epochs` (learning_rate_at)
    val_fraction: float = 0.1
    train_subset: int | None = None  # use the first N shuffled training examples
    test_subset: int | None = None  # the card's clean accuracy on the first N test images (None: all)
    patience: int = 3
    seed: int = 0
    pretrain_dataset: str | None = None  # for weights="pretrained-run"; None: the other one
    pretrain_epochs: int = 1
    pretrain_subset: int | None = 12000
    extra: dict[str, Any] = field(default_factory=dict)
    # Defense (see defenses/__init__.py): "none" | "nsl" | "pgd_at" | "trades" | "fgsm_rs".
    defense: str = "none"
    defense_eps: float | None = None  # None: the preset's radius (mnist 0.3, fashion_mnist 0.1)
    preset: str | None = None  # None: the preset named after the dataset
    defense_params: dict[str, Any] = field(default_factory=dict)  # e.g. {"multiplier": 0.5}
    strategy: str = "auto"  # tf.distribute: auto | default | mirrored | multi_worker
    robust_val_size: int = 500  # validation examples attacked each epoch (defenses only)
    robust_val_steps: int = 10  # PGD steps of that attack
    co_check_size: int = 256  # fgsm_rs: examples of the catastrophic-overfitting check
    # Defenses only: evaluate, select and save an exponential moving average of the weights
    # with this decay (defenses.callbacks.WeightAveraging), e.g. 0.999; None: the raw weights.
    ema_decay: float | None = None
    augment: str = "none"  # training batches: none | shift | flip_shift (data.AUGMENTATIONS)

    def __post_init__(self) -> None:
        check_choice(self.defense, defenses.DEFENSES, "defense")
        check_choice(self.strategy, distribute.STRATEGIES, "strategy")
        check_choice(self.lr_schedule, LR_SCHEDULES, "learning-rate schedule")
        check_choice(self.dataset, data.DATASETS, "dataset")
        check_choice(self.model, models.MODELS, "model")
        check_choice(self.vgg_mode, models.VGG_MODES, "VGG-19 mode")
        if self.pretrain_dataset is not None:
            check_choice(self.pretrain_dataset, data.DATASETS, "dataset")
        if not isinstance(self.dropout, bool):
            raise TypeError(f"dropout must be true or false, got {self.dropout!r}")
        models.check_width(self.width)
        if self.width != 1 and self.model != "cnn":
            raise ValueError(f"width applies to the CNN only; model {self.model!r} takes width 1, got {self.width}")
        for name in ("epochs", "batch_size", "pretrain_epochs", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_subset", "pretrain_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.model == "vgg19":
            if self.image_size < models.VGG_MIN_IMAGE_SIZE:
                raise ValueError(f"image_size must be >= {models.VGG_MIN_IMAGE_SIZE} for VGG-19, got {self.image_size}")
            if not 1 <= self.base_blocks <= 5:
                raise ValueError(f"base_blocks must be in 1..5, got {self.base_blocks}")
            if not 0 <= self.trainable_blocks <= self.base_blocks:
                raise ValueError(f"trainable_blocks must be in 0..base_blocks ({self.base_blocks}), "
                                 f"got {self.trainable_blocks}")
            special = (None, "none", "None", "imagenet", "pretrained-run")
            if self.weights not in special and not Path(self.weights).is_file():
                raise FileNotFoundError(f"VGG-19 weights file {self.weights!r} does not exist; use "
                                        f"{WEIGHT_CHOICES_HELP}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("robust_val_size", "robust_val_steps", "co_check_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        data.check_augmentation(self.augment, self.dataset)
        defense_callbacks.check_decay(self.ema_decay, "ema_decay", optional=True)
        if self.ema_decay is not None and self.defense == "none":
            raise ValueError("ema_decay needs a defense: weight averaging is selected by robust early "
                             "stopping, which only defended training runs")
        self.defense_config()  # resolves and checks the whole defense now, before any training

    def defense_config(self):
        """The resolved defense config (``NSLConfig`` / ``AdversarialTrainingConfig``), or
        None for ``defense="none"``; ValueError naming any bad setting."""
        return defenses.resolve(self.defense, dataset=self.dataset, preset=self.preset, eps=self.defense_eps,
                                params=self.defense_params)

    @property
    def effective_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-4 if self.model == "vgg19" and self.vgg_mode == "finetune" else 1e-3


def architecture_name(config: TrainConfig) -> str:
    """The card's architecture: ``cnn``, ``cnn-w2``, ``vgg19-frozen``, ``vgg19-finetune-blocks1to3``...,
    with ``-no-dropout`` appended when the model has no Dropout."""
    if config.model == "cnn":
        name = "cnn" if config.width == 1 else f"cnn-w{config.width}"
    else:
        name = f"vgg19-{config.vgg_mode}" + ("" if config.base_blocks == 5 else f"-blocks1to{config.base_blocks}")
    return name + ("" if config.dropout else "-no-dropout")


def _weights_for_build(config: TrainConfig, out_dir: Path, data_dir, verbose) -> tuple[Any, dict[str, Any]]:
    """Resolve ``config.weights`` to what build_vgg19 takes, pretraining first if asked."""
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


def train(config: TrainConfig, out_dir: str | Path, *, data_dir=None, verbose: int | str = "auto") -> dict[str, Any]:
    """Train one model as configured (with its defense, under its strategy) and save it.

    Writes ``out_dir/model.keras`` (the plain logits base model), ``out_dir/model.card.json``,
    TensorBoard logs in ``out_dir/logs``, ``out_dir/training_log.csv`` and the best
    checkpoint (``checkpoints/best.keras``; with a defense ``checkpoints/best_robust.keras``).
    Returns ``{"model": keras.Model, "model_path": Path, "card": dict}``; the card's
    ``clean_test_accuracy`` is measured on the test split (its first ``test_subset``
    images if set; ``test_examples`` says how many). With a defense the card
    also holds ``defense_config`` (the resolved parameters), ``robust_validation`` (the
    per-epoch robust accuracy and best epoch), for ``fgsm_rs``
    ``catastrophic_overfitting``, and with ``ema_decay`` ``weight_averaging`` (the saved
    model then holds the averaged weights of the most robust epoch).
    """
    # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs other ops.
    strategy = distribute.get_strategy(config.strategy)
    defense = config.defense_config()
    out_dir = distribute.output_dir(out_dir, strategy)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    x, y = data.load(config.dataset, "train", data_dir)
    x_test, y_test = data.load(config.dataset, "test", data_dir)
    x_test, y_test = x_test[:config.test_subset], y_test[:config.test_subset]
    (x_train, y_train), (x_val, y_val) = data.train_val_split(
        x, y, val_fraction=config.val_fraction, seed=config.seed)
    if config.train_subset is not None:
        keep = np.random.default_rng(config.seed).permutation(len(x_train))[:config.train_subset]
        x_train, y_train = x_train[keep], y_train[keep]
        x_val, y_val = x_val[: max(1, config.train_subset // 5)], y_val[: max(1, config.train_subset // 5)]

    build_info: dict[str, Any] = {}
    if config.model == "cnn":
        with strategy.scope():
            model = models.build("cnn", dropout=config.dropout, width=config.width, seed=config.seed)
    else:
        weights, build_info = _weights_for_build(config, out_dir, data_dir, verbose)
        set_seed(config.seed)
        with strategy.scope():
            model = models.build("vgg19", mode=config.vgg_mode, weights=weights, image_size=config.image_size,
                                 trainable_blocks=config.trainable_blocks, base_blocks=config.base_blocks,
                                 head_dropout=0.5 if config.dropout else 0.0, seed=config.seed)

    train_ds = data.make_dataset(x_train, y_train, batch_size=config.batch_size, shuffle=True, seed=config.seed,
                                 augment=config.augment)
    val_ds = data.make_dataset(x_val, y_val, batch_size=256)
    started = time.perf_counter()
    defense_info: dict[str, Any] = {}
    schedule = schedule_callbacks(config.lr_schedule, config.effective_learning_rate, config.epochs)
    with strategy.scope():
        if defense is None:
            history = fit(model, train_ds, val_ds, epochs=config.epochs,
                          learning_rate=config.effective_learning_rate, out_dir=out_dir, patience=config.patience,
                          callbacks=schedule, verbose=verbose)
        else:
            history, defense_info = _fit_defended(config, defense, model, train_ds, val_ds, x_val, y_val,
                                                  steps_per_epoch=math.ceil(len(x_train) / config.batch_size),
                                                  out_dir=out_dir, extra_callbacks=schedule, verbose=verbose)
        seconds = time.perf_counter() - started
        test_accuracy = accuracy(model, x_test, y_test)
    # After a restart, History holds only the epochs run since; the CSV log holds them all.
    epochs = logged_epochs(out_dir / "training_log.csv") or {k: list(v) for k, v in history.history.items()}
    earlier_epochs = len(epochs.get("loss", [])) - len(history.history.get("loss", []))
    seconds += sum(epochs.get("epoch_seconds", [])[:max(earlier_epochs, 0)])

    card = {
        "dataset": config.dataset,
        "architecture": architecture_name(config),
        "defense": config.defense,
        **defense_info,
        "training_config": {**asdict(config), "learning_rate": config.effective_learning_rate,
                            "train_examples": int(len(x_train)), "val_examples": int(len(x_val))},
        "strategy": {"name": config.strategy, "class": type(strategy).__name__,
                     "replicas": int(strategy.num_replicas_in_sync)},
        **build_info,
        "seed": config.seed,
        "clean_test_accuracy": test_accuracy,
        "test_examples": int(len(x_test)),
        "training_seconds": round(seconds, 1),
        "epochs_run": len(epochs.get("loss", [])),
        "history": {key: [float(v) for v in values] for key, values in epochs.items()},
    }
    model_path = out_dir / "model.keras"
    models.save(model, model_path, card)
    robust = defense_info.get("robust_validation", {}).get("best_robust_accuracy")
    print(f"[advrobust] {card['architecture']} on {config.dataset}"
          + ("" if defense is None else f" with {config.defense}")
          + f": clean test accuracy {test_accuracy:.4f}"
          + ("" if robust is None else f", best validation robust accuracy {robust:.4f}")
          + f" after {card['epochs_run']} epochs ({seconds:.0f} s); saved {model_path}")
    return {"model": model, "model_path": model_path, "card": card}


# The radius robust validation uses when the defense has none (NSL's lecture preset).
_DATASET_EPS = {"mnist": 0.3, "fashion_mnist": 0.1}
CO_CHECKS_PER_EPOCH = 4  # fgsm_rs: catastrophic overfitting can set in within an epoch


def _fit_defended(config: TrainConfig, defense: Any, model: keras.Model, train_ds: tf.data.Dataset,
                  val_ds: tf.data.Dataset, x_val: np.ndarray, y_val: np.ndarray, *, steps_per_epoch: int,
                  out_dir: Path, verbose: int | str, extra_callbacks: list[keras.callbacks.Callback] = ()
                  ) -> tuple[keras.callbacks.History, dict[str, Any]]:
    """Train ``model`` in place with ``defense``, selecting the most robust epoch.

    Returns the History and the card entries ``defense_config``, ``robust_validation``,
    (fgsm_rs) ``catastrophic_overfitting`` and (with ``ema_decay``) ``weight_averaging``.
    With ``ema_decay`` the robust callback measures, keeps and restores the averaged
    weights, and ``model`` ends with the best epoch's averages.
    """
    norm, eps = defense.norm, defense.eps
    if eps is None:
        norm, eps = "inf", _DATASET_EPS[config.dataset]
    size = min(config.robust_val_size, len(x_val))
    averaging = None
    if config.ema_decay is not None:
        averaging = defense_callbacks.WeightAveraging(
            model, decay=config.ema_decay, state_path=out_dir / "checkpoints" / "weight_averaging.npz")
    robust = defense_callbacks.RobustEarlyStopping(
        x_val[:size], y_val[:size], eps=eps, norm=norm, steps=config.robust_val_steps, seed=config.seed,
        model=model if averaging is None else averaging.averaged,
        filepath=out_dir / "checkpoints" / "best_robust.keras", patience=config.patience,
        restore_best_weights=True)
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
    callbacks += standard_callbacks(out_dir, checkpoint=False, early_stopping=False)
    history = defenses.fit(defense, model, train_ds, val_ds, epochs=config.epochs,
                           learning_rate=config.effective_learning_rate, callbacks=callbacks, verbose=verbose,
                           steps_per_epoch=steps_per_epoch)
    info = {"defense_config": defense.to_dict(), "robust_validation": robust.record()}
    if averaging is not None:
        model.set_weights(averaging.averaged.get_weights())  # the best averaged epoch (restored above)
        info["weight_averaging"] = averaging.record()
    if monitor is not None:
        info["catastrophic_overfitting"] = monitor.record()
    return history, info
