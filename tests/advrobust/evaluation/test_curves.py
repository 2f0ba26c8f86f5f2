"""advrobust.evaluation.curves: the robust-accuracy curve on tiny models."""

import json

import numpy as np
import pytest

from advrobust import evaluation
from tests.advrobust.conftest import cnn_and_data


def test_curve_starts_at_clean_accuracy_and_never_rises():
    model, x, y = cnn_and_data()
    curve = evaluation.robust_accuracy_curve(model, x, y, attack="bim", epsilons=[0.0, 0.01, 0.05, 0.2],
                                             params={"steps": 5}, progress=False)
    assert curve.robust_accuracy[0] == curve.clean_accuracy == 1.0
    assert np.all(np.diff(curve.robust_accuracy) <= 0)
    assert np.all(curve.ci95_low <= curve.robust_accuracy) and np.all(curve.robust_accuracy <= curve.ci95_high)
    assert curve.robust_mask.shape == (4, 40)
    record = curve.to_dict()
    assert record["norm"] == "inf" and json.loads(json.dumps(record))["epsilons"] == [0.0, 0.01, 0.05, 0.2]


def test_curve_counts_only_clean_correct_points():
    model, x, y = cnn_and_data()
    wrong = (y + 1) % 10
    curve = evaluation.robust_accuracy_curve(model, x, wrong, attack="fgsm", epsilons=[0.0, 0.3], progress=False)
    assert curve.clean_accuracy == 0.0 and np.all(curve.robust_accuracy == 0.0)


def test_curve_attacks_only_clean_correct_examples_at_positive_eps(monkeypatch):
    from attacks import spec as attack_spec

    model, x, y = cnn_and_data()
    y = y.copy()
    y[:10] = (y[:10] + 1) % 10  # 10 examples misclassified clean
    calls = []

    def spy(model, x, y, *, eps, norm="inf"):
        calls.append((len(x), list(eps)))
        return attack_spec.ATTACKS["fgsm"](model, x, y, eps=eps, norm=norm)

    monkeypatch.setitem(attack_spec.ATTACKS, "spy", spy)
    curve = evaluation.robust_accuracy_curve(model, x, y, attack="spy", epsilons=[0.0, 0.05, 0.3],
                                             batch_size=25, progress=False)
    # First the parameter check on an empty batch (AttackSpec.check_values); then chunks
    # of 25: 15 correct in the first, 15 in the second; eps 0 never attacked.
    assert calls == [(0, [0.0, 0.05, 0.3]), (15, [0.05, 0.3]), (15, [0.05, 0.3])]
    np.testing.assert_array_equal(curve.robust_mask[0], curve.clean_mask)
    assert not curve.robust_mask[:, :10].any()
    # The same masks as attacking everything at every eps.
    x_adv = attack_spec.ATTACKS["fgsm"](model, x, y, eps=[0.05, 0.3])
    for index in (0, 1):
        full = (np.argmax(model.predict(x_adv[index], verbose=0), axis=1) == y) & curve.clean_mask
        np.testing.assert_array_equal(curve.robust_mask[index + 1], full)


def test_a_curve_counts_the_points_its_attack_broke_at_each_eps():
    model, x, y = cnn_and_data()
    y = y.copy()
    y[:5] = (y[:5] + 1) % 10  # 5 misclassified clean: never counted as broken
    curve = evaluation.robust_accuracy_curve(model, x, y, attack="fgsm", epsilons=[0.0, 0.05, 0.3], progress=False)
    assert curve.members_broken is None
    assert curve.broken_by == tuple({"fgsm": 35 - int(robust.sum())} for robust in curve.robust_mask)
    assert curve.broken_by[0] == {"fgsm": 0} and curve.to_dict()["broken_by"] == list(curve.broken_by)


class _Units:
    """A unit cache in memory that can refuse to let anything be computed again."""

    def __init__(self):
        self.units, self.frozen = {}, False

    def get(self, attack, batch, fingerprint):
        return self.units.get((attack, batch, fingerprint))

    def put(self, attack, batch, epsilons, clean, robust, seconds, fingerprint, broken_by=None):
        assert not self.frozen, f"unit {attack!r} {batch} computed again"
        self.units[(attack, batch, fingerprint)] = (clean, robust, seconds, broken_by)


def test_the_ensemble_counts_what_each_member_broke_and_the_counts_survive_resume():
    from attacks.ensemble import PRESETS

    model, x, y = cnn_and_data(n=24)
    y = y.copy()
    y[:4] = (y[:4] + 1) % 10
    units = _Units()
    options = dict(attack="autoattack", epsilons=[0.0, 0.02, 0.3], params={"preset": "fast", "seed": 0},
                   batch_size=12, progress=False, cache=units)
    curve = evaluation.robust_accuracy_curve(model, x, y, **options)
    labels = [label for label, _, _ in PRESETS["fast"]]
    assert [list(counts) for counts in curve.broken_by] == [labels] * 3
    assert curve.broken_by[0] == dict.fromkeys(labels, 0)
    assert [sum(counts.values()) for counts in curve.broken_by] == [20 - int(r.sum()) for r in curve.robust_mask]
    assert not curve.robust_mask[:, :4].any() and sum(curve.broken_by[2].values()) > 0
    assert all(stored[3] is not None and len(stored[3]) == 3 for stored in units.units.values())
    units.frozen = True
    resumed = evaluation.robust_accuracy_curve(model, x, y, **options)
    assert resumed.broken_by == curve.broken_by
    np.testing.assert_array_equal(resumed.robust_mask, curve.robust_mask)


def test_a_cached_ensemble_unit_without_counts_is_computed_again():
    model, x, y = cnn_and_data(n=12)
    units = _Units()
    options = dict(attack="autoattack", epsilons=[0.0, 0.3], params={"preset": "fast"}, progress=False, cache=units)
    evaluation.robust_accuracy_curve(model, x, y, **options)
    ((key, (clean, robust, seconds, counts)),) = units.units.items()
    units.units[key] = (clean, robust, seconds, None)  # as a unit stored without counts
    again = evaluation.robust_accuracy_curve(model, x, y, **options)
    assert units.units[key][3] == list(again.broken_by) and again.members_broken is not None


def test_an_ensemble_transfer_is_counted_as_one_attack_on_the_target():
    model, x, y = cnn_and_data(n=12)
    source, _, _ = cnn_and_data(seed=1, n=1)
    curve = evaluation.robust_accuracy_curve(model, x, y, attack="autoattack", epsilons=[0.3],
                                             params={"preset": "fast"}, source_model=source, progress=False)
    assert curve.members_broken is None and curve.broken_by == ({"autoattack": 12 - int(curve.robust_mask.sum())},)


def test_an_attack_limited_to_the_first_examples_counts_in_the_worst_case_on_those_only():
    from advrobust.results import outcomes

    model, x, y = cnn_and_data(n=20)
    result = evaluation.evaluate({"m": model}, x, y, attacks=["fgsm", ("noise", {"draws": 2, "seed": 0})],
                                 epsilons=[0.0, 0.3], n_examples={"noise": 8}, progress=False)["m"]
    fgsm, noise = result.curves
    assert (fgsm.n_examples, noise.n_examples, result.worst_case.n_examples) == (20, 8, 20)
    expected = fgsm.robust_mask.copy()
    expected[:, :8] &= noise.robust_mask
    np.testing.assert_array_equal(result.worst_case.robust_mask, expected)
    assert list(outcomes.from_evaluation("m", "mnist", result).per_attack) == ["fgsm {}"]  # noise: not every image
    with np.testing.assert_raises_regex(ValueError, "the first attack, 'fgsm', must run on every example"):
        evaluation.evaluate({"m": model}, x, y, attacks=["fgsm"], epsilons=[0.1], n_examples={"fgsm": 8})


def test_an_example_broken_at_some_eps_is_broken_in_the_worst_case_at_every_larger_eps():
    from advrobust.evaluation.curves import curve_of

    epsilons = np.array([0.2, 0.0, 0.1, 0.3])  # unsorted on purpose; rows of the masks, columns are examples
    clean = np.array([True, True, True, False])
    # Example 0: PGD misses it at 0.2 but FGSM breaks it at 0.1; example 1: only FGSM at 0.3 breaks it;
    # example 2: robust throughout; example 3: misclassified clean.
    pgd = np.array([[True, True, True, False], [True, True, True, False], [True, True, True, False],
                    [False, True, True, False]])
    fgsm = np.array([[True, True, True, False], [True, True, True, False], [False, True, True, False],
                     [True, False, True, False]])
    curves = [curve_of(name, "inf", {}, epsilons, clean, mask, 1.0) for name, mask in (("pgd", pgd), ("fgsm", fgsm))]
    worst = evaluation.worst_case(curves)
    expected = np.array([[False, True, True, False], [True, True, True, False], [False, True, True, False],
                         [False, False, True, False]])
    np.testing.assert_array_equal(worst.robust_mask, expected)
    assert worst.robust_accuracy.tolist() == pytest.approx([0.5, 0.75, 0.5, 0.25])
    # Never rising with eps, and never above any attack's own curve.
    order = np.argsort(epsilons)
    assert np.all(np.diff(worst.robust_accuracy[order]) <= 0)
    assert np.all(worst.robust_accuracy <= np.minimum(curves[0].robust_accuracy, curves[1].robust_accuracy))
