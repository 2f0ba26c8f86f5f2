"""Attacks by name, and a small serializable description of an attack with its parameters.

The harness stores ``AttackSpec(name, params).to_json()`` beside each result and runs any
attack by name through :func:`get_attack`; new attacks join by adding to ``ATTACKS``.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from attacks.auto_pgd import apgd
from attacks.ensemble import autoattack
from attacks.fab_attack import fab
from attacks.gradient import bim, fgsm, mim, pgd
from attacks.noise import random_noise
from attacks.square_attack import square

ATTACKS: dict[str, Callable[..., Any]] = {"fgsm": fgsm, "bim": bim, "pgd": pgd, "mim": mim, "apgd": apgd,
                                          "square": square, "fab": fab, "noise": random_noise,
                                          "autoattack": autoattack}


def get_attack(name: str) -> Callable[..., Any]:
    """Look up an attack by name.

    Args:
        name: A key of ``ATTACKS``: ``"fgsm"``, ``"bim"``, ``"pgd"``, ``"mim"``,
            ``"apgd"``, ``"square"``, ``"fab"``, ``"noise"`` or ``"autoattack"``.

    Returns:
        The attack function ``attack(model, x, y, *, eps, ...)``.

    Raises:
        ValueError: ``name`` is not registered; the message lists the choices.
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}")
    return ATTACKS[name]


@dataclass(frozen=True)
class AttackSpec:
    """An attack name and its keyword parameters (everything except model, x, y, eps).

    Attributes:
        name: A key of ``ATTACKS``.
        params: Keyword arguments of that attack, JSON-serializable.

    Raises:
        ValueError: ``name`` is unknown, or ``params`` names a parameter the attack does not
            take (the message lists those it takes).
        TypeError: ``params`` is not JSON-serializable.
    """

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
        """Run the attack on a batch.

        Args:
            model: The attacked model (logits).
            x: The clean inputs (N, ...).
            y: Integer labels (N,).
            eps: A radius or a sequence of K radii.

        Returns:
            What the attack function returns: ``x_adv`` shaped like ``x``, or (K, N, ...).
        """
        return get_attack(self.name)(model, x, y, eps=eps, **self.params)

    def check_values(self, eps: Any, example_shape: tuple[int, ...] = (28, 28, 1)) -> None:
        """Let the attack check its parameter values now, without running it.

        Every attack validates its arguments before it calls the model and returns at
        once for an empty batch; so a run on zero examples checks ``steps = 0`` or
        ``loss = "x"`` up front (the harness skips attacking examples that are already
        misclassified, so without this a bad value could go unnoticed).

        Args:
            eps: The radius or radii the attack will get.
            example_shape: The shape of one input example.

        Raises:
            ValueError: A parameter value (or ``eps``) is out of range.
            TypeError: A parameter value has the wrong type.
        """
        def untouched_model(x: Any, training: bool = False) -> Any:
            raise AssertionError("an attack called the model for an empty batch")

        empty_x = np.zeros((0, *example_shape), np.float32)
        self(untouched_model, empty_x, np.zeros(0, np.int64), eps=eps)

    def to_dict(self) -> dict[str, Any]:
        """Describe the spec as plain data.

        Returns:
            ``{"name": name, "params": a copy of params}``.
        """
        return {"name": self.name, "params": dict(self.params)}

    def to_json(self) -> str:
        """Serialize the spec as canonical JSON.

        Returns:
            JSON text with sorted keys: equal specs give equal strings.
        """
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AttackSpec":
        """Rebuild a spec from :meth:`to_dict`'s output.

        Args:
            data: A mapping with ``"name"`` and optionally ``"params"``.

        Returns:
            The :class:`AttackSpec`, validated.

        Raises:
            KeyError: ``data`` has no ``"name"``.
            ValueError: The name or a parameter is unknown.
        """
        return cls(name=data["name"], params=dict(data.get("params", {})))

    @classmethod
    def from_json(cls, text: str) -> "AttackSpec":
        """Rebuild a spec from :meth:`to_json`'s output.

        Args:
            text: JSON text of an object with ``"name"`` and optionally ``"params"``.

        Returns:
            The :class:`AttackSpec`, validated.

        Raises:
            json.JSONDecodeError: ``text`` is not JSON (a ValueError).
            KeyError: The object has no ``"name"``.
            ValueError: The name or a parameter is unknown.
        """
        return cls.from_dict(json.loads(text))
