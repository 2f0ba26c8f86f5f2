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
from attacks._tensorflow import tf

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
    is_tensor = isinstance(x, (tf.Tensor, tf.Variable))
    clip = validation.check_clip(clip)
    x_np = validation.as_array(x, "x")
    validation.check_x(x_np, clip)
    n = len(x_np)
    y_np = validation.check_labels(y, n)
    epsilons, scalar_eps = validation.check_eps(eps)
    norm = norms.canonical_norm(norm)
    draws = validation.check_positive_int(draws, "draws")
    batch_size = validation.check_positive_int(batch_size or DEFAULT_BATCH_SIZE, "batch_size")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    k = len(epsilons)
    out = np.empty((k, *x_np.shape), x_np.dtype)
    if n:
        logits_fn = validation.inference_fn(model)
        num_classes = validation.check_model_output(logits_fn(tf.constant(x_np[:validation.PROBE_SIZE])),
                                                    min(n, validation.PROBE_SIZE))
        if y_np.max() >= num_classes:
            raise ValueError(f"label {int(y_np.max())} is outside the model's {num_classes} classes "
                             f"(0..{num_classes - 1})")
        base_seed = int(np.random.default_rng(seed).integers(0, 2**62))
        for index, radius in enumerate(epsilons):
            for start in range(0, n, batch_size):
                x_batch = tf.constant(x_np[start:start + batch_size])
                y_batch = y_np[start:start + batch_size]
                eps_batch = tf.fill([tf.shape(x_batch)[0]], tf.constant(radius, x_batch.dtype))
                best = x_batch.numpy()
                fooled = np.zeros(len(y_batch), bool)
                for draw in range(draws):
                    seed_tensor = tf.constant([base_seed, (index * n + start) * draws + draw], tf.int64)
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
    result = out[0] if scalar_eps else out
    return tf.constant(result) if is_tensor else result
