"""Per-example attack losses on logits. Each maps (logits (N, C), labels (N,)) to (N,).

The attack loop ascends ``loss(logits, y)`` for untargeted attacks and descends
``loss(logits, target)`` for targeted ones.
"""

from __future__ import annotations

from typing import Callable, Union

from attacks.backend import tf

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
LOSSES: tuple[str, ...] = ("ce", "margin")


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of each example, (N,), >= 0."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)


def margin(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Logit margin (Carlini & Wagner): ``max_{j != y} z_j - z_y``, (N,).

    Positive exactly when the example is misclassified.
    """
    num_classes = tf.shape(logits)[-1]
    is_label = tf.one_hot(tf.cast(labels, tf.int32), num_classes) > 0.5
    label_logit = tf.reduce_max(tf.where(is_label, logits, logits.dtype.min), axis=-1)
    other_logit = tf.reduce_max(tf.where(is_label, logits.dtype.min, logits), axis=-1)
    return other_logit - label_logit


_BY_NAME: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin}


def get_loss(loss: Union[str, LossFn]) -> LossFn:
    """The loss function for a name in LOSSES, or ``loss`` itself if callable."""
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss in _BY_NAME:
        return _BY_NAME[loss]
    raise ValueError(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)}, or pass a callable "
                     "loss(logits, labels) -> per-example values")
