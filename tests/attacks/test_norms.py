"""attacks.norms: projection, steepest step and random start per norm."""

import numpy as np

from attacks import norms
from attacks.backend import tf


def test_norms_project_and_step():
    delta = tf.constant([[3.0, 4.0], [0.3, -0.1]])
    eps = tf.constant([1.0, 1.0])
    np.testing.assert_allclose(norms.project(delta, eps, "l2").numpy(), [[0.6, 0.8], [0.3, -0.1]], atol=1e-6)
    np.testing.assert_allclose(norms.project(delta, eps, "inf").numpy(), [[1.0, 1.0], [0.3, -0.1]])
    np.testing.assert_allclose(norms.steepest_step(tf.constant([[3.0, -4.0]]), "l2").numpy(), [[0.6, -0.8]])
    np.testing.assert_array_equal(norms.steepest_step(tf.zeros((1, 2)), "l2").numpy(), [[0.0, 0.0]])
    start = norms.random_start(tf.constant([1000, 8]), tf.fill([1000], 0.5), "l2", tf.constant([1, 2], tf.int64), tf.float32)
    lengths = np.linalg.norm(start.numpy(), axis=1)
    assert lengths.max() <= 0.5 + 1e-6 and lengths.mean() > 0.4  # uniform in the 8-D ball
    cube = norms.random_start(tf.constant([1000, 8]), tf.fill([1000], 0.5), "inf", tf.constant([1, 2], tf.int64), tf.float32)
    assert np.abs(cube.numpy()).max() <= 0.5 and np.abs(cube.numpy()).max() > 0.49
