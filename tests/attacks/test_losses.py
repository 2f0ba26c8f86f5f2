"""attacks.losses: the margin loss, a callable loss, and the DLR losses (by hand, against NumPy)."""

import numpy as np

from attacks import fgsm, losses
from attacks.backend import tf
from tests.attacks.conftest import B, W, X2, Y2


def test_margin_loss_values_and_callable_loss(model):
    from attacks import margin

    logits = tf.constant([[2.0, 1.0, -1.0], [0.0, 3.0, 0.5]])
    np.testing.assert_allclose(margin(logits, tf.constant([0, 0])).numpy(), [-1.0, 3.0])
    # For this linear model the margin's input gradient is a fixed difference of W columns.
    other = np.argmax(np.where(np.eye(3)[Y2] > 0, -np.inf, X2 @ W + B), axis=1)
    expected = np.clip(X2 + 0.05 * np.sign(W[:, other].T - W[:, Y2].T), 0, 1)
    np.testing.assert_allclose(fgsm(model, X2, Y2, eps=0.05, loss="margin"), expected, atol=1e-6)
    negative_label_logit = lambda z, y: -tf.gather(z, y, batch_dims=1)
    np.testing.assert_allclose(fgsm(model, X2, Y2, eps=0.05, loss=negative_label_logit),
                               np.clip(X2 - 0.05 * np.sign(W[:, Y2].T), 0, 1), atol=1e-6)


def numpy_dlr(z, y):
    ordered = np.sort(z, axis=1)[:, ::-1]
    label = z[np.arange(len(y)), y]
    other = np.where(np.arange(z.shape[1]) == y[:, None], -np.inf, z).max(axis=1)
    return -(label - other) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def numpy_dlr_targeted(z, y, t):
    ordered = np.sort(z, axis=1)[:, ::-1]
    rows = np.arange(len(y))
    return -(z[rows, y] - z[rows, t]) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12)


def test_dlr_matches_hand_computation():
    logits = tf.constant([[3.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0]])
    # sorted 3 > 2 > 1 > 0: denominator z_pi1 - z_pi3 = 3 - 1 = 2
    np.testing.assert_allclose(losses.dlr(logits, tf.constant([0, 2])), [-(3 - 2) / 2, -(2 - 3) / 2], rtol=1e-6)
    # targeted: denominator z_pi1 - (z_pi3 + z_pi4) / 2 = 3 - 0.5 = 2.5
    np.testing.assert_allclose(losses.dlr_targeted(logits, tf.constant([0, 2]), tf.constant([3, 1])),
                               [-(3 - 0) / 2.5, -(2 - 1) / 2.5], rtol=1e-6)


def test_dlr_agrees_with_numpy_and_ignores_shifts_and_scales():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(32, 10)).astype(np.float32)
    y, t = rng.integers(0, 10, 32), rng.integers(0, 10, 32)
    untargeted, targeted = losses.dlr(tf.constant(z), y).numpy(), losses.dlr_targeted(tf.constant(z), y, t).numpy()
    np.testing.assert_allclose(untargeted, numpy_dlr(z.astype(np.float64), y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(targeted, numpy_dlr_targeted(z.astype(np.float64), y, t), rtol=1e-5, atol=1e-6)
    for transformed in (z + 7.0, z * 1e4, 0.01 * z - 3.0):
        logits = tf.constant(transformed)
        np.testing.assert_allclose(losses.dlr(logits, y), untargeted, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(losses.dlr_targeted(logits, y, t), targeted, rtol=1e-4, atol=1e-5)
    assert np.all((untargeted > 0) == (np.argmax(z, axis=1) != y))
    assert losses.get_loss("dlr") is losses.dlr and "dlr" in losses.LOSSES
