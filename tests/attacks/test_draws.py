"""attacks.draws: the batch of EOT draws and its fold back to one value per image."""

import numpy as np

from attacks.backend import tf
from attacks.draws import mean_over_draws, tile_draws


def test_draw_d_of_image_b_is_row_d_times_b_and_the_fold_averages_each_images_draws():
    x = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)
    tiled = tile_draws(tf.constant(x), 4).numpy()
    assert tiled.shape == (12, 2, 2)
    for d in range(4):
        np.testing.assert_array_equal(tiled[d * 3:(d + 1) * 3], x)
    np.testing.assert_array_equal(tile_draws(tf.constant([5, 6], tf.int64), 3).numpy(), [5, 6, 5, 6, 5, 6])
    # Values that differ per draw: row d * B + b holds (d + 1) * 10 + b; each image's mean is 25 + b.
    values = np.array([[(d + 1) * 10 + b, -b] for d in range(4) for b in range(3)], np.float32)
    np.testing.assert_allclose(mean_over_draws(tf.constant(values), 4).numpy(), [[25, 0], [26, -1], [27, -2]])
    np.testing.assert_allclose(mean_over_draws(tf.constant(values[:, 0]), 4).numpy(), [25, 26, 27])
    np.testing.assert_array_equal(mean_over_draws(tile_draws(tf.constant(x), 1), 1).numpy(), x)
