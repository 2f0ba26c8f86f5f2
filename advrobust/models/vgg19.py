"""VGG-19 transfer model: resize, gray to RGB, ImageNet preprocessing, VGG-19 base, new head."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from advrobust.models.cnn import glorot_init
from advrobust.validation import check_choice
from attacks.backend import keras

VGG_MODES: tuple[str, ...] = ("frozen", "finetune")
VGG_BASE_NAME = "vgg19"
VGG_MIN_IMAGE_SIZE = 32  # VGG-19's five 2x2 poolings need at least 32 pixels
# ImageNet channel means of Keras's "caffe" preprocessing for VGG, on the 0-255 scale.
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
_IMAGENET_HELP = (
    "weights='imagenet' needs to download VGG-19's ImageNet weights from the internet, "
    "which failed here ({error}). Alternatives: weights=None (random initialisation); a "
    "local weights file (PATH to vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, or to a "
    "saved advrobust VGG-19 .keras model whose convolutional base is transferred); or, from "
    "the CLI, --weights pretrained-run (pretrain VGG-19 on the other dataset first, then "
    "transfer). Keras also reads the file from ~/.keras/models/ if you copy it there."
)

Weights = Literal["imagenet"] | None | str | os.PathLike


def build_vgg19(*, mode: str = "frozen", weights: Weights = "imagenet", image_size: int = 32,
                trainable_blocks: int = 1, base_blocks: int = 5, head_units: int = 256,
                head_dropout: float = 0.5,
                input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10,
                seed: int | None = None) -> keras.Model:
    """Build the VGG-19 transfer model: resize, gray to 3 channels, VGG-19 base, new dense head.

    The input (N, 28, 28, 1) in [0, 1] is resized to ``image_size``, replicated to three
    channels and shifted by the ImageNet means on the 0-255 scale (Keras's VGG
    preprocessing), all inside the model, so attacks see the [0, 1] image.

    Fewer base blocks give more generic features: a base pretrained on MNIST transfers to
    Fashion-MNIST far better from block 3 than from block 5, whose 1x1 maps are
    digit-specific.

    Args:
        mode: ``"frozen"``: the convolutional base is a fixed feature extractor (no trainable
            convolution weights); only the head trains. ``"finetune"``: the last
            ``trainable_blocks`` of the kept blocks train too (use a low learning rate).
        weights: ``"imagenet"`` (downloads), None (random), or a path to a Keras VGG-19
            no-top ``.h5`` weights file or to a saved advrobust VGG-19 ``.keras`` model whose
            base is transferred.
        image_size: The side the input is resized to, >= 32.
        trainable_blocks: Blocks trained in ``"finetune"`` mode, in 0..base_blocks.
        base_blocks: Keep VGG-19's convolution blocks up to this block's pooling layer, 1-5
            (5: the whole convolutional base).
        head_units: Units of the head's hidden Dense layer.
        head_dropout: The head's dropout rate.
        input_shape: The shape of one image (H, W, C); C = 1 is replicated to RGB.
        num_classes: The number of logits.
        seed: Seeds the head's initializers and dropout; None: random.

    Returns:
        An uncompiled Keras 2 functional model named ``"vgg19_<mode>"``, input ``"image"``
        (N, H, W, C) in [0, 1] to logits (N, num_classes); its base is the layer
        ``"vgg19"``.

    Raises:
        ValueError: An unknown mode, ``image_size`` < 32, ``base_blocks`` outside 1..5,
            ``trainable_blocks`` outside 0..base_blocks, a failed ImageNet download (the
            message names the alternatives), a weights file that is neither ``.h5`` nor
            ``.keras``, or a ``.keras`` source without the blocks needed.
        FileNotFoundError: The weights file does not exist.
        ModelFileError: A ``.keras`` weights source that :func:`advrobust.models.load`
            refuses.
    """
    check_choice(mode, VGG_MODES, "VGG-19 mode")
    if image_size < VGG_MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {VGG_MIN_IMAGE_SIZE} for VGG-19, got {image_size}")
    if not 1 <= base_blocks <= 5:
        raise ValueError(f"base_blocks must be in 1..5, got {base_blocks}")
    if not 0 <= trainable_blocks <= base_blocks:
        raise ValueError(f"trainable_blocks must be in 0..base_blocks ({base_blocks}), got {trainable_blocks}")
    base = _vgg19_base(weights, image_size, base_blocks)
    set_vgg_trainable(base, mode=mode, trainable_blocks=trainable_blocks)

    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="image")
    h = layers.Resizing(image_size, image_size, name="resize")(inputs)
    if input_shape[-1] == 1:
        h = layers.Concatenate(name="gray_to_rgb")([h, h, h])
    mean = [value / 255.0 for value in _IMAGENET_BGR_MEAN]
    h = layers.Normalization(mean=mean, variance=[(1 / 255.0) ** 2] * 3, name="vgg_preprocess")(h)
    h = base(h, training=False)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(head_units, activation="relu", kernel_initializer=glorot_init(seed, 0), name="head_dense")(h)
    h = layers.Dropout(head_dropout, seed=seed, name="head_dropout")(h)
    logits = layers.Dense(num_classes, kernel_initializer=glorot_init(seed, 1), name="logits")(h)
    return keras.Model(inputs, logits, name=f"vgg19_{mode}")


def set_vgg_trainable(base: keras.Model, *, mode: str, trainable_blocks: int = 1) -> None:
    """Freeze the VGG-19 base (``frozen``) or unfreeze its last ``trainable_blocks`` blocks.

    Only convolution blocks that ``base`` holds count: for a base cut after block 3,
    ``trainable_blocks=1`` opens block 3.

    Args:
        base: The VGG-19 convolutional base (see :func:`vgg_base`); changed in place.
        mode: ``"frozen"`` or ``"finetune"``.
        trainable_blocks: In ``"finetune"`` mode, how many of the last blocks train.

    Raises:
        ValueError: An unknown mode.
    """
    check_choice(mode, VGG_MODES, "VGG-19 mode")
    if mode == "frozen":
        base.trainable = False
        return
    base.trainable = True
    last = max(int(layer.name[5]) for layer in base.layers if layer.name.startswith("block"))
    open_blocks = {f"block{index}_" for index in range(last - trainable_blocks + 1, last + 1)}
    for layer in base.layers:
        layer.trainable = any(layer.name.startswith(prefix) for prefix in open_blocks)


def _vgg19_base(weights: Weights, image_size: int, base_blocks: int = 5) -> keras.Model:
    """VGG-19's convolutional base with ``weights``, cut after block ``base_blocks``."""
    shape = (image_size, image_size, 3)
    if weights == "imagenet":
        try:
            full = keras.applications.VGG19(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as error:  # urllib / HTTP errors differ by platform
            raise ValueError(_IMAGENET_HELP.format(error=f"{type(error).__name__}: {error}")) from error
    else:
        full = keras.applications.VGG19(include_top=False, weights=None, input_shape=shape)
    if weights not in (None, "imagenet"):
        _load_base_weights(full, Path(weights), base_blocks)
    if base_blocks == 5:
        return full
    return keras.Model(full.input, full.get_layer(f"block{base_blocks}_pool").output, name=VGG_BASE_NAME)


def _load_base_weights(full: keras.Model, path: Path, base_blocks: int) -> None:
    """Copy weights from a .h5 no-top file or a saved VGG-19 .keras model into ``full``."""
    if not path.is_file():
        raise FileNotFoundError(f"VGG-19 weights file {str(path)!r} does not exist.")
    if path.suffix in (".h5", ".hdf5"):
        full.load_weights(str(path))
        return
    if path.suffix != ".keras":
        raise ValueError(f"VGG-19 weights {str(path)!r}: expected a .keras model or a .h5 weights file")
    from advrobust.models.files import load

    source = vgg_base(load(path))
    available = {layer.name: layer for layer in source.layers if layer.weights}
    needed = [layer for layer in full.layers if layer.weights and int(layer.name[5]) <= base_blocks]
    missing = [layer.name for layer in needed if layer.name not in available]
    if missing:
        raise ValueError(f"{path} has a VGG-19 base without {', '.join(missing)}; it cannot provide "
                         f"{base_blocks} blocks. Use base_blocks <= the source's.")
    for layer in needed:
        layer.set_weights(available[layer.name].get_weights())


def vgg_base(model: keras.Model) -> keras.Model:
    """Find the nested VGG-19 convolutional base of a model made by :func:`build_vgg19`.

    Args:
        model: A VGG-19 transfer model.

    Returns:
        The base, the layer named ``VGG_BASE_NAME`` (a Keras model).

    Raises:
        ValueError: ``model`` has no such layer.
    """
    try:
        return model.get_layer(VGG_BASE_NAME)
    except ValueError as error:
        raise ValueError(f"model {model.name!r} has no VGG-19 base (a layer named "
                         f"{VGG_BASE_NAME!r}); is it a VGG-19 model?") from error
