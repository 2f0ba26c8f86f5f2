"""FAB, the fast adaptive boundary attack (Croce & Hein 2020, "Minimally distorted adversarial
examples with a fast adaptive boundary attack"): the smallest perturbation that fools the model.

Each step linearises the model at the iterate ``x_t``; for the classes ``k`` it considers
(every class but ``y`` untargeted, one target class for FAB-T)::

    f_k = z_k(x_t) - z_y(x_t)          g_k = grad f_k(x_t)
    k*  = argmin_k |f_k| / ||g_k||_q   (q the dual norm: 1 for L-inf, 2 for L2)

and the boundary of ``k*`` is replaced by the hyperplane ``f + g . (z - x_t) = 0``. Both the
iterate and the original point ``x`` are projected onto that hyperplane intersected with the
clip box (:func:`box_projection`: the smallest step in the norm that reaches the
hyperplane inside the box, or the corner of the box nearest to it), giving ``d_t`` and
``d_0``; the next iterate is a biased step::

    alpha   = min(||d_t|| / (||d_t|| + ||d_0||), alpha_max)
    x_{t+1} = clip((1 - alpha) (x_t + eta d_t) + alpha (x + eta d_0))

(a step towards the boundary that leans towards ``x``, overshooting by ``eta``). When
``x_{t+1}`` is misclassified it is kept if it is the closest adversarial found so far, and
the iterate steps back towards ``x``: ``x_{t+1} = x + beta (x_{t+1} - x)``. Restarts begin at
a random point of the sphere of radius ``min(best, eps) / 2`` around ``x`` (the first run
of each target at ``x`` itself).

``eps=None`` returns, per example, the smallest adversarial found; a radius returns it where
it lies within the radius, else ``x`` (AutoAttack's FAB). There an example leaves the batch
as soon as it is fooled within the radius, and later restarts and targets attack only the
examples still standing.

Deviations from the reference code (fra31/auto-attack ``fab_base.py``), and why:

* The box projection is solved here, not copied: for both norms the least-norm step is
  ``-sign(w_i) min(lambda a_i, room_i)`` with one threshold ``lambda`` found by sorting
  breakpoints (:func:`box_projection`); it handles any clip range and ``clip=None``
  (reference: [0, 1] only).
* The best adversarial and the random-start radius carry over all restarts and targets of a
  call (AutoAttack starts every restart from radius ``eps / 2``; the authors' original code
  does as here). In the eps mode the two agree: an example still standing has nothing
  within ``eps``.
* In the eps mode an example stops at its first adversarial within ``eps`` (the reference
  goes on shrinking it); robust accuracy is the same, the work less.
* Minimal-norm mode with nothing found yet starts restarts at radius 0.3 (L-inf) or 1.0
  (L2) times the clip span, the reference's defaults for [0, 1] images.

The step is one ``tf.function`` with a ``GradientTape`` inside (``tape.batch_jacobian`` for
the untargeted attack's candidate classes), input signatures whose batch dimension is
``None``, memoised per model (:class:`attacks.compiled.CompiledCache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from attacks import validation
from attacks.backend import tf
from attacks.compiled import CompiledCache
from attacks.deep_fool import candidate_classes

# Smaller than the gradient attacks' 512: untargeted, the Jacobian holds C - 1 gradients per example.
DEFAULT_BATCH_SIZE = 128
ALPHA_MAX = 0.1  # the largest weight of the step from x
ETA = 1.05  # overshoot of the projections
BETA = 0.9  # the backward step after a success: x + beta (x_adv - x)
START_RADIUS = {"inf": 0.3, "l2": 1.0}  # random restarts before anything is found, times the clip span
_TINY = 1e-12
_MIN_STEP = 1e-8  # floor of ||d_t|| and ||d_0|| in alpha, as in the reference
MAX_COMPILED_PER_MODEL = 16
_COMPILED = CompiledCache(limit=MAX_COMPILED_PER_MODEL)

Eps = float | Sequence[float] | None
Clip = tuple[float, float] | None


@dataclass(frozen=True)
class _Static:
    """Settings that shape the traced graphs (one set of compiled functions per value)."""

    norm: str
    classes: int  # classes considered per step: C - 1 untargeted, 1 targeted
    clip: tuple[float, float] | None
    alpha_max: float
    eta: float
    beta: float
    dtype: str
    example_shape: tuple[int, ...]


def fab(model: Any, x: Any, y: Any, *, norm: Any = "inf", eps: Eps = None, targeted: bool = True,
        target_classes: int = 9, steps: int = 100, restarts: int = 1, seed: int | None = None,
        clip: Clip = (0.0, 1.0), batch_size: int | None = None, alpha_max: float = ALPHA_MAX,
        eta: float = ETA, beta: float = BETA):
    """FAB and FAB-T (Croce & Hein 2020): the closest adversarial it finds, per example.

    See the module docstring of :mod:`attacks.fab_attack` for the algorithm.

    Args:
        model: The attacked model: any callable mapping a float batch to **logits** (N, C),
            a tf-keras or Keras 3 model, a ``tf.Module`` or a function. Called in inference
            mode (``training=False``).
        x: The clean inputs, an array or tensor (N, ...), floating point, inside ``clip``.
            Never rescaled or clipped.
        y: True integer labels (N,), also for ``targeted=True``.
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``): the norm made small.
        eps: None: minimal-norm mode, the smallest adversarial found per example. A float
            (result shaped like ``x``) or a sequence of K floats (result (K, N, ...), each row
            with its own radius), each finite and >= 0: the adversarial found within the
            radius, else ``x``; the radius also sets the random starts.
        targeted: FAB-T: run once per target class among the ``target_classes`` classes
            with the highest clean logits other than ``y``, each step linearising only the
            target's boundary (AutoAttack's FAB-T). False: every step considers every class.
            Success is always a wrong prediction.
        target_classes: How many targets when ``targeted``; 1 <= target_classes <= C - 1.
        steps: Iterations per run (>= 1).
        restarts: Runs per target (>= 1); the first starts at ``x``, the others at random
            points around it.
        seed: Seeds the random starts; the same seed gives the same result. A row's start
            depends only on the seed and its example, not on ``batch_size`` or the other
            epsilons. None draws fresh entropy.
        clip: The valid input range ``(low, high)``; None for unbounded inputs.
        batch_size: Rows (example and epsilon pairs) per compiled call (None: 128).
        alpha_max: The largest weight of the step from ``x``, in [0, 1].
        eta: The overshoot of the projections, >= 1.
        beta: The backward step after a success, in (0, 1].

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out), inside ``clip``: shaped like ``x`` for ``eps=None`` or a float, (K, N,
        ...) for K epsilons. Per example: ``x`` itself if the model already misclassifies it,
        if nothing was found (within the radius), or for eps 0; else the misclassified point
        of smallest norm found (in the eps mode: the first one found within the radius).

    Raises:
        TypeError: ``model`` is not callable, ``x`` is not floating point, ``y`` does not
            hold integers, ``eps`` or a step parameter is not numeric, or ``seed`` is not
            an int.
        ValueError: A value named in the message is wrong: NaN in ``x``, ``x`` outside
            ``clip``, a length mismatch, labels outside the model's classes, a negative
            ``eps``, ``steps``, ``restarts``, ``target_classes`` or ``batch_size`` < 1,
            ``target_classes`` > C - 1 when targeted, ``alpha_max``, ``eta`` or ``beta``
            out of range, an unknown ``norm``, or a model that returns probabilities.
    """
    # eps=None is checked like a radius of 0, the one radius every input accepts.
    given = validation.attack_input(x, y, 0.0 if eps is None else eps, norm, clip)
    steps = validation.check_positive_int(steps, "steps")
    restarts = validation.check_positive_int(restarts, "restarts")
    target_classes = validation.check_positive_int(target_classes, "target_classes")
    batch_size = validation.check_positive_int(batch_size or DEFAULT_BATCH_SIZE, "batch_size")
    validation.check_seed(seed)
    alpha_max = _check_in_range(alpha_max, "alpha_max", 0.0, 1.0, "[0, 1]")
    eta = _check_in_range(eta, "eta", 1.0, np.inf, "[1, inf)")
    beta = _check_in_range(beta, "beta", 0.0, 1.0, "(0, 1]", open_low=True)

    x_np, y_np = given.x, given.y
    epsilons = np.array([np.inf]) if eps is None else given.epsilons
    if len(x_np) == 0:
        return given.output(np.zeros((len(epsilons), *x_np.shape), x_np.dtype))
    logits_fn = validation.inference_fn(model)
    num_classes = validation.model_classes(logits_fn, x_np, y_np)
    if targeted and target_classes > num_classes - 1:
        raise ValueError(f"target_classes={target_classes} is out of range: the model has {num_classes} classes, "
                         f"so at most {num_classes - 1} targets; pass target_classes <= {num_classes - 1}")

    static = _Static(norm=given.norm, classes=1 if targeted else num_classes - 1, clip=given.clip,
                     alpha_max=alpha_max, eta=eta, beta=beta, dtype=x_np.dtype.name,
                     example_shape=tuple(x_np.shape[1:]))
    compiled = _compiled(model, static)
    clean_logits = np.concatenate([compiled("logits")(tf.constant(x_np[start:start + batch_size])).numpy()
                                   for start in range(0, len(x_np), batch_size)])
    candidates = candidate_classes(clean_logits, y_np, target_classes if targeted else num_classes - 1)
    runs = [candidates[:, [target]] for target in range(target_classes)] if targeted else [candidates]
    span = 1.0 if given.clip is None else given.clip[1] - given.clip[0]
    start_cap = epsilons if eps is not None else np.array([START_RADIUS[given.norm] * span])
    rows = _Rows.stacked(x_np, y_np, epsilons, start_cap, clean_logits.argmax(axis=1) != y_np)
    base_seed = int(np.random.default_rng(seed).integers(0, 2**62))
    for run, classes in enumerate(np.repeat(np.stack(runs), restarts, axis=0)):
        random_start = run % restarts > 0
        seed_tensor = tf.constant([base_seed, run], tf.int64)
        if not rows.attack_round(compiled, x_np, classes, seed_tensor if random_start else None, static=static,
                                 steps=steps, batch_size=batch_size):
            break
    return given.output(rows.result(given.norm).reshape(len(epsilons), *x_np.shape))


def _check_in_range(value: Any, name: str, low: float, high: float, interval: str, *, open_low: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a number, got {value!r}") from error
    if not np.isfinite(number) or not low <= number <= high or (open_low and number == low):
        raise ValueError(f"{name} must be finite and in {interval}, got {value!r}")
    return number


def norm_of(delta: np.ndarray, norm: str) -> np.ndarray:
    """Per-example size of perturbations, in float64.

    Args:
        delta: Perturbations (N, ...).
        norm: ``"inf"`` or ``"l2"``.

    Returns:
        (N,) float64: the largest absolute coordinate (L-inf) or the Euclidean length (L2).
    """
    flat = delta.reshape(len(delta), -1).astype(np.float64)
    return np.abs(flat).max(axis=1, initial=0.0) if norm == "inf" else np.sqrt((flat ** 2).sum(axis=1))


@dataclass
class _Rows:
    """Every (epsilon, example) row of one call, and the closest adversarial found for each."""

    x: np.ndarray  # (R, ...) the clean inputs, once per epsilon
    y: np.ndarray  # (R,)
    eps: np.ndarray  # (R,) float64; inf in minimal-norm mode
    start_cap: np.ndarray  # (R,) float64: the random starts' radius is half of min(best_norm, start_cap)
    example: np.ndarray  # (R,) index of the row's example in x
    best: np.ndarray  # (R, ...) the closest adversarial found (x where none)
    best_norm: np.ndarray  # (R,) float64, its norm (inf where none)
    open: np.ndarray  # (R,) bool: still to attack

    @classmethod
    def stacked(cls, x: np.ndarray, y: np.ndarray, epsilons: np.ndarray, start_cap: np.ndarray,
                misclassified: np.ndarray) -> "_Rows":
        k, n = len(epsilons), len(x)
        stacked = np.broadcast_to(x, (k, *x.shape)).reshape(k * n, *x.shape[1:])
        eps = np.repeat(epsilons, n)
        return cls(x=stacked, y=np.tile(y, k), eps=eps, start_cap=np.repeat(start_cap, n),
                   example=np.tile(np.arange(n), k), best=stacked.copy(), best_norm=np.full(k * n, np.inf),
                   open=(eps > 0) & ~np.tile(misclassified, k))

    def attack_round(self, compiled: Callable, x: np.ndarray, classes: np.ndarray, seed: tf.Tensor | None, *,
                     static: _Static, steps: int, batch_size: int) -> bool:
        """One run (one restart of one target) on the open rows; False when none was open.

        ``classes`` (N, K) holds each example's classes to consider; ``seed`` None starts
        at ``x``, else at a random point drawn per example of ``x`` (so a row's start does
        not depend on the batch or the other epsilons).
        """
        todo = np.flatnonzero(self.open)
        if not todo.size:
            return False
        unit = None if seed is None else _unit_directions(x.shape, static.norm, seed, x.dtype)
        for start in range(0, todo.size, batch_size):
            chunk = todo[start:start + batch_size]
            x_start = self.x[chunk]
            if unit is not None:
                radius = 0.5 * np.minimum(self.best_norm[chunk], self.start_cap[chunk])
                x_start = _clip_np(x_start + unit[self.example[chunk]] * _per_row(radius.astype(x.dtype), x.ndim),
                                   static.clip)
            self._run(compiled("step"), chunk, x_start, classes[self.example[chunk]], steps)
        return True

    def _run(self, step: Callable, chunk: np.ndarray, x_start: np.ndarray, classes: np.ndarray, steps: int) -> None:
        """``steps`` FAB steps on the rows ``chunk``; rows fooled within their radius leave at once."""
        index = chunk
        x, x_t, y, targets, best, best_norm = (tf.constant(a) for a in (
            self.x[chunk], x_start, self.y[chunk], classes, self.best[chunk], self.best_norm[chunk]))
        bounded = bool(np.isfinite(self.eps[chunk]).any())  # minimal-norm rows never leave
        for _ in range(steps):
            x_t, best, best_norm = step(x, x_t, y, targets, best, best_norm)
            if not bounded:
                continue
            done = best_norm.numpy() <= self.eps[index]
            if done.any():
                self._record(index[done], best.numpy()[done], best_norm.numpy()[done])
                self.open[index[done]] = False
                index, keep = index[~done], tf.constant(~done)
                if not index.size:
                    return
                x, x_t, y, targets, best, best_norm = (tf.boolean_mask(t, keep)
                                                       for t in (x, x_t, y, targets, best, best_norm))
        self._record(index, best.numpy(), best_norm.numpy())

    def _record(self, rows: np.ndarray, best: np.ndarray, best_norm: np.ndarray) -> None:
        self.best[rows], self.best_norm[rows] = best, best_norm

    def result(self, norm: str) -> np.ndarray:
        """(R, ...): each row's closest adversarial where its norm is within the row's eps, else x."""
        within = norm_of(self.best - self.x, norm) <= self.eps
        return np.where(_per_row(within, self.x.ndim), self.best, self.x)


def _per_row(values: np.ndarray, ndim: int) -> np.ndarray:
    """(R,) reshaped to (R, 1, ..., 1) with ``ndim`` axes, to broadcast against (R, ...)."""
    return values.reshape(len(values), *([1] * (ndim - 1)))


def _clip_np(points: np.ndarray, clip: tuple[float, float] | None) -> np.ndarray:
    return points if clip is None else np.clip(points, clip[0], clip[1])


def _unit_directions(shape: tuple[int, ...], norm: str, seed: tf.Tensor, dtype: np.dtype) -> np.ndarray:
    """Random directions of norm 1, one per example, as the reference draws them: uniform
    coordinates scaled to L-inf norm 1, or a Gaussian scaled to L2 norm 1."""
    if norm == "inf":
        draw = tf.random.stateless_uniform(shape, seed, -1.0, 1.0, dtype=tf.as_dtype(dtype)).numpy()
    else:
        draw = tf.random.stateless_normal(shape, seed, dtype=tf.as_dtype(dtype)).numpy()
    size = norm_of(draw, norm).astype(dtype)
    return draw / _per_row(np.maximum(size, _TINY), draw.ndim)


def box_projection(point: tf.Tensor, w: tf.Tensor, c: tf.Tensor, norm: str,
                   clip: tuple[float, float] | None) -> tf.Tensor:
    """The least-norm step from ``point`` onto the hyperplane ``c + w . delta = 0`` within the box.

    Both norms share one form: moving coordinate ``i`` against ``w_i`` lowers ``|c|`` by
    ``a_i min(lambda, s_i)``, with ``a_i = |w_i|`` and breakpoints ``s_i = room_i`` for L-inf,
    ``a_i = w_i^2`` and ``s_i = room_i / |w_i|`` for L2 (``room_i``: how far the box lets
    coordinate ``i`` move that way). The total is piecewise linear and increasing in
    ``lambda``; sorting the breakpoints gives the smallest ``lambda`` reaching ``|c|``. If
    the box cannot reach the hyperplane, every coordinate goes to the box's edge (the corner
    nearest to the hyperplane).

    Args:
        point: The points to project, (M, D), inside ``clip``.
        w: The hyperplanes' normals, (M, D).
        c: The hyperplanes' values at ``point``, (M,): the hyperplane is ``c + w . delta = 0``.
        norm: ``"inf"`` or ``"l2"``.
        clip: The box ``(low, high)``, or None (no box).

    Returns:
        The steps ``delta``, (M, D): ``point + delta`` inside ``clip``, ``c + w . delta = 0``
        where the box allows, else as close to it as the box allows; 0 where ``w`` is 0.
    """
    toward = -tf.sign(w) * tf.sign(c)[:, None]  # the sign of each coordinate's move
    magnitude = tf.abs(w)
    weight = magnitude if norm == "inf" else tf.square(magnitude)
    target = tf.abs(c)
    if clip is None:
        amount = (target / tf.maximum(tf.reduce_sum(weight, axis=1), _TINY))[:, None]
        return toward * (amount if norm == "inf" else amount * magnitude)
    room = tf.where(toward > 0, clip[1] - point, point - clip[0])
    breaks = room if norm == "inf" else tf.math.divide_no_nan(room, magnitude)
    order = tf.argsort(breaks, axis=1, stable=True)
    s = tf.gather(breaks, order, batch_dims=1)
    a = tf.gather(weight, order, batch_dims=1)
    a_before = tf.cumsum(a, axis=1, exclusive=True)
    reduced_before = tf.cumsum(a * s, axis=1, exclusive=True)
    total = tf.reduce_sum(a, axis=1, keepdims=True)
    reach = reduced_before + a * s + s * (total - a_before - a)  # |c| lowered at each breakpoint
    below = tf.reduce_sum(tf.cast(reach < target[:, None], tf.int32), axis=1)
    index = tf.minimum(below, tf.shape(s)[1] - 1)[:, None]
    remaining = tf.gather(total[:, 0:1] - a_before, index, batch_dims=1)[:, 0]
    lam = (target - tf.gather(reduced_before, index, batch_dims=1)[:, 0]) / tf.maximum(remaining, _TINY)
    lam = tf.where(below == tf.shape(s)[1], tf.constant(np.inf, lam.dtype), lam)
    moved = tf.minimum(lam[:, None], breaks)
    return toward * (moved if norm == "inf" else moved * magnitude)


def _build(logits_fn: Callable, static: _Static) -> Callable[[str], Callable]:
    """``part -> compiled function``: ``"logits"`` (x -> logits) or ``"step"`` ((x, x_t, y,
    classes, best, best_norm) -> (the next iterate, best, best_norm))."""
    dtype = tf.as_dtype(static.dtype)
    image = tf.TensorSpec((None, *static.example_shape), dtype)
    labels = tf.TensorSpec((None,), tf.int64)
    classes_spec = tf.TensorSpec((None, static.classes), tf.int64)
    sizes_spec = tf.TensorSpec((None,), tf.float64)

    def logits_of(x_t):
        return tf.cast(logits_fn(x_t), dtype)

    def size(delta):
        flat = tf.reshape(tf.cast(delta, tf.float64), [tf.shape(delta)[0], -1])
        if static.norm == "inf":
            return tf.reduce_max(tf.abs(flat), axis=1)
        return tf.sqrt(tf.reduce_sum(tf.square(flat), axis=1))

    def nearest_boundary(x_t, y, classes):
        """(f, g): the logit difference and its gradient (flat) of the closest linearised boundary."""
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            logits = logits_of(x_t)
            differences = (tf.gather(logits, classes, axis=1, batch_dims=1)
                           - tf.gather(logits, y, axis=1, batch_dims=1)[:, None])  # (N, K)
            total = tf.reduce_sum(differences)
        if static.classes == 1:
            gradients = tape.gradient(total, x_t)[:, None]
        else:
            gradients = tape.batch_jacobian(differences, x_t)  # (N, K, ...)
        gradients = tf.reshape(gradients, [tf.shape(x_t)[0], static.classes, -1])
        dual = (tf.reduce_sum(tf.abs(gradients), axis=2) if static.norm == "inf"
                else tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=2)))
        closest = tf.argmin(tf.abs(differences) / (dual + _TINY), axis=1, output_type=tf.int64)
        return (tf.gather(differences, closest, axis=1, batch_dims=1),
                tf.gather(gradients, closest, axis=1, batch_dims=1))

    def per_example(flags):
        return tf.reshape(flags, [-1] + [1] * len(static.example_shape))

    def clip_box(points):
        return points if static.clip is None else tf.clip_by_value(points, *static.clip)

    def step(x, x_t, y, classes, best, best_norm):
        f, g = nearest_boundary(x_t, y, classes)
        n = tf.shape(x)[0]
        flat_t, flat_x = tf.reshape(x_t, [n, -1]), tf.reshape(x, [n, -1])
        value_at_x = f + tf.reduce_sum(g * (flat_x - flat_t), axis=1)
        steps = box_projection(tf.concat([flat_t, flat_x], 0), tf.concat([g, g], 0),
                               tf.concat([f, value_at_x], 0), static.norm, static.clip)
        lengths = tf.maximum(size(steps), _MIN_STEP)
        to_t, to_x = steps[:n], steps[n:]
        alpha = tf.cast(tf.minimum(lengths[:n] / (lengths[:n] + lengths[n:]), static.alpha_max), dtype)[:, None]
        moved = clip_box((1 - alpha) * (flat_t + static.eta * to_t) + alpha * (flat_x + static.eta * to_x))
        x_next = tf.reshape(moved, tf.shape(x))
        fooled = tf.not_equal(tf.argmax(logits_of(x_next), axis=-1, output_type=tf.int64), y)
        distance = size(x_next - x)
        closer = fooled & (distance < best_norm)
        x_back = tf.where(per_example(fooled), x + static.beta * (x_next - x), x_next)
        return x_back, tf.where(per_example(closer), x_next, best), tf.where(closer, distance, best_norm)

    def part(name: str) -> Callable:
        if name == "logits":
            return tf.function(logits_of, input_signature=[image])
        return tf.function(step, input_signature=[image, image, labels, classes_spec, image, sizes_spec])

    return part


def _compiled(model: Any, static: _Static) -> Callable[[str], Callable]:
    """``part -> compiled function`` for ``model`` and ``static`` (see :func:`_build`), each
    traced once and kept with the model (at most ``MAX_COMPILED_PER_MODEL``)."""
    return _COMPILED.parts(model, static, _build(validation.inference_fn(model), static))


def trace_count(model: Any) -> int:
    """How many times the functions compiled for ``model`` have been traced (for tests).

    Args:
        model: A model attacked before (or not).

    Returns:
        The number of traces, >= 0 (0 for a model never attacked).
    """
    return _COMPILED.trace_count(model)
