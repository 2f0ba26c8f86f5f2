"""Batches of draws for expectations over a randomized model (EOT).

An attack on a model with random layers averages over ``draws`` passes. Running the passes
as one batch of ``draws x B`` images costs one call instead of ``draws``; these two helpers
build that batch and fold its results back. Used by :func:`attacks.apgd`'s ``eot_iter``
and by the ensemble's mean-logits EOT.
"""

from __future__ import annotations

from attacks.backend import tf


def tile_draws(x: tf.Tensor, draws: int) -> tf.Tensor:
    """The batch repeated ``draws`` times along its first axis.

    Args:
        x: A batch (B, ...), any dtype.
        draws: The number of copies (>= 1).

    Returns:
        A tensor (draws x B, ...): copy d of image b is row ``d * B + b``.
    """
    return tf.tile(x, tf.concat([[draws], tf.ones([tf.rank(x) - 1], tf.int32)], 0))


def mean_over_draws(values: tf.Tensor, draws: int) -> tf.Tensor:
    """The mean over the draws of values computed on :func:`tile_draws`'s batch.

    Args:
        values: Per-row values (draws x B, ...) in :func:`tile_draws`'s row order.
        draws: The number of draws the batch was tiled with.

    Returns:
        The means (B, ...), in ``values``' dtype.
    """
    shape = tf.shape(values)
    folded = tf.reshape(values, tf.concat([[draws, shape[0] // draws], shape[1:]], 0))
    return tf.reduce_mean(folded, axis=0)
