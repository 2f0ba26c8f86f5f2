"""APGD, Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"): PGD whose step size tunes itself.

    x_0 = uniform random point of the eps-ball;  step = 2 * eps
    repeat `steps` times:
        z       = P(x_t + step * steepest_step(g_t))
        x_{t+1} = P(x_t + a (z - x_t) + (1 - a) (x_t - x_{t-1}))     a = 1 on the first step, else 0.75
        at each checkpoint: if fewer than rho = 0.75 of the steps since the last checkpoint
        raised the loss, or the step was not halved at the last checkpoint and the best loss
        has not risen since: halve the step and go on from the best point found

where P clips to the clip range, then projects onto the eps-ball (see :func:`_feasible` for
why in this order). The checkpoints are the paper's
``ceil(p_j * steps)`` with ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03,
0.06)``: for 100 steps after 22, 41, 57, 70, 80, 87, 93 and 99 steps.

Losses: cross-entropy (APGD-CE) or the difference of logits ratio (APGD-DLR, invariant to
shifting and scaling the logits); ``targeted=True`` runs once per target class, the
``target_classes`` most likely wrong classes of the clean input, ascending the targeted
DLR (APGD-T) or descending the target's cross-entropy. Success is always a wrong
prediction: the targets are a means, as in AutoAttack.

Randomized models (``eot_iter`` > 1, AutoAttack's ``rand`` version): every loss and gradient
is the mean over ``eot_iter`` forward and backward passes at the same point (expectation over
transformation, Athalye et al. 2018), so a step follows the average of the draws' gradients
and the best point is chosen by the average loss; success is a wrong prediction of the
draws' mean logits. The draws run as one batch of ``eot_iter`` x B images.

Cheap by construction, like AutoAttack's ensemble: examples already misclassified are not
attacked, an example leaves the batch once it is fooled (its first successful iterate is
returned), and every restart and target attacks only the examples still standing.

Compiled as in :mod:`attacks.loop`: segments of ``loop.SEGMENT`` unrolled steps, or of one
step to reach a checkpoint (``tf.function`` with a ``GradientTape`` inside, input signatures
whose batch dimension is ``None``, so neither a new batch size nor a new number of steps
retraces), memoised per model; between segments the fooled examples leave the batch and
the checkpoint rule runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np

from attacks import losses, loop, norms, precision, validation
from attacks.backend import tf
from attacks.compiled import CompiledCache
from attacks.draws import mean_over_draws, tile_draws

DEFAULT_BATCH_SIZE = 512
APGD_LOSSES: tuple[str, ...] = ("ce", "dlr")
RHO = 0.75  # share of the steps since the last checkpoint that must raise the loss
MOMENTUM = 0.75  # weight of the new step against the previous one
# Compiled functions kept per model: logits, evaluate and two segment lengths for each
# setting (norm, loss, targeted, clip, dtype, shape); the oldest go beyond this.
MAX_COMPILED_PER_MODEL = 32
_COMPILED = CompiledCache(limit=MAX_COMPILED_PER_MODEL)

Eps = float | Sequence[float]
Clip = tuple[float, float] | None
State = dict[str, tf.Tensor]


@dataclass(frozen=True)
class _Static:
    """Settings that shape the traced graphs (one set of compiled functions per value)."""

    norm: str
    loss: str
    targeted: bool
    clip: tuple[float, float] | None
    dtype: str
    example_shape: tuple[int, ...]
    draws: int = 1  # eot_iter: forward and backward passes averaged per loss and gradient


def checkpoints(steps: int) -> list[int]:
    """The iterations after which the step size may be halved.

    The paper's ``w_j = ceil(p_j * steps)`` with ``p_0 = 0``, ``p_1 = 0.22`` and ``p_{j+1} =
    p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, in exact integer arithmetic (hundredths), so
    that float rounding never moves a checkpoint.

    Args:
        steps: The attack's iterations, >= 1.

    Returns:
        The checkpoints, increasing, counted from 1, each < ``steps``.
    """
    fractions = [0, 22]  # p_j in hundredths
    while fractions[-1] + max(fractions[-1] - fractions[-2] - 3, 6) <= 100:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 3, 6))
    return sorted({-(-p * steps // 100) for p in fractions[1:]} - {steps})


def schedule(steps: int) -> list[tuple[int, int]]:
    """The compiled segments that run ``steps`` iterations.

    Each interval between checkpoints is cut into segments of ``loop.SEGMENT`` steps and
    single steps, so two traces of the step loop serve every ``steps``.

    Args:
        steps: The attack's iterations, >= 1.

    Returns:
        In order, ``(steps in the segment, length of the checkpoint interval that ends with
        it, or 0 when no checkpoint follows)``.
    """
    marks = [*checkpoints(steps), steps]
    plan = []
    for begin, end in zip([0, *marks], marks):
        sizes = [loop.SEGMENT] * ((end - begin) // loop.SEGMENT) + [1] * ((end - begin) % loop.SEGMENT)
        plan += [(size, 0) for size in sizes[:-1]] + [(sizes[-1], end - begin if end < steps else 0)]
    return plan


def apgd(model: Any, x: Any, y: Any, *, eps: Eps, norm: Any = "inf", loss: Literal["ce", "dlr"] = "ce",
         targeted: bool = False, target_classes: int = 9, steps: int = 100, restarts: int = 1,
         clip: Clip = (0.0, 1.0), seed: int | None = None, batch_size: int | None = None,
         compute_dtype: str | None = None, eot_iter: int = 1):
    """APGD-CE, APGD-DLR and APGD-T (Croce & Hein 2020), untargeted or over target classes.

    Args:
        model: Callable mapping a float batch to logits (N, C); called with
            ``training=False`` when it takes that argument.
        x: Array or tensor (N, ...), floating point, inside ``clip``; never rescaled.
        y: True integer labels (N,), also for ``targeted=True``.
        eps: A float (``x_adv`` shaped like ``x``) or a sequence of K floats (``x_adv``
            (K, N, ...), one batched run, each row with its own radius); each >= 0.
        norm: ``"inf"`` (or ``np.inf``): sign steps; ``"l2"`` (or ``2``): normalised
            gradient steps and L2 projection.
        loss: ``"ce"`` (cross-entropy) or ``"dlr"`` (difference of logits ratio; needs
            C >= 3 classes, or C >= 4 when targeted).
        targeted: Run once per target class among the ``target_classes`` classes with the
            highest clean logits other than ``y``, ascending the targeted DLR (``loss="dlr"``,
            AutoAttack's APGD-T) or descending the target's cross-entropy (``loss="ce"``).
        target_classes: How many targets when ``targeted``; 1 <= target_classes <= C - 1.
        steps: Iterations per run (each one gradient).
        restarts: Random starts; each later one attacks only the examples still standing.
        clip: The valid input range (low, high), or None for unbounded inputs.
        seed: Seeds the random starts; the same seed gives the same result. A row's start
            depends only on the seed and its example, not on ``batch_size`` or the other
            epsilons of the call.
        batch_size: Rows (example and epsilon pairs) per compiled call, default 512.
        compute_dtype: None, or ``"bfloat16"``/``"float16"``/``"float32"``: take gradients
            with a copy of a Keras model computing in that dtype (:mod:`attacks.precision`).
        eot_iter: For randomized models: draws of the model averaged per loss and gradient
            (>= 1; AutoAttack's ``rand`` version uses 20). A compiled call then runs
            ``eot_iter`` x ``batch_size`` images; lower ``batch_size`` if that is too many.

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out), shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons;
        inside each ball and inside ``clip``. Per example: ``x`` itself if the model
        already misclassifies it (or eps is 0), else the first misclassified iterate found,
        else the highest-loss iterate over all runs.

    Raises:
        ValueError: NaN or infinite values in x, x outside clip, length mismatch, labels
            outside the model's classes, negative eps, steps/restarts/target_classes/
            batch_size/eot_iter < 1, unknown norm or loss, too few classes for the loss or the
            targets, a model returning probabilities instead of logits.
        TypeError: Non-float x, non-integer labels, a seed that is not an int, a model that
            is not callable.
    """
    given = validation.attack_input(x, y, eps, norm, clip)
    if not isinstance(loss, str) or loss not in APGD_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of: {', '.join(APGD_LOSSES)}")
    steps = validation.check_positive_int(steps, "steps")
    restarts = validation.check_positive_int(restarts, "restarts")
    target_classes = validation.check_positive_int(target_classes, "target_classes")
    eot_iter = validation.check_positive_int(eot_iter, "eot_iter")
    batch_size = validation.check_positive_int(batch_size or DEFAULT_BATCH_SIZE, "batch_size")
    validation.check_seed(seed)
    compute_dtype = precision.check_compute_dtype(compute_dtype)

    x_np, y_np, epsilons = given.x, given.y, given.epsilons
    if len(x_np) == 0:
        return given.output(np.zeros((len(epsilons), *x_np.shape), x_np.dtype))
    logits_fn = validation.inference_fn(model)
    num_classes = validation.model_classes(logits_fn, x_np, y_np)
    _check_classes(loss, bool(targeted), target_classes, num_classes)

    static = _Static(norm=given.norm, loss=loss, targeted=bool(targeted), clip=given.clip, dtype=x_np.dtype.name,
                     example_shape=tuple(x_np.shape[1:]), draws=eot_iter)
    compiled = _compiled(precision.compute_model(model, compute_dtype), static)
    clean_logits = _logits(_compiled(model, static)("logits"), x_np, batch_size)  # one draw, as AutoAttack
    targets = _targets(clean_logits, y_np, target_classes) if targeted else y_np[:, None]
    base_seed = int(np.random.default_rng(seed).integers(0, 2**62))
    rows = _Rows.stacked(x_np, y_np, epsilons, clean_logits.argmax(axis=1) != y_np)
    for run in range(targets.shape[1] * restarts):  # every restart of the first target, then the next
        seed_tensor = tf.constant([base_seed, run], tf.int64)
        if not rows.attack_round(compiled, x_np, targets[:, run // restarts], seed_tensor, static=static,
                                 steps=steps, batch_size=batch_size):
            break
    return given.output(rows.result.reshape(len(epsilons), *x_np.shape))


def _apgd_at_radii(model: Any, x: np.ndarray, y: np.ndarray, radii: np.ndarray, attack: np.ndarray, *, norm: str,
                   loss: str, clip: Clip, steps: int, seed: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Untargeted APGD, one run, each example at its own radius; for :mod:`attacks.minimal`.

    Takes inputs already validated (as :func:`apgd` checks them) and attacks only the
    examples flagged in ``attack``; a row's random start depends on the seed and its index
    in ``x``, so an example starts from the same direction at every radius.

    Returns:
        ``(points, fooled)``: ``points`` (N, ...) like ``x``, the first misclassified iterate
        where ``fooled`` (N,) bool, else the highest-loss one (``x`` for examples not
        attacked).
    """
    static = _Static(norm=norm, loss=loss, targeted=False, clip=clip, dtype=x.dtype.name,
                     example_shape=tuple(x.shape[1:]))
    radii = np.asarray(radii, x.dtype)
    attacked = np.asarray(attack, bool) & (radii > 0)
    rows = _Rows(x=x, y=y, eps=radii, example=np.arange(len(x)), result=x.copy(),
                 best_loss=np.full(len(x), -np.inf, x.dtype), open=attacked.copy())
    rows.attack_round(_compiled(model, static), x, y, tf.constant([seed, 0], tf.int64), static=static, steps=steps,
                      batch_size=batch_size)
    return rows.result, attacked & ~rows.open


def _check_classes(loss: str, targeted: bool, target_classes: int, num_classes: int) -> None:
    needed = 4 if targeted else 3
    if loss == "dlr" and num_classes < needed:
        kind = "targeted " if targeted else ""
        raise ValueError(f"{kind}loss 'dlr' needs at least {needed} classes, the model has {num_classes}; "
                         "use loss='ce'")
    if targeted and target_classes > num_classes - 1:
        raise ValueError(f"target_classes={target_classes} is out of range: the model has {num_classes} classes, "
                         f"so at most {num_classes - 1} targets; pass target_classes <= {num_classes - 1}")


def _logits(logits_fn: Callable, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([logits_fn(tf.constant(x[start:start + batch_size])).numpy()
                           for start in range(0, len(x), batch_size)])


def _targets(clean_logits: np.ndarray, y: np.ndarray, count: int) -> np.ndarray:
    """(N, count): per example the classes other than ``y`` by decreasing clean logit."""
    others = clean_logits.astype(np.float64).copy()
    others[np.arange(len(y)), y] = -np.inf
    return np.argsort(-others, axis=1, kind="stable")[:, :count].astype(np.int64)


@dataclass
class _Rows:
    """Every (epsilon, example) row of one call, and the best result found for each so far."""

    x: np.ndarray  # (K*N, ...) the clean inputs, once per epsilon
    y: np.ndarray  # (K*N,)
    eps: np.ndarray  # (K*N,) in the dtype of x
    example: np.ndarray  # (K*N,) index of the row's example in x
    result: np.ndarray  # (K*N, ...) the point returned for each row
    best_loss: np.ndarray  # (K*N,) loss of ``result`` for rows not yet fooled
    open: np.ndarray  # (K*N,) bool: still to attack (not fooled, eps > 0)

    @classmethod
    def stacked(cls, x: np.ndarray, y: np.ndarray, epsilons: np.ndarray, misclassified: np.ndarray) -> "_Rows":
        k, n = len(epsilons), len(x)
        stacked = np.broadcast_to(x, (k, *x.shape)).reshape(k * n, *x.shape[1:])
        eps = np.repeat(epsilons, n).astype(x.dtype)
        return cls(x=stacked, y=np.tile(y, k), eps=eps, example=np.tile(np.arange(n), k), result=stacked.copy(),
                   best_loss=np.full(k * n, -np.inf, x.dtype), open=(eps > 0) & ~np.tile(misclassified, k))

    def attack_round(self, compiled: Callable, x: np.ndarray, targets: np.ndarray, seed: tf.Tensor, *,
                     static: _Static, steps: int, batch_size: int) -> bool:
        """One run (one restart, one target) on the open rows; False when none was open.

        Random starts are drawn per example of ``x`` (unit radius, scaled by each row's
        eps), so a row's start does not depend on the batch or the other epsilons.
        """
        todo = np.flatnonzero(self.open)
        if not todo.size:
            return False
        shape = tf.constant(x.shape, tf.int32)
        unit = norms.random_start(shape, tf.ones([len(x)], x.dtype), static.norm, seed, x.dtype).numpy()
        for start in range(0, todo.size, batch_size):
            chunk = todo[start:start + batch_size]
            x_chunk, eps = tf.constant(self.x[chunk]), tf.constant(self.eps[chunk])
            delta = norms.project(tf.constant(unit[self.example[chunk]]) * _per_example(eps, static), eps, static.norm)
            x_start = _clip(x_chunk + delta, static.clip)
            point, loss, success = _run(compiled, x_chunk, tf.constant(self.y[chunk]),
                                        tf.constant(targets[self.example[chunk]]), eps, x_start, steps=steps)
            better = success | (loss > self.best_loss[chunk])
            self.result[chunk[better]] = point[better]
            self.best_loss[chunk[better]] = loss[better]
            self.open[chunk[success]] = False
        return True


def _run(compiled: Callable, x: tf.Tensor, y: tf.Tensor, target: tf.Tensor, eps: tf.Tensor, x_start: tf.Tensor, *,
         steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One APGD run on one batch: (point, loss, success) per example, as NumPy.

    ``point`` is the first misclassified iterate where ``success``, else the highest-loss
    one (``loss`` is its loss; -inf where ``success``). Fooled examples leave the batch
    after each segment; the others follow the same trajectory as without leaving.
    """
    outcome = _Outcome(point=x_start.numpy(), loss=np.full(len(x_start), -np.inf, x_start.dtype.as_numpy_dtype),
                       success=np.zeros(len(x_start), bool), index=np.arange(len(x_start)))
    state = outcome.retire_fooled(_initial_state(compiled("evaluate"), x, y, target, eps, x_start))
    first = True
    for size, interval in schedule(steps):
        if not outcome.index.size:
            break
        state = compiled(size)(state, tf.constant(1.0 if first else MOMENTUM, x.dtype))
        first = False
        state = outcome.retire_fooled(state)
        if interval and outcome.index.size:
            state = _checkpoint(state, interval)
    outcome.point[outcome.index] = state["x_best"].numpy()
    outcome.loss[outcome.index] = state["loss_best"].numpy()
    return outcome.point, outcome.loss, outcome.success


@dataclass
class _Outcome:
    """The results of one run on one batch, filled in as examples leave it."""

    point: np.ndarray  # (B, ...)
    loss: np.ndarray  # (B,)
    success: np.ndarray  # (B,) bool
    index: np.ndarray  # batch positions of the examples still in the state

    def retire_fooled(self, state: State) -> State:
        """Record the fooled examples' first successful points; the state without them."""
        fooled = state["success"].numpy()
        if not fooled.any():
            return state
        self.point[self.index[fooled]] = state["x_adv"].numpy()[fooled]
        self.success[self.index[fooled]] = True
        self.index = self.index[~fooled]
        keep = tf.constant(~fooled)
        return {key: tf.boolean_mask(value, keep) for key, value in state.items()}


def _initial_state(evaluate: Callable, x: tf.Tensor, y: tf.Tensor, target: tf.Tensor, eps: tf.Tensor,
                   x_start: tf.Tensor) -> State:
    loss, gradient, success = evaluate(x_start, y, target)
    return {"x": x, "y": y, "target": target, "eps": eps, "step": 2.0 * eps,
            "x_t": x_start, "x_prev": x_start, "grad": gradient, "loss_t": loss,
            "x_best": x_start, "grad_best": gradient, "loss_best": loss, "increases": tf.zeros_like(y, tf.int32),
            "loss_checked": loss, "halved": tf.ones_like(success), "x_adv": x_start, "success": success}


def _checkpoint(state: State, interval: int) -> State:
    """AutoAttack's rule: halve the step and go back to the best point where the loss rose
    in fewer than ``RHO`` of the last ``interval`` steps, or where the step was not halved
    at the last checkpoint and the best loss has not risen since."""
    stalled = tf.cast(state["increases"], state["loss_best"].dtype) < RHO * interval
    stuck = ~state["halved"] & (state["loss_checked"] >= state["loss_best"])
    halve = stalled | stuck
    image = _mask(halve, state["x_t"])
    return {**state, "step": tf.where(halve, state["step"] / 2, state["step"]),
            "x_t": tf.where(image, state["x_best"], state["x_t"]),
            "grad": tf.where(image, state["grad_best"], state["grad"]),
            "loss_t": tf.where(halve, state["loss_best"], state["loss_t"]),
            "increases": tf.zeros_like(state["increases"]), "loss_checked": state["loss_best"], "halved": halve}


def _mask(flags: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """(N,) flags reshaped to (N, 1, ..., 1) to select whole examples of ``like``."""
    return tf.reshape(flags, tf.concat([tf.shape(flags), tf.ones([tf.rank(like) - 1], tf.int32)], 0))


def _per_example(value: tf.Tensor, static: _Static) -> tf.Tensor:
    return tf.reshape(value, [-1] + [1] * len(static.example_shape))


def _feasible(x: tf.Tensor, point: tf.Tensor, eps: tf.Tensor, static: _Static) -> tf.Tensor:
    """``point`` clipped to the clip range, then projected onto the eps-ball around ``x``.

    Clipping first matters for L2: projecting first and clipping after (as AutoAttack's
    code does) spends part of the radius on coordinates the clip then removes, so the
    iterates stay well inside the ball. Projection moves a point in the range towards
    ``x``, which is in the range too, so the result is in both (the last clip only
    absorbs float rounding). For L-inf both orders give the same point.
    """
    projected = x + norms.project(_clip(point, static.clip) - x, eps, static.norm)
    return _clip(projected, static.clip)


def _clip(x_t: tf.Tensor, clip: tuple[float, float] | None) -> tf.Tensor:
    return x_t if clip is None else tf.clip_by_value(x_t, clip[0], clip[1])


def _objective(static: _Static) -> Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]:
    """(logits, y, target) -> the per-example value APGD ascends."""
    if not static.targeted:
        return lambda logits, y, target: losses.get_loss(static.loss)(logits, y)
    if static.loss == "dlr":
        return losses.dlr_targeted
    return lambda logits, y, target: -losses.cross_entropy(logits, target)


def _build(logits_fn: Callable, static: _Static) -> Callable[[Any], Callable]:
    """``part -> compiled function``: ``"logits"``, ``"evaluate"`` (loss, gradient and
    success at a point) or an int, a segment of that many steps (State, first-step weight)
    -> State."""
    dtype = tf.as_dtype(static.dtype)
    image = tf.TensorSpec((None, *static.example_shape), dtype)
    per_example = tf.TensorSpec((None,), dtype)
    labels = tf.TensorSpec((None,), tf.int64)
    state_spec = {**{key: image for key in ("x", "x_t", "x_prev", "grad", "x_best", "grad_best", "x_adv")},
                  **{key: per_example for key in ("eps", "step", "loss_t", "loss_best", "loss_checked")},
                  "y": labels, "target": labels, "increases": tf.TensorSpec((None,), tf.int32),
                  "halved": tf.TensorSpec((None,), tf.bool), "success": tf.TensorSpec((None,), tf.bool)}
    objective = _objective(static)
    draws = static.draws

    def expected(x_t, y, target):
        """(logits, loss) at ``x_t``: of one pass, or the means over ``draws`` passes."""
        if draws == 1:
            logits = tf.cast(logits_fn(x_t), dtype)  # a low-precision copy's logits, cast up
            return logits, tf.cast(objective(logits, y, target), dtype)
        logits = tf.cast(logits_fn(tile_draws(x_t, draws)), dtype)
        loss = tf.cast(objective(logits, tile_draws(y, draws), tile_draws(target, draws)), dtype)
        return mean_over_draws(logits, draws), mean_over_draws(loss, draws)

    def evaluate(x_t, y, target):
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            logits, loss = expected(x_t, y, target)
            total = tf.reduce_sum(loss)
        success = tf.not_equal(tf.argmax(logits, axis=-1, output_type=tf.int64), y)
        return loss, tape.gradient(total, x_t), success

    def step(state, weight):
        x, x_t, eps = state["x"], state["x_t"], state["eps"]
        z = _feasible(x, x_t + _per_example(state["step"], static) * norms.steepest_step(state["grad"], static.norm),
                      eps, static)
        x_next = _feasible(x, x_t + weight * (z - x_t) + (1.0 - weight) * (x_t - state["x_prev"]), eps, static)
        loss, gradient, success = evaluate(x_next, state["y"], state["target"])
        improved, first_success = loss > state["loss_best"], success & ~state["success"]
        better, fooled = _mask(improved, x_t), _mask(first_success, x_t)
        return {**state, "x_prev": x_t, "x_t": x_next, "grad": gradient, "loss_t": loss,
                "increases": state["increases"] + tf.cast(loss > state["loss_t"], tf.int32),
                "x_best": tf.where(better, x_next, state["x_best"]),
                "grad_best": tf.where(better, gradient, state["grad_best"]),
                "loss_best": tf.where(improved, loss, state["loss_best"]),
                "x_adv": tf.where(fooled, x_next, state["x_adv"]), "success": state["success"] | success}

    def segment(steps: int):
        # Unrolled, not a tf.range loop: see loop._build on oneDNN's pooling gradient.
        @tf.function(input_signature=[state_spec, tf.TensorSpec((), dtype)], reduce_retracing=True)
        def run_steps(state, first_weight):
            for index in range(steps):
                state = step(state, first_weight if index == 0 else tf.constant(MOMENTUM, dtype))
            return state
        return run_steps

    def part(name: Any) -> Callable:
        if name == "logits":
            return tf.function(logits_fn, input_signature=[image])
        if name == "evaluate":
            return tf.function(evaluate, input_signature=[image, labels, labels])
        return segment(name)

    return part


def _compiled(model: Any, static: _Static) -> Callable[[Any], Callable]:
    """``part -> compiled function`` for ``model`` and ``static`` (see :func:`_build`),
    each traced once and kept with the model (at most ``MAX_COMPILED_PER_MODEL``)."""
    return _COMPILED.parts(model, static, _build(validation.inference_fn(model), static))


def trace_count(model: Any) -> int:
    """How many times the functions compiled for ``model`` have been traced (for tests).

    Args:
        model: A model attacked before.

    Returns:
        The number of traces, >= 0.
    """
    return _COMPILED.trace_count(model)
