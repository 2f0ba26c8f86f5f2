"""The file of one model's per-example outcomes (``OUT/outcomes/NN-NAME.npz``), NumPy only.

:mod:`advrobust.outcomes` reads and writes these files; scripts that run without
TensorFlow (``experiments/torch_crosscheck/evaluate.py``) write them through
:func:`encode` too, so ``advrobust compare`` reads their results like a run's.
"""

from __future__ import annotations

import io
from typing import Mapping

import numpy as np


def encode(*, name: str, dataset: str, norm: str, epsilons, clean, worst, per_attack: Mapping[str, np.ndarray],
           labels=None) -> bytes:
    """The .npz bytes of one model's outcomes on n test images at K epsilons.

    ``clean``: (n,) bool; ``worst``: (K, n) bool, robust under every attack;
    ``per_attack``: {attack label: (K, n) bool}; ``labels``: (n,) ints or None.
    ValueError if the shapes do not fit together.
    """
    epsilons = np.asarray(epsilons, np.float64).reshape(-1)
    clean, worst = np.asarray(clean, bool), np.asarray(worst, bool)
    shape = (len(epsilons), len(clean))
    attack_labels = list(per_attack)
    masks = [np.asarray(per_attack[label], bool) for label in attack_labels]
    if clean.ndim != 1 or worst.shape != shape or not masks or any(mask.shape != shape for mask in masks):
        raise ValueError(f"outcomes of {name!r}: need clean (n,), worst and every attack's mask (K, n) = {shape}, "
                         f"and at least one attack; got worst {worst.shape}, attacks "
                         f"{[mask.shape for mask in masks]}")
    extra = {}
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != clean.shape or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"outcomes of {name!r}: labels must be {len(clean)} integers, got {labels.dtype} "
                             f"{labels.shape}")
        extra["labels"] = labels.astype(np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, name=np.str_(name), dataset=np.str_(dataset), norm=np.str_(norm),
                        epsilons=epsilons, clean=clean, worst=worst, attacks=np.array(attack_labels, dtype=str),
                        per_attack=np.stack(masks), **extra)
    return buffer.getvalue()
