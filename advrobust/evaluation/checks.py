"""Sanity and gradient-masking checks on finished curves (AutoAttack's flags; Carlini et
al. 2019, "On Evaluating Adversarial Robustness", the checklist of section 5).

A robustness number is evidence only if the attack behind it worked. Each function here
takes finished results and returns a :class:`Check` verdict; none runs an attack (the
run computes the extra curves the checks need: random noise, a large radius, a transfer
attack from another model). The checks:

* ``monotone``: robust accuracy does not rise with eps (a larger ball contains the smaller);
* ``iterative_not_weaker``: an iterative attack is not weaker than single-step FGSM;
* ``large_eps``: at a radius that allows any image (L-inf 1.0) accuracy is about 0;
  if not, the gradients do not lead the attack anywhere;
* ``noise_not_stronger`` / ``black_box_not_stronger``: random noise or a transfer
  (black-box) attack must not fool examples that the white-box attacks could not;
* ``logits``: the model's outputs look like logits, not probabilities;
* ``gradients``: the loss gradient at clean inputs is finite and non-zero;
* ``deterministic``: the model gives the same outputs when called twice;
* ``square_not_stronger``: the Square attack, which uses outputs only, fools no example
  the white-box attacks missed;
* ``fooled_points_kept``: a PGD trajectory that reaches a misclassified point ends on one;
* ``loss_converged``: the attack's loss no longer rises over its last 10% of steps;
* ``budget_doubled``: twice the steps or restarts do not change robust accuracy;
* ``unbounded``: an attack without a radius (DeepFool) fools about every example;
* ``certified_not_broken``: no example a bound certifies (IBP, CROWN-IBP) is broken by
  an attack. Unlike the others, a failure is not a finding about the model but a bug in
  the bound or the attack's evaluation, so the run fails on it
  (:class:`CertificateViolation`).

The measurements the last five need (repeated calls, PGD's trajectory, DeepFool) are
in :mod:`advrobust.evaluation.probes`. :func:`kind_of` names the function behind a
verdict; :func:`doc_anchor` its section on the checks page (``CHECKS_PAGE``) and in the
report, which shows :func:`describe` there.

Tolerance: ``TOLERANCE`` (one percentage point, or one example if that is more) absorbs
the noise of stochastic attacks; anything beyond it fails and is shown prominently.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

TOLERANCE = 0.01
LARGE_EPS_MAX_ACCURACY = 0.02
MAX_ZERO_GRADIENT_FRACTION = 0.05
RANDOMNESS_TOLERANCE = 1e-4  # relative to the largest output: float noise of a deterministic model is far below
LATE_LOSS_SHARE = 0.05  # linear progress would put 10% of the gain in the last 10% of the steps
# Twice the budget of a converged attack on a deterministic model still fools an example
# or two more by chance: 3 points, or 3 examples if that is more.
DOUBLING_TOLERANCE = 0.03
DOUBLING_MIN_EXAMPLES = 3
SINGLE_STEP = ("fgsm",)
# Attacks that never take a gradient of the model: not part of the white-box worst case.
BLACK_BOX = ("square", "noise")
# Every check is explained in a section of this page, under doc_anchor(its function's name).
CHECKS_PAGE = "docs/guide/report.md"
# A verdict's name up to " (" -> the function that gives it (besides "A <= B", iterative_not_weaker).
_KINDS = {"monotone": "monotone", "large eps": "large_eps", "noise not stronger": "noise_not_stronger",
          "black box not stronger": "black_box_not_stronger", "logits": "logits", "gradients": "gradients",
          "deterministic": "deterministic", "square not stronger": "square_not_stronger",
          "fooled points kept": "fooled_points_kept", "loss converged": "loss_converged",
          "double steps": "budget_doubled", "double restarts": "budget_doubled", "unbounded": "unbounded",
          "certified not broken": "certified_not_broken"}
# Strongest first: the run attacks with the first of these it has for its extra checks.
ITERATIVE = ("pgd", "mim", "bim")


@dataclass(frozen=True)
class Check:
    """The verdict of one check; ``detail`` says what was measured, in words.

    Attributes:
        name: What was checked, e.g. ``"monotone (pgd)"`` or ``"large eps (linf 1)"``.
        passed: True if the check passed.
        detail: What was measured, in words; on failure, also what it suggests.
    """

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-ready data.

        Returns:
            ``{"name": str, "passed": bool, "detail": str}``.
        """
        return asdict(self)


class CertificateViolation(RuntimeError):
    """A point certified robust was broken by an attack: the bound or the attack is wrong.

    Attributes:
        failed: The failed ``certified not broken`` verdicts, each naming its points.
    """

    def __init__(self, failed: Sequence[Check]) -> None:
        self.failed = list(failed)
        super().__init__("CERTIFICATE VIOLATED: " + "; ".join(f"{check.name}: {check.detail}" for check in failed))


def kind_of(name: str) -> str | None:
    """The check function that gives verdicts of this name.

    Args:
        name: A verdict's ``name``, e.g. ``"monotone (pgd)"`` or ``"pgd <= fgsm"``.

    Returns:
        The function's name, e.g. ``"monotone"`` or ``"iterative_not_weaker"``; None for
        a name no check of this module gives.
    """
    if " <= " in name:
        return "iterative_not_weaker"
    return _KINDS.get(name.split(" (", 1)[0])


def doc_anchor(kind: str) -> str:
    """The anchor of a check's section, on the checks page and in the report.

    Args:
        kind: The name of a check function of this module, e.g. ``"large_eps"``.

    Returns:
        ``"check-"`` and the name with dashes, e.g. ``"check-large-eps"``.
    """
    return "check-" + kind.replace("_", "-")


def describe(kind: str) -> str:
    """What a check asserts, in one paragraph: the summary of its function's docstring.

    Args:
        kind: The name of a check function of this module, e.g. ``"large_eps"``.

    Returns:
        The docstring's first paragraph on one line.

    Raises:
        ValueError: ``kind`` names no check of this module.
    """
    if kind not in set(_KINDS.values()) | {"iterative_not_weaker"}:
        raise ValueError(f"{kind!r} is not a check; the checks are: {', '.join(sorted(set(_KINDS.values())))}")
    return " ".join(inspect.getdoc(globals()[kind]).split("\n\n", 1)[0].replace("``", "").split())


def _slack(n: int) -> float:
    return max(TOLERANCE, 1.0 / max(n, 1))


def _eps_list(epsilons: Sequence[float]) -> str:
    return ", ".join(f"{eps:g}" for eps in epsilons)


def monotone(curve) -> Check:
    """Robust accuracy of ``curve`` never rises with eps by more than the tolerance.

    Args:
        curve: A :class:`~advrobust.evaluation.curves.Curve` (or anything with its
            ``attack``, ``epsilons``, ``robust_accuracy`` and ``n_examples``).

    Returns:
        The verdict; on failure its detail lists every eps step where accuracy rose.
    """
    rises = np.diff(curve.robust_accuracy)
    slack = _slack(curve.n_examples)
    bad = np.flatnonzero(rises > slack)
    name = f"monotone ({curve.attack})"
    if bad.size:
        steps = "; ".join(f"eps {curve.epsilons[i]:g} -> {curve.epsilons[i + 1]:g}: "
                          f"{curve.robust_accuracy[i]:.3f} -> {curve.robust_accuracy[i + 1]:.3f}" for i in bad)
        return Check(name, False, f"robust accuracy rises with eps ({steps}): the attack is not converging")
    return Check(name, True, f"non-increasing over eps {_eps_list(curve.epsilons)} (tolerance {slack:.3f})")


def iterative_not_weaker(curves) -> list[Check]:
    """Every iterative attack's robust accuracy is at most FGSM's (plus tolerance), per eps.

    Args:
        curves: The curves of one model over the same epsilons; those of attacks in
            ``ITERATIVE`` are compared with those in ``SINGLE_STEP``, others are ignored.

    Returns:
        One verdict per (iterative, single-step) pair, named ``"pgd <= fgsm"`` and so on;
        empty if either kind is missing.
    """
    single = [curve for curve in curves if curve.attack in SINGLE_STEP]
    checks = []
    for iterative in (curve for curve in curves if curve.attack in ITERATIVE):
        for reference in single:
            excess = iterative.robust_accuracy - reference.robust_accuracy
            slack = _slack(iterative.n_examples)
            bad = np.flatnonzero(excess > slack)
            name = f"{iterative.attack} <= {reference.attack}"
            if bad.size:
                where = "; ".join(f"eps {iterative.epsilons[i]:g}: {iterative.robust_accuracy[i]:.3f} > "
                                  f"{reference.robust_accuracy[i]:.3f}" for i in bad)
                checks.append(Check(name, False, f"the iterative attack is weaker than the single-step one "
                                                 f"({where}): a sign of gradient masking or a broken attack"))
            else:
                gap = float(np.max(reference.robust_accuracy - iterative.robust_accuracy))
                checks.append(Check(name, True, f"at every eps (largest gap {gap:.3f})"))
    return checks


def large_eps(curve, *, max_accuracy: float = LARGE_EPS_MAX_ACCURACY) -> Check:
    """At the (single) large radius of ``curve``, robust accuracy is at most ``max_accuracy``.

    Args:
        curve: A curve whose last eps is the large radius (where every image is reachable).
        max_accuracy: The highest robust accuracy, a fraction in [0, 1], that passes.

    Returns:
        The verdict on the robust accuracy at the last eps of ``curve``.
    """
    accuracy = float(curve.robust_accuracy[-1])
    eps = float(curve.epsilons[-1])
    name = f"large eps ({curve.norm} {eps:g})"
    detail = (f"{curve.attack} robust accuracy {accuracy:.3f} on {curve.n_examples} examples at eps {eps:g}, "
              f"where every image is reachable")
    if accuracy > max_accuracy:
        return Check(name, False, detail + f": above {max_accuracy:.2f}, so the gradients do not lead the "
                                           f"attack to an adversarial example (masking, or a broken attack)")
    return Check(name, True, detail)


def _not_stronger(name: str, what: str, other, worst) -> Check:
    """Examples fooled by ``other`` but robust under every white-box attack, per eps."""
    n = other.robust_mask.shape[1]
    # Compare at the same radii: ``other`` may cover a subset of the white-box epsilons.
    eps_index = [int(np.flatnonzero(np.isclose(worst.epsilons, eps))[0]) for eps in other.epsilons]
    white_box = worst.robust_mask[eps_index, :n]
    extra = (~other.robust_mask & other.clean_mask & white_box).sum(axis=1)
    slack = _slack(n)
    bad = np.flatnonzero(extra > slack * n)
    if bad.size:
        where = "; ".join(f"eps {other.epsilons[i]:g}: {int(extra[i])} of {n}" for i in bad)
        return Check(name, False, f"{what} fooled examples that the white-box attacks did not ({where}): "
                                  f"the white-box numbers overstate robustness (gradient masking)")
    return Check(name, True, f"{what} fooled at most {int(extra.max(initial=0))} of {n} examples the white-box "
                             f"attacks missed (eps {_eps_list(other.epsilons)}; tolerance {slack:.3f})")


def noise_not_stronger(noise_curve, worst) -> Check:
    """Random noise in the ball fools no (more than tolerance) example the white box missed.

    Args:
        noise_curve: The curve of the noise attack, with per-example ``robust_mask``
            (K, n) and ``clean_mask`` (n,) and ``params["draws"]``; its epsilons are
            among ``worst``'s.
        worst: The worst case over the white-box attacks (see
            :func:`~advrobust.evaluation.curves.worst_case`), with ``robust_mask``
            covering at least the first n examples.

    Returns:
        The verdict; on failure its detail gives, per eps, how many examples noise fooled
        that every white-box attack missed.
    """
    return _not_stronger("noise not stronger", f"uniform noise ({noise_curve.params.get('draws', '?')} draws)",
                         noise_curve, worst)


def black_box_not_stronger(transfer_curve, worst, source: str) -> Check:
    """A transfer attack from ``source`` fools no (more than tolerance) example the white box missed.

    Args:
        transfer_curve: The curve of the transfer attack, with per-example masks as in
            :func:`noise_not_stronger`; its epsilons are among ``worst``'s.
        worst: The worst case over the white-box attacks on the target model.
        source: The name of the model the adversarial examples were crafted on.

    Returns:
        The verdict, named ``"black box not stronger (SOURCE)"``.
    """
    return _not_stronger(f"black box not stronger ({source})",
                         f"{transfer_curve.attack} transferred from {source!r}", transfer_curve, worst)


def logits(outputs: np.ndarray) -> Check:
    """``outputs`` (N, C) of the model look like logits: not rows of probabilities.

    Args:
        outputs: The model's outputs (N, C) on clean examples.

    Returns:
        Fails if any output is NaN or Inf, or if every output lies in [0, 1] and every
        row sums to 1 (softmax applied).
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if not np.all(np.isfinite(outputs)):
        return Check("logits", False, "the model outputs NaN or Inf")
    sums = outputs.sum(axis=1)
    probabilities = (outputs.min() >= 0.0 and outputs.max() <= 1.0 and np.allclose(sums, 1.0, atol=1e-3))
    detail = f"output range [{outputs.min():.2f}, {outputs.max():.2f}] over {len(outputs)} examples"
    if probabilities:
        return Check("logits", False, detail + ": rows are probabilities (softmax applied); attacks need logits")
    return Check("logits", True, detail)


def gradients(gradient_norms: np.ndarray) -> Check:
    """Input gradients of the loss, one norm per clean example: finite and mostly non-zero.

    Args:
        gradient_norms: The L1 norm of the loss gradient for each clean example (N,).

    Returns:
        Fails if any norm is NaN or Inf, or if more than ``MAX_ZERO_GRADIENT_FRACTION``
        of them are exactly zero.
    """
    norms = np.asarray(gradient_norms, dtype=np.float64)
    if not np.all(np.isfinite(norms)):
        return Check("gradients", False, f"{int((~np.isfinite(norms)).sum())} of {len(norms)} input gradients "
                                         f"are NaN or Inf")
    zero = float(np.mean(norms == 0.0)) if len(norms) else 0.0
    detail = (f"{zero:.1%} of {len(norms)} clean examples have an all-zero loss gradient; median L1 norm "
              f"{float(np.median(norms)) if len(norms) else 0.0:.3g}")
    if zero > MAX_ZERO_GRADIENT_FRACTION:
        return Check("gradients", False, detail + ": gradient attacks cannot move these examples (saturated "
                                                  "softmax or non-differentiable layers: masking)")
    return Check("gradients", True, detail)


def deterministic(repeated: np.ndarray) -> Check:
    """The model gives the same outputs when called again on the same inputs.

    Args:
        repeated: The outputs (P, N, C) of P >= 2 calls of the model on the same N inputs
            (see :func:`advrobust.evaluation.probes.repeated_logits`).

    Returns:
        Fails if any output differs from the first call's by more than
        ``RANDOMNESS_TOLERANCE`` times the largest absolute output (at least 1); the
        detail says how many examples changed their predicted class between calls.
    """
    repeated = np.asarray(repeated, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(repeated[0])))) if repeated.size else 1.0
    difference = float(np.max(np.abs(repeated - repeated[0]))) if repeated.size else 0.0
    predictions = np.argmax(repeated, axis=2) if repeated.size else np.zeros((0, 0))
    flipped = int(np.any(predictions != predictions[0], axis=0).sum()) if repeated.size else 0
    n = repeated.shape[1] if repeated.ndim == 3 else 0
    detail = (f"{repeated.shape[0]} calls on {n} examples: largest output difference {difference:.3g} "
              f"(tolerance {RANDOMNESS_TOLERANCE:g} x {scale:.3g}); {flipped} examples changed class")
    if difference > RANDOMNESS_TOLERANCE * scale:
        return Check("deterministic", False, detail + ": the model is random, so each gradient is of one draw "
                                                      "and one evaluation may not hold for the next (average "
                                                      "gradients over draws: EOT)")
    return Check("deterministic", True, detail)


def square_not_stronger(square_curve, white_box_worst) -> Check:
    """The Square attack fools no (more than tolerance) example every white-box attack missed.

    Square uses the model's outputs only, never a gradient.

    Args:
        square_curve: The curve of the Square attack, with per-example masks as in
            :func:`noise_not_stronger`; its epsilons are among ``white_box_worst``'s and
            its examples the first ones of it.
        white_box_worst: The worst case over the white-box attacks only (those not in
            ``BLACK_BOX``).

    Returns:
        The verdict, named ``"square not stronger"``.
    """
    queries = square_curve.params.get("queries", 5000)
    return _not_stronger("square not stronger", f"square ({queries} queries)", square_curve, white_box_worst)


def fooled_points_kept(clean: np.ndarray, fooled_on_path: np.ndarray, fooled_at_end: np.ndarray) -> Check:
    """A PGD trajectory that reaches a misclassified point stays misclassified to its end.

    Args:
        clean: (N,) bool: correct on the clean example.
        fooled_on_path: (N,) bool: some iterate of the trajectory was misclassified.
        fooled_at_end: (N,) bool: the last iterate is misclassified.

    Returns:
        Fails if more than the tolerance of the N examples were fooled on the way but not
        at the end (see :func:`advrobust.evaluation.probes.pgd_path`).
    """
    clean, on_path, at_end = (np.asarray(a, dtype=bool) for a in (clean, fooled_on_path, fooled_at_end))
    n = len(clean)
    lost = int((clean & on_path & ~at_end).sum())
    slack = _slack(n)
    detail = (f"{lost} of {n} examples were misclassified by some PGD iterate but not by the last one "
              f"({int((clean & on_path).sum())} fooled on the way; tolerance {slack:.3f})")
    if lost > slack * n:
        return Check("fooled points kept", False, detail + ": the loss surface along the path is erratic "
                                                          "(randomness, quantisation or shattered gradients), and "
                                                          "an attack that returns its last iterate overstates "
                                                          "robustness")
    return Check("fooled points kept", True, detail)


def loss_converged(robust: np.ndarray, loss_clean: np.ndarray, loss_early: np.ndarray,
                   loss_final: np.ndarray, *, max_late_share: float = LATE_LOSS_SHARE) -> Check:
    """On the examples the attack did not fool, its loss no longer rises at the end.

    The share of the loss gained over the last 10% of the steps (``loss_final -
    loss_early``) in the whole gain from the clean input (``loss_final - loss_clean``),
    summed over the robust examples. An attack that still climbs at the end would fool
    more examples with more steps.

    Args:
        robust: (N,) bool: the examples to judge (correct clean and never fooled).
        loss_clean: (N,) the loss at the clean example.
        loss_early: (N,) the best loss after 90% of the steps.
        loss_final: (N,) the best loss after all steps.
        max_late_share: The largest share, a fraction, that passes.

    Returns:
        Fails if the late share exceeds ``max_late_share``; passes when no example is
        robust or the loss did not rise at all.
    """
    robust = np.asarray(robust, dtype=bool)
    late = float(np.sum((np.asarray(loss_final) - np.asarray(loss_early))[robust]))
    total = float(np.sum((np.asarray(loss_final) - np.asarray(loss_clean))[robust]))
    count = int(robust.sum())
    if count == 0 or total <= 0:
        return Check("loss converged", True, f"nothing to judge: {count} robust examples, total loss gain "
                                             f"{total:.3g}")
    share = late / total
    detail = (f"the last 10% of the steps gave {share:.1%} of the loss gain on the {count} examples PGD did not "
              f"fool (at most {max_late_share:.0%})")
    if share > max_late_share:
        return Check("loss converged", False, detail + ": the attack has not converged; more steps would fool "
                                                       "more examples")
    return Check("loss converged", True, detail)


def budget_doubled(base, doubled, what: str) -> Check:
    """Doubling the attack's steps or restarts does not change robust accuracy.

    Args:
        base: The curve of the run's attack, with per-example masks; the first examples
            of it are those of ``doubled``, its epsilons include ``doubled``'s.
        doubled: The same attack with twice the ``what`` (on the examples ``base`` left
            robust, or on all of them), at one or more of ``base``'s epsilons.
        what: What was doubled, e.g. ``"steps"`` or ``"restarts"``.

    Returns:
        Fails if more than ``DOUBLING_TOLERANCE`` of the examples (or
        ``DOUBLING_MIN_EXAMPLES``, if that is more) changed from robust to fooled, or from
        fooled to robust, at some eps.
    """
    n = doubled.robust_mask.shape[1]
    eps_index = [int(np.flatnonzero(np.isclose(base.epsilons, eps))[0]) for eps in doubled.epsilons]
    before = base.robust_mask[eps_index, :n]
    changed = (before != doubled.robust_mask).sum(axis=1)
    slack = max(DOUBLING_TOLERANCE, DOUBLING_MIN_EXAMPLES / max(n, 1))
    name = f"double {what} ({base.attack})"
    where = "; ".join(f"eps {eps:g}: {before[i].mean():.3f} -> {doubled.robust_accuracy[i]:.3f} "
                      f"({int(changed[i])} of {n} changed)" for i, eps in enumerate(doubled.epsilons))
    if np.any(changed > slack * n):
        return Check(name, False, f"twice the {what} changed the result ({where}; tolerance {slack:.3f}): the "
                                  f"attack has not converged, or the model is random")
    return Check(name, True, f"{where}; tolerance {slack:.3f}")


def unbounded(clean: np.ndarray, robust: np.ndarray, attack: str,
              *, max_accuracy: float = LARGE_EPS_MAX_ACCURACY) -> Check:
    """An attack without a radius (DeepFool) fools (nearly) every example.

    Args:
        clean: (N,) bool: correct on the clean example.
        robust: (N,) bool: correct on the clean example and on the attack's output.
        attack: The unbounded attack's name.
        max_accuracy: The largest fraction of the clean-correct examples left robust
            that passes.

    Returns:
        Fails if more than ``max_accuracy`` of the clean-correct examples stay correct.
    """
    correct = int(np.sum(clean))
    left = int(np.sum(np.asarray(robust, dtype=bool) & np.asarray(clean, dtype=bool)))
    share = left / correct if correct else 0.0
    name = f"unbounded ({attack})"
    detail = f"{attack}, with no radius, left {left} of {correct} correctly classified examples correct"
    if share > max_accuracy:
        return Check(name, False, detail + f" ({share:.1%}, above {max_accuracy:.0%}): the gradients lead the "
                                           f"attack nowhere even without a limit on the perturbation (masking)")
    return Check(name, True, detail)


MAX_NAMED_POINTS = 10  # a violation's detail names at most this many test images per eps


def certified_not_broken(certified, curves: Sequence[Any], *, model: str = "") -> Check:
    """No example certified robust at an eps is broken there by any attack.

    A certificate (IBP, CROWN-IBP) proves that no point of the eps-ball is misclassified,
    so an attack that finds one contradicts it: the bound is unsound, or the attack's
    example lies outside the ball. Either way a number of the run is wrong, and there is
    no tolerance.

    Args:
        certified: The verified-accuracy curve of one bound method: ``attack`` (the
            method), ``epsilons`` (K,) and ``robust_mask`` (K, m), True where certified,
            over the model's first m test images.
        curves: The model's attack curves: each with ``attack``, the same ``epsilons``,
            and ``robust_mask`` over the first n of the test images (any n).
        model: The model's name, for the detail.

    Returns:
        The verdict, named ``"certified not broken (METHOD)"``; on failure its detail names,
        per eps, the test images (indices into the test split) and the attacks that broke them.
    """
    violations = []
    for at, eps in enumerate(certified.epsilons):
        broken_by: dict[int, list[str]] = {}
        for curve in curves:
            m = min(certified.robust_mask.shape[1], curve.robust_mask.shape[1])
            index = int(np.flatnonzero(np.isclose(curve.epsilons, eps, rtol=0.0, atol=1e-12))[0])
            for point in np.flatnonzero(certified.robust_mask[at, :m] & ~curve.robust_mask[index, :m]):
                broken_by.setdefault(int(point), []).append(curve.attack)
        if broken_by:
            named = ", ".join(f"test image {point} ({', '.join(attacks)})"
                              for point, attacks in sorted(broken_by.items())[:MAX_NAMED_POINTS])
            more = len(broken_by) - MAX_NAMED_POINTS
            violations.append(f"eps {eps:g}: {len(broken_by)} certified point(s) broken: {named}"
                              + (f" and {more} more" if more > 0 else ""))
    name = f"certified not broken ({certified.attack})"
    whose = f"{model!r}: " if model else ""
    if violations:
        return Check(name, False, whose + "; ".join(violations) + ". A certified point cannot be fooled within eps: "
                     "the bound is unsound or the attack left the ball; report it with the run folder")
    certified_count = int(certified.robust_mask.sum())
    return Check(name, True, f"{whose}none of the {certified_count} certified (point, eps) pairs was broken by "
                 f"{', '.join(curve.attack for curve in curves)}")
