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
    """Softmax cross-entropy of each example.

    Args:
        logits: The model's logits, a float tensor (N, C).
        labels: Integer class labels (N,), in 0..C-1.

    Returns:
        A tensor (N,) in the dtype of ``logits``, values >= 0.
    """
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)


def margin(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Logit margin (Carlini & Wagner): ``max_{j != y} z_j - z_y``.

    Positive exactly when the example is misclassified.

    Args:
        logits: The model's logits, a float tensor (N, C).
        labels: Integer class labels (N,), in 0..C-1.

    Returns:
        A tensor (N,) in the dtype of ``logits``, any sign.
    """
    num_classes = tf.shape(logits)[-1]
    is_label = tf.one_hot(tf.cast(labels, tf.int32), num_classes) > 0.5
    label_logit = tf.reduce_max(tf.where(is_label, logits, logits.dtype.min), axis=-1)
    other_logit = tf.reduce_max(tf.where(is_label, logits.dtype.min, logits), axis=-1)
    return other_logit - label_logit


_BY_NAME: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin}


def get_loss(loss: Union[str, LossFn]) -> LossFn:
    """Look up a loss by name, or pass a callable through.

    Args:
        loss: A name in ``LOSSES`` (``"ce"``, ``"margin"``) or a callable
            ``loss(logits, labels) -> (N,)``.

    Returns:
        The loss function: :func:`cross_entropy` or :func:`margin` for a name, else
        ``loss`` itself.

    Raises:
        ValueError: ``loss`` is neither callable nor a known name; the message lists them.
    """
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss in _BY_NAME:
        return _BY_NAME[loss]
    raise ValueError(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)}, or pass a callable "
                     "loss(logits, labels) -> per-example values")
