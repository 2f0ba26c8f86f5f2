"""advrobust.evaluation.checks: the sanity checks of curves, logits and gradients."""

from __future__ import annotations

import numpy as np

from advrobust.evaluation import checks, curves


def _curve(attack, accuracies, n=100, epsilons=None, robust_mask=None, clean_mask=None):
    accuracies = np.asarray(accuracies, dtype=float)
    epsilons = np.linspace(0, 0.3, len(accuracies)) if epsilons is None else np.asarray(epsilons)
    if robust_mask is None:
        robust_mask = np.arange(n)[None, :] < np.round(accuracies * n)[:, None]
    if clean_mask is None:
        clean_mask = robust_mask[0].copy()
    return curves._curve(attack, "inf", {}, epsilons, clean_mask, robust_mask, 1.0)


def test_monotone_check_flags_a_rising_curve_and_passes_a_falling_one():
    assert checks.monotone(_curve("pgd", [0.9, 0.5, 0.2])).passed
    failed = checks.monotone(_curve("pgd", [0.9, 0.4, 0.6]))
    assert not failed.passed and "0.400 -> 0.600" in failed.detail


def test_iterative_weaker_than_fgsm_fails():
    fgsm = _curve("fgsm", [0.9, 0.5, 0.3])
    assert all(c.passed for c in checks.iterative_not_weaker([fgsm, _curve("pgd", [0.9, 0.3, 0.1])]))
    [verdict] = checks.iterative_not_weaker([fgsm, _curve("pgd", [0.9, 0.6, 0.1])])
    assert not verdict.passed and "eps 0.15" in verdict.detail


def test_large_eps_check_needs_accuracy_near_zero():
    assert checks.large_eps(_curve("pgd", [0.0], epsilons=[1.0])).passed
    assert not checks.large_eps(_curve("pgd", [0.2], epsilons=[1.0])).passed


def test_noise_that_fools_what_the_white_box_missed_is_flagged():
    n = 100
    worst = _curve("worst_case", [1.0, 0.5, 0.5], n=n)  # examples 0..49 robust at eps > 0
    weak_noise = _curve("noise", [1.0, 0.8, 0.6], n=n)  # fools only examples the white box fooled too
    assert checks.noise_not_stronger(weak_noise, worst).passed
    mask = np.ones((3, n), bool)
    mask[1:, :10] = False  # fools examples 0..9, which the white box could not
    strong_noise = _curve("noise", [1.0, 0.9, 0.9], n=n, robust_mask=mask, clean_mask=np.ones(n, bool))
    verdict = checks.noise_not_stronger(strong_noise, worst)
    assert not verdict.passed and "10 of 100" in verdict.detail
    transfer = _curve("pgd", [0.9], n=n, epsilons=[0.15], robust_mask=mask[1:2], clean_mask=np.ones(n, bool))
    assert not checks.black_box_not_stronger(transfer, worst, "other").passed


def test_logits_and_gradient_checks():
    assert checks.logits(np.array([[2.0, -1.0], [0.5, 3.0]])).passed
    assert not checks.logits(np.array([[0.2, 0.8], [0.5, 0.5]])).passed
    assert not checks.logits(np.array([[np.nan, 0.0]])).passed
    assert checks.gradients(np.array([1.0, 2.0, 0.5])).passed
    assert not checks.gradients(np.array([0.0, 0.0, 1.0])).passed
    assert not checks.gradients(np.array([np.inf, 1.0])).passed
