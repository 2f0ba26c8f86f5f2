"""The Keras callbacks of every training run, and reading their CSV log back.

:func:`standard_callbacks` wires backup and restore, the best-model checkpoint, early
stopping, TensorBoard and a CSV log that survives restarts (:class:`CSVLog`, with each
epoch's wall time from :class:`EpochSeconds`); :func:`logged_epochs` reads that log.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from advrobust.files import atomic_write_text
from attacks.backend import keras, tf


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
                       checkpoint: bool = True, early_stopping: bool = True) -> list[keras.callbacks.Callback]:
    """Backup and restore, best-model checkpoint, early stopping, TensorBoard, CSV.

    Early stopping restores the best weights.

    Writes ``out_dir/checkpoints/best.keras``, ``out_dir/logs/`` (TensorBoard) and
    ``out_dir/training_log.csv`` (with ``epoch_seconds``). ``out_dir/backup/`` holds the
    state after the last finished epoch (Keras's BackupAndRestore): training interrupted
    in ``out_dir`` and started again there goes on from that epoch (the CSV log is
    appended to, and :func:`logged_epochs` reads all epochs back; the returned History and
    Keras's EarlyStopping/ModelCheckpoint best-so-far cover only the epochs run after the
    restart). Keras deletes the backup when training ends.

    Args:
        out_dir: The run's folder; created if missing.
        monitor: The logged metric that picks the best epoch; maximised if its name holds
            ``acc``, else minimised.
        patience: Epochs without improvement before early stopping.
        checkpoint: Include the best-model checkpoint.
        early_stopping: Include early stopping.

    Returns:
        The callbacks, in the order Keras should run them.
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
