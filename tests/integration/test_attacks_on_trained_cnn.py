"""Attack properties that matter, on a small CNN trained on real MNIST (slow)."""

import numpy as np
import pytest

from attacks import bim, fgsm, mim, pgd

pytestmark = pytest.mark.slow


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), axis=1) == y))


def test_model_is_accurate(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    assert accuracy(model, x, y) > 0.93


def test_attacks_reduce_accuracy_and_pgd_is_never_weaker_than_fgsm(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    clean = accuracy(model, x, y)
    for eps in (0.1, 0.2, 0.3):
        under_fgsm = accuracy(model, fgsm(model, x, y, eps=eps), y)
        under_pgd = accuracy(model, pgd(model, x, y, eps=eps, steps=20, seed=0), y)
        assert under_fgsm < clean
        assert under_pgd <= under_fgsm, (eps, under_pgd, under_fgsm)
    assert under_pgd < 0.05  # eps 0.3 breaks an undefended MNIST CNN


def test_curve_is_monotone_in_eps(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    epsilons = [0.0, 0.05, 0.1, 0.15, 0.2]
    adversarial = pgd(model, x, y, eps=epsilons, steps=20, seed=0)
    curve = [accuracy(model, x_adv, y) for x_adv in adversarial]
    assert curve[0] == accuracy(model, x, y)
    assert all(later <= earlier + 0.004 for earlier, later in zip(curve, curve[1:])), curve


def test_more_restarts_are_never_weaker(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    one = accuracy(model, pgd(model, x, y, eps=0.1, steps=10, restarts=1, seed=0), y)
    three = accuracy(model, pgd(model, x, y, eps=0.1, steps=10, restarts=3, seed=0), y)
    assert three <= one


def test_seeded_pgd_reproduces_on_the_cnn(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    np.testing.assert_array_equal(pgd(model, x[:100], y[:100], eps=0.1, steps=5, seed=11),
                                  pgd(model, x[:100], y[:100], eps=0.1, steps=5, seed=11))


def test_l2_attacks_and_mim_work_on_the_cnn(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    clean = accuracy(model, x, y)
    l2 = accuracy(model, pgd(model, x, y, eps=2.0, norm="l2", steps=20, seed=0), y)
    assert l2 < clean - 0.3
    assert accuracy(model, mim(model, x, y, eps=0.2), y) < accuracy(model, fgsm(model, x, y, eps=0.2), y) + 0.02
    assert accuracy(model, bim(model, x, y, eps=0.2), y) < clean - 0.3


def test_targeted_pgd_reaches_targets_on_the_cnn(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    targets = (y[:200] + 1) % 10
    x_adv = pgd(model, x[:200], targets, eps=0.3, steps=40, targeted=True, seed=0)
    hit = np.mean(np.argmax(model.predict(x_adv, verbose=0), axis=1) == targets)
    assert hit > 0.9


def test_early_stop_gives_the_same_robust_accuracy(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    for eps in (0.05, 0.1):
        full = accuracy(model, pgd(model, x, y, eps=eps, steps=20, seed=0), y)
        early = accuracy(model, pgd(model, x, y, eps=eps, steps=20, seed=0, early_stop=True), y)
        # Survivors follow the same trajectory; batch composition may move a float by 1 ulp.
        assert abs(full - early) <= 1 / len(x), (eps, full, early)


def test_bfloat16_gradients_find_about_as_many_adversarial_examples(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    for eps in (0.05, 0.1):
        exact = accuracy(model, pgd(model, x, y, eps=eps, steps=20, seed=0), y)
        fast = accuracy(model, pgd(model, x, y, eps=eps, steps=20, seed=0, compute_dtype="bfloat16"), y)
        # Judged by the float32 model; 16-bit gradients cost at most a couple of points.
        assert abs(fast - exact) <= 0.02, (eps, exact, fast)
