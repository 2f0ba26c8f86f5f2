"""Per-example minimal adversarial epsilon: for each example the smallest radius at which an
adversarial example was found, so one call gives the whole robust-accuracy curve.

    upper bound:  DeepFool's perturbation, where it fools the model within max_eps;
                  elsewhere APGD at max_eps (nothing found there: inf)
    repeat search_steps times, on every example still searching, all in one batch:
        mid = (lo + hi) / 2        APGD at radius mid (each example its own radius)
        fooled:  hi = the found point's distance (<= mid), keep the point
        else:    lo = mid

Every returned eps is the distance of an adversarial point that was actually found (the
point is returned with ``return_points=True``), so ``mean(min_eps > e)`` is an upper bound
on the robust accuracy at ``e``, like a fixed-eps attack's. It is not a lower bound of the
true minimal eps: APGD failing at ``lo`` proves nothing. After ``search_steps`` rounds the
gap ``hi - lo`` is at most ``2**-search_steps`` of the first upper bound.

Each round is one untargeted APGD run (:mod:`attacks.auto_pgd`) per loss, every example at
its own radius; an example's random start depends only on the seed, the round and its
index, not on the other examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

from attacks import auto_pgd, validation
from attacks.backend import tf
from attacks.deep_fool import deepfool

DEFAULT_STEPS = 50
DEFAULT_SEARCH_STEPS = 10

Clip = tuple[float, float] | None
Loss = Literal["ce", "dlr"]


@dataclass
class _Search:
    """The bracket [lo, hi] of every example and the point that certifies ``hi``."""

    lo: np.ndarray  # (N,) float64: APGD failed at this radius (0 at first)
    hi: np.ndarray  # (N,) float64: distance of ``points`` (0: misclassified clean; inf: none found)
    points: np.ndarray  # (N, ...) the adversarial point at distance hi (x where none)

    def searching(self) -> np.ndarray:
        return np.isfinite(self.hi) & (self.hi > 0)

    def found(self, rows: np.ndarray, points: np.ndarray, distances: np.ndarray) -> None:
        """Keep each new adversarial point that is closer than the one certifying ``hi``."""
        closer = distances < self.hi[rows]
        rows, points, distances = rows[closer], points[closer], distances[closer]
        self.hi[rows], self.points[rows] = distances, points
        self.lo[rows] = np.minimum(self.lo[rows], distances)


def minimal_epsilon(model: Any, x: Any, y: Any, *, norm: Any = "inf", steps: int = DEFAULT_STEPS,
                    search_steps: int = DEFAULT_SEARCH_STEPS, max_eps: float | None = None,
                    loss: Loss | Sequence[Loss] = "ce", seed: int | None = None, clip: Clip = (0.0, 1.0),
                    batch_size: int | None = None, return_points: bool = False):
    """The smallest radius at which an adversarial example was found, per example.

    A DeepFool upper bound, then a per-example bisection in which each round runs APGD on
    every example still searching at its own midpoint radius (see :mod:`attacks.minimal`).
    ``mean(min_eps > e)`` bounds the robust accuracy at ``e`` from above, as a fixed-eps
    APGD with the same ``steps`` would.

    Args:
        model: Callable mapping a float batch to logits (N, C); called with
            ``training=False`` when it takes that argument.
        x: Array or tensor (N, ...), floating point, inside ``clip``; never rescaled.
        y: True integer labels (N,).
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``): the norm of the radius.
        steps: APGD iterations per bisection round (each one gradient).
        search_steps: Bisection rounds; the bracket shrinks by half in each.
        max_eps: The largest radius searched (> 0). None: the largest distance within
            ``clip``, ``high - low`` for L-inf and ``(high - low) * sqrt(d)`` for L2 with
            d features per example; required when ``clip`` is None.
        loss: ``"ce"`` or ``"dlr"``, or a sequence of them: each round runs APGD with each
            loss in turn on the examples the previous ones did not fool (``"dlr"`` needs
            C >= 3 classes).
        seed: Seeds APGD's random starts; the same seed gives the same result.
        clip: The valid input range (low, high), or None for unbounded inputs.
        batch_size: Examples per compiled APGD call, default 512 (DeepFool: 128).
        return_points: Also return the adversarial points that certify the radii.

    Returns:
        ``min_eps``, a float64 NumPy array (N,) >= 0: 0 where the model misclassifies the
        clean input, ``inf`` where no adversarial example was found within ``max_eps``,
        else the distance (in ``norm``) of an adversarial point found, <= ``max_eps``.
        With ``return_points``: ``(min_eps, points)``, ``points`` with the shape, dtype and
        array type of ``x``, inside ``clip``, each misclassified and at distance exactly
        ``min_eps`` from its input (the input itself where ``min_eps`` is 0 or inf).

    Raises:
        ValueError: NaN or infinite values in x, x outside clip, length mismatch, labels
            outside the model's classes, steps/search_steps/batch_size < 1, unknown norm
            or loss, too few classes for ``"dlr"``, ``max_eps`` not > 0 or beyond the clip
            box (or missing with ``clip=None``), a model returning probabilities.
        TypeError: Non-float x, non-integer labels, a non-numeric max_eps, a seed that is
            not an int, a model that is not callable.
    """
    given = validation.attack_input(x, y, 0.0, norm, clip)
    steps = validation.check_positive_int(steps, "steps")
    search_steps = validation.check_positive_int(search_steps, "search_steps")
    batch_size = validation.check_positive_int(batch_size or auto_pgd.DEFAULT_BATCH_SIZE, "batch_size")
    validation.check_seed(seed)
    losses = _check_losses(loss)
    max_eps = _check_max_eps(max_eps, given)
    x_np, y_np = given.x, given.y
    if len(x_np) == 0:
        return _returned(np.zeros(0), x_np.copy(), given, return_points)
    logits_fn = validation.inference_fn(model)
    num_classes = validation.model_classes(logits_fn, x_np, y_np)
    if "dlr" in losses and num_classes < 3:
        raise ValueError(f"loss 'dlr' needs at least 3 classes, the model has {num_classes}; use loss='ce'")

    round_seeds = [int(s) for s in np.random.default_rng(seed).integers(0, 2**62, size=search_steps + 1)]
    attack = dict(model=model, x=x_np, y=y_np, norm=given.norm, losses=losses, clip=given.clip, steps=steps,
                  batch_size=batch_size)
    search = _upper_bounds(logits_fn, max_eps, round_seeds[0], attack)
    for round_seed in round_seeds[1:]:
        rows = np.flatnonzero(search.searching())
        if not rows.size:
            break
        radii = np.zeros(len(x_np))
        radii[rows] = (search.lo[rows] + search.hi[rows]) / 2
        points, fooled = _apgd_rounds(radii, rows, round_seed, attack)
        won, lost = rows[fooled[rows]], rows[~fooled[rows]]
        search.found(won, points[won], _distances(points[won], x_np[won], given.norm))
        search.lo[lost] = radii[lost]
    return _returned(search.hi, search.points, given, return_points)


def _check_losses(loss: Any) -> tuple[str, ...]:
    losses = tuple(loss) if isinstance(loss, (list, tuple)) else (loss,)
    if not losses or any(not isinstance(name, str) or name not in auto_pgd.APGD_LOSSES for name in losses):
        raise ValueError(f"unknown loss {loss!r}; choose one of: {', '.join(auto_pgd.APGD_LOSSES)}, "
                         "or a sequence of them")
    return losses


def _check_max_eps(max_eps: Any, given: validation.AttackInput) -> float:
    if max_eps is None:
        if given.clip is None:
            raise ValueError("max_eps is needed with clip=None (unbounded inputs have no largest distance); "
                             "pass the largest radius to search, e.g. max_eps=10.0")
        span = given.clip[1] - given.clip[0]
        return span if given.norm == "inf" else span * float(np.sqrt(np.prod(given.x.shape[1:], dtype=np.float64)))
    value = validation.check_positive_float(max_eps, "max_eps")
    validation.check_eps_within_reach(np.array([value]), given.norm, given.clip, given.x.shape[1:])
    return value


def _distances(points: np.ndarray, x: np.ndarray, norm: str) -> np.ndarray:
    """(N,) float64 distance of each point from its input in ``norm``."""
    delta = (points.astype(np.float64) - x.astype(np.float64)).reshape(len(x), int(np.prod(x.shape[1:])))
    return np.abs(delta).max(axis=1, initial=0.0) if norm == "inf" else np.linalg.norm(delta, axis=1)


def _upper_bounds(logits_fn: Any, max_eps: float, seed: int, attack: dict[str, Any]) -> _Search:
    """The first bracket: DeepFool's distance where it fools within ``max_eps``, else APGD's
    at ``max_eps``; 0 for examples misclassified clean, inf where both fail."""
    x, y, norm = attack["x"], attack["y"], attack["norm"]
    search = _Search(lo=np.zeros(len(x)), hi=np.full(len(x), np.inf), points=x.copy())
    correct = _predictions(logits_fn, x, attack["batch_size"]) == y
    search.hi[~correct] = 0.0
    rows = np.flatnonzero(correct)
    if not rows.size:
        return search
    x_fool = deepfool(attack["model"], x[rows], y[rows], norm=norm, clip=attack["clip"])
    distances = _distances(x_fool, x[rows], norm)
    fooled = (_predictions(logits_fn, x_fool, attack["batch_size"]) != y[rows]) & (distances <= max_eps)
    search.found(rows[fooled], x_fool[fooled], distances[fooled])
    rest = rows[~fooled]
    if rest.size:
        radii = np.zeros(len(x))
        radii[rest] = max_eps
        points, success = _apgd_rounds(radii, rest, seed, attack)
        won = rest[success[rest]]
        search.found(won, points[won], _distances(points[won], x[won], norm))
    return search


def _apgd_rounds(radii: np.ndarray, rows: np.ndarray, seed: int, attack: dict[str, Any]) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """APGD with each loss in turn on ``rows`` at their ``radii``: (points (N, ...), fooled (N,))."""
    x = attack["x"]
    points, fooled = x.copy(), np.zeros(len(x), bool)
    todo = np.zeros(len(x), bool)
    todo[rows] = True
    for loss in attack["losses"]:
        found, success = auto_pgd._apgd_at_radii(
            attack["model"], x, attack["y"], radii, todo & ~fooled, norm=attack["norm"], loss=loss,
            clip=attack["clip"], steps=attack["steps"], seed=seed, batch_size=attack["batch_size"])
        points[success], fooled = found[success], fooled | success
    return points, fooled


def _predictions(logits_fn: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([np.argmax(logits_fn(tf.constant(x[start:start + batch_size])), axis=1)
                           for start in range(0, len(x), batch_size)])


def _returned(min_eps: np.ndarray, points: np.ndarray, given: validation.AttackInput, return_points: bool) -> Any:
    min_eps = np.asarray(min_eps, np.float64)
    return (min_eps, given.output(points[None])) if return_points else min_eps
