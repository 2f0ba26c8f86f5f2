"""The project's APGD (attacks/apgd.py) against ART's AutoProjectedGradientDescent (run
through attacks.apgd_art) on the trained MNIST CNN: at the same number of steps, APGD-CE
and APGD-DLR leave a robust accuracy within one point of ART's, or lower."""

import numpy as np
import pytest

from attacks import apgd, apgd_art

pytestmark = [pytest.mark.crosscheck, pytest.mark.slow]

N_MNIST = 200  # of the fixture's 500 test images, for speed
STEPS = 20
SLACK = 0.01  # one point of robust accuracy: 2 of 200 images


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), axis=1) == y))


def assert_in_ball_and_range(x_adv, x, eps, norm):
    delta = (x_adv.astype(np.float64) - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-6)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("loss", ["ce", "dlr"])
@pytest.mark.parametrize("norm, eps", [("inf", 0.1), ("l2", 1.5)])
def test_robust_accuracy_within_a_point_of_art_or_lower(trained_mnist_cnn, norm, eps, loss):
    model, x, y = trained_mnist_cnn
    x, y = x[:N_MNIST], y[:N_MNIST]
    ours = apgd(model, x, y, eps=eps, norm=norm, loss=loss, steps=STEPS, seed=0)
    assert ours.shape == x.shape and ours.dtype == x.dtype
    assert_in_ball_and_range(ours, x, eps, norm)
    clean, robust = accuracy(model, x, y), accuracy(model, ours, y)
    art = accuracy(model, apgd_art(model, x, y, eps=eps, norm=norm, loss=loss, steps=STEPS, seed=0), y)
    numbers = {"clean": clean, "apgd": robust, "art": art}
    assert robust < clean - 0.2, numbers
    assert robust <= art + SLACK, numbers
