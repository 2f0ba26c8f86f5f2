"""attacks.losses: the margin loss and a callable loss."""

import numpy as np

from attacks import fgsm
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
