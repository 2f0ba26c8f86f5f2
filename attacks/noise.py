"""Random noise in the eps-ball: the baseline every gradient attack must beat.

If uniform noise fools a model on examples that a gradient attack at the same radius
could not, the gradients mislead the attack (gradient masking; Carlini et al. 2019,
"On Evaluating Adversarial Robustness", section 5). Sampling is
:func:`attacks.norms.random_start`, the same as PGD's random start.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from attacks import norms, validation
from attacks.backend import tf

DEFAULT_BATCH_SIZE = 512


def random_noise(model: Any, x: Any, y: Any, *, eps: float | Sequence[float], norm: Any = "inf",
                 draws: int = 10, clip: tuple[float, float] | None = (0.0, 1.0), seed: int | None = None,
                 batch_size: int | None = None):
    """Uniform noise from the eps-ball, ``draws`` tries per example (untargeted).

    Per example, the first draw that the model misclassifies is returned, else the last
    draw. Needs no gradient: only ``draws`` forward passes per example.

    Args:
        model: The attacked model: any callable mapping a float batch to **logits** (N, C),
            a tf-keras or Keras 3 model, a ``tf.Module`` or a function. Called in inference
            mode (``training=False``).
        x: The clean inputs, an array or tensor (N, ...), floating point, inside ``clip``.
            Never rescaled or clipped.
        y: Integer labels (N,), the true classes.
        eps: The radius: a float, or a sequence of K floats computed in one batched run;
            each finite and >= 0 (eps = 0 returns ``x``).
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
        draws: Noise draws per example (>= 1); draw d does not depend on ``draws``, so more
            draws only add tries.
        clip: The valid input range ``(low, high)``; None for unbounded inputs.
        seed: Seeds the draws; the same seed (and ``batch_size``) gives the same result.
            None draws fresh entropy.
        batch_size: Examples per model call (None: 512).

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out): shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons.
        Inside the ball and inside ``clip``. An empty batch gives an empty result.

    Raises:
        TypeError: ``model`` is not callable, ``x`` is not floating point, ``y`` does not
            hold integers, ``eps`` is not numeric, or ``seed`` is not an int.
        ValueError: A value named in the message is wrong: NaN in ``x``, ``x`` outside
            ``clip``, a length mismatch, labels outside the model's classes, negative
            ``eps``, ``draws`` or ``batch_size`` < 1, an unknown ``norm``, or a model that
            returns probabilities.
    """
    given = validation.attack_input(x, y, eps, norm, clip)
    x_np, y_np, epsilons, norm, clip = given.x, given.y, given.epsilons, given.norm, given.clip
    n = len(x_np)
    draws = validation.check_positive_int(draws, "draws")
    batch_size = validation.check_positive_int(batch_size or DEFAULT_BATCH_SIZE, "batch_size")
    validation.check_seed(seed)
    k = len(epsilons)
    out = np.empty((k, *x_np.shape), x_np.dtype)
    if n:
        logits_fn = validation.inference_fn(model)
        validation.model_classes(logits_fn, x_np, y_np)
        base_seed = int(np.random.default_rng(seed).integers(0, 2**62))
        for index, radius in enumerate(epsilons):
            for start in range(0, n, batch_size):
                x_batch = tf.constant(x_np[start:start + batch_size])
                y_batch = y_np[start:start + batch_size]
                eps_batch = tf.fill([tf.shape(x_batch)[0]], tf.constant(radius, x_batch.dtype))
                best = x_batch.numpy()
                fooled = np.zeros(len(y_batch), bool)
                for draw in range(draws):
                    # Draw d does not depend on ``draws``: more draws only add tries.
                    seed_tensor = tf.constant([base_seed + draw, index * n + start], tf.int64)
                    delta = norms.random_start(tf.shape(x_batch), eps_batch, norm, seed_tensor, x_batch.dtype)
                    candidate = x_batch + delta
                    if clip is not None:
                        candidate = tf.clip_by_value(candidate, clip[0], clip[1])
                    candidate = candidate.numpy()
                    wrong = np.argmax(logits_fn(tf.constant(candidate)).numpy(), axis=1) != y_batch
                    take = ~fooled  # keep the first fooling draw; otherwise the latest draw
                    best[take] = candidate[take]
                    fooled |= wrong
                out[index, start:start + batch_size] = best
    return given.output(out)
