"""The one gradient loop behind FGSM, BIM, PGD and MIM.

    x_0 = x + random start (optional)
    repeat `steps` times:
        g   = d objective(model(x_t)) / d x_t
        m   = decay * m + g / ||g||_1            (momentum; decay = 0 is plain PGD)
        x_t = clip(x + project(x_t + alpha * steepest_step(m) - x))

where objective = loss(logits, y) for untargeted attacks and -loss(logits, target) for
targeted ones. With ``keep_best`` the loop returns, per example, the best iterate seen
(a successful one first, then the highest objective), not just the last one.

Many epsilons per call: the batch is repeated once per epsilon and every example carries
its own radius and step size, so K epsilons cost one batched run, not K Python loops.

The loop runs as compiled segments of up to ``SEGMENT`` unrolled steps (``tf.function``,
one trace per (model, static settings, segment length)) with input signatures whose batch
dimension is ``None``, so batches of any size reuse the same traces.
Compiled functions are memoised per model object (weakly: they go when the model goes);
results never depend on that cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from attacks import losses, norms, precision, validation
from attacks.backend import tf
from attacks.compiled import CompiledCache

DEFAULT_BATCH_SIZE = 512
# Compiled loops kept per model. A caller passing a fresh lambda as loss on every call
# would otherwise add a traced graph per call; the oldest are dropped beyond this.
MAX_COMPILED_PER_MODEL = 16
# Steps per compiled call (unrolled; see _build); early stopping removes fooled examples
# between segments.
SEGMENT = 5
_COMPILED = CompiledCache(limit=MAX_COMPILED_PER_MODEL)


@dataclass(frozen=True)
class _Static:
    """Settings that shape the traced graph (one compiled function per distinct value)."""

    norm: str
    loss: Any
    targeted: bool
    random_start: bool
    momentum: bool
    keep_best: bool
    score_last: bool  # score the final iterate (needed to choose among restarts)
    clip: tuple[float, float] | None
    dtype: str
    example_shape: tuple[int, ...]


def better_of(best: tuple, candidate: tuple) -> tuple:
    """Per example, keep the better of two ``(x_adv, objective, success)`` triples.

    Success beats failure; between equals, the higher objective wins (ties keep ``best``).

    Args:
        best: The triple kept so far: points (N, ...), objectives (N,), success (N,) bool.
        candidate: A triple of the same shapes and dtypes.

    Returns:
        The merged triple ``(x_adv, objective, success)``, tensors of the same shapes; its
        success is ``best``'s or ``candidate``'s.
    """
    best_x, best_objective, best_success = best
    x_t, objective, success = candidate
    better = (success & ~best_success) | ((success == best_success) & (objective > best_objective))
    mask = tf.reshape(better, tf.concat([tf.shape(better), tf.ones([tf.rank(x_t) - 1], tf.int32)], 0))
    return (tf.where(mask, x_t, best_x), tf.where(better, objective, best_objective),
            best_success | success)


def _clip(x_t: tf.Tensor, clip: tuple[float, float] | None) -> tf.Tensor:
    return x_t if clip is None else tf.clip_by_value(x_t, clip[0], clip[1])


def start_point(x: tf.Tensor, eps: tf.Tensor, *, norm: str, random: bool, seed: tf.Tensor,
                clip: tuple[float, float] | None) -> tf.Tensor:
    """Draw the first iterate of the loop.

    Args:
        x: The clean inputs, a tensor (N, ...).
        eps: The per-example radius, a tensor (N,) in the dtype of ``x``.
        norm: ``"inf"`` or ``"l2"``.
        random: Start from a uniform random point of the eps-ball instead of ``x``.
        seed: A stateless seed, an int tensor of shape (2,); the same seed gives the same start.
        clip: The valid input range ``(low, high)``, or None.

    Returns:
        ``x`` itself, or a uniform random point of each example's eps-ball around it, kept
        inside ``clip``: a tensor shaped like ``x``, in its dtype.
    """
    if not random:
        return x
    delta = norms.random_start(tf.shape(x), eps, norm, seed, x.dtype)
    return _clip(x + norms.project(delta, eps, norm), clip)


def segments(steps: int, *, every_end_scored: bool = False) -> list[tuple[int, bool]]:
    """Split ``steps`` into compiled segments.

    Segments have ``SEGMENT`` steps (the last one the rest). Only the last segment scores
    the iterate it ends on (the next segment scores it as its first), unless
    ``every_end_scored`` (early stopping needs to know success at every boundary).

    Args:
        steps: The total number of steps, >= 1.
        every_end_scored: Score the iterate at the end of every segment.

    Returns:
        A list of ``(steps in the segment, whether its end is scored)`` pairs whose step
        counts sum to ``steps``.
    """
    sizes = [SEGMENT] * (steps // SEGMENT) + ([steps % SEGMENT] if steps % SEGMENT else [])
    return [(size, every_end_scored or i == len(sizes) - 1) for i, size in enumerate(sizes)]


def _build(logits_fn: Callable, static: _Static, steps: int, score_end: bool) -> tf.types.experimental.GenericFunction:
    """Compile ``steps`` iterations (unrolled) from a given iterate and momentum.

    The compiled function maps (x, x_t, velocity, y, eps, step_size, decay) to
    (x_best, objective, success, x_t, velocity): the best (or, without keep_best, the
    last) iterate with its score, and the state to continue from. The iterate the
    segment ends on is scored only with ``score_end``.

    Why unrolled segments and not one ``tf.range`` loop over all steps: with oneDNN on
    CPU, a traced while loop around a model with MaxPool gets oneDNN's pooling gradient
    in some traces and falls back to the much slower Eigen one in others (measured: about
    1 trace in 3, 20% slower as a whole). Unrolled steps got the fast kernel in every trace.
    """
    loss_fn = losses.get_loss(static.loss)
    sign = -1.0 if static.targeted else 1.0
    dtype = tf.as_dtype(static.dtype)
    image = tf.TensorSpec((None, *static.example_shape), dtype)
    signature = [
        image,                             # x, the clean inputs
        image,                             # x_t, the iterate to start from
        image,                             # velocity (momentum state)
        tf.TensorSpec((None,), tf.int64),  # y (targets when targeted)
        tf.TensorSpec((None,), dtype),     # eps per example
        tf.TensorSpec((None,), dtype),     # step size per example
        tf.TensorSpec((), dtype),          # momentum decay
    ]

    def objective_and_success(x_t, y):
        logits = tf.cast(logits_fn(x_t), dtype)  # a low-precision copy's logits, cast up
        objective = sign * tf.cast(loss_fn(logits, y), dtype)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int64)
        success = tf.equal(predicted, y) if static.targeted else tf.not_equal(predicted, y)
        return objective, success

    @tf.function(input_signature=signature, reduce_retracing=True)
    def attack(x, x_t, velocity, y, eps, step_size, decay):
        n = tf.shape(x)[0]
        best = (x_t, tf.fill([n], tf.constant(-np.inf, dtype)), tf.zeros([n], tf.bool))
        alpha = tf.reshape(step_size, tf.concat([[n], tf.ones([tf.rank(x) - 1], tf.int32)], 0))

        for _ in range(steps):
            with tf.GradientTape() as tape:
                tape.watch(x_t)
                objective, success = objective_and_success(x_t, y)
                total = tf.reduce_sum(objective)
            gradient = tape.gradient(total, x_t)
            if static.keep_best:
                best = better_of(best, (x_t, objective, success))
            if static.momentum:
                l1 = tf.reduce_sum(tf.abs(gradient), axis=tf.range(1, tf.rank(gradient)))
                l1 = tf.reshape(tf.maximum(l1, 1e-12), tf.shape(alpha))
                velocity = decay * velocity + gradient / l1
                gradient = velocity
            x_t = norms.ascent_step(x, x_t, gradient, alpha, eps, static.norm, static.clip)

        if static.keep_best:
            if score_end:
                best = better_of(best, (x_t, *objective_and_success(x_t, y)))
            return (*best, x_t, velocity)
        if static.score_last and score_end:
            return (x_t, *objective_and_success(x_t, y), x_t, velocity)
        # A single run without best-iterate tracking needs no score: skip a forward pass.
        return x_t, tf.zeros([n], dtype), tf.zeros([n], tf.bool), x_t, velocity

    return attack


def _attack_batch(compiled: Callable, x, y, eps, step_size, *, static: _Static, steps: int, decay: float,
                  seed: tf.Tensor, early_stop: bool):
    """One restart on one batch; returns (x_best, objective, success) tensors.

    ``compiled(steps, score_end)`` gives the compiled segment. With ``early_stop``,
    after each segment the examples already successful leave the batch, so later
    segments cost less. Examples that stay follow exactly the trajectory they would
    have followed without early stopping.
    """
    x_t = start_point(x, eps, norm=static.norm, random=static.random_start, seed=seed, clip=static.clip)
    velocity = tf.zeros_like(x)
    decay_t = tf.constant(decay, x.dtype)
    if not early_stop:
        best = None
        for size, score_end in segments(steps):
            out = compiled(size, score_end)(x, x_t, velocity, y, eps, step_size, decay_t)
            x_t, velocity = out[3], out[4]
            best = out[:3] if best is None or not static.keep_best else better_of(best, out[:3])
        return best

    best_x = x_t.numpy()
    x_t, velocity = best_x.copy(), velocity.numpy()
    x, y, eps, step_size = x.numpy(), y.numpy(), eps.numpy(), step_size.numpy()
    best_objective = np.full(len(x), -np.inf, x.dtype)
    best_success = np.zeros(len(x), bool)
    active = np.arange(len(x))
    for size, score_end in segments(steps, every_end_scored=True):
        if not active.size:
            break
        out = compiled(size, score_end)(*(tf.constant(a[active]) for a in (x, x_t, velocity, y, eps, step_size)),
                                        decay_t)
        merged = better_of((tf.constant(best_x[active]), tf.constant(best_objective[active]),
                            tf.constant(best_success[active])), out[:3])
        best_x[active], best_objective[active], best_success[active] = (t.numpy() for t in merged)
        x_t[active], velocity[active] = out[3].numpy(), out[4].numpy()
        active = active[~best_success[active]]
    return tf.constant(best_x), tf.constant(best_objective), tf.constant(best_success)


def _compiled(model: Any, static: _Static) -> Callable[[int, bool], Callable]:
    """``(steps, score_end) -> compiled segment`` for ``model`` and ``static``; each
    segment shape is traced once and reused."""
    per_model = _COMPILED.of(model)
    logits_fn = validation.inference_fn(model)

    def segment(steps: int, score_end: bool):
        return _COMPILED.get(per_model, (static, steps, score_end),
                             lambda: _build(logits_fn, static, steps, score_end))

    return segment


def run(model: Any, x: Any, y: Any, *, eps: float | Sequence[float], norm: Any = "inf", steps: int = 40,
        step_size: float | None = None, rel_step_size: float = 2.5, random_start: bool = True,
        restarts: int = 1, targeted: bool = False, loss: Any = "ce", decay: float = 0.0,
        keep_best: bool = True, early_stop: bool = False, clip: tuple[float, float] | None = (0.0, 1.0),
        seed: int | None = None, batch_size: int | None = None, compute_dtype: str | None = None):
    """Run the shared gradient loop; the public attacks are presets of this function.

    See :func:`attacks.pgd` for the arguments the presets share.

    Args:
        model: The attacked model: any callable mapping a float batch to **logits** (N, C),
            a tf-keras or Keras 3 model, a ``tf.Module`` or a function. Called in inference
            mode (``training=False``).
        x: The clean inputs, an array or tensor (N, ...), floating point, inside ``clip``.
            Never rescaled or clipped.
        y: Integer labels (N,); the target classes when ``targeted=True``.
        eps: The radius: a float, or a sequence of K floats computed in one batched run;
            each finite and >= 0 (eps = 0 returns ``x``).
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
        steps: Gradient steps per restart (>= 1).
        step_size: Size of one step; None: ``rel_step_size * eps / steps`` for each epsilon.
        rel_step_size: The step size relative to ``eps / steps`` when ``step_size`` is None (> 0).
        random_start: Start from a uniform random point of the eps-ball instead of ``x``.
        restarts: Random starts per example (>= 1); the best point over all of them is
            returned.
        targeted: Move towards the class ``y`` instead of away from it.
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (C&W logit margin) or a callable
            ``loss(logits, labels) -> (N,)``.
        decay: The momentum decay factor in [0, 10]; 0 turns momentum off (PGD), > 0 is MIM.
        keep_best: Return, per example, the best iterate seen (a successful one first, then the
            highest objective) rather than the last one.
        early_stop: Stop iterating on an example once it is misclassified (on target); needs
            ``keep_best``. The same robust accuracy, less work, but the returned point is
            the first successful one found, not the highest-loss one.
        clip: The valid input range ``(low, high)``; None for unbounded inputs.
        seed: Seeds the random start; the same seed (and ``batch_size``) gives the same
            result. None draws fresh entropy.
        batch_size: Examples per compiled call (None: 512); the K*N stacked examples are
            split into batches of this size.
        compute_dtype: None (the model as it is) or ``"bfloat16"`` / ``"float16"`` /
            ``"float32"``: take gradients with a copy of a Keras model computing in that dtype,
            up to twice as fast on hardware with 16-bit units. ``x_adv`` keeps its guarantees
            (ball, clip, dtype); success is judged by the copy, so judge results with the
            original model and report final numbers from float32 attacks. See
            :mod:`attacks.precision`.

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out): shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons.
        Every ``x_adv`` is within ``eps`` of ``x`` in the chosen norm and inside ``clip``.
        An empty batch gives an empty result.

    Raises:
        TypeError: ``model`` is not callable, ``x`` is not floating point, ``y`` does not
            hold integers, ``eps`` is not numeric, or ``seed`` is not an int.
        ValueError: A value named in the message is wrong: NaN in ``x``, ``x`` outside
            ``clip``, a length mismatch, labels outside the model's classes, negative
            ``eps``, ``steps``, ``restarts`` or ``batch_size`` < 1, ``step_size`` <= 0,
            ``decay`` outside [0, 10], ``rel_step_size`` <= 0, ``early_stop`` without
            ``keep_best``, an unknown ``norm``, ``loss`` or ``compute_dtype``, a model that
            returns probabilities, or a model that ``compute_dtype`` cannot copy.
    """
    given = validation.attack_input(x, y, eps, norm, clip)
    x_np, y_np, epsilons, norm, clip = given.x, given.y, given.epsilons, given.norm, given.clip
    n = len(x_np)
    steps = validation.check_positive_int(steps, "steps")
    restarts = validation.check_positive_int(restarts, "restarts")
    batch_size = validation.check_positive_int(batch_size or DEFAULT_BATCH_SIZE, "batch_size")
    if step_size is not None:
        step_size = validation.check_positive_float(step_size, "step_size")
    rel_step_size = validation.check_positive_float(rel_step_size, "rel_step_size")
    if not 0.0 <= float(decay) <= 10.0:
        raise ValueError(f"decay must be in [0, 10], got {decay!r}")
    losses.get_loss(loss)
    if early_stop and not keep_best:
        raise ValueError("early_stop=True needs keep_best=True")
    validation.check_seed(seed)
    compute_dtype = precision.check_compute_dtype(compute_dtype)

    k = len(epsilons)
    if n == 0:
        return given.output(np.zeros((k, 0, *x_np.shape[1:]), x_np.dtype))

    dtype = x_np.dtype
    validation.model_classes(validation.inference_fn(model), x_np, y_np)

    static = _Static(norm=norm, loss=loss, targeted=bool(targeted), random_start=bool(random_start),
                     momentum=float(decay) > 0, keep_best=bool(keep_best),
                     score_last=restarts > 1, clip=clip, dtype=dtype.name,
                     example_shape=tuple(x_np.shape[1:]))
    compiled = _compiled(precision.compute_model(model, compute_dtype), static)

    # Stack the batch once per epsilon: (K*N, ...), each row with its own radius and step.
    x_all = np.broadcast_to(x_np, (k, *x_np.shape)).reshape(k * n, *x_np.shape[1:])
    y_all = np.tile(y_np, k)
    eps_all = np.repeat(epsilons, n).astype(dtype)
    steps_all = (np.full(k * n, step_size) if step_size is not None
                 else rel_step_size * eps_all / steps).astype(dtype)
    base_seed = int(np.random.default_rng(seed).integers(0, 2**62))

    out = np.empty_like(x_all)
    for start in range(0, k * n, batch_size):
        rows = slice(start, start + batch_size)
        args = [tf.constant(a[rows]) for a in (x_all, y_all, eps_all, steps_all)]
        best = None
        for restart in range(restarts):
            seed_tensor = tf.constant([base_seed, start * restarts + restart], tf.int64)
            todo = None
            if early_stop and best is not None:
                # AutoAttack's habit: a restart only attacks the examples still standing.
                todo = np.flatnonzero(~best[2].numpy())
                if not todo.size:
                    break
            batch_args = args if todo is None else [tf.gather(a, todo) for a in args]
            candidate = _attack_batch(compiled, *batch_args, static=static, steps=steps, decay=decay,
                                      seed=seed_tensor, early_stop=early_stop)
            if best is None:
                best = candidate
            elif todo is None:
                best = better_of(best, candidate)
            else:
                merged = better_of(tuple(tf.gather(t, todo) for t in best), candidate)
                index = tf.constant(todo[:, None])
                best = tuple(tf.tensor_scatter_nd_update(t, index, m) for t, m in zip(best, merged))
        out[rows] = best[0].numpy()

    return given.output(out.reshape(k, *x_np.shape))


def trace_count(model: Any) -> int:
    """Count how many times the loops compiled for ``model`` have been traced (for tests).

    Args:
        model: A model that has been attacked (or not).

    Returns:
        The total tracing count of its compiled segments, an int >= 0 (0 for a model never
        attacked).
    """
    return _COMPILED.trace_count(model)
