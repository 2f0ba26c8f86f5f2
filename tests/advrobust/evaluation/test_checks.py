"""advrobust.evaluation.checks: the sanity checks of curves, logits and gradients."""

from __future__ import annotations

import numpy as np
import pytest

from advrobust.evaluation import checks, curves


def _curve(attack, accuracies, n=100, epsilons=None, robust_mask=None, clean_mask=None):
    accuracies = np.asarray(accuracies, dtype=float)
    epsilons = np.linspace(0, 0.3, len(accuracies)) if epsilons is None else np.asarray(epsilons)
    if robust_mask is None:
        robust_mask = np.arange(n)[None, :] < np.round(accuracies * n)[:, None]
    if clean_mask is None:
        clean_mask = robust_mask[0].copy()
    return curves.curve_of(attack, "inf", {}, epsilons, clean_mask, robust_mask, 1.0)


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


def test_deterministic_flags_outputs_that_change_between_calls():
    outputs = np.tile(np.array([[3.0, -1.0], [0.5, 2.0]]), (3, 1, 1))
    assert checks.deterministic(outputs).passed
    assert checks.deterministic(outputs + 1e-6).passed  # float noise of a deterministic model
    noisy = outputs.copy()
    noisy[1, 0] = [-1.0, 3.0]  # the second call flips the first example's class
    verdict = checks.deterministic(noisy)
    assert not verdict.passed and "1 examples changed class" in verdict.detail


def test_square_fooling_what_the_white_box_missed_is_flagged():
    n = 100
    worst = _curve("worst_case", [1.0, 0.5], n=n, epsilons=[0.0, 0.1])  # examples 0..49 robust at 0.1
    weak = _curve("square", [1.0, 0.7], n=n, epsilons=[0.0, 0.1])  # fools only examples 70..99
    assert checks.square_not_stronger(weak, worst).passed
    mask = np.ones((1, n), bool)
    mask[0, :5] = False  # fools examples 0..4, robust under every white-box attack
    strong = _curve("square", [0.95], n=n, epsilons=[0.1], robust_mask=mask, clean_mask=np.ones(n, bool))
    verdict = checks.square_not_stronger(strong, worst)
    assert not verdict.passed and "5 of 100" in verdict.detail


def test_fooled_points_kept_flags_trajectories_that_leave_the_adversarial_region():
    clean = np.ones(50, bool)
    on_path = np.arange(50) < 20
    assert checks.fooled_points_kept(clean, on_path, on_path).passed
    at_end = on_path.copy()
    at_end[:3] = False  # three examples fooled on the way, not at the end
    verdict = checks.fooled_points_kept(clean, on_path, at_end)
    assert not verdict.passed and "3 of 50" in verdict.detail
    assert checks.fooled_points_kept(clean, on_path, np.r_[False, on_path[1:]]).passed  # one is tolerated


def test_loss_converged_flags_a_loss_still_rising_at_the_end():
    robust = np.array([True, True, False])
    clean_loss = np.array([0.1, 0.2, 0.1])
    assert checks.loss_converged(robust, clean_loss, np.array([2.0, 3.0, 1.0]), np.array([2.02, 3.05, 9.0])).passed
    rising = checks.loss_converged(robust, clean_loss, np.array([1.0, 2.0, 1.0]), np.array([2.0, 3.0, 1.0]))
    assert not rising.passed and "42.6%" in rising.detail  # (1 + 1) / (1.9 + 2.8)
    assert checks.loss_converged(robust, clean_loss, clean_loss, clean_loss).passed  # flat: nothing rose
    assert checks.loss_converged(np.zeros(3, bool), clean_loss, clean_loss, clean_loss + 1).passed


def test_budget_doubled_flags_a_result_that_changes():
    n = 100
    base = _curve("pgd", [1.0, 0.6, 0.3], n=n)  # examples 0..59 robust at eps 0.15
    same = _curve("pgd", [0.6], n=n, epsilons=[0.15], robust_mask=base.robust_mask[1:2].copy())
    assert checks.budget_doubled(base, same, "steps").passed
    stronger = base.robust_mask[1:2].copy()
    stronger[0, :10] = False
    verdict = checks.budget_doubled(base, _curve("pgd", [0.5], n=n, epsilons=[0.15], robust_mask=stronger),
                                    "restarts")
    assert not verdict.passed and verdict.name == "double restarts (pgd)" and "10 of 100 changed" in verdict.detail
    three = base.robust_mask[1:2].copy()
    three[0, :3] = False  # three examples: within the tolerance
    assert checks.budget_doubled(base, _curve("pgd", [0.57], n=n, epsilons=[0.15], robust_mask=three),
                                 "steps").passed


def test_unbounded_needs_nearly_every_example_fooled():
    clean = np.r_[np.ones(99, bool), False]
    assert checks.unbounded(clean, np.zeros(100, bool), "deepfool").passed
    assert checks.unbounded(clean, np.arange(100) < 1, "deepfool").passed  # 1 of 99: within 2%
    verdict = checks.unbounded(clean, np.arange(100) < 50, "deepfool")
    assert not verdict.passed and "left 50 of 99" in verdict.detail


def test_every_verdict_names_the_check_that_made_it_and_its_section():
    n = 10
    curve = _curve("pgd", [1.0, 0.5], n=n, epsilons=[0.0, 0.1])
    made = {"monotone": [checks.monotone(curve)],
            "iterative_not_weaker": checks.iterative_not_weaker([_curve("fgsm", [1.0, 0.5], n=n), curve]),
            "large_eps": [checks.large_eps(curve)], "noise_not_stronger": [checks.noise_not_stronger(curve, curve)],
            "black_box_not_stronger": [checks.black_box_not_stronger(curve, curve, "m")],
            "logits": [checks.logits(np.eye(2))], "gradients": [checks.gradients(np.ones(2))],
            "deterministic": [checks.deterministic(np.zeros((2, 1, 2)))],
            "square_not_stronger": [checks.square_not_stronger(curve, curve)],
            "fooled_points_kept": [checks.fooled_points_kept(*np.ones((3, 2), bool))],
            "loss_converged": [checks.loss_converged(*np.ones((4, 2)))],
            "budget_doubled": [checks.budget_doubled(curve, curve, "steps"), checks.budget_doubled(curve, curve,
                                                                                                "restarts")],
            "unbounded": [checks.unbounded(np.ones(2, bool), np.zeros(2, bool), "deepfool")],
            "certified_not_broken": [checks.certified_not_broken(curve, [curve])]}
    public = {name for name, function in vars(checks).items() if callable(function) and not name.startswith("_")
              and getattr(function, "__module__", None) == checks.__name__ and "Check" in
              str(getattr(function, "__annotations__", {}).get("return", ""))}
    assert set(made) == public - {"Check"}
    for kind, verdicts in made.items():
        assert all(checks.kind_of(verdict.name) == kind for verdict in verdicts), verdicts
        assert checks.doc_anchor(kind) == "check-" + kind.replace("_", "-")
        assert checks.describe(kind) and "\n" not in checks.describe(kind) and "``" not in checks.describe(kind)
    assert checks.kind_of("something else") is None
    assert checks.describe("large_eps").startswith("At the (single) large radius of curve")
    with pytest.raises(ValueError, match="not a check"):
        checks.describe("Check")


def test_a_certified_point_an_attack_breaks_fails_naming_the_image_and_the_attack():
    epsilons = np.array([0.0, 0.1, 0.3])
    clean = np.ones(6, dtype=bool)
    bound = _curve("crown_ibp", None, n=4, epsilons=epsilons, clean_mask=clean[:4],
                   robust_mask=np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 1, 0, 0]], dtype=bool))
    pgd = _curve("pgd", None, n=6, epsilons=epsilons, clean_mask=clean,
                 robust_mask=np.array([[1] * 6, [1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=bool))
    fgsm = _curve("fgsm", None, n=6, epsilons=epsilons, clean_mask=clean,
                  robust_mask=np.array([[1] * 6, [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=bool))
    verdict = checks.certified_not_broken(bound, [fgsm, pgd], model="cnn")
    assert not verdict.passed and verdict.name == "certified not broken (crown_ibp)"
    assert "eps 0.3: 1 certified point(s) broken: test image 1 (fgsm, pgd)" in verdict.detail
    assert "eps 0.1" not in verdict.detail and verdict.detail.startswith("'cnn': ")
    assert checks.kind_of(verdict.name) == "certified_not_broken"
    assert not checks.certified_not_broken(bound, [fgsm], model="cnn").passed  # fgsm alone breaks image 1 at 0.3
    unbroken = _curve("pgd", None, n=6, epsilons=epsilons, clean_mask=clean, robust_mask=np.ones((3, 6), bool))
    passed = checks.certified_not_broken(bound, [unbroken])
    assert passed.passed and "none of the 7 certified (point, eps) pairs was broken by pgd" in passed.detail
    error = checks.CertificateViolation([verdict])
    assert str(error).startswith("CERTIFICATE VIOLATED: certified not broken (crown_ibp): 'cnn': eps 0.3")
