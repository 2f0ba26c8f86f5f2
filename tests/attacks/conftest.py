"""Shared by the attack tests: a 2-D linear logits model with hand-checkable gradients, a tiny
untrained CNN, and the attacks by name."""

import numpy as np
import pytest

from attacks import bim, fgsm, mim, pgd
from attacks.backend import keras

ATTACKS = {"fgsm": fgsm, "bim": bim, "pgd": pgd, "mim": mim}
W = np.array([[1.0, -2.0, 0.5], [-0.5, 1.0, 2.0]], np.float32)  # 2 inputs -> 3 classes
B = np.array([0.1, 0.0, -0.1], np.float32)


def linear_model():
    """A 2-D linear logits model: logits = x @ W + b, as a Keras 2 model."""
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(3)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([W, B])
    return model


X2 = np.array([[0.2, 0.7], [0.5, 0.5], [0.9, 0.1], [0.4, 0.3]], np.float32)
Y2 = np.array([0, 1, 2, 1])


@pytest.fixture(scope="module")
def model():
    return linear_model()


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), axis=1) == y))
