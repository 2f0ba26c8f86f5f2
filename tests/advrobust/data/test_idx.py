"""advrobust.data.idx: IDX parsing and corrupt files, on tiny synthetic files."""

import gzip

import numpy as np
import pytest

from advrobust.data.idx import DataFileError, read_images, read_labels
from tests.conftest import write_fake_split, write_idx


def test_read_valid_files_round_trip(tmp_path):
    images, labels = write_fake_split(tmp_path, "train", n=7)
    np.testing.assert_array_equal(read_images(tmp_path / "train-images-idx3-ubyte.gz"), images)
    np.testing.assert_array_equal(read_labels(tmp_path / "train-labels-idx1-ubyte.gz"), labels)


def test_truncated_gzip_names_the_file(tmp_path):
    write_fake_split(tmp_path, "train", n=50)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.gz.*(truncated|corrupt)"):
        read_images(path)


def test_data_shorter_than_header_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(path, "wb") as handle:
        handle.write(header + bytes(28 * 28 * 9))  # one image short
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte.gz: header declares shape \(10, 28, 28\)"):
        read_images(path)


def test_wrong_magic_is_rejected(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.zeros(5, np.uint8), 2049)
    with pytest.raises(DataFileError, match="magic number 2049, expected 2051"):
        read_images(path)


def test_not_gzip_at_all(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte.gz: cannot decompress"):
        read_labels(path)


def test_label_out_of_range(tmp_path):
    path = write_idx(tmp_path / "l.gz", np.array([1, 2, 12], np.uint8), 2049)
    with pytest.raises(DataFileError, match="label 12 outside 0..9"):
        read_labels(path)
