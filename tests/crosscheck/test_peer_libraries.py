"""Cross-checks against cleverhans 4 and foolbox 3 on the same trained CNN (run in CI)."""

import numpy as np
import pytest

from attacks import fgsm, pgd
from attacks._tensorflow import tf

pytestmark = [pytest.mark.crosscheck, pytest.mark.slow]


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), axis=1) == y))


@pytest.mark.parametrize("norm", [np.inf, 2])
def test_fgsm_equals_cleverhans_fast_gradient_method(trained_mnist_cnn, norm):
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

    model, x, y = trained_mnist_cnn
    eps = 0.1 if norm == np.inf else 1.5
    theirs = fast_gradient_method(lambda t: model(t, training=False), tf.constant(x), eps, norm,
                                  clip_min=0.0, clip_max=1.0, y=tf.constant(y)).numpy()
    ours = fgsm(model, x, y, eps=eps, norm=norm)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("norm, eps, step", [("inf", 0.1, 0.01), ("l2", 1.5, 0.1)])
def test_pgd_is_at_least_as_strong_as_foolbox(trained_mnist_cnn, norm, eps, step):
    import foolbox as fb

    model, x, y = trained_mnist_cnn
    fmodel = fb.TensorFlowModel(lambda t: model(t, training=False), bounds=(0.0, 1.0))
    attack_class = fb.attacks.LinfPGD if norm == "inf" else fb.attacks.L2PGD
    attack = attack_class(abs_stepsize=step, steps=40, random_start=True)
    _, clipped, _ = attack(fmodel, tf.constant(x), tf.constant(y), epsilons=eps)
    theirs = accuracy(model, clipped.numpy(), y)
    ours = accuracy(model, pgd(model, x, y, eps=eps, norm=norm, steps=40, step_size=step, seed=0), y)
    assert ours <= theirs + 0.01, (ours, theirs)
