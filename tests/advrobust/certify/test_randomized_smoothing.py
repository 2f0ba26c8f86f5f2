"""advrobust.certify.randomized_smoothing: Cohen et al.'s CERTIFY on hand-checkable models."""

import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy.stats import binom

from advrobust import certify
from attacks.backend import keras


def constant_model(winner=1, classes=3):
    """Logits (0, ..., 5, ..., 0) whatever the input: always class ``winner``."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(classes)])
    bias = np.zeros(classes, np.float32)
    bias[winner] = 5.0
    model.set_weights([np.zeros((2, classes), np.float32), bias])
    return model


def threshold_model():
    """Class 0 when x[0] > 0.5, else class 1: logits (t, -t) with t = x[0] - 0.5."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.set_weights([np.array([[1, -1], [0, 0]], np.float32), np.array([-0.5, 0.5], np.float32)])
    return model


def test_the_clopper_pearson_bound_matches_the_binomial_tail():
    assert certify.clopper_pearson_lower(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100))
    assert certify.clopper_pearson_lower(0, 100, 0.001) == 0.0
    k, n, alpha = np.array([60, 90, 999]), 1000, 0.01
    p = certify.clopper_pearson_lower(k, n, alpha)
    # The lower bound is the p at which seeing k or more successes has probability alpha.
    np.testing.assert_allclose(binom.sf(k - 1, n, p), alpha, rtol=1e-6)


def test_the_radius_is_sigma_times_the_normal_quantile():
    assert certify.certified_radius(0.8413447460685429, 0.5) == pytest.approx(0.5, rel=1e-9)  # Phi(1)
    np.testing.assert_array_equal(certify.certified_radius([0.5, 0.3, 0.0], 0.25), [0.0, 0.0, 0.0])


def test_a_constant_model_certifies_with_the_expected_radius():
    x = np.full((3, 2), 0.5, np.float32)
    result = certify.smoothing(constant_model(), x, np.ones(3, int), sigma=0.5, n0=10, n=100, seed=0)
    # All 100 samples vote for class 1: pA = alpha^(1/n), radius = sigma * Phi^-1(pA).
    p_lower = 0.001 ** (1 / 100)
    np.testing.assert_array_equal(result.prediction, [1, 1, 1])
    np.testing.assert_allclose(result.p_lower, p_lower, rtol=1e-9)
    np.testing.assert_allclose(result.radius, 0.5 * NormalDist().inv_cdf(p_lower), rtol=1e-9)
    assert math.isclose(result.radius[0], 0.7503, abs_tol=1e-4)
    assert result.certified(np.ones(3, int), 0.75).all() and not result.certified(np.ones(3, int), 0.8).any()


def test_an_uncertain_top_class_abstains():
    x = np.array([[0.5, 0.5]], np.float32)  # on the boundary: each class wins about half the time
    result = certify.smoothing(threshold_model(), x, np.array([0]), sigma=0.25, n0=20, n=500, seed=0)
    assert result.prediction[0] == certify.ABSTAIN and result.radius[0] == 0.0 and result.p_lower[0] < 0.5


def test_a_seed_gives_the_same_result_and_another_seed_another():
    x = np.array([[0.6, 0.5], [0.2, 0.5]], np.float32)
    model = threshold_model()
    first, again, other = (certify.smoothing(model, x, np.array([0, 1]), sigma=0.25, n0=20, n=500, seed=seed,
                                             batch_size=128) for seed in (1, 1, 2))
    np.testing.assert_array_equal(first.radius, again.radius)
    np.testing.assert_array_equal(first.prediction, [0, 1])
    assert np.any(first.radius != other.radius)
    # x[0] = 0.6 is 0.1 from the boundary, where the smoothed classifier switches: Phi(0.4) = 0.66.
    assert 0.0 < first.radius[0] < 0.1


@pytest.mark.parametrize("kwargs, error, words", [
    ({"sigma": 0.0}, ValueError, "sigma"),
    ({"sigma": 0.25, "alpha": 1.0}, ValueError, "alpha"),
    ({"sigma": 0.25, "n": 0}, ValueError, "n must be"),
    ({"sigma": 0.25, "seed": -1}, ValueError, "seed"),
])
def test_bad_options_are_refused(kwargs, error, words):
    with pytest.raises(error, match=words):
        certify.smoothing(constant_model(), np.zeros((1, 2), np.float32), np.array([1]), **kwargs)


def test_bad_data_is_refused():
    model = constant_model()
    with pytest.raises(ValueError, match="outside"):
        certify.smoothing(model, np.full((1, 2), 2.0, np.float32), np.array([1]), sigma=0.25)
    with pytest.raises(ValueError, match="outside the model's 3 classes"):
        certify.smoothing(model, np.zeros((1, 2), np.float32), np.array([5]), sigma=0.25)
