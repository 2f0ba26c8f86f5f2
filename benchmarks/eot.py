"""Expectation over transformation (EOT) for the ``rand`` ensemble: the mean of the draws'
logits, or the mean of their losses and gradients?

Question (issue 22): on a randomized model, which form of EOT makes the ``rand`` preset's
members (APGD-CE, then APGD-DLR on the points left, 100 steps, 20 draws) find more
adversarial points: the ensemble's ``eot`` (the attack sees the model ``mean over draws of
model(x)``, so its loss is that of the mean logits) or APGD's ``eot_iter`` (AutoAttack's
own: every loss and gradient is the mean of the draws')?

Setup: the reference CNN (Conv32-Conv64-MaxPool-Dense128-Dense10, no Dropout) trained for
two epochs on the first 6000 MNIST training images (seed 0), made random by uniform input
noise of +-0.5 (clipped to [0, 1]) drawn afresh at every call from a generator seeded 0
before each row; the first ``--n`` MNIST test images at L-inf ``--eps``. A point counts as
broken when one forward pass of the noisy model misclassifies the member's point (the
ensemble's verdict), so the figures themselves are random: a few points either way are
noise. The unmasked row attacks the CNN without noise with APGD-CE (100 steps).

    python benchmarks/eot.py [--n 200] [--eps 0.15] [--out FILE.json]

Prints a table and writes JSON (default benchmarks/results/eot.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import advrobust  # noqa: F401  (Keras 2 before TensorFlow)
from advrobust import data, models, training
from advrobust.files import atomic_write_text
from attacks.backend import tf
from attacks.ensemble import worst_case

DRAWS, STEPS, NOISE = 20, 100, 0.5


def noisy_model(model, seed: int = 0):
    """``model`` with uniform input noise in [-NOISE, NOISE], clipped to [0, 1], drawn at every call."""
    draws = tf.random.Generator.from_seed(seed)

    def noisy(batch):
        return model(tf.clip_by_value(batch + draws.uniform(tf.shape(batch), -NOISE, NOISE), 0.0, 1.0),
                     training=False)
    return noisy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="test images attacked")
    parser.add_argument("--eps", type=float, default=0.15, help="the L-inf radius")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "eot.json"))
    args = parser.parse_args()

    training.set_seed(0)
    x_train, y_train = data.load("mnist", "train")
    x, y = data.load("mnist", "test")
    x, y = x[:args.n], y[:args.n]
    model = models.build("cnn", dropout=False, seed=0)
    training.fit(model, data.make_dataset(x_train[:6000], y_train[:6000], batch_size=64, shuffle=True, seed=0),
                 None, epochs=2, verbose=0)

    rows = []
    unmasked = worst_case(model, x, y, eps=args.eps, attacks=[("apgd-ce", "apgd", {"loss": "ce", "steps": STEPS})],
                          seed=0)
    rows.append({"row": "unmasked CNN, APGD-CE", "robust_accuracy": unmasked.robust_accuracy,
                 "per_attack": dict(unmasked.per_attack), "seconds": unmasked.seconds})
    for label, key in (("rand, mean logits (eot)", "eot"), ("rand, mean losses and gradients (eot_iter)", "eot_iter")):
        members = [(f"apgd-{loss}", "apgd", {"loss": loss, "steps": STEPS, key: DRAWS}) for loss in ("ce", "dlr")]
        result = worst_case(noisy_model(model), x, y, eps=args.eps, attacks=members, seed=0)
        rows.append({"row": label, "robust_accuracy": result.robust_accuracy,
                     "per_attack": dict(result.per_attack), "seconds": result.seconds})
        print(f"  measured {label}", flush=True)

    header = f"{'row':44s} {'after APGD-CE':>14s} {'robust accuracy':>16s} {'seconds':>8s}"
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        print(f"{row['row']:44s} {row['per_attack']['apgd-ce']:14.3f} {row['robust_accuracy']:16.3f} "
              f"{row['seconds']:8.1f}")
    result = {"benchmark": "eot",
              "setup": {"model": "reference CNN, 2 epochs on 6000 MNIST training images, seed 0",
                        "noise": f"uniform +-{NOISE}, clipped to [0, 1], per call", "n": args.n, "eps": args.eps,
                        "norm": "inf", "steps": STEPS, "draws": DRAWS, "seed": 0},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__},
              "rows": rows}
    print(f"\nwrote {atomic_write_text(args.out, json.dumps(result, indent=2) + chr(10))}")


if __name__ == "__main__":
    main()
