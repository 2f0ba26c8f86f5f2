"""advrobust.data.loading: the lookup order and its errors on tiny synthetic files, and the real
MNIST and Fashion-MNIST files (never skipped: missing data fails)."""

from pathlib import Path

import numpy as np
import pytest

from advrobust import data
from advrobust.data import loading
from advrobust.data.idx import DataFileError
from tests.conftest import write_fake_split


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


MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize("name", data.DATASETS)
@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_shapes_dtypes_and_ranges(name, split, n):
    x, y = data.load(name, split, download=False)
    assert x.shape == (n, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y).tolist()) == set(range(10))


def test_fashion_mnist_is_balanced():
    _, y_train = data.load("fashion_mnist", "train", download=False)
    _, y_test = data.load("fashion_mnist", "test", download=False)
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10


def test_mnist_class_counts():
    _, y_train = data.load("mnist", "train", download=False)
    _, y_test = data.load("mnist", "test", download=False)
    assert np.bincount(y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == MNIST_TEST_COUNTS
