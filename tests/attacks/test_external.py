"""ART's APGD (attacks/external.py) behind the project's API: strength on the trained CNN,
ball and range, shapes, seeds and the global RNG, inference mode, input errors, and that
runs cannot name it (it is not in ``attacks.ATTACKS``)."""

import sys

import numpy as np
import pytest

from attacks import ATTACKS, AttackSpec, apgd_art, fgsm, pgd
from attacks.backend import keras, tf
from tests.attacks.conftest import assert_refuses_like_pgd, probabilities

pytestmark = pytest.mark.crosscheck

W = np.array([[1.0, -2.0, 0.5], [-0.5, 1.0, 2.0]], np.float32)  # 2 inputs -> 3 classes
B = np.array([0.1, 0.0, -0.1], np.float32)
X2 = np.array([[0.2, 0.7], [0.5, 0.5], [0.9, 0.1], [0.4, 0.3]], np.float32)
Y2 = np.array([0, 1, 2, 1])
Y_CLEAN = np.array([2, 2, 0, 2])  # the linear model's own predictions: ART attacks only correct ones
N_MNIST = 200  # of the fixture's 500 test images, for speed


def linear_model(weights=W, bias=B):
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(weights.shape[1])
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([weights, bias])
    return model


@pytest.fixture(scope="module")
def model():
    return linear_model()


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), axis=1) == y))


def assert_in_ball_and_range(x_adv, x, eps, norm="inf"):
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.fixture(scope="module")
def mnist_baselines(trained_mnist_cnn):
    """FGSM and PGD-20 robust accuracy at L-inf eps 0.1 on the first 200 test images."""
    model, x, y = trained_mnist_cnn
    x, y = x[:N_MNIST], y[:N_MNIST]
    return {"fgsm": accuracy(model, fgsm(model, x, y, eps=0.1), y),
            "pgd": accuracy(model, pgd(model, x, y, eps=0.1, steps=20, seed=0), y)}


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_beats_fgsm_and_is_close_to_pgd_on_the_trained_cnn(trained_mnist_cnn, mnist_baselines, loss):
    model, x, y = trained_mnist_cnn
    x, y = x[:N_MNIST], y[:N_MNIST]
    x_adv = apgd_art(model, x, y, eps=0.1, loss=loss, steps=20, seed=0)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert_in_ball_and_range(x_adv, x, 0.1)
    robust = accuracy(model, x_adv, y)
    assert robust <= mnist_baselines["fgsm"], (robust, mnist_baselines)
    assert robust <= mnist_baselines["pgd"] + 0.05, (robust, mnist_baselines)


@pytest.mark.parametrize("loss", ["ce", "dlr"])
@pytest.mark.parametrize("norm, eps", [("inf", 0.15), ("l2", 0.3)])
def test_inside_ball_and_range_and_fools_the_linear_model(model, loss, norm, eps):
    assert accuracy(model, X2, Y_CLEAN) == 1.0
    x_adv = apgd_art(model, X2, Y_CLEAN, eps=eps, norm=norm, loss=loss, steps=10, seed=0)
    assert x_adv.shape == X2.shape and x_adv.dtype == np.float32
    assert_in_ball_and_range(x_adv, X2, eps, norm)
    # by hand, examples 2 and 3 can be moved across the boundary; CE's gradient on
    # example 3 points away from it, so only at least one fooled is certain
    assert accuracy(model, x_adv, Y_CLEAN) <= 0.75


def test_eps_list_gives_k_by_n_and_eps_zero_returns_x(model):
    stacked = apgd_art(model, X2, Y_CLEAN, eps=[0.0, 0.05, 0.15], steps=5, seed=0)
    assert stacked.shape == (3, *X2.shape)
    np.testing.assert_array_equal(stacked[0], X2)
    for index, eps in ((1, 0.05), (2, 0.15)):
        assert_in_ball_and_range(stacked[index], X2, eps)
    np.testing.assert_array_equal(apgd_art(model, X2, Y_CLEAN, eps=0.0), X2)


def test_tensor_in_tensor_out_and_float64_kept(model):
    x_adv = apgd_art(model, tf.constant(X2), Y_CLEAN, eps=0.1, steps=3, seed=0)
    assert isinstance(x_adv, tf.Tensor) and x_adv.shape == X2.shape
    x64 = X2.astype(np.float64)
    x_adv64 = apgd_art(model, x64, Y_CLEAN, eps=[0.1], steps=3, seed=0)
    assert x_adv64.dtype == np.float64 and x_adv64.shape == (1, *X2.shape)
    assert_in_ball_and_range(x_adv64[0], x64, 0.1)


def test_same_seed_same_result_and_the_global_rng_is_left_alone(model):
    np.random.seed(123)
    expected_draw = np.random.random()
    np.random.seed(123)
    # eps 0.02 fools nothing, so every example comes back at its random start
    first = apgd_art(model, X2, Y_CLEAN, eps=0.02, steps=3, restarts=2, seed=7)
    assert np.random.random() == expected_draw
    assert not np.array_equal(first, X2)
    np.testing.assert_array_equal(first, apgd_art(model, X2, Y_CLEAN, eps=0.02, steps=3, restarts=2, seed=7))
    assert not np.array_equal(first, apgd_art(model, X2, Y_CLEAN, eps=0.02, steps=3, restarts=2, seed=8))
    np.random.seed(123)
    apgd_art(model, X2, Y_CLEAN, eps=0.02, steps=3)  # seed=None: fresh entropy, the state still restored
    assert np.random.random() == expected_draw


def test_dropout_model_is_attacked_in_inference_mode():
    inputs = keras.Input((2,))
    hidden = keras.layers.Dropout(0.9)(keras.layers.Dense(16, activation="relu")(inputs))
    dropout_model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    # in training mode the outputs are random: the check below would see it
    assert not np.array_equal(dropout_model(X2, training=True), dropout_model(X2, training=True))
    y = np.argmax(dropout_model(X2, training=False), axis=1)  # correct, so ART attacks every example
    for loss in ("ce", "dlr"):
        first = apgd_art(dropout_model, X2, y, eps=0.1, loss=loss, steps=5, seed=0)
        assert not np.array_equal(first, X2)
        np.testing.assert_array_equal(first, apgd_art(dropout_model, X2, y, eps=0.1, loss=loss, steps=5, seed=0))


def test_plain_function_and_tf_module_models(model):
    class Linear(tf.Module):
        def __call__(self, x):
            return tf.matmul(x, W) + B

    expected = apgd_art(model, X2, Y_CLEAN, eps=0.1, steps=5, seed=0)
    for candidate in (Linear(), lambda x: tf.matmul(x, W) + B):
        np.testing.assert_allclose(apgd_art(candidate, X2, Y_CLEAN, eps=0.1, steps=5, seed=0), expected, atol=1e-6)



@pytest.mark.parametrize("kwargs", [
    {"x": np.array([[np.nan, 0.1]], np.float32)},
    {"x": np.array([[200.0, 3.0]], np.float32)},
    {"x": np.array([[1, 0]], np.uint8)},
    {"y": np.array([5])},
    {"y": np.array([-1])},
    {"y": np.array([0, 1])},
    {"eps": -0.1},
    {"eps": [0.1, float("inf")]},
    {"steps": 0},
    {"restarts": 0},
    {"norm": "l1"},
    {"clip": (1.0, 0.0)},
    {"model": probabilities},
    {"model": "not a model"},
    {"seed": 1.5},
])
def test_bad_input_raises_the_same_error_as_pgd(model, kwargs):
    arguments = {"model": model, "x": np.array([[0.1, 0.2]], np.float32), "y": np.array([0]), "eps": 0.1}
    arguments.update(kwargs)
    assert_refuses_like_pgd(apgd_art, arguments)


def test_apgd_specific_errors(model):
    with pytest.raises(ValueError, match="unknown loss 'hinge'; choose one of: ce, dlr"):
        apgd_art(model, X2, Y2, eps=0.1, loss="hinge")
    two_classes = linear_model(W[:, :2], B[:2])
    with pytest.raises(ValueError, match="loss 'dlr' needs at least 3 classes"):
        apgd_art(two_classes, X2, Y2 % 2, eps=0.1, loss="dlr")
    assert apgd_art(two_classes, X2, Y2 % 2, eps=0.1, loss="ce", steps=2).shape == X2.shape


def test_points_outside_the_ball_from_art_raise_instead_of_being_clipped(model, monkeypatch):
    from attacks import external

    class Broken:  # stands in for an ART attack that oversteps the ball
        def set_params(self, **params):
            pass

        def generate(self, x, y):
            return np.clip(x + 0.3, 0.0, 1.0)

    monkeypatch.setattr(external, "_art_attack", lambda *args, **kwargs: Broken())
    with pytest.raises(RuntimeError, match="outside the inf ball of radius 0.1"):
        apgd_art(model, X2, Y_CLEAN, eps=0.1)


def test_missing_art_raises_import_error_with_install_hint(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "art.attacks.evasion.auto_projected_gradient_descent", None)
    with pytest.raises(ImportError, match=r'pip install "adversarial-robustness-toolbox==1\.20\.1"'):
        apgd_art(model, X2, Y2, eps=0.1)


def test_arts_apgd_is_not_an_attack_of_runs():
    # ART stays a cross-check: no run, config or CLI command needs it.
    for name in ("apgd_ce_art", "apgd_dlr_art"):
        assert name not in ATTACKS
        with pytest.raises(ValueError, match=f"unknown attack {name!r}; choose one of: fgsm"):
            AttackSpec(name, {"steps": 10})
