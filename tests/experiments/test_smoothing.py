"""experiments/smoothing.py: the certified-accuracy table against hand counts, a finished
file resumed without new work, other settings started afresh."""

from __future__ import annotations

import json

import numpy as np
import pytest

from advrobust import certify, models
from experiments import smoothing


def test_the_table_counts_correct_predictions_certified_at_each_radius():
    prediction = np.array([0, 1, 2, -1, 1])
    radius = np.array([0.6, 0.3, 0.0, 0.0, 1.2])
    rows = smoothing.certified_table(prediction, radius, np.array([0, 1, 2, 3, 0]), [0.0, 0.25, 0.5, 1.0])
    assert [row["certified_accuracy"] for row in rows] == [0.6, 0.4, 0.2, 0.0]
    assert all(row["ci95_low"] <= row["certified_accuracy"] <= row["ci95_high"] for row in rows)


def test_a_run_writes_chunks_and_resumes_without_certifying_again(trained_mnist_cnn, tmp_path, monkeypatch, capsys):
    model, _, _ = trained_mnist_cnn
    models.save(model, tmp_path / "model.keras", {"dataset": "mnist"})
    argv = ["--model", str(tmp_path / "model.keras"), "--sigma", "0.25", "--n", "6", "--n0", "20", "--samples",
            "100", "--chunk", "4", "--out", str(tmp_path / "s.json")]
    assert smoothing.main(argv) == 0
    first = json.loads((tmp_path / "s.json").read_text())
    assert len(first["prediction"]) == 6 and [row["radius"] for row in first["certified"]] == [0, 0.25, 0.5, 0.75, 1]
    assert "L2 radius 0.25" in capsys.readouterr().out

    def never(*args, **kwargs):
        raise AssertionError("a finished chunk was certified again")

    monkeypatch.setattr(certify, "smoothing", never)
    assert smoothing.main(argv) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == first
    with pytest.raises(AssertionError, match="certified again"):  # other settings: nothing is reused
        smoothing.main([*argv[:-2], "--seed", "1", *argv[-2:]])
