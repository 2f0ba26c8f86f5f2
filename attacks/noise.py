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
    draw. Needs no gradient: only ``draws`` forward passes per example. Returns
    ``x_adv`` shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons; NumPy in,
    NumPy out; tensor in, tensor out. Inside the ball and inside ``clip``. The same
    ``seed`` (and ``batch_size``) gives the same result. Same input errors as
    :func:`attacks.pgd`.
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
