"""Carlini & Wagner L2: range, dtype, success with margin, minimality on linear models,
errors, compilation, and a cross-check against cleverhans on a trained MNIST CNN."""

import numpy as np
import pytest

from attacks import pgd
from attacks.backend import keras, tf
from attacks.carlini_wagner import carlini_wagner_l2, trace_count
from tests.attacks.conftest import X2, Y2, assert_refuses_like_pgd, linear_model, probabilities

FAST = {"steps": 100, "binary_search_steps": 6, "initial_const": 0.1, "learning_rate": 0.05}
WEIGHTS2 = np.array([[1.0, -1.0], [0.5, -0.5]], np.float32)  # 2 inputs -> 2 classes
BIAS2 = np.array([0.0, 0.75], np.float32)  # boundary 2 x0 + x1 = 0.75 crosses the unit square


def two_class_model():
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([WEIGHTS2, BIAS2])
    return model


@pytest.fixture(scope="module")
def model():
    return linear_model()


@pytest.fixture(scope="module")
def model2():
    return two_class_model()


@pytest.fixture(scope="module")
def points2():
    """Points of the unit square whose nearest boundary point is inside it, their labels
    and their analytic L2 distance to the boundary."""
    x = np.random.default_rng(0).uniform(0.2, 0.8, (24, 2)).astype(np.float32)
    logits = x @ WEIGHTS2 + BIAS2
    normal = WEIGHTS2[:, 0] - WEIGHTS2[:, 1]
    distance = np.abs(logits[:, 0] - logits[:, 1]) / np.linalg.norm(normal)
    foot = x - np.outer((logits[:, 0] - logits[:, 1]) / normal.dot(normal), normal)
    inside = np.all((foot > 0.01) & (foot < 0.99), axis=1)
    return x[inside], logits[inside].argmax(axis=1), distance[inside]


def margins(model, x, y):
    logits = np.asarray(model(x)).astype(np.float64)
    label = logits[np.arange(len(y)), y]
    logits[np.arange(len(y)), y] = -np.inf
    return logits.max(axis=1) - label


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_in_clip_range_and_dtype_kept(model, dtype):
    x_adv = carlini_wagner_l2(model, X2.astype(dtype), Y2, **FAST)
    assert x_adv.dtype == dtype and x_adv.shape == X2.shape
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_tensor_in_tensor_out(model2, points2):
    x, y, _ = points2
    x_adv = carlini_wagner_l2(model2, tf.constant(x), tf.constant(y), **FAST)
    assert isinstance(x_adv, tf.Tensor) and x_adv.dtype == tf.float32


def test_finds_the_analytic_boundary_distance(model2, points2):
    x, y, distance = points2
    x_adv = carlini_wagner_l2(model2, x, y, **FAST)
    found = np.linalg.norm(x_adv - x, axis=1)
    assert np.all(margins(model2, x_adv, y) > 0)
    np.testing.assert_allclose(found, distance, rtol=0.03)


@pytest.mark.parametrize("confidence", [0.0, 0.5])
def test_fooled_points_reach_the_margin(model2, points2, confidence):
    x, y, distance = points2
    x_adv = carlini_wagner_l2(model2, x, y, confidence=confidence, **FAST)
    assert np.all(margins(model2, x_adv, y) >= confidence - 1e-5)
    if confidence:  # a margin of 0.5 lies 0.5 / ||w0 - w1|| beyond the boundary
        extra = confidence / np.linalg.norm(WEIGHTS2[:, 0] - WEIGHTS2[:, 1])
        assert np.all(np.linalg.norm(x_adv - x, axis=1) >= distance + extra * 0.95)


def test_targeted_reaches_the_target(model):
    x = np.array([[0.5, 0.5], [0.3, 0.6]], np.float32)
    target = np.array([0, 0])
    x_adv = carlini_wagner_l2(model, x, target, targeted=True, **FAST)
    assert np.all(np.argmax(model(x_adv), axis=1) == target)


def test_never_fooled_points_come_back_as_x(model2):
    x = np.array([[1.0, 1.0], [0.9, 1.0]], np.float32)  # the whole box is class 0 around these
    y = np.array([0, 0])
    unreachable = carlini_wagner_l2(model2, x, y, confidence=100.0, steps=20, binary_search_steps=2)
    np.testing.assert_array_equal(unreachable, x)


def test_already_misclassified_points_come_back_as_x(model):
    wrong = np.argmax(model(X2), axis=1) != Y2
    assert wrong.any()
    x_adv = carlini_wagner_l2(model, X2, Y2, **FAST)
    np.testing.assert_array_equal(x_adv[wrong], X2[wrong])


def test_unbounded_inputs(model2, points2):
    x, y, distance = points2
    x_adv = carlini_wagner_l2(model2, x, y, clip=None, **FAST)
    np.testing.assert_allclose(np.linalg.norm(x_adv - x, axis=1), distance, rtol=0.03)


def test_no_larger_than_l2_pgd(model2, points2):
    x, y, distance = points2
    found = np.linalg.norm(carlini_wagner_l2(model2, x, y, **FAST) - x, axis=1)
    eps = float(distance.max()) * 1.2
    pgd_adv = pgd(model2, x, y, eps=eps, norm="l2", steps=50)
    pgd_fooled = margins(model2, pgd_adv, y) > 0
    assert np.all(found[pgd_fooled] <= np.linalg.norm(pgd_adv - x, axis=1)[pgd_fooled] * 1.01)


def test_batches_agree_and_do_not_retrace(model2, points2):
    x, y, _ = points2
    whole = carlini_wagner_l2(model2, x, y, **FAST)
    traces = trace_count(model2)
    batched = carlini_wagner_l2(model2, x, y, batch_size=5, **FAST)
    np.testing.assert_allclose(batched, whole, atol=1e-6)
    assert trace_count(model2) == traces


def test_empty_batch(model):
    empty = np.zeros((0, 2), np.float32)
    assert carlini_wagner_l2(model, empty, np.zeros(0, np.int64)).shape == (0, 2)
    with pytest.raises(ValueError, match="steps"):
        carlini_wagner_l2(model, empty, np.zeros(0, np.int64), steps=0)



@pytest.mark.parametrize("kwargs", [
    {"x": np.array([[np.nan, 0.1]], np.float32)},
    {"x": np.array([[200.0, 3.0]], np.float32)},
    {"x": np.array([[1, 0]], np.uint8)},
    {"y": np.array([5])},
    {"y": np.array([-1])},
    {"y": np.array([0, 1])},
    {"steps": 0},
    {"clip": (1.0, 0.0)},
    {"model": probabilities},
    {"model": "not a model"},
])
def test_bad_input_raises_the_same_error_as_pgd(model, kwargs):
    arguments = {"model": model, "x": np.array([[0.1, 0.2]], np.float32), "y": np.array([0])}
    arguments.update(kwargs)
    assert_refuses_like_pgd(carlini_wagner_l2, arguments, takes_eps=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"confidence": -1.0}, "confidence"),
    ({"confidence": float("nan")}, "confidence"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": -0.1}, "learning_rate"),
    ({"initial_const": 0.0}, "initial_const"),
    ({"binary_search_steps": 0}, "binary_search_steps"),
    ({"batch_size": 0}, "batch_size"),
])
def test_cw_specific_errors(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        carlini_wagner_l2(model, np.array([[0.1, 0.2]], np.float32), np.array([0]), **kwargs)


CROSSCHECK = {"steps": 100, "binary_search_steps": 5, "learning_rate": 0.05, "initial_const": 0.1}


@pytest.mark.slow
@pytest.mark.crosscheck
def test_matches_cleverhans_on_mnist(trained_mnist_cnn):
    from cleverhans.tf2.attacks.carlini_wagner_l2 import carlini_wagner_l2 as cleverhans_cw

    model, x, y = trained_mnist_cnn
    correct = np.argmax(model.predict(x, verbose=0), axis=1) == y
    x, y = x[correct][:100], y[correct][:100]  # cleverhans, without y, attacks the predicted label

    def summary(x_adv):
        fooled = np.argmax(model.predict(x_adv, verbose=0), axis=1) != y
        distance = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)
        return fooled.mean(), float(np.median(distance[fooled]))

    ours = summary(carlini_wagner_l2(model, x, y, **CROSSCHECK))
    theirs = summary(cleverhans_cw(model, x, batch_size=128, max_iterations=CROSSCHECK["steps"],
                                   binary_search_steps=CROSSCHECK["binary_search_steps"],
                                   learning_rate=CROSSCHECK["learning_rate"],
                                   initial_const=CROSSCHECK["initial_const"]))
    print(f"success rate, median L2: ours {ours}, cleverhans {theirs}")
    assert ours[0] >= theirs[0] - 0.02
    assert ours[1] <= theirs[1] * 1.05
