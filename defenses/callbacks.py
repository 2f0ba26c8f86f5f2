"""Keras callbacks for robust training: robust early stopping and catastrophic overfitting.

:class:`RobustEarlyStopping`
    After every epoch, PGD robust accuracy on a fixed held-out subset; keeps (and saves)
    the weights of the most robust epoch and restores them at the end. Adversarially
    trained networks *robustly overfit* (Rice, Wong & Kolter 2020): past some epoch, test
    robust accuracy falls while training robust accuracy keeps rising, so the last
    epoch is often not the best and clean-accuracy early stopping picks the wrong one.
    The value goes into the epoch's ``logs`` as ``val_robust_accuracy``, so callbacks
    *after* it in the list (Keras's TensorBoard as ``epoch_robust_accuracy`` in its
    ``validation`` run, CSVLogger, History, EarlyStopping) see it; with ``log_dir`` it
    also writes the scalar ``robust_accuracy`` itself.
:class:`CatastrophicOverfittingMonitor`
    For FGSM training: on a small fixed batch, PGD and FGSM accuracy every epoch (or
    every ``every_batches`` batches). Catastrophic overfitting (Wong et al. 2020) shows as
    PGD accuracy collapsing while FGSM accuracy stays high: the model has learned to
    defeat the single FGSM step, not the threat model. Rule: detected when PGD accuracy
    is at least ``drop`` below its best so far AND FGSM accuracy exceeds PGD accuracy by
    at least ``gap``. Then it records the event, warns (CatastrophicOverfittingWarning),
    and with ``action="stop"`` stops training and restores the weights of the best PGD
    check, as Wong et al. do.
:class:`WeightAveraging`
    An exponential moving average (EMA) of the model's weights, updated after every
    training batch and kept in a separate model, ``averaged``. Averaged weights are
    usually more robust than the last iterate and fluctuate less from epoch to epoch
    (Gowal et al. 2020, Rebuffi et al. 2021; most leading RobustBench entries use it).
    Give ``averaged`` to :class:`RobustEarlyStopping` as its ``model`` to select, save
    and restore the best *averaged* epoch, while the optimizer keeps stepping the raw
    weights (and Keras's BackupAndRestore keeps saving those).

Both attack ``model`` (default: the trained model's ``base_model`` if it has one, else the
trained model) through ``attacks`` in inference mode. Robust accuracy counts an example
when it is classified correctly both clean and under attack.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from attacks import fgsm, pgd
from attacks.backend import keras, tf
from defenses.validation import check_decay


class CatastrophicOverfittingWarning(UserWarning):
    """PGD accuracy collapsed while FGSM accuracy stayed high during FGSM training."""


def robust_accuracy(model: Any, x: np.ndarray, y: np.ndarray, x_adv: np.ndarray, *, batch_size: int = 512) -> float:
    """Measure the fraction of examples classified correctly both clean and adversarial.

    Args:
        model: A callable ``model(x, training=False) -> logits`` (a Keras model).
        x: The clean inputs (N, ...).
        y: Integer labels (N,).
        x_adv: The adversarial inputs, shaped like ``x``.
        batch_size: Examples per model call.

    Returns:
        The robust accuracy, a float in [0, 1] (NaN for N = 0).
    """
    clean = _predict(model, x, batch_size)
    adversarial = _predict(model, x_adv, batch_size)
    return float(np.mean((clean == y) & (adversarial == y)))


def _predict(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    out = [np.argmax(model(x[i:i + batch_size], training=False), axis=-1) for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _target(explicit: Any, trained: keras.Model) -> keras.Model:
    if explicit is not None:
        return explicit
    return getattr(trained, "base_model", trained)


def _check_subset(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"need a non-empty subset with one label per example, got {len(x)} examples and "
                         f"{len(y)} labels")
    return x, y.astype(np.int64)


class RobustEarlyStopping(keras.callbacks.Callback):
    """Track PGD robust accuracy on ``(x, y)`` per epoch; keep the best-robust weights.

    After training: ``history`` (robust accuracy per epoch), ``best`` (its maximum),
    ``best_epoch`` (0-based) and ``stopped_epoch`` (``None`` if not stopped early).

    Resuming (e.g. Keras BackupAndRestore starting again at epoch k > 0): with ``filepath``,
    the callback also keeps its state in ``<filepath stem>.state.json``; a training that
    begins at epoch k takes the first k epochs' values and best from it, so an epoch after
    the restart replaces the saved best only by beating it, and the best weights restored
    at the end are read back from ``filepath`` when the best epoch came before the restart.

    Args:
        x: The held-out inputs attacked every epoch (N, ...), N >= 1.
        y: Their integer labels (N,).
        eps: The PGD radius.
        norm: The PGD norm.
        steps: PGD steps.
        step_size: The PGD step; None for ``attacks.pgd``'s default.
        restarts: PGD restarts.
        clip: The valid input range, or None.
        seed: The PGD seed, the same every epoch so epochs are compared on equal terms.
        model: The model attacked, checkpointed and restored; None: the trained model's
            ``base_model`` if it has one, else the trained model.
        filepath: Where to save the attacked model (a plain ``.keras`` logits model) each
            time robust accuracy improves by more than ``min_delta``; None: not saved.
        patience: Stop once this many epochs in a row brought no improvement, as Keras's
            EarlyStopping; None: never stop.
        min_delta: The least increase that counts as an improvement.
        restore_best_weights: At the end of training, load the best epoch's weights into the
            model.
        log_dir: A TensorBoard folder to write the scalar ``robust_accuracy`` to, or None.
        name: The key of the value in the epoch's ``logs``.
        verbose: Print the value every epoch when > 0.

    Raises:
        ValueError: ``x`` is empty or its length differs from ``y``'s, ``patience`` < 0,
            or ``filepath`` does not end in ``.keras``.
    """

    def __init__(self, x: Any, y: Any, *, eps: float, norm: str = "inf", steps: int = 10,
                 step_size: float | None = None, restarts: int = 1, clip: tuple[float, float] | None = (0.0, 1.0),
                 seed: int = 0, model: keras.Model | None = None, filepath: str | Path | None = None,
                 patience: int | None = None, min_delta: float = 0.0, restore_best_weights: bool = True,
                 log_dir: str | Path | None = None, name: str = "val_robust_accuracy", verbose: int = 0):
        super().__init__()
        self.x, self.y = _check_subset(x, y)
        if patience is not None and patience < 0:
            raise ValueError(f"patience must be >= 0 or None, got {patience}")
        if filepath is not None and Path(filepath).suffix != ".keras":
            raise ValueError(f"filepath must end in .keras, got {str(filepath)!r}")
        self.attack = dict(eps=eps, norm=norm, steps=steps, step_size=step_size, restarts=restarts, clip=clip,
                           seed=seed)
        self._explicit_model = model
        self.filepath = None if filepath is None else Path(filepath)
        self.patience = patience
        self.min_delta = min_delta
        self.restore_best_weights = restore_best_weights
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.name = name
        self.verbose = verbose
        self._writer = None
        self._reset()

    def _reset(self) -> None:
        self.history: list[float] = []
        self.best = -np.inf
        self.best_epoch: int | None = None
        self.best_weights: list[np.ndarray] | None = None
        self.stopped_epoch: int | None = None
        self._wait = 0

    @property
    def target(self) -> keras.Model:
        """The model attacked, checkpointed and restored."""
        return _target(self._explicit_model, self.model)

    def measure(self) -> float:
        """Measure the PGD robust accuracy of the target on the subset now.

        Returns:
            A float in [0, 1].
        """
        x_adv = pgd(self.target, self.x, self.y, **self.attack)
        return robust_accuracy(self.target, self.x, self.y, x_adv)

    def on_train_begin(self, logs=None):
        self._reset()
        if self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))

    @property
    def state_path(self) -> Path | None:
        """Where the per-epoch state is kept for resuming (``None`` without ``filepath``)."""
        return None if self.filepath is None else self.filepath.with_suffix(".state.json")

    def on_epoch_begin(self, epoch, logs=None):
        if epoch > 0 and not self.history:
            self._resume(epoch)

    def _resume(self, epoch: int) -> None:
        """Take the state of epochs 0..epoch-1 from the state file, when it has them and its
        best epoch is among them (else the best checkpoint may be from an epoch being redone:
        start afresh, as without the file)."""
        path = self.state_path
        if path is None or not path.exists() or not self.filepath.exists():
            return
        state = json.loads(path.read_text())
        if len(state["history"]) < epoch or state["best_epoch"] is None or state["best_epoch"] >= epoch:
            return
        self.history = [float(v) for v in state["history"][:epoch]]
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self._wait = epoch - 1 - self.best_epoch

    def _save_state(self) -> None:
        path = self.state_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"history": self.history, "best": self.best, "best_epoch": self.best_epoch}))
        os.replace(temporary, path)

    def on_epoch_end(self, epoch, logs=None):
        value = self.measure()
        self.history.append(value)
        if logs is not None:
            logs[self.name] = value
        if self._writer is not None:
            with self._writer.as_default():
                tf.summary.scalar("robust_accuracy", value, step=epoch)
            self._writer.flush()
        if value > self.best + self.min_delta:
            self.best, self.best_epoch, self._wait = value, epoch, 0
            self.best_weights = self.target.get_weights()
            if self.filepath is not None:
                self.filepath.parent.mkdir(parents=True, exist_ok=True)
                self.target.save(self.filepath)
        else:
            self._wait += 1
            if self.patience is not None and self._wait >= self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True
        self._save_state()
        if self.verbose:
            print(f"[robust] epoch {epoch + 1}: {self.name} {value:.4f} (best {self.best:.4f} at epoch "
                  f"{self.best_epoch + 1})")

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is None and self.best_epoch is not None:
            # The best epoch came before a restart: its weights are in the checkpoint file.
            self.best_weights = keras.models.load_model(self.filepath, compile=False).get_weights()
        if self.restore_best_weights and self.best_weights is not None:
            self.target.set_weights(self.best_weights)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def record(self) -> dict[str, Any]:
        """Summarize the attack, the per-epoch values and the best epoch.

        Returns:
            A JSON-ready dict: the attack settings (without ``clip``), ``examples``,
            ``per_epoch`` (values in [0, 1]), ``best_robust_accuracy``, ``best_epoch`` and
            ``stopped_early_at_epoch`` (1-based, or None).
        """
        return {"attack": "pgd", **{k: v for k, v in self.attack.items() if k != "clip"},
                "examples": int(len(self.x)), "per_epoch": [float(v) for v in self.history],
                "best_robust_accuracy": None if self.best_epoch is None else float(self.best),
                "best_epoch": None if self.best_epoch is None else self.best_epoch + 1,
                "stopped_early_at_epoch": None if self.stopped_epoch is None else self.stopped_epoch + 1}


class WeightAveraging(keras.callbacks.Callback):
    """Keep an exponential moving average of ``model``'s weights over training steps.

    ``averaged`` (a clone of ``model``, made at construction, under the model's
    distribution strategy) starts with ``model``'s weights; after training step t = 1, 2, ...
    each of its weights becomes ``a <- d_t a + (1 - d_t) w`` with
    ``d_t = min(decay, (1 + t) / (10 + t))``: TensorFlow's ExponentialMovingAverage with
    ``num_updates``, whose warm-up keeps the random initial weights from dominating the
    early averages. All weights are averaged, BatchNorm statistics included.
    Past the warm-up the average spans about ``1 / (1 - decay)`` steps. The warm-up lasts
    until step ``(10 decay - 1) / (1 - decay)`` (8990 steps for 0.999, about 21
    Fashion-MNIST epochs at batch 128); during it, step s counts at step t about as
    ``(s / t)^8``, so the average puts 87% of its weight on the last fifth of the steps so
    far.

    Resuming: with ``state_path`` the averages and the step count are written there
    atomically after every epoch. A training that begins at epoch k > 0 (Keras
    BackupAndRestore) reads them back when the file holds exactly k finished epochs; else it
    warns and starts averaging afresh from the restored weights (``restarts`` counts that).
    The file is removed when training ends.

    Args:
        model: The model whose weights are averaged: the trained model itself, or the base
            model inside a wrapper (NSL's AdversarialRegularization).
        decay: The decay, in (0, 1).
        state_path: A ``.npz`` file for the resumable state, or None.

    Raises:
        ValueError: ``decay`` is not in (0, 1), or ``state_path`` does not end in ``.npz``.
    """

    def __init__(self, model: keras.Model, *, decay: float = 0.999, state_path: str | Path | None = None):
        super().__init__()
        check_decay(decay)
        if state_path is not None and Path(state_path).suffix != ".npz":
            raise ValueError(f"state_path must end in .npz, got {str(state_path)!r}")
        self.source = model
        self.decay = float(decay)
        self.state_path = None if state_path is None else Path(state_path)
        with model.distribute_strategy.scope():
            self.averaged = keras.models.clone_model(model)
        self.averaged.set_weights(model.get_weights())
        pairs = list(zip(self.averaged.weights, model.weights))

        @tf.function
        def update(decay_now):
            for average, weight in pairs:
                average.assign(decay_now * average + (1.0 - decay_now) * tf.cast(weight, average.dtype))

        self._update = update
        self.steps = 0
        self.restarts = 0
        self._epochs_done = 0

    def decay_at(self, step: int) -> float:
        """Compute the decay applied at a training step.

        Args:
            step: The training step, 1-based.

        Returns:
            ``min(decay, (1 + step) / (10 + step))``, a float in (0, 1).
        """
        return min(self.decay, (1.0 + step) / (10.0 + step))

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0 and self.steps == 0:
            self.averaged.set_weights(self.source.get_weights())
        elif epoch > 0 and self._epochs_done != epoch:
            self._resume(epoch)

    def _resume(self, epoch: int) -> None:
        path = self.state_path
        if path is not None and path.exists():
            with np.load(path) as state:
                if int(state["epochs"]) == epoch:
                    self.averaged.set_weights([state[f"w{i}"] for i in range(len(self.averaged.weights))])
                    self.steps, self._epochs_done = int(state["steps"]), epoch
                    return
        warnings.warn(f"no weight-averaging state for the {epoch} finished epochs"
                      + ("" if path is None else f" in {path}")
                      + "; averaging starts afresh from the restored weights", stacklevel=2)
        self.averaged.set_weights(self.source.get_weights())
        self.steps, self._epochs_done = 0, epoch
        self.restarts += 1

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self._update(tf.constant(self.decay_at(self.steps), tf.float32))

    def on_epoch_end(self, epoch, logs=None):
        self._epochs_done = epoch + 1
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_name(self.state_path.stem + ".tmp.npz")
        np.savez(temporary, epochs=self._epochs_done, steps=self.steps,
                 **{f"w{i}": w for i, w in enumerate(self.averaged.get_weights())})
        os.replace(temporary, self.state_path)

    def on_train_end(self, logs=None):
        if self.state_path is not None:
            self.state_path.unlink(missing_ok=True)

    def record(self) -> dict[str, Any]:
        """Summarize the decay, its warm-up, the steps averaged and the restarts.

        Returns:
            A JSON-ready dict: ``method`` ("ema"), ``decay``, ``warmup`` (the formula),
            ``steps`` and ``restarts_without_state``.
        """
        return {"method": "ema", "decay": self.decay, "warmup": "min(decay, (1 + t) / (10 + t))",
                "steps": self.steps, "restarts_without_state": self.restarts}


class CatastrophicOverfittingMonitor(keras.callbacks.Callback):
    """Detect catastrophic overfitting of FGSM training on a small fixed batch ``(x, y)``.

    Every epoch end (and, with ``every_batches``, every that many batches) it measures
    robust accuracy under ``attacks.pgd`` (``pgd_steps`` steps, fixed ``seed``) and
    ``attacks.fgsm`` at ``eps``. Detection rule and actions: see the module docstring.

    After training: ``checks`` (one dict per measurement: epoch, batch, pgd_accuracy,
    fgsm_accuracy), ``events`` (the checks that detected it) and ``detected``. Epoch
    logs gain ``co_pgd_accuracy`` and ``co_fgsm_accuracy``.

    Args:
        x: The fixed batch of inputs (N, ...), N >= 1.
        y: Their integer labels (N,).
        eps: The radius of both attacks.
        norm: The norm of both attacks.
        pgd_steps: PGD steps.
        clip: The valid input range, or None.
        drop: The fall of PGD accuracy below its best that counts, in (0, 1].
        gap: The excess of FGSM over PGD accuracy that counts, in (0, 1].
        every_batches: Also check every that many batches (>= 1); None: at epoch ends only.
        action: ``"stop"`` (warn, stop, restore the best-PGD weights) or ``"warn"``.
        model: The model attacked; None: the trained model's ``base_model`` if it has one,
            else the trained model.
        seed: The PGD seed.

    Raises:
        ValueError: ``x`` is empty or its length differs from ``y``'s, an unknown
            ``action``, ``drop`` or ``gap`` outside (0, 1], or ``every_batches`` < 1.
    """

    def __init__(self, x: Any, y: Any, *, eps: float, norm: str = "inf", pgd_steps: int = 10,
                 clip: tuple[float, float] | None = (0.0, 1.0), drop: float = 0.2, gap: float = 0.2,
                 every_batches: int | None = None, action: str = "stop", model: keras.Model | None = None,
                 seed: int = 0):
        super().__init__()
        self.x, self.y = _check_subset(x, y)
        if action not in ("stop", "warn"):
            raise ValueError(f"unknown action {action!r}; choose one of: stop, warn")
        if not (0 < drop <= 1 and 0 < gap <= 1):
            raise ValueError(f"drop and gap must be in (0, 1], got drop={drop}, gap={gap}")
        if every_batches is not None and every_batches < 1:
            raise ValueError(f"every_batches must be >= 1 or None, got {every_batches}")
        self.eps, self.norm, self.pgd_steps, self.clip, self.seed = eps, norm, pgd_steps, clip, seed
        self.drop, self.gap, self.every_batches, self.action = drop, gap, every_batches, action
        self._explicit_model = model
        self._reset()

    def _reset(self) -> None:
        self.checks: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.best_pgd = -np.inf
        self._best_weights: list[np.ndarray] | None = None
        self._epoch = 0
        self._batches_seen = 0

    @property
    def detected(self) -> bool:
        """Whether catastrophic overfitting was detected at least once."""
        return bool(self.events)

    @property
    def target(self) -> keras.Model:
        """The model attacked (and restored on detection)."""
        return _target(self._explicit_model, self.model)

    def check(self, *, epoch: int, batch: int | None) -> dict[str, Any]:
        """Measure both accuracies now, apply the rule and act on it.

        Warns with :class:`CatastrophicOverfittingWarning` on detection; with
        ``action="stop"`` also stops training and restores the best-PGD weights.

        Args:
            epoch: The current epoch, 0-based.
            batch: Batches seen in this epoch, or None at the epoch's end.

        Returns:
            The check's record: ``epoch`` (1-based), ``batch``, ``pgd_accuracy`` and
            ``fgsm_accuracy`` (floats in [0, 1]).
        """
        model = self.target
        x_pgd = pgd(model, self.x, self.y, eps=self.eps, norm=self.norm, steps=self.pgd_steps, clip=self.clip,
                    seed=self.seed)
        x_fgsm = fgsm(model, self.x, self.y, eps=self.eps, norm=self.norm, clip=self.clip)
        record = {"epoch": epoch + 1, "batch": batch,
                  "pgd_accuracy": robust_accuracy(model, self.x, self.y, x_pgd),
                  "fgsm_accuracy": robust_accuracy(model, self.x, self.y, x_fgsm)}
        self.checks.append(record)
        pgd_accuracy, fgsm_accuracy = record["pgd_accuracy"], record["fgsm_accuracy"]
        if self.best_pgd - pgd_accuracy >= self.drop and fgsm_accuracy - pgd_accuracy >= self.gap:
            event = {**record, "best_pgd_accuracy": float(self.best_pgd)}
            self.events.append(event)
            warnings.warn(
                f"catastrophic overfitting at epoch {epoch + 1}" + ("" if batch is None else f", batch {batch}")
                + f": PGD accuracy {pgd_accuracy:.3f} (best {self.best_pgd:.3f}) while FGSM accuracy is "
                f"{fgsm_accuracy:.3f}" + ("; stopping and restoring the best-PGD weights"
                                          if self.action == "stop" else ""),
                CatastrophicOverfittingWarning, stacklevel=2)
            if self.action == "stop":
                self.model.stop_training = True
                if self._best_weights is not None:
                    model.set_weights(self._best_weights)
        elif pgd_accuracy > self.best_pgd:
            self.best_pgd = pgd_accuracy
            self._best_weights = model.get_weights()
        return record

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._batches_seen = epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches_seen = batch + 1
        if self.every_batches and (batch + 1) % self.every_batches == 0 and not self.model.stop_training:
            self.check(epoch=self._epoch, batch=batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        last = self.checks[-1] if self.checks else None
        stopped_here = self.model.stop_training and self.events and self.events[-1]["epoch"] == epoch + 1
        if last is not None and last["epoch"] == epoch + 1 and (stopped_here or last["batch"] == self._batches_seen):
            record = last  # measured after the epoch's last batch (or at the detection): reuse
        else:
            record = self.check(epoch=epoch, batch=None)
        if logs is not None:
            logs["co_pgd_accuracy"] = record["pgd_accuracy"]
            logs["co_fgsm_accuracy"] = record["fgsm_accuracy"]

    def record(self) -> dict[str, Any]:
        """Summarize the settings, every check and the detections.

        Returns:
            A JSON-ready dict: ``eps``, ``norm``, ``pgd_steps``, ``examples``, ``drop``,
            ``gap``, ``action``, ``detected``, ``events`` and ``checks``.
        """
        return {"eps": self.eps, "norm": self.norm, "pgd_steps": self.pgd_steps, "examples": int(len(self.x)),
                "drop": self.drop, "gap": self.gap, "action": self.action, "detected": self.detected,
                "events": self.events, "checks": self.checks}
