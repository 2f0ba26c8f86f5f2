"""advrobust.models.cnn: the reference CNN's architecture, width and logits."""

import numpy as np
import pytest

from advrobust import models
from tests.advrobust.models.conftest import X, ends_in_linear_dense
from tests.conftest import ok_stdout, run_python


def test_models_still_work_when_tf_keras_is_keras3():
    # Project models are built with tf_keras directly, so they do not depend on tf.keras.
    out = ok_stdout(run_python(
        "import tensorflow as tf\n_ = tf.keras.Model\nimport numpy as np\n"
        "from advrobust import models\nm = models.build('cnn', seed=0)\n"
        "print(m(np.zeros((2, 28, 28, 1), 'float32')).shape)\n"))
    assert "(2, 10)" in out


def test_cnn_outputs_logits(cnn):
    logits = cnn(X, training=False).numpy()
    assert logits.shape == (4, 10) and logits.dtype == np.float32
    assert ends_in_linear_dense(cnn)
    # Not probabilities: rows do not sum to one and values leave [0, 1].
    assert not np.allclose(logits.sum(axis=1), 1.0) or (logits < 0).any()


def test_cnn_is_the_classic_architecture(cnn):
    kinds = [type(layer).__name__ for layer in cnn.layers[1:]]
    assert kinds == ["Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert cnn.count_params() == 1_199_882


def test_cnn_width_multiplies_the_channels_and_units():
    wide = models.build_cnn(dropout=False, width=2, seed=0)
    assert (wide.get_layer("conv1").filters, wide.get_layer("conv2").filters, wide.get_layer("dense").units) == (64, 128, 256)
    assert wide.count_params() == 4_795_914
    assert wide(X, training=False).shape == (4, 10)


@pytest.mark.parametrize("width", [0, -1, 1.5, True, "2"])
def test_cnn_width_must_be_an_int_of_at_least_one(width):
    with pytest.raises(ValueError, match="width must be an int >= 1"):
        models.build_cnn(width=width)
