"""Checks of the defenses' hyperparameters, shared by every defense module.

The attack core's checks (inputs, labels, the radii an attack runs at) are in
``attacks/validation.py``; the harness's in ``advrobust/validation.py``. Each raises
ValueError naming the bad value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attacks.validation import check_clip  # noqa: F401  (the defenses check clip ranges as attacks do)
from attacks.validation import check_positive_int as check_iterations  # noqa: F401


def check_nonnegative(value: Any, name: str, *, strict: bool = False) -> float:
    """Check a real hyperparameter such as ``beta`` or ``multiplier``.

    Args:
        value: The value to check: a Python or NumPy number (bools are refused).
        name: The argument's name, used in the error message.
        strict: Require ``value > 0`` instead of ``>= 0``.

    Returns:
        ``value`` as a Python float, finite and >= 0 (> 0 with ``strict``).

    Raises:
        ValueError: ``value`` is not a number, is not finite, or is out of range.
    """
    bound = "> 0" if strict else ">= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0 or (strict and value == 0):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_radius(eps: Any, norm: str, clip: tuple[float, float] | None, *, allow_none: bool = False) -> float | None:
    """Check the radius a defense trains for.

    Not :func:`attacks.validation.check_eps`, which checks the (list of) radii an attack
    runs at: a training radius is one positive number, and an L-inf one larger than the
    clip range would contain every image.

    Args:
        eps: The radius: a Python or NumPy number, or None when ``allow_none``.
        norm: ``"inf"`` or ``"l2"`` (already canonical).
        clip: The valid input range ``(low, high)``, or None.
        allow_none: Accept None (NSL's "no projection").

    Returns:
        ``eps`` as a Python float: in ``(0, high - low]`` for L-inf with ``clip`` (i.e.
        (0, 1] for [0, 1] images), > 0 otherwise; None if ``eps`` is None and ``allow_none``.

    Raises:
        ValueError: ``eps`` is None (without ``allow_none``), not a finite number, <= 0, or
            an L-inf radius larger than the clip range.
    """
    if eps is None:
        if allow_none:
            return None
        raise ValueError("eps is required")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) or not np.isfinite(eps):
        raise ValueError(f"eps must be a finite number, got {eps!r}")
    if norm == "inf" and clip is not None and not 0 < eps <= clip[1] - clip[0]:
        raise ValueError(f"L-inf eps must be in (0, {clip[1] - clip[0]:g}] for inputs in "
                         f"[{clip[0]:g}, {clip[1]:g}], got {eps!r}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    return float(eps)


def check_decay(decay: Any, name: str = "decay", *, optional: bool = False) -> None:
    """Check the decay of an exponential moving average.

    Args:
        decay: A number in (0, 1) (bools are refused).
        name: The argument's name, used in the error message.
        optional: Accept None as well.

    Raises:
        ValueError: ``decay`` is not a number in (0, 1) (or None, if ``optional``).
    """
    if optional and decay is None:
        return
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1){' or None' if optional else ''}, got {decay!r}")
