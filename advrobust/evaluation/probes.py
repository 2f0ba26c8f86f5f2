"""The TensorFlow side of the masking checks: small measurements on a few examples.

Each function here runs the model or an attack and returns arrays; the verdicts are the
pure functions of :mod:`advrobust.evaluation.checks`. Costs, for n examples and one eps:

* :func:`repeated_logits`: ``passes`` forward passes (default 5);
* :func:`pgd_path`: three PGD runs without early stopping: ``steps``, ``round(0.9 * steps)``
  (both keeping the best iterate) and ``steps`` returning the last iterate, plus three
  forward passes: about 2.9 times one PGD run of ``steps`` steps;
* :func:`unbounded_robust`: DeepFool, at most ``steps`` linearisations per example, each
  one Jacobian of the ``candidates`` logit differences (examples leave once fooled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attacks import deepfool, loop
from attacks.backend import tf
from attacks.losses import cross_entropy
from attacks.validation import inference_fn

DEFAULT_PASSES = 5
EARLY_FRACTION = 0.9  # the loss check compares the attack's loss after 90% and 100% of its steps
UNBOUNDED_STEPS = 50


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
        steps: The PGD steps of the full run.
        early_steps: The steps of the shorter run (``round(0.9 * steps)``).
        clean: Correct on the clean example.
        fooled_on_path: Some iterate of the full run was misclassified (the best-iterate
            point the run returns is misclassified).
        fooled_at_end: The last iterate of the same trajectory is misclassified.
        loss_clean: The cross-entropy at the clean example.
        loss_early: The highest cross-entropy over the first ``early_steps`` iterates.
        loss_final: The highest cross-entropy over all ``steps`` iterates.
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
    losses, wrong = [], []
    for i in range(0, len(x), batch_size):
        logits = logits_fn(tf.constant(x[i:i + batch_size]))
        labels = tf.constant(y[i:i + batch_size])
        losses.append(cross_entropy(logits, labels).numpy())
        wrong.append(np.argmax(logits.numpy(), axis=1) != y[i:i + batch_size])
    return np.concatenate(losses).astype(np.float64), np.concatenate(wrong)


def pgd_path(model: Any, x: np.ndarray, y: np.ndarray, *, eps: float, norm: str = "inf", steps: int = 40,
             rel_step_size: float = 2.5, seed: int = 0, batch_size: int = 500) -> PathProbe:
    """Follow PGD's trajectories: fooled on the way, fooled at the end, and the loss late on.

    Three cross-entropy PGD runs from the same seed, hence the same random start, with
    the same step size ``rel_step_size * eps / steps``: ``steps`` and
    ``round(0.9 * steps)`` steps keeping each example's best iterate (the shorter run is
    the first 90% of the longer one's trajectory), and ``steps`` steps returning the
    last iterate. No early stopping, so every trajectory runs to its end.

    Args:
        model: The logits model.
        x: The inputs (N, ...), in [0, 1].
        y: The integer labels (N,).
        eps: The radius, > 0.
        norm: ``"inf"`` or ``"l2"``.
        steps: The steps of the full run, >= 2.
        rel_step_size: The step size relative to ``eps / steps``.
        seed: The seed of the random start (the same in all three runs).
        batch_size: The examples per compiled call and per forward pass.

    Returns:
        The :class:`PathProbe`; its losses are the model's cross-entropy at the returned
        points, float64 >= 0.

    Raises:
        ValueError: ``eps`` is not positive or ``steps`` is below 2; or as
            :func:`attacks.pgd` raises.
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive for the path probe, got {eps!r}")
    if steps < 2:
        raise ValueError(f"steps must be at least 2 so that 90% of them is fewer, got {steps}")
    early_steps = min(max(1, round(EARLY_FRACTION * steps)), steps - 1)
    common = dict(eps=eps, norm=norm, step_size=rel_step_size * eps / steps, random_start=True, seed=seed,
                  batch_size=batch_size)
    best = loop.run(model, x, y, steps=steps, keep_best=True, **common)
    early = loop.run(model, x, y, steps=early_steps, keep_best=True, **common)
    last = loop.run(model, x, y, steps=steps, keep_best=False, **common)
    logits_fn = inference_fn(model)
    loss_clean, wrong_clean = _losses_and_wrong(logits_fn, x, y, batch_size)
    loss_final, wrong_best = _losses_and_wrong(logits_fn, best, y, batch_size)
    loss_early, _ = _losses_and_wrong(logits_fn, early, y, batch_size)
    _, wrong_last = _losses_and_wrong(logits_fn, last, y, batch_size)
    return PathProbe(eps=float(eps), steps=steps, early_steps=early_steps, clean=~wrong_clean,
                     fooled_on_path=wrong_best, fooled_at_end=wrong_last, loss_clean=loss_clean,
                     loss_early=loss_early, loss_final=loss_final)


def unbounded_robust(model: Any, x: np.ndarray, y: np.ndarray, *, norm: str = "inf",
                     steps: int = UNBOUNDED_STEPS, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
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
        batch_size: The examples per compiled call.

    Returns:
        ``(clean, robust)``, both (N,) bool: correct on the clean example, and correct on
        the clean example and on DeepFool's output.

    Raises:
        ValueError: As :func:`attacks.deepfool` raises.
    """
    logits_fn = inference_fn(model)
    _, wrong_clean = _losses_and_wrong(logits_fn, x, y, batch_size)
    x_adv = deepfool(model, x, y, norm=norm, steps=steps, batch_size=batch_size)
    _, wrong_adv = _losses_and_wrong(logits_fn, x_adv, y, batch_size)
    return ~wrong_clean, ~wrong_clean & ~wrong_adv
