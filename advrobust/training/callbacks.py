"""The Keras callbacks of every training run, and reading their CSV log back.

:func:`standard_callbacks` wires backup and restore (:class:`EpochBackup`), the
best-model checkpoint, early stopping, TensorBoard and a CSV log that survives restarts
(:class:`CSVLog`, with each epoch's wall time from :class:`EpochSeconds`);
:func:`logged_epochs` reads that log.

A training killed at any point (even ``kill -9``) and started again in its folder goes on
from the last finished epoch and ends as an uninterrupted one would: the epoch being
trained is redone from the same state, with the same data order, augmentation and random
draws (each epoch's are a function of the seed and the epoch's index, not of how many
epochs this process ran), and the best epoch, early stopping and the CSV log count the
epochs before the restart too.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import numpy as np

from advrobust.files import atomic_write_text
from attacks.backend import keras, tf


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a training seeded with ``seed``.

    Args:
        seed: The training's seed.
        epoch: The epoch's index, from 0.

    Returns:
        An int in [0, 2**32), a function of ``(seed, epoch)`` alone.
    """
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class EpochBackup(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore, with the draws of an uninterrupted training after a restart.

    Like Keras's, it backs up the state after each finished epoch and restores it when
    the training starts again. It also makes every epoch draw its data and random numbers
    from ``(seed, epoch)``, so the epochs after a restart draw what an uninterrupted
    training draws.

    It goes last among the callbacks, so an epoch counts as finished (is backed up) only
    once every other callback has logged and saved it; a crash before that redoes the epoch.

    Args:
        backup_dir: The backup folder.
        epoch: The variable the training data read at each pass
            (:func:`advrobust.data.make_dataset`'s ``epoch``): set to each epoch's index
            before its pass. None: the data count their passes themselves.
        seed: Reseed Python, NumPy and TensorFlow with :func:`epoch_seed` at the start of
            every epoch (and trace the training step anew, so that its random ops, such as
            Dropout, start from that seed). None: no reseeding.
    """

    def __init__(self, backup_dir: str | Path, *, epoch: tf.Variable | None = None, seed: int | None = None):
        super().__init__(backup_dir=str(backup_dir))
        self.epoch = epoch
        self.seed = seed
        self.initial_epoch = 0
        self._op_seeds: list[tuple[object, int]] = []

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        saved = int(self._training_state._ckpt_saved_epoch.numpy())  # -1: no backup
        self.initial_epoch = saved + 1 if saved >= 0 else 0
        if self.epoch is not None:
            self.epoch.assign(self.initial_epoch)
        if self.seed is not None:
            # A seeded Keras random layer adds 1 to its op seed at every trace, and a
            # process traces the training step once more on its first call (to create
            # variables): its draws would depend on whether the process restarted. Without
            # op seeds, the draws follow the epoch's global seed and the traced graph alone.
            generators = (getattr(layer, "_random_generator", None) for layer in self.model.submodules)
            self._op_seeds = [(generator, generator._seed) for generator in generators
                              if getattr(generator, "_seed", None) is not None and generator._generator is None]
            for generator, _ in self._op_seeds:
                generator._seed = None

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if self.seed is not None:
            keras.utils.set_random_seed(epoch_seed(self.seed, epoch))
            self.model.make_train_function(force=True)  # traced anew: its random ops start from that seed

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.epoch is not None:
            self.epoch.assign(epoch + 1)

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        for generator, op_seed in self._op_seeds:
            generator._seed = op_seed
        self._op_seeds = []


def _logged_values(csv_path: Path, key: str, before_epoch: int) -> list[float] | None:
    """``key``'s value in each of the epochs 0..before_epoch-1 of a CSV log, or None if
    the log does not hold them all."""
    if not csv_path.exists():
        return None
    with open(csv_path, newline="") as handle:
        # A row cut short by a kill has no whole epoch number, or is of an epoch being redone.
        rows = {int(row["epoch"]): row.get(key) for row in csv.DictReader(handle)
                if (row.get("epoch") or "").isdigit()}
    try:
        return [float(rows[epoch]) for epoch in range(before_epoch)]
    except (KeyError, TypeError, ValueError):
        return None


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's EarlyStopping that, started again at epoch k > 0, counts epochs 0..k-1 too.

    Their monitored values come from the CSV log, so patience and the best epoch are those
    of an uninterrupted training; the best weights, if that epoch came before the restart,
    are read from the best-model checkpoint.

    Args:
        log_path: The training's CSV log (:class:`CSVLog`).
        best_path: The ``.keras`` file holding the best epoch's model (the
            ``save_best_only`` checkpoint on the same monitor), or None.
        **kwargs: Keras's EarlyStopping arguments.
    """

    def __init__(self, log_path: str | Path, best_path: str | Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.log_path = Path(log_path)
        self.best_path = None if best_path is None else Path(best_path)
        self._started = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._started:
            return
        self._started = True
        values = _logged_values(self.log_path, self.monitor, epoch) if epoch > 0 else None
        if not values:
            return
        for index, value in enumerate(values):  # Keras's own bookkeeping, epoch by epoch
            if index < self.start_from_epoch:
                continue
            self.wait += 1
            if self._is_improvement(value, self.best):
                self.best, self.best_epoch = value, index
                if self.baseline is None or self._is_improvement(value, self.baseline):
                    self.wait = 0
        if self.restore_best_weights and self.best_path is not None and self.best_path.exists():
            self.best_weights = keras.models.load_model(self.best_path, compile=False).get_weights()


class ResumableCheckpoint(keras.callbacks.Callback):
    """Keep the model of the best epoch so far in a ``.keras`` file, across restarts.

    As Keras's ``save_best_only`` ModelCheckpoint, but the file is written to a temporary
    file and renamed, so a killed training never leaves half of one; and, started again at
    epoch k > 0, it replaces the saved best only by beating epochs 0..k-1 (their values
    read from the CSV log).

    Args:
        filepath: The ``.keras`` file.
        log_path: The training's CSV log (:class:`CSVLog`).
        monitor: The logged metric that picks the best epoch.
        mode: ``"max"`` or ``"min"``: whether a larger or a smaller value is better.
        start_from_epoch: Epochs before this 0-based one are never the best (as Keras's
            EarlyStopping's argument of that name).
    """

    def __init__(self, filepath: str | Path, log_path: str | Path, *, monitor: str = "val_accuracy",
                 mode: str = "max", start_from_epoch: int = 0):
        super().__init__()
        self.filepath = Path(filepath)
        self.log_path = Path(log_path)
        self.monitor = monitor
        self.monitor_op = np.greater if mode == "max" else np.less
        self.start_from_epoch = start_from_epoch
        self._reset()

    def _reset(self) -> None:
        self.best = -np.inf if self.monitor_op is np.greater else np.inf
        self._started = False

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_begin(self, epoch, logs=None):
        if self._started:
            return
        self._started = True
        values = _logged_values(self.log_path, self.monitor, epoch) if epoch > 0 else None
        for value in (values or [])[self.start_from_epoch:]:
            if self.monitor_op(value, self.best):
                self.best = value

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None or epoch < self.start_from_epoch or not self.monitor_op(current, self.best):
            return
        self.best = current
        temporary = self.filepath.with_name(f".{self.filepath.stem}.tmp.keras")  # Keras wants .keras
        self.model.save(temporary)
        os.replace(temporary, self.filepath)


class EpochSeconds(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (wall time of the epoch, validation included) to the epoch logs.

    So the CSV log keeps each finished epoch's time across restarts.
    """

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

    Rows of epochs that are being redone (logged by a run killed before it backed the
    epoch up) are dropped before the training starts again at that epoch, so each epoch
    has one row.
    """

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if self.writer is None and self.append:
            self._drop_rows_from(epoch)

    def _drop_rows_from(self, epoch: int) -> None:
        """Rewrite the file (atomically) without the rows of epochs ``epoch`` and later."""
        path = Path(self.filename)
        if not path.exists():
            return
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle, dialect=_dialect(self.sep)))
        if not rows or "epoch" not in rows[0]:
            return
        column = rows[0].index("epoch")
        kept = [row for row in rows[1:] if row[column].isdigit() and int(row[column]) < epoch]
        if len(kept) == len(rows) - 1:
            return
        self.csv_file.close()
        buffer = io.StringIO()
        csv.writer(buffer, dialect=_dialect(self.sep)).writerows([rows[0], *kept])
        atomic_write_text(path, buffer.getvalue())
        self.csv_file = tf.io.gfile.GFile(self.filename, "a")

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
    """Every epoch in a Keras CSV log (all restarts).

    Only columns with a number in every row are kept (a log begun by an older version
    may lack ``epoch_seconds`` in its first rows).

    Args:
        csv_path: The log, e.g. ``out_dir/training_log.csv``.

    Returns:
        ``{column: values}``, one float per logged epoch in each list, without the
        ``epoch`` column; ``{}`` if the file does not exist.
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
                       checkpoint: bool = True, early_stopping: bool = True, epoch: tf.Variable | None = None,
                       seed: int | None = None, start_from_epoch: int = 0) -> list[keras.callbacks.Callback]:
    """Best-model checkpoint, early stopping, TensorBoard, CSV, backup and restore.

    Early stopping restores the best weights.

    Writes ``out_dir/checkpoints/best.keras``, ``out_dir/logs/`` (TensorBoard) and
    ``out_dir/training_log.csv`` (with ``epoch_seconds``). ``out_dir/backup/`` holds the
    state after the last finished epoch (:class:`EpochBackup`): training interrupted in
    ``out_dir`` (even killed) and started again there goes on from that epoch. The CSV log
    is appended to (one row per epoch; :func:`logged_epochs` reads all epochs back), and
    the best checkpoint and early stopping count the epochs before the restart; the
    returned History covers only the epochs run after it. With ``epoch`` and ``seed``
    (and training data made with that ``epoch``), the restarted training then ends with
    the very weights of an uninterrupted one. Keras deletes the backup when training ends.

    Args:
        out_dir: The run's folder; created if missing.
        monitor: The logged metric that picks the best epoch; maximised if its name holds
            ``acc``, else minimised.
        patience: Epochs without improvement before early stopping.
        checkpoint: Include the best-model checkpoint.
        early_stopping: Include early stopping.
        epoch: The training data's epoch variable (see :class:`EpochBackup`), or None.
        seed: Reseed every epoch from ``(seed, epoch)`` (see :class:`EpochBackup`), or None.
        start_from_epoch: The first 0-based epoch that may be the best and that early
            stopping counts (certified training: the first at full radius); the epochs
            before it are trained and logged, never kept.

    Returns:
        The callbacks, in the order Keras should run them; the backup comes last.
    """
    out_dir = Path(out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    mode = "max" if "acc" in monitor else "min"
    backup = out_dir / "backup"
    log = out_dir / "training_log.csv"
    best = out_dir / "checkpoints" / "best.keras"
    resuming = backup.is_dir() and any(backup.iterdir())
    callbacks: list[keras.callbacks.Callback] = []
    if checkpoint:
        callbacks.append(ResumableCheckpoint(best, log, monitor=monitor, mode=mode,
                                             start_from_epoch=start_from_epoch))
    if early_stopping:
        callbacks.append(ResumableEarlyStopping(log, best if checkpoint else None, monitor=monitor, mode=mode,
                                                patience=patience, restore_best_weights=True,
                                                start_from_epoch=start_from_epoch))
    return [*callbacks, EpochSeconds(), keras.callbacks.TensorBoard(log_dir=str(out_dir / "logs")),
            CSVLog(str(log), append=resuming), EpochBackup(backup, epoch=epoch, seed=seed)]
