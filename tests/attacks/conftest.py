"""Shared by the attack tests: a 2-D linear logits model with hand-checkable gradients, a tiny
untrained CNN, the attacks by name, and the check that an attack refuses bad input as pgd does."""

import numpy as np
import pytest

from attacks import bim, fgsm, mim, pgd
from attacks.backend import keras, tf

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


def probabilities(x):
    """A model whose outputs are probabilities (softmax of x @ W): every attack must refuse it."""
    return tf.nn.softmax(tf.matmul(x, W))


def assert_refuses_like_pgd(attack, arguments, *, takes_eps=True):
    """``attack`` and ``pgd`` both raise, with the same error type and message.

    ``arguments`` holds model, x, y and keyword arguments; pgd gets ``eps=0.1`` unless
    they hold one, ``attack`` gets it only when ``takes_eps``.
    """
    errors = []
    for function, extra in ((pgd, {"eps": 0.1}), (attack, {"eps": 0.1} if takes_eps else {})):
        call = {**extra, **arguments}
        with pytest.raises((ValueError, TypeError)) as info:
            function(call.pop("model"), call.pop("x"), call.pop("y"), **call)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]
