"""Shared by the model tests: a batch of MNIST-shaped inputs and an untrained CNN."""

import numpy as np
import pytest

from advrobust import models
from attacks.backend import keras

X = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)


@pytest.fixture(scope="module")
def cnn():
    return models.build("cnn", seed=0)


def ends_in_linear_dense(model):
    last = model.layers[-1]
    return isinstance(last, keras.layers.Dense) and last.activation is keras.activations.linear
