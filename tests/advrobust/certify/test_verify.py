"""advrobust.certify.verify: verified points survive PGD and the standard ensemble,
CROWN-IBP verifies at least what IBP does, eps 0 verifies the correctly classified points,
bad input is refused."""

import numpy as np
import pytest

from advrobust import certify
from attacks import pgd
from attacks.backend import keras
from attacks.ensemble import worst_case


def small_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 2, activation="relu"),
                             keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(3)])


def small_data(model, n=20, seed=0):
    x = np.random.default_rng(seed).random((n, 4, 4, 1), dtype=np.float32)
    return x, np.argmax(model.predict(x, verbose=0), axis=1)


def test_verified_points_are_never_broken_by_pgd(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    x, y = x[:50], y[:50]
    epsilons = [0.005, 0.01]
    ibp = certify.interval(model, x, y, eps=epsilons)
    crown = certify.crown_ibp(model, x, y, eps=epsilons)
    assert ibp.shape == crown.shape == (2, 50)
    assert not np.any(ibp & ~crown)  # CROWN-IBP verifies every point IBP does
    assert crown[0].sum() > ibp[0].sum()  # and more: normally trained nets are far from IBP-tight
    assert crown[1].sum() >= 3
    verified = np.flatnonzero(crown[1])
    x_adv = pgd(model, x[verified], y[verified], eps=0.01, steps=20, restarts=3, seed=0)
    assert np.all(np.argmax(model.predict(x_adv, verbose=0), axis=1) == y[verified])


def test_verified_points_survive_the_standard_ensemble_that_breaks_them_at_a_larger_eps(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    x, y = x[:50], y[:50]
    verified = np.flatnonzero(certify.crown_ibp(model, x, y, eps=0.01))
    assert len(verified) >= 3
    # AutoAttack's four members at full strength (APGD-CE, APGD-T, FAB-T, Square 5000)
    within = worst_case(model, x[verified], y[verified], eps=0.01, preset="standard", seed=0)
    assert np.all(within.robust), within.broken_by
    # the same ensemble is not simply unable to move these points: eps 0.3 breaks them all
    beyond = worst_case(model, x[verified], y[verified], eps=0.3, preset="standard", seed=0)
    assert not np.any(beyond.robust)


@pytest.mark.parametrize("method", ["interval", "crown_ibp"])
def test_at_eps_zero_exactly_the_correct_points_are_verified(method):
    model = small_model()
    x, y = small_data(model)
    wrong = y.copy()
    wrong[:5] = (wrong[:5] + 1) % 3
    verified = getattr(certify, method)(model, x, wrong, eps=0.0)
    assert verified.shape == (20,) and verified.dtype == bool
    np.testing.assert_array_equal(verified, np.arange(20) >= 5)


def test_the_curve_falls_with_eps_and_matches_the_masks():
    model = small_model()
    x, y = small_data(model)
    curve = certify.certified_accuracy_curve(model, x, y, epsilons=[0.0, 0.01, 0.05, 0.5], method="ibp")
    assert curve.certified_accuracy[0] == 1.0 and curve.certified_accuracy[-1] < 1.0
    assert np.all(np.diff(curve.certified_accuracy) <= 0)
    np.testing.assert_array_equal(curve.certified_mask[2], certify.interval(model, x, y, eps=0.05))
    assert np.all(curve.ci95_low <= curve.certified_accuracy) and curve.n_examples == 20
    margins = certify.margin_bounds(model, x, y, eps=0.05, method="crown_ibp", norm="l2", batch_size=7)
    assert margins.shape == (20, 3) and np.all(margins[np.arange(20), y] == 0)
    np.testing.assert_array_equal(np.all(np.where(np.eye(3, dtype=bool)[y], 1, margins) > 0, axis=1),
                                  certify.crown_ibp(model, x, y, eps=0.05, norm="l2"))


BAD = {
    "x above 1": (lambda x, y: (x + 1.0, y, 0.1), ValueError, "outside clip"),
    "NaN in x": (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), y, 0.1),
                 ValueError, "NaN"),
    "integer x": (lambda x, y: ((x * 255).astype(np.uint8), y, 0.1), TypeError, "floating-point"),
    "label out of range": (lambda x, y: (x, np.full_like(y, 7), 0.1), ValueError, "outside the model's 3 classes"),
    "negative eps": (lambda x, y: (x, y, -0.1), ValueError, "eps must be finite and >= 0"),
    "wrong shape": (lambda x, y: (x[:, :3], y, 0.1), ValueError, "the model takes"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_refused_like_an_attack(case):
    model = small_model()
    x, y = small_data(model, n=4)
    make, error, words = BAD[case]
    bad_x, bad_y, eps = make(x, y)
    with pytest.raises(error, match=words):
        certify.crown_ibp(model, bad_x, bad_y, eps=eps)


def test_bad_options_and_models_are_refused():
    model = small_model()
    x, y = small_data(model, n=4)
    with pytest.raises(ValueError, match="norm"):
        certify.interval(model, x, y, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="method 'crown'"):
        certify.certified_accuracy_curve(model, x, y, epsilons=[0.1], method="crown")
    with pytest.raises(ValueError, match="batch_size"):
        certify.interval(model, x, y, eps=0.1, batch_size=0)
    with pytest.raises(TypeError, match="Sequential or functional"):
        certify.interval(lambda t: t, x, y, eps=0.1)
    squashed = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(3, activation="softmax", name="probs")])
    with pytest.raises(ValueError, match="'probs' \\(Dense\\).*softmax"):
        certify.interval(squashed, x, y, eps=0.1)


def test_an_empty_batch_gives_an_empty_mask():
    model = small_model()
    assert certify.interval(model, np.zeros((0, 4, 4, 1), np.float32), np.zeros(0, int), eps=0.1).shape == (0,)
