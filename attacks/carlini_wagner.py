"""Carlini & Wagner L2 (2017, "Towards evaluating the robustness of neural networks"): the
smallest L2 perturbation that changes the prediction, found by optimisation.

    x'(w) = low + (high - low) * (tanh(w) + 1) / 2        (always inside the clip box)
    minimise over w:  ||x'(w) - x||_2^2 + c * f(x'(w))
    f = max(z_y - max_{k != y} z_k + confidence, 0)        untargeted (z: logits)
    f = max(max_{k != t} z_k - z_t + confidence, 0)        targeted at t

For each batch, ``binary_search_steps`` runs of Adam (``steps`` steps each, from w = atanh
of x) with a per-example constant c, starting at ``initial_const``: after a run, c goes
down (to the middle of its bounds) where the run fooled the model, up where it did not
(x10 while no upper bound is known, else to the middle). Each example keeps the
smallest-L2 iterate that fooled the model with the required margin, over all runs; an
example never fooled comes back as x itself. With ``clip=None`` there is no box and w is
the input itself.

Deviations from the paper and its code, and why:

* Early abort is per example: every ``steps // 10`` steps an example whose loss has not
  fallen below 0.9999 of its value at the last check stops moving, and the run ends once
  every example has stopped. The reference code stops the whole batch on the summed loss,
  so an example's result depended on the rest of its batch.
* The distance is measured to x itself, not to its tanh round trip (which the reference
  code shrinks by 1e-6 to keep atanh finite at the box edges), so a returned L2 is the
  true one.
* Success needs the margin: untargeted, max_{k != y} z_k - z_y >= confidence and a wrong
  prediction; targeted, z_t - max_{k != t} z_k >= confidence and prediction t.
  (cleverhans 4.0.0 adds the confidence to every logit, which leaves the argmax unchanged.)
* The reference code's final run at the upper bound for ``binary_search_steps >= 10`` is
  not done.

Compiled as the other attacks: one run of Adam is a ``tf.while_loop`` inside a
``tf.function`` whose batch dimension is ``None`` (a new batch size or number of steps
does not retrace), memoised per model; the binary search runs in Python between runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from attacks import validation
from attacks.backend import tf
from attacks.compiled import CompiledCache

DEFAULT_BATCH_SIZE = 512
ABORT_TOLERANCE = 0.9999  # the paper's: an example stops when its loss fell by less than 0.01 %
ATANH_SHRINK = 1 - 1e-6  # keeps atanh finite for inputs on the edges of the clip box
NO_BOUND = 1e10  # upper bound on c before any run fooled the model
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8
MAX_COMPILED_PER_MODEL = 8

_COMPILED = CompiledCache(limit=MAX_COMPILED_PER_MODEL)


@dataclass(frozen=True)
class _Static:
    """What a compiled run depends on besides its tensors."""

    targeted: bool
    clip: tuple[float, float] | None
    dtype: str
    example_shape: tuple[int, ...]


def carlini_wagner_l2(model: Any, x: Any, y: Any, *, confidence: float = 0.0, steps: int = 1000,
                      binary_search_steps: int = 9, learning_rate: float = 0.01, initial_const: float = 1e-3,
                      clip: tuple[float, float] | None = (0.0, 1.0), batch_size: int | None = None,
                      targeted: bool = False) -> Any:
    """Carlini & Wagner's L2 attack: per example, the smallest perturbation found that fools.

    There is no radius: the attack minimises the L2 distance; measure it on the result.

    Args:
        model: A Keras model or callable mapping a batch (N, ...) to logits (N, C).
        x: The inputs, (N, ...) floating point, NumPy array or tensor, inside ``clip``.
        y: The integer labels (N,); with ``targeted=True`` the target classes.
        confidence: The logit margin kappa >= 0 a point must reach to count as fooled.
        steps: Adam steps per run of the binary search, >= 1.
        binary_search_steps: Runs of the binary search over the constant c, >= 1.
        learning_rate: Adam's step size, > 0.
        initial_const: The first c of every example, > 0.
        clip: The valid input range ``(low, high)``, or None for unbounded inputs
            (then no tanh change of variables).
        batch_size: Examples per compiled call, default 512.
        targeted: Whether ``y`` holds target classes to reach instead of true labels.

    Returns:
        ``x_adv`` shaped like ``x``, with its dtype and array type (NumPy in, NumPy out;
        tensor in, tensor out), inside ``clip``. Per example: the successful point of
        smallest L2 distance found (margin >= ``confidence``), else ``x`` itself.

    Raises:
        ValueError: NaN or infinite values in x, x outside clip, a malformed clip, length
            mismatch, labels outside the model's classes, steps/binary_search_steps/
            batch_size < 1, confidence < 0 or not finite, learning_rate or initial_const
            <= 0, a model returning probabilities instead of logits.
        TypeError: Non-float x, non-integer labels, a non-numeric parameter, a model that
            is not callable.
    """
    clip = validation.check_clip(clip)
    x_np = validation.as_array(x, "x")
    validation.check_x(x_np, clip)
    y_np = validation.check_labels(y, len(x_np))
    confidence = _check_confidence(confidence)
    steps = validation.check_positive_int(steps, "steps")
    binary_search_steps = validation.check_positive_int(binary_search_steps, "binary_search_steps")
    learning_rate = validation.check_positive_float(learning_rate, "learning_rate")
    initial_const = validation.check_positive_float(initial_const, "initial_const")
    batch_size = validation.check_positive_int(DEFAULT_BATCH_SIZE if batch_size is None else batch_size, "batch_size")
    is_tensor = isinstance(x, (tf.Tensor, tf.Variable))
    if len(x_np) == 0:
        return tf.constant(x_np) if is_tensor else x_np.copy()
    validation.model_classes(validation.inference_fn(model), x_np, y_np)

    static = _Static(targeted=bool(targeted), clip=clip, dtype=_work_dtype(x_np.dtype),
                     example_shape=tuple(x_np.shape[1:]))
    run = _compiled(model, static)
    settings = _Settings(confidence=confidence, steps=steps, binary_search_steps=binary_search_steps,
                         learning_rate=learning_rate, initial_const=initial_const)
    result = np.concatenate([_attack_batch(run, x_np[start:start + batch_size], y_np[start:start + batch_size],
                                           settings, static)
                             for start in range(0, len(x_np), batch_size)]).astype(x_np.dtype)
    if clip is not None:
        result = np.clip(result, clip[0], clip[1])
    return tf.constant(result) if is_tensor else result


def _check_confidence(confidence: Any) -> float:
    try:
        value = float(confidence)
    except (TypeError, ValueError) as error:
        raise TypeError(f"confidence must be a number, got {confidence!r}") from error
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"confidence must be finite and >= 0 (a logit margin), got {confidence!r}")
    return value


def _work_dtype(dtype: np.dtype) -> str:
    """float64 inputs are attacked in float64, all others in float32 (atanh near the box
    edges needs more than 16 bits)."""
    return "float64" if dtype == np.float64 else "float32"


@dataclass(frozen=True)
class _Settings:
    confidence: float
    steps: int
    binary_search_steps: int
    learning_rate: float
    initial_const: float


def _attack_batch(run: Callable, x: np.ndarray, y: np.ndarray, settings: _Settings, static: _Static) -> np.ndarray:
    """The binary search over c for one batch; the best point per example, as NumPy."""
    dtype = static.dtype
    x_t = tf.constant(x.astype(dtype))
    w0 = _to_tanh_space(x_t, static.clip)
    n = len(x)
    const = np.full(n, settings.initial_const, dtype)
    lower, upper = np.zeros(n, dtype), np.full(n, NO_BOUND, dtype)
    best_l2, best_x = tf.fill([n], tf.constant(np.inf, dtype)), x_t
    labels = tf.constant(y)
    scalars = {"confidence": tf.constant(settings.confidence, dtype),
               "learning_rate": tf.constant(settings.learning_rate, dtype),
               "steps": tf.constant(settings.steps, tf.int32)}
    for _ in range(settings.binary_search_steps):
        best_l2, best_x, fooled = run(x_t, w0, labels, tf.constant(const), best_l2, best_x, **scalars)
        fooled = fooled.numpy()
        upper = np.where(fooled, np.minimum(upper, const), upper)
        lower = np.where(fooled, lower, np.maximum(lower, const))
        bounded = upper < NO_BOUND / 10
        const = np.where(bounded, (lower + upper) / 2, const * 10).astype(dtype)
    return best_x.numpy()


def _to_tanh_space(x: tf.Tensor, clip: tuple[float, float] | None) -> tf.Tensor:
    if clip is None:
        return x
    unit = (x - clip[0]) / (clip[1] - clip[0]) * 2 - 1
    return tf.atanh(tf.clip_by_value(unit, -1.0, 1.0) * ATANH_SHRINK)


def _from_tanh_space(w: tf.Tensor, clip: tuple[float, float] | None) -> tf.Tensor:
    if clip is None:
        return w
    return clip[0] + (clip[1] - clip[0]) * (tf.tanh(w) + 1) / 2


def _margins(logits: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(z_label, max of the other logits), each (N,)."""
    num_classes = tf.shape(logits)[-1]
    is_label = tf.one_hot(labels, num_classes, on_value=True, off_value=False, dtype=tf.bool)
    label_logit = tf.reduce_sum(tf.where(is_label, logits, tf.zeros_like(logits)), axis=-1)
    other_max = tf.reduce_max(tf.where(is_label, tf.fill(tf.shape(logits), logits.dtype.min), logits), axis=-1)
    return label_logit, other_max


def _build(logits_fn: Callable, static: _Static) -> Callable:
    """The compiled run: ``(x, w0, labels, const, best_l2, best_x, confidence, learning_rate,
    steps) -> (best_l2, best_x, fooled)``, one run of Adam from ``w0``; ``fooled`` (N,)
    says whether this run reached the margin."""
    dtype = tf.as_dtype(static.dtype)
    image = tf.TensorSpec((None, *static.example_shape), dtype)
    per_example = tf.TensorSpec((None,), dtype)
    scalar = tf.TensorSpec((), dtype)
    axes = list(range(1, 1 + len(static.example_shape)))

    def per_row(flags: tf.Tensor) -> tf.Tensor:
        return tf.reshape(flags, [-1] + [1] * len(static.example_shape))

    def margin_and_success(x_new, labels, confidence):
        logits = tf.cast(logits_fn(x_new), dtype)  # a float64 attack on a float32 model: cast up
        label_logit, other_max = _margins(logits, labels)
        margin = label_logit - other_max if static.targeted else other_max - label_logit
        return margin, (margin >= confidence) & (margin > 0)

    def evaluate(w, x, labels, const, confidence):
        with tf.GradientTape() as tape:
            tape.watch(w)
            x_new = _from_tanh_space(w, static.clip)
            margin, success = margin_and_success(x_new, labels, confidence)
            l2 = tf.reduce_sum(tf.square(x_new - x), axis=axes)
            loss = l2 + const * tf.maximum(confidence - margin, 0)
        return x_new, l2, loss, success, tape.gradient(loss, w)

    @tf.function(input_signature=[image, image, tf.TensorSpec((None,), tf.int64), per_example, per_example, image,
                                  scalar, scalar, tf.TensorSpec((), tf.int32)])
    def run(x, w0, labels, const, best_l2, best_x, confidence, learning_rate, steps):
        check_every = tf.maximum(steps // 10, 1)
        n = tf.shape(x)[0]
        _, clean_success = margin_and_success(x, labels, confidence)  # x itself, not its tanh round trip
        best_l2 = tf.where(clean_success, tf.zeros_like(best_l2), best_l2)
        best_x = tf.where(per_row(clean_success), x, best_x)
        zeros = tf.zeros_like(w0)

        def body(i, w, m, v, active, previous, best_l2, best_x, success_seen):
            x_new, l2, loss, success, gradient = evaluate(w, x, labels, const, confidence)
            better = success & (l2 < best_l2)
            best_l2 = tf.where(better, l2, best_l2)
            best_x = tf.where(per_row(better), x_new, best_x)
            success_seen = success_seen | success
            checkpoint = tf.equal(i % check_every, 0)
            stalled = checkpoint & (i > 0) & (loss > previous * ABORT_TOLERANCE)
            active = active & ~stalled
            previous = tf.where(checkpoint, loss, previous)
            t = tf.cast(i + 1, dtype)
            m_next = ADAM_BETA1 * m + (1 - ADAM_BETA1) * gradient
            v_next = ADAM_BETA2 * v + (1 - ADAM_BETA2) * tf.square(gradient)
            step = learning_rate * (m_next / (1 - ADAM_BETA1 ** t)) / (
                tf.sqrt(v_next / (1 - ADAM_BETA2 ** t)) + ADAM_EPSILON)
            moving = per_row(active)
            return (i + 1, tf.where(moving, w - step, w), tf.where(moving, m_next, m), tf.where(moving, v_next, v),
                    active, previous, best_l2, best_x, success_seen)

        def cond(i, w, m, v, active, previous, best_l2, best_x, success_seen):
            return (i < steps) & tf.reduce_any(active)

        state = (tf.constant(0), w0, zeros, zeros, tf.ones([n], tf.bool), tf.fill([n], tf.constant(np.inf, dtype)),
                 best_l2, best_x, clean_success)
        _, w, _, _, _, _, best_l2, best_x, success_seen = tf.while_loop(cond, body, state)
        x_last, l2, _, success, _ = evaluate(w, x, labels, const, confidence)
        better = success & (l2 < best_l2)
        return (tf.where(better, l2, best_l2), tf.where(per_row(better), x_last, best_x), success_seen | success)

    return run


def _compiled(model: Any, static: _Static) -> Callable:
    """The compiled run for ``model`` and ``static`` (see :func:`_build`), traced once and
    kept with the model (at most ``MAX_COMPILED_PER_MODEL`` per model)."""
    per_model = _COMPILED.of(model)
    return _COMPILED.get(per_model, static, lambda: _build(validation.inference_fn(model), static))


def trace_count(model: Any) -> int:
    """How many times the runs compiled for ``model`` have been traced (for tests).

    Args:
        model: A model attacked before.

    Returns:
        The number of traces, >= 0.
    """
    return _COMPILED.trace_count(model)
