"""Export trained reference CNNs and a test split for ``evaluate.py``, which needs no TensorFlow.

Why: a lent GPU machine may have PyTorch but no TensorFlow (the TF 2.21 wheel is far
larger than what can be carried there). The reference CNN (Conv32-Conv64-MaxPool-
Dense128-Dense10, no Dropout, at any ``width``) is small enough to rebuild exactly in PyTorch, so its
full-test-set strong evaluation can run there. ``evaluate.py`` first checks that its
rebuilt model gives the same logits as the TensorFlow model on every test image.

    python experiments/torch_crosscheck/export.py --dataset mnist --out DIR \\
        pgd-at-cnn=runs/goals_mnist/models/01-pgd-at-cnn/model.keras [NAME=PATH ...]

Writes ``DIR/data-DATASET.npz`` (``x``: uint8 (N, 28, 28) test images, ``y``: int64
(N,) labels) and ``DIR/model-NAME.npz`` per model: the weights under their layer names,
``tf_logits`` (float32 (N, 10), the TensorFlow model's logits on the whole test split),
``card`` (the model card as JSON text) and ``dataset``.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from advrobust import data, models
from advrobust.files import atomic_write_bytes

# The layers of models.build_cnn(dropout=False), in order, and the only ones accepted (any width:
# evaluate.py takes the channel counts from the weights).
REFERENCE_LAYERS = (("image", "InputLayer"), ("conv1", "Conv2D"), ("conv2", "Conv2D"), ("pool", "MaxPooling2D"),
                    ("flatten", "Flatten"), ("dense", "Dense"), ("logits", "Dense"))


def check_reference_cnn(model) -> None:
    """Raise ValueError unless ``model`` is the reference CNN that evaluate.py rebuilds."""
    found = tuple((layer.name, type(layer).__name__) for layer in model.layers)
    if found != REFERENCE_LAYERS:
        raise ValueError(f"not the reference CNN without Dropout: layers {found}, expected {REFERENCE_LAYERS}")
    for name in ("conv1", "conv2"):
        config = model.get_layer(name).get_config()
        if (config["padding"], tuple(config["strides"]), config["activation"]) != ("valid", (1, 1), "relu"):
            raise ValueError(f"layer {name} differs from the reference CNN: {config}")
    pool = model.get_layer("pool").get_config()
    if (tuple(pool["pool_size"]), tuple(pool["strides"]), pool["padding"]) != ((2, 2), (2, 2), "valid"):
        raise ValueError(f"layer pool differs from the reference CNN: {pool}")
    if model.get_layer("dense").get_config()["activation"] != "relu" or \
            model.get_layer("logits").get_config()["activation"] != "linear":
        raise ValueError("the dense layers' activations differ from the reference CNN (relu, then logits)")


def npz_bytes(**arrays) -> bytes:
    """The arrays as the bytes of a compressed .npz file."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=("mnist", "fashion_mnist"))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("models", nargs="+", metavar="NAME=PATH")
    args = parser.parse_args(argv)

    x, y = data.load(args.dataset, "test", download=False)
    args.out.mkdir(parents=True, exist_ok=True)
    pixels = np.rint(x[..., 0] * 255.0).astype(np.uint8)
    if not np.array_equal(pixels.astype(np.float32) / np.float32(255.0), x[..., 0]):
        raise AssertionError("the test images are not pixel / 255: uint8 export would change them")
    atomic_write_bytes(args.out / f"data-{args.dataset}.npz", npz_bytes(x=pixels, y=y))

    for spec in args.models:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise SystemExit(f"expected NAME=PATH, got {spec!r}")
        model = models.load(path)
        check_reference_cnn(model)
        card = models.load_card(path)
        if card.get("dataset") != args.dataset:
            raise SystemExit(f"model {name} was trained on {card.get('dataset')!r}, not {args.dataset!r}")
        logits = np.concatenate([model(x[i:i + 1000], training=False).numpy() for i in range(0, len(x), 1000)])
        weights = {f"{layer}.{kind}": model.get_layer(layer).get_weights()[index]
                   for layer in ("conv1", "conv2", "dense", "logits") for index, kind in enumerate(("kernel", "bias"))}
        atomic_write_bytes(args.out / f"model-{name}.npz",
                           npz_bytes(tf_logits=logits.astype(np.float32), card=np.array(json.dumps(card)),
                                     dataset=np.array(args.dataset), **weights))
        accuracy = float(np.mean(np.argmax(logits, 1) == y))
        print(f"{name}: exported, TensorFlow clean accuracy {accuracy:.4f} on {len(y)} test images")


if __name__ == "__main__":
    main()
