"""One model's per-image outcomes and their file (``OUT/outcomes/NN-NAME.npz``), NumPy only.

The run writes these files and ``advrobust compare`` reads them; scripts that run
without TensorFlow (``experiments/torch_crosscheck/evaluate.py``) write them through
:func:`encode` too, so their results compare like a run's. What is done with the
outcomes (per class, paired comparison, finding them in a run folder) lives in
:mod:`advrobust.results.outcomes`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from advrobust.files import atomic_write_bytes


@dataclass(frozen=True)
class Outcomes:
    """One model's per-example outcomes on the first ``n`` test images of ``dataset``.

    Attributes:
        name: The model's name.
        dataset: The dataset whose test images were evaluated.
        norm: The attacks' norm (``"inf"`` or ``"l2"``).
        epsilons: The radii (K,), float64.
        clean: (n,) bool, right on the clean image.
        worst: (K, n) bool, robust at ``epsilons[k]`` under every attack.
        per_attack: {attack label: (K, n) bool}.
        labels: (n,) int, the images' true classes (None in files written before they
            were saved; :func:`advrobust.results.outcomes.per_class` needs them).
    """

    name: str
    dataset: str
    norm: str
    epsilons: np.ndarray
    clean: np.ndarray
    worst: np.ndarray
    per_attack: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    @property
    def n(self) -> int:
        """The number of test images, n."""
        return int(self.clean.shape[0])


def encode(*, name: str, dataset: str, norm: str, epsilons, clean, worst, per_attack: Mapping[str, np.ndarray],
           labels=None) -> bytes:
    """The .npz bytes of one model's outcomes on n test images at K epsilons.

    Args:
        name: the model's name.
        dataset: the dataset whose test images were evaluated.
        norm: the attacks' norm ("inf" or "l2").
        epsilons: (K,) radii.
        clean: (n,) bool, right on the clean image.
        worst: (K, n) bool, robust under every attack.
        per_attack: {attack label: (K, n) bool}, at least one.
        labels: (n,) integer true classes, or None.

    Returns:
        The compressed .npz file's bytes.

    Raises:
        ValueError: the shapes do not fit together, or labels are not n integers.
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


def decode(data: bytes, *, name: str | None = None) -> Outcomes:
    """The outcomes held in :func:`encode`'s bytes.

    Args:
        data: the .npz file's bytes.
        name: the model's name to use (its name in the run); None: the name in the file.

    Returns:
        The :class:`Outcomes` (``labels`` None for files written before labels were kept).

    Raises:
        ValueError: the bytes are not such a file (not an .npz, or an array missing).
    """
    try:
        # allow_pickle=False: an outcomes file from elsewhere must not run code on load.
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            return Outcomes(name=str(saved["name"]) if name is None else name, dataset=str(saved["dataset"]),
                            norm=str(saved["norm"]), epsilons=saved["epsilons"], clean=saved["clean"].astype(bool),
                            worst=saved["worst"].astype(bool),
                            per_attack={str(label): mask.astype(bool)
                                        for label, mask in zip(saved["attacks"], saved["per_attack"])},
                            labels=saved["labels"].astype(np.int64) if "labels" in saved.files else None)
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"not an outcomes file of advrobust: {error}") from error


def write(outcomes: Outcomes, path: str | Path) -> Path:
    """Write ``outcomes`` to ``path`` (:func:`encode`, atomically).

    Args:
        outcomes: what to write.
        path: the .npz file.

    Returns:
        The path written.

    Raises:
        ValueError: the arrays do not fit together (see :func:`encode`).
    """
    return atomic_write_bytes(path, encode(
        name=outcomes.name, dataset=outcomes.dataset, norm=outcomes.norm, epsilons=outcomes.epsilons,
        clean=outcomes.clean, worst=outcomes.worst, per_attack=outcomes.per_attack, labels=outcomes.labels))


def read(path: str | Path, *, name: str | None = None) -> Outcomes:
    """Read an outcomes file (see :func:`decode` for ``name``).

    Args:
        path: the .npz file.
        name: the model's name to use; None: the name in the file.

    Returns:
        The :class:`Outcomes`.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: it is not an outcomes file.
    """
    path = Path(path)
    try:
        return decode(path.read_bytes(), name=name)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
