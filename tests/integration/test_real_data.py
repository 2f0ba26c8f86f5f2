"""The loader on the real MNIST and Fashion-MNIST files (never skipped: missing data fails)."""

import numpy as np
import pytest

from advrobust import data

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
