"""The TensorFlow side of the masking checks: small measurements on a few examples.

Each function here runs the model or an attack and returns arrays; the verdicts are the
pure functions of :mod:`advrobust.evaluation.checks`. Costs, for n examples and one eps:

* :func:`repeated_logits`: ``passes`` forward passes (default 3);
* :func:`pgd_path`: one PGD trajectory per example without early stopping, recorded:
  ``steps + 1`` gradient computations per example;
* :func:`unbounded_robust`: DeepFool, at most ``steps`` (50) linearisations per example,
  each one Jacobian of ``candidates`` (3) logit differences (examples leave once fooled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attacks import deepfool, loop, norms
from attacks.backend import tf
from attacks.losses import cross_entropy
from attacks.validation import attack_input, inference_fn

DEFAULT_PASSES = 3
CLIP = (0.0, 1.0)
EARLY_FRACTION = 0.9  # the loss check compares the attack's loss after 90% and 100% of its steps
UNBOUNDED_STEPS = 50
# DeepFool's candidate classes: the nearest boundary is almost always among the top
# logits, and each candidate costs one gradient per step.
UNBOUNDED_CANDIDATES = 3


def repeated_logits(model: Any, x: np.ndarray, *, passes: int = DEFAULT_PASSES, batch_size: int = 500) -> np.ndarray:
    """The model's outputs on the same inputs, ``passes`` times, in inference mode.

    A deterministic model gives the same outputs every time (up to float noise); a model
    that draws noise, or keeps dropout on at inference, does not.

    Args:
        model: The logits model.
        x: The inputs (N, ...), N >= 1.
        passes: How many times to call the model, >= 2.
        batch_size: The examples per call.

    Returns:
        The outputs (passes, N, C), float64.

    Raises:
        ValueError: ``passes`` is below 2 or ``x`` is empty.
    """
    if passes < 2:
        raise ValueError(f"passes must be at least 2 to compare outputs, got {passes}")
    if not len(x):
        raise ValueError("x holds no examples: repeated_logits needs at least one")
    logits_fn = inference_fn(model)
    return np.stack([np.concatenate([logits_fn(tf.constant(x[i:i + batch_size])).numpy()
                                     for i in range(0, len(x), batch_size)]) for _ in range(passes)]).astype(np.float64)


@dataclass(frozen=True)
class PathProbe:
    """What one PGD trajectory per example went through, at one eps.

    All arrays are (N,), one entry per example, in the order given.

    Attributes:
        eps: The radius attacked.
        steps: The PGD steps taken.
        early_steps: The steps after which ``loss_early`` is taken (``round(0.9 * steps)``).
        clean: Correct on the clean example.
        fooled_on_path: Some iterate (the random start and the ``steps`` after it) was
            misclassified.
        fooled_at_end: The last iterate is misclassified.
        loss_clean: The cross-entropy at the clean example.
        loss_early: The highest cross-entropy over the iterates up to step ``early_steps``.
        loss_final: The highest cross-entropy over all iterates.
    """

    eps: float
    steps: int
    early_steps: int
    clean: np.ndarray
    fooled_on_path: np.ndarray
    fooled_at_end: np.ndarray
    loss_clean: np.ndarray
    loss_early: np.ndarray
    loss_final: np.ndarray


def _losses_and_wrong(logits_fn: Any, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The cross-entropy (N,) float64 and whether each example is misclassified (N,)."""
    losses, wrong = [], []
    for i in range(0, len(x), batch_size):
        logits = logits_fn(tf.constant(x[i:i + batch_size]))
        losses.append(cross_entropy(logits, tf.constant(y[i:i + batch_size])).numpy())
        wrong.append(np.argmax(logits.numpy(), axis=1) != y[i:i + batch_size])
    return np.concatenate(losses).astype(np.float64), np.concatenate(wrong)


def _path_step(logits_fn: Any, norm: str, clip: tuple[float, float]) -> Any:
    """A compiled PGD step that also reports the loss and misclassification of the iterate it
    starts from; the batch dimension is free, so every batch reuses one trace."""
    @tf.function(reduce_retracing=True)
    def step(x, x_t, y, eps, step_size):
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            logits = logits_fn(x_t)
            loss = cross_entropy(logits, y)
        gradient = tape.gradient(loss, x_t)
        wrong = tf.not_equal(tf.argmax(logits, axis=-1, output_type=tf.int64), y)
        return norms.ascent_step(x, x_t, gradient, step_size, eps, norm, clip), loss, wrong

    return step


def pgd_path(model: Any, x: np.ndarray, y: np.ndarray, *, eps: float, norm: str = "inf", steps: int = 40,
             rel_step_size: float = 2.5, seed: int = 0, batch_size: int = 500) -> PathProbe:
    """Follow one cross-entropy PGD trajectory per example and record it.

    From a uniform random start in the eps-ball (seeded), ``steps`` steps of size
    ``rel_step_size * eps / steps``, inputs kept in [0, 1]; at every iterate the loss and
    whether it is misclassified are recorded. No early stopping: each trajectory runs to
    its end. Cost: ``steps + 1`` gradient computations per example, one trace per call.

    Args:
        model: The logits model.
        x: The inputs (N, ...), in [0, 1].
        y: The integer labels (N,).
        eps: The radius, > 0.
        norm: ``"inf"`` or ``"l2"``.
        steps: The PGD steps, >= 2.
        rel_step_size: The step size relative to ``eps / steps``.
        seed: The seed of the random start.
        batch_size: The examples per compiled call.

    Returns:
        The :class:`PathProbe`; its losses are float64 >= 0.

    Raises:
        ValueError: ``eps`` is not positive, ``steps`` is below 2, ``x`` is empty or not
            finite in [0, 1], ``y`` has the wrong length, or ``norm`` is unknown.
        TypeError: ``x`` is not floating point or ``y`` not integer.
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive for the path probe, got {eps!r}")
    if steps < 2:
        raise ValueError(f"steps must be at least 2 so that 90% of them is fewer, got {steps}")
    given = attack_input(x, y, eps, norm, CLIP)
    if not len(given.x):
        raise ValueError("x holds no examples: pgd_path needs at least one")
    x, y, norm = given.x, given.y, given.norm
    early_steps = min(max(1, round(EARLY_FRACTION * steps)), steps - 1)
    step = _path_step(inference_fn(model), norm, CLIP)
    losses, wrong = [], []
    for start in range(0, len(x), batch_size):
        x_batch = tf.constant(x[start:start + batch_size])
        y_batch = tf.constant(np.asarray(y[start:start + batch_size], np.int64))
        eps_batch = tf.fill([len(x_batch)], tf.constant(eps, x_batch.dtype))
        step_size = tf.constant(rel_step_size * eps / steps, x_batch.dtype)
        x_t = loop.start_point(x_batch, eps_batch, norm=norm, random=True, seed=tf.constant([seed, start], tf.int64),
                               clip=CLIP)
        batch_losses, batch_wrong = [], []
        for _ in range(steps + 1):  # the last call only scores the last iterate
            x_t, loss, is_wrong = step(x_batch, x_t, y_batch, eps_batch, step_size)
            batch_losses.append(loss.numpy())
            batch_wrong.append(is_wrong.numpy())
        losses.append(np.stack(batch_losses, axis=1))
        wrong.append(np.stack(batch_wrong, axis=1))
    losses, wrong = np.concatenate(losses).astype(np.float64), np.concatenate(wrong)
    loss_clean, wrong_clean = _losses_and_wrong(inference_fn(model), x, y, batch_size)
    return PathProbe(eps=float(eps), steps=steps, early_steps=early_steps, clean=~wrong_clean,
                     fooled_on_path=wrong.any(axis=1), fooled_at_end=wrong[:, -1], loss_clean=loss_clean,
                     loss_early=losses[:, :early_steps + 1].max(axis=1), loss_final=losses.max(axis=1))


def unbounded_robust(model: Any, x: np.ndarray, y: np.ndarray, *, norm: str = "inf", steps: int = UNBOUNDED_STEPS,
                     candidates: int = UNBOUNDED_CANDIDATES, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Which examples survive DeepFool, an attack with no radius.

    DeepFool moves each example as far as it takes to cross the nearest (linearised)
    decision boundary, so on a model whose gradients lead anywhere it fools (nearly)
    every example; the ones it does not fool show where the gradients lead nowhere.

    Args:
        model: The logits model.
        x: The inputs (N, ...), in [0, 1].
        y: The integer labels (N,).
        norm: The norm DeepFool keeps small, ``"inf"`` or ``"l2"``.
        steps: DeepFool's most linearisation steps per example.
        candidates: The classes DeepFool considers: those with the highest clean logits.
        batch_size: The examples per compiled call.

    Returns:
        ``(clean, robust)``, both (N,) bool: correct on the clean example, and correct on
        the clean example and on DeepFool's output.

    Raises:
        ValueError: As :func:`attacks.deepfool` raises.
    """
    logits_fn = inference_fn(model)
    _, wrong_clean = _losses_and_wrong(logits_fn, x, y, batch_size)
    x_adv = deepfool(model, x, y, norm=norm, steps=steps, candidates=candidates, batch_size=batch_size)
    _, wrong_adv = _losses_and_wrong(logits_fn, x_adv, y, batch_size)
    return ~wrong_clean, ~wrong_clean & ~wrong_adv
