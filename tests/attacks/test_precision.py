"""attacks.precision: attacks with 16-bit gradients (bfloat16, float16)."""

import numpy as np
import pytest

from attacks import fgsm, pgd
from attacks.backend import keras, tf
from tests.attacks.conftest import ATTACKS, accuracy


def small_cnn(seed=0):
    """A tiny untrained Conv-Dense logits model on 8x8x1 inputs (tf-keras, functional)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(hidden)))


X8 = np.random.default_rng(1).random((40, 8, 8, 1), dtype=np.float32)
Y8 = np.arange(40) % 3


@pytest.mark.parametrize("compute_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["fgsm", "pgd", "mim"])
def test_low_precision_gradients_keep_ball_range_dtype_and_seed(name, compute_dtype):
    model = small_cnn()
    kwargs = {} if name == "fgsm" else {"steps": 4, "seed": 3}
    x_adv = ATTACKS[name](model, X8, Y8, eps=[0.05, 0.2], compute_dtype=compute_dtype, **kwargs)
    assert x_adv.dtype == np.float32 and x_adv.shape == (2, *X8.shape)
    for index, eps in enumerate((0.05, 0.2)):
        assert np.abs(x_adv[index] - X8).max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    again = ATTACKS[name](model, X8, Y8, eps=[0.05, 0.2], compute_dtype=compute_dtype, **kwargs)
    np.testing.assert_array_equal(x_adv, again)
    # Gradients in 16 bits mostly agree in sign with float32 ones: FGSM moves mostly alike.
    if name == "fgsm":
        same = np.sign(x_adv - X8) == np.sign(fgsm(model, X8, Y8, eps=[0.05, 0.2]) - X8)
        assert same.mean() > 0.8


def test_low_precision_copy_computes_in_16_bits_and_follows_weight_changes():
    from attacks import precision

    model = small_cnn()
    copy = precision.compute_model(model, "bfloat16")
    assert copy is not model and copy.layers[-1].compute_dtype == "bfloat16"
    assert copy(X8).dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(copy(X8), tf.float32), model(X8), atol=0.05, rtol=0.05)
    model.set_weights([2.0 * w for w in model.get_weights()])  # e.g. training between attacks
    copy = precision.compute_model(model, "bfloat16")
    np.testing.assert_allclose(tf.cast(copy(X8), tf.float32), model(X8), atol=0.1, rtol=0.05)
    assert precision.compute_model(model, None) is model
    assert precision.compute_model(model, "float32") is model  # already computes in float32


def test_low_precision_copy_of_a_keras3_model():
    import keras as keras3

    inputs = keras3.Input((8, 8, 1))
    k3 = keras3.Model(inputs, keras3.layers.Dense(3)(keras3.layers.Flatten()(inputs)))
    x_adv = pgd(k3, X8, Y8, eps=0.1, steps=3, seed=0, compute_dtype="bfloat16")
    assert np.abs(x_adv - X8).max() <= 0.1 + 1e-6


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.flatten, self.dense = keras.layers.Flatten(), keras.layers.Dense(3)

    def call(self, x):
        return self.dense(self.flatten(x))


@pytest.mark.parametrize("candidate, compute_dtype, match", [
    (small_cnn, "int8", "compute_dtype must be None or one of"),
    (small_cnn, "half", "compute_dtype must be None or one of"),
    (lambda: (lambda x: tf.reduce_sum(x, axis=[1, 2]) * tf.ones([1, 3])), "bfloat16", "needs a Keras model"),
    (_Subclassed, "bfloat16", "could not rebuild _Subclassed"),
])
def test_low_precision_refuses_what_it_cannot_do(candidate, compute_dtype, match):
    with pytest.raises(ValueError, match=match):
        pgd(candidate(), X8, Y8, eps=0.1, steps=2, compute_dtype=compute_dtype)


@pytest.mark.slow
def test_bfloat16_gradients_find_about_as_many_adversarial_examples(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    for eps in (0.05, 0.1):
        exact = accuracy(model, pgd(model, x, y, eps=eps, steps=20, seed=0), y)
        fast = accuracy(model, pgd(model, x, y, eps=eps, steps=20, seed=0, compute_dtype="bfloat16"), y)
        # Judged by the float32 model; 16-bit gradients cost at most a couple of points.
        assert abs(fast - exact) <= 0.02, (eps, exact, fast)
