"""DeepFool (attacks/deep_fool.py): the exact minimal distance on affine models (L2 and
L-inf), a trained CNN fooled with small perturbations, clip range, dtypes and array types,
already misclassified inputs, no retracing, candidate classes, and every documented bad
input raising pgd's error."""

import numpy as np
import pytest

from attacks.backend import keras, tf
from attacks.deep_fool import candidate_classes, deepfool, trace_count
from tests.attacks.conftest import assert_refuses_like_pgd, probabilities

DIM, CLASSES = 20, 10


def dense_model(weights, bias):
    """logits = x @ weights + bias, as a Keras 2 model."""
    inputs = keras.Input((weights.shape[0],))
    dense = keras.layers.Dense(weights.shape[1])
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([weights, bias])
    return model


@pytest.fixture(scope="module")
def affine():
    """A 20-D affine model with 10 classes, its weights, and 40 points it classifies as y."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(DIM, CLASSES)).astype(np.float32)
    bias = rng.normal(size=CLASSES).astype(np.float32)
    x = rng.uniform(0.2, 0.8, size=(40, DIM)).astype(np.float32)
    return dense_model(weights, bias), weights, bias, x, np.argmax(x @ weights + bias, axis=1)


def minimal_distance(weights, bias, x, y, dual_order):
    """min_k |(w_k - w_y).x + b_k - b_y| / ||w_k - w_y||_q over k != y, by hand, per point."""
    x, weights, bias = x.astype(np.float64), weights.astype(np.float64), bias.astype(np.float64)
    logits = x @ weights + bias
    rows = np.arange(len(x))
    differences = weights.T[None, :, :] - weights.T[y][:, None, :]  # (N, C, D)
    gaps = np.abs(logits - logits[rows, y][:, None])
    sizes = np.linalg.norm(differences, ord=dual_order, axis=2)
    sizes[rows, y] = 1.0
    distances = gaps / sizes
    distances[rows, y] = np.inf
    return distances.min(axis=1)


def predictions(model, x):
    return np.argmax(model(x, training=False).numpy(), axis=-1)


@pytest.mark.parametrize("norm, order, dual", [("l2", 2, 2), ("inf", np.inf, 1)])
def test_finds_the_exact_minimal_distance_on_an_affine_model(affine, norm, order, dual):
    model, weights, bias, x, y = affine
    expected = minimal_distance(weights, bias, x, y, dual)
    far = expected > 0.02  # DeepFool's fixed 1e-4 step margin is < 0.5% of these distances
    assert far.sum() >= 15
    x_adv = deepfool(model, x[far], y[far], norm=norm, overshoot=0.0, clip=None)
    found = np.linalg.norm((x_adv.astype(np.float64) - x[far]), ord=order, axis=1)
    assert np.all(predictions(model, x_adv) != y[far])
    # Never below the minimum (it is the minimum), and at most 1% above: just across the boundary.
    assert np.all(found >= expected[far] * (1 - 1e-4))
    np.testing.assert_allclose(found, expected[far], rtol=0.01)


def test_overshoot_scales_the_perturbation(affine):
    model, weights, bias, x, y = affine
    plain = deepfool(model, x, y, overshoot=0.0, clip=None)
    overshot = deepfool(model, x, y, overshoot=0.5, clip=None)
    np.testing.assert_allclose(overshot - x, 1.5 * (plain - x), rtol=1e-3, atol=1e-5)


def test_stays_in_the_clip_range_and_keeps_dtype_and_array_type(affine):
    model, _, _, x, y = affine
    for dtype in (np.float32, np.float64):
        x_adv = deepfool(model, x.astype(dtype), y, clip=(0.0, 1.0))
        assert x_adv.dtype == dtype and x_adv.shape == x.shape and isinstance(x_adv, np.ndarray)
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    as_tensor = deepfool(model, tf.constant(x), tf.constant(y), norm="inf")
    assert isinstance(as_tensor, tf.Tensor) and as_tensor.dtype == tf.float32


def test_already_misclassified_points_come_back_unchanged(affine):
    model, _, _, x, y = affine
    wrong = (y + 1) % CLASSES
    np.testing.assert_array_equal(deepfool(model, x, wrong), x)


def test_unfooled_points_return_the_last_iterate_inside_clip(affine):
    model, _, _, _, _ = affine
    x = np.full((3, DIM), 0.5, np.float32)
    y = predictions(model, x)
    x_adv = deepfool(model, x, y, steps=3, clip=(0.499, 0.501))  # too narrow a box to cross a boundary
    assert np.all(predictions(model, x_adv) == y)
    assert x_adv.min() >= 0.499 and x_adv.max() <= 0.501 and np.all(x_adv != x)


def test_empty_batch_returns_at_once_after_checking_parameters(affine):
    model = affine[0]
    empty = np.zeros((0, DIM), np.float32)
    assert deepfool(model, empty, np.zeros(0, int)).shape == (0, DIM)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        deepfool(model, empty, np.zeros(0, int), steps=0)


def test_a_new_batch_size_does_not_retrace():
    rng = np.random.default_rng(1)
    model = dense_model(rng.normal(size=(DIM, CLASSES)).astype(np.float32), np.zeros(CLASSES, np.float32))
    x = rng.uniform(0.3, 0.7, size=(9, DIM)).astype(np.float32)
    y = predictions(model, x)
    deepfool(model, x[:5], y[:5])
    traces = trace_count(model)
    deepfool(model, x, y)
    deepfool(model, x, y, batch_size=4)
    assert traces > 0 and trace_count(model) == traces


def test_candidates_are_the_top_other_classes():
    logits = np.array([[0.0, 3.0, 1.0, 2.0], [5.0, 4.0, 6.0, -1.0]])
    np.testing.assert_array_equal(candidate_classes(logits, np.array([1, 2]), 2), [[3, 2], [0, 1]])


def test_more_candidates_than_classes_means_all_other_classes(affine):
    model, _, _, x, y = affine
    np.testing.assert_array_equal(deepfool(model, x, y, candidates=100), deepfool(model, x, y, candidates=9))


def test_one_candidate_crosses_into_that_class(affine):
    model, weights, bias, x, y = affine
    x_adv = deepfool(model, x, y, candidates=1, clip=None, overshoot=0.0)
    logits = x @ weights + bias
    logits[np.arange(len(x)), y] = -np.inf
    np.testing.assert_array_equal(predictions(model, x_adv), np.argmax(logits, axis=1))



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
    {"model": probabilities},
    {"model": "not a model"},
])
def test_bad_input_raises_the_same_error_as_pgd(affine, kwargs):
    model = dense_model(np.array([[1.0, -2.0, 0.5], [-0.5, 1.0, 2.0]], np.float32), np.zeros(3, np.float32))
    arguments = {"model": model, "x": np.array([[0.1, 0.2]], np.float32), "y": np.array([0])}
    arguments.update(kwargs)
    assert_refuses_like_pgd(deepfool, arguments, takes_eps=False)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"candidates": 0}, ValueError, "candidates must be an integer >= 1, got 0"),
    ({"candidates": 2.5}, ValueError, "candidates must be an integer >= 1, got 2.5"),
    ({"overshoot": -0.1}, ValueError, "overshoot must be finite and >= 0, got -0.1"),
    ({"overshoot": float("inf")}, ValueError, "overshoot must be finite and >= 0"),
    ({"overshoot": "a lot"}, TypeError, "overshoot must be a number, got 'a lot'"),
])
def test_deepfool_specific_errors(affine, kwargs, error, message):
    model, _, _, x, y = affine
    with pytest.raises(error, match=message):
        deepfool(model, x, y, **kwargs)


@pytest.mark.slow
def test_fools_every_point_of_a_trained_cnn_with_small_perturbations(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    x, y = x[:100], y[:100]
    correct = predictions(model, x) == y
    x_adv = deepfool(model, x, y)
    assert np.all(predictions(model, x_adv) != y)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    distances = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)[correct]
    # A standard MNIST CNN: DeepFool's median L2 is about 1-2 (Moosavi-Dezfooli et al.: 2.0).
    assert 0.3 < np.median(distances) < 3.0
    x_inf = deepfool(model, x, y, norm="inf")
    assert np.all(predictions(model, x_inf) != y)
    assert 0.01 < np.median(np.abs(x_inf - x).reshape(len(x), -1).max(axis=1)[correct]) < 0.3


@pytest.mark.slow
@pytest.mark.crosscheck
def test_median_l2_matches_foolbox(trained_mnist_cnn):
    foolbox = pytest.importorskip("foolbox")
    model, x, y = trained_mnist_cnn
    x, y = x[:100], y[:100]
    correct = predictions(model, x) == y
    ours = np.linalg.norm((deepfool(model, x, y) - x).reshape(len(x), -1), axis=1)[correct]
    fmodel = foolbox.TensorFlowModel(model, bounds=(0.0, 1.0))
    attack = foolbox.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02)
    x_fb, _, _ = attack(fmodel, tf.constant(x), tf.constant(y), epsilons=None)
    theirs = np.linalg.norm((x_fb.numpy() - x).reshape(len(x), -1), axis=1)[correct]
    assert np.all(predictions(model, x_fb.numpy()) != y)
    np.testing.assert_allclose(np.median(ours), np.median(theirs), rtol=0.01)
