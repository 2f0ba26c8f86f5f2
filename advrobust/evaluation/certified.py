"""Verified accuracy as units of a run, and the bracket it forms with the attacks.

An attack gives an upper bound of robust accuracy (a stronger attack could lower it); a
certificate from :mod:`advrobust.certify` (IBP, CROWN-IBP) a lower bound. A run computes
both on the same test images, chunk by chunk like an attack (each chunk a unit of its
store, resumable and shardable), and the true robust accuracy lies in between::

    curve = certified_curve(model, x, y, method="crown_ibp", epsilons=[0.1, 0.3])
    rows = bracket(curve, worst)     # per eps: certified <= robust accuracy <= attacked
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from advrobust.evaluation.curves import Curve, UnitCache, curve_of, predicted_labels, run_units
from advrobust.files import digest
from attacks.validation import check_positive_int, inference_fn
from defenses import bounds

DEFAULT_CHUNK = 500  # examples per unit of work
DEFAULT_BOUND_BATCH = 100  # examples per bound computation inside a unit


def certified_curve(model: Any, x: np.ndarray, y: np.ndarray, *, method: str = "crown_ibp",
                    epsilons: Sequence[float], norm: Any = "inf", clip: tuple[float, float] | None = (0.0, 1.0),
                    batch_size: int | None = None, bound_batch_size: int = DEFAULT_BOUND_BATCH,
                    progress: bool = True, cache: UnitCache | None = None, cache_key: str | None = None,
                    strategy: Any = None) -> Curve:
    """Verified accuracy at every eps, in chunks that are units of ``cache``.

    Args:
        model: A tf-keras Sequential or single-path functional logits model whose layers
            have bounds (see :mod:`defenses.bounds`).
        x: The inputs (N, ...), N >= 1, floating point, inside ``clip``.
        y: The integer labels (N,), within the model's classes.
        method: ``"ibp"`` or ``"crown_ibp"``.
        epsilons: The radii, each finite and >= 0.
        norm: ``"inf"`` or ``"l2"``.
        clip: The valid input range the balls are intersected with, or None.
        batch_size: Examples per unit of work (default ``DEFAULT_CHUNK``).
        bound_batch_size: Examples per bound computation inside a unit.
        progress: Show a progress bar.
        cache: Where finished units are looked up and stored (see
            :func:`advrobust.evaluation.curves.run_units`).
        cache_key: The units' key in ``cache`` (default ``"certified:METHOD"``).
        strategy: A ``tf.distribute`` strategy whose replicas compute a unit each, or None.

    Returns:
        A :class:`~advrobust.evaluation.curves.Curve` with ``attack`` the method:
        ``robust_mask`` (K, N) is True where the example is certified (a certified
        example is classified correctly everywhere in its ball, so also clean),
        ``robust_accuracy`` the verified accuracy, ``clean_mask`` the clean predictions.

    Raises:
        TypeError: ``x`` is not floating point, ``y`` not integer, or ``model`` is not a
            tf-keras Sequential or functional model.
        ValueError: ``method`` is unknown, ``x`` is empty or not a batch inside ``clip``,
            a label is outside the model's classes, an eps is negative, or the model holds
            a layer without a bound (named in the message).
    """
    from advrobust.certify import verify

    if method not in bounds.METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose one of: {', '.join(bounds.METHODS)}")
    # Checked once (and the model read into a bounds network once); each unit bounds its rows.
    given, net, bound_batch = verify.checked(model, x, y, epsilons, norm, clip, bound_batch_size)
    if not len(given.x):
        raise ValueError("x holds no examples: a verified accuracy needs at least one")
    logits_fn = inference_fn(model)
    chunk = check_positive_int(batch_size or DEFAULT_CHUNK, "batch_size")
    epsilons_array = np.asarray(given.epsilons, dtype=np.float64).reshape(-1)
    key = cache_key or f"certified:{method}"
    fingerprint = digest({"key": key, "method": method, "norm": given.norm,
                          "clip": None if clip is None else list(clip), "epsilons": epsilons_array.tolist(),
                          "chunk": chunk})

    def certify_unit(rows: slice) -> tuple[np.ndarray, np.ndarray, None]:
        clean_rows = predicted_labels(logits_fn, given.x[rows], chunk) == given.y[rows]
        part = replace(given, x=given.x[rows], y=given.y[rows])
        return clean_rows, verify.verified_masks(net, part, method, bound_batch), None

    clean, certified, seconds, _ = run_units(
        certify_unit, len(given.x), len(epsilons_array), chunk=chunk, key=key, fingerprint=fingerprint,
        epsilons=epsilons_array, cache=cache, strategy=strategy, progress=progress,
        desc=f"{method} ({len(epsilons_array)} eps)")
    return curve_of(method, given.norm, {}, epsilons_array, clean, certified, seconds)


@dataclass(frozen=True)
class BracketRow:
    """Robust accuracy at one eps, bracketed on the same examples.

    Attributes:
        eps: The radius.
        certified: The verified accuracy: a lower bound, in [0, 1].
        attacked: The worst case over the attacks: an upper bound, in [0, 1].
        width: ``attacked - certified``; negative only if a certified point was broken.
    """

    eps: float
    certified: float
    attacked: float
    width: float


def bracket(certified: Curve, attacked: Curve) -> list[BracketRow]:
    """Per eps, the verified accuracy and the attacks' worst case on the same examples.

    The same examples are the first m, m the certified curve's number of examples.

    Args:
        certified: A curve of :func:`certified_curve`, over the first m test images.
        attacked: The worst case over the attacks, over the first n >= m of them, at
            every eps of ``certified``.

    Returns:
        One :class:`BracketRow` per eps of ``certified``, in its order.

    Raises:
        ValueError: ``attacked`` holds fewer examples than ``certified`` or lacks one of
            its radii.
    """
    m = certified.robust_mask.shape[1]
    if attacked.robust_mask.shape[1] < m:
        raise ValueError(f"the attacked curve holds {attacked.robust_mask.shape[1]} examples, the certified {m}: "
                         "a bracket needs both on the same examples")
    rows = []
    for at, eps in enumerate(certified.epsilons):
        hits = np.flatnonzero(np.isclose(attacked.epsilons, eps, rtol=0.0, atol=1e-12))
        if not hits.size:
            raise ValueError(f"the attacked curve has no eps {eps:g}")
        low = float(certified.robust_mask[at].mean())
        high = float(attacked.robust_mask[hits[0], :m].mean())
        rows.append(BracketRow(eps=float(eps), certified=low, attacked=high, width=high - low))
    return rows
