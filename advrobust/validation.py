"""Checks at the harness's public boundary that several modules share. No TensorFlow.

Each raises ValueError naming the bad value and what is allowed. The attack core's own
checks (inputs, labels, eps, clip range, model outputs) are in ``attacks/validation.py``.
"""

from __future__ import annotations

from typing import Any


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    """Check that a value is one of the allowed choices.

    Args:
        value: The value given, e.g. a dataset name.
        choices: The allowed values.
        what: What the value names, used in the error message (e.g. ``"dataset"``).

    Returns:
        ``value``, unchanged.

    Raises:
        ValueError: ``value`` is not in ``choices``; the message lists them.
    """
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def check_width(width: Any) -> None:
    """Check the CNN's channel multiplier.

    Args:
        width: The multiplier given.

    Raises:
        ValueError: ``width`` is not an int >= 1 (bools are refused).
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an int >= 1 (the CNN's channel multiplier), got {width!r}")
