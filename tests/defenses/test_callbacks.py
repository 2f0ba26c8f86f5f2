"""defenses.callbacks: robust early stopping, weight averaging and catastrophic-overfitting
detection on scripted models, and both in real training (slow)."""

import csv

import numpy as np
import pytest

from advrobust import data, models, training
from attacks import pgd
from attacks.backend import keras, tf
from defenses import callbacks as defense_callbacks
from tests.defenses.conftest import linear_model


# 1-D points on the first axis (the second is 0): a linear model with weights w = (1, w2)
# has L-inf margin |t| / (1 + |w2|), so w2 sets the robust accuracy at eps 0.15.
T = np.array([-0.5, -0.3, -0.1, 0.1, 0.3, 0.5], np.float32)
POINTS = np.stack([T, np.zeros_like(T)], 1)
LABELS = (T > 0).astype(np.int64)


def _weights(w2):
    w = np.array([1.0, w2], np.float32)
    return [np.stack([-w / 2, w / 2], 1), np.zeros(2, np.float32)]


class Scripted(keras.Model):
    """A 'training' that does nothing: a callback sets the weights each epoch."""

    def __init__(self, base):
        super().__init__()
        self.base_model = base

    def call(self, inputs, training=None):
        return self.base_model(inputs, training=training)

    def train_step(self, data):
        return {}


def _scripted_fit(base, schedule, callbacks, epochs):
    trainer = Scripted(base)
    trainer.compile(optimizer="sgd")
    script = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: base.get_layer("logits").set_weights(schedule[epoch]))
    data = tf.data.Dataset.from_tensor_slices((POINTS, LABELS)).batch(6)
    return trainer.fit(data, epochs=epochs, callbacks=[script, *callbacks], verbose=0)


def test_robust_early_stopping_keeps_the_best_robust_epoch(tmp_path):
    # Robust accuracy per epoch: w2 = 2 -> 2/6, w2 = 0 -> 4/6 (the peak), w2 = 5 -> 0.
    schedule = [_weights(2.0), _weights(0.0), _weights(5.0), _weights(5.0), _weights(5.0), _weights(5.0)]
    base = linear_model(2)
    robust = defense_callbacks.RobustEarlyStopping(
        POINTS, LABELS, eps=0.15, steps=10, clip=None, filepath=tmp_path / "best_robust.keras", patience=2,
        log_dir=tmp_path / "tb")
    csv_logger = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    history = _scripted_fit(base, schedule, [robust, csv_logger], epochs=6)

    np.testing.assert_allclose(robust.history, [2 / 6, 4 / 6, 0.0, 0.0])
    assert robust.best_epoch == 1 and robust.best == pytest.approx(4 / 6)
    assert robust.stopped_epoch == 3, "patience 2: stop after two epochs without improvement"
    np.testing.assert_allclose(history.history["val_robust_accuracy"], robust.history)
    # Restored, and the checkpoint on disk is the best epoch's plain logits model.
    np.testing.assert_allclose(base.get_layer("logits").get_weights()[0], schedule[1][0])
    saved = models.load(tmp_path / "best_robust.keras")
    np.testing.assert_allclose(saved.get_layer("logits").get_weights()[0], schedule[1][0])
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["val_robust_accuracy"]) for row in rows] == pytest.approx(robust.history)
    tags = [value.tag for path in (tmp_path / "tb").glob("events.out.tfevents.*")
            for event in tf.compat.v1.train.summary_iterator(str(path)) for value in event.summary.value]
    assert tags.count("robust_accuracy") == 4
    record = robust.record()
    assert record["best_epoch"] == 2 and record["stopped_early_at_epoch"] == 4 and record["examples"] == 6


def test_robust_early_stopping_resumed_after_a_restart_keeps_the_earlier_best(tmp_path):
    # Epoch 1 is the most robust; the process dies after epoch 2, and training starts again
    # at epoch 3 (as Keras BackupAndRestore does) with a fresh callback object.
    schedule = [_weights(2.0), _weights(0.0), _weights(5.0), _weights(2.0), _weights(2.0), _weights(5.0)]
    base = linear_model(2)

    def callback():
        return defense_callbacks.RobustEarlyStopping(POINTS, LABELS, eps=0.15, steps=10, clip=None,
                                                     filepath=tmp_path / "best_robust.keras")

    _scripted_fit(base, schedule, [callback()], epochs=3)
    before_restart = (tmp_path / "best_robust.keras").stat().st_mtime_ns
    resumed = callback()
    trainer = Scripted(base)
    trainer.compile(optimizer="sgd")
    script = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: base.get_layer("logits").set_weights(schedule[epoch]))
    trainer.fit(tf.data.Dataset.from_tensor_slices((POINTS, LABELS)).batch(6), epochs=6, initial_epoch=3,
                callbacks=[script, resumed], verbose=0)

    np.testing.assert_allclose(resumed.history, [2 / 6, 4 / 6, 0.0, 2 / 6, 2 / 6, 0.0])
    assert resumed.best_epoch == 1 and resumed.best == pytest.approx(4 / 6)
    assert (tmp_path / "best_robust.keras").stat().st_mtime_ns == before_restart, "a weaker epoch overwrote it"
    # The best weights come back from the checkpoint, though they were set before the restart.
    np.testing.assert_allclose(base.get_layer("logits").get_weights()[0], schedule[1][0])
    assert resumed.record()["best_epoch"] == 2 and len(resumed.record()["per_epoch"]) == 6

    # Without its state file a restarted callback starts afresh, as before.
    resumed.state_path.unlink()
    fresh = callback()
    trainer.fit(tf.data.Dataset.from_tensor_slices((POINTS, LABELS)).batch(6), epochs=5, initial_epoch=3,
                callbacks=[script, fresh], verbose=0)
    assert fresh.history == pytest.approx([2 / 6, 2 / 6]) and fresh.best_epoch == 3


def test_robust_early_stopping_without_patience_runs_every_epoch():
    schedule = [_weights(0.0), _weights(5.0), _weights(5.0)]
    base = linear_model(2)
    robust = defense_callbacks.RobustEarlyStopping(POINTS, LABELS, eps=0.15, clip=None,
                                                   restore_best_weights=False)
    _scripted_fit(base, schedule, [robust], epochs=3)
    assert len(robust.history) == 3 and robust.stopped_epoch is None and robust.best_epoch == 0
    np.testing.assert_allclose(base.get_layer("logits").get_weights()[0], schedule[2][0])


# Batch b of epoch e sets the logits kernel's second row to W2[e][b] (the bias stays 0).
W2 = [[2.0, 0.0, 5.0], [1.0, 3.0, -1.0], [4.0, 2.0, 0.5]]


def _averaging_fit(base, averaging, epochs, initial_epoch=0, after=()):
    """Scripted training: each batch sets the weights to the next W2 value; ``averaging`` averages."""
    trainer = Scripted(base)
    trainer.compile(optimizer="sgd")
    epoch_now = {}
    script = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epoch_now.update(epoch=epoch),
        on_train_batch_begin=lambda batch, logs: base.get_layer("logits").set_weights(
            _weights(W2[epoch_now["epoch"]][batch])))
    data = tf.data.Dataset.from_tensor_slices((POINTS, LABELS)).batch(2)  # 3 batches per epoch
    trainer.fit(data, epochs=epochs, initial_epoch=initial_epoch, callbacks=[script, averaging, *after], verbose=0)


def _hand_ema(decay, start, values):
    average = start
    for t, value in enumerate(values, start=1):
        d = min(decay, (1 + t) / (10 + t))
        average = d * average + (1 - d) * value
    return average


def test_weight_averaging_is_the_warmed_up_ema_of_the_weights_after_each_batch():
    base = linear_model(2)
    base.get_layer("logits").set_weights(_weights(-3.0))
    averaging = defense_callbacks.WeightAveraging(base, decay=0.5)
    _averaging_fit(base, averaging, epochs=2)

    values = W2[0] + W2[1]
    expected = _hand_ema(0.5, -3.0, values)  # decay 0.5 < the warm-up's (1+t)/(10+t) for t <= 8
    kernel = averaging.averaged.get_layer("logits").get_weights()[0]
    np.testing.assert_allclose(kernel[1], [-expected / 2, expected / 2], rtol=1e-6)
    np.testing.assert_allclose(kernel[0], [-0.5, 0.5], rtol=1e-6)  # a constant weight averages to itself
    assert averaging.steps == 6 and averaging.record()["restarts_without_state"] == 0
    # The warm-up: d_1 = 2/11 however close decay is to 1, so the first value already counts.
    assert averaging.decay_at(1) == pytest.approx(2 / 11) and averaging.decay_at(10**6) == 0.5
    # The trained model keeps its own (last) weights: only the clone holds the averages.
    np.testing.assert_allclose(base.get_layer("logits").get_weights()[0][1], [0.5, -0.5])  # W2[1][2] = -1
    high = defense_callbacks.WeightAveraging(linear_model(2), decay=0.999)
    assert high.decay_at(1) == pytest.approx(2 / 11) and high.decay_at(10**6) == 0.999


def test_weight_averaging_resumes_from_its_state_after_a_restart(tmp_path):
    state = tmp_path / "averaging.npz"
    kept = tmp_path / "kept.npz"
    uninterrupted = defense_callbacks.WeightAveraging(linear_model(2), decay=0.9)
    _averaging_fit(uninterrupted.source, uninterrupted, epochs=3)

    # The process dies after epoch 2: keep the state file as it was then (training's end removes it).
    first = defense_callbacks.WeightAveraging(linear_model(2), decay=0.9, state_path=state)
    keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: kept.write_bytes(state.read_bytes()))
    _averaging_fit(first.source, first, epochs=2, after=[keep])
    assert not state.exists(), "the state file outlived the training"
    state.write_bytes(kept.read_bytes())
    resumed = defense_callbacks.WeightAveraging(first.source, decay=0.9, state_path=state)
    _averaging_fit(first.source, resumed, epochs=3, initial_epoch=2)
    np.testing.assert_allclose(resumed.averaged.get_weights()[0], uninterrupted.averaged.get_weights()[0],
                               rtol=1e-6)
    assert resumed.steps == 9 and resumed.restarts == 0

    # Without a state for that epoch: a warning, and averaging starts afresh from the weights.
    fresh = defense_callbacks.WeightAveraging(first.source, decay=0.9, state_path=state)
    with pytest.warns(UserWarning, match="no weight-averaging state for the 2 finished epochs"):
        _averaging_fit(first.source, fresh, epochs=3, initial_epoch=2)
    assert fresh.restarts == 1 and fresh.steps == 3


def test_robust_early_stopping_selects_the_averaged_weights(tmp_path):
    base = linear_model(2)
    base.get_layer("logits").set_weights(_weights(0.0))
    averaging = defense_callbacks.WeightAveraging(base, decay=0.5)
    robust = defense_callbacks.RobustEarlyStopping(POINTS, LABELS, eps=0.15, steps=10, clip=None,
                                                   model=averaging.averaged, filepath=tmp_path / "best.keras")
    _averaging_fit(base, averaging, epochs=3, after=[robust])
    # Averages after each epoch: w2 = 3.59, 0.56, 1.35; robust accuracy 0, 4/6, 2/6.
    np.testing.assert_allclose(robust.history, [0.0, 4 / 6, 2 / 6])
    assert robust.best_epoch == 1
    # What it measured, saved and restored is the averaged model, not the trained one.
    saved = models.load(tmp_path / "best.keras")
    np.testing.assert_allclose(saved.get_weights()[0], averaging.averaged.get_weights()[0])
    best_w2 = _hand_ema(0.5, 0.0, sum(W2[:robust.best_epoch + 1], []))
    np.testing.assert_allclose(saved.get_layer("logits").get_weights()[0][1], [-best_w2 / 2, best_w2 / 2],
                               rtol=1e-5)
    np.testing.assert_allclose(averaging.averaged.get_weights()[0], saved.get_weights()[0])  # restored


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1, True, "0.9"])
def test_weight_averaging_rejects_a_decay_outside_0_1(decay):
    with pytest.raises(ValueError, match="decay must be a number in \\(0, 1\\)"):
        defense_callbacks.WeightAveraging(linear_model(2), decay=decay)


def _masking_model():
    """Input (N, 1) near 0.5; logits (0, g). With collapse weight a:
    g = -1 + 0.5 tanh(1000 t) + a (20 relu(-t - 0.1) - 2 t),  t = x - 0.5.
    a = 0: g < 0 everywhere in [0.2, 0.8] (robust, class 0). a = 1: a narrow bump makes
    the gradient at t = 0 point to +t, where the model stays right (FGSM fails), while
    everywhere else it points to -t: from almost any random start PGD walks to
    t < -0.15, where g > 0 (PGD succeeds). The signature of catastrophic overfitting."""
    inputs = keras.Input((1,), name="image")
    bump = keras.layers.Dense(1, activation="tanh", name="bump")(inputs)
    ramp = keras.layers.Dense(1, activation="relu", name="ramp")(inputs)
    shift = keras.layers.Dense(1, name="shift")(inputs)
    g = keras.layers.Dense(1, name="g")(keras.layers.Concatenate()([bump, ramp, shift]))
    logits = keras.layers.Dense(2, name="logits")(g)
    model = keras.Model(inputs, logits)
    model.get_layer("bump").set_weights([np.array([[1000.0]]), np.array([-500.0])])
    model.get_layer("ramp").set_weights([np.array([[-1.0]]), np.array([0.4])])
    model.get_layer("shift").set_weights([np.array([[1.0]]), np.array([-0.5])])
    model.get_layer("logits").set_weights([np.array([[0.0, 1.0]]), np.zeros(2)])
    return model


def _g_weights(collapse, plain_slope=0.0):
    return [np.array([[0.5 * (plain_slope == 0)], [20.0 * collapse], [-2.0 * collapse + plain_slope]]),
            np.array([-1.0])]


def _co_fit(schedule, monitor, epochs):
    base = _masking_model()
    trainer = Scripted(base)
    trainer.compile(optimizer="sgd")
    script = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: base.get_layer("g").set_weights(schedule[epoch]))
    x = np.full((64, 1), 0.5, np.float32)
    history = trainer.fit(tf.data.Dataset.from_tensor_slices((x, np.zeros(64, np.int64))).batch(64),
                          epochs=epochs, callbacks=[script, monitor], verbose=0)
    return base, history


def test_catastrophic_overfitting_is_detected_and_training_stops():
    x = np.full((64, 1), 0.5, np.float32)
    monitor = defense_callbacks.CatastrophicOverfittingMonitor(x, np.zeros(64, np.int64), eps=0.3, seed=0)
    schedule = [_g_weights(0), _g_weights(0), _g_weights(1), _g_weights(1), _g_weights(1)]
    with pytest.warns(defense_callbacks.CatastrophicOverfittingWarning, match="epoch 3"):
        base, history = _co_fit(schedule, monitor, epochs=5)
    assert monitor.detected and len(monitor.events) == 1
    event = monitor.events[0]
    assert event["epoch"] == 3 and event["best_pgd_accuracy"] == 1.0
    assert event["fgsm_accuracy"] == 1.0 and event["pgd_accuracy"] < 0.2
    assert len(history.history["co_pgd_accuracy"]) == 3, "stopped at the detecting epoch"
    # The weights of the best PGD check (collapse weight 0) are back.
    np.testing.assert_allclose(base.get_layer("g").get_weights()[0], _g_weights(0)[0])


def test_a_plain_loss_of_robustness_is_not_catastrophic_overfitting():
    x = np.full((64, 1), 0.5, np.float32)
    monitor = defense_callbacks.CatastrophicOverfittingMonitor(x, np.zeros(64, np.int64), eps=0.3, seed=0)
    # g = -1 - 10 t: both FGSM and PGD reach t = -0.3 (g = 2): a weak model, not masking.
    schedule = [_g_weights(0), _g_weights(0, plain_slope=-10.0), _g_weights(0, plain_slope=-10.0)]
    _, history = _co_fit(schedule, monitor, epochs=3)
    assert not monitor.detected
    assert history.history["co_pgd_accuracy"] == [1.0, 0.0, 0.0]
    assert history.history["co_fgsm_accuracy"] == [1.0, 0.0, 0.0]


@pytest.mark.slow
def test_fgsm_rs_training_records_its_overfitting_checks(tmp_path):
    config = training.TrainConfig(dataset="mnist", epochs=1, train_subset=1024, batch_size=64, defense="fgsm_rs",
                                  preset="quick", robust_val_size=100, co_check_size=100, seed=0)
    card = training.train(config, tmp_path, verbose=0)["card"]
    record = card["catastrophic_overfitting"]
    assert card["defense_config"]["step_size"] == pytest.approx(0.125)
    # 16 batches, checked every 4; the check after the last batch serves as the epoch's.
    assert [check["batch"] for check in record["checks"]] == [4, 8, 12, 16]
    assert all(0 <= check["pgd_accuracy"] <= check["fgsm_accuracy"] + 0.05 for check in record["checks"])
    assert card["history"]["co_pgd_accuracy"] == [record["checks"][-1]["pgd_accuracy"]]


@pytest.mark.slow
def test_weight_averaging_selects_and_saves_the_most_robust_averaged_weights(tmp_path):
    config = training.TrainConfig(dataset="mnist", epochs=2, train_subset=1024, batch_size=64, defense="pgd_at",
                                  preset="quick", robust_val_size=200, ema_decay=0.9, augment="shift", seed=0)
    result = training.train(config, tmp_path, verbose=0)
    card = result["card"]
    assert card["weight_averaging"] == {"method": "ema", "decay": 0.9, "warmup": "min(decay, (1 + t) / (10 + t))",
                                        "steps": 32, "restarts_without_state": 0}
    assert card["training_config"]["ema_decay"] == 0.9 and card["training_config"]["augment"] == "shift"
    assert not (tmp_path / "checkpoints" / "weight_averaging.npz").exists()
    saved, best = models.load(result["model_path"]), models.load(tmp_path / "checkpoints" / "best_robust.keras")
    for ours, theirs in zip(saved.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(ours, theirs)

    # The robust accuracy that selected the epoch is the saved (averaged) model's, on the
    # same validation subset and attack as in training.
    x, y = data.load("mnist", "train", download=False)
    (_, _), (x_val, y_val) = data.train_val_split(x, y, val_fraction=config.val_fraction, seed=0)
    x_val, y_val = x_val[:200], y_val[:200]
    x_adv = pgd(saved, x_val, y_val, eps=0.1, steps=config.robust_val_steps, seed=0)
    clean = np.argmax(saved.predict(x_val, verbose=0), 1) == y_val
    robust = float(np.mean(clean & (np.argmax(saved.predict(x_adv, verbose=0), 1) == y_val)))
    assert robust == pytest.approx(card["robust_validation"]["best_robust_accuracy"])
    assert card["clean_test_accuracy"] > 0.5
