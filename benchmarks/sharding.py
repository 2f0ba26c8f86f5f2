"""Two shards and a merge against one run of the same config.

Question (issue 24): split in two with ``advrobust run --shard I/2``, how much of one
unsharded run's time does each shard take, and do the merged results equal the unsharded
run's? Each shard computes half of the units (attack x chunk) and half of the chunks of
the minimal-eps search; what does not shrink is a fixed start-up (TensorFlow import,
loading the model and data, tracing) and the cheap clean-image checks every shard runs,
while the merge runs the masking probes and writes the report.

Setup: the undefended reference CNN of ``benchmarks/reference_models.py``, given by path;
the first ``--n`` Fashion-MNIST test images (default 2000) in chunks of 500; FGSM and
PGD-40 at L-inf eps 0, 0.05 and 0.1 (the run's checks as configured by default). Every
command runs in a fresh process, one after the other: the single run, shard 1/2, shard
2/2, the merge. Reported per command: wall seconds and CPU seconds (user + system of the
process and its children), and each shard's share of the single run's. CPU seconds are
the steadier figure on a machine shared with other work.

    python benchmarks/sharding.py [--n 2000] [--steps 40] [--work DIR] [--out FILE.json]

Prints a table and writes JSON (default benchmarks/results/sharding.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EPSILONS = (0.0, 0.05, 0.1)
CONFIG = """
[run]
name = "sharding_benchmark"
dataset = "fashion_mnist"
norm = "inf"
epsilons = {epsilons}
n_examples = {n}
batch_size = 500
seed = 0

[[attacks]]
name = "fgsm"

[[attacks]]
name = "pgd"
params = {{ steps = {steps}, seed = 0 }}

[[models]]
name = "undefended"
path = "{model}"
"""


def timed(command: list[str]) -> dict:
    """Run ``command`` to completion; its wall and CPU seconds (it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": " ".join(command[2:]), "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1)}


def comparable(results_path: Path) -> list[dict]:
    """What must agree between the merged and the single run: per model, every curve's
    robust accuracy and the worst case (times and paths left out)."""
    document = json.loads(results_path.read_text())
    return [{"name": model["name"], "worst_case": model["worst_case"]["robust_accuracy"],
             "curves": [(curve["attack"], curve["robust_accuracy"]) for curve in model["curves"]]}
            for model in document["models"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--n", type=int, default=2000, help="test images")
    parser.add_argument("--steps", type=int, default=40, help="PGD steps")
    parser.add_argument("--work", default=None, help="a folder for the runs (default: a temporary one, removed)")
    parser.add_argument("--out", default=str(HERE / "results" / "sharding.json"))
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    from reference_models import DEFAULT_CACHE, reference_model

    reference_model("undefended")  # trained into the cache once, outside the timing
    work = Path(args.work or tempfile.mkdtemp(prefix="advrobust-sharding-"))
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.toml"
    config.write_text(CONFIG.format(n=args.n, steps=args.steps, epsilons=list(EPSILONS), model=DEFAULT_CACHE / "undefended" / "model.keras"))
    run = [sys.executable, "-m", "advrobust", "run", str(config)]
    for folder in ("single", "shard-1", "shard-2", "merged"):
        shutil.rmtree(work / folder, ignore_errors=True)
    rows = {"single": timed([*run, "--out", str(work / "single")]),
            "shard 1/2": timed([*run, "--out", str(work / "shard-1"), "--shard", "1/2"]),
            "shard 2/2": timed([*run, "--out", str(work / "shard-2"), "--shard", "2/2"]),
            "merge": timed([sys.executable, "-m", "advrobust", "merge", str(work / "shard-1"),
                            str(work / "shard-2"), "--out", str(work / "merged")])}
    single = rows["single"]
    for row in rows.values():
        row["wall_share"] = round(row["wall_seconds"] / single["wall_seconds"], 3)
        row["cpu_share"] = round(row["cpu_seconds"] / single["cpu_seconds"], 3)
    equal = comparable(work / "single" / "results.json") == comparable(work / "merged" / "results.json")

    print(f"Sharding: {args.n} Fashion-MNIST test images, FGSM + PGD-{args.steps} at {len(EPSILONS)} epsilons, undefended "
          f"reference CNN, {os.cpu_count()} CPU cores")
    print(f"{'command':<10} {'wall s':>8} {'share':>6} {'CPU s':>8} {'share':>6}")
    for name, row in rows.items():
        print(f"{name:<10} {row['wall_seconds']:>8.1f} {row['wall_share']:>6.3f} {row['cpu_seconds']:>8.1f} "
              f"{row['cpu_share']:>6.3f}")
    print(f"merged results equal the single run's: {equal}")
    report = {"benchmark": "sharding", "n": args.n, "steps": args.steps, "epsilons": list(EPSILONS),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "rows": [{"run": name, **row} for name, row in rows.items()], "merged_equals_single": equal}
    from advrobust.files import atomic_write_text

    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
