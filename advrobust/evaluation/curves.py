"""Robust accuracy of a model under an attack, over many epsilons, with confidence intervals.

An example counts as robust at eps when the model classifies it correctly both clean and
after the attack (so a point the attack "fixes" is not counted). At eps = 0 the robust
accuracy is the clean accuracy.

A curve also counts, per eps, the points the attack broke (correct clean, not robust):
for the ensemble ``"autoattack"`` (:mod:`attacks.ensemble`) per member, crediting each
point to the member that broke it first, since each member attacks only the points the
ones before it left robust.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
from tqdm.auto import tqdm

from advrobust.evaluation.replicas import map_on_replicas, replica_devices
from advrobust.evaluation.stats import wilson_interval
from advrobust.files import digest
from attacks import AttackSpec, ensemble, get_attack
from attacks.backend import tf
from attacks.losses import cross_entropy
from attacks.norms import canonical_norm
from attacks.validation import attack_input, inference_fn, model_classes

DEFAULT_CHUNK = 500
ENSEMBLE = "autoattack"  # the attack whose curve counts the points each member broke
# What a unit cache's ``get`` returns for a unit another worker computes (a shard of a
# sharded run, see advrobust.run.shard): it is neither computed nor stored here.
ELSEWHERE = "elsewhere"


@dataclass(frozen=True)
class Curve:
    """Robust accuracy against eps for one model and one attack.

    Arrays have one entry per epsilon; accuracies are fractions in [0, 1];
    ``ci95_low``/``ci95_high`` are 95% Wilson intervals over ``n_examples``.

    Attributes:
        attack: The attack's name (``"worst_case"`` for :func:`worst_case`).
        norm: The canonical norm: ``"inf"`` or ``"l2"``.
        params: The attack's keyword arguments besides ``eps`` and ``norm``.
        epsilons: The radii (K,), float64, in the order given.
        robust_accuracy: The fraction robust at each eps (K,), in [0, 1].
        ci95_low: The lower ends of the 95% Wilson intervals (K,).
        ci95_high: The upper ends of the 95% Wilson intervals (K,).
        n_examples: The number of examples N.
        clean_accuracy: The fraction classified correctly clean, in [0, 1] (NaN if N is 0).
        seconds: The compute time of the attack, in seconds.
        robust_mask: (K, N) bool: robust at each eps.
        clean_mask: (N,) bool: correct on the clean example.
        members_broken: For the ensemble ``"autoattack"``, per eps the points each member
            broke first, ``{member label: count}`` in member order (K dicts); None for
            other attacks.
    """

    attack: str
    norm: str
    params: dict[str, Any]
    epsilons: np.ndarray
    robust_accuracy: np.ndarray
    ci95_low: np.ndarray
    ci95_high: np.ndarray
    n_examples: int
    clean_accuracy: float
    seconds: float
    robust_mask: np.ndarray = field(repr=False)  # (K, N) bool: robust at each eps
    clean_mask: np.ndarray = field(repr=False)  # (N,) bool: correct on the clean example
    members_broken: tuple[dict[str, int], ...] | None = field(default=None, repr=False)

    @property
    def broken_by(self) -> tuple[dict[str, int], ...]:
        """Per eps, the points broken (correct clean, not robust), by whom.

        Returns:
            K dicts: ``members_broken`` for an ensemble, else ``{attack: count}``; the
            counts of an eps sum to the correct-clean points minus the robust ones.
        """
        if self.members_broken is not None:
            return self.members_broken
        broken = int(self.clean_mask.sum()) - self.robust_mask.sum(axis=1)
        return tuple({self.attack: int(count)} for count in broken)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, no masks).

        Returns:
            Every field but the masks, arrays as lists of floats, and ``broken_by`` as a
            list of K ``{label: count}`` dicts.
        """
        return {"attack": self.attack, "norm": self.norm, "params": self.params,
                "epsilons": self.epsilons.tolist(), "robust_accuracy": self.robust_accuracy.tolist(),
                "ci95_low": self.ci95_low.tolist(), "ci95_high": self.ci95_high.tolist(),
                "n_examples": self.n_examples, "clean_accuracy": self.clean_accuracy,
                "seconds": self.seconds, "broken_by": [dict(counts) for counts in self.broken_by]}


def predicted_labels(logits_fn, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The predicted class of every example.

    Args:
        logits_fn: Maps a batch tensor to its logits (N, classes).
        x: The inputs (N, ...).
        batch_size: Examples per call.

    Returns:
        (N,) int: the argmax of the logits.
    """
    return np.concatenate([np.argmax(logits_fn(tf.constant(x[i:i + batch_size])).numpy(), axis=1)
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros(0, np.int64)


class UnitCache(Protocol):
    """Where finished units (attack x batch, all epsilons) are kept.

    The run's is :class:`advrobust.run.store.StoredUnits`. ``fingerprint`` digests the
    settings that decide a unit's outcome: a unit stored under another fingerprint is not
    returned.
    """

    def get(self, attack: str, batch: int,
            fingerprint: str) -> tuple[np.ndarray, np.ndarray, float, list[dict[str, int]] | None] | None:
        """Look up a finished unit.

        Args:
            attack: The unit's attack key (the ``cache_key`` of :func:`robust_accuracy_curve`).
            batch: The index of the chunk of examples.
            fingerprint: The digest of the settings that decide the unit's outcome.

        Returns:
            ``(clean (n,) bool, robust (K, n) bool, seconds, broken_by)``, or None if no
            unit is stored under this attack, batch and fingerprint, or :data:`ELSEWHERE`
            if the unit is another worker's: its rows are then left not robust (and not
            correct clean), never computed. ``broken_by`` is what :meth:`put` was given
            (None if nothing).
        """
        ...

    def put(self, attack: str, batch: int, epsilons: list[float], clean: np.ndarray, robust: np.ndarray,
            seconds: float, fingerprint: str, broken_by: list[dict[str, int]] | None = None) -> None:
        """Keep a finished unit.

        Args:
            attack: The unit's attack key.
            batch: The index of the chunk of examples.
            epsilons: The K radii the unit was attacked at.
            clean: (n,) bool: correct on each clean example of the chunk.
            robust: (K, n) bool: robust at each eps.
            seconds: The unit's compute time.
            fingerprint: The digest of the settings that decide the unit's outcome.
            broken_by: For an ensemble, per eps the points of the chunk each member broke
                first (K ``{label: count}`` dicts); None for other attacks.
        """
        ...


def curve_of(attack: str, norm: str, params: dict[str, Any], epsilons: np.ndarray, clean: np.ndarray,
             robust: np.ndarray, seconds: float, members_broken: tuple[dict[str, int], ...] | None = None) -> Curve:
    """A :class:`Curve` from its masks, with the accuracies and Wilson intervals they give.

    Args:
        attack: The attack's (or bound method's) name.
        norm: The canonical norm.
        params: The attack's parameters.
        epsilons: The radii (K,).
        clean: (N,) bool: correct clean.
        robust: (K, N) bool: robust at each eps.
        seconds: The compute time.
        members_broken: The ensemble's per-member counts, or None.

    Returns:
        The curve.
    """
    n = robust.shape[1]
    counts = robust.sum(axis=1)
    low, high = wilson_interval(counts, n)
    return Curve(attack=attack, norm=norm, params=params, epsilons=epsilons,
                 robust_accuracy=counts / max(n, 1), ci95_low=low, ci95_high=high, n_examples=n,
                 clean_accuracy=float(clean.mean()) if n else float("nan"), seconds=seconds, robust_mask=robust,
                 clean_mask=clean, members_broken=members_broken)


def _robust_rows(spec: AttackSpec, attacked: Any, logits_fn: Any, x: np.ndarray, y: np.ndarray,
                 clean: np.ndarray, epsilons: np.ndarray, batch_size: int) -> np.ndarray:
    """(K, n) robust mask of one chunk: correct on ``x`` and on its attacked version.

    Work that cannot change the answer is skipped: examples already misclassified clean
    are not attacked (they are not robust whatever happens), and eps 0 is not attacked (an
    attack's output lies within eps of ``x``, so at eps 0 it is ``x``: robust = clean).
    """
    robust = np.zeros((len(epsilons), len(x)), dtype=bool)
    robust[epsilons == 0] = clean
    positive = np.flatnonzero(epsilons > 0)
    correct = np.flatnonzero(clean)
    if positive.size and correct.size:
        adversarial = spec(attacked, x[correct], y[correct], eps=epsilons[positive].tolist())
        for index, eps_index in enumerate(positive):
            robust[eps_index, correct] = predicted_labels(logits_fn, adversarial[index], batch_size) == y[correct]
    return robust


def _ensemble_rows(spec: AttackSpec, model: Any, x: np.ndarray, y: np.ndarray, clean: np.ndarray,
                   epsilons: np.ndarray) -> tuple[np.ndarray, list[dict[str, int]]]:
    """(K, n) robust mask of one chunk under the ensemble, and per eps the points each
    member broke first (``{label: count}``, every member of the preset, in order).

    As in :func:`_robust_rows`, eps 0 and examples misclassified clean are not attacked;
    the ensemble runs once per eps > 0, since its record of who broke a point is per eps.
    """
    preset = spec.params.get("preset", inspect.signature(ensemble.worst_case).parameters["preset"].default)
    labels = [label for label, _, _ in ensemble.PRESETS[preset]]
    robust = np.zeros((len(epsilons), len(x)), dtype=bool)
    robust[epsilons == 0] = clean
    broken_by = [dict.fromkeys(labels, 0) for _ in epsilons]
    correct = np.flatnonzero(clean)
    for eps_index in np.flatnonzero(epsilons > 0) if correct.size else ():
        result = ensemble.worst_case(model, x[correct], y[correct], eps=float(epsilons[eps_index]), **spec.params)
        robust[eps_index, correct] = result.robust
        for label in (label for label in result.broken_by if label is not None):
            broken_by[eps_index][label] = broken_by[eps_index].get(label, 0) + 1
    return robust, broken_by


def _attack_chunk(spec: AttackSpec, model: Any, source_model: Any, logits_fn: Any, x: np.ndarray, y: np.ndarray,
                  clean: np.ndarray, epsilons: np.ndarray,
                  batch_size: int) -> tuple[np.ndarray, list[dict[str, int]] | None]:
    """The chunk's (K, n) robust mask and, for the ensemble on ``model`` itself, its
    per-member counts (a transfer is judged on ``model``, where the members' record of
    the source model says nothing)."""
    if spec.name == ENSEMBLE and source_model is None:
        return _ensemble_rows(spec, model, x, y, clean, epsilons)
    attacked = model if source_model is None else source_model
    return _robust_rows(spec, attacked, logits_fn, x, y, clean, epsilons, batch_size), None


def robust_accuracy_curve(model: Any, x: np.ndarray, y: np.ndarray, *, attack: str = "pgd",
                          epsilons: Sequence[float], norm: Any = "inf", params: dict[str, Any] | None = None,
                          batch_size: int | None = None, progress: bool = True, source_model: Any = None,
                          cache: UnitCache | None = None, cache_key: str | None = None,
                          strategy: Any = None) -> Curve:
    """Attack ``x`` at every epsilon and return the robust-accuracy :class:`Curve`.

    ``attack`` is any name in ``attacks.ATTACKS``; ``params`` are its keyword arguments
    (besides ``eps`` and ``norm``). Work proceeds in chunks of ``batch_size`` examples
    (default 500), all epsilons at once per chunk, with a progress bar. Attacks that
    take ``early_stop`` get ``early_stop=True`` unless ``params`` says otherwise. The
    ensemble ``"autoattack"`` runs once per eps and chunk, and its curve counts the points
    each member broke (:attr:`Curve.broken_by`).

    ``source_model``: craft the adversarial examples on this model and evaluate them on
    ``model`` (a transfer, i.e. black-box, attack). ``cache``: each chunk is a unit of
    work (its masks, and the ensemble's per-member counts), looked up in the cache under
    ``cache_key`` (default: the attack spec's JSON) and the chunk index before it is
    computed, and stored there when done; ``seconds`` then sums the units' own compute
    times. ``strategy``: a ``tf.distribute`` strategy whose replicas attack up to one
    chunk each at a time (:mod:`advrobust.evaluation.replicas`); the result is the same
    as on one device.

    Args:
        model: The logits model to evaluate (Keras model, ``tf.Module`` or function).
        x: The inputs (N, ...), floating point, within the attack's ``clip`` (default [0, 1]).
        y: The integer labels (N,).
        attack: The attack's name.
        epsilons: The radii, each >= 0; at eps 0 robust accuracy is the clean accuracy.
        norm: The norm of the ball: ``"inf"`` or ``"l2"`` (or any spelling
            :func:`attacks.norms.canonical_norm` accepts).
        params: The attack's keyword arguments besides ``eps`` and ``norm``.
        batch_size: The examples per chunk (default ``DEFAULT_CHUNK``).
        progress: Show a progress bar.
        source_model: Craft the examples on this model instead (transfer attack).
        cache: Where finished chunks are looked up and stored.
        cache_key: The key of this curve's units in ``cache`` (default: the spec's JSON).
        strategy: A ``tf.distribute.Strategy`` to spread the chunks over its replicas, or
            None for the current one (one device).

    Returns:
        The curve over ``epsilons``, with per-example masks (K, N) and, for the ensemble
        (not as a transfer), the per-member counts ``members_broken``.

    Raises:
        ValueError: ``x`` is empty or not a batch within ``clip``, labels are negative or
            outside the model's classes, the model outputs probabilities, an eps is
            negative or out of reach, ``attack`` is unknown or its params are invalid.
        TypeError: ``x`` is not a floating-point array, ``y`` not integer, or ``model``
            not callable.
    """
    params = dict(params or {})
    norm = canonical_norm(norm)
    # The attack core's checks, here too: an attack never runs for eps 0 or for examples
    # misclassified clean, so bad input could otherwise slip through into a curve.
    given = attack_input(x, y, epsilons, norm, params.get("clip", (0.0, 1.0)))
    if not len(given.x):
        raise ValueError("x holds no examples: robust accuracy needs at least one")
    # Labels outside the model's classes, or probability outputs, would otherwise only
    # show up as a low accuracy, since misclassified examples are never attacked.
    model_classes(inference_fn(model), given.x, given.y)
    if "early_stop" in inspect.signature(get_attack(attack)).parameters:
        # Only robust accuracy is needed here: stop on fooled examples (same accuracy, less work).
        params.setdefault("early_stop", True)
    spec = AttackSpec(attack, {**params, "norm": norm})
    spec.check_values(epsilons, given.x.shape[1:])
    key = cache_key or spec.to_json()
    epsilons_array = np.asarray(epsilons, dtype=np.float64)
    k = len(epsilons_array)
    chunk = batch_size or DEFAULT_CHUNK
    # Everything besides the model and the data rows that decides a unit's outcome.
    fingerprint = digest({"key": key, "attack": spec.to_json(), "epsilons": epsilons_array.tolist(),
                          "chunk": chunk, "transfer": source_model is not None})
    logits_fn = inference_fn(model)
    counted = spec.name == ENSEMBLE and source_model is None  # the curve counts per member

    def attack_unit(rows: slice) -> tuple[np.ndarray, np.ndarray, Any]:
        clean_rows = predicted_labels(logits_fn, x[rows], chunk) == y[rows]
        robust_rows, counts = _attack_chunk(spec, model, source_model, logits_fn, x[rows], y[rows], clean_rows,
                                            epsilons_array, chunk)
        return clean_rows, robust_rows, counts

    clean, robust, seconds, chunk_counts = run_units(
        attack_unit, len(x), k, chunk=chunk, key=key, fingerprint=fingerprint, epsilons=epsilons_array,
        cache=cache, counted=counted, strategy=strategy, progress=progress, desc=f"{attack} ({k} eps)")
    return curve_of(attack, norm, params, epsilons_array, clean, robust, seconds, _summed(chunk_counts))


def run_units(compute: Any, n: int, k: int, *, chunk: int, key: str, fingerprint: str, epsilons: np.ndarray,
              cache: UnitCache | None, counted: bool = False, strategy: Any = None, progress: bool = True,
              desc: str = "") -> tuple[np.ndarray, np.ndarray, float, list[Any]]:
    """Compute (or find in ``cache``) every chunk of ``n`` examples as a unit of work.

    Each chunk of ``chunk`` rows is looked up in ``cache`` under ``key``, its index and
    ``fingerprint`` (all first, in chunk order, as shards number them); the missing ones
    are computed, on several replicas at once if ``strategy`` has them, and stored.

    Args:
        compute: ``rows (slice) -> (clean (r,) bool, robust (K, r) bool, counts)`` for one
            chunk; ``counts`` is the ensemble's per-member record (K dicts) or None.
        n: The number of examples.
        k: The number of radii.
        chunk: The rows per unit.
        key: The units' key in ``cache``.
        fingerprint: The digest of the settings that decide a unit's outcome.
        epsilons: The K radii, stored with each unit.
        cache: Where finished units are looked up and stored, or None.
        counted: A stored unit is usable only with per-member counts (the ensemble).
        strategy: A ``tf.distribute`` strategy whose replicas compute a chunk each, or None.
        progress: Show a progress bar.
        desc: The progress bar's label.

    Returns:
        ``(clean (n,) bool, robust (K, n) bool, seconds, counts per chunk)``; a chunk
        another worker owns (:data:`ELSEWHERE`) is neither correct nor robust here, with
        empty counts; ``seconds`` sums the units' own compute times.
    """
    clean = np.zeros(n, dtype=bool)
    robust = np.zeros((k, n), dtype=bool)
    seconds = 0.0
    chunk_counts = []
    units = [(batch, slice(start, start + chunk)) for batch, start in enumerate(range(0, n, chunk))]
    found = [cache.get(key, batch, fingerprint) if cache is not None else None for batch, _ in units]

    def timed(rows: slice) -> tuple[np.ndarray, np.ndarray, float, Any]:
        started = time.perf_counter()
        clean_rows, robust_rows, counts = compute(rows)
        return clean_rows, robust_rows, time.perf_counter() - started, counts

    def rows_of(rows: slice) -> int:
        return len(range(*rows.indices(n)))

    missing = [rows for (_, rows), unit in zip(units, found)
               if unit is not ELSEWHERE and not _usable(unit, (k, rows_of(rows)), counted=counted)]
    computed = map_on_replicas(timed, missing, replica_devices(strategy))
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for (batch, rows), unit in zip(units, found):
            n_rows = rows_of(rows)
            if unit is ELSEWHERE:  # another worker's rows: nothing broken here
                chunk_counts.append([{} for _ in range(k)] if counted else None)
                bar.update(n_rows)
                continue
            if _usable(unit, (k, n_rows), counted=counted):
                clean[rows], robust[:, rows], elapsed, counts = unit
            else:
                clean[rows], robust[:, rows], elapsed, counts = next(computed)
                if cache is not None:
                    cache.put(key, batch, epsilons.tolist(), clean[rows], robust[:, rows], elapsed, fingerprint,
                              broken_by=counts)
            seconds += elapsed
            chunk_counts.append(counts)
            bar.update(n_rows)
    return clean, robust, seconds, chunk_counts


def _usable(found: Any, shape: tuple[int, int], *, counted: bool) -> bool:
    """Whether a cached unit fits this chunk: its robust mask has ``shape`` and, where the
    curve needs per-member counts (``counted``), it holds one dict per eps."""
    if found is None or found[1].shape != shape:
        return False
    return not counted or (found[3] is not None and len(found[3]) == shape[0])


def _summed(chunk_counts: list[list[dict[str, int]] | None]) -> tuple[dict[str, int], ...] | None:
    """Per eps, the chunks' ``{label: count}`` added up, labels in first-seen order; None
    unless every chunk has counts."""
    if not chunk_counts or any(counts is None for counts in chunk_counts):
        return None
    total = [dict.fromkeys(counts, 0) for counts in chunk_counts[0]]
    for counts in chunk_counts:
        for eps_total, eps_counts in zip(total, counts):
            for label, count in eps_counts.items():
                eps_total[label] = eps_total.get(label, 0) + int(count)
    return tuple(total)


def worst_case(curves: Sequence[Curve]) -> Curve:
    """Per example and eps, robust only if no attack that ran on it broke it there or at a smaller eps.

    The curves must share epsilons and norm, and hold the same examples, except that a
    curve may hold only the first n of them (an attack run on fewer examples, see
    :func:`evaluate`): an example beyond its n counts under the other attacks only. An
    adversarial point found within a radius lies within every larger one, so an example
    broken at some eps counts as broken at every larger eps too: the worst case never
    rises with eps, and uses every attack's evidence at every radius. It is still an upper
    bound of robust accuracy on every example.

    Args:
        curves: The curves of one model, each with its masks; the first holds every example.

    Returns:
        A :class:`Curve` with attack ``"worst_case"`` (params list the attacks), its
        intervals and masks over the first curve's examples; ``seconds`` sums the curves'.

    Raises:
        ValueError: ``curves`` is empty, the curves differ in epsilons or norm, or one
            holds more examples than the first.
    """
    if not curves:
        raise ValueError("worst_case needs at least one curve")
    first = curves[0]
    for curve in curves[1:]:
        if curve.norm != first.norm or curve.robust_mask.shape[1] > first.robust_mask.shape[1] \
                or not np.array_equal(curve.epsilons, first.epsilons):
            raise ValueError("worst_case needs curves over the same epsilons, norm and examples (or the first n "
                             "of the first curve's)")
    robust = first.robust_mask.copy()
    for curve in curves[1:]:
        robust[:, :curve.n_examples] &= curve.robust_mask
    ascending = np.argsort(first.epsilons, kind="stable")
    robust[ascending] = np.logical_and.accumulate(robust[ascending], axis=0)
    return curve_of("worst_case", first.norm, {"attacks": [curve.attack for curve in curves]}, first.epsilons,
                  first.clean_mask, robust, sum(curve.seconds for curve in curves))


@dataclass(frozen=True)
class ModelEvaluation:
    """Every attack's curve on one model, and their per-example worst case.

    Attributes:
        clean_accuracy: The fraction of clean examples classified correctly, in [0, 1].
        n_examples: The number of examples evaluated.
        curves: One curve per attack, in the order of the attacks.
        worst_case: The per-example worst case over ``curves`` (see :func:`worst_case`).
    """

    clean_accuracy: float
    n_examples: int
    curves: tuple[Curve, ...]
    worst_case: Curve


def evaluate(models: Mapping[str, Any], x: np.ndarray, y: np.ndarray, *,
             attacks: Sequence[str | tuple[str, dict[str, Any]]], epsilons: Sequence[float], norm: Any = "inf",
             batch_size: int | None = None, caches: Mapping[str, UnitCache] | None = None,
             progress: bool = True, n_examples: Mapping[str, int] | None = None,
             strategy: Any = None) -> dict[str, ModelEvaluation]:
    """Robust accuracy of every model under every attack at every epsilon.

    ``models`` maps names to logits models; ``attacks`` are names or ``(name, params)``
    pairs; all run on the same ``x, y``, except that ``n_examples`` may limit an attack
    (by name) to the first n examples, e.g. a costly ensemble: its curve holds those, and
    the worst case counts it on them only (see :func:`worst_case`). ``caches`` (optional,
    per model name) make every attacked chunk a resumable unit (see
    :func:`robust_accuracy_curve`).

    Args:
        models: Model names to logits models.
        x: The inputs (N, ...), as for :func:`robust_accuracy_curve`.
        y: The integer labels (N,).
        attacks: Attack names or ``(name, params)`` pairs.
        epsilons: The radii, each >= 0.
        norm: The norm of the ball.
        batch_size: The examples per chunk (default ``DEFAULT_CHUNK``).
        caches: Optional unit caches, by model name.
        progress: Show progress bars.
        n_examples: Attack names to the number of first examples they run on (each >= 1;
            an attack not named runs on all).
        strategy: A ``tf.distribute.Strategy`` whose replicas share the chunks, or None
            (one device); the results do not depend on it.

    Returns:
        ``{name: ModelEvaluation}`` in the order of ``models``.

    Raises:
        ValueError: ``attacks`` is empty, the first attack is limited to fewer examples
            than ``x`` holds, a limit is < 1, or as :func:`robust_accuracy_curve` raises.
    """
    pairs = [(attack, {}) if isinstance(attack, str) else (attack[0], dict(attack[1])) for attack in attacks]
    if not pairs:
        raise ValueError("evaluate needs at least one attack")
    limits = {name: len(x) if limit is None else limit for name, limit in (n_examples or {}).items()}
    if any(limit < 1 for limit in limits.values()):
        raise ValueError(f"n_examples must be >= 1 per attack, got {limits}")
    if limits.get(pairs[0][0], len(x)) < len(x):
        raise ValueError(f"the first attack, {pairs[0][0]!r}, must run on every example (its curve defines the worst "
                         f"case's examples); limit a later one, or put an unlimited attack first")
    results = {}
    for name, model in models.items():
        cache = (caches or {}).get(name)
        curves = tuple(robust_accuracy_curve(model, x[:limits.get(attack)], y[:limits.get(attack)], attack=attack,
                                             epsilons=epsilons, norm=norm, params=params, batch_size=batch_size,
                                             progress=progress, cache=cache, strategy=strategy)
                       for attack, params in pairs)
        results[name] = ModelEvaluation(clean_accuracy=curves[0].clean_accuracy, n_examples=len(x), curves=curves,
                                        worst_case=worst_case(curves))
    return results


def input_gradient_norms(model: Any, x: np.ndarray, y: np.ndarray, *, batch_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """L1 norm of the cross-entropy gradient with respect to each input, (N,) >= 0.

    Computed in inference mode on the clean ``x``; NaN/Inf pass through (a check
    reports them).

    Args:
        model: The logits model.
        x: The clean inputs (N, ...).
        y: The integer labels (N,).
        batch_size: The examples per gradient computation.

    Returns:
        The L1 norm of each example's input gradient (N,); empty if ``x`` is.
    """
    logits_fn = inference_fn(model)
    norms = []
    for start in range(0, len(x), batch_size):
        x_batch = tf.constant(x[start:start + batch_size])
        with tf.GradientTape() as tape:
            tape.watch(x_batch)
            loss = cross_entropy(logits_fn(x_batch), tf.constant(y[start:start + batch_size]))
        gradient = tape.gradient(loss, x_batch)
        norms.append(tf.reduce_sum(tf.abs(tf.reshape(gradient, [tf.shape(gradient)[0], -1])), axis=1).numpy())
    return np.concatenate(norms) if norms else np.zeros(0)


def logits_of(model: Any, x: np.ndarray, *, batch_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """The model's raw outputs for ``x`` in inference mode, (N, C).

    Args:
        model: The logits model.
        x: The inputs (N, ...), N >= 1.
        batch_size: The examples per call of the model.

    Returns:
        The outputs (N, C), as returned by the model (logits for a well-formed one).
    """
    logits_fn = inference_fn(model)
    return np.concatenate([logits_fn(tf.constant(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)])
