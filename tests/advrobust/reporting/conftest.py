"""Shared by the report tests: a synthetic run folder (results.json, outcomes, examples)."""

from __future__ import annotations

import json

import numpy as np

from advrobust.evaluation.stats import wilson_interval

SCRIPT_NAME = "<script>alert(1)</script>"
MATH_NAME = "_$\\frac{bad | *math*"  # would break mathtext, a legend and a Markdown table unescaped
EPS = [0.0, 0.05, 0.1, 0.2, 0.3]
BASELINE_WORST = [0.99, 0.80, 0.40, 0.05, 0.00]
DEFENDED_WORST = [0.98, 0.92, 0.81, 0.55, 0.20]
# The runner's per-image comparison (paired_vs_baseline): (eps, ci95_low, ci95_high, p) per row;
# eps 0.3 has none, and one more row is unreadable.
PAIRED = [(None, -0.021, 0.001, 0.08), (0.0, -0.021, 0.001, 0.08), (0.05, 0.09, 0.15, 1e-6),
          (0.1, 0.36, 0.46, 1e-20), (0.2, 0.45, 0.55, 3e-30)]
# (label, clean, worst case per eps) of two Fashion-MNIST classes; Shirt is the weaker at the largest eps.
PER_CLASS = [(1, 0.97, [0.97, 0.9, 0.8, 0.5, 0.2]), (6, 0.61, [0.61, 0.5, 0.36, 0.2, 0.1])]


def _series(accuracy, n, eps=EPS):
    low, high = wilson_interval(np.round(np.asarray(accuracy) * n), n)
    return {"epsilons": list(eps), "robust_accuracy": list(accuracy), "ci95_low": low.tolist(),
            "ci95_high": high.tolist()}


def _curve(attack, accuracy, n, eps=EPS, params=None, seconds=1.5):
    return {"attack": attack, "norm": "inf", "params": params or {}, **_series(accuracy, n, eps), "n_examples": n,
            "clean_accuracy": accuracy[0], "seconds": seconds}


def _model(name, dataset, worst, *, n, defense="none", baseline=None, checks=(), **extra):
    fgsm = worst[:1] + [min(1, a + 0.05) for a in worst[1:]]
    return {"name": name, "dataset": dataset, "defense": defense, "architecture": "cnn", "baseline": baseline,
            "path": f"models/{name}/model.keras", "card": f"models/{name}/model.card.json", "n_examples": n,
            "clean_accuracy": worst[0], "training_seconds": None,
            "curves": [_curve("fgsm", fgsm, n), _curve("pgd", worst, n, params={"steps": 40, "restarts": 1},
                                                       seconds=12.0)],
            "worst_case": {"params": {"attacks": ["fgsm", "pgd"]}, **_series(worst, n)},
            "checks": [{"name": "accuracy falls with eps", "passed": True, "detail": "monotone"}, *checks],
            "check_curves": {"large_eps": _curve("pgd", [0.0], n, eps=[0.9]),
                             "noise": _curve("noise", [0.98, 0.97], n, eps=[0.1, 0.3]), "transfer": []},
            "examples": None,
            "minimal_eps": {"attack": "worst case over the eps grid", "norm": "inf", "values": [0.05, 0.1],
                            "note": "grid points"},
            **extra}


def _paired_row(eps, low, high, p, baseline, defended):
    return {"eps": eps, "baseline": baseline, "defended": defended, "difference": round(defended - baseline, 6),
            "ci95_low": low, "ci95_high": high, "only_baseline": 10,
            "only_defended": 10 + round(500 * (defended - baseline)),
            "p_value": p}


def write_run(run_dir):
    """A results.json with two datasets, a defended model with a baseline, a failed check, a
    hostile name, an examples npz, a card with history and minimal eps. Only the hostile
    model has per-class results and outcomes; the others are as runs wrote them before."""
    run_dir.mkdir(parents=True, exist_ok=True)
    baseline = _model("baseline-cnn", "mnist", BASELINE_WORST, n=500)
    defended = _model("nsl-cnn", "mnist", DEFENDED_WORST, n=500, defense="nsl", baseline="baseline-cnn",
                      checks=[{"name": "gradient masking", "passed": False,
                               "detail": "FGSM stronger than PGD at eps=0.3 <b>bold?</b>"}])
    accuracies = {None: (BASELINE_WORST[0], DEFENDED_WORST[0]),
                  **{eps: pair for eps, pair in zip(EPS, zip(BASELINE_WORST, DEFENDED_WORST))}}
    defended["paired_vs_baseline"] = {
        "baseline": "baseline-cnn", "n_examples": 500, "method": "per example",
        "rows": [_paired_row(eps, low, high, p, *accuracies[eps]) for eps, low, high, p in PAIRED]}
    defended["check_curves"]["transfer"] = [{"source": "baseline-cnn", **_curve("pgd", [0.9], 500, eps=[0.1])}]
    hostile = _model(SCRIPT_NAME, "fashion_mnist", [0.9, 0.6, 0.3, 0.1, 0.0], n=200)
    hostile["per_class"] = [{"label": label, "n_examples": 100, "clean_accuracy": clean, **_series(worst, 100)}
                            for label, clean, worst in PER_CLASS]
    hostile["outcomes"] = "outcomes/02-script.npz"
    orphan = _model(MATH_NAME, "fashion_mnist", [0.85, 0.7, 0.5, 0.3, 0.1], n=100, defense="pgd_at",
                    baseline="ghost")
    for model in (baseline, defended, orphan):
        (run_dir / "models" / model["name"]).mkdir(parents=True)
        (run_dir / "models" / model["name"] / "model.card.json").write_text("{}")
    card = {"history": {"loss": [0.9, 0.4, 0.2], "accuracy": [0.7, 0.9, 0.95], "val_loss": [0.5, 0.3, 0.25],
                        "val_accuracy": [0.85, 0.93, 0.96]}, "training_seconds": 42.0}
    (run_dir / baseline["card"]).write_text(json.dumps(card))
    baseline["minimal_eps"] = {"attack": "pgd", "norm": "inf", "values": [0.01, 0.05, 0.07, 0.12, 0.2, None, None,
                                                                          None],
                               "note": "grid points: upper bounds"}
    rng = np.random.default_rng(0)
    x = rng.random((6, 28, 28, 1), dtype=np.float32)
    x_adv = np.clip(x + rng.uniform(-0.1, 0.1, x.shape).astype(np.float32), 0, 1)
    (run_dir / "examples").mkdir()
    np.savez(run_dir / "examples" / "nsl-cnn.npz", x=x, x_adv=x_adv, y=np.arange(6), pred_clean=np.arange(6),
             pred_adv=np.array([0, 7, 2, 8, 4, 1]), eps=np.float32(0.1), attack=np.str_("pgd"))
    defended["examples"] = "examples/nsl-cnn.npz"
    hostile["examples"] = "examples/missing.npz"  # referenced but absent: a note, not a crash
    results = {"schema_version": 1, "config": {"name": "</pre><script>alert(2)</script>", "seed": 0},
               "config_hash": "0123456789abcdef", "started": "2025-01-01T10:00:00", "finished": "2025-01-01T10:05:00",
               "seconds": 300.0,
               "environment": {"versions": {"python": "3.11.2", "tensorflow": "2.21.0", "numpy": "2.1.0"},
                               "device": "CPU <x86>", "platform": "Linux", "cpu_count": 2},
               "models": [baseline, defended, hostile, orphan]}
    (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    return run_dir
