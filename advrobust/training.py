"""Training on tf.data with Keras callbacks, and the train-a-model job behind the CLI.

:func:`fit` is the one training entry point. It compiles with a logits loss unless the
model brings its own ``train_step`` and loss (adversarial training wraps the base model
in a ``keras.Model`` subclass with a GradientTape ``train_step`` and passes it here with
``compile_model=False``), then runs ``model.fit`` with a best-model checkpoint, early
stopping, TensorBoard and CSV logs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advrobust import data, models
from advrobust.files import check_choice
from attacks._tensorflow import keras, tf

WEIGHT_CHOICES_HELP = "imagenet | none | PATH | pretrained-run"


def set_seed(seed: int, *, deterministic_ops: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def standard_callbacks(out_dir: str | Path, *, monitor: str = "val_accuracy", patience: int = 3,
                       checkpoint: bool = True) -> list[keras.callbacks.Callback]:
    """Best-model checkpoint, early stopping (restores the best weights), TensorBoard, CSV.

    Writes ``out_dir/checkpoints/best.keras``, ``out_dir/logs/`` (TensorBoard) and
    ``out_dir/training_log.csv``.
    """
    out_dir = Path(out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    mode = "max" if "acc" in monitor else "min"
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                      restore_best_weights=True),
        keras.callbacks.TensorBoard(log_dir=str(out_dir / "logs")),
        keras.callbacks.CSVLogger(str(out_dir / "training_log.csv")),
    ]
    if checkpoint:
        callbacks.insert(0, keras.callbacks.ModelCheckpoint(
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
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float | None = None  # None: 1e-3, or 1e-4 when fine-tuning VGG-19
    val_fraction: float = 0.1
    train_subset: int | None = None  # use the first N shuffled training examples
    patience: int = 3
    seed: int = 0
    pretrain_dataset: str | None = None  # for weights="pretrained-run"; None: the other one
    pretrain_epochs: int = 1
    pretrain_subset: int | None = 12000
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice(self.dataset, data.DATASETS, "dataset")
        check_choice(self.model, models.MODELS, "model")
        check_choice(self.vgg_mode, models.VGG_MODES, "VGG-19 mode")
        if self.pretrain_dataset is not None:
            check_choice(self.pretrain_dataset, data.DATASETS, "dataset")
        for name in ("epochs", "batch_size", "pretrain_epochs", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_subset", "pretrain_subset"):
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

    @property
    def effective_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-4 if self.model == "vgg19" and self.vgg_mode == "finetune" else 1e-3


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
                               train_subset=config.pretrain_subset, seed=config.seed)
        print(f"[advrobust] pretraining VGG-19 on {source} for transfer to {config.dataset}")
        pretrained = train(pretrain, out_dir / "pretrain", data_dir=data_dir, verbose=verbose)
        path = pretrained["model_path"]
        return str(path), {"weights": "pretrained-run", "pretrained_on": source,
                           "pretrained_model": str(path),
                           "pretrain_clean_accuracy": pretrained["card"]["clean_test_accuracy"]}
    return str(weights), {"weights": str(weights)}


def train(config: TrainConfig, out_dir: str | Path, *, data_dir=None, verbose: int | str = "auto") -> dict[str, Any]:
    """Train one model as configured and save it with its card.

    Writes ``out_dir/model.keras``, ``out_dir/model.card.json``, TensorBoard logs in
    ``out_dir/logs``, ``out_dir/training_log.csv`` and the best checkpoint. Returns
    ``{"model": keras.Model, "model_path": Path, "card": dict}``; the card's
    ``clean_test_accuracy`` is measured on the full test split.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    x, y = data.load(config.dataset, "train", data_dir)
    x_test, y_test = data.load(config.dataset, "test", data_dir)
    (x_train, y_train), (x_val, y_val) = data.train_val_split(
        x, y, val_fraction=config.val_fraction, seed=config.seed)
    if config.train_subset is not None:
        keep = np.random.default_rng(config.seed).permutation(len(x_train))[:config.train_subset]
        x_train, y_train = x_train[keep], y_train[keep]
        x_val, y_val = x_val[: max(1, config.train_subset // 5)], y_val[: max(1, config.train_subset // 5)]

    build_info: dict[str, Any] = {}
    if config.model == "cnn":
        model = models.build("cnn", seed=config.seed)
    else:
        weights, build_info = _weights_for_build(config, out_dir, data_dir, verbose)
        set_seed(config.seed)
        model = models.build("vgg19", mode=config.vgg_mode, weights=weights, image_size=config.image_size,
                             trainable_blocks=config.trainable_blocks, base_blocks=config.base_blocks,
                             seed=config.seed)

    train_ds = data.make_dataset(x_train, y_train, batch_size=config.batch_size, shuffle=True, seed=config.seed)
    val_ds = data.make_dataset(x_val, y_val, batch_size=256)
    started = time.perf_counter()
    history = fit(model, train_ds, val_ds, epochs=config.epochs, learning_rate=config.effective_learning_rate,
                  out_dir=out_dir, patience=config.patience, verbose=verbose)
    seconds = time.perf_counter() - started
    test_accuracy = accuracy(model, x_test, y_test)

    card = {
        "dataset": config.dataset,
        "architecture": config.model if config.model == "cnn" else
        f"vgg19-{config.vgg_mode}" + ("" if config.base_blocks == 5 else f"-blocks1to{config.base_blocks}"),
        "defense": "none",
        "training_config": {**asdict(config), "learning_rate": config.effective_learning_rate,
                            "train_examples": int(len(x_train)), "val_examples": int(len(x_val))},
        **build_info,
        "seed": config.seed,
        "clean_test_accuracy": test_accuracy,
        "test_examples": int(len(x_test)),
        "training_seconds": round(seconds, 1),
        "epochs_run": len(history.history.get("loss", [])),
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
    }
    model_path = out_dir / "model.keras"
    models.save(model, model_path, card)
    print(f"[advrobust] {card['architecture']} on {config.dataset}: clean test accuracy "
          f"{test_accuracy:.4f} after {card['epochs_run']} epochs ({seconds:.0f} s); saved {model_path}")
    return {"model": model, "model_path": model_path, "card": card}
