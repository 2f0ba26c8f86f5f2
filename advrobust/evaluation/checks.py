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
* ``gradients``: the loss gradient at clean inputs is finite and non-zero.

Tolerance: ``TOLERANCE`` (one percentage point, or one example if that is more) absorbs
the noise of stochastic attacks; anything beyond it fails and is shown prominently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

TOLERANCE = 0.01
LARGE_EPS_MAX_ACCURACY = 0.02
MAX_ZERO_GRADIENT_FRACTION = 0.05
SINGLE_STEP = ("fgsm",)
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
