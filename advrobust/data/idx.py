"""Read and validate the original gzipped IDX files of MNIST and Fashion-MNIST.

The IDX format (LeCun et al.) is a big-endian header: two zero bytes, a type code
(0x08 = unsigned byte), the number of dimensions, then one uint32 per dimension,
followed by the raw data. Image files have magic 2051 (3 dims), label files 2049 (1 dim).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


class DataFileError(ValueError):
    """A dataset file is truncated, corrupt or not the file it should be."""


def read_idx(path: str | Path, *, expected_magic: int) -> np.ndarray:
    """Read one gzipped IDX file.

    Args:
        path: The ``.gz`` file.
        expected_magic: ``IMAGES_MAGIC`` (2051) or ``LABELS_MAGIC`` (2049).

    Returns:
        A read-only uint8 array whose shape is the one the header declares: (N, rows, cols)
        for images, (N,) for labels.

    Raises:
        DataFileError: Naming the file, when it cannot be opened or decompressed, the magic
            number is wrong, or the data is shorter or longer than the header says.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataFileError(f"{path}: cannot decompress ({error}); the file is truncated or corrupt. "
                            "Delete it and fetch it again.") from error
    if len(raw) < 8:
        raise DataFileError(f"{path}: only {len(raw)} bytes after decompression; not an IDX file.")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expected_magic:
        raise DataFileError(f"{path}: magic number {magic}, expected {expected_magic} "
                            f"({'images' if expected_magic == IMAGES_MAGIC else 'labels'}); "
                            "wrong or corrupt file.")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataFileError(f"{path}: header truncated.")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header_size])
    expected_size = int(np.prod(shape))
    actual_size = len(raw) - header_size
    if actual_size != expected_size:
        raise DataFileError(f"{path}: header declares shape {shape} ({expected_size} bytes of data) "
                            f"but the file holds {actual_size}; the file is truncated or corrupt.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def read_images(path: str | Path) -> np.ndarray:
    """Read a gzipped IDX file of 28x28 images.

    Args:
        path: The ``*-images-idx3-ubyte.gz`` file.

    Returns:
        A read-only uint8 array (N, 28, 28), values 0..255.

    Raises:
        DataFileError: The file is unreadable or corrupt (see :func:`read_idx`), or does not
            hold 28x28 images.
    """
    images = read_idx(path, expected_magic=IMAGES_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataFileError(f"{path}: images of shape {images.shape[1:]}, expected (28, 28).")
    return images


def read_labels(path: str | Path, *, num_classes: int = 10) -> np.ndarray:
    """Read a gzipped IDX file of class labels.

    Args:
        path: The ``*-labels-idx1-ubyte.gz`` file.
        num_classes: The number of classes the labels must fall in.

    Returns:
        A read-only uint8 array (N,), values in 0..num_classes-1.

    Raises:
        DataFileError: The file is unreadable or corrupt (see :func:`read_idx`), or holds a
            label >= ``num_classes``.
    """
    labels = read_idx(path, expected_magic=LABELS_MAGIC)
    if labels.size and labels.max() >= num_classes:
        raise DataFileError(f"{path}: label {labels.max()} outside 0..{num_classes - 1}.")
    return labels
