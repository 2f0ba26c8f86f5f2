"""Confidence intervals for accuracies."""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes, trials, *, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions successes / trials.

    Works elementwise on arrays. Returns (low, high), each in [0, 1]. With zero trials
    the interval is the uninformative [0, 1].
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
