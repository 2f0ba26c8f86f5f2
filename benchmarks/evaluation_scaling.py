"""Evaluation time and peak memory against the number of test images N.

Question (issue 24): does evaluation stay flat in memory as N grows, and linear in time?
Each N runs in a fresh Python process (so peak RSS is that evaluation's own): it loads
the undefended reference CNN of ``benchmarks/reference_models.py``, takes the first N
Fashion-MNIST test images and computes the FGSM + PGD-``--steps`` robust curve over 7
L-inf epsilons through ``advrobust.evaluation.evaluate`` (chunks of 500). Reported: the
evaluation's seconds, the peak resident set size of the process (``ru_maxrss``), and
the resident size just before the evaluation (TensorFlow, the model and the data
loaded), so the growth due to the evaluation itself shows.

    python benchmarks/evaluation_scaling.py [--sizes 1000 2000 5000 10000] [--steps 10] [--out FILE.json]

Prints a table and writes JSON (default benchmarks/results/evaluation_scaling.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EPSILONS = (0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3)
CHILD = """
import json, resource, sys, time
sys.path.insert(0, {here!r})
import advrobust
from advrobust import data, evaluation
from reference_models import reference_model

def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

model = reference_model("undefended", {cache!r})
x, y = data.load("fashion_mnist", "test")
x, y = x[:{n}], y[:{n}]
evaluation.evaluate({{"m": model}}, x[:50], y[:50], attacks=["fgsm", ("pgd", {{"steps": {steps}}})],
                    epsilons={epsilons!r}, progress=False)  # tracing, outside the timing
before = rss_mib()
started = time.perf_counter()
result = evaluation.evaluate({{"m": model}}, x, y, attacks=["fgsm", ("pgd", {{"steps": {steps}, "seed": 0}})],
                             epsilons={epsilons!r}, progress=False)
seconds = time.perf_counter() - started
print(json.dumps({{"n": {n}, "seconds": seconds, "rss_before_mib": before,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worst_case": result["m"].worst_case.robust_accuracy.tolist()}}))
"""


def measure(n: int, steps: int, cache: str) -> dict:
    """One evaluation of N images in a fresh process: its JSON line, parsed."""
    code = CHILD.format(here=str(HERE), cache=cache, n=n, steps=steps, epsilons=EPSILONS)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, str(HERE))
    from reference_models import DEFAULT_CACHE, reference_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    parser.add_argument("--steps", type=int, default=10, help="PGD steps")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="folder of the trained reference models")
    parser.add_argument("--out", default=str(HERE / "results" / "evaluation_scaling.json"))
    args = parser.parse_args()

    reference_model("undefended", args.cache)  # trained here once, not inside a timed child
    rows = [measure(n, args.steps, args.cache) for n in args.sizes]
    first = rows[0]
    print(f"Evaluation scaling: FGSM + PGD-{args.steps} over {len(EPSILONS)} epsilons, undefended reference CNN, "
          f"Fashion-MNIST, {os.cpu_count()} CPU cores")
    print(f"{'N':>6} {'seconds':>8} {'s / 1k img':>10} {'RSS before MiB':>15} {'peak RSS MiB':>13} {'peak / N=' + str(first['n']):>12}")
    for row in rows:
        row["peak_ratio"] = row["peak_rss_mib"] / first["peak_rss_mib"]
        print(f"{row['n']:>6} {row['seconds']:>8.1f} {1000 * row['seconds'] / row['n']:>10.2f} "
              f"{row['rss_before_mib']:>15.0f} {row['peak_rss_mib']:>13.0f} {row['peak_ratio']:>12.3f}")
    from advrobust.files import atomic_write_text
    report = {"benchmark": "evaluation_scaling", "steps": args.steps, "epsilons": list(EPSILONS),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "rows": rows}
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
