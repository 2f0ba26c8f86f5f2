"""Adversarial-training throughput: the crafting loop unrolled vs as a tf.while_loop.

Question: how many training images per second does PGD adversarial training (or TRADES)
of the reference CNN process with ``defenses.adversarial_training.perturb`` as it is
(its steps unrolled in the traced train step) compared with the same steps in a
``tf.while_loop`` (how ``perturb`` was written before), and how much does that vary
from one trace to the next?

Why traces: with oneDNN on CPU, a traced while loop around MaxPool gets oneDNN's
pooling gradient in some traces and Eigen's slower one in others (see
``attacks.loop._build``), so one process measures one draw. Every trace here is a fresh
worker process; the variants take turns so a slow spell of the machine hits both.

Setup: reference CNN Conv32-Conv64-MaxPool-Dense128-Dense10 without Dropout, untrained,
on the first MNIST training images (found as by advrobust.data.load); the preset's
crafting (``--preset mnist``: L-inf eps 0.3, 10 steps), batch 128, Adam 1e-3. Each
worker trains ``--warmup`` batches (tracing) and then times ``--batches`` batches.

    python benchmarks/training_throughput.py [--method pgd_at|trades] [--traces 4] [--batches 15]

Prints a table and writes JSON (default benchmarks/results/training_throughput.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("unrolled (advrobust)", "tf.while_loop (before)")
BATCH = 128


def while_loop_perturb(model, x, objective, *, eps, norm, steps, step_size, start, clip):
    """``perturb`` as it was before it was unrolled: the same step in a tf.while_loop."""
    from attacks import norms
    from attacks.backend import tf

    n = tf.shape(x)[0]
    eps = tf.broadcast_to(tf.cast(eps, x.dtype), [n])
    alpha = tf.reshape(tf.broadcast_to(tf.cast(step_size, x.dtype), [n]),
                       tf.concat([[n], tf.ones([tf.rank(x) - 1], tf.int32)], 0))

    def step(i, x_t):
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            total = tf.reduce_sum(objective(model(x_t)))
        return i + 1, norms.ascent_step(x, x_t, tape.gradient(total, x_t), alpha, eps, norm, clip)

    _, x_adv = tf.while_loop(lambda i, _: i < steps, step, (tf.constant(0), tf.convert_to_tensor(start)))
    return tf.stop_gradient(x_adv)


def worker(variant: str, method: str, preset: str, warmup: int, batches: int) -> dict:
    """Train in this process and return {"images_per_second": ..., "seconds": ...}."""
    import advrobust  # noqa: F401  (Keras 2 before TensorFlow)
    from advrobust import data, models
    from attacks.backend import keras, tf
    from defenses import adversarial_training as at

    if variant == VARIANTS[1]:
        at.perturb = while_loop_perturb  # craft() looks perturb up in its module
    x, y = data.load("mnist", "train")
    n = (warmup + batches) * BATCH
    dataset = tf.data.Dataset.from_tensor_slices((x[:n], y[:n])).batch(BATCH)
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())

    keras.utils.set_random_seed(0)
    model = models.build("cnn", dropout=False, seed=0)
    at.fit(model, dataset, config=at.preset(method, preset), epochs=1, callbacks=[Clock()], verbose=0)
    seconds = times[-1] - times[warmup - 1]
    return {"images_per_second": batches * BATCH / seconds, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--method", default="pgd_at", choices=["pgd_at", "trades"])
    parser.add_argument("--preset", default="mnist")
    parser.add_argument("--traces", type=int, default=4, help="fresh worker processes per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches (tracing) per worker")
    parser.add_argument("--batches", type=int, default=15, help="timed batches per worker")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "training_throughput.json"))
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.method, args.preset, args.warmup, args.batches)))
        return

    measured: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for trace in range(args.traces):
        for variant in VARIANTS:
            command = [sys.executable, __file__, "--worker", variant, "--method", args.method,
                       "--preset", args.preset, "--warmup", str(args.warmup), "--batches", str(args.batches)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rate = json.loads(done.stdout.strip().splitlines()[-1])["images_per_second"]
            measured[variant].append(rate)
            print(f"  trace {trace + 1}/{args.traces} {variant:24s} {rate:7.1f} images/s", flush=True)

    rows = [{"variant": variant, "median": statistics.median(rates), "min": min(rates), "max": max(rates),
             "per_trace": rates} for variant, rates in measured.items()]
    header = f"{'variant':24s} {'median img/s':>13s} {'min':>7s} {'max':>7s} {'x while_loop':>13s}  per trace"
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        row["vs_while_loop"] = row["median"] / rows[1]["median"]
        print(f"{row['variant']:24s} {row['median']:13.1f} {row['min']:7.1f} {row['max']:7.1f} "
              f"{row['vs_while_loop']:13.2f}  {', '.join(f'{r:.0f}' for r in row['per_trace'])}")

    import advrobust  # noqa: F401  (Keras 2 before TensorFlow)
    from advrobust.files import atomic_write_text
    from attacks.backend import tf

    result = {
        "benchmark": "training_throughput",
        "setup": {"model": "Conv32-Conv64-MaxPool-Dense128-Dense10, no Dropout, untrained",
                  "method": args.method, "preset": args.preset, "batch": BATCH, "warmup_batches": args.warmup,
                  "timed_batches": args.batches, "traces": args.traces,
                  "statistic": "training images/s over the timed batches, one fresh process per trace"},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__},
        "rows": rows,
    }
    print(f"\nwrote {atomic_write_text(args.out, json.dumps(result, indent=2) + chr(10))}")


if __name__ == "__main__":
    main()
