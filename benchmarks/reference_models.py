"""The reference CNNs the benchmarks attack, trained once and kept in a cache folder.

The reference CNN is Conv32-Conv64-MaxPool-Dense128-Dense10 without Dropout (the CNN of
the issues' measurements). Two variants on Fashion-MNIST, both trained with
``advrobust.training.train`` (seed 0):

- ``undefended``: plain training, 2 epochs on 30,000 training images;
- ``pgd_at``: PGD adversarial training with the Fashion-MNIST preset (L-inf 0.1, 7 steps),
  3 epochs on 30,000 training images.

They are small budgets (a few minutes each on 2 CPU cores), enough for the attacks to
face one undefended and one adversarially trained model; the cards beside the model
files record their clean and robust accuracy. The cache folder (default
``benchmarks/results/models``) is ignored by git.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import advrobust  # noqa: F401  (Keras 2 before TensorFlow)
from advrobust import models
from advrobust.training import TrainConfig, train

DEFAULT_CACHE = Path(__file__).parent / "results" / "models"
CONFIGS: dict[str, TrainConfig] = {
    "undefended": TrainConfig(dataset="fashion_mnist", model="cnn", dropout=False, epochs=2, train_subset=30000,
                              seed=0),
    "pgd_at": TrainConfig(dataset="fashion_mnist", model="cnn", dropout=False, defense="pgd_at",
                          preset="fashion_mnist", epochs=3, train_subset=30000, seed=0),
}


def reference_model(name: str, cache: str | Path = DEFAULT_CACHE) -> Any:
    """The reference CNN ``name``, loaded from ``cache`` or trained into it first.

    Args:
        name: A key of ``CONFIGS``: ``"undefended"`` or ``"pgd_at"``.
        cache: The folder that keeps the trained models (one subfolder each).

    Returns:
        The Keras logits model.

    Raises:
        ValueError: ``name`` is not a key of ``CONFIGS``.
    """
    if name not in CONFIGS:
        raise ValueError(f"unknown reference model {name!r}; choose one of: {', '.join(CONFIGS)}")
    path = Path(cache) / name / "model.keras"
    if not path.exists():
        train(CONFIGS[name], path.parent, verbose=0)
    return models.load(path)
