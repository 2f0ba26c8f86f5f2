"""The bad-input matrix at the public boundaries: evaluation API, CLI and run folders.

Each case gives the error type and a fragment of the message that names the value or
the fix. CLI cases exit 2 with one ``advrobust: error:`` line and no traceback, and a run
refused before it starts leaves no results, report or model files behind. The attack
functions' own matrix is in the attack tests; the run config's in the run-config tests.
The table of every case and its error is docs/guide/bad-inputs.md.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from advrobust import cli, evaluation
from attacks.backend import keras
from tests.conftest import REPO

X = np.random.default_rng(0).random((6, 4)).astype(np.float32)
Y = np.array([0, 1, 2, 0, 1, 2])


def _model(activation=None):
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3, activation=activation,
                                                  kernel_initializer=keras.initializers.GlorotUniform(seed=0))(inputs))


EVALUATION_CASES = {
    "NaN in x": ({"x": np.where(X > 0.9, np.nan, X)}, ValueError, "x contains .* NaN or infinite"),
    "0-255 images": ({"x": X * 255}, ValueError, "looks like 0-255 images: rescale"),
    "uint8 images": ({"x": (X * 255).astype(np.uint8)}, TypeError, "must be a floating-point array, got dtype uint8"),
    "wrong rank": ({"x": X[:, 0]}, ValueError, r"shape \(N, ...\) with at least 2 dimensions"),
    "length mismatch": ({"y": Y[:5]}, ValueError, r"y must have shape \(6,\) to match x, got \(5,\)"),
    "labels out of range": ({"y": np.array([0, 1, 2, 3, 1, 2])}, ValueError, "label 3 is outside the model's 3 classes"),
    "float labels": ({"y": Y.astype(np.float32)}, TypeError, "y must hold integer class labels"),
    "negative labels": ({"y": -Y}, ValueError, "labels must be >= 0"),
    "negative eps": ({"epsilons": [-0.1]}, ValueError, "eps must be finite and >= 0"),
    "NaN eps": ({"epsilons": [float("nan")]}, ValueError, "eps must be finite and >= 0"),
    "eps above the data range": ({"epsilons": [2.0]}, ValueError, "larger than any distance within clip"),
    "no eps": ({"epsilons": []}, ValueError, "non-empty"),
    "empty input": ({"x": X[:0], "y": Y[:0]}, ValueError, "x holds no examples"),
    "unknown attack": ({"attack": "zoo"}, ValueError, "unknown attack 'zoo'; choose one of"),
    "unknown norm": ({"norm": "l1"}, ValueError, "unknown norm 'l1'"),
    "probability outputs": ({"model": "probabilities"}, ValueError, "look like probabilities"),
    "steps 0": ({"params": {"steps": 0}}, ValueError, "steps must be an integer >= 1, got 0"),
    "negative seed": ({"params": {"seed": -3}}, ValueError, "seed must be >= 0"),
}


@pytest.mark.parametrize("change, error, match", EVALUATION_CASES.values(), ids=EVALUATION_CASES)
def test_robust_accuracy_curve_refuses(change, error, match):
    arguments = {"model": _model(), "x": X, "y": Y, "attack": "pgd", "epsilons": [0.1], "progress": False}
    arguments.update(change)
    if arguments["model"] == "probabilities":
        arguments["model"] = _model("softmax")
    with pytest.raises(error, match=match):
        evaluation.robust_accuracy_curve(arguments.pop("model"), arguments.pop("x"), arguments.pop("y"), **arguments)


def test_evaluate_refuses_through_the_same_checks():
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        evaluation.evaluate({"m": _model()}, X, Y, attacks=["fgsm"], epsilons=[-0.1], progress=False)
    with pytest.raises(ValueError, match="at least one attack"):
        evaluation.evaluate({"m": _model()}, X, Y, attacks=[], epsilons=[0.1], progress=False)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from advrobust import models

    path = tmp_path_factory.mktemp("model") / "model.keras"
    models.save(models.build("cnn", dropout=False, seed=0), path, {"dataset": "mnist"})
    return path


def _cli_cases(saved_model, tmp_path):
    (tmp_path / "bad.toml").write_text("[run\nname = 1")
    (tmp_path / "unknown.toml").write_text('[run]\nepsilons = [0.1]\ndataset = "cifar"\n[[attacks]]\nname = "pgd"\n'
                                           '[[models]]\nname = "m"\ntrain = {}\n')
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "store.sqlite").write_bytes(b"this is not a database, but it is long enough" * 4)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "escaping").mkdir()
    (tmp_path / "escaping" / "results.json").write_text(
        '{"models": [{"name": "m", "outcomes": "../../secret.npz"}]}')
    good = tmp_path / "good.toml"
    good.write_text('[run]\nepsilons = [0.1]\ndataset = "mnist"\nn_examples = 5\n[[attacks]]\nname = "fgsm"\n'
                    f'[[models]]\nname = "m"\npath = "{saved_model}"\n')
    attack = ["attack", "--model", str(saved_model), "--dataset", "mnist", "--n", "5"]
    return {
        "attack: negative eps": (attack + ["--eps", "-0.1"], "eps must be finite and >= 0"),
        "attack: eps on the 0-255 scale": (attack + ["--eps", "8"], "larger than any distance within clip"),
        "attack: missing model file": (["attack", "--model", str(tmp_path / "nope.keras"), "--dataset", "mnist",
                                        "--eps", "0.1"], "does not exist"),
        "attack: n 0": (attack + ["--eps", "0.1", "--n", "0"], "--n must be >= 1"),
        "attack: steps 0": (attack + ["--eps", "0.1", "--steps", "0"], "steps must be an integer >= 1"),
        "run: malformed TOML": (["run", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "o1")], "not valid TOML"),
        "run: unknown dataset": (["run", str(tmp_path / "unknown.toml"), "--out", str(tmp_path / "o2")],
                                 "unknown dataset 'cifar'"),
        "run: a foreign non-empty --out": (["run", str(good), "--out", str(tmp_path / "home")],
                                           "holds no advrobust run"),
        "run: --out is a file": (["run", str(good), "--out", str(tmp_path / "a_file")], "is a file, not a folder"),
        "run: corrupt store": (["run", str(good), "--out", str(tmp_path / "corrupt")],
                               "is not a readable advrobust store"),
        "run: missing config": (["run", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o3")],
                                "does not exist"),
        "report: no results": (["report", str(tmp_path / "o4")], "results.json does not exist"),
        "compare: no run": (["compare", str(tmp_path / "x"), str(tmp_path / "y")], "neither a run folder"),
        "compare: results.json names a file outside its folder": (
            ["compare", str(tmp_path / "escaping"), str(tmp_path / "escaping")], "leads outside the run folder"),
        "run: --out under a file": (["run", str(good), "--out", str(tmp_path / "a_file" / "sub")], "Not a directory"),
    }


CLI_CASE_NAMES = ["attack: negative eps", "attack: eps on the 0-255 scale", "attack: missing model file",
                  "attack: n 0", "attack: steps 0", "run: malformed TOML", "run: unknown dataset",
                  "run: a foreign non-empty --out", "run: --out is a file", "run: corrupt store",
                  "run: missing config", "report: no results", "compare: no run",
                  "compare: results.json names a file outside its folder", "run: --out under a file"]


@pytest.mark.parametrize("case", CLI_CASE_NAMES)
def test_cli_refuses_in_one_line_with_exit_2_and_writes_nothing(case, saved_model, tmp_path, capsys):
    argv, message = _cli_cases(saved_model, tmp_path)[case]
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")}
    assert cli.main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("advrobust: error:")]
    assert len(errors) == 1 and message in errors[0], errors
    written = [path for path in tmp_path.rglob("*") if before.get(path) != path.stat().st_mtime_ns]
    assert not [path for path in written if path.name in ("results.json", "results.csv", "report.html", "report.md",
                                                          "model.keras", "config.json")], written


def test_a_second_run_beside_a_live_one_exits_2_naming_the_other_process(saved_model, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[run]\nepsilons = [0.1]\ndataset = "mnist"\nn_examples = 5\n[[attacks]]\nname = "fgsm"\n'
                    f'[[models]]\nname = "m"\npath = "{saved_model}"\n')
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom advrobust.run import folder\n"
                               "with folder.claim(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n",
                               str(tmp_path / "out")], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in ([], ["--resume"]):
            result = subprocess.run([sys.executable, "-m", "advrobust", "run", str(good), "--out", str(tmp_path / "out"),
                                     *extra], cwd=REPO, capture_output=True, text=True, timeout=300)
            errors = [line for line in result.stderr.splitlines() if line.startswith("advrobust: error:")]
            assert result.returncode == 2 and "Traceback" not in result.stderr
            assert len(errors) == 1 and f"is in use by process {holder.pid}" in errors[0]
        assert not (tmp_path / "out" / "results.json").exists()
    finally:
        holder.kill()
        holder.wait()
