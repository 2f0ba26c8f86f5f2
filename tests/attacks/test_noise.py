"""attacks.noise: uniform noise in the eps-ball."""

import numpy as np
import pytest

from attacks import random_noise


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_random_noise_stays_in_ball_reproduces_and_keeps_the_first_fooling_draw(model, norm):
    rng = np.random.default_rng(0)
    x = rng.random((200, 2), dtype=np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    x_adv = random_noise(model, x, y, eps=[0.0, 0.05, 0.5], norm=norm, draws=5, seed=3)
    assert x_adv.shape == (3, 200, 2) and x_adv.dtype == x.dtype
    np.testing.assert_array_equal(x_adv[0], x)
    delta = x_adv - x
    size = np.abs(delta).max(axis=2) if norm == "inf" else np.linalg.norm(delta, axis=2)
    assert size.max() <= 0.5 + 1e-6 and size[1].max() <= 0.05 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    np.testing.assert_array_equal(random_noise(model, x, y, eps=[0.0, 0.05, 0.5], norm=norm, draws=5, seed=3), x_adv)
    fooled = np.argmax(model.predict(x_adv[2], verbose=0), axis=1) != y
    one_draw = random_noise(model, x, y, eps=[0.0, 0.05, 0.5], norm=norm, draws=1, seed=3)
    single = np.argmax(model.predict(one_draw[2], verbose=0), axis=1) != y
    assert single.sum() > 0 and np.all(fooled[single])  # draw 1 is the first of 5: more draws only add
    with pytest.raises(ValueError, match="draws must be an integer >= 1"):
        random_noise(model, x, y, eps=0.1, draws=0)
    with pytest.raises(ValueError, match="label 7 is outside"):
        random_noise(model, x[:1], np.array([7]), eps=0.1)
