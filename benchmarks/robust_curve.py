"""A whole robust-accuracy curve: advrobust's evaluation against the same curve from ART.

Question (issue 24): how long does a user wait for a robust-accuracy curve, FGSM and PGD-40
over 7 epsilons with the per-example worst case, through ``advrobust.evaluation.evaluate``,
compared with the same curve computed with the Adversarial Robustness Toolbox (1.20.1),
on an undefended and a PGD-adversarially-trained reference CNN, and do the curves agree?

Setup: the reference CNNs of ``benchmarks/reference_models.py`` (Fashion-MNIST), the
first N (default 500) Fashion-MNIST test images, L-inf epsilons 0.0 ... 0.3. PGD-40 in
both: random start, step 2.5 eps / 40 (advrobust's default; ART gets the same
``eps_step``), one restart, seed 0. ART attacks every example at every eps (FGSM, then
PGD) in batches of 500; advrobust skips what cannot change the answer (examples
misclassified clean, eps 0, examples an attack has already fooled: its default in the
harness). An example counts as robust at eps when it is classified correctly clean and
after both attacks, in both. The two columns of the table are timed in the same run,
ART after advrobust, each after a warm-up on 50 images (tracing).

    python benchmarks/robust_curve.py [--n 500] [--models undefended pgd_at] [--cache DIR] [--out FILE.json]

Prints a table and writes JSON (default benchmarks/results/robust_curve.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

import advrobust  # noqa: F401  (Keras 2 before TensorFlow)
from advrobust import data, evaluation
from advrobust.files import atomic_write_text
from attacks.backend import tf
from reference_models import CONFIGS, DEFAULT_CACHE, reference_model

EPSILONS = (0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3)
STEPS = 40
REL_STEP = 2.5  # advrobust's default: step = 2.5 eps / steps
BATCH = 500


def advrobust_curve(model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Worst-case robust accuracy over FGSM and PGD-40 at each of ``EPSILONS``, (K,)."""
    result = evaluation.evaluate({"model": model}, x, y, attacks=["fgsm", ("pgd", {"steps": STEPS, "seed": 0})],
                                 epsilons=EPSILONS, batch_size=BATCH, progress=False)
    return result["model"].worst_case.robust_accuracy


def art_curve(model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The same curve with ART's FastGradientMethod and ProjectedGradientDescent, (K,)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PyTorch not found", category=UserWarning)
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
        from art.estimators.classification import TensorFlowV2Classifier
    classifier = TensorFlowV2Classifier(model=model, nb_classes=10, input_shape=x.shape[1:],
                                        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                        clip_values=(0.0, 1.0))
    clean = np.argmax(classifier.predict(x, batch_size=BATCH), axis=1) == y
    curve = []
    for eps in EPSILONS:
        robust = clean.copy()
        if eps > 0:
            attacks = (FastGradientMethod(classifier, norm=np.inf, eps=eps, batch_size=BATCH),
                       ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=REL_STEP * eps / STEPS,
                                                max_iter=STEPS, num_random_init=1, batch_size=BATCH, verbose=False))
            for attack in attacks:
                adversarial = attack.generate(x, y=y)
                robust &= np.argmax(classifier.predict(adversarial, batch_size=BATCH), axis=1) == y
        curve.append(robust.mean())
    return np.array(curve)


def timed(function, *args) -> tuple[float, np.ndarray]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--n", type=int, default=500, help="test images attacked")
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="folder of the trained reference models")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "robust_curve.json"))
    args = parser.parse_args()

    x, y = data.load("fashion_mnist", "test")
    x, y = x[:args.n], y[:args.n]
    rows = []
    for name in args.models:
        model = reference_model(name, args.cache)
        for warm_up in (advrobust_curve, art_curve):
            warm_up(model, x[:50], y[:50])
        ours_seconds, ours = timed(advrobust_curve, model, x, y)
        art_seconds, theirs = timed(art_curve, model, x, y)
        rows.append({"model": name, "advrobust_seconds": round(ours_seconds, 2), "art_seconds": round(art_seconds, 2),
                     "speedup": round(art_seconds / ours_seconds, 2), "advrobust_curve": ours.round(4).tolist(),
                     "art_curve": theirs.round(4).tolist(),
                     "largest_excess": round(float(np.max(ours - theirs)), 4)})

    print(f"Robust curve, FGSM + PGD-{STEPS} worst case over {len(EPSILONS)} epsilons, {args.n} Fashion-MNIST "
          f"test images, {os.cpu_count()} CPU cores")
    print(f"{'model':<12} {'advrobust s':>12} {'ART s':>9} {'speed-up':>9} {'max(ours - ART)':>16}")
    for row in rows:
        print(f"{row['model']:<12} {row['advrobust_seconds']:>12.1f} {row['art_seconds']:>9.1f} "
              f"{row['speedup']:>8.1f}x {row['largest_excess']:>+16.3f}")
    for row in rows:
        print(f"{row['model']}: eps {list(EPSILONS)}\n  advrobust {row['advrobust_curve']}\n  ART       {row['art_curve']}")
    report = {"benchmark": "robust_curve", "n": args.n, "epsilons": list(EPSILONS), "steps": STEPS,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "tensorflow": tf.__version__}, "rows": rows}
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
