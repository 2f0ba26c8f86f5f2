"""The worst-case ensemble (attacks.ensemble) against ART's AutoAttack.

Question: how robust do the project's AutoAttack presets find an undefended and an
adversarially trained CNN, at what cost, compared with the Adversarial Robustness
Toolbox's AutoAttack and its APGD-CE + APGD-DLR, all in the same run on the same images?

Setup: the reference CNNs of ``benchmarks/reference_models.py`` (Conv32-Conv64-MaxPool-
Dense128-Dense10, no dropout, Fashion-MNIST: ``undefended`` and ``pgd_at``, PGD adversarial
training at L-inf 0.1), trained on first use into ``--cache`` (ignored by git). Attacked:
the first N Fashion-MNIST test images at L-inf eps 0.1. Rows:

* ``standard``: ``worst_case(preset="standard")``: APGD-CE, APGD-T (9 targets), FAB-T
  (9 targets), Square (5000 queries).
* ``standard_bf16``: ``worst_case(preset="standard", compute_dtype="bfloat16")``: the same
  members searching on a bfloat16 copy of the model, every verdict by the float32 model
  (faster only on hardware with bfloat16 units: AVX512-BF16 or AMX CPUs, GPUs).
* ``fast``: ``worst_case(preset="fast")``.
* ``art_apgd_ce_dlr``: ART's APGD-CE then APGD-DLR (100 steps, 1 restart each), run as an
  ensemble by ``worst_case`` (so its passes are counted the same way).
* ``art_autoattack``: ART 1.20.1's ``AutoAttack`` with its default members: APGD-CE and
  APGD-DLR (100 steps, 5 restarts each), DeepFool, Square (5000 queries, 5 restarts).

For every row: seconds, robust accuracy, and the images run forward through the model and
differentiated through it, per attacked image (``attacks.ensemble.counting_model`` wraps
the model for every row, ART's included). The summary gives ``fast``'s gap to ``standard``
(points) and its share of ``standard``'s forward + backward passes, and for ``standard``
and ``standard_bf16`` the speed-up over ART's AutoAttack (its seconds / theirs) and the
robust-accuracy gap to it (points; the goal allows at most +0.1).

    python benchmarks/autoattack.py [--n 1000] [--rows fast,standard,...] [--chunk 250] [--out FILE.json] [--resume]

Every row runs over the images in chunks of ``--chunk`` (default 250), the same chunks for
every row, and its figures are the sums (seconds) and image-weighted means (accuracies,
passes) over the chunks. Prints a table and writes JSON (default
benchmarks/results/autoattack.json), rewritten after every chunk; ``--resume`` keeps the
chunks already there and measures the rest (ART's AutoAttack alone takes hours at
n = 1000 on an adversarially trained model, longer than a working session). Timings mean
something only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

import advrobust  # noqa: F401  (Keras 2 before TensorFlow)
from advrobust import data
from advrobust.files import atomic_write_text
from attacks import ATTACKS, external
from attacks.backend import tf
from attacks.ensemble import counting_model, worst_case
from reference_models import DEFAULT_CACHE, reference_model  # benchmarks/ is the script's folder

EPS = 0.1
ROWS = ("standard", "standard_bf16", "fast", "art_apgd_ce_dlr", "art_autoattack")
RESULTS = Path(__file__).resolve().parent / "results"
ART_BATCH = 500
ART_APGD = (("art-apgd-ce", "apgd_ce_art", {}), ("art-apgd-dlr", "apgd_dlr_art", {}))
# ART's APGD is off the run path (not in ATTACKS); this script names it as ensemble members.
ATTACKS.setdefault("apgd_ce_art", external.apgd_ce_art)
ATTACKS.setdefault("apgd_dlr_art", external.apgd_dlr_art)


def art_autoattack(model: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ART 1.20.1's AutoAttack with its default members at L-inf ``EPS``: x_adv (N, ...).

    The members are built here as ART's ``AutoAttack`` builds them by default, only without
    progress bars.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PyTorch not found", category=UserWarning)
        from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, DeepFool, SquareAttack
        from art.estimators.classification import TensorFlowV2Classifier

    logits = tf.function(model, input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.float32)])
    classifier = TensorFlowV2Classifier(model=lambda batch, training=False: logits(tf.cast(batch, tf.float32)),
                                        nb_classes=10, input_shape=x.shape[1:], clip_values=(0.0, 1.0))
    members = [AutoProjectedGradientDescent(classifier, norm=np.inf, eps=EPS, eps_step=2 * EPS, max_iter=100,
                                            targeted=False, nb_random_init=5, batch_size=ART_BATCH, loss_type=loss,
                                            verbose=False)
               for loss in ("cross_entropy", "difference_logits_ratio")]
    members.append(DeepFool(classifier, max_iter=100, epsilon=1e-3, nb_grads=10, batch_size=ART_BATCH,
                            verbose=False))
    members.append(SquareAttack(classifier, norm=np.inf, max_iter=5000, eps=EPS, p_init=0.8, nb_restarts=5,
                                verbose=False))
    np.random.seed(0)  # ART draws from NumPy's global generator
    attack = AutoAttack(classifier, norm=np.inf, eps=EPS, eps_step=2 * EPS, attacks=members, batch_size=ART_BATCH)
    return attack.generate(x, np.eye(10, dtype=np.float32)[y]).astype(x.dtype)


def measure(row: str, model: Any, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """One row on one model: seconds, robust accuracy, passes per image."""
    if row in ("standard", "standard_bf16", "fast", "art_apgd_ce_dlr"):
        extra = {"attacks": ART_APGD} if row == "art_apgd_ce_dlr" else {"preset": row.removesuffix("_bf16")}
        if row.endswith("_bf16"):
            extra["compute_dtype"] = "bfloat16"
        result = worst_case(model, x, y, eps=EPS, seed=0, **extra)
        return {"seconds": result.seconds, "robust_accuracy": result.robust_accuracy,
                "forward_passes": result.forward_passes, "backward_passes": result.backward_passes,
                "per_attack": [list(entry) for entry in result.per_attack],
                "passes_by_attack": [list(entry) for entry in result.passes_by_attack]}
    counted = counting_model(model)
    before, started = counted.counts(), time.perf_counter()
    x_adv = art_autoattack(counted, x, y)
    seconds, after = time.perf_counter() - started, counted.counts()
    predicted = np.argmax(model.predict(x_adv, batch_size=500, verbose=0), axis=1)
    return {"seconds": seconds, "robust_accuracy": float(np.mean(predicted == y)),
            "forward_passes": (after[0] - before[0]) / len(x), "backward_passes": (after[1] - before[1]) / len(x)}


def summary(results: dict[str, dict[str, dict[str, Any]]], n: int) -> dict[str, dict[str, float]]:
    """Per model, over the rows measured on all n images: fast's gap to standard (points) and
    share of standard's passes; the standard rows' speed-up over ART's AutoAttack and
    robust-accuracy gap to it (points)."""
    out: dict[str, dict[str, float]] = {}
    for name, all_rows in results.items():
        rows = {row: values for row, values in all_rows.items() if values["images"] == n}
        out[name] = {}
        if "standard" in rows and "fast" in rows:
            standard, fast = rows["standard"], rows["fast"]
            passes = {key: row["forward_passes"] + row["backward_passes"] for key, row in (("s", standard),
                                                                                         ("f", fast))}
            out[name].update({"fast_gap_points": 100 * (fast["robust_accuracy"] - standard["robust_accuracy"]),
                              "fast_share_of_standard_passes": passes["f"] / passes["s"]})
        art = rows.get("art_autoattack")
        for row in ("standard", "standard_bf16"):
            if art and row in rows:
                out[name][f"{row}_speedup_vs_art_autoattack"] = art["seconds"] / rows[row]["seconds"]
                out[name][f"{row}_gap_to_art_autoattack_points"] = 100 * (rows[row]["robust_accuracy"]
                                                                          - art["robust_accuracy"])
    return {name: values for name, values in out.items() if values}


def print_table(results: dict[str, dict[str, dict[str, Any]]], n: int) -> None:
    print(f"\nFashion-MNIST, first {n} test images, L-inf eps {EPS}")
    print(f"{'model':<11} {'row':<16} {'images':>6} {'robust acc':>10} {'seconds':>9} {'fwd/img':>9} {'bwd/img':>9}")
    for name, rows in results.items():
        for row, values in rows.items():
            print(f"{name:<11} {row:<16} {values['images']:>6} {100 * values['robust_accuracy']:>9.1f}% "
                  f"{values['seconds']:>9.1f} {values['forward_passes']:>9.1f} {values['backward_passes']:>9.1f}")
    for name, values in summary(results, n).items():
        if "fast_gap_points" in values:
            print(f"{name}: fast - standard = {values['fast_gap_points']:+.1f} points for "
                  f"{100 * values['fast_share_of_standard_passes']:.1f}% of standard's passes")
        for row in ("standard", "standard_bf16"):
            if f"{row}_speedup_vs_art_autoattack" in values:
                print(f"{name}: {row} is {values[f'{row}_speedup_vs_art_autoattack']:.2f}x faster than ART's "
                      f"AutoAttack, robust accuracy {values[f'{row}_gap_to_art_autoattack_points']:+.1f} points")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="test images attacked (default 1000)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from: {', '.join(ROWS)}")
    parser.add_argument("--models", default="undefended,pgd_at", help="comma-separated: undefended, pgd_at")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the reference models' folder")
    parser.add_argument("--out", type=Path, default=RESULTS / "autoattack.json")
    parser.add_argument("--resume", action="store_true",
                        help="keep the chunks already in --out (same n and chunk) and measure only the others")
    parser.add_argument("--chunk", type=int, default=250, help="images per measured chunk (default 250)")
    args = parser.parse_args(argv)
    rows = [row for row in args.rows.split(",") if row]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from: {', '.join(ROWS)}")
    if args.chunk < 1:
        parser.error(f"--chunk must be at least 1, got {args.chunk}")

    x, y = data.load("fashion_mnist", "test")
    x, y = x[:args.n], y[:args.n]
    results = resumed(args.out, args.n, args.chunk) if args.resume else {}
    for name in args.models.split(","):
        model = reference_model(name, args.cache)
        clean = float(np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), axis=1) == y))
        print(f"{name}: clean accuracy {100 * clean:.1f}%", flush=True)
        results.setdefault(name, {})
        for row in rows:
            chunks = results[name].get(row, {}).get("chunks", [])
            for start in range(len(chunks) * args.chunk, args.n, args.chunk):
                stop = min(start + args.chunk, args.n)
                chunks.append({"images": stop - start, **measure(row, model, x[start:stop], y[start:stop])})
                results[name][row] = {**combined(chunks), "chunks": chunks}
                print(f"  {row}, images {start}-{stop - 1}: {100 * chunks[-1]['robust_accuracy']:.1f}% "
                      f"in {chunks[-1]['seconds']:.1f} s", flush=True)
                write_report(args.out, results, args.n, args.chunk)  # a stop loses at most one chunk
            print(f"  {row}: {100 * results[name][row]['robust_accuracy']:.1f}% "
                  f"in {results[name][row]['seconds']:.1f} s", flush=True)
    print_table(results, args.n)
    report = write_report(args.out, results, args.n, args.chunk)
    print(f"wrote {args.out}")
    return report


def combined(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """One row's figures over its chunks: seconds summed, the rest weighted by images."""
    weights = np.array([chunk["images"] for chunk in chunks], dtype=np.float64)

    def mean(values: list[float]) -> float:
        return float(np.dot(weights, values) / weights.sum())

    row = {"images": int(weights.sum()), "seconds": float(sum(chunk["seconds"] for chunk in chunks))}
    for key in ("robust_accuracy", "forward_passes", "backward_passes"):
        row[key] = mean([chunk[key] for chunk in chunks])
    for key in ("per_attack", "passes_by_attack"):
        if key in chunks[0]:
            # entries are [label, figure, ...]: the same labels, in the same order, in every chunk
            row[key] = [[entries[0][0], *(mean([entry[i] for entry in entries]) for i in range(1, len(entries[0])))]
                        for entries in zip(*(chunk[key] for chunk in chunks))]
    return row


def resumed(path: Path, n: int, chunk: int) -> dict[str, dict[str, dict[str, Any]]]:
    """The chunks already measured in ``path`` for the same n, chunk and eps (empty if none)."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    if (earlier.get("n"), earlier.get("chunk"), earlier.get("eps")) != (n, chunk, EPS):
        raise SystemExit(f"{path} holds n={earlier.get('n')}, chunk={earlier.get('chunk')}, eps={earlier.get('eps')}, "
                         f"not n={n}, chunk={chunk}, eps={EPS}: choose another --out or drop --resume")
    return earlier["results"]


def write_report(path: Path, results: dict[str, dict[str, dict[str, Any]]], n: int, chunk: int) -> dict[str, Any]:
    """Write the report of the rows measured so far, atomically; return it."""
    report = {"question": "worst_case presets vs ART's AutoAttack: robust accuracy, seconds, passes per image",
              "dataset": "fashion_mnist", "n": n, "chunk": chunk, "eps": EPS, "norm": "inf",
              "models": "benchmarks/reference_models.py",
              "machine": platform.platform(), "results": results, "summary": summary(results, n)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
