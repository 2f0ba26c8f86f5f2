"""advrobust.evaluation.curves: the robust-accuracy curve on tiny models."""

import json

import numpy as np

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
