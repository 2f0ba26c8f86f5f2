"""Per-example minimal epsilon (attacks/minimal.py): the curve it implies agrees with fixed-eps
APGD on a trained CNN, every radius is certified by a misclassified point at exactly that
distance, the analytic distance on affine models, 0 for misclassified inputs, inf where
nothing is found, seeds, array types, and every bad input raising pgd's error."""

import numpy as np
import pytest

from attacks import apgd, minimal_epsilon
from attacks.backend import tf
from tests.attacks.conftest import assert_refuses_like_pgd, probabilities
from tests.attacks.test_deep_fool import dense_model, minimal_distance, predictions

DIM, CLASSES = 20, 10


@pytest.fixture(scope="module")
def affine():
    """A 20-D affine model with 10 classes, its weights, and 30 points it classifies as y."""
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(DIM, CLASSES)).astype(np.float32)
    bias = rng.normal(size=CLASSES).astype(np.float32)
    x = rng.uniform(0.3, 0.7, size=(30, DIM)).astype(np.float32)
    return dense_model(weights, bias), weights, bias, x, np.argmax(x @ weights + bias, axis=1)


def distances(points, x, norm):
    delta = (np.asarray(points, np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    return np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta, axis=1)


def assert_certified(model, x, y, min_eps, points, norm):
    """Each finite positive radius is the distance of a point the model misclassifies."""
    found = np.isfinite(min_eps) & (min_eps > 0)
    assert np.all(predictions(model, np.asarray(points)[found]) != y[found])
    np.testing.assert_allclose(distances(points, x, norm)[found], min_eps[found], rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(points)[~found], x[~found])


@pytest.mark.parametrize("norm, dual", [("l2", 2), ("inf", 1)])
def test_finds_the_analytic_distance_on_an_affine_model(affine, norm, dual):
    model, weights, bias, x, y = affine
    expected = minimal_distance(weights, bias, x, y, dual)
    min_eps, points = minimal_epsilon(model, x, y, norm=norm, steps=10, search_steps=6, max_eps=20.0, clip=None,
                                      seed=0, return_points=True)
    assert np.all(min_eps >= expected * (1 - 1e-4)) and np.all(min_eps <= expected * 1.03 + 1e-3)
    assert_certified(model, x, y, min_eps, points, norm)


def test_zero_for_misclassified_inputs_and_inf_beyond_max_eps(affine):
    model, weights, bias, x, y = affine
    wrong = y.copy()
    wrong[:5] = (y[:5] + 1) % CLASSES
    tiny = float(minimal_distance(weights, bias, x, y, 1).min()) / 2
    min_eps = minimal_epsilon(model, x, wrong, steps=5, search_steps=2, max_eps=tiny, clip=None, seed=0)
    assert min_eps.dtype == np.float64 and min_eps.shape == (len(x),)
    np.testing.assert_array_equal(min_eps[:5], 0.0)
    assert np.all(np.isinf(min_eps[5:]))


def test_inf_when_the_model_predicts_one_class_everywhere():
    constant = dense_model(np.zeros((DIM, 3), np.float32), np.array([4.0, 0.0, -1.0], np.float32))
    x = np.random.default_rng(0).uniform(size=(6, DIM)).astype(np.float32)
    min_eps, points = minimal_epsilon(constant, x, np.zeros(6, np.int64), steps=5, search_steps=2, seed=0,
                                      return_points=True)
    assert np.all(np.isinf(min_eps))
    np.testing.assert_array_equal(points, x)


def test_the_same_seed_gives_the_same_radii_and_points(affine):
    model, _, _, x, y = affine
    settings = dict(norm="l2", steps=5, search_steps=3, max_eps=20.0, clip=None, seed=7, return_points=True)
    first = minimal_epsilon(model, x, y, **settings)
    again = minimal_epsilon(model, x, y, **settings, batch_size=7)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_both_losses_stay_certified_inside_clip_and_tensors_come_back_as_tensors(affine):
    model, _, _, x, y = affine
    min_eps, points = minimal_epsilon(model, tf.constant(x), y, steps=5, search_steps=3, loss=("ce", "dlr"),
                                      seed=0, return_points=True)
    assert isinstance(points, tf.Tensor) and points.dtype == tf.float32
    assert float(tf.reduce_min(points)) >= 0.0 and float(tf.reduce_max(points)) <= 1.0
    assert np.all(np.isfinite(min_eps)) and np.all(min_eps <= 1.0)
    assert_certified(model, x, y, min_eps, points.numpy(), "inf")


def test_empty_batch_returns_at_once(affine):
    model = affine[0]
    min_eps, points = minimal_epsilon(model, np.zeros((0, DIM), np.float32), np.zeros(0, np.int64),
                                      return_points=True)
    assert min_eps.shape == (0,) and points.shape == (0, DIM)


@pytest.mark.parametrize("kwargs", [
    {"x": np.array([[np.nan, 0.2]], np.float32)},
    {"x": np.array([[0.1, 2.0]], np.float32)},
    {"x": np.array([[1, 2]], np.int64)},
    {"x": np.array([0.1, 0.2], np.float32)},
    {"y": np.array([7])},
    {"y": np.array([-1])},
    {"y": np.array([0, 1])},
    {"y": np.array([0.5])},
    {"steps": 0},
    {"norm": "l1"},
    {"clip": (1.0, 0.0)},
    {"batch_size": -1},
    {"seed": "a"},
    {"model": probabilities},
    {"model": "not a model"},
])
def test_bad_input_raises_the_same_error_as_pgd(kwargs):
    model = dense_model(np.array([[1.0, -2.0, 0.5], [-0.5, 1.0, 2.0]], np.float32), np.zeros(3, np.float32))
    arguments = {"model": model, "x": np.array([[0.1, 0.2]], np.float32), "y": np.array([0])}
    arguments.update(kwargs)
    assert_refuses_like_pgd(minimal_epsilon, arguments, takes_eps=False)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"search_steps": 0}, ValueError, "search_steps must be an integer >= 1, got 0"),
    ({"loss": "margin"}, ValueError, "unknown loss 'margin'; choose one of: ce, dlr"),
    ({"loss": ()}, ValueError, r"unknown loss \(\)"),
    ({"max_eps": 0.0}, ValueError, "max_eps must be finite and > 0, got 0.0"),
    ({"max_eps": "far"}, TypeError, "max_eps must be a number, got 'far'"),
    ({"max_eps": 8.0}, ValueError, r"eps 8.0 is larger than any distance within clip=\(0.0, 1.0\)"),
    ({"clip": None}, ValueError, "max_eps is needed with clip=None"),
    ({"loss": "dlr", "model": "two classes"}, ValueError, "loss 'dlr' needs at least 3 classes, the model has 2"),
])
def test_minimal_epsilon_specific_errors(kwargs, error, message):
    two = dense_model(np.array([[1.0, -2.0], [-0.5, 1.0]], np.float32), np.zeros(2, np.float32))
    three = dense_model(np.array([[1.0, -2.0, 0.5], [-0.5, 1.0, 2.0]], np.float32), np.zeros(3, np.float32))
    arguments = {"model": three, "x": np.array([[0.1, 0.2]], np.float32), "y": np.array([0]), **kwargs}
    if arguments["model"] == "two classes":
        arguments["model"] = two
    with pytest.raises(error, match=message):
        minimal_epsilon(arguments.pop("model"), arguments.pop("x"), arguments.pop("y"), **arguments)


@pytest.mark.slow
def test_the_implied_curve_agrees_with_fixed_eps_apgd_on_a_trained_cnn(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    x, y, epsilons = x[:100], y[:100], [0.05, 0.1, 0.15, 0.2]
    min_eps, points = minimal_epsilon(model, x, y, steps=10, search_steps=8, seed=0, return_points=True)
    assert_certified(model, x, y, min_eps, points, "inf")
    implied = np.array([np.mean(min_eps > eps) for eps in epsilons])
    fixed = np.array([np.mean(predictions(model, x_adv) == y)
                      for x_adv in apgd(model, x, y, eps=epsilons, steps=10, seed=0)])
    assert np.all(np.abs(implied - fixed) <= 0.02 + 1e-9), (implied, fixed)
    assert 0.2 < fixed[1] < 0.9  # the grid spans the interesting range
