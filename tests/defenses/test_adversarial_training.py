"""defenses.adversarial_training: the training-time attack, PGD-AT, AWP and TRADES steps on tiny
hand-checkable models, the config's checks, and PGD-AT on real MNIST (slow)."""

import numpy as np
import pytest

from advrobust import data, models, training
from attacks import fgsm
from attacks.backend import keras, tf
from defenses import adversarial_training as at
from tests.defenses.conftest import pgd_robust_accuracy

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


@pytest.mark.slow
def test_pgd_adversarial_training_raises_robust_accuracy_above_the_baseline(trained_mnist_cnn):
    # The baseline is the session's reference CNN (2 epochs on 6000 MNIST images, no
    # dropout); the defended one the same architecture, 2 epochs of PGD-AT on 3000.
    baseline, x_test, y_test = trained_mnist_cnn
    x, y = data.load("mnist", "train", download=False)
    training.set_seed(0)
    model = models.build("cnn", dropout=False, seed=0)
    config = at.AdversarialTrainingConfig("pgd_at", eps=0.2, steps=3)
    history = at.fit(model, data.make_dataset(x[:3000], y[:3000], batch_size=64, shuffle=True, seed=0),
                     config=config, epochs=2, verbose=0)
    assert history.history["eps"] == pytest.approx([0.2, 0.2])

    baseline_robust, baseline_clean = pgd_robust_accuracy(baseline, x_test, y_test, 0.2)
    robust, clean = pgd_robust_accuracy(model, x_test, y_test, 0.2)
    # Measured: baseline 0.02 robust (0.97 clean), PGD-AT 0.61 robust (0.89 clean).
    assert baseline_robust < 0.15
    assert robust > baseline_robust + 0.3, (robust, baseline_robust)
    assert clean > 0.8
