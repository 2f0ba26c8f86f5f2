"""Attacks by name, and a small serializable description of an attack with its parameters.

The harness stores ``AttackSpec(name, params).to_json()`` beside each result and runs any
attack by name through :func:`get_attack`; new attacks join by adding to ``ATTACKS``.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from attacks.apgd import apgd
from attacks.external import apgd_ce_art, apgd_dlr_art
from attacks.gradient import bim, fgsm, mim, pgd
from attacks.noise import random_noise

ATTACKS: dict[str, Callable[..., Any]] = {"fgsm": fgsm, "bim": bim, "pgd": pgd, "mim": mim, "apgd": apgd,
                                          "noise": random_noise,
                                          # ART's APGD, to cross-check the project's own (attacks/external.py)
                                          "apgd_ce_art": apgd_ce_art, "apgd_dlr_art": apgd_dlr_art}


def get_attack(name: str) -> Callable[..., Any]:
    """The attack function registered under ``name``; ValueError listing the choices."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}")
    return ATTACKS[name]


@dataclass(frozen=True)
class AttackSpec:
    """An attack name and its keyword parameters (everything except model, x, y, eps)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        function = get_attack(self.name)
        accepted = set(inspect.signature(function).parameters) - {"model", "x", "y", "eps"}
        unknown = set(self.params) - accepted
        if unknown:
            raise ValueError(f"attack {self.name!r} takes no parameter(s) {sorted(unknown)}; "
                             f"it takes: {', '.join(sorted(accepted))}")
        json.dumps(self.params)  # must be serializable: a TypeError here names the bad value

    def __call__(self, model: Any, x: Any, y: Any, *, eps: Any) -> Any:
        """Run the attack; returns what the attack function returns."""
        return get_attack(self.name)(model, x, y, eps=eps, **self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal specs give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AttackSpec":
        return cls(name=data["name"], params=dict(data.get("params", {})))

    @classmethod
    def from_json(cls, text: str) -> "AttackSpec":
        return cls.from_dict(json.loads(text))
