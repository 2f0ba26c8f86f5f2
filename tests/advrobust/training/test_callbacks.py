"""advrobust.training.callbacks: training interrupted after an epoch goes on from that epoch when
started again (BackupAndRestore), at that epoch's scheduled learning rate; the CSV log appends."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import defenses
from advrobust import data, models, training
from attacks.backend import keras, tf


class _Interrupt(keras.callbacks.Callback):
    """Stands in for a crash: raises after ``epoch`` finished (and was backed up)."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


class _Weights(keras.callbacks.Callback):
    """Records the weights and optimizer step at the start of training and after each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.at_start = None
        self.after_epoch = {}

    def _snapshot(self):
        return [w.copy() for w in self.model.get_weights()], int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        self.at_start = self._snapshot()

    def on_epoch_end(self, epoch, logs=None):
        self.after_epoch[epoch] = self._snapshot()


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = (x[:, :14].mean(axis=(1, 2, 3)) > x[:, 14:].mean(axis=(1, 2, 3))).astype(np.int64)
    return data.make_dataset(x, y, batch_size=64, shuffle=True, seed=seed)


def _epochs_logged(out_dir) -> list[int]:
    with open(out_dir / "training_log.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.parametrize("defense", [None, "pgd_at", "nsl"])
def test_interrupted_training_resumes_from_the_last_finished_epoch(tmp_path, defense):
    def run(extra_callbacks):
        training.set_seed(0)
        model = models.build("cnn", dropout=False, seed=0)
        # The stand-in crash comes last, after the epoch was backed up and logged.
        callbacks = training.schedule_callbacks("cosine", 1e-3, epochs=3)
        callbacks += training.standard_callbacks(tmp_path, checkpoint=False, early_stopping=False)
        callbacks += list(extra_callbacks)
        if defense is None:
            return training.fit(model, _data(), None, epochs=3, callbacks=callbacks, verbose=0)
        config = defenses.resolve(defense, dataset="mnist", preset="quick")
        return defenses.fit(config, model, _data(), None, epochs=3, callbacks=callbacks, verbose=0)

    first, second = _Weights(), _Weights()
    with pytest.raises(KeyboardInterrupt):
        run([first, _Interrupt(epoch=1)])  # epochs 0 and 1 finished, then the "crash"
    assert any((tmp_path / "backup").iterdir())
    history = run([second])
    assert history.epoch == [2]  # only the epoch that was missing ran
    # It went on from the state after epoch 1: the same weights and optimizer step.
    weights, step = first.after_epoch[1]
    assert second.at_start[1] == step > 0
    for restored, saved in zip(second.at_start[0], weights):
        np.testing.assert_array_equal(restored, saved)
    assert _epochs_logged(tmp_path) == [0, 1, 2]  # the CSV log was appended to, not restarted
    logged = training.logged_epochs(tmp_path / "training_log.csv")
    assert len(logged["loss"]) == 3 and all(seconds > 0 for seconds in logged["epoch_seconds"])
    # The resumed epoch ran at its own scheduled rate, not the first epoch's.
    np.testing.assert_allclose(logged["lr"], [training.learning_rate_at("cosine", 1e-3, epoch, 3)
                                              for epoch in range(3)], rtol=1e-6)
    assert not (tmp_path / "backup").exists() or not any((tmp_path / "backup").iterdir())


def test_interrupted_training_resumes_the_weight_averages_too(tmp_path):
    from defenses.callbacks import WeightAveraging

    state = tmp_path / "checkpoints" / "weight_averaging.npz"

    class _KeepAverages(keras.callbacks.Callback):
        """After each epoch: the averages, and whether their state file was written."""

        def __init__(self, averaging):
            super().__init__()
            self.averaging, self.after_epoch = averaging, {}

        def on_epoch_end(self, epoch, logs=None):
            self.after_epoch[epoch] = ([w.copy() for w in self.averaging.averaged.get_weights()], state.exists())

    def run(averaging, extra_callbacks):
        training.set_seed(0)
        callbacks = [averaging, *training.standard_callbacks(tmp_path, checkpoint=False, early_stopping=False),
                     *extra_callbacks]
        config = defenses.resolve("pgd_at", dataset="mnist", preset="quick")
        return defenses.fit(config, averaging.source, _data(), None, epochs=3, callbacks=callbacks, verbose=0)

    first = WeightAveraging(models.build("cnn", dropout=False, seed=0), decay=0.99, state_path=state)
    kept = _KeepAverages(first)
    with pytest.raises(KeyboardInterrupt):
        run(first, [kept, _Interrupt(epoch=1)])
    assert kept.after_epoch[1][1] and state.exists(), "no averaging state survived the crash"

    second = WeightAveraging(models.build("cnn", dropout=False, seed=0), decay=0.99, state_path=state)
    resumed = _KeepAverages(second)
    started = {}
    second_start = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: started.setdefault(
        epoch, ([w.copy() for w in second.averaged.get_weights()], second.steps)))
    run(second, [second_start, resumed])
    assert list(started) == [2] and second.restarts == 0
    # Epoch 2 began from the averages and step count saved after epoch 1 (4 batches per epoch).
    assert started[2][1] == 8
    for restored, saved in zip(started[2][0], kept.after_epoch[1][0]):
        np.testing.assert_array_equal(restored, saved)
    assert second.steps == 12 and not state.exists()


def test_csv_log_appends_new_columns_under_their_own_names(tmp_path):
    """A restart that logs a column the file lacks (e.g. a log begun by an older version)
    must not shift values under the wrong names, as Keras's CSVLogger does."""
    path = tmp_path / "training_log.csv"
    path.write_text("epoch,eps,loss\r\n0,0.1,0.9\r\n1,0.1,0.8\r\n")
    logger = training.CSVLog(str(path), append=True)
    logger.on_train_begin()
    logger.on_epoch_end(2, {"loss": 0.7, "eps": 0.1, "epoch_seconds": 211.0})
    logger.on_epoch_end(3, {"loss": 0.6, "eps": 0.1, "epoch_seconds": 209.0})
    logger.on_train_end()
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["loss"] for row in rows] == ["0.9", "0.8", "0.7", "0.6"]
    assert [row["eps"] for row in rows] == ["0.1"] * 4
    assert [row["epoch_seconds"] for row in rows] == ["", "", "211.0", "209.0"]
    assert all(None not in row for row in rows)  # no row is longer than the header
    logged = training.logged_epochs(path)
    assert logged["loss"] == [0.9, 0.8, 0.7, 0.6] and "epoch_seconds" not in logged


def test_csv_log_with_the_same_columns_only_appends(tmp_path):
    path = tmp_path / "training_log.csv"
    path.write_text("epoch,loss\r\n0,0.9\r\n")
    logger = training.CSVLog(str(path), append=True)
    logger.on_train_begin()
    logger.on_epoch_end(1, {"loss": 0.5})
    logger.on_train_end()
    assert path.read_bytes() == b"epoch,loss\r\n0,0.9\r\n1,0.5\r\n"


def test_a_restarted_training_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """Shuffled, augmented data and Dropout: the restarted epoch draws what it drew before."""
    rng = np.random.default_rng(0)
    x = rng.random((192, 28, 28, 1), dtype=np.float32)
    y = (x[:, :14].mean(axis=(1, 2, 3)) > x[:, 14:].mean(axis=(1, 2, 3))).astype(np.int64)

    def run(out_dir, extra_callbacks=()):
        training.set_seed(0)
        model = models.build("cnn", dropout=True, seed=0)
        epoch = tf.Variable(0, dtype=tf.int64)
        train = data.make_dataset(x, y, batch_size=64, shuffle=True, seed=0, augment="shift", epoch=epoch)
        training.fit(model, train, None, epochs=2, out_dir=out_dir, epoch=epoch, seed=0,
                     callbacks=list(extra_callbacks), verbose=0)
        return model.get_weights()

    uninterrupted = run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", [_Interrupt(epoch=0)])  # epoch 0 logged, not yet backed up: it is redone
    restarted = run(tmp_path / "cut")
    for got, expected in zip(restarted, uninterrupted):
        np.testing.assert_array_equal(got, expected)
    assert _epochs_logged(tmp_path / "cut") == [0, 1]


def test_early_stopping_and_the_best_checkpoint_count_the_epochs_before_a_restart(tmp_path):
    log = tmp_path / "training_log.csv"
    log.write_text("epoch,val_accuracy\n0,0.5\n1,0.9\n2,0.7\n3,0.95\n")  # epoch 3: logged, not backed up
    stopping = training.callbacks.ResumableEarlyStopping(log, monitor="val_accuracy", mode="max", patience=3)
    checkpoint = training.callbacks.ResumableCheckpoint(tmp_path / "best.keras", log, monitor="val_accuracy",
                                                        mode="max")
    csv_log = training.CSVLog(str(log), append=True)
    for callback in (stopping, checkpoint, csv_log):
        callback.on_train_begin()
        callback.on_epoch_begin(3)  # the restart redoes epoch 3
    assert (stopping.best, stopping.best_epoch, stopping.wait) == (0.9, 1, 1)
    assert checkpoint.best == 0.9
    assert _epochs_logged(tmp_path) == [0, 1, 2]
    csv_log.on_train_end()


def test_epochs_before_start_from_epoch_are_never_the_best_nor_counted_after_a_restart(tmp_path):
    # Certified training's ramp: epoch 0 logs a high value at a small radius; candidates start at epoch 2.
    log = tmp_path / "training_log.csv"
    log.write_text("epoch,val_verified_accuracy\n0,0.9\n1,0.2\n2,0.4\n3,0.3\n")
    stopping = training.callbacks.ResumableEarlyStopping(log, monitor="val_verified_accuracy", mode="max",
                                                         patience=3, start_from_epoch=2)
    checkpoint = training.callbacks.ResumableCheckpoint(tmp_path / "best.keras", log, mode="max",
                                                        monitor="val_verified_accuracy", start_from_epoch=2)
    for callback in (stopping, checkpoint):
        callback.on_train_begin()
        callback.on_epoch_begin(4)
    assert (stopping.best, stopping.best_epoch, stopping.wait) == (0.4, 2, 1)
    assert checkpoint.best == 0.4


def test_the_checkpoint_saves_no_epoch_before_start_from_epoch(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    checkpoint = training.callbacks.ResumableCheckpoint(tmp_path / "best.keras", tmp_path / "log.csv",
                                                        monitor="val_accuracy", start_from_epoch=1)
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    checkpoint.on_epoch_begin(0)
    checkpoint.on_epoch_end(0, {"val_accuracy": 0.99})
    assert not (tmp_path / "best.keras").exists() and checkpoint.best == -np.inf
    checkpoint.on_epoch_end(1, {"val_accuracy": 0.5})
    assert (tmp_path / "best.keras").is_file() and checkpoint.best == 0.5
