"""Shared by the defense tests: a linear point model and robust accuracy under PGD."""

import numpy as np

from attacks import pgd
from attacks.backend import keras


def linear_model(dim, classes=2, seed=0, name="point"):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((dim,), name=name)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(inputs))


def pgd_robust_accuracy(model, x, y, eps):
    x_adv = pgd(model, x, y, eps=eps, steps=10, seed=0)
    clean = np.argmax(model.predict(x, verbose=0), 1) == y
    adversarial = np.argmax(model.predict(x_adv, verbose=0), 1) == y
    return float(np.mean(clean & adversarial)), float(np.mean(clean))
