"""attacks.spec: AttackSpec's JSON round trip and the registry of attacks by name."""

import numpy as np
import pytest

from attacks import AttackSpec, get_attack, mim, pgd
from tests.attacks.conftest import X2, Y2


def test_attack_spec_round_trip_and_registry(model):
    spec = AttackSpec("pgd", {"steps": 5, "norm": "l2", "seed": 3})
    assert AttackSpec.from_json(spec.to_json()) == spec
    np.testing.assert_array_equal(spec(model, X2, Y2, eps=0.1), pgd(model, X2, Y2, eps=0.1, steps=5, norm="l2", seed=3))
    assert get_attack("mim") is mim
    with pytest.raises(ValueError, match="unknown attack 'cw'; choose one of: fgsm, bim, pgd, mim"):
        AttackSpec("cw")
    with pytest.raises(ValueError, match=r"takes no parameter\(s\) \['restarts'\]"):
        AttackSpec("fgsm", {"restarts": 3})
