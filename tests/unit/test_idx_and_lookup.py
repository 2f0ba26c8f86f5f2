"""IDX parsing, corrupt files, the lookup order and its errors, on tiny synthetic files."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from advrobust import data
from advrobust.data import loading
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


def test_corrupt_file_surfaces_through_load(isolated_lookup):
    folder = isolated_lookup / "d" / "fashion-mnist"
    write_fake_split(folder, "test")
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataFileError, match="t10k-images-idx3-ubyte.gz"):
        data.load("fashion_mnist", "test", data_dir=isolated_lookup / "d", download=False)


def test_load_converts_to_float_in_unit_range(isolated_lookup):
    images, labels = write_fake_split(isolated_lookup / "d", "test", n=12)
    x, y = data.load("mnist", "test", data_dir=isolated_lookup / "d", download=False)
    assert x.shape == (12, 28, 28, 1) and x.dtype == np.float32
    assert y.dtype == np.int64 and y.shape == (12,)
    np.testing.assert_allclose(x[..., 0], images / 255.0, atol=1e-7)
    np.testing.assert_array_equal(y, labels)


def test_lookup_order_argument_then_env_then_system_then_cache(isolated_lookup, monkeypatch):
    root = isolated_lookup
    for place, seed in (("arg", 1), ("env", 2), ("system", 3), ("keras_home/datasets", 4)):
        write_fake_split(root / place / "fashion-mnist", "test", seed=seed)
    monkeypatch.setenv("ADVROBUST_DATA_DIR", str(root / "env"))

    def source():
        loading._read.cache_clear()
        return Path(data.locate("fashion_mnist", "test", data_dir=None, download=False)).parts[-3]

    assert Path(data.locate("fashion_mnist", "test", root / "arg", download=False)).parts[-3] == "arg"
    assert source() == "env"
    monkeypatch.delenv("ADVROBUST_DATA_DIR")
    assert source() == "system"
    import shutil
    shutil.rmtree(root / "system")
    assert source() == "datasets"  # KERAS_HOME/datasets/fashion-mnist


def test_files_directly_in_the_folder_are_found(isolated_lookup):
    write_fake_split(isolated_lookup / "flat", "train")
    path = data.locate("mnist", "train", isolated_lookup / "flat", download=False)
    assert path == isolated_lookup / "flat" / "train-images-idx3-ubyte.gz"


def test_keras_mnist_npz_in_cache_is_read(isolated_lookup):
    cache = isolated_lookup / "keras_home" / "datasets"
    cache.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {f"{k}_{s}": rng.integers(0, 10 if k == "y" else 256, size=(5,) + ((28, 28) if k == "x" else ()),
                                       dtype=np.uint8) for k in "xy" for s in ("train", "test")}
    np.savez(cache / "mnist.npz", **arrays)
    x, y = data.load("mnist", "test", download=False)
    np.testing.assert_array_equal(y, arrays["y_test"])
    assert x.shape == (5, 28, 28, 1)


def test_nothing_found_lists_every_place_and_how_to_get_it(isolated_lookup, monkeypatch):
    monkeypatch.setenv("ADVROBUST_DATA_DIR", str(isolated_lookup / "envdir"))
    with pytest.raises(data.DataNotFoundError) as info:
        data.load("fashion_mnist", "train", download=False)
    message = str(info.value)
    for place in ("envdir", "system", "keras_home/datasets", "fashion-mnist"):
        assert place in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "download not attempted" in message


def test_failed_download_is_reported_with_the_search_list(isolated_lookup, monkeypatch):
    def offline(name):
        raise OSError("network unreachable")

    monkeypatch.setattr(loading, "_download", offline)
    with pytest.raises(data.DataNotFoundError, match="Keras download failed: OSError: network unreachable"):
        data.load("mnist", "test")


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir .*nope.* does not exist"):
        data.load("mnist", "test", data_dir=tmp_path / "nope")


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "cifar10"}, "unknown dataset 'cifar10'; choose one of: mnist, fashion_mnist"),
    ({"name": "mnist", "split": "valid"}, "unknown split 'valid'; choose one of: train, test"),
])
def test_unknown_names_list_the_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load(**kwargs)


def test_train_val_split_is_seeded_and_stratified():
    x = np.arange(1000, dtype=np.float32).reshape(1000, 1)
    y = np.repeat(np.arange(10), 100)
    (xt, yt), (xv, yv) = data.train_val_split(x, y, val_fraction=0.1, seed=3)
    (xt2, _), (xv2, _) = data.train_val_split(x, y, val_fraction=0.1, seed=3)
    (_, _), (xv3, _) = data.train_val_split(x, y, val_fraction=0.1, seed=4)
    np.testing.assert_array_equal(xv, xv2)
    np.testing.assert_array_equal(xt, xt2)
    assert not np.array_equal(xv, xv3)
    assert np.bincount(yv).tolist() == [10] * 10
    assert len(np.intersect1d(xt[:, 0], xv[:, 0])) == 0 and len(xt) + len(xv) == 1000


def test_make_dataset_shuffles_reproducibly():
    x = np.arange(64, dtype=np.float32)
    y = np.arange(64)
    order = lambda seed: np.concatenate([b.numpy() for b, _ in data.make_dataset(x, y, batch_size=16, shuffle=True, seed=seed)])
    first, again, other = order(1), order(1), order(2)
    np.testing.assert_array_equal(first, again)
    assert sorted(first.tolist()) == list(range(64)) and not np.array_equal(first, other)
    assert [b.shape[0] for b, _ in data.make_dataset(x, y, batch_size=20)] == [20, 20, 20, 4]
