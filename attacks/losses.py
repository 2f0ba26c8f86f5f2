"""Per-example attack losses on logits. Each maps (logits (N, C), labels (N,)) to (N,).

The attack loop ascends ``loss(logits, y)`` for untargeted attacks and descends
``loss(logits, target)`` for targeted ones.
"""

from __future__ import annotations

from typing import Callable, Union

from attacks.backend import tf

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
LOSSES: tuple[str, ...] = ("ce", "margin", "dlr")


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


def dlr(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Difference of logits ratio (Croce & Hein 2020), the untargeted DLR loss.

    ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12)``, where ``z_pi1 >= z_pi2 >= ...``
    are the sorted logits: the logit margin divided by the spread of the top three logits.
    It does not change when all logits are shifted by a constant, nor (up to the 1e-12)
    when they are scaled by a positive factor, so its gradient does not vanish on models
    whose softmax saturates.

    Args:
        logits: (N, C) logits, C >= 3.
        labels: (N,) integer true labels in [0, C).

    Returns:
        (N,) loss values, >= -1; positive exactly when the example is misclassified.
    """
    top = tf.math.top_k(logits, k=3).values
    return margin(logits, labels) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(logits: tf.Tensor, labels: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Targeted DLR loss (Croce & Hein 2020), the loss of APGD-T, to be ascended.

    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`` with ``y`` the true label, ``t``
    the target and ``z_pi1 >= z_pi2 >= ...`` the sorted logits. Invariant to shifting the
    logits and (up to the 1e-12) to scaling them by a positive factor.

    Args:
        logits: (N, C) logits, C >= 4.
        labels: (N,) integer true labels in [0, C).
        targets: (N,) integer target classes in [0, C).

    Returns:
        (N,) loss values; positive exactly when the target's logit exceeds the true one.
    """
    top = tf.math.top_k(logits, k=4).values
    label_logit = tf.gather(logits, tf.cast(labels, tf.int32), batch_dims=1)
    target_logit = tf.gather(logits, tf.cast(targets, tf.int32), batch_dims=1)
    return (target_logit - label_logit) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


_BY_NAME: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin, "dlr": dlr}


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
