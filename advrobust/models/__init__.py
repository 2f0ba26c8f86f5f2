"""Model builders (baseline CNN, VGG-19 transfer), safe save/load and model cards.

Every model maps a float32 batch (N, 28, 28, 1) in [0, 1] to **logits** (N, 10): no
softmax layer, because attacks and losses need logits. Models are Keras 2 (``tf_keras``)
functional models, so NSL can wrap them and they save in the native ``.keras`` format.
"""

from __future__ import annotations

from typing import Any

from advrobust.models.cnn import build_cnn
from advrobust.models.files import (ModelFileError, card_path, library_versions, load, load_card,
                                    model_file_format, save)
from advrobust.models.vgg19 import (VGG_BASE_NAME, VGG_MIN_IMAGE_SIZE, VGG_MODES, Weights, build_vgg19,
                                    set_vgg_trainable, vgg_base)
from advrobust.validation import check_choice, check_width
from attacks.backend import keras

MODELS: tuple[str, ...] = ("cnn", "vgg19")

__all__ = ["MODELS", "VGG_MODES", "VGG_BASE_NAME", "VGG_MIN_IMAGE_SIZE", "Weights", "ModelFileError", "build",
           "build_cnn", "build_vgg19", "check_width", "set_vgg_trainable", "vgg_base", "save", "load",
           "load_card", "card_path", "library_versions", "model_file_format"]


def build(name: str, **options: Any) -> keras.Model:
    """Build an uncompiled logits model by name.

    Args:
        name: ``"cnn"`` or ``"vgg19"``.
        **options: Keyword arguments of :func:`build_cnn` or :func:`build_vgg19`.

    Returns:
        A Keras 2 functional model: input (N, 28, 28, 1) float32 in [0, 1], output logits
        (N, 10) (or ``num_classes``).

    Raises:
        ValueError: An unknown name, or a bad option value (see the builder).
        TypeError: An option the builder does not take.
    """
    check_choice(name, MODELS, "model")
    return build_cnn(**options) if name == "cnn" else build_vgg19(**options)
