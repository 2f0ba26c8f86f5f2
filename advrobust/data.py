"""MNIST and Fashion-MNIST, offline first, as arrays and as tf.data pipelines.

Where the files are looked for, in order (the first place that has a split's two files
wins):

1. the ``data_dir`` argument;
2. the folder in ``ADVROBUST_DATA_DIR``;
3. system locations (Debian's ``dataset-fashion-mnist`` installs
   ``/usr/share/datasets/fashion-mnist/``);
4. the Keras cache, ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``;
5. the standard Keras download, for users who are online (``download=True``).

A folder in 1-4 may hold the four original ``*-ubyte.gz`` files directly or in a
subfolder named after the dataset (``mnist/``, ``fashion-mnist/``). Keras's own MNIST
download, ``mnist.npz``, is read too.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from advrobust.files import check_choice
from advrobust.idx import DataFileError, read_images, read_labels
from attacks._tensorflow import keras, tf

DatasetName = Literal["mnist", "fashion_mnist"]
Split = Literal["train", "test"]

DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist")
SPLITS: tuple[str, ...] = ("train", "test")
NUM_CLASSES = 10
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}


def class_name(dataset: str, label: int) -> str:
    """The name of class ``label`` in ``dataset`` (the label itself as text if unknown)."""
    names = CLASS_NAMES.get(dataset, ())
    return names[label] if 0 <= label < len(names) else str(label)


_SUBFOLDERS = {"mnist": ("mnist",), "fashion_mnist": ("fashion-mnist", "fashion_mnist")}
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_HOW_TO_GET = {
    "mnist": "download the four *-ubyte.gz files of MNIST into a folder and pass it as "
             "data_dir (or --data-dir), or set ADVROBUST_DATA_DIR to it",
    "fashion_mnist": "on Debian/Ubuntu `apt-get install dataset-fashion-mnist`; or put the "
                     "four *-ubyte.gz files into a folder and pass it as data_dir (or "
                     "--data-dir), or set ADVROBUST_DATA_DIR to it",
}


class DataNotFoundError(FileNotFoundError):
    """No copy of a dataset was found in any place searched."""


@dataclass(frozen=True)
class _Found:
    """Where a split was found: two IDX files, or Keras's mnist.npz."""

    images: Path
    labels: Path | None = None


def _keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _candidate_dirs(name: str, data_dir: str | Path | None) -> list[tuple[str, Path]]:
    """Every (source, folder) to search, in lookup order."""
    roots: list[tuple[str, Path]] = []
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise FileNotFoundError(f"data_dir {str(data_dir)!r} does not exist or is not a folder.")
        roots.append(("data_dir argument", data_dir))
    env_dir = os.environ.get("ADVROBUST_DATA_DIR")
    if env_dir:
        roots.append(("ADVROBUST_DATA_DIR", Path(env_dir)))
    roots += [("system location", folder) for folder in SYSTEM_DIRS]
    roots.append(("Keras cache", _keras_cache_dir()))
    folders = []
    for source, root in roots:
        folders.append((source, root))
        folders += [(source, root / sub) for sub in _SUBFOLDERS[name]]
    return folders


def _find(name: str, split: str, data_dir: str | Path | None) -> tuple[_Found | None, list[Path]]:
    searched = []
    images_file, labels_file = _FILES[split]
    for _source, folder in _candidate_dirs(name, data_dir):
        searched.append(folder)
        if (folder / images_file).is_file() and (folder / labels_file).is_file():
            return _Found(folder / images_file, folder / labels_file), searched
        if name == "mnist" and folder.name != "mnist" and (folder / "mnist.npz").is_file():
            return _Found(folder / "mnist.npz"), searched
    return None, searched


def _download(name: str) -> Path:
    """Fetch the dataset with Keras (online users only); returns the folder of its files."""
    if name == "mnist":
        keras.datasets.mnist.load_data()
        return _keras_cache_dir()
    keras.datasets.fashion_mnist.load_data()
    return _keras_cache_dir() / "fashion-mnist"


@functools.lru_cache(maxsize=8)
def _read(found: _Found, split: str) -> tuple[np.ndarray, np.ndarray]:
    if found.labels is None:
        try:
            with np.load(found.images, allow_pickle=False) as archive:
                images, labels = archive[f"x_{split}"], archive[f"y_{split}"]
        except (OSError, ValueError, KeyError) as error:
            raise DataFileError(f"{found.images}: not a readable Keras mnist.npz ({error}).") from error
    else:
        images, labels = read_images(found.images), read_labels(found.labels)
    if len(images) != len(labels):
        raise DataFileError(f"{found.images} holds {len(images)} images but {found.labels} "
                            f"holds {len(labels)} labels.")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def locate(name: DatasetName, split: Split = "train", data_dir: str | Path | None = None,
           *, download: bool = True) -> Path:
    """Path of the images file (or mnist.npz) that :func:`load` would read."""
    return _locate(name, split, data_dir, download=download).images


def _locate(name: str, split: str, data_dir, *, download: bool) -> _Found:
    check_choice(name, DATASETS, "dataset")
    check_choice(split, SPLITS, "split")
    found, searched = _find(name, split, data_dir)
    if found is not None:
        return found
    download_note = "download not attempted (download=False)"
    if download:
        try:
            folder = _download(name)
        except Exception as error:  # any network failure: report it with the search list
            download_note = f"Keras download failed: {type(error).__name__}: {error}"
        else:
            found, more = _find(name, split, folder)
            searched += more
            if found is not None:
                return found
            download_note = f"Keras download finished but no files in {folder}"
    places = "\n".join(f"  - {folder}" for folder in dict.fromkeys(searched))
    raise DataNotFoundError(
        f"{name} ({split}) not found. Looked for {' + '.join(_FILES[split])} in:\n{places}\n"
        f"  - {download_note}\nTo get it: {_HOW_TO_GET[name]}."
    )


def load(name: DatasetName, split: Split = "train", data_dir: str | Path | None = None,
         *, download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of MNIST or Fashion-MNIST.

    Returns ``(x, y)``: x float32 of shape (N, 28, 28, 1) with values in [0, 1]
    (pixel / 255), y int64 of shape (N,) with values in 0..9. N is 60000 for train,
    10000 for test. Raises ValueError for an unknown name or split, FileNotFoundError
    for a ``data_dir`` that does not exist, DataFileError (a ValueError) naming the
    file for a truncated or corrupt file, and DataNotFoundError listing every place
    searched when no copy exists.
    """
    found = _locate(name, split, data_dir, download=download)
    images, labels = _read(found, split)
    x = (images.astype(np.float32) / np.float32(255.0))[..., np.newaxis]
    return x, labels.astype(np.int64)


def train_val_split(x: np.ndarray, y: np.ndarray, *, val_fraction: float = 0.1,
                    seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split off a seeded, class-stratified validation set.

    Returns ``((x_train, y_train), (x_val, y_val))``; the same seed gives the same split.
    Each class contributes ``round(val_fraction * count)`` examples to validation.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    rng = np.random.default_rng(seed)
    val_index = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        count = int(round(val_fraction * len(members)))
        val_index.append(rng.choice(members, size=count, replace=False))
    val_mask = np.zeros(len(y), dtype=bool)
    val_mask[np.concatenate(val_index)] = True
    return (x[~val_mask], y[~val_mask]), (x[val_mask], y[val_mask])


# Training-time augmentations: "shift" moves each image by up to MAX_SHIFT pixels in each
# direction (zeros fill in, as the datasets' background is 0); "flip_shift" also mirrors
# half the images left-right, which keeps Fashion-MNIST's classes but not MNIST's digits.
AUGMENTATIONS: tuple[str, ...] = ("none", "shift", "flip_shift")
MAX_SHIFT = 2


def check_augmentation(augment: str, dataset: str) -> str:
    """Return ``augment`` if it is an augmentation that keeps ``dataset``'s labels."""
    check_choice(augment, AUGMENTATIONS, "augmentation")
    if augment == "flip_shift" and dataset == "mnist":
        raise ValueError("augmentation 'flip_shift' mirrors images, which changes digits (MNIST); use 'shift'")
    return augment


def augmenter(augment: str):
    """A function of ``(images, seed)`` returning the batch ``images`` (B, H, W, C)
    augmented as ``augment`` says (see AUGMENTATIONS), or None for "none".

    ``seed`` is a stateless-RNG seed, an integer tensor of shape (2,): the same seed gives
    the same augmentations, whatever else has drawn random numbers before. Pixels are
    moved, never changed: every output value is an input value or 0. Each image gets its
    own mirror coin and its own whole-pixel shift, uniform in [-MAX_SHIFT, MAX_SHIFT] on
    each axis.
    """
    check_choice(augment, AUGMENTATIONS, "augmentation")
    if augment == "none":
        return None

    def apply(images, seed):
        flip_seed, shift_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        if augment == "flip_shift":
            images = tf.image.stateless_random_flip_left_right(images, flip_seed)
        batch = tf.shape(images)[0]
        shift = tf.random.stateless_uniform([batch, 2], shift_seed, minval=-MAX_SHIFT, maxval=MAX_SHIFT + 1,
                                            dtype=tf.int32)
        # An output pixel (x, y) reads input pixel (x - dx, y - dy): the projective
        # transform [1, 0, -dx, 0, 1, -dy, 0, 0], with zeros where that falls outside.
        dx, dy = tf.unstack(tf.cast(shift, tf.float32), axis=1)
        one, zero = tf.ones_like(dx), tf.zeros_like(dx)
        transforms = tf.stack([one, zero, -dx, zero, one, -dy, zero, zero], axis=1)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
            fill_value=tf.constant(0, images.dtype), interpolation="NEAREST", fill_mode="CONSTANT")

    return apply


def make_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int = 128, shuffle: bool = False,
                 seed: int | None = None, drop_remainder: bool = False, augment: str = "none") -> tf.data.Dataset:
    """A batched, prefetched tf.data pipeline of ``(x, y)``.

    With ``shuffle=True`` the order is reshuffled every epoch from ``seed`` (the same
    seed gives the same sequence of epochs). ``augment`` (see :func:`augmenter`) draws a
    new augmentation of every batch each epoch; labels are unchanged. As everywhere in
    tf.data, the draws follow ``seed`` together with TensorFlow's global seed
    (``keras.utils.set_random_seed``), and not other draws in between.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    transform = augmenter(augment)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if transform is not None:
        # One stateless seed per batch, new each epoch and reproduced by ``seed``: unlike
        # stateful random layers, this stays reproducible under parallel map calls.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda batch, batch_seed: (transform(batch[0], batch_seed), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
