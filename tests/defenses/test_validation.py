"""defenses.validation: the defenses' hyperparameter checks name the bad value."""

from __future__ import annotations

import numpy as np
import pytest

from defenses.validation import check_decay, check_nonnegative, check_radius


@pytest.mark.parametrize("value, strict, expected", [(0, False, 0.0), (0.5, True, 0.5), (np.float32(2), False, 2.0)])
def test_check_nonnegative_returns_a_float(value, strict, expected):
    assert check_nonnegative(value, "beta", strict=strict) == expected


@pytest.mark.parametrize("value, strict", [(-1.0, False), (0, True), (float("nan"), False), (True, False), ("1", False)])
def test_check_nonnegative_refuses(value, strict):
    with pytest.raises(ValueError, match="beta must be a finite number"):
        check_nonnegative(value, "beta", strict=strict)


def test_check_radius_bounds_l_inf_by_the_clip_range():
    assert check_radius(0.3, "inf", (0.0, 1.0)) == 0.3
    assert check_radius(3.0, "l2", (0.0, 1.0)) == 3.0
    assert check_radius(None, "inf", (0.0, 1.0), allow_none=True) is None
    with pytest.raises(ValueError, match=r"L-inf eps must be in \(0, 1\] for inputs in \[0, 1\], got 1.5"):
        check_radius(1.5, "inf", (0.0, 1.0))
    with pytest.raises(ValueError, match="eps must be > 0, got 0"):
        check_radius(0, "l2", None)
    with pytest.raises(ValueError, match="eps is required"):
        check_radius(None, "inf", (0.0, 1.0))


@pytest.mark.parametrize("decay", [0.0, 1.0, True, "0.9", -0.5])
def test_check_decay_refuses_values_outside_the_open_unit_interval(decay):
    with pytest.raises(ValueError, match=r"ema_decay must be a number in \(0, 1\)"):
        check_decay(decay, "ema_decay")
    check_decay(None, "ema_decay", optional=True)
    check_decay(0.999, "ema_decay")
