"""attacks.validation: inference mode, the kinds of model accepted, and every documented bad input."""

import numpy as np
import pytest

from attacks import fgsm, pgd
from attacks.backend import keras, tf
from tests.attacks.conftest import B, W, X2, Y2, linear_model


def test_dropout_model_is_attacked_in_inference_mode():
    inputs = keras.Input((2,))
    hidden = keras.layers.Dropout(0.9)(keras.layers.Dense(16, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    first = pgd(model, X2, Y2, eps=0.1, steps=5, seed=0)
    np.testing.assert_array_equal(first, pgd(model, X2, Y2, eps=0.1, steps=5, seed=0))
    np.testing.assert_array_equal(fgsm(model, X2, Y2, eps=0.1), fgsm(model, X2, Y2, eps=0.1))


def test_keras3_tf_module_and_plain_function_models():
    import keras as keras3  # Keras 3 on the TensorFlow backend

    inputs = keras3.Input((2,))
    dense = keras3.layers.Dense(3)
    k3 = keras3.Model(inputs, dense(inputs))
    dense.set_weights([W, B])

    class Linear(tf.Module):
        def __call__(self, x):
            return tf.matmul(x, W) + B

    expected = fgsm(linear_model(), X2, Y2, eps=0.05)
    for candidate in (k3, Linear(), lambda x: tf.matmul(x, W) + B):
        np.testing.assert_allclose(fgsm(candidate, X2, Y2, eps=0.05), expected, atol=1e-6)


def _probabilities(x):
    return tf.nn.softmax(tf.matmul(x, W))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"x": np.array([[np.nan, 0.1]], np.float32)}, ValueError, "NaN or infinite"),
    ({"x": np.array([[np.inf, 0.1]], np.float32)}, ValueError, "NaN or infinite"),
    ({"x": np.array([[200.0, 3.0]], np.float32)}, ValueError, r"outside clip.*rescale"),
    ({"x": np.array([[1, 0]], np.uint8)}, TypeError, "floating-point.*x / 255"),
    ({"x": np.array([0.1, 0.2], np.float32)}, ValueError, "at least 2 dimensions"),
    ({"y": np.array([0, 1])}, ValueError, r"shape \(1,\)"),
    ({"y": np.array([5])}, ValueError, "label 5 is outside the model's 3 classes"),
    ({"y": np.array([-1])}, ValueError, "labels must be >= 0"),
    ({"y": np.array([0.5])}, TypeError, "integer class labels"),
    ({"eps": -0.1}, ValueError, "eps must be finite and >= 0"),
    ({"eps": float("nan")}, ValueError, "eps must be finite"),
    ({"eps": [0.1, float("inf")]}, ValueError, "eps must be finite"),
    ({"steps": 0}, ValueError, "steps must be an integer >= 1"),
    ({"restarts": 0}, ValueError, "restarts must be an integer >= 1"),
    ({"step_size": -1.0}, ValueError, "step_size must be finite and > 0"),
    ({"norm": "l1"}, ValueError, "unknown norm 'l1'; choose one of"),
    ({"norm": 3}, ValueError, "unknown norm 3"),
    ({"loss": "hinge"}, ValueError, "unknown loss 'hinge'; choose one of: ce, margin"),
    ({"clip": (1.0, 0.0)}, ValueError, "low < high"),
    ({"model": _probabilities}, ValueError, "look like probabilities"),
    ({"model": "not a model"}, TypeError, "model must be callable"),
    ({"seed": 1.5}, TypeError, "seed must be an int"),
    ({"seed": -1}, ValueError, "seed must be >= 0, got -1"),
])
def test_bad_input_raises_the_documented_error(model, kwargs, error, match):
    arguments = {"model": model, "x": np.array([[0.1, 0.2]], np.float32), "y": np.array([0]), "eps": 0.1}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        pgd(arguments.pop("model"), arguments.pop("x"), arguments.pop("y"), **arguments)
