"""Defenses on tiny hand-checkable models: NSL config mapping and margin, the training-time
attack, PGD-AT and TRADES steps, robust early stopping, catastrophic-overfitting
detection, and the checks of TrainConfig."""

import csv

import numpy as np
import pytest

import defenses
from advrobust import models, training
from attacks import fgsm, pgd
from attacks.backend import keras, tf
from defenses.nsl_compat import import_nsl
from defenses import adversarial_training as at
from defenses import callbacks as defense_callbacks
from defenses import distribute, nsl

# --- NSL config -------------------------------------------------------------------------

NSL_EXPECTED = {
    "lecture": {"multiplier": 0.2, "adv_step_size": 0.05, "adv_grad_norm": "l2", "pgd_iterations": 1,
                "pgd_epsilon": None},
    "mnist": {"multiplier": 1.0, "adv_step_size": 0.075, "adv_grad_norm": "infinity", "pgd_iterations": 10,
              "pgd_epsilon": 0.3},
    "fashion_mnist": {"multiplier": 1.0, "adv_step_size": 2.5 * 0.1 / 7, "adv_grad_norm": "infinity",
                      "pgd_iterations": 7, "pgd_epsilon": 0.1},
    "quick": {"multiplier": 1.0, "adv_step_size": 2.5 * 0.1 / 2, "adv_grad_norm": "infinity",
              "pgd_iterations": 2, "pgd_epsilon": 0.1},
}


@pytest.mark.parametrize("name", list(NSL_EXPECTED))
def test_nsl_presets_map_onto_make_adv_reg_config(name):
    expected = {**NSL_EXPECTED[name], "clip_value_min": 0.0, "clip_value_max": 1.0, "random_init": False}
    config = nsl.preset(name)
    kwargs = config.make_adv_reg_config_kwargs()
    assert kwargs.keys() == expected.keys()
    for key, value in expected.items():
        assert kwargs[key] == pytest.approx(value) if isinstance(value, float) else kwargs[key] == value, key

    nsl_lib = import_nsl()
    adv = config.to_nsl()
    neighbor = adv.adv_neighbor_config
    assert isinstance(adv, nsl_lib.configs.AdvRegConfig)
    assert adv.multiplier == pytest.approx(expected["multiplier"])
    assert neighbor.adv_step_size == pytest.approx(expected["adv_step_size"])
    assert neighbor.adv_grad_norm == nsl_lib.configs.NormType(expected["adv_grad_norm"])
    assert neighbor.pgd_iterations == expected["pgd_iterations"]
    assert neighbor.pgd_epsilon == (None if expected["pgd_epsilon"] is None else pytest.approx(expected["pgd_epsilon"]))
    assert (neighbor.clip_value_min, neighbor.clip_value_max) == (0.0, 1.0)


def test_nsl_eps_override_rescales_derived_steps_only():
    assert nsl.preset("mnist", eps=0.2).step_size == pytest.approx(2.5 * 0.2 / 10)
    assert nsl.preset("quick", eps=0.05, pgd_iterations=5).step_size == pytest.approx(2.5 * 0.05 / 5)
    lecture = nsl.preset("lecture", eps=0.5)
    assert lecture.step_size == 0.05 and lecture.eps == 0.5 and lecture.norm == "l2"
    assert nsl.preset("quick", step_size=0.01).step_size == 0.01


def test_resolve_uses_the_dataset_preset_by_default():
    assert defenses.resolve("nsl", dataset="mnist") == nsl.preset("mnist")
    assert defenses.resolve("pgd_at", dataset="fashion_mnist").eps == 0.1
    assert defenses.resolve("trades", dataset="mnist").eps == 0.3
    assert defenses.resolve("none", dataset="mnist") is None
    record = defenses.resolve("fgsm_rs", dataset="mnist", eps=0.2).to_dict()
    assert record["step_size"] == pytest.approx(1.25 * 0.2) and record["steps"] == 1


def _toy_data(n=256, fragile=4, seed=0):
    """One robust feature (|x0| >= 0.3) and ``fragile`` predictive but fragile ones (class
    sign * 0.15 + noise): a plain linear model leans on all of them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    sign = np.where(y == 1, 1.0, -1.0)
    x = np.concatenate([(sign * rng.uniform(0.3, 1.0, n))[:, None],
                        sign[:, None] * 0.15 + rng.normal(0, 0.04, (n, fragile))], 1).astype(np.float32)
    return x, y.astype(np.int64), sign


def _linear(dim, classes=2, seed=0, name="point"):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((dim,), name=name)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(inputs))


def _linf_margin(model, x, sign):
    """Exact L-inf distance of the closest point to a binary linear model's boundary
    (negative if misclassified): signed score / ||w||_1."""
    kernel, bias = model.get_layer("logits").get_weights()
    w, c = kernel[:, 1] - kernel[:, 0], bias[1] - bias[0]
    return float(np.min((x @ w + c) * sign) / np.abs(w).sum())


def test_nsl_widens_the_margin_of_a_linear_model():
    x, y, sign = _toy_data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(32)
    plain = _linear(x.shape[1])
    plain.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain.fit(dataset, epochs=15, verbose=0)
    regularized = _linear(x.shape[1])
    config = nsl.NSLConfig(multiplier=1.0, norm="inf", eps=0.2, step_size=0.2, pgd_iterations=1, clip=None)
    history = nsl.fit(regularized, dataset, config=config, epochs=15, learning_rate=0.05, verbose=0)
    assert "scaled_adversarial_loss" in history.history

    def robust(model):
        x_adv = pgd(model, x, y, eps=0.2, steps=10, clip=None, seed=0)
        return float(np.mean(np.argmax(model(x_adv).numpy(), 1) == y))

    assert np.mean(np.argmax(plain(x).numpy(), 1) == y) == 1.0
    assert np.mean(np.argmax(regularized(x).numpy(), 1) == y) == 1.0
    # Measured: plain 0.149, NSL 0.235 (the largest possible is 0.3).
    assert _linf_margin(regularized, x, sign) > _linf_margin(plain, x, sign) + 0.05
    assert robust(regularized) == 1.0 and robust(plain) < 0.95
    # The fragile features lose their weight.
    kernel = regularized.get_layer("logits").get_weights()[0]
    w = kernel[:, 1] - kernel[:, 0]
    assert np.abs(w[1:]).mean() < 0.5 * abs(w[0])


def test_nsl_wrapper_keeps_base_model_and_takes_input_name():
    base = _linear(2, name="point")
    wrapper = nsl.wrap(base, nsl.preset("quick"))
    assert wrapper.base_model is base and nsl.feature_key(base) == "point"
    dataset = nsl.as_nsl_dataset(tf.data.Dataset.from_tensor_slices((np.zeros((5, 2), np.float32),
                                                                     np.zeros(5, np.int64))).batch(2), base)
    assert set(next(iter(dataset))) == {"point", "label"}
    static = nsl.as_nsl_dataset(tf.data.Dataset.from_tensor_slices((np.zeros((5, 2), np.float32),
                                                                    np.zeros(5, np.int64))).batch(2), base,
                                static_batch=True)
    assert [int(batch["point"].shape[0]) for batch in static] == [2, 2]


def test_nsl_random_init_trains_despite_a_partial_last_batch():
    # NSL's random_init needs static batch shapes; fit drops the partial batch for it.
    x = np.random.default_rng(0).random((10, 2)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((x, (x[:, 0] > 0.5).astype(np.int64))).batch(4)
    config = nsl.NSLConfig(multiplier=1.0, norm="inf", eps=0.1, step_size=0.05, pgd_iterations=2, random_init=True)
    history = nsl.fit(_linear(2), dataset, dataset, config=config, epochs=1, verbose=0)
    assert np.isfinite(history.history["scaled_adversarial_loss"][0])
    with pytest.raises(ValueError, match="random_init=True needs eps"):
        nsl.NSLConfig(random_init=True)


# --- the training-time attack -------------------------------------------------------------

W = np.array([[1.0, -2.0, 0.5], [-0.5, 1.5, 2.0]], np.float32)
B = np.array([0.1, -0.2, 0.0], np.float32)
X = np.array([[0.2, 0.7], [0.5, 0.5], [0.9, 0.1], [0.05, 0.95]], np.float32)
Y = np.array([0, 1, 2, 1], np.int64)


def _fixed_linear(extra_layer=None):
    inputs = keras.Input((2,), name="image")
    logits = keras.layers.Dense(3, name="logits")(inputs)
    if extra_layer is not None:
        logits = extra_layer(logits)
    model = keras.Model(inputs, logits)
    model.get_layer("logits").set_weights([W.copy(), B.copy()])
    return model


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _ce_input_gradient(x, y, w=W, b=B, scale=1.0):
    """d CE(y, scale * (x w + b)) / dx for each row."""
    p = _softmax(scale * (x @ w + b))
    return scale * (p - np.eye(w.shape[1])[y]) @ w.T


def _hand_pgd(x, y, *, eps, step, steps, norm):
    x_t = x.copy()
    for _ in range(steps):
        g = _ce_input_gradient(x_t, y)
        if norm == "inf":
            delta = x_t - x + step * np.sign(g)
            delta = np.clip(delta, -eps, eps)
        else:
            delta = x_t - x + step * g / np.linalg.norm(g, axis=1, keepdims=True)
            length = np.linalg.norm(delta, axis=1, keepdims=True)
            delta = delta * np.minimum(1.0, eps / length)
        x_t = np.clip(x + delta, 0.0, 1.0)
    return x_t


def _perturb_ce(model, x, y, **kwargs):
    x = tf.convert_to_tensor(x)
    return at.perturb(lambda t: model(t, training=False), x,
                      lambda logits: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits),
                      start=x, clip=(0.0, 1.0), **kwargs)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_perturb_equals_hand_written_pgd(norm, compiled):
    model = _fixed_linear()

    def run(x):
        return _perturb_ce(model, x, Y, eps=0.15, norm=norm, steps=3, step_size=0.07)

    got = (tf.function(run)(tf.constant(X)) if compiled else run(X)).numpy()
    np.testing.assert_allclose(got, _hand_pgd(X, Y, eps=0.15, step=0.07, steps=3, norm=norm), atol=1e-6)


def test_perturb_unrolls_its_steps_in_the_traced_graph():
    # A while loop around MaxPool can fall back to Eigen's slower pooling gradient with
    # oneDNN (benchmarks/training_throughput.py); the steps are unrolled instead.
    model = _fixed_linear()
    graph = tf.function(lambda x: _perturb_ce(model, x, Y, eps=0.15, norm="inf", steps=3, step_size=0.07)
                        ).get_concrete_function(tf.TensorSpec(X.shape, tf.float32)).graph
    op_types = {op.type for op in graph.get_operations()}
    assert not op_types & {"While", "StatelessWhile"}
    assert sum(op.type == "Sign" for op in graph.get_operations()) == 3


@pytest.mark.parametrize("steps", [0, -1, 2.0, True, tf.constant(3)])
def test_perturb_refuses_steps_that_are_not_a_positive_int(steps):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        _perturb_ce(_fixed_linear(), X, Y, eps=0.1, norm="inf", steps=steps, step_size=0.1)


def test_perturb_one_full_step_is_attacks_fgsm():
    model = _fixed_linear()
    got = _perturb_ce(model, X, Y, eps=0.1, norm="inf", steps=1, step_size=0.1).numpy()
    np.testing.assert_allclose(got, fgsm(model, X, Y, eps=0.1), atol=1e-6)


class NegateWhenTraining(keras.layers.Layer):
    """Identity at inference, negation in training mode: makes the mode visible."""

    def call(self, inputs, training=None):
        return -inputs if training else inputs


def test_pgd_at_step_crafts_in_inference_mode_and_descends_the_adversarial_loss():
    model = _fixed_linear(NegateWhenTraining())
    config = at.AdversarialTrainingConfig("pgd_at", eps=0.1, steps=2, step_size=0.06, random_start=False)
    trainer = at.AdversarialTrainer(model, config)
    learning_rate = 0.5
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate))
    logs = trainer.train_on_batch(X, Y, return_dict=True)

    x_adv = _hand_pgd(X, Y, eps=0.1, step=0.06, steps=2, norm="inf")  # the inference-mode attack
    z = -(x_adv @ W + B)  # the training-mode logits the loss is taken on
    p = _softmax(z)
    onehot = np.eye(3)[Y]
    expected_loss = float(np.mean(-np.log(p[np.arange(4), Y])))
    d_z = -(p - onehot) / len(X)
    kernel, bias = model.get_layer("logits").get_weights()
    np.testing.assert_allclose(kernel, W - learning_rate * x_adv.T @ d_z, atol=1e-5)
    np.testing.assert_allclose(bias, B - learning_rate * d_z.sum(axis=0), atol=1e-5)
    assert logs["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert logs["eps"] == pytest.approx(0.1)


def _ce_weight_gradients(x, y, w):
    """d mean CE(y, x w + B) / d(w, B) for the fixed linear model with kernel w."""
    d_z = (_softmax(x @ w + B) - np.eye(3)[y]) / len(x)
    return x.T @ d_z, d_z.sum(axis=0)


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_awp_step_takes_the_gradient_at_adversarially_moved_weights(strategy):
    gamma, learning_rate = 0.2, 0.5
    config = at.AdversarialTrainingConfig("pgd_at", eps=0.1, steps=2, step_size=0.06, random_start=False,
                                          awp_gamma=gamma)
    scope = (tf.distribute.MirroredStrategy(["/cpu:0"]) if strategy == "mirrored"
             else tf.distribute.get_strategy())
    with scope.scope():
        model = _fixed_linear()
        trainer = at.AdversarialTrainer(model, config)
        trainer.compile(optimizer=keras.optimizers.SGD(learning_rate))
    trainer.train_on_batch(X, Y)

    x_adv = _hand_pgd(X, Y, eps=0.1, step=0.06, steps=2, norm="inf")  # crafted at the unmoved weights
    g, _ = _ce_weight_gradients(x_adv, Y, W)
    moved = W + gamma * np.linalg.norm(W) * g / np.linalg.norm(g)  # the kernel moves; the bias does not
    g_moved, g_bias_moved = _ce_weight_gradients(x_adv, Y, moved)
    kernel, bias = model.get_layer("logits").get_weights()
    np.testing.assert_allclose(kernel, W - learning_rate * g_moved, atol=1e-5)  # moved back, then stepped
    np.testing.assert_allclose(bias, B - learning_rate * g_bias_moved, atol=1e-5)
    assert np.abs(g_moved - g).max() > 1e-2  # so the test tells AWP from a plain step


def test_awp_is_refused_for_fgsm_rs_and_below_zero():
    with pytest.raises(ValueError, match="awp_gamma applies to pgd_at and trades, not fgsm_rs"):
        at.AdversarialTrainingConfig("fgsm_rs", eps=0.1, steps=1, awp_gamma=0.01)
    with pytest.raises(ValueError, match="awp_gamma must be a finite number >= 0"):
        at.preset("pgd_at", "fashion_mnist", awp_gamma=-0.01)
    assert at.preset("trades", "fashion_mnist", awp_gamma=0.005).to_dict()["awp_gamma"] == 0.005


def test_eps_warmup_grows_linearly_per_step():
    config = at.AdversarialTrainingConfig("pgd_at", eps=0.2, steps=1, warmup_epochs=1.0)
    with pytest.raises(ValueError, match="needs steps_per_epoch"):
        at.AdversarialTrainer(_fixed_linear(), config)
    trainer = at.AdversarialTrainer(_fixed_linear(), config, steps_per_epoch=4)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))
    used = [trainer.train_on_batch(X, Y, return_dict=True)["eps"] for _ in range(6)]
    np.testing.assert_allclose(used, [0.05, 0.1, 0.15, 0.2, 0.2, 0.2], rtol=1e-6)


# --- TRADES --------------------------------------------------------------------------------


def test_trades_loss_equals_hand_computed_value():
    model = _fixed_linear()
    x_adv = np.clip(X + np.array([[0.1, -0.1], [-0.1, 0.1], [0.1, 0.1], [-0.05, 0.05]], np.float32), 0, 1)
    clean, adv = model(X).numpy(), model(x_adv).numpy()
    p, q = _softmax(clean), _softmax(adv)
    ce = -np.log(p[np.arange(4), Y])
    kl = np.sum(p * (np.log(p) - np.log(q)), axis=1)
    beta = 6.0
    got = at.trades_loss(tf.constant(clean), tf.constant(adv), tf.constant(Y), beta=beta).numpy()
    np.testing.assert_allclose(got, ce + beta * kl, rtol=1e-5)
    # Hand values for the first example, written out.
    assert got[0] == pytest.approx(ce[0] + 6.0 * kl[0], rel=1e-5) and kl.min() > 0
    np.testing.assert_allclose(at.kl_divergence(tf.constant(clean), tf.constant(clean)).numpy(), 0.0, atol=1e-7)


def test_trades_train_step_loss_is_the_trades_loss_of_its_examples():
    model = _fixed_linear()
    config = at.AdversarialTrainingConfig("trades", eps=0.1, steps=3, beta=2.0, seed=7)
    trainer = at.AdversarialTrainer(model, config)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    # The first step's random start uses the stateless seed (config.seed, step 0).
    x_adv = trainer.craft(tf.constant(X), tf.constant(Y), tf.constant(0.1), tf.constant([7, 0], tf.int64))
    assert np.abs(x_adv.numpy() - X).max() <= 0.1 + 1e-6 and not np.allclose(x_adv.numpy(), X)
    expected = np.mean(at.trades_loss(model(X), model(x_adv), tf.constant(Y), beta=2.0).numpy())
    logs = trainer.train_on_batch(X, Y, return_dict=True)
    assert logs["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert {"loss", "accuracy", "adv_accuracy", "eps"} <= set(logs)


# --- adversarial-training config -----------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "free", "eps": 0.1}, "unknown adversarial-training method 'free'; choose one of: pgd_at, trades, fgsm_rs"),
    ({"method": "fgsm_rs", "eps": 0.1, "steps": 3}, "fgsm_rs takes exactly one step"),
    ({"method": "pgd_at", "eps": 0.0}, r"L-inf eps must be in \(0, 1\]"),
    ({"method": "pgd_at", "eps": 0.1, "steps": 0}, "steps must be an integer >= 1, got 0"),
    ({"method": "trades", "eps": 0.1, "beta": -1.0}, "beta must be a finite number >= 0"),
    ({"method": "pgd_at", "eps": 0.1, "norm": "l1"}, "unknown norm 'l1'"),
])
def test_adversarial_training_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        at.AdversarialTrainingConfig(**kwargs)


# --- robust early stopping --------------------------------------------------------------------

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
    base = _linear(2)
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
    base = _linear(2)

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
    base = _linear(2)
    robust = defense_callbacks.RobustEarlyStopping(POINTS, LABELS, eps=0.15, clip=None,
                                                   restore_best_weights=False)
    _scripted_fit(base, schedule, [robust], epochs=3)
    assert len(robust.history) == 3 and robust.stopped_epoch is None and robust.best_epoch == 0
    np.testing.assert_allclose(base.get_layer("logits").get_weights()[0], schedule[2][0])


# --- weight averaging ------------------------------------------------------------------------

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
    base = _linear(2)
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
    high = defense_callbacks.WeightAveraging(_linear(2), decay=0.999)
    assert high.decay_at(1) == pytest.approx(2 / 11) and high.decay_at(10**6) == 0.999


def test_weight_averaging_resumes_from_its_state_after_a_restart(tmp_path):
    state = tmp_path / "averaging.npz"
    kept = tmp_path / "kept.npz"
    uninterrupted = defense_callbacks.WeightAveraging(_linear(2), decay=0.9)
    _averaging_fit(uninterrupted.source, uninterrupted, epochs=3)

    # The process dies after epoch 2: keep the state file as it was then (training's end removes it).
    first = defense_callbacks.WeightAveraging(_linear(2), decay=0.9, state_path=state)
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
    base = _linear(2)
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
        defense_callbacks.WeightAveraging(_linear(2), decay=decay)


# --- catastrophic overfitting ----------------------------------------------------------------


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


# --- TrainConfig: everything checked before training --------------------------------------------


def test_train_config_rejects_a_dropout_that_is_not_a_bool():
    with pytest.raises(TypeError, match="dropout must be true or false, got 'no'"):
        training.TrainConfig(dropout="no")


@pytest.mark.parametrize("kwargs, match", [
    ({"defense": "adv"}, "unknown defense 'adv'; choose one of: none, nsl, pgd_at, trades, fgsm_rs"),
    ({"defense": "nsl", "preset": "fast"}, "unknown NSL preset 'fast'; choose one of: lecture, mnist, fashion_mnist, quick"),
    ({"defense": "pgd_at", "preset": "lecture"}, "unknown pgd_at preset 'lecture'; choose one of: mnist, fashion_mnist, quick"),
    ({"defense": "nsl", "defense_eps": 0.0}, r"L-inf eps must be in \(0, 1\] for inputs in \[0, 1\], got 0.0"),
    ({"defense": "pgd_at", "defense_eps": 1.5}, r"L-inf eps must be in \(0, 1\].*got 1.5"),
    ({"defense": "trades", "defense_eps": -0.1}, r"L-inf eps must be in \(0, 1\].*got -0.1"),
    ({"defense": "nsl", "defense_params": {"norm": "l2"}, "defense_eps": -1.0}, "eps must be > 0, got -1.0"),
    ({"defense": "nsl", "defense_params": {"multiplier": -0.5}}, "multiplier must be a finite number >= 0, got -0.5"),
    ({"defense": "nsl", "defense_params": {"pgd_iterations": 0}}, "pgd_iterations must be an integer >= 1, got 0"),
    ({"defense": "pgd_at", "defense_params": {"steps": 0}}, "steps must be an integer >= 1, got 0"),
    ({"defense": "nsl", "defense_params": {"beta": 1.0}}, r"unknown NSL parameter\(s\) \['beta'\]"),
    ({"defense": "fgsm_rs", "defense_params": {"steps": 3}}, "fgsm_rs takes exactly one step"),
    ({"defense": "none", "defense_eps": 0.1}, "defense 'none' takes no preset, eps or defense parameters"),
    ({"defense": "none", "preset": "quick"}, "defense 'none' takes no preset"),
    ({"strategy": "tpu"}, "unknown strategy 'tpu'; choose one of: auto, default, mirrored, multi_worker"),
    ({"defense": "pgd_at", "robust_val_size": 0}, "robust_val_size must be >= 1"),
    ({"defense": "pgd_at", "ema_decay": 1.0}, r"ema_decay must be a number in \(0, 1\) or None, got 1.0"),
    ({"defense": "trades", "ema_decay": 0}, r"ema_decay must be a number in \(0, 1\) or None, got 0"),
    ({"defense": "nsl", "ema_decay": True}, r"ema_decay must be a number in \(0, 1\) or None, got True"),
    ({"ema_decay": 0.999}, "ema_decay needs a defense"),
    ({"augment": "flip_shift"}, "mirrors images, which changes digits"),
    ({"augment": "mixup"}, "unknown augmentation 'mixup'; choose one of: none, shift, flip_shift"),
])
def test_train_config_rejects_bad_defense_settings_before_training(kwargs, match, monkeypatch, tmp_path):
    from advrobust import data

    def no_loading(*args, **kw):
        raise AssertionError("training started: data was loaded before the config was checked")

    monkeypatch.setattr(data, "load", no_loading)
    with pytest.raises(ValueError, match=match):
        training.train(training.TrainConfig(dataset="mnist", **kwargs), tmp_path)


@pytest.mark.parametrize("dataset, preset, eps, expected_eps", [
    ("mnist", None, None, 0.3), ("fashion_mnist", None, None, 0.1), ("mnist", "quick", None, 0.1),
    ("fashion_mnist", None, 0.05, 0.05), ("mnist", "lecture", None, None),
])
def test_train_config_resolves_the_defense(dataset, preset, eps, expected_eps):
    config = training.TrainConfig(dataset=dataset, defense="nsl", preset=preset, defense_eps=eps)
    assert config.defense_config().eps == expected_eps
    assert training.TrainConfig(dataset=dataset).defense_config() is None


# --- distribution -------------------------------------------------------------------------------


def test_strategy_names_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="unknown strategy 'tpu'; choose one of: auto, default, mirrored, multi_worker"):
        distribute.get_strategy("tpu")
    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribute.get_strategy("multi_worker")
    assert distribute.is_chief(tf.distribute.get_strategy())
    several_gpus = len(tf.config.list_logical_devices("GPU")) > 1
    assert isinstance(distribute.get_strategy("auto"), tf.distribute.MirroredStrategy) == several_gpus
