"""Randomized smoothing's certified accuracy against the L2 radius (issue 25's experiment).

Certifies the first ``--n`` test images with :func:`advrobust.certify.smoothing` (Cohen et
al. 2019 CERTIFY: ``--n0`` samples pick the class, ``--samples`` bound its probability at
level 1 - ``--alpha``) and prints the certified accuracy at each radius with its 95%
Wilson interval. The base model is one trained with Gaussian noise of the same sigma::

    advrobust train --dataset mnist --defense gaussian --sigma 0.25 --epochs 10 --out runs/mnist/gaussian-0.25
    python experiments/smoothing.py --model runs/mnist/gaussian-0.25/model.keras --sigma 0.25 \\
        --out runs/mnist/gaussian-0.25/smoothing.json

Chunks of ``--chunk`` images are written to ``--out`` (atomically) as they finish; started
again with the same settings, it goes on after the last finished chunk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from advrobust import certify, data, models
from advrobust.evaluation.stats import wilson_interval
from advrobust.files import atomic_write_text


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--model", required=True, help="the base classifier (.keras, logits), trained with noise")
    parser.add_argument("--sigma", type=float, required=True, help="the noise's standard deviation")
    parser.add_argument("--dataset", default="mnist", choices=data.DATASETS)
    parser.add_argument("--n", type=int, default=1000, help="the first N test images")
    parser.add_argument("--n0", type=int, default=100, help="samples that choose the class")
    parser.add_argument("--samples", type=int, default=10000, help="samples that bound its probability")
    parser.add_argument("--alpha", type=float, default=0.001, help="the probability that a certificate is wrong")
    parser.add_argument("--radii", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--chunk", type=int, default=50, help="images per saved chunk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", required=True, help="the JSON file of the results (resumed if it exists)")
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> dict:
    """What decides the results: a stored file with other settings is not resumed."""
    return {"model_sha256": hashlib.sha256(Path(args.model).read_bytes()).hexdigest(), "sigma": args.sigma, "dataset": args.dataset, "n": args.n, "n0": args.n0, "samples": args.samples,
            "alpha": args.alpha, "chunk": args.chunk, "seed": args.seed}


def certified_table(prediction: np.ndarray, radius: np.ndarray, y: np.ndarray, radii: list[float]) -> list[dict]:
    """Certified accuracy at each radius, with its 95% Wilson interval.

    Args:
        prediction: (N,) the smoothed classifier's classes (-1: abstained).
        radius: (N,) the certified L2 radii.
        y: (N,) the labels.
        radii: The radii to report.

    Returns:
        One ``{"radius", "certified_accuracy", "ci95_low", "ci95_high"}`` per radius.
    """
    rows = []
    for r in radii:
        count = int(np.sum((prediction == y) & (radius >= r)))
        low, high = wilson_interval(np.array([count]), len(y))
        rows.append({"radius": r, "certified_accuracy": count / len(y), "ci95_low": float(low[0]),
                     "ci95_high": float(high[0])})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Certify, resume, print the table.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status, 0.
    """
    args = parse(argv)
    out = Path(args.out)
    model = models.load(args.model)
    x, y = data.load(args.dataset, "test", args.data_dir)
    x, y = x[:args.n], y[:args.n]
    settings = settings_of(args)
    done = json.loads(out.read_text()) if out.is_file() else {}
    if done.get("settings") != settings:
        done = {"settings": settings, "prediction": [], "radius": [], "seconds": 0.0}

    with tqdm(total=len(x), initial=len(done["prediction"]), unit="img", desc=f"smoothing sigma {args.sigma}") as bar:
        for start in range(len(done["prediction"]), len(x), args.chunk):
            started = time.perf_counter()
            result = certify.smoothing(model, x[start:start + args.chunk], y[start:start + args.chunk],
                                       sigma=args.sigma, n0=args.n0, n=args.samples, alpha=args.alpha,
                                       seed=args.seed + start // args.chunk)
            done["prediction"] += result.prediction.tolist()
            done["radius"] += result.radius.tolist()
            done["seconds"] += time.perf_counter() - started
            atomic_write_text(out, json.dumps(done) + "\n")
            bar.update(len(result.prediction))
    table = certified_table(np.array(done["prediction"]), np.array(done["radius"]), y, args.radii)
    done["certified"] = table
    atomic_write_text(out, json.dumps(done) + "\n")
    print(f"{args.dataset}, sigma {args.sigma}, first {len(y)} test images, n0 {args.n0}, n {args.samples}, "
          f"alpha {args.alpha}: {done['seconds']:.0f} s")
    for row in table:
        print(f"  L2 radius {row['radius']:<5g} certified accuracy {row['certified_accuracy']:.3f} "
              f"[{row['ci95_low']:.3f}, {row['ci95_high']:.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
