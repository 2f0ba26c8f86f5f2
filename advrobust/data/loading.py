"""MNIST and Fashion-MNIST, offline first, as NumPy arrays.

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

import numpy as np

from advrobust.data.catalog import DATASETS, SPLITS, DatasetName, Split
from advrobust.data.idx import DataFileError, read_images, read_labels
from advrobust.validation import check_choice

SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)

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
    from attacks.backend import keras  # only the download needs TensorFlow

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
    """Find the file that :func:`load` would read.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        split: ``"train"`` or ``"test"``.
        data_dir: A folder to look in first, or None (see the module docstring for the
            places searched after it).
        download: Try the standard Keras download when no local copy is found.

    Returns:
        The path of the split's images file, or of Keras's ``mnist.npz``.

    Raises:
        ValueError: An unknown name or split.
        FileNotFoundError: ``data_dir`` does not exist or is not a folder.
        DataNotFoundError: No copy was found; the message lists every place searched and
            how to get the data.
    """
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

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        split: ``"train"`` or ``"test"``.
        data_dir: A folder to look in first, or None (see the module docstring for the
            places searched after it).
        download: Try the standard Keras download when no local copy is found.

    Returns:
        ``(x, y)``: x float32 of shape (N, 28, 28, 1) with values in [0, 1] (pixel / 255),
        y int64 of shape (N,) with values in 0..9. N is 60000 for train, 10000 for test.

    Raises:
        ValueError: An unknown name or split.
        FileNotFoundError: ``data_dir`` does not exist or is not a folder.
        DataFileError: Naming the file, when it is truncated or corrupt (a ValueError).
        DataNotFoundError: No copy was found; the message lists every place searched.
    """
    found = _locate(name, split, data_dir, download=download)
    images, labels = _read(found, split)
    x = (images.astype(np.float32) / np.float32(255.0))[..., np.newaxis]
    return x, labels.astype(np.int64)
