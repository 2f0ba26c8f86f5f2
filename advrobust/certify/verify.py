"""Verified robustness with IBP and CROWN-IBP: which examples no perturbation can flip.

An example is verified at eps when a lower bound of every margin
``logit[y] - logit[j]`` (j != y) over the eps-ball around it, intersected with ``clip``,
is positive: then no point of the ball is misclassified, so a verified example is also
classified correctly clean, and the verified accuracy is a lower bound on the robust
accuracy any attack can reach. The bounds are those of :mod:`defenses.bounds` (read its
docstring for the layers supported and the relaxations); this module checks the
arguments as the attacks do and works through NumPy batches in chunks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from advrobust.evaluation.stats import wilson_interval
from attacks.backend import tf
from attacks.norms import canonical_norm
from attacks.validation import AttackInput, attack_input, check_positive_int, inference_fn, model_classes
from defenses import bounds

DEFAULT_CHUNK = 100  # examples per bound computation; CROWN-IBP holds K coefficients per input value


@dataclass(frozen=True)
class CertifiedCurve:
    """Verified accuracy against eps for one model and one bound method.

    Attributes:
        method: ``"ibp"`` or ``"crown_ibp"``.
        norm: ``"inf"`` or ``"l2"``.
        epsilons: The radii (K,), float64, in the order given.
        certified_accuracy: The fraction verified at each eps (K,), in [0, 1].
        ci95_low: The lower ends of the 95% Wilson intervals (K,).
        ci95_high: The upper ends of the 95% Wilson intervals (K,).
        n_examples: The number of examples N.
        seconds: The compute time, in seconds.
        certified_mask: (K, N) bool: verified at each eps.
    """

    method: str
    norm: str
    epsilons: np.ndarray
    certified_accuracy: np.ndarray
    ci95_low: np.ndarray
    ci95_high: np.ndarray
    n_examples: int
    seconds: float
    certified_mask: np.ndarray = field(repr=False)


def checked(model: Any, x: Any, y: Any, eps: Any, norm: Any, clip: Any,
            batch_size: Any) -> tuple[AttackInput, bounds.Network, int]:
    """Validate a verification call as the attacks do; read the model into a bounds network.

    Args:
        model: A tf-keras Sequential or single-path functional logits model.
        x: The inputs (N, ...), floating point, inside ``clip``.
        y: The integer labels (N,), within the model's classes.
        eps: The radius, or a sequence of K radii, each finite and >= 0.
        norm: ``"inf"`` or ``"l2"``.
        clip: The valid input range, or None.
        batch_size: Examples per bound computation, >= 1.

    Returns:
        ``(given, network, batch_size)``: the checked input (what
        :func:`attacks.validation.attack_input` returns), the model as a
        :class:`defenses.bounds.Network` and the batch size; what :func:`verified_masks`
        takes.

    Raises:
        TypeError: As :func:`interval`.
        ValueError: As :func:`interval`; also ``x``'s examples are not of the model's shape.
    """
    given = attack_input(x, y, eps, norm, clip)
    chunk = check_positive_int(batch_size, "batch_size")
    net = bounds.network(model)
    expected, shape = tuple(model.input_shape[1:]), given.x.shape[1:]
    if len(expected) != len(shape) or any(e is not None and e != g for e, g in zip(expected, shape)):
        raise ValueError(f"x has examples of shape {shape}, the model takes {expected}")
    if len(given.x):
        model_classes(inference_fn(model), given.x, given.y)
    return given, net, chunk


def _margins(net: bounds.Network, given: AttackInput, eps: float, method: str, chunk: int) -> np.ndarray:
    if not len(given.x):
        return np.zeros((0, net.num_classes))
    return np.concatenate([
        bounds.margin_lower_bounds(net, tf.constant(given.x[start:start + chunk]), given.y[start:start + chunk], eps,
                                   method=method, norm=given.norm, clip=given.clip).numpy()
        for start in range(0, len(given.x), chunk)])


def _verified(given: AttackInput, margins: np.ndarray) -> np.ndarray:
    others = margins.copy()
    others[np.arange(len(given.y)), given.y] = np.inf
    return np.all(others > 0, axis=1)


def _verified_at(net: bounds.Network, given: AttackInput, eps: float, method: str, chunk: int) -> np.ndarray:
    """(N,) bool at one eps. CROWN-IBP's bound is the larger of its own and IBP's, so only
    the examples IBP leaves unverified need the (ten times dearer) backward pass."""
    verified = _verified(given, _margins(net, given, eps, "ibp", chunk))
    rest = np.flatnonzero(~verified)
    if method == "crown_ibp" and rest.size:
        unverified = replace(given, x=given.x[rest], y=given.y[rest])
        verified[rest] = _verified(unverified, _margins(net, unverified, eps, "crown_ibp", chunk))
    return verified


def verified_masks(net: bounds.Network, given: AttackInput, method: str, batch_size: int) -> np.ndarray:
    """Which checked examples ``method`` verifies at each of their radii, without checking again.

    Args:
        net: The model's bounds network, as :func:`checked` returns it.
        given: Checked input (:func:`checked`), or rows of it (``dataclasses.replace``).
        method: ``"ibp"`` or ``"crown_ibp"``.
        batch_size: Examples per bound computation.

    Returns:
        (K, N) bool, one row per radius of ``given.epsilons``.
    """
    return np.stack([_verified_at(net, given, float(e), method, batch_size) for e in given.epsilons])


def _verify(method: str, model: Any, x: Any, y: Any, eps: Any, norm: Any, clip: Any, batch_size: Any) -> np.ndarray:
    given, net, chunk = checked(model, x, y, eps, norm, clip, batch_size)
    masks = verified_masks(net, given, method, chunk)
    return masks[0] if given.scalar_eps else masks


def interval(model: Any, x: Any, y: Any, *, eps: float | Sequence[float], norm: Any = "inf",
             clip: tuple[float, float] | None = (0.0, 1.0), batch_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """Verify examples with interval bound propagation (IBP, Gowal et al. 2018).

    Args:
        model: A tf-keras Sequential or single-path functional logits model (layers as in
            :mod:`defenses.bounds`).
        x: The inputs (N, ...), floating point, inside ``clip``.
        y: The integer labels (N,), within the model's classes.
        eps: The radius, finite and >= 0; or a sequence of K radii.
        norm: ``"inf"`` or ``"l2"`` (any spelling the attacks accept).
        clip: The valid input range the ball is intersected with, or None.
        batch_size: Examples per bound computation.

    Returns:
        (N,) bool, verified at ``eps`` (for a sequence of radii: (K, N)). A verified
        example is classified as ``y`` everywhere in the ball.

    Raises:
        TypeError: ``x`` is not floating point, ``y`` not integer, or ``model`` is not a
            tf-keras Sequential or functional model.
        ValueError: ``x`` is not a batch inside ``clip`` or holds NaN, a label is outside
            the model's classes, eps is negative or out of reach, the model outputs
            probabilities, or it holds a layer without a bound (named in the message).
    """
    return _verify("ibp", model, x, y, eps, norm, clip, batch_size)


def crown_ibp(model: Any, x: Any, y: Any, *, eps: float | Sequence[float], norm: Any = "inf",
              clip: tuple[float, float] | None = (0.0, 1.0), batch_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """Verify examples with CROWN-IBP (Zhang et al. 2020): linear bounds, IBP inside.

    The margin bound is the larger of the CROWN backward bound and IBP's, so every example
    :func:`interval` verifies is verified here too.

    Args:
        model: A tf-keras Sequential or single-path functional logits model (layers as in
            :mod:`defenses.bounds`).
        x: The inputs (N, ...), floating point, inside ``clip``.
        y: The integer labels (N,), within the model's classes.
        eps: The radius, finite and >= 0; or a sequence of K radii.
        norm: ``"inf"`` or ``"l2"`` (any spelling the attacks accept).
        clip: The valid input range the ball is intersected with, or None.
        batch_size: Examples per bound computation.

    Returns:
        (N,) bool, verified at ``eps`` (for a sequence of radii: (K, N)).

    Raises:
        TypeError: ``x`` is not floating point, ``y`` not integer, or ``model`` is not a
            tf-keras Sequential or functional model.
        ValueError: ``x`` is not a batch inside ``clip`` or holds NaN, a label is outside
            the model's classes, eps is negative or out of reach, the model outputs
            probabilities, or it holds a layer without a bound (named in the message).
    """
    return _verify("crown_ibp", model, x, y, eps, norm, clip, batch_size)


def margin_bounds(model: Any, x: Any, y: Any, *, eps: float, method: str = "crown_ibp", norm: Any = "inf",
                  clip: tuple[float, float] | None = (0.0, 1.0), batch_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """Lower bounds of the margins ``logit[y] - logit[j]`` over the eps-ball.

    Args:
        model: A tf-keras Sequential or single-path functional logits model.
        x: The inputs (N, ...), floating point, inside ``clip``.
        y: The integer labels (N,), within the model's classes.
        eps: The radius, one finite number >= 0.
        method: ``"ibp"`` or ``"crown_ibp"``.
        norm: ``"inf"`` or ``"l2"``.
        clip: The valid input range the ball is intersected with, or None.
        batch_size: Examples per bound computation.

    Returns:
        (N, K) float32 bounds, 0 at each example's label; an example is verified when all
        its other entries are > 0.

    Raises:
        TypeError: As :func:`interval`.
        ValueError: As :func:`interval`; also ``eps`` is a sequence or ``method`` is unknown.
    """
    if np.ndim(eps) != 0:
        raise ValueError(f"margin_bounds takes one eps, got {eps!r}")
    if method not in bounds.METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(bounds.METHODS)}")
    given, net, chunk = checked(model, x, y, eps, norm, clip, batch_size)
    return _margins(net, given, float(given.epsilons[0]), method, chunk)


def certified_accuracy_curve(model: Any, x: Any, y: Any, *, epsilons: Sequence[float], method: str = "crown_ibp",
                             norm: Any = "inf", clip: tuple[float, float] | None = (0.0, 1.0),
                             batch_size: int = DEFAULT_CHUNK) -> CertifiedCurve:
    """Verified accuracy at every eps: a lower bound on robust accuracy against any attack.

    Args:
        model: A tf-keras Sequential or single-path functional logits model.
        x: The inputs (N, ...), N >= 1, floating point, inside ``clip``.
        y: The integer labels (N,), within the model's classes.
        epsilons: The radii, each finite and >= 0.
        method: ``"ibp"`` or ``"crown_ibp"``.
        norm: ``"inf"`` or ``"l2"``.
        clip: The valid input range the balls are intersected with, or None.
        batch_size: Examples per bound computation.

    Returns:
        The :class:`CertifiedCurve` over ``epsilons``, with its (K, N) mask.

    Raises:
        TypeError: As :func:`interval`.
        ValueError: As :func:`interval`; also ``x`` is empty or ``method`` is unknown.
    """
    if method not in bounds.METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(bounds.METHODS)}")
    if not len(x):
        raise ValueError("x holds no examples: a verified accuracy needs at least one")
    started = time.perf_counter()
    mask = np.atleast_2d(_verify(method, model, x, y, list(np.atleast_1d(epsilons)), norm, clip, batch_size))
    counts = mask.sum(axis=1)
    low, high = wilson_interval(counts, mask.shape[1])
    return CertifiedCurve(method=method, norm=canonical_norm(norm),
                          epsilons=np.asarray(epsilons, dtype=np.float64).reshape(-1),
                          certified_accuracy=counts / mask.shape[1], ci95_low=low, ci95_high=high,
                          n_examples=mask.shape[1], seconds=time.perf_counter() - started, certified_mask=mask)
