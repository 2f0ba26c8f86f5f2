"""Robust accuracy of a model under an attack, over many epsilons, with confidence intervals.

An example counts as robust at eps when the model classifies it correctly both clean and
after the attack (so a point the attack "fixes" is not counted). At eps = 0 the robust
accuracy is the clean accuracy.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from advrobust.stats import wilson_interval
from attacks import AttackSpec, get_attack
from attacks._tensorflow import tf
from attacks.norms import canonical_norm
from attacks.validation import inference_fn

DEFAULT_CHUNK = 500


@dataclass(frozen=True)
class Curve:
    """Robust accuracy against eps for one model and one attack.

    Arrays have one entry per epsilon; accuracies are fractions in [0, 1];
    ``ci95_low``/``ci95_high`` are 95% Wilson intervals over ``n_examples``.
    """

    attack: str
    norm: str
    params: dict[str, Any]
    epsilons: np.ndarray
    robust_accuracy: np.ndarray
    ci95_low: np.ndarray
    ci95_high: np.ndarray
    n_examples: int
    clean_accuracy: float
    seconds: float
    robust_mask: np.ndarray = field(repr=False)  # (K, N) bool: robust at each eps

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, no masks)."""
        return {"attack": self.attack, "norm": self.norm, "params": self.params,
                "epsilons": self.epsilons.tolist(), "robust_accuracy": self.robust_accuracy.tolist(),
                "ci95_low": self.ci95_low.tolist(), "ci95_high": self.ci95_high.tolist(),
                "n_examples": self.n_examples, "clean_accuracy": self.clean_accuracy,
                "seconds": self.seconds}


def _predict(logits_fn, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([np.argmax(logits_fn(tf.constant(x[i:i + batch_size])).numpy(), axis=1)
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros(0, np.int64)


def robust_accuracy_curve(model: Any, x: np.ndarray, y: np.ndarray, *, attack: str = "pgd",
                          epsilons: Sequence[float], norm: Any = "inf", params: dict[str, Any] | None = None,
                          batch_size: int | None = None, progress: bool = True) -> Curve:
    """Attack ``x`` at every epsilon and return the robust-accuracy :class:`Curve`.

    ``attack`` is any name in ``attacks.ATTACKS``; ``params`` are its keyword arguments
    (besides ``eps`` and ``norm``). Work proceeds in chunks of ``batch_size`` examples
    (default 500), all epsilons at once per chunk, with a progress bar. Attacks that
    take ``early_stop`` get ``early_stop=True`` unless ``params`` says otherwise.
    """
    params = dict(params or {})
    norm = canonical_norm(norm)
    if "early_stop" in inspect.signature(get_attack(attack)).parameters:
        # Only robust accuracy is needed here: stop on fooled examples (same accuracy, less work).
        params.setdefault("early_stop", True)
    spec = AttackSpec(attack, {**params, "norm": norm})
    epsilons_array = np.asarray(epsilons, dtype=np.float64)
    chunk = batch_size or DEFAULT_CHUNK
    logits_fn = inference_fn(model)
    started = time.perf_counter()
    clean_correct = _predict(logits_fn, x, chunk) == y
    robust = np.zeros((len(epsilons_array), len(x)), dtype=bool)
    with tqdm(total=len(x), desc=f"{attack} ({len(epsilons_array)} eps)", unit="img", disable=not progress,
              leave=False) as bar:
        for start in range(0, len(x), chunk):
            rows = slice(start, start + chunk)
            adversarial = spec(model, x[rows], y[rows], eps=list(epsilons_array))
            for index in range(len(epsilons_array)):
                robust[index, rows] = (_predict(logits_fn, adversarial[index], chunk) == y[rows]) & clean_correct[rows]
            bar.update(len(x[rows]))
    counts = robust.sum(axis=1)
    low, high = wilson_interval(counts, len(x))
    return Curve(attack=attack, norm=norm, params=params, epsilons=epsilons_array,
                 robust_accuracy=counts / max(len(x), 1), ci95_low=low, ci95_high=high, n_examples=len(x),
                 clean_accuracy=float(clean_correct.mean()) if len(x) else float("nan"),
                 seconds=time.perf_counter() - started, robust_mask=robust)
