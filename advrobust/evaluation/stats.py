"""Confidence intervals for accuracies, and the paired comparison of two models.

Two models evaluated on the same test images are compared *per image*: the images both
get right or both get wrong say nothing about which model is better, only the discordant
ones do. So the difference of two accuracies is far more precise than their two separate
Wilson intervals suggest (those overlap long after the difference is clear). Here:
Newcombe's (1998) score interval for a difference of paired proportions (his method 10),
and the exact McNemar test (a two-sided binomial test on the discordant images).
"""

from __future__ import annotations

import math
from typing import Any
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes, trials, *, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Compute the Wilson score interval for binomial proportions ``successes / trials``.

    Works elementwise on arrays. With zero trials the interval is the uninformative [0, 1].

    Args:
        successes: Counts of successes, a number or an array.
        trials: Counts of trials, broadcasting against ``successes``.
        z: The normal quantile of the confidence level (default: 95%, two-sided).

    Returns:
        ``(low, high)``: float64 arrays of the broadcast shape (0-d for scalars), each in
        [0, 1], with ``low <= successes / trials <= high``.

    Raises:
        ValueError: A count of successes is negative or exceeds its trials.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    safe_n = np.where(n > 0, n, 1.0)
    p = k / safe_n
    denominator = 1.0 + z**2 / safe_n
    centre = (p + z**2 / (2 * safe_n)) / denominator
    half = z * np.sqrt(p * (1 - p) / safe_n + z**2 / (4 * safe_n**2)) / denominator
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return low, high


def _is_count(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 0


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Compute the two-sided exact McNemar p-value of two models' discordant examples.

    The p-value is the chance, if both models were equally accurate, of a split of the
    ``only_first + only_second`` discordant examples at least this uneven. Computed exactly
    (integers).

    Args:
        only_first: Examples only the first model got right, an int >= 0.
        only_second: Examples only the second model got right, an int >= 0.

    Returns:
        The p-value, a float in [0, 1]; 1.0 without discordant examples.

    Raises:
        ValueError: A count is not an integer >= 0 (bools are refused).
    """
    for name, value in (("only_first", only_first), ("only_second", only_second)):
        if not _is_count(value):
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    n, k = int(only_first) + int(only_second), min(int(only_first), int(only_second))
    if n == 0:
        return 1.0
    tail = Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2 ** n)
    return float(min(Fraction(1), 2 * tail))


def paired_difference_interval(both: int, only_first: int, only_second: int, neither: int, *,
                               z: float = Z95) -> tuple[float, float]:
    """Compute Newcombe's score interval (method 10) for the difference of two paired accuracies.

    The difference is second minus first, from the 2x2 table of per-example outcomes.

    Args:
        both: Examples both models got right.
        only_first: Examples only the first model got right.
        only_second: Examples only the second model got right.
        neither: Examples neither model got right.
        z: The normal quantile of the confidence level (default: 95%, two-sided).

    Returns:
        ``(low, high)``, floats in [-1, 1] containing the observed difference
        ``(only_second - only_first) / n``; (-1.0, 1.0) for an empty table.

    Raises:
        ValueError: A count is not an integer >= 0.
    """
    counts = (both, only_first, only_second, neither)
    if not all(_is_count(c) for c in counts):
        raise ValueError(f"the four counts must be integers >= 0, got {counts}")
    e, f, g, h = (int(c) for c in counts)
    n = e + f + g + h
    if n == 0:
        return -1.0, 1.0
    first, second = (e + f) / n, (e + g) / n
    (l1, u1), (l2, u2) = (tuple(float(v) for v in wilson_interval(k, n, z=z)) for k in (e + f, e + g))
    denominator = (e + f) * (g + h) * (e + g) * (f + h)
    # Newcombe's correlation estimate, with his continuity correction of the numerator.
    cross = e * h - f * g
    corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = corrected / math.sqrt(denominator) if denominator > 0 else 0.0
    difference = (g - f) / n  # = second - first
    below = (second - l2) ** 2 - 2 * phi * (second - l2) * (u1 - first) + (u1 - first) ** 2
    above = (u2 - second) ** 2 - 2 * phi * (u2 - second) * (first - l1) + (first - l1) ** 2
    return max(-1.0, difference - math.sqrt(max(below, 0.0))), min(1.0, difference + math.sqrt(max(above, 0.0)))


@dataclass(frozen=True)
class PairedComparison:
    """Two models' per-example outcomes on the same examples, compared.

    Attributes:
        n_examples: The number of examples N.
        first: The first model's accuracy, in [0, 1] (0.0 for N = 0).
        second: The second model's accuracy, in [0, 1] (0.0 for N = 0).
        difference: ``second - first``, in [-1, 1].
        ci95_low: The low end of the difference's 95% interval (Newcombe), in [-1, 1].
        ci95_high: The high end of that interval, in [-1, 1].
        only_first: Examples only the first model got right.
        only_second: Examples only the second model got right.
        p_value: The exact McNemar p-value, in [0, 1].
    """

    n_examples: int
    first: float
    second: float
    difference: float
    ci95_low: float
    ci95_high: float
    only_first: int
    only_second: int
    p_value: float

    def to_dict(self) -> dict[str, float | int]:
        """Describe the comparison as a JSON-ready record.

        Returns:
            A dict from each field name to its value.
        """
        return asdict(self)


def compare_paired(first_correct, second_correct) -> PairedComparison:
    """Compare two models from their per-example outcomes on the same examples.

    Args:
        first_correct: A bool array (N,), True where the first model got the example right
            (clean, or robust at some eps).
        second_correct: The same for the second model, (N,).

    Returns:
        A :class:`PairedComparison`.

    Raises:
        ValueError: The arrays are not 1-D bool arrays of one length.
    """
    a, b = np.asarray(first_correct), np.asarray(second_correct)
    if a.dtype != bool or b.dtype != bool or a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"need two 1-D bool arrays of one length, got {a.dtype} {a.shape} and {b.dtype} {b.shape}")
    both, only_first, only_second = int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b))
    neither = len(a) - both - only_first - only_second
    low, high = paired_difference_interval(both, only_first, only_second, neither)
    n = max(len(a), 1)
    return PairedComparison(n_examples=len(a), first=float(a.mean()) if len(a) else 0.0,
                            second=float(b.mean()) if len(b) else 0.0,
                            difference=(only_second - only_first) / n, ci95_low=low, ci95_high=high,
                            only_first=only_first, only_second=only_second,
                            p_value=mcnemar_exact_p(only_first, only_second))


def minimal_eps_on_grid(epsilons: Any, robust_mask: Any) -> np.ndarray:
    """Per example, the smallest eps of a grid at which it is not robust.

    An upper bound of the example's true minimal adversarial eps (the attack may have
    missed smaller ones between grid points).

    Args:
        epsilons: The grid, (K,) numbers (any order).
        robust_mask: (K, N) bool: robust at each eps of the grid.

    Returns:
        (N,) float64: the smallest grid eps at which the example is not robust; ``inf``
        where it is robust at every eps of the grid.

    Raises:
        ValueError: ``robust_mask`` is not (K, N) for the K epsilons, or holds no example.
    """
    grid = np.asarray(epsilons, dtype=np.float64)
    robust = np.asarray(robust_mask, dtype=bool)
    if grid.ndim != 1 or robust.ndim != 2 or robust.shape[0] != len(grid):
        raise ValueError(f"robust_mask must be (K, N) with K = {grid.size} epsilons; got shape {robust.shape}")
    if not robust.size:
        raise ValueError(f"robust_mask {robust.shape} holds no eps or no example")
    return np.where(robust, np.inf, grid[:, None]).min(axis=0)
