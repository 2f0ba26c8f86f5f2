"""Per-norm pieces of every gradient attack, written once: steepest-ascent step,
projection onto the eps-ball, random start.

All functions work on a batch: tensors of shape (N, ...) and a per-example radius
``eps`` of shape (N,), so one call can attack with many epsilons at once.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from attacks.backend import tf

Norm = Literal["inf", "l2"]
NORMS: tuple[str, ...] = ("inf", "l2")
_ALIASES = {"inf": "inf", "linf": "inf", "l_inf": "inf", "l2": "l2", "2": "l2"}
_TINY = 1e-12


def canonical_norm(norm: object) -> Norm:
    """Map the accepted spellings of a norm to ``"inf"`` or ``"l2"``.

    Args:
        norm: ``"inf"``, ``"linf"``, ``"l_inf"`` (any case) or ``np.inf``; ``"l2"``, ``"2"``
            or ``2``.

    Returns:
        ``"inf"`` or ``"l2"``.

    Raises:
        ValueError: Any other value (bools included); the message lists the choices.
    """
    if isinstance(norm, (int, float, np.integer, np.floating)) and not isinstance(norm, bool):
        if norm == np.inf:
            return "inf"
        if norm == 2:
            return "l2"
    elif isinstance(norm, str) and norm.lower() in _ALIASES:
        return _ALIASES[norm.lower()]  # type: ignore[return-value]
    raise ValueError(f"unknown norm {norm!r}; choose one of: 'inf' (or np.inf), 'l2' (or 2)")


def _per_example(value: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Reshape (N,) to (N, 1, ..., 1) so it broadcasts against ``like``."""
    return _expand(value, tf.rank(like))


def _expand(value: tf.Tensor, rank: tf.Tensor) -> tf.Tensor:
    return tf.reshape(value, tf.concat([tf.shape(value), tf.ones([rank - 1], tf.int32)], 0))


def _l2(t: tf.Tensor) -> tf.Tensor:
    """Per-example L2 norm of (N, ...) as (N,)."""
    axes = tf.range(1, tf.rank(t))
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=axes))


def steepest_step(gradient: tf.Tensor, norm: Norm) -> tf.Tensor:
    """Compute the unit-norm direction of steepest ascent for the norm's ball.

    Args:
        gradient: The gradient, a float tensor (N, ...).
        norm: ``"inf"`` or ``"l2"``.

    Returns:
        A tensor shaped like ``gradient``. L-inf: ``sign(gradient)``, values in {-1, 0, 1};
        L2: ``gradient / ||gradient||_2`` per example, L2 norm 1 (0 where the gradient is 0).
    """
    if norm == "inf":
        return tf.sign(gradient)
    length = _per_example(_l2(gradient), gradient)
    return gradient / tf.maximum(length, _TINY)


def project(delta: tf.Tensor, eps: tf.Tensor, norm: Norm) -> tf.Tensor:
    """Project each example's perturbation onto its ball of radius ``eps``.

    L-inf: clip every coordinate to [-eps, eps]; L2: scale down to norm eps if longer.

    Args:
        delta: The perturbations, a float tensor (N, ...).
        eps: The per-example radius, a tensor (N,), >= 0.
        norm: ``"inf"`` or ``"l2"``.

    Returns:
        A tensor shaped like ``delta``, in its dtype, each example's norm <= its ``eps``.
    """
    radius = _per_example(tf.cast(eps, delta.dtype), delta)
    if norm == "inf":
        return tf.clip_by_value(delta, -radius, radius)
    length = _per_example(_l2(delta), delta)
    factor = tf.minimum(tf.ones_like(length), radius / tf.maximum(length, _TINY))
    return delta * factor


def random_start(shape: tf.Tensor, eps: tf.Tensor, norm: Norm, seed: tf.Tensor,
                 dtype: tf.DType) -> tf.Tensor:
    """Draw a perturbation uniformly from each example's ball of radius ``eps``.

    L-inf: uniform in the cube; L2: uniform in the ball (Gaussian direction, radius
    ``eps * u^(1/d)``).

    Args:
        shape: The shape of the batch, an int tensor ``(N, ...)``.
        eps: The per-example radius, a tensor (N,), >= 0.
        norm: ``"inf"`` or ``"l2"``.
        seed: A stateless seed, an int32/int64 tensor of shape (2,): the same seed gives the
            same draw.
        dtype: The floating-point dtype of the result.

    Returns:
        A tensor of ``shape`` and ``dtype``, each example inside its ball.
    """
    radius = _expand(tf.cast(eps, dtype), tf.size(shape))
    if norm == "inf":
        return tf.random.stateless_uniform(shape, seed, -1.0, 1.0, dtype=dtype) * radius
    direction = tf.random.stateless_normal(shape, seed, dtype=dtype)
    direction = direction / tf.maximum(_per_example(_l2(direction), direction), _TINY)
    dims = tf.cast(tf.reduce_prod(shape[1:]), dtype)
    u = tf.random.stateless_uniform(shape[:1], seed + 1, dtype=dtype)
    return direction * radius * _per_example(tf.pow(u, 1.0 / dims), direction)


def ascent_step(x: tf.Tensor, x_t: tf.Tensor, direction: tf.Tensor, step_size: tf.Tensor, eps: tf.Tensor,
                norm: Norm, clip: tuple[float, float] | None) -> tf.Tensor:
    """Take one projected steepest-ascent step from the iterate ``x_t`` around the clean ``x``.

    Computes ``clip(x + project(x_t - x + step_size * steepest_step(direction)))``.

    Args:
        x: The clean inputs, a float tensor (N, ...).
        x_t: The current iterate, shaped like ``x``.
        direction: The gradient (or momentum) at ``x_t``, shaped like ``x``.
        step_size: The per-example step size, a tensor (N, 1, ..., 1) broadcasting against ``x``.
        eps: The per-example radius, a tensor (N,).
        norm: ``"inf"`` or ``"l2"``.
        clip: The valid input range ``(low, high)``, or None.

    Returns:
        The next iterate, a tensor shaped like ``x``: inside each ball and inside ``clip``.
    """
    delta = (x_t - x) + step_size * steepest_step(direction, norm)
    x_next = x + project(delta, eps, norm)
    return x_next if clip is None else tf.clip_by_value(x_next, clip[0], clip[1])
