"""The worst case over an ensemble of attacks, as AutoAttack evaluates (Croce & Hein 2020,
"Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
attacks").

    from attacks.ensemble import worst_case, autoattack
    result = worst_case(model, x, y, eps=0.1)              # AutoAttack's standard set
    result.robust.mean(), result.broken_by, result.per_attack
    x_adv = autoattack(model, x, y, eps=[0.05, 0.1])       # (2, N, ...), like pgd

The members run in turn; each attacks only the points every earlier member left standing,
and points the model misclassifies clean are never attacked. A point counts as broken when
the model (one forward pass) misclassifies the member's point; its ``x_adv`` is that point,
while robust points keep ``x``. So the ensemble is at least as strong as each member, and
costs little more than its first member on an undefended model.

Presets (:data:`PRESETS`), each a sequence of ``(label, attack name, parameters)``:

* ``standard``: AutoAttack's standard version: APGD-CE (100 steps), APGD-T (targeted DLR,
  the 9 most likely wrong classes, 100 steps each), FAB-T (9 targets, 100 steps) and Square
  (5000 queries).
* ``fast``: a cheaper budget in the same spirit, for quick looks: APGD-CE (20 steps),
  APGD-T (3 targets, 50 steps each), Square (300 queries), chosen among cheap budgets by
  ``benchmarks/fast_preset.py``. Its cost and gap against ``standard`` are measured by
  ``benchmarks/autoattack.py`` (see docs/guide/attacks.md).
* ``rand``: for randomized models, AutoAttack's rand members: APGD-CE and APGD-DLR (100
  steps), each on the mean of the model's logits over 20 draws (``eot: 20``, below).

A member's parameters may hold ``eot: n``, read by the ensemble, not the attack: the member
then attacks the model ``mean over n draws of model(x)`` (the n draws run as one batch): a
smoothed model, whose loss is that of the mean logits. AutoAttack instead averages the
draws' losses and gradients, which APGD offers as ``eot_iter: n`` (a parameter of the
attack). ``rand`` keeps the mean logits, which found more points than ``eot_iter`` on a
CNN with input noise (``benchmarks/eot.py`` compares the two). Either way
the verdict on the points stays one forward pass of the model itself, as in AutoAttack.

The ensemble counts the images run forward through the model and differentiated through it
(``forward_passes``, ``backward_passes``), per image of ``x``: it hands the members a
counting wrapper of the model (kept per model, so compiled functions are traced once).
With ``compute_dtype="bfloat16"`` the members search on a counted 16-bit copy instead
(:mod:`attacks.precision`), and the verdicts stay with the model itself.
"""

from __future__ import annotations

import inspect
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from attacks import precision, validation
from attacks.backend import tf
from attacks.draws import mean_over_draws, tile_draws

DEFAULT_BATCH_SIZE = 512
CLEAN = "clean"  # broken_by of points the model misclassifies without any attack
# Arguments the ensemble gives every member itself; a member's parameters may not set them.
SHARED = ("model", "x", "y", "eps", "norm", "clip", "seed", "batch_size")
BALL_TOLERANCE = 1e-6  # relative: float rounding of a point on the sphere, not a way out
EOT = "eot"  # the member parameter read by the ensemble: draws of the model's logits to average

Member = tuple[str, str, Mapping[str, Any]]

PRESETS: dict[str, tuple[Member, ...]] = {
    "standard": (
        ("apgd-ce", "apgd", {"loss": "ce", "steps": 100}),
        ("apgd-t", "apgd", {"loss": "dlr", "targeted": True, "target_classes": 9, "steps": 100}),
        ("fab-t", "fab", {"targeted": True, "target_classes": 9, "steps": 100}),
        ("square", "square", {"queries": 5000}),
    ),
    "fast": (
        ("apgd-ce", "apgd", {"loss": "ce", "steps": 20}),
        ("apgd-t", "apgd", {"loss": "dlr", "targeted": True, "target_classes": 3, "steps": 50}),
        ("square", "square", {"queries": 300}),
    ),
    "rand": (
        ("apgd-ce", "apgd", {"loss": "ce", "steps": 100, EOT: 20}),
        ("apgd-dlr", "apgd", {"loss": "dlr", "steps": 100, EOT: 20}),
    ),
}


@dataclass(frozen=True)
class EnsembleResult:
    """The outcome of :func:`worst_case` on a batch of N points.

    Attributes:
        x_adv: (N, ...) like ``x``: per point the first member's point that fooled the
            model, else ``x`` itself; inside the eps-ball and ``clip``.
        robust: (N,) bool: classified correctly clean and after every member.
        broken_by: (N,) object: the label of the member that broke the point, ``"clean"``
            for points misclassified clean, None for robust points.
        per_attack: In the members' order, ``(label, robust accuracy)``: the share of the N
            points still robust after that member and all before it, in [0, 1].
        seconds: Wall-clock seconds of the whole call.
        forward_passes: Images run forward through the model, per point (total / N).
        backward_passes: Images differentiated through the model, per point (total / N).
        passes_by_attack: In the members' order, ``(label, forward, backward)`` per point
            (total / N); the clean evaluation's forward passes are in no member's share.
    """

    x_adv: np.ndarray
    robust: np.ndarray
    broken_by: np.ndarray
    per_attack: tuple[tuple[str, float], ...]
    seconds: float
    forward_passes: float
    backward_passes: float
    passes_by_attack: tuple[tuple[str, float, float], ...]

    @property
    def robust_accuracy(self) -> float:
        """The share of points robust to every member.

        Returns:
            ``robust.mean()`` in [0, 1] (0 for an empty batch).
        """
        return float(self.robust.mean()) if self.robust.size else 0.0


class CountedModel:
    """The model as a function ``x -> logits``, counting forward and backward images.

    Made by :func:`counting_model`.

    The forward count grows by the batch size on every call; the backward count by the
    batch size of every gradient that flows back to the input (a ``tf.custom_gradient``
    identity in front of the model). Both are variables, so counts made inside the
    members' compiled functions are kept.

    Args:
        logits_fn: The model as a function ``x -> logits`` (see
            :func:`attacks.validation.inference_fn`).
    """

    def __init__(self, logits_fn: Callable[[tf.Tensor], tf.Tensor]) -> None:
        self._logits_fn = logits_fn
        self.forward = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.backward = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._expectations: dict[int, _Expectation] = {}
        self._predict: dict[tuple[str, tuple[int, ...]], Callable] = {}

        @tf.custom_gradient
        def count_backward(x):
            def gradient(upstream):
                # Tied to the gradient, so that no graph prunes the count (a tf.function
                # differentiated from outside would drop a side effect).
                with tf.control_dependencies([self.backward.assign_add(tf.cast(tf.shape(upstream)[0], tf.int64))]):
                    return tf.identity(upstream)
            return tf.identity(x), gradient

        self._count_backward = count_backward

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """The model's logits at ``x``, counted.

        Args:
            x: A batch (B, ...).

        Returns:
            The logits (B, C).
        """
        self.forward.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
        return self._logits_fn(self._count_backward(x))

    def counts(self) -> tuple[int, int]:
        """The images counted so far.

        Returns:
            ``(forward, backward)``.
        """
        return int(self.forward.numpy()), int(self.backward.numpy())

    def expectation(self, draws: int) -> "_Expectation":
        """This model averaged over ``draws`` draws, one per call (kept per ``draws``).

        Args:
            draws: Draws per call, >= 1.

        Returns:
            The averaged model.
        """
        return self._expectations.setdefault(draws, _Expectation(self, draws))

    def predictions(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """The predicted classes (N,) of ``x`` (N, ...), one counted forward pass per image.

        Args:
            x: The inputs.
            batch_size: Images per compiled call.

        Returns:
            int64 (N,).
        """
        key = (x.dtype.name, tuple(x.shape[1:]))
        if key not in self._predict:
            spec = tf.TensorSpec((None, *x.shape[1:]), x.dtype)
            self._predict[key] = tf.function(lambda batch: tf.argmax(self(batch), axis=-1), input_signature=[spec])
        predict = self._predict[key]
        return np.concatenate([predict(tf.constant(x[start:start + batch_size])).numpy()
                               for start in range(0, len(x), batch_size)]).astype(np.int64)


class _Expectation:
    """``x -> mean of draws of model(x)``: the draws run as one batch of draws x B images."""

    def __init__(self, counted: CountedModel, draws: int) -> None:
        self._counted = counted
        self._draws = draws

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """The logits averaged over the draws.

        Args:
            x: A batch (B, ...).

        Returns:
            The mean logits (B, C).
        """
        return mean_over_draws(self._counted(tile_draws(x, self._draws)), self._draws)


_COUNTERS: "weakref.WeakKeyDictionary[Any, CountedModel]" = weakref.WeakKeyDictionary()


def counting_model(model: Any) -> CountedModel:
    """The counting wrapper of ``model`` that :func:`worst_case` hands its members.

    One wrapper per model (kept while the model lives), so the members' compiled functions
    are traced once; its counts only grow, so take differences of :meth:`CountedModel.counts`.

    Args:
        model: A Keras model or a function returning logits; called with
            ``training=False`` when it takes that argument.

    Returns:
        The model as a :class:`CountedModel`: a function ``x -> logits`` that counts.

    Raises:
        TypeError: ``model`` is not callable.
    """
    return _kept_counter(model, validation.inference_fn(model))


def _kept_counter(model: Any, logits_fn: Callable[[tf.Tensor], tf.Tensor]) -> CountedModel:
    """The counter kept for ``model`` (made from ``logits_fn`` on first use), or a fresh
    one for a model that cannot be weakly referenced."""
    try:
        counted = _COUNTERS.get(model)
        if counted is None:
            counted = _COUNTERS.setdefault(model, CountedModel(logits_fn))
        return counted
    except TypeError:  # not weakly referable: a fresh counter for this call
        return CountedModel(logits_fn)


def worst_case(model: Any, x: Any, y: Any, *, eps: float, norm: Any = "inf", preset: str = "standard",
               attacks: Sequence[Member | str] | None = None, seed: int | None = None,
               clip: tuple[float, float] | None = (0.0, 1.0), batch_size: int | None = None,
               compute_dtype: str | None = None) -> EnsembleResult:
    """Robust accuracy as the worst case over an ensemble of attacks (AutoAttack's method).

    Args:
        model: Callable mapping a float batch to logits (N, C); called with
            ``training=False`` when it takes that argument.
        x: Array or tensor (N, ...), floating point, inside ``clip``; never rescaled.
        y: True integer labels (N,).
        eps: The radius, one number >= 0 (:func:`autoattack` takes several).
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
        preset: A key of :data:`PRESETS`: ``"standard"``, ``"fast"`` or ``"rand"``; used
            when ``attacks`` is None.
        attacks: None for the preset, else the members in order: each a name of
            ``attacks.ATTACKS`` (its defaults, labelled by the name) or a ``(label, name,
            params)`` triple. ``params`` may not set the arguments the ensemble passes
            (x, y, eps, norm, clip, seed, batch_size) and may hold ``eot: n`` (see the
            module docstring). ``target_classes`` above C - 1 is lowered to C - 1.
        seed: Seeds every member (each its own stream, derived from ``seed`` and its
            position); the same seed gives the same result for a deterministic model.
        clip: The valid input range (low, high), or None for unbounded inputs.
        batch_size: Images per compiled call of the members and the verdicts, default 512.
        compute_dtype: None (the members attack the model as it is), or ``"bfloat16"`` /
            ``"float16"`` / ``"float32"``: the members search on a copy of the model that
            computes in that dtype (:mod:`attacks.precision`; Keras models only), while
            every verdict (clean, and whether a member's point fools) stays one forward
            pass of the model itself. A point that fools the copy but not the model (they
            differ by about 1e-2 in the logits) is attacked again by the member with the
            model itself. Faster on hardware with 16-bit units; the search can still
            differ from a float32 one, so measure before relying on it
            (``benchmarks/autoattack.py`` has a bfloat16 row). The copy's passes are
            counted with the model's.

    Returns:
        An :class:`EnsembleResult`; its ``x_adv`` is a NumPy array with the dtype of ``x``.

    Raises:
        ValueError: A bad input as for :func:`attacks.apgd`, a sequence of epsilons, an
            unknown preset or attack name (the message lists the choices), a member's
            parameter the attack does not take or the ensemble sets, a repeated label, a
            member's parameter value the attack refuses, an unknown ``compute_dtype``, or
            a ``compute_dtype`` for a model that :mod:`attacks.precision` cannot copy.
        TypeError: Non-float x, non-integer labels, a seed that is not an int, a model that
            is not callable, a malformed member.
    """
    started = time.perf_counter()
    given = validation.attack_input(x, y, eps, norm, clip)
    if not given.scalar_eps:
        raise ValueError(f"worst_case takes one eps, got {eps!r}; use autoattack for several")
    validation.check_seed(seed)
    batch_size = validation.check_positive_int(batch_size or DEFAULT_BATCH_SIZE, "batch_size")
    compute_dtype = precision.check_compute_dtype(compute_dtype)
    members = _members(preset, attacks)
    _check_members(members, given, batch_size)
    x_np, y_np, radius = given.x, given.y, float(given.epsilons[0])
    n = len(x_np)
    if n == 0:
        return _empty_result(x_np, members, time.perf_counter() - started)

    counted = counting_model(model)
    searched = _search_model(model, counted, compute_dtype)
    counts = _Tally(counted, searched)
    first_counts = counts()
    num_classes = validation.model_classes(counted, x_np, y_np)
    robust = counted.predictions(x_np, batch_size) == y_np
    x_adv = x_np.copy()
    broken_by = np.full(n, None, dtype=object)
    broken_by[~robust] = CLEAN
    per_attack, passes = [], []
    for index, (label, name, params) in enumerate(members):
        before = counts()
        todo = np.flatnonzero(robust)
        if todo.size:
            def run(attacked: CountedModel, rows: np.ndarray) -> np.ndarray:
                return _run_member(attacked, name, params, x_np[rows], y_np[rows], eps=radius, norm=given.norm,
                                   clip=given.clip, seed=_member_seed(seed, index), batch_size=batch_size,
                                   num_classes=num_classes)

            points = run(searched, todo)
            fooled = counted.predictions(points, batch_size) != y_np[todo]
            if searched is not counted:
                # The copy's logits differ from the model's by about 1e-2, so it stops at points
                # on its side of the boundary that are not on the model's: search those again
                # with the model itself (a few points, at full precision).
                again = ~fooled & (searched.predictions(points, batch_size) != y_np[todo])
                if again.any():
                    points[again] = run(counted, todo[again])
                    fooled[again] = counted.predictions(points[again], batch_size) != y_np[todo[again]]
            x_adv[todo[fooled]] = points[fooled]
            broken_by[todo[fooled]] = label
            robust[todo[fooled]] = False
        after = counts()
        per_attack.append((label, float(robust.mean())))
        passes.append((label, (after[0] - before[0]) / n, (after[1] - before[1]) / n))
    last_counts = counts()
    return EnsembleResult(x_adv=x_adv, robust=robust, broken_by=broken_by, per_attack=tuple(per_attack),
                          seconds=time.perf_counter() - started,
                          forward_passes=(last_counts[0] - first_counts[0]) / n,
                          backward_passes=(last_counts[1] - first_counts[1]) / n, passes_by_attack=tuple(passes))


def autoattack(model: Any, x: Any, y: Any, *, eps: float | Sequence[float], norm: Any = "inf",
               preset: str = "standard", attacks: Sequence[Member | str] | None = None, seed: int | None = None,
               clip: tuple[float, float] | None = (0.0, 1.0), batch_size: int | None = None,
               compute_dtype: str | None = None):
    """AutoAttack's adversarial points: :func:`worst_case`'s ``x_adv``, for one or K radii.

    Args:
        model: As for :func:`worst_case`.
        x: As for :func:`worst_case`.
        y: As for :func:`worst_case`.
        eps: A float (``x_adv`` shaped like ``x``) or a sequence of K floats (``x_adv``
            (K, N, ...), one :func:`worst_case` per radius with the same seed); each >= 0.
        norm: As for :func:`worst_case`.
        preset: As for :func:`worst_case`.
        attacks: As for :func:`worst_case` (in a run config, lists stand for the triples).
        seed: As for :func:`worst_case`.
        clip: As for :func:`worst_case`.
        batch_size: As for :func:`worst_case`.
        compute_dtype: As for :func:`worst_case`.

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out), shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons;
        inside each ball and ``clip``. Per example: the first member's point that fooled
        the model, else ``x`` itself.

    Raises:
        ValueError: As for :func:`worst_case`.
        TypeError: As for :func:`worst_case`.
    """
    given = validation.attack_input(x, y, eps, norm, clip)
    points = [worst_case(model, given.x, given.y, eps=float(radius), norm=given.norm, preset=preset, attacks=attacks,
                         seed=seed, clip=given.clip, batch_size=batch_size, compute_dtype=compute_dtype).x_adv
              for radius in given.epsilons]
    return given.output(np.stack(points))


def _search_model(model: Any, counted: CountedModel, compute_dtype: str | None) -> CountedModel:
    """The counted model the members attack: ``counted`` itself, or a counted copy of
    ``model`` computing in ``compute_dtype`` whose logits come back as float32 (kept
    with the copy, so the members' compiled functions are traced once per copy)."""
    copy = precision.compute_model(model, compute_dtype)
    if copy is model:
        return counted
    logits_fn = validation.inference_fn(copy)
    return _kept_counter(copy, lambda x: tf.cast(logits_fn(x), tf.float32))


class _Tally:
    """The forward and backward images of the model and its search copy, summed."""

    def __init__(self, *counters: CountedModel) -> None:
        self._counters = tuple({id(counter): counter for counter in counters}.values())

    def __call__(self) -> tuple[int, int]:
        counts = [counter.counts() for counter in self._counters]
        return sum(f for f, _ in counts), sum(b for _, b in counts)


def _members(preset: Any, attacks: Sequence[Member | str] | None) -> tuple[Member, ...]:
    """The members to run, as (label, name, params) triples with copied params."""
    if attacks is None:
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        attacks = PRESETS[preset]
    if isinstance(attacks, (str, bytes)) or not isinstance(attacks, Sequence) or not attacks:
        raise TypeError(f"attacks must be a non-empty sequence of names or (label, name, params) triples, "
                        f"got {attacks!r}")
    members = tuple(_member(entry) for entry in attacks)
    labels = [label for label, _, _ in members]
    repeated = sorted({label for label in labels if labels.count(label) > 1 or label == CLEAN})
    if repeated:
        raise ValueError(f"member labels must be distinct and not {CLEAN!r}, got {repeated}; give each a label")
    return members


def _member(entry: Member | str) -> Member:
    if isinstance(entry, str):
        return entry, entry, {}
    if not (isinstance(entry, Sequence) and len(entry) == 3 and isinstance(entry[0], str)
            and isinstance(entry[1], str) and isinstance(entry[2], Mapping)):
        raise TypeError(f"an ensemble member must be an attack name or a (label, name, params) triple with a "
                        f"dict of params, got {entry!r}")
    return entry[0], entry[1], dict(entry[2])


def _check_members(members: tuple[Member, ...], given: validation.AttackInput, batch_size: int) -> None:
    """Refuse unknown attacks and parameters, and let each attack check its values, before
    any runs (on an empty batch, which calls no model)."""
    from attacks.spec import get_attack  # attacks.spec registers autoattack: imported when used

    for label, name, params in members:
        function = get_attack(name)
        accepted = set(inspect.signature(function).parameters)
        taken = sorted(set(params) & set(SHARED))
        unknown = sorted(set(params) - accepted - {EOT})
        if taken or unknown:
            raise ValueError(f"member {label!r}: the ensemble sets {taken} itself; attack {name!r} takes no "
                             f"parameter(s) {unknown}; it takes: {', '.join(sorted(accepted - set(SHARED)))}")
        if EOT in params:
            validation.check_positive_int(params[EOT], f"member {label!r}: {EOT}")
        empty = np.zeros((0, *given.x.shape[1:]), given.x.dtype)
        _call(function, _untouched_model, empty, np.zeros(0, np.int64), {k: v for k, v in params.items() if k != EOT},
              eps=float(given.epsilons[0]), norm=given.norm, clip=given.clip, seed=None, batch_size=batch_size)


def _untouched_model(x: Any) -> Any:
    raise AssertionError("an attack called the model for an empty batch")


def _call(function: Callable, model: Any, x: np.ndarray, y: np.ndarray, params: dict[str, Any], **shared: Any
          ) -> np.ndarray:
    """``function(model, x, y, **params)`` with the shared arguments it takes."""
    accepted = inspect.signature(function).parameters
    return np.asarray(function(model, x, y, **{k: v for k, v in shared.items() if k in accepted}, **params))


def _member_seed(seed: int | None, index: int) -> int | None:
    return None if seed is None else int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _run_member(counted: CountedModel, name: str, params: Mapping[str, Any], x: np.ndarray, y: np.ndarray, *,
                eps: float, norm: str, clip: tuple[float, float] | None, seed: int | None, batch_size: int,
                num_classes: int) -> np.ndarray:
    """One member's points for ``x``, inside the eps-ball and ``clip``."""
    from attacks.spec import get_attack

    params = dict(params)
    draws = params.pop(EOT, None)
    if "target_classes" in params:
        params["target_classes"] = min(params["target_classes"], num_classes - 1)
    model = counted if draws is None else counted.expectation(int(draws))
    points = _call(get_attack(name), model, x, y, params, eps=eps, norm=norm, clip=clip, seed=seed,
                   batch_size=batch_size)
    return _into_ball(x, points.astype(x.dtype), eps, norm, clip)


def _into_ball(x: np.ndarray, points: np.ndarray, eps: float, norm: str, clip: tuple[float, float] | None
               ) -> np.ndarray:
    """``points`` with those outside the eps-ball (beyond float rounding) or ``clip``
    projected onto the ball and clipped. Every eps attack's points are inside and come back
    unchanged; minimal-perturbation members (DeepFool, say) may go further, and only count
    within eps."""
    delta = (points - x).reshape(len(x), -1).astype(np.float64)
    size = np.abs(delta).max(axis=1) if norm == "inf" else np.sqrt(np.sum(delta ** 2, axis=1))
    outside = size > eps * (1 + BALL_TOLERANCE) + BALL_TOLERANCE
    if clip is not None:
        flat = points.reshape(len(x), -1)
        outside |= (flat.min(axis=1) < clip[0]) | (flat.max(axis=1) > clip[1])
    if not outside.any():
        return points
    if norm == "inf":
        moved = np.clip(delta[outside], -eps, eps)
    else:
        moved = delta[outside] * np.minimum(1.0, eps / np.maximum(size[outside], 1e-12))[:, None]
    projected = x[outside] + moved.reshape(x[outside].shape).astype(x.dtype)
    result = points.copy()
    result[outside] = projected if clip is None else np.clip(projected, clip[0], clip[1])
    return result


def _empty_result(x: np.ndarray, members: tuple[Member, ...], seconds: float) -> EnsembleResult:
    return EnsembleResult(x_adv=x.copy(), robust=np.zeros(0, bool), broken_by=np.zeros(0, object),
                          per_attack=tuple((label, 0.0) for label, _, _ in members), seconds=seconds,
                          forward_passes=0.0, backward_passes=0.0,
                          passes_by_attack=tuple((label, 0.0, 0.0) for label, _, _ in members))
