"""Full-test-set strong evaluation of exported reference CNNs with PyTorch and ART (no TensorFlow).

The same worst case as ``experiments/goals_*.toml``: per example over FGSM, PGD-100 with 5
random restarts (step ``2.5 * eps / 100``, an example counts as fooled if any iterate of
any restart fools it, as in ``attacks.pgd``), and ART 1.20.1's APGD-CE and APGD-DLR (100
iterations, initial step ``2 * eps``, one random start, as in ``attacks.external``).
ART runs here on a ``PyTorchClassifier`` instead of a ``TensorFlowV2Classifier``.

Before attacking, the rebuilt model's logits are compared with the TensorFlow model's on
every test image (``tf_logits`` from ``export.py``); a mismatch stops the run. Float32
throughout: TF32 is switched off for convolutions and matrix products. Every adversarial
point is checked to lie in the eps-ball and [0, 1].

    python evaluate.py --data DIR/data-mnist.npz --eps 0.3 --out results.json DIR/model-*.npz

Prints a table and writes JSON: per model, clean and per-attack robust accuracy, and the
worst case, on the whole test split and on its first 500 images (the subset that the CPU
runs evaluated), each with a Wilson 95% interval, plus each attack's seconds.

With ``--outcomes DIR`` it also writes each model's per-image outcomes and labels as a run
folder does (``DIR/results.json`` naming ``DIR/outcomes/NAME.npz``), so that
``advrobust compare DIR:A DIR:B --per-class`` compares models on the full test set. The
attack labels there say ``torch_crosscheck``: against a TensorFlow run, ``compare`` warns
that the worst cases come from other attack implementations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


# The repository root on the path, so the project's NumPy-only modules import without
# installing it: advrobust imports no TensorFlow, which this script runs without.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from advrobust import files  # noqa: E402
from advrobust.evaluation import stats  # noqa: E402
from advrobust.results import outcome_files  # noqa: E402

PARAMS = {"fgsm": {}, "pgd": {"steps": 100, "restarts": 5}, "apgd_ce_art": {"steps": 100},
          "apgd_dlr_art": {"steps": 100}}
LOGIT_TOLERANCE = 1e-3  # float32 reorderings between TF/oneDNN and cuDNN move logits by ~1e-5
FIRST = 500


class ReferenceCNN(torch.nn.Module):
    """Conv32-Conv64-MaxPool-Dense128-Dense10 on NHWC input (N, 28, 28, 1) in [0, 1] -> logits (N, 10).

    Any ``width`` of models.build_cnn: the channel and unit counts come from the weights.

    Keras layouts are kept: conv kernels HWIO become OIHW, and the flatten runs over
    (H, W, C) as Keras's does, so the first Dense kernel is used unchanged.
    """

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()

        def tensor(array: np.ndarray) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)),
                                      requires_grad=False)

        self.conv1_w = tensor(weights["conv1.kernel"].transpose(3, 2, 0, 1))
        self.conv1_b = tensor(weights["conv1.bias"])
        self.conv2_w = tensor(weights["conv2.kernel"].transpose(3, 2, 0, 1))
        self.conv2_b = tensor(weights["conv2.bias"])
        self.dense_w = tensor(weights["dense.kernel"].T)
        self.dense_b = tensor(weights["dense.bias"])
        self.logits_w = tensor(weights["logits.kernel"].T)
        self.logits_b = tensor(weights["logits.bias"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.permute(0, 3, 1, 2)
        h = F.relu(F.conv2d(h, self.conv1_w, self.conv1_b))
        h = F.relu(F.conv2d(h, self.conv2_w, self.conv2_b))
        h = F.max_pool2d(h, 2)
        h = h.permute(0, 2, 3, 1).flatten(1)
        h = F.relu(F.linear(h, self.dense_w, self.dense_b))
        return F.linear(h, self.logits_w, self.logits_b)


def predict(model: torch.nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    """Predicted labels (N,) for x (N, 28, 28, 1)."""
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def check_in_ball(x: torch.Tensor, x_adv: torch.Tensor, eps: float, attack: str) -> None:
    """Raise AssertionError if x_adv leaves the L-inf eps-ball around x or [0, 1] beyond float32 rounding."""
    excess = max(float((x_adv - x).abs().max()) - eps, -float(x_adv.min()), float(x_adv.max()) - 1.0)
    if excess > 1e-5:
        raise AssertionError(f"{attack}: points {excess:g} outside the eps-ball or [0, 1]")


def input_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of the summed cross-entropy w.r.t. x, logits) for a batch."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = F.cross_entropy(logits, y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad, logits.detach()


def fgsm_fooled(model, x, y, eps: float, batch: int) -> torch.Tensor:
    """Bool (N,): FGSM (one signed step of eps, clipped to [0, 1]) misclassifies the example."""
    fooled = []
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        grad, _ = input_gradient(model, xb, yb)
        x_adv = (xb + eps * grad.sign()).clamp(0.0, 1.0)
        check_in_ball(xb, x_adv, eps, "fgsm")
        with torch.no_grad():
            fooled.append(model(x_adv).argmax(1) != yb)
    return torch.cat(fooled)


def pgd_fooled(model, x, y, eps: float, *, steps: int, restarts: int, seed: int, batch: int) -> torch.Tensor:
    """Bool (N,): some iterate of some restart of L-inf PGD misclassifies the example.

    Uniform random start in the ball, ``steps`` signed steps of ``2.5 * eps / steps``,
    projection onto the ball and [0, 1] after each; the start is checked as well.
    """
    step_size = 2.5 * eps / steps
    generator = torch.Generator(device=x.device).manual_seed(seed)
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(restarts):
        for i in range(0, len(x), batch):
            xb, yb = x[i:i + batch], y[i:i + batch]
            noise = torch.rand(xb.shape, generator=generator, device=x.device) * (2 * eps) - eps
            x_adv = (xb + noise).clamp(0.0, 1.0)
            hit = torch.zeros(len(xb), dtype=torch.bool, device=x.device)
            for _ in range(steps):
                grad, logits = input_gradient(model, x_adv, yb)
                hit |= logits.argmax(1) != yb
                x_adv = torch.min(torch.max(x_adv + step_size * grad.sign(), xb - eps), xb + eps).clamp(0.0, 1.0)
            check_in_ball(xb, x_adv, eps, "pgd")
            with torch.no_grad():
                hit |= model(x_adv).argmax(1) != yb
            fooled[i:i + batch] |= hit
    return fooled


def apgd_fooled(model, x, y, eps: float, *, loss: str, steps: int, seed: int, batch: int) -> torch.Tensor:
    """Bool (N,): ART's untargeted APGD (one random start) finds a misclassified point."""
    from art.attacks.evasion import AutoProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=10, clip_values=(0.0, 1.0), channels_first=False,
                                   device_type="gpu" if x.is_cuda else "cpu")
    attack = AutoProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=steps,
                                          targeted=False, nb_random_init=1, batch_size=batch,
                                          loss_type={"ce": "cross_entropy", "dlr": "difference_logits_ratio"}[loss],
                                          verbose=False)
    x_np, y_np = x.cpu().numpy(), y.cpu().numpy()
    np.random.seed(seed)  # ART draws its random starts from NumPy's global generator
    x_adv = torch.from_numpy(attack.generate(x_np, np.eye(10, dtype=np.float32)[y_np]).astype(np.float32))
    x_adv = x_adv.to(x.device)
    check_in_ball(x, x_adv, eps, f"apgd_{loss}")
    return predict(model, x_adv, batch) != y


def summarise(correct: torch.Tensor) -> dict:
    """Accuracy of a bool (N,) mask on all N and on the first 500, with Wilson intervals."""
    out = {}
    for label, mask in (("full", correct), ("first_500", correct[:FIRST])):
        k, n = int(mask.sum()), len(mask)
        low, high = stats.wilson_interval(k, n)
        out[label] = {"accuracy": k / n, "n": n, "ci95": (float(low), float(high))}
    return out


def evaluate_model(path: Path, x: torch.Tensor, y: torch.Tensor, eps: float, batch: int,
                   seed: int) -> tuple[dict, bytes]:
    """Check the rebuilt model against its TF logits, then attack it; the JSON entry of one
    model, and its per-image outcomes as an .npz (:func:`advrobust.results.outcome_files.encode`)."""
    archive = np.load(path)
    model = ReferenceCNN({key: archive[key] for key in archive.files if key.endswith((".kernel", ".bias"))})
    model = model.to(x.device).eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)]).cpu().numpy()
    tf_logits = archive["tf_logits"][:len(x)]
    difference = float(np.abs(logits - tf_logits).max())
    same_labels = int(np.sum(logits.argmax(1) == tf_logits.argmax(1)))
    if difference > LOGIT_TOLERANCE or same_labels != len(x):
        raise AssertionError(f"{path.name}: rebuilt logits differ from TensorFlow's by up to {difference:g}, "
                             f"{len(x) - same_labels} labels differ")
    card = json.loads(str(archive["card"]))
    clean = torch.from_numpy(logits.argmax(1)).to(x.device) == y
    fooled, seconds = {}, {}
    runs = {
        "fgsm": lambda: fgsm_fooled(model, x, y, eps, batch),
        "pgd": lambda: pgd_fooled(model, x, y, eps, **PARAMS["pgd"], seed=seed, batch=batch),
        "apgd_ce_art": lambda: apgd_fooled(model, x, y, eps, loss="ce", **PARAMS["apgd_ce_art"], seed=seed,
                                           batch=batch),
        "apgd_dlr_art": lambda: apgd_fooled(model, x, y, eps, loss="dlr", **PARAMS["apgd_dlr_art"], seed=seed,
                                            batch=batch),
    }
    for name, run in runs.items():
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fooled[name] = run()
        if x.is_cuda:
            torch.cuda.synchronize()
        seconds[name] = time.perf_counter() - start
    worst = clean.clone()
    attacks, masks = {}, {}
    for name, mask in fooled.items():
        robust = clean & ~mask
        worst &= robust
        attacks[name] = summarise(robust)
        masks[f"{name} (torch_crosscheck) {json.dumps(PARAMS[name], sort_keys=True)}"] = robust.cpu().numpy()[None]
    attacks["worst_case"] = summarise(worst)
    model_name = path.stem.removeprefix("model-")
    outcomes = outcome_files.encode(name=model_name, dataset=str(archive["dataset"]), norm="inf", epsilons=[eps],
                                    clean=clean.cpu().numpy(), worst=worst.cpu().numpy()[None], per_attack=masks,
                                    labels=y.cpu().numpy())
    return {"model": model_name, "defense": card.get("defense"),
            "defense_config": card.get("defense_config"), "card_clean_test_accuracy": card.get("clean_test_accuracy"),
            "max_logit_difference_vs_tensorflow": difference, "clean": summarise(clean), "robust": attacks,
            "seconds": seconds}, outcomes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--eps", required=True, type=float)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--outcomes", type=Path, default=None,
                        help="also write per-image outcomes here, as a run folder (for advrobust compare)")
    parser.add_argument("--n", type=int, default=None, help="only the first N test images (a smoke test)")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("models", nargs="+", type=Path)
    args = parser.parse_args(argv)

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    archive = np.load(args.data)
    x = torch.from_numpy(archive["x"][:args.n].astype(np.float32) / np.float32(255.0))[..., None].to(device)
    y = torch.from_numpy(archive["y"][:args.n]).long().to(device)
    report = {"eps": args.eps, "norm": "inf", "n": len(x), "device": torch.cuda.get_device_name() if x.is_cuda
              else "cpu", "torch": torch.__version__, "models": []}
    saved = []
    for path in args.models:
        entry, outcomes = evaluate_model(path, x, y, args.eps, args.batch, args.seed)
        report["models"].append(entry)
        if args.outcomes is not None:
            saved.append({"name": entry["model"], "outcomes": f"outcomes/{entry['model']}.npz"})
            files.atomic_write_bytes(args.outcomes / saved[-1]["outcomes"], outcomes)
            files.atomic_write_text(args.outcomes / "results.json", json.dumps(
                {"schema_version": 1, "source": "experiments/torch_crosscheck/evaluate.py", "models": saved},
                indent=2) + "\n")
        row = "  ".join(f"{name} {value['full']['accuracy']:.4f}" for name, value in entry["robust"].items())
        print(f"{entry['model']}: clean {entry['clean']['full']['accuracy']:.4f}  {row}  "
              f"(first {FIRST}: worst {entry['robust']['worst_case']['first_500']['accuracy']:.3f}; "
              f"logit diff {entry['max_logit_difference_vs_tensorflow']:.1e}; "
              f"{sum(entry['seconds'].values()):.0f} s)", flush=True)
        files.atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
