"""DeepFool (Moosavi-Dezfooli et al. 2016, "DeepFool: a simple and accurate method to fool
deep neural networks"): a minimal-perturbation attack, no eps.

At each step the model is linearised around the iterate ``x_t``; for every candidate class
``k`` (the ``candidates`` classes with the highest clean logits, the true class ``y``
excluded)::

    f_k = z_k(x_t) - z_y(x_t)            w_k = grad f_k(x_t)
    d_k = |f_k| / ||w_k||_q              the distance to the linearised boundary y | k

with ``q`` the dual norm (2 for L2, 1 for L-inf). The closest boundary ``k* = argmin d_k`` is
stepped onto::

    L2:     r = (d_k* + 1e-4) * w_k* / ||w_k*||_2
    L-inf:  r = (d_k* + 1e-4) * sign(w_k*)

    p_t = p_{t-1} + r          x_{t+1} = clip(x + (1 + overshoot) * p_t)

(the ``1e-4`` lands the step just across the boundary rather than on it, as in foolbox).
An example stops as soon as it is misclassified; the first misclassified iterate is
returned, or the last one if ``steps`` steps did not fool the model. Already misclassified
inputs come back unchanged. For an affine model one step finds the exact minimal
perturbation; for a network the result is an upper bound on it, usually a tight one.

All candidate gradients come from one forward pass and ``tape.batch_jacobian`` in a
``tf.function`` whose batch dimension is ``None`` (a new batch size does not retrace),
memoised per model. Between steps the fooled examples leave the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from attacks import norms, validation
from attacks.backend import tf
from attacks.compiled import CompiledCache

# Smaller than the gradient attacks' 512: the Jacobian holds `candidates` gradients per example.
DEFAULT_BATCH_SIZE = 128
BOUNDARY_MARGIN = 1e-4  # added to the step's length, so the step crosses the linearised boundary
_TINY = 1e-12
MAX_COMPILED_PER_MODEL = 16
_COMPILED = CompiledCache(limit=MAX_COMPILED_PER_MODEL)

Clip = tuple[float, float] | None


@dataclass(frozen=True)
class _Static:
    """Settings that shape the traced graphs (one set of compiled functions per value)."""

    norm: str
    candidates: int
    overshoot: float
    clip: tuple[float, float] | None
    dtype: str
    example_shape: tuple[int, ...]


def deepfool(model: Any, x: Any, y: Any, *, norm: Any = "l2", steps: int = 50, overshoot: float = 0.02,
             candidates: int = 10, clip: Clip = (0.0, 1.0), batch_size: int | None = None):
    """DeepFool (Moosavi-Dezfooli et al. 2016): a small perturbation that fools the model.

    Step after step, each example crosses the nearest linearised decision boundary until
    the model misclassifies it. Untargeted and without a radius: each example moves only
    as far as it takes to be misclassified (times ``1 + overshoot``). See the module
    docstring of :mod:`attacks.deep_fool` for the algorithm.

    Args:
        model: The attacked model: any callable mapping a float batch to **logits** (N, C),
            a tf-keras or Keras 3 model, a ``tf.Module`` or a function. Called in inference
            mode (``training=False``).
        x: The clean inputs, an array or tensor (N, ...), floating point, inside ``clip``.
            Never rescaled or clipped.
        y: Integer labels (N,), the true classes.
        norm: ``"l2"`` (or ``2``) or ``"inf"`` (or ``np.inf``): the norm in which the
            perturbation is made small.
        steps: The most linearisation steps per example (>= 1).
        overshoot: How far past the boundary to go, relative to the accumulated perturbation
            (finite, >= 0); the paper's 0.02 by default.
        candidates: How many classes to consider, the ones with the highest clean logits,
            the true class excluded (>= 1; more than C - 1 means all C - 1 other classes).
        clip: The valid input range ``(low, high)``; None for unbounded inputs.
        batch_size: Examples per compiled call (None: 128).

    Returns:
        ``x_adv`` with the shape, dtype and array type of ``x`` (NumPy in, NumPy out; tensor
        in, tensor out), inside ``clip``: per example the first misclassified iterate, the
        input itself if the model already misclassifies it, or the last iterate if ``steps``
        steps did not fool the model. An empty batch gives an empty result.

    Raises:
        TypeError: ``model`` is not callable, ``x`` is not floating point, ``y`` does not
            hold integers, or ``overshoot`` is not a number.
        ValueError: A value named in the message is wrong: NaN in ``x``, ``x`` outside
            ``clip``, a length mismatch, labels outside the model's classes, ``steps``,
            ``candidates`` or ``batch_size`` < 1, a negative or infinite ``overshoot``, an
            unknown ``norm``, or a model that returns probabilities.
    """
    clip = validation.check_clip(clip)
    x_np = validation.as_array(x, "x")
    validation.check_x(x_np, clip)
    y_np = validation.check_labels(y, len(x_np))
    norm = norms.canonical_norm(norm)
    steps = validation.check_positive_int(steps, "steps")
    candidates = validation.check_positive_int(candidates, "candidates")
    overshoot = _check_overshoot(overshoot)
    batch_size = validation.check_positive_int(batch_size or DEFAULT_BATCH_SIZE, "batch_size")
    is_tensor = isinstance(x, (tf.Tensor, tf.Variable))
    if len(x_np) == 0:
        return tf.constant(x_np) if is_tensor else x_np.copy()

    logits_fn = validation.inference_fn(model)
    num_classes = validation.model_classes(logits_fn, x_np, y_np)
    static = _Static(norm=norm, candidates=min(candidates, num_classes - 1), overshoot=overshoot, clip=clip,
                     dtype=x_np.dtype.name, example_shape=tuple(x_np.shape[1:]))
    compiled = _compiled(model, static)

    out = np.empty_like(x_np)
    for start in range(0, len(x_np), batch_size):
        rows = slice(start, start + batch_size)
        out[rows] = _attack_batch(compiled, x_np[rows], y_np[rows], static, steps)
    return tf.constant(out) if is_tensor else out


def _check_overshoot(overshoot: Any) -> float:
    try:
        value = float(overshoot)
    except (TypeError, ValueError) as error:
        raise TypeError(f"overshoot must be a number, got {overshoot!r}") from error
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"overshoot must be finite and >= 0, got {overshoot!r}")
    return value


def candidate_classes(clean_logits: np.ndarray, y: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` classes with the highest clean logits, the true class left out.

    Args:
        clean_logits: The model's logits on the clean inputs, (N, C).
        y: The true labels, (N,) int.
        count: The number of classes to keep, 1 <= count <= C - 1.

    Returns:
        An int64 array (N, count): per example, class indices by decreasing logit, none
        equal to its label.
    """
    scores = clean_logits.astype(np.float64, copy=True)
    scores[np.arange(len(y)), y] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :count].astype(np.int64)


def _attack_batch(compiled: Callable, x: np.ndarray, y: np.ndarray, static: _Static, steps: int) -> np.ndarray:
    """DeepFool on one batch; fooled examples leave the batch after every step."""
    targets = candidate_classes(compiled("logits")(tf.constant(x)).numpy(), y, static.candidates)
    x_adv = x.copy()
    perturbation = np.zeros_like(x)
    active = np.arange(len(x))
    step = compiled("step")
    for _ in range(steps):
        x_t, fooled, new_perturbation = step(*(tf.constant(a[active]) for a in (x, perturbation, y, targets)))
        x_t, fooled = x_t.numpy(), fooled.numpy()
        x_adv[active] = x_t  # fooled rows keep this point; the others are overwritten later
        perturbation[active] = new_perturbation.numpy()
        active = active[~fooled]
        if not active.size:
            return x_adv
    x_adv[active] = compiled("apply")(tf.constant(x[active]), tf.constant(perturbation[active])).numpy()
    return x_adv


def _build(logits_fn: Callable, static: _Static) -> Callable[[str], Callable]:
    """``part -> compiled function``: ``"logits"`` (x -> logits), ``"apply"`` (x, p -> the
    iterate) or ``"step"`` ((x, p, y, targets) -> (iterate, fooled there, p after one more
    step))."""
    dtype = tf.as_dtype(static.dtype)
    image = tf.TensorSpec((None, *static.example_shape), dtype)
    labels = tf.TensorSpec((None,), tf.int64)
    targets_spec = tf.TensorSpec((None, static.candidates), tf.int64)
    feature_axes = list(range(2, 2 + len(static.example_shape)))

    def logits_of(x_t):
        return tf.cast(logits_fn(x_t), dtype)

    def apply(x, perturbation):
        x_t = x + (1.0 + static.overshoot) * perturbation
        return x_t if static.clip is None else tf.clip_by_value(x_t, *static.clip)

    def step(x, perturbation, y, targets):
        x_t = apply(x, perturbation)
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            logits = logits_of(x_t)
            true_logit = tf.gather(logits, y, axis=1, batch_dims=1)
            differences = tf.gather(logits, targets, axis=1, batch_dims=1) - true_logit[:, None]  # (N, K)
        fooled = tf.not_equal(tf.argmax(logits, axis=-1, output_type=tf.int64), y)
        gradients = tape.batch_jacobian(differences, x_t)  # (N, K, ...)
        if static.norm == "l2":
            dual = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=feature_axes))
        else:
            dual = tf.reduce_sum(tf.abs(gradients), axis=feature_axes)
        distances = tf.abs(differences) / (dual + _TINY)  # (N, K)
        closest = tf.argmin(distances, axis=1, output_type=tf.int64)
        distance = tf.gather(distances, closest, axis=1, batch_dims=1) + BOUNDARY_MARGIN
        gradient = tf.gather(gradients, closest, axis=1, batch_dims=1)  # (N, ...)
        if static.norm == "l2":
            direction = gradient / _per_example(tf.gather(dual, closest, axis=1, batch_dims=1) + _TINY, gradient)
        else:
            direction = tf.sign(gradient)
        return x_t, fooled, perturbation + _per_example(distance, gradient) * direction

    def part(name: str) -> Callable:
        if name == "logits":
            return tf.function(logits_of, input_signature=[image])
        if name == "apply":
            return tf.function(apply, input_signature=[image, image])
        return tf.function(step, input_signature=[image, image, labels, targets_spec])

    return part


def _per_example(value: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Reshape (N,) to (N, 1, ..., 1) so it broadcasts against ``like``."""
    return tf.reshape(value, tf.concat([tf.shape(value), tf.ones([tf.rank(like) - 1], tf.int32)], 0))


def _compiled(model: Any, static: _Static) -> Callable[[str], Callable]:
    """``part -> compiled function`` for ``model`` and ``static`` (see :func:`_build`), each
    traced once and kept with the model (at most ``MAX_COMPILED_PER_MODEL``)."""
    return _COMPILED.parts(model, static, _build(validation.inference_fn(model), static))


def trace_count(model: Any) -> int:
    """How many times the functions compiled for ``model`` have been traced (for tests).

    Args:
        model: A model that has been attacked (or not).

    Returns:
        The number of traces, >= 0 (0 for a model never attacked).
    """
    return _COMPILED.trace_count(model)
