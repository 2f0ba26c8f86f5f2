"""Model builders (baseline CNN, VGG-19 transfer), safe save/load and model cards.

Every model maps a float32 batch (N, 28, 28, 1) in [0, 1] to **logits** (N, 10): no
softmax layer, because attacks and losses need logits. Models are Keras 2 (``tf_keras``)
functional models, so NSL can wrap them and they save in the native ``.keras`` format.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from advrobust.files import atomic_write_text, check_choice
from attacks._tensorflow import keras, tf

MODELS: tuple[str, ...] = ("cnn", "vgg19")
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


def build(name: str, **options: Any) -> keras.Model:
    """Build an uncompiled logits model by name: ``"cnn"`` or ``"vgg19"``.

    ``options`` go to :func:`build_cnn` or :func:`build_vgg19`. Returns a Keras 2
    functional model: input (N, 28, 28, 1) float32 in [0, 1], output logits (N, 10).
    """
    check_choice(name, MODELS, "model")
    return build_cnn(**options) if name == "cnn" else build_vgg19(**options)


def _init(seed: int | None, offset: int) -> keras.initializers.Initializer:
    """A fresh Glorot-uniform initializer per layer (one shared instance repeats values)."""
    return keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)


def check_width(width: Any) -> None:
    """Raise ValueError unless ``width`` (the CNN's channel multiplier) is an int >= 1."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an int >= 1 (the CNN's channel multiplier), got {width!r}")


def build_cnn(*, input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10,
              dropout: bool = True, width: int = 1, seed: int | None = None) -> keras.Model:
    """The baseline CNN of the classic Keras MNIST example, optionally ``width`` times wider.

    Conv(32w, 3x3, relu) - Conv(64w, 3x3, relu) - MaxPool(2) - [Dropout 0.25] - Flatten -
    Dense(128w, relu) - [Dropout 0.5] - Dense(num_classes) logits, with w = ``width``.
    ``width=1`` is the reference CNN (1.2 M parameters); ``width=2`` has 4.8 M and costs
    about 4x the compute per image, the capacity scaling of Madry et al. (2018).
    Raises ValueError for a width that is not an int >= 1.
    """
    check_width(width)
    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="image")
    h = layers.Conv2D(32 * width, 3, activation="relu", kernel_initializer=_init(seed, 0), name="conv1")(inputs)
    h = layers.Conv2D(64 * width, 3, activation="relu", kernel_initializer=_init(seed, 1), name="conv2")(h)
    h = layers.MaxPooling2D(2, name="pool")(h)
    if dropout:
        h = layers.Dropout(0.25, seed=seed, name="dropout1")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(128 * width, activation="relu", kernel_initializer=_init(seed, 2), name="dense")(h)
    if dropout:
        h = layers.Dropout(0.5, seed=seed, name="dropout2")(h)
    logits = layers.Dense(num_classes, kernel_initializer=_init(seed, 3), name="logits")(h)
    return keras.Model(inputs, logits, name="cnn")


def build_vgg19(*, mode: str = "frozen", weights: Weights = "imagenet", image_size: int = 32,
                trainable_blocks: int = 1, base_blocks: int = 5, head_units: int = 256,
                head_dropout: float = 0.5,
                input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10,
                seed: int | None = None) -> keras.Model:
    """VGG-19 transfer model: resize, gray to 3 channels, VGG-19 base, new dense head.

    The input (N, 28, 28, 1) in [0, 1] is resized to ``image_size`` (>= 32), replicated to
    three channels and shifted by the ImageNet means on the 0-255 scale (Keras's VGG
    preprocessing), all inside the model, so attacks see the [0, 1] image.

    ``base_blocks`` (1-5) keeps VGG-19's first convolution blocks up to that block's
    pooling layer (5: the whole convolutional base). Fewer blocks give more generic
    features: a base pretrained on MNIST transfers to Fashion-MNIST far better from
    block 3 than from block 5, whose 1x1 maps are digit-specific.

    ``mode="frozen"``: the convolutional base is a fixed feature extractor (no trainable
    convolution weights); only the head trains. ``mode="finetune"``: the last
    ``trainable_blocks`` of the kept blocks train too (use a low learning rate). ``weights``: ``"imagenet"`` (downloads; offline, a ValueError naming
    the alternatives), ``None`` (random), or a path to a Keras VGG-19 no-top ``.h5``
    weights file or to a saved advrobust VGG-19 ``.keras`` model whose base is transferred.
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
    h = layers.Dense(head_units, activation="relu", kernel_initializer=_init(seed, 0), name="head_dense")(h)
    h = layers.Dropout(head_dropout, seed=seed, name="head_dropout")(h)
    logits = layers.Dense(num_classes, kernel_initializer=_init(seed, 1), name="logits")(h)
    return keras.Model(inputs, logits, name=f"vgg19_{mode}")


def set_vgg_trainable(base: keras.Model, *, mode: str, trainable_blocks: int = 1) -> None:
    """Freeze the VGG-19 base (``frozen``) or unfreeze its last ``trainable_blocks`` blocks.

    Only convolution blocks that ``base`` holds count: for a base cut after block 3,
    ``trainable_blocks=1`` opens block 3.
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
    """The nested VGG-19 convolutional base of a model made by :func:`build_vgg19`."""
    try:
        return model.get_layer(VGG_BASE_NAME)
    except ValueError as error:
        raise ValueError(f"model {model.name!r} has no VGG-19 base (a layer named "
                         f"{VGG_BASE_NAME!r}); is it a VGG-19 model?") from error


def card_path(model_path: str | Path) -> Path:
    """Where the JSON model card of ``model_path`` lives: ``NAME.keras`` -> ``NAME.card.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".card.json")


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that determine a model's behaviour."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "tf_keras": keras.__version__, "numpy": np.__version__}
    for package in ("neural-structured-learning", "advrobust"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def save(model: keras.Model, path: str | Path, card: dict[str, Any]) -> Path:
    """Save ``model`` in the native ``.keras`` format and its JSON card beside it.

    ``card`` holds what the caller knows (dataset, architecture, defense, training
    config, seed, clean test accuracy); library versions and the parameter count are
    added. Both files are written atomically (temporary file, then rename), so a crash
    never leaves a half-written model. Returns the card's path.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model path must end in .keras, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    model.save(temporary)
    os.replace(temporary, path)
    full_card = {"format": "advrobust-model-card/1", "file": path.name,
                 "parameters": int(model.count_params()), **card,
                 "library_versions": library_versions()}
    card_file = card_path(path)
    atomic_write_text(card_file, json.dumps(full_card, indent=2, sort_keys=True, default=str) + "\n")
    return card_file


class ModelFileError(ValueError):
    """A model file that advrobust will not load: unsafe format, foreign code, or unreadable."""


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 allows a user block before the signature, at 0 or a power of two from 512.
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)
# Modules a safe .keras config may name: Keras 2 (tf_keras) and Keras's own aliases.
_SAFE_MODULE_PREFIXES = ("keras", "tf_keras")
_UNSAFE_HELP = ("Load it only if you trust its author: allow_unsafe=True in Python, --unsafe-load on "
                "the command line; or re-save it as .keras with model.save('model.keras') where it was made.")


def model_file_format(path: str | Path) -> str:
    """What ``path`` holds, judged by its bytes, never its name.

    Returns ``"keras"`` (the zip ``.keras`` format with ``config.json``), ``"h5"`` (an HDF5
    file), ``"saved_model"`` (a folder with ``saved_model.pb``) or ``"unknown"``.
    """
    path = Path(path)
    if path.is_dir():
        return "saved_model" if (path / "saved_model.pb").is_file() else "unknown"
    with open(path, "rb") as handle:
        for offset in _HDF5_OFFSETS:
            handle.seek(offset)
            if handle.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return "h5"
    try:
        with zipfile.ZipFile(path) as archive:
            return "keras" if "config.json" in archive.namelist() else "unknown"
    except (zipfile.BadZipFile, OSError):
        return "unknown"


def _foreign_references(node: Any, where: str = "config") -> list[str]:
    """Places in a ``.keras`` config that name code outside Keras or a Python lambda.

    Keras's safe mode refuses lambdas but imports any module a config names (a config
    naming ``os.system`` gets that function called during loading), so the config is
    checked before Keras sees it. Returns human-readable locations, empty when safe.
    """
    found = []
    if isinstance(node, dict):
        module, class_name = node.get("module"), node.get("class_name")
        if class_name == "__lambda__" or node.get("function_type") == "lambda":
            found.append(f"{where}: a Python lambda")
        elif isinstance(module, str) and module.split(".")[0] not in _SAFE_MODULE_PREFIXES:
            found.append(f"{where}: {module}.{class_name}")
        for key, value in node.items():
            found.extend(_foreign_references(value, f"{where}.{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_foreign_references(value, f"{where}[{index}]"))
    return found


def _read_keras_config(path: Path) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"model file {str(path)!r} is not a readable .keras file ({error}); "
                             "is it truncated or corrupt?") from error


def load(path: str | Path, *, allow_unsafe: bool = False) -> keras.Model:
    """Load a model saved in the zip ``.keras`` format, running no code from the file.

    The format is judged from the file's bytes, whatever it is named. A ``.keras`` file
    loads in Keras's safe mode after its config is checked to name only Keras classes (no
    Python lambdas, no other modules). H5 and SavedModel files can hold arbitrary code
    (Lambda-layer bytecode) and are refused unless ``allow_unsafe=True``, which loads any
    of the three formats with Keras's safe mode off: only for files you trust.

    Returns the uncompiled model. Raises FileNotFoundError if ``path`` does not exist and
    ModelFileError (a ValueError) naming the file, the reason and the opt-in for a refused,
    truncated or corrupt file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist.")
    file_format = model_file_format(path)
    if file_format == "unknown":
        raise ModelFileError(f"model file {str(path)!r} is neither a .keras (zip) model, an H5 file nor a "
                             "SavedModel folder; is it truncated or corrupt?")
    if file_format != "keras":
        if not allow_unsafe:
            raise ModelFileError(
                f"model file {str(path)!r} is in the {file_format.upper().replace('_', ' ')} format, which "
                f"can run arbitrary Python code while loading (Lambda layers); advrobust loads only the "
                f"zip .keras format by default. {_UNSAFE_HELP}")
        return _keras_load(path, safe_mode=False)
    if not allow_unsafe:
        foreign = _foreign_references(_read_keras_config(path))
        if foreign:
            raise ModelFileError(
                f"model file {str(path)!r} names code outside Keras ({'; '.join(foreign[:3])}"
                f"{'; ...' if len(foreign) > 3 else ''}), which would run while loading. {_UNSAFE_HELP}")
    return _keras_load(path, safe_mode=not allow_unsafe)


def _keras_load(path: Path, *, safe_mode: bool) -> keras.Model:
    """Keras's loader; a zip model not named ``.keras`` goes through a ``.keras`` link."""
    try:
        if path.is_file() and path.suffix != ".keras" and model_file_format(path) == "keras":
            with tempfile.TemporaryDirectory() as folder:
                link = Path(folder) / "model.keras"
                link.symlink_to(path.resolve())
                return keras.models.load_model(link, compile=False, safe_mode=safe_mode)
        return keras.models.load_model(path, compile=False, safe_mode=safe_mode)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"model file {str(path)!r} could not be read ({type(error).__name__}: "
                             f"{error}); is it truncated or corrupt?") from error


def load_card(path: str | Path) -> dict[str, Any]:
    """The JSON card beside the model at ``path`` (or the card file itself)."""
    path = Path(path)
    card_file = path if path.name.endswith(".card.json") else card_path(path)
    return json.loads(card_file.read_text(encoding="utf-8"))
