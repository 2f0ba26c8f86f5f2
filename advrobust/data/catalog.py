"""The datasets advrobust knows: names, splits, class count and class names. No TensorFlow."""

from __future__ import annotations

from typing import Literal

DatasetName = Literal["mnist", "fashion_mnist"]
Split = Literal["train", "test"]

DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist")
SPLITS: tuple[str, ...] = ("train", "test")
NUM_CLASSES = 10
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}


def class_name(dataset: str, label: int) -> str:
    """Name a class of a dataset.

    Args:
        dataset: A dataset name, e.g. ``"fashion_mnist"``.
        label: The class label.

    Returns:
        The class's name (e.g. ``"Trouser"``), or the label itself as text if the dataset
        or the label is unknown.
    """
    names = CLASS_NAMES.get(dataset, ())
    return names[label] if 0 <= label < len(names) else str(label)


# Training-time augmentations: "shift" moves each image by up to MAX_SHIFT pixels in each
# direction (zeros fill in, as the datasets' background is 0); "flip_shift" also mirrors
# half the images left-right, which keeps Fashion-MNIST's classes but not MNIST's digits.
AUGMENTATIONS: tuple[str, ...] = ("none", "shift", "flip_shift")
