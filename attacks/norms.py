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
    """Map ``"inf"``, ``np.inf``, ``"linf"``, ``"l2"``, ``2`` to ``"inf"`` or ``"l2"``.

    Raises ValueError naming the value and the choices for anything else.
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
    """The unit-norm direction of steepest ascent for the norm's ball.

    L-inf: ``sign(gradient)``; L2: ``gradient / ||gradient||_2`` per example (zero where
    the gradient is zero). Same shape as ``gradient``.
    """
    if norm == "inf":
        return tf.sign(gradient)
    length = _per_example(_l2(gradient), gradient)
    return gradient / tf.maximum(length, _TINY)


def project(delta: tf.Tensor, eps: tf.Tensor, norm: Norm) -> tf.Tensor:
    """Project each example's perturbation onto its ball of radius ``eps`` (shape (N,)).

    L-inf: clip every coordinate to [-eps, eps]; L2: scale down to norm eps if longer.
    """
    radius = _per_example(tf.cast(eps, delta.dtype), delta)
    if norm == "inf":
        return tf.clip_by_value(delta, -radius, radius)
    length = _per_example(_l2(delta), delta)
    factor = tf.minimum(tf.ones_like(length), radius / tf.maximum(length, _TINY))
    return delta * factor


def random_start(shape: tf.Tensor, eps: tf.Tensor, norm: Norm, seed: tf.Tensor,
                 dtype: tf.DType) -> tf.Tensor:
    """A perturbation drawn uniformly from each example's ball of radius ``eps``.

    ``seed`` is a stateless seed (shape (2,), int32/int64): the same seed gives the same
    draw. L-inf: uniform in the cube; L2: uniform in the ball (Gaussian direction,
    radius eps * u^(1/d)).
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
    """One projected steepest-ascent step from the iterate ``x_t`` around the clean ``x``.

    ``direction`` is the gradient (or momentum) at ``x_t``; ``step_size`` is (N, 1, ...)
    and ``eps`` (N,). Returns ``clip(x + project(x_t - x + step_size *
    steepest_step(direction)))``, shaped like ``x``: inside each ball and inside ``clip``.
    """
    delta = (x_t - x) + step_size * steepest_step(direction, norm)
    x_next = x + project(delta, eps, norm)
    return x_next if clip is None else tf.clip_by_value(x_next, clip[0], clip[1])
