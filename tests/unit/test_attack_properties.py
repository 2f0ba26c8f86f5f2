"""Property-based tests (hypothesis) of the attack invariants on tiny models.

Over random input shapes, epsilons, norms, dtypes and attacks: the adversarial point stays
in the eps-ball and in the clip range, eps 0 returns x itself, the dtype is kept, and one
call with K epsilons equals K calls with one each.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attacks import bim, fgsm, mim, pgd, random_noise
from attacks.backend import keras

ATTACKS = {
    "fgsm": lambda model, x, y, **kw: fgsm(model, x, y, **kw),
    "bim": lambda model, x, y, **kw: bim(model, x, y, steps=3, **kw),
    "pgd": lambda model, x, y, **kw: pgd(model, x, y, steps=3, seed=0, **kw),
    "mim": lambda model, x, y, **kw: mim(model, x, y, steps=3, **kw),
    "noise": lambda model, x, y, **kw: random_noise(model, x, y, seed=0, **kw),
}
DETERMINISTIC = ("fgsm", "bim", "mim")
SHAPES = [(4,), (3, 3, 1), (5, 4, 2), (6, 6, 1)]
PROPERTY_SETTINGS = settings(max_examples=20, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow])

_MODELS: dict[tuple, keras.Model] = {}


def _model(shape: tuple[int, ...], classes: int = 3) -> keras.Model:
    """A tiny ReLU network on inputs of ``shape``, seeded, one per shape (traced once)."""
    if shape not in _MODELS:
        inputs = keras.Input(shape)
        hidden = keras.layers.Dense(8, activation="relu",
                                    kernel_initializer=keras.initializers.GlorotUniform(seed=1))(
            keras.layers.Flatten()(inputs))
        logits = keras.layers.Dense(classes, kernel_initializer=keras.initializers.GlorotUniform(seed=2))(hidden)
        _MODELS[shape] = keras.Model(inputs, logits)
    return _MODELS[shape]


@st.composite
def problems(draw, dtypes=(np.float32, np.float64)):
    """(model, x, y, norm, eps, dtype): a batch of 1-6 points inside [0, 1]."""
    shape = draw(st.sampled_from(SHAPES))
    n = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    dtype = draw(st.sampled_from(dtypes))
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape)).astype(dtype)
    y = rng.integers(0, 3, n)
    norm = draw(st.sampled_from(["inf", "l2"]))
    # Radii beyond the clip box's diameter are refused as a unit mistake (see attacks.validation).
    high = 0.5 if norm == "inf" else min(3.0, float(np.sqrt(np.prod(shape))))
    eps = draw(st.floats(0.0, high, allow_nan=False, width=32))
    return _model(shape), x, y, norm, eps, dtype


def _distance(delta: np.ndarray, norm: str) -> np.ndarray:
    flat = delta.reshape(len(delta), -1).astype(np.float64)
    return np.abs(flat).max(axis=1) if norm == "inf" else np.sqrt((flat ** 2).sum(axis=1))


@pytest.mark.parametrize("name", ATTACKS)
@PROPERTY_SETTINGS
@given(problem=problems())
def test_stays_in_the_ball_and_the_clip_range_and_keeps_the_dtype(name, problem):
    model, x, y, norm, eps, dtype = problem
    x_adv = np.asarray(ATTACKS[name](model, x, y, eps=eps, norm=norm))
    assert x_adv.shape == x.shape and x_adv.dtype == dtype
    assert np.all(x_adv >= 0.0) and np.all(x_adv <= 1.0)
    # float32 rounding of x + delta can exceed the radius by a few ulps of the pixel values.
    tolerance = 4 * np.finfo(dtype).eps * max(1.0, np.sqrt(x[0].size))
    assert np.all(_distance(x_adv - x, norm) <= eps + tolerance)


@pytest.mark.parametrize("name", ATTACKS)
@PROPERTY_SETTINGS
@given(problem=problems())
def test_eps_zero_is_the_identity(name, problem):
    model, x, y, norm, _, _ = problem
    np.testing.assert_array_equal(np.asarray(ATTACKS[name](model, x, y, eps=0.0, norm=norm)), x)


@pytest.mark.parametrize("name", DETERMINISTIC)
@PROPERTY_SETTINGS
@given(problem=problems(dtypes=(np.float32,)), extra=st.lists(st.floats(0.0, 0.25, width=32), min_size=1, max_size=3))
def test_k_epsilons_in_one_call_equal_k_calls(name, problem, extra):
    model, x, y, norm, eps, _ = problem
    epsilons = [eps, *extra]
    together = np.asarray(ATTACKS[name](model, x, y, eps=epsilons, norm=norm))
    assert together.shape == (len(epsilons), *x.shape)
    for k, value in enumerate(epsilons):
        alone = np.asarray(ATTACKS[name](model, x, y, eps=value, norm=norm))
        np.testing.assert_allclose(together[k], alone, rtol=0, atol=1e-6)
