"""defenses: resolving a defense by name and dataset."""

import pytest

import defenses
from defenses import nsl


def test_resolve_uses_the_dataset_preset_by_default():
    assert defenses.resolve("nsl", dataset="mnist") == nsl.preset("mnist")
    assert defenses.resolve("pgd_at", dataset="fashion_mnist").eps == 0.1
    assert defenses.resolve("trades", dataset="mnist").eps == 0.3
    assert defenses.resolve("none", dataset="mnist") is None
    record = defenses.resolve("fgsm_rs", dataset="mnist", eps=0.2).to_dict()
    assert record["step_size"] == pytest.approx(1.25 * 0.2) and record["steps"] == 1
