"""How the ``fast`` preset of ``attacks.ensemble`` was chosen: candidate budgets against
``standard``, on images the AutoAttack benchmark does not use.

Question: which cheap ensemble comes closest to ``worst_case(preset="standard")`` on an
adversarially trained CNN, at most a tenth of standard's forward + backward passes?

Setup: the ``pgd_at`` reference CNN of ``benchmarks/reference_models.py`` (Fashion-MNIST,
PGD adversarial training at L-inf 0.1), L-inf eps 0.1, Fashion-MNIST test images
``--start`` to ``--start + --n`` (default 1000-1999: ``benchmarks/autoattack.py`` measures
the chosen preset on the first 1000, so the choice is not fitted to that measurement).
``standard`` runs once; every candidate runs on the same images. For each: robust
accuracy, its gap to standard (points), the images standard broke that it did not, passes
per image and their share of standard's, seconds.

    python benchmarks/fast_preset.py [--start 1000] [--n 1000] [--out FILE.json]

Prints a table and writes JSON (default benchmarks/results/fast_preset.json).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

import advrobust  # noqa: F401  (Keras 2 before TensorFlow)
from advrobust import data
from advrobust.files import atomic_write_text
from attacks.ensemble import worst_case
from reference_models import DEFAULT_CACHE, reference_model  # benchmarks/ is the script's folder

EPS = 0.1
RESULTS = Path(__file__).resolve().parent / "results"


def _members(ce_steps: int, targets: int, t_steps: int, queries: int) -> tuple:
    return (("apgd-ce", "apgd", {"loss": "ce", "steps": ce_steps}),
            ("apgd-t", "apgd", {"loss": "dlr", "targeted": True, "target_classes": targets, "steps": t_steps}),
            ("square", "square", {"queries": queries}))


# name: members. ce20-t3x20-sq300 was the fast preset before this comparison; ce20-t3x50-sq300
# is the fast preset since (attacks/ensemble.py).
CANDIDATES = {
    "ce20-t3x20-sq300": _members(20, 3, 20, 300),
    "ce20-t3x50-sq300": _members(20, 3, 50, 300),
    "ce50-t3x50-sq300": _members(50, 3, 50, 300),
    "ce20-t9x20-sq300": _members(20, 9, 20, 300),
    "ce20-t5x50-sq300": _members(20, 5, 50, 300),
    "ce50-t5x50-sq100": _members(50, 5, 50, 100),
}


def measure(model: Any, x: np.ndarray, y: np.ndarray, members: Any) -> tuple[dict[str, Any], np.ndarray]:
    """One ensemble on the images: its figures and its (N,) robust verdicts."""
    extra = {"preset": "standard"} if members is None else {"attacks": members}
    result = worst_case(model, x, y, eps=EPS, seed=0, **extra)
    return ({"robust_accuracy": result.robust_accuracy, "seconds": result.seconds,
             "forward_passes": result.forward_passes, "backward_passes": result.backward_passes,
             "per_attack": [list(entry) for entry in result.per_attack]}, np.asarray(result.robust))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", type=int, default=1000, help="first test image (default 1000)")
    parser.add_argument("--n", type=int, default=1000, help="test images attacked (default 1000)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the reference models' folder")
    parser.add_argument("--out", type=Path, default=RESULTS / "fast_preset.json")
    args = parser.parse_args(argv)

    x, y = data.load("fashion_mnist", "test")
    x, y = x[args.start:args.start + args.n], y[args.start:args.start + args.n]
    model = reference_model("pgd_at", args.cache)
    standard, standard_robust = measure(model, x, y, None)
    standard_passes = standard["forward_passes"] + standard["backward_passes"]
    print(f"standard: {100 * standard['robust_accuracy']:.1f}% in {standard['seconds']:.1f} s", flush=True)
    rows = {"standard": standard}
    for name, members in CANDIDATES.items():
        row, robust = measure(model, x, y, members)
        passes = row["forward_passes"] + row["backward_passes"]
        row.update({"gap_points": 100 * (row["robust_accuracy"] - standard["robust_accuracy"]),
                    "missed_images": int(np.sum(robust & ~standard_robust)),
                    "share_of_standard_passes": passes / standard_passes, "members": [list(m) for m in members]})
        rows[name] = row
        print(f"{name}: {100 * row['robust_accuracy']:.1f}% ({row['gap_points']:+.1f} points, "
              f"{row['missed_images']} missed) for {100 * row['share_of_standard_passes']:.1f}% of the passes, "
              f"{row['seconds']:.1f} s", flush=True)

    print(f"\nFashion-MNIST test images {args.start}-{args.start + args.n - 1}, pgd_at CNN, L-inf eps {EPS}")
    print(f"{'ensemble':<18} {'robust acc':>10} {'gap':>6} {'missed':>6} {'passes/img':>10} {'share':>6} {'seconds':>8}")
    for name, row in rows.items():
        print(f"{name:<18} {100 * row['robust_accuracy']:>9.1f}% {row.get('gap_points', 0.0):>+6.1f} "
              f"{row.get('missed_images', 0):>6} {row['forward_passes'] + row['backward_passes']:>10.0f} "
              f"{100 * row.get('share_of_standard_passes', 1.0):>5.1f}% {row['seconds']:>8.1f}")
    report = {"question": "cheap ensembles against worst_case(preset='standard'), pgd_at reference CNN",
              "dataset": "fashion_mnist", "start": args.start, "n": args.n, "eps": EPS, "norm": "inf",
              "machine": platform.platform(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
