"""advrobust.results.outcome_files: encode and decode are inverse, a foreign file is refused, and the
module needs nothing beyond NumPy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from advrobust.results import outcome_files, outcomes
from tests.advrobust.conftest import LABELS


def _outcomes(labels=True):
    rng = np.random.default_rng(3)
    clean = rng.random(20) < 0.9
    worst = np.stack([clean, clean & (rng.random(20) < 0.5)])
    return outcome_files.Outcomes(name="m", dataset="mnist", norm="l2", epsilons=np.array([0.0, 0.5]), clean=clean,
                                  worst=worst, per_attack={'pgd {"steps": 5}': worst, "fgsm {}": worst | clean},
                                  labels=np.arange(20) % 10 if labels else None)


@pytest.mark.parametrize("labels", [True, False])
def test_decode_gives_back_what_encode_was_given(labels):
    saved = _outcomes(labels)
    data = outcome_files.encode(name=saved.name, dataset=saved.dataset, norm=saved.norm, epsilons=saved.epsilons,
                                clean=saved.clean, worst=saved.worst, per_attack=saved.per_attack,
                                labels=saved.labels)
    loaded = outcome_files.decode(data)
    assert (loaded.name, loaded.dataset, loaded.norm, loaded.n) == ("m", "mnist", "l2", 20)
    for key in ("epsilons", "clean", "worst", "labels"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(saved, key))
    assert list(loaded.per_attack) == list(saved.per_attack)
    assert all(np.array_equal(loaded.per_attack[key], saved.per_attack[key]) for key in saved.per_attack)
    assert outcome_files.decode(data, name="renamed").name == "renamed"


def test_write_and_read_a_file_and_refuse_a_foreign_one(tmp_path):
    path = outcome_files.write(_outcomes(), tmp_path / "outcomes" / "m.npz")
    np.testing.assert_array_equal(outcome_files.read(path, name="x").worst, _outcomes().worst)
    (tmp_path / "other.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="other.npz: not an outcomes file of advrobust"):
        outcome_files.read(tmp_path / "other.npz")
    np.savez(tmp_path / "partial.npz", clean=np.ones(3, bool))
    with pytest.raises(ValueError, match="not an outcomes file"):
        outcome_files.read(tmp_path / "partial.npz")


def test_outcome_files_are_written_without_tensorflow_and_read_back_by_load(tmp_path):
    # experiments/torch_crosscheck/evaluate.py imports advrobust.results.outcome_files where
    # TensorFlow is not installed: the module must need nothing beyond NumPy.
    import ast

    from tests.conftest import REPO

    tree = ast.parse((REPO / "advrobust" / "results" / "outcome_files.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "dataclasses", "io", "pathlib", "typing", "numpy", "advrobust.files"}, imported

    rng = np.random.default_rng(0)
    clean = rng.random(50) < 0.9
    worst = (clean & (rng.random(50) < 0.7))[None]
    data = outcome_files.encode(name="gpu-model", dataset="fashion_mnist", norm="inf", epsilons=[0.1], clean=clean,
                                worst=worst, per_attack={"pgd (torch_crosscheck) {}": worst}, labels=LABELS[:50])
    (tmp_path / "outcomes").mkdir()
    (tmp_path / "outcomes" / "gpu-model.npz").write_bytes(data)
    (tmp_path / "results.json").write_text(json.dumps({"models": [{"name": "gpu-model",
                                                                   "outcomes": "outcomes/gpu-model.npz"}]}))
    loaded = outcomes.load(tmp_path)
    assert (loaded.name, loaded.n, list(loaded.epsilons)) == ("gpu-model", 50, [0.1])
    np.testing.assert_array_equal(loaded.worst, worst)
    np.testing.assert_array_equal(loaded.labels, LABELS[:50])

    with pytest.raises(ValueError, match=r"worst and every attack's mask \(K, n\) = \(1, 50\)"):
        outcome_files.encode(name="m", dataset="mnist", norm="inf", epsilons=[0.1], clean=clean, worst=worst[0],
                             per_attack={"pgd": worst})
    with pytest.raises(ValueError, match="labels must be 50 integers"):
        outcome_files.encode(name="m", dataset="mnist", norm="inf", epsilons=[0.1], clean=clean, worst=worst,
                             per_attack={"pgd": worst}, labels=np.zeros(50, np.float32))
