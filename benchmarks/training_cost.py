"""Training cost of the defenses against the cost their crafting steps imply.

Question (issue 24): what does an epoch of NSL adversarial regularization, PGD adversarial
training and TRADES cost, against (crafting steps + 2) x a plain epoch? A defended batch
does ``steps`` forward passes with an input gradient to craft, then a training step on
the adversarial batch (TRADES also runs the clean batch through the model), so (steps +
2) plain batches is about what the arithmetic asks for; a ratio above 1 is overhead.

Setup: the reference CNN (Conv32-Conv64-MaxPool-Dense128-Dense10, no Dropout) built fresh
for each method (seed 0), the first ``--n`` Fashion-MNIST training images (default
6400, 50 batches of 128), Adam 1e-3, each defense with its Fashion-MNIST preset (L-inf
eps 0.1, 7 steps). Each method trains ``--epochs`` epochs (default 2); the first traces
the graphs, the others are timed (the median counts).

Certified training (``--methods ibp crown_ibp``, not run by default) has no crafting steps:
its rows give the epoch's cost against the plain epoch (``ratio`` = epoch s / plain s).
They train inside the ramp (no warm-up, the ramp twice the epochs long), where
``crown_ibp`` pays for CROWN's backward bound at every step; the warm-up and the epochs
after the ramp cost what ``ibp``'s do.

    python benchmarks/training_cost.py [--n 6400] [--epochs 2] [--methods none nsl pgd_at trades ibp crown_ibp] [--out FILE.json]

Prints a table and writes JSON (default benchmarks/results/training_cost.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import advrobust  # noqa: F401  (Keras 2 before TensorFlow)
import defenses
from advrobust import data, models
from advrobust.files import atomic_write_text
from advrobust.training import set_seed
from attacks.backend import keras, tf

BATCH = 128
METHODS = ("none", "nsl", "pgd_at", "trades")
CERTIFIED = ("ibp", "crown_ibp")


class _EpochTimes(keras.callbacks.Callback):
    """Wall-clock seconds of every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):  # noqa: D102
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):  # noqa: D102
        self.seconds.append(time.perf_counter() - self._started)


def crafting_steps(config) -> int:
    """The crafting steps per batch of a defense config (0 without a defense or for certified training)."""
    if config is None or getattr(config, "method", None) in CERTIFIED:
        return 0
    return int(getattr(config, "pgd_iterations", None) or getattr(config, "steps"))


def epoch_seconds(method: str, x, y, epochs: int) -> tuple[float, int]:
    """(median seconds of the epochs after the first, crafting steps) of one method."""
    set_seed(0)
    model = models.build("cnn", dropout=False)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    timer = _EpochTimes()
    params = {"warmup_epochs": 0.0, "ramp_epochs": 2.0 * epochs} if method in CERTIFIED else None
    config = defenses.resolve(method, dataset="fashion_mnist", params=params)
    if config is None:
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(train, epochs=epochs, callbacks=[timer], verbose=0)
    else:
        defenses.fit(config, model, train, epochs=epochs, callbacks=[timer], verbose=0)
    return statistics.median(timer.seconds[1:]), crafting_steps(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--n", type=int, default=6400, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per method (the first is not timed)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + CERTIFIED)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "training_cost.json"))
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch traces and is not timed")

    x, y = data.load("fashion_mnist", "train")
    x, y = x[:args.n], y[:args.n]
    measured = {method: epoch_seconds(method, x, y, args.epochs) for method in ("none", *args.methods)}
    plain = measured["none"][0]
    rows = []
    for method in args.methods:
        seconds, steps = measured[method]
        expected = (steps + 2) * plain if steps else plain
        rows.append({"method": method, "steps": steps, "epoch_seconds": round(seconds, 2),
                     "expected_seconds": round(expected, 2), "ratio": round(seconds / expected, 3)})

    print(f"Training cost per epoch of {args.n} Fashion-MNIST images (batch {BATCH}), reference CNN, "
          f"{os.cpu_count()} CPU cores; expected = (steps + 2) x plain epoch (ibp, crown_ibp: the plain epoch)")
    print(f"{'method':<10} {'steps':>5} {'epoch s':>8} {'expected s':>11} {'ratio':>6}")
    for row in rows:
        print(f"{row['method']:<10} {row['steps']:>5} {row['epoch_seconds']:>8.2f} {row['expected_seconds']:>11.2f} "
              f"{row['ratio']:>6.2f}")
    report = {"benchmark": "training_cost", "n": args.n, "batch": BATCH, "epochs": args.epochs,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__},
              "rows": rows}
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
