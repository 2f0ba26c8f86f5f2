"""The baseline CNN: the classic Keras MNIST network, optionally wider."""

from __future__ import annotations

from advrobust.validation import check_width
from attacks.backend import keras

def glorot_init(seed: int | None, offset: int) -> keras.initializers.Initializer:
    """Make a fresh Glorot-uniform initializer for one layer (one shared instance repeats values).

    Args:
        seed: The model's seed, or None for an unseeded initializer.
        offset: The layer's index, added to ``seed`` so that layers differ.

    Returns:
        A ``keras.initializers.GlorotUniform`` seeded with ``seed + offset`` (or unseeded).
    """
    return keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)


def build_cnn(*, input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10,
              dropout: bool = True, width: int = 1, seed: int | None = None) -> keras.Model:
    """Build the baseline CNN of the classic Keras MNIST example, optionally wider.

    Conv(32w, 3x3, relu) - Conv(64w, 3x3, relu) - MaxPool(2) - [Dropout 0.25] - Flatten -
    Dense(128w, relu) - [Dropout 0.5] - Dense(num_classes) logits, with w = ``width``.
    ``width=1`` is the reference CNN (1.2 M parameters); ``width=2`` has 4.8 M and costs
    about 4x the compute per image, the capacity scaling of Madry et al. (2018).

    Args:
        input_shape: The shape of one image (H, W, C).
        num_classes: The number of logits.
        dropout: Include the two Dropout layers.
        width: The channel multiplier w, an int >= 1.
        seed: Seeds the initializers and the dropout masks; None: random.

    Returns:
        An uncompiled Keras 2 functional model named ``"cnn"``, input ``"image"`` (N, H, W, C)
        to logits (N, num_classes).

    Raises:
        ValueError: ``width`` is not an int >= 1.
    """
    check_width(width)
    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="image")
    h = layers.Conv2D(32 * width, 3, activation="relu", kernel_initializer=glorot_init(seed, 0), name="conv1")(inputs)
    h = layers.Conv2D(64 * width, 3, activation="relu", kernel_initializer=glorot_init(seed, 1), name="conv2")(h)
    h = layers.MaxPooling2D(2, name="pool")(h)
    if dropout:
        h = layers.Dropout(0.25, seed=seed, name="dropout1")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(128 * width, activation="relu", kernel_initializer=glorot_init(seed, 2), name="dense")(h)
    if dropout:
        h = layers.Dropout(0.5, seed=seed, name="dropout2")(h)
    logits = layers.Dense(num_classes, kernel_initializer=glorot_init(seed, 3), name="logits")(h)
    return keras.Model(inputs, logits, name="cnn")
