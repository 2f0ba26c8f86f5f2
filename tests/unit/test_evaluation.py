"""Wilson intervals, the robust-accuracy curve, and the attack CLI on tiny models."""

import json

import numpy as np
import pytest

from advrobust import cli, evaluation, models
from advrobust.evaluation.stats import wilson_interval
from tests.conftest import write_fake_split


@pytest.mark.parametrize("k, n, low, high", [
    (81, 263, 0.2553, 0.3662),   # Wilson (1927) worked example, as tabulated by Newcombe (1998)
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (50, 100, 0.4038, 0.5962),
])
def test_wilson_interval_known_values(k, n, low, high):
    got_low, got_high = wilson_interval(k, n)
    assert got_low == pytest.approx(low, abs=1e-4) and got_high == pytest.approx(high, abs=1e-4)


def test_wilson_interval_edges():
    low, high = wilson_interval([0], [0])
    assert low[0] == 0.0 and high[0] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def _cnn_and_data(seed=0, n=40):
    model = models.build("cnn", dropout=False, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=1)  # the model is right on every clean point
    return model, x, y


def test_curve_starts_at_clean_accuracy_and_never_rises():
    model, x, y = _cnn_and_data()
    curve = evaluation.robust_accuracy_curve(model, x, y, attack="bim", epsilons=[0.0, 0.01, 0.05, 0.2],
                                             params={"steps": 5}, progress=False)
    assert curve.robust_accuracy[0] == curve.clean_accuracy == 1.0
    assert np.all(np.diff(curve.robust_accuracy) <= 0)
    assert np.all(curve.ci95_low <= curve.robust_accuracy) and np.all(curve.robust_accuracy <= curve.ci95_high)
    assert curve.robust_mask.shape == (4, 40)
    record = curve.to_dict()
    assert record["norm"] == "inf" and json.loads(json.dumps(record))["epsilons"] == [0.0, 0.01, 0.05, 0.2]


def test_curve_counts_only_clean_correct_points():
    model, x, y = _cnn_and_data()
    wrong = (y + 1) % 10
    curve = evaluation.robust_accuracy_curve(model, x, wrong, attack="fgsm", epsilons=[0.0, 0.3], progress=False)
    assert curve.clean_accuracy == 0.0 and np.all(curve.robust_accuracy == 0.0)


def test_curve_attacks_only_clean_correct_examples_at_positive_eps(monkeypatch):
    from attacks import spec as attack_spec

    model, x, y = _cnn_and_data()
    y = y.copy()
    y[:10] = (y[:10] + 1) % 10  # 10 examples misclassified clean
    calls = []

    def spy(model, x, y, *, eps, norm="inf"):
        calls.append((len(x), list(eps)))
        return attack_spec.ATTACKS["fgsm"](model, x, y, eps=eps, norm=norm)

    monkeypatch.setitem(attack_spec.ATTACKS, "spy", spy)
    curve = evaluation.robust_accuracy_curve(model, x, y, attack="spy", epsilons=[0.0, 0.05, 0.3],
                                             batch_size=25, progress=False)
    # Chunks of 25: 15 correct in the first, 15 in the second; eps 0 never attacked.
    assert calls == [(15, [0.05, 0.3]), (15, [0.05, 0.3])]
    np.testing.assert_array_equal(curve.robust_mask[0], curve.clean_mask)
    assert not curve.robust_mask[:, :10].any()
    # The same masks as attacking everything at every eps.
    x_adv = attack_spec.ATTACKS["fgsm"](model, x, y, eps=[0.05, 0.3])
    for index in (0, 1):
        full = (np.argmax(model.predict(x_adv[index], verbose=0), axis=1) == y) & curve.clean_mask
        np.testing.assert_array_equal(curve.robust_mask[index + 1], full)


def test_cli_attack_prints_and_writes_json(tmp_path, capsys):
    model, _, _ = _cnn_and_data()
    models.save(model, tmp_path / "m.keras", {})
    write_fake_split(tmp_path / "data" / "mnist", "test", n=30)
    out = tmp_path / "result.json"
    status = cli.main(["attack", "--model", str(tmp_path / "m.keras"), "--dataset", "mnist", "--attack", "pgd",
                       "--eps", "0", "0.1", "--steps", "3", "--n", "20", "--data-dir", str(tmp_path / "data"),
                       "--out", str(out)])
    assert status == 0
    record = json.loads(out.read_text())
    assert record["attack"] == "pgd" and record["params"] == {"steps": 3, "seed": 0, "early_stop": True}
    assert record["n_examples"] == 20 and len(record["robust_accuracy"]) == 2
    assert record["robust_accuracy"][0] == record["clean_accuracy"]
    assert "robust acc" in capsys.readouterr().out


def test_cli_attack_rejects_parameters_that_do_not_apply(tmp_path, capsys):
    model, _, _ = _cnn_and_data()
    models.save(model, tmp_path / "m.keras", {})
    status = cli.main(["attack", "--model", str(tmp_path / "m.keras"), "--dataset", "mnist", "--attack", "fgsm",
                       "--eps", "0.1", "--steps", "5"])
    assert status == 2 and "--steps does not apply to fgsm" in capsys.readouterr().err


def test_cli_attack_with_bfloat16_gradients_records_it(tmp_path):
    model, _, _ = _cnn_and_data()
    models.save(model, tmp_path / "m.keras", {})
    write_fake_split(tmp_path / "data" / "mnist", "test", n=30)
    out = tmp_path / "result.json"
    status = cli.main(["attack", "--model", str(tmp_path / "m.keras"), "--dataset", "mnist", "--attack", "pgd",
                       "--eps", "0.1", "--steps", "3", "--n", "20", "--compute-dtype", "bfloat16",
                       "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    assert status == 0
    assert json.loads(out.read_text())["params"]["compute_dtype"] == "bfloat16"
    with pytest.raises(SystemExit):
        cli.main(["attack", "--model", str(tmp_path / "m.keras"), "--dataset", "mnist", "--eps", "0.1",
                  "--compute-dtype", "int8"])
