"""advrobust.run.runner: `advrobust run` end to end on real MNIST (slow): schema, curves, report,
resume after kill -9 and update; model folders of another spec moved aside; h5 models refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from advrobust import models
from advrobust.results import outcomes, schema
from advrobust.run import config, runner
from tests.advrobust.conftest import arm, lambda_model
from tests.advrobust.run.conftest import count_units


def test_a_run_refuses_an_h5_model_path_before_any_work(tmp_path, marker):
    from advrobust.run import config, runner

    lambda_model(marker).save(tmp_path / "made.h5")
    arm(marker)
    shutil.copy(tmp_path / "made.h5", tmp_path / "model.keras")
    (tmp_path / "run.toml").write_text(
        '[run]\nname = "t"\ndataset = "mnist"\nepsilons = [0.1]\nn_examples = 5\n'
        '[[attacks]]\nname = "fgsm"\n[[models]]\nname = "given"\npath = "model.keras"\n')
    with pytest.raises(models.ModelFileError, match="model.keras.*H5 format"):
        runner.run(config.load(tmp_path / "run.toml"), tmp_path / "out", progress=False, report=False)
    assert not (tmp_path / "out" / "models" / "00-given" / "model.keras").exists()


def test_claim_folder_moves_aside_what_another_spec_made(tmp_path):
    folder = tmp_path / "models" / "00-m"
    runner._claim_folder(folder, "a", replaced=False)
    (folder / "backup").mkdir()
    runner._claim_folder(folder, "a", replaced=False)  # an interrupted training of this spec: resumed
    assert (folder / "backup").is_dir()
    runner._claim_folder(folder, "b", replaced=False)  # another spec: moved aside, never trained on from
    assert (folder / "model.spec").read_text() == "b\n" and not (folder / "backup").exists()
    aside = [path for path in folder.parent.iterdir() if path.name.startswith("00-m.replaced-")]
    assert len(aside) == 1 and (aside[0] / "backup").is_dir()
    legacy = tmp_path / "models" / "01-n"
    (legacy / "backup").mkdir(parents=True)  # written before folders had a model.spec
    runner._claim_folder(legacy, "c", replaced=False)
    assert (legacy / "backup").is_dir()
    runner._claim_folder(legacy, "d", replaced=True)  # the store holds a finished model of another spec
    assert not (legacy / "backup").exists()


CONFIG = """
[run]
name = "test"
dataset = "mnist"
epsilons = [0.0, 0.05, 0.1, 0.2, 0.3]
n_examples = 200
batch_size = 25
check_examples = 100
examples = 4

[[attacks]]
name = "fgsm"

[[attacks]]
name = "pgd"
params = {{ steps = 10, seed = 0 }}

[[models]]
name = "trained"
path = "{trained}"

[[models]]
name = "<script>alert(1)</script>"
baseline = "trained"
n_examples = 150
path = "{untrained}"
"""


@pytest.fixture(scope="module")
def run_config(tmp_path_factory, trained_mnist_cnn):
    folder = tmp_path_factory.mktemp("models")
    model, _, _ = trained_mnist_cnn
    models.save(model, folder / "trained.keras", {"dataset": "mnist", "architecture": "cnn", "defense": "none"})
    models.save(models.build("cnn", dropout=False, seed=3), folder / "untrained.keras", {"dataset": "mnist"})
    path = folder / "run.toml"
    path.write_text(CONFIG.format(trained=folder / "trained.keras", untrained=folder / "untrained.keras"))
    return path


@pytest.fixture(scope="module")
def finished_run(run_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, runner.run(config.load(run_config), out, progress=False)


def _comparable(results):
    """results.json (as a dict or :class:`schema.Results`) without timings."""
    document = results.to_dict() if isinstance(results, schema.Results) else results
    return [{"name": m["name"], "clean": m["clean_accuracy"], "curves": [(c["attack"], c["robust_accuracy"])
                                                                        for c in m["curves"]],
             "worst": m["worst_case"]["robust_accuracy"], "checks": m["checks"],
             "minimal_eps": m["minimal_eps"]["values"]} for m in document["models"]]


@pytest.mark.slow
def test_results_follow_the_schema_and_curves_make_sense(finished_run):
    out, results = finished_run
    text = (out / "results.json").read_text()
    on_disk = json.loads(text)
    schema.validate(on_disk)
    assert text == results.to_json() and schema.read(out / "results.json").to_json() == text
    assert _comparable(on_disk) == _comparable(results)
    trained, untrained = on_disk["models"]
    assert trained["n_examples"] == 200 and untrained["n_examples"] == 150
    assert trained["clean_accuracy"] > 0.9
    for record in on_disk["models"]:
        worst = np.array(record["worst_case"]["robust_accuracy"])
        assert worst[0] == pytest.approx(record["clean_accuracy"])
        assert np.all(np.diff(worst) <= 1e-9)  # by construction: broken at one eps is broken at every larger
        fgsm, pgd = (np.array(curve["robust_accuracy"]) for curve in record["curves"])
        assert np.all(worst <= np.minimum(fgsm, pgd) + 1e-9)
        assert (out / record["path"]).is_file() and (out / record["examples"]).is_file()
    # The trained model is clearly attacked: PGD at eps 0.3 leaves little.
    assert trained["worst_case"]["robust_accuracy"][-1] < 0.2
    names = {check["name"] for check in trained["checks"]}
    assert {"logits", "gradients", "pgd <= fgsm", "large eps (inf 1)", "noise not stronger",
            "black box not stronger (<script>alert(1)</script>)"} <= names
    assert all(check["passed"] for check in trained["checks"]), trained["checks"]
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("model,dataset,defense") and len(rows) == 1 + 2 * 3 * 5


@pytest.mark.slow
def test_minimal_eps_is_searched_per_check_example_and_agrees_with_the_worst_case(finished_run):
    out, results = finished_run
    minimal = json.loads((out / "results.json").read_text())["models"][0]["minimal_eps"]
    assert minimal["attack"] == "minimal_epsilon" and minimal["norm"] == "inf"
    assert minimal["params"] == {"steps": 10, "search_steps": 8, "loss": "ce", "seed": 0, "n_examples": 100,
                                 "chunk_examples": 25}  # the run's batch_size, under runner.MINIMAL_EPS_CHUNK
    assert len(minimal["values"]) == 100 and minimal["seconds"] > 0
    values = np.array([np.inf if value is None else value for value in minimal["values"]])
    saved = outcomes.load(out, "trained")
    np.testing.assert_array_equal(values == 0, ~saved.clean[:100])  # 0 exactly where misclassified clean
    # APGD searching each example's radius is at least about as strong as the grid's PGD and FGSM.
    for eps, worst in zip(saved.epsilons, saved.worst[:, :100].mean(axis=1)):
        assert np.mean(values > eps) <= worst + 0.03, eps
    assert 0.0 < np.median(values) < 0.3


def _minimal_eps_rows(store: Path) -> dict[str, list[tuple[int, float, bytes]]]:
    rows: dict[str, list[tuple[int, float, bytes]]] = {}
    with sqlite3.connect(store) as connection:
        for model, start, finished, eps in connection.execute(
                "SELECT model, start, finished, eps FROM minimal_eps_chunks ORDER BY model, start"):
            rows.setdefault(model, []).append((start, finished, eps))
    return rows


@pytest.mark.slow
def test_resume_reuses_the_stored_minimal_eps(finished_run, run_config, tmp_path):
    source, results = finished_run
    out = tmp_path / "resumed"
    shutil.copytree(source, out)
    before = _minimal_eps_rows(out / "store.sqlite")
    assert set(before) == {"trained", "<script>alert(1)</script>"}
    assert [start for start, _, _ in before["trained"]] == [0, 25, 50, 75]  # chunks of batch_size check examples
    resumed = runner.run(config.load(run_config), out, resume=True, progress=False, report=False)
    assert _minimal_eps_rows(out / "store.sqlite") == before  # not searched again
    assert [model.minimal_eps for model in resumed.models] == [model.minimal_eps for model in results.models]


@pytest.mark.slow
def test_a_model_with_a_baseline_is_compared_with_it_per_image(finished_run):
    out, results = finished_run
    trained, untrained = results.to_dict()["models"]
    paired = untrained["paired_vs_baseline"]
    assert paired["baseline"] == "trained" and paired["n_examples"] == 150  # the images both saw
    assert [row["eps"] for row in paired["rows"]] == [None, 0.0, 0.05, 0.1, 0.2, 0.3]
    for row, robust in zip(paired["rows"], [untrained["clean_accuracy"], *untrained["worst_case"]["robust_accuracy"]]):
        assert row["defended"] == pytest.approx(robust)  # all 150 of its own images
        assert row["difference"] == pytest.approx(row["defended"] - row["baseline"])
        assert row["difference"] * 150 == pytest.approx(row["only_defended"] - row["only_baseline"])
        assert row["ci95_low"] <= row["difference"] <= row["ci95_high"]
    # An untrained CNN against a trained one: clean, the loss is certain.
    clean = paired["rows"][0]
    assert clean["baseline"] > 0.9 and clean["ci95_high"] < -0.5 and clean["p_value"] < 1e-20
    summary = runner.summary_text(results)
    assert "<script>alert(1)</script> vs trained, clean: " in summary and "McNemar p" in summary
    assert "paired per image" in (out / "report.md").read_text()

    # The per-image outcomes behind it are saved, and `advrobust compare` reads them back.
    saved = outcomes.load(out, "trained")
    assert saved.n == 200 and saved.clean.mean() == pytest.approx(trained["clean_accuracy"])
    np.testing.assert_allclose(saved.worst.mean(axis=1), trained["worst_case"]["robust_accuracy"])
    assert len(saved.per_attack) == 2
    again = outcomes.compare(saved, outcomes.load(out, "<script>alert(1)</script>"))
    assert [row["p_value"] for row in again["rows"]] == [row["p_value"] for row in paired["rows"]]


@pytest.mark.slow
def test_each_class_is_evaluated_on_its_own_test_images(finished_run):
    from advrobust import data

    out, results = finished_run
    trained = results.to_dict()["models"][0]
    _, labels = data.load("mnist", "test")
    saved = outcomes.load(out, "trained")
    np.testing.assert_array_equal(saved.labels, labels[:200])  # the evaluated images' true labels
    classes = trained["per_class"]
    assert [entry["label"] for entry in classes] == sorted(set(labels[:200].tolist()))
    assert [entry["n_examples"] for entry in classes] == [int((labels[:200] == c).sum()) for c in range(10)]
    for k, overall in enumerate(trained["worst_case"]["robust_accuracy"]):
        assert sum(entry["robust_accuracy"][k] * entry["n_examples"] for entry in classes) / 200 == pytest.approx(
            overall)
    at_largest = sorted(classes, key=lambda entry: entry["robust_accuracy"][-1])[0]
    assert f"trained, weakest classes at eps 0.3: {at_largest['label']} " in runner.summary_text(results)
    assert "#### Per class" in (out / "report.md").read_text()


@pytest.mark.slow
def test_report_mentions_every_model_and_escapes_names(finished_run):
    out, _ = finished_run
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "trained" in html and "trained" in markdown
    assert "#### Minimal ε per example" in markdown and "Implied by minimal ε (100 images)" in markdown
    assert "median minimal ε" in markdown and "minimal_epsilon" in html



@pytest.mark.slow
def test_run_killed_mid_way_and_resumed_gives_the_same_results(run_config, finished_run, tmp_path):
    _, uninterrupted = finished_run
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "advrobust", "run", str(run_config), "--out", str(out), "--no-report"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while count_units(out / "store.sqlite") < 5 and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = count_units(out / "store.sqlite")
    assert finished_before >= 5 and not (out / "results.json").exists()

    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr  # never silently mixed or overwritten
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    document = json.loads((out / "results.json").read_text())
    assert _comparable(document) == _comparable(uninterrupted)
    assert count_units(out / "store.sqlite") > finished_before


@pytest.mark.slow
def test_a_changed_config_is_not_mixed_with_old_results(run_config, finished_run, tmp_path):
    out, _ = finished_run
    changed = tmp_path / "changed.toml"
    changed.write_text(run_config.read_text().replace("steps = 10", "steps = 11"))
    result = subprocess.run([sys.executable, "-m", "advrobust", "run", str(changed), "--out", str(out), "--resume"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "different config" in result.stderr and "--update" in result.stderr


def _finished(store: Path) -> dict[tuple[str, str, int], float]:
    """When each unit was committed, by (model, attack key, batch)."""
    with sqlite3.connect(store) as connection:
        return {(model, attack, batch): finished for model, attack, batch, finished
                in connection.execute("SELECT model, attack, batch, finished FROM units")}


@pytest.mark.slow
def test_update_recomputes_only_what_a_changed_config_changed(run_config, finished_run, tmp_path):
    source, _ = finished_run
    out = tmp_path / "updated"
    shutil.copytree(source, out)
    before = _finished(out / "store.sqlite")
    changed = tmp_path / "changed.toml"
    changed.write_text(run_config.read_text().replace("steps = 10", "steps = 11"))
    started = time.time()
    updated = runner.run(config.load(changed), out, update=True, progress=False, report=False)
    computed = {key for key, finished in _finished(out / "store.sqlite").items() if finished >= started}

    def uses_pgd(key):  # the units whose outcome depends on the PGD settings
        return '"name": "pgd"' in key[1] or key[1].startswith(("check:large_eps:pgd", "check:transfer:"))

    kept = {key for key in before if not uses_pgd(key)}
    assert kept and not kept & computed  # FGSM and noise units were reused, not computed again
    assert computed and all(uses_pgd(key) for key in computed)
    # Units under an unchanged key but changed settings were computed again too.
    assert any(key[1].startswith("check:large_eps:pgd") for key in computed)
    assert {key[1] for key in computed if key[1].startswith("{")} == {
        '{"name": "pgd", "params": {"early_stop": true, "norm": "inf", "seed": 0, "steps": 11}}'}
    # The same results as a fresh run of the changed config: nothing of the old one mixed in.
    fresh = runner.run(config.load(changed), tmp_path / "fresh", progress=False, report=False)
    assert _comparable(updated) == _comparable(fresh)
    assert all(curve.params["steps"] == 11 for model in updated.models for curve in model.curves
               if curve.attack == "pgd")


TRAINED_CONFIG = """
[run]
name = "update-trained"
dataset = "mnist"
epsilons = [0.0, 0.1]
n_examples = 50
batch_size = 50
check_examples = 20

[[attacks]]
name = "fgsm"

[[models]]
name = "a"
train = {{ model = "cnn", epochs = {epochs_a}, train_subset = 512, test_subset = 50 }}

[[models]]
name = "b"
train = {{ model = "cnn", epochs = 1, train_subset = 512, test_subset = 50, learning_rate = 0.002 }}
"""


@pytest.mark.slow
def test_update_retrains_only_the_model_whose_training_settings_changed(tmp_path):
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(TRAINED_CONFIG.format(epochs_a=1))
    second.write_text(TRAINED_CONFIG.format(epochs_a=2))
    out = tmp_path / "run"
    runner.run(config.load(first), out, progress=False, report=False)
    before = _finished(out / "store.sqlite")
    old_spec = (out / "models" / "00-a" / "model.spec").read_text()
    b_weights = (out / "models" / "01-b" / "model.keras").read_bytes()

    runner.run(config.load(second), out, update=True, progress=False, report=False)
    after = _finished(out / "store.sqlite")
    assert [p.name for p in (out / "models").glob("00-a.replaced-*")] != []  # the old model kept aside
    assert (out / "models" / "00-a" / "model.spec").read_text() != old_spec
    assert json.loads((out / "models" / "00-a" / "model.card.json").read_text())["epochs_run"] == 2
    assert (out / "models" / "01-b" / "model.keras").read_bytes() == b_weights  # b not trained again
    b_units = {key for key in before if key[0] == "b" and not key[1].startswith("check:transfer:")}
    assert b_units and all(after[key] == before[key] for key in b_units)
    a_units = {key for key in before if key[0] == "a"}
    assert a_units and all(after[key] > before[key] for key in a_units)


ENSEMBLE_CONFIG = """
[run]
name = "ensemble"
dataset = "mnist"
epsilons = [0.0, 0.1, 0.3]
n_examples = 20
batch_size = 10
check_examples = 10
examples = 0

[[attacks]]
name = "fgsm"

[[attacks]]
name = "autoattack"
n_examples = 10
params = {{ preset = "fast", seed = 0 }}

[[models]]
name = "trained"
path = "{trained}"
"""


@pytest.mark.slow
def test_a_run_with_the_ensemble_keeps_its_members_counts_through_resume(run_config, tmp_path, monkeypatch):
    from attacks import ensemble

    path = tmp_path / "ensemble.toml"
    path.write_text(ENSEMBLE_CONFIG.format(trained=run_config.parent / "trained.keras"))
    first = runner.run(config.load(path), tmp_path / "out", progress=False, report=False)
    fgsm, curve = first.models[0].curves
    labels = [label for label, _, _ in ensemble.PRESETS["fast"]]
    assert curve.attack == "autoattack" and [list(counts) for counts in curve.broken_by] == [labels] * 3
    assert (fgsm.n_examples, curve.n_examples, first.models[0].n_examples) == (20, 10, 20)  # n_examples = 10
    correct = round(curve.clean_accuracy * 10)
    assert [sum(counts.values()) for counts in curve.broken_by] == [
        correct - round(accuracy * 10) for accuracy in curve.robust_accuracy]
    with sqlite3.connect(tmp_path / "out" / "store.sqlite") as connection:
        stored = connection.execute("SELECT broken_by FROM units WHERE attack LIKE '%autoattack%'").fetchall()
    assert len(stored) == 1 and len(json.loads(stored[0][0])) == 3
    rows = [row.split(",") for row in (tmp_path / "out" / "results.csv").read_text().splitlines()[1:]]
    assert {(row[6], row[4]) for row in rows} == {("fgsm", "20"), ("autoattack", "10"), ("worst_case", "20")}

    checked = ensemble.worst_case

    def never(model, x, y, **options):
        assert not len(x), "a finished unit of the ensemble was computed again"
        return checked(model, x, y, **options)  # the config's check of the parameters, on no examples

    monkeypatch.setattr(ensemble, "worst_case", never)
    resumed = runner.run(config.load(path), tmp_path / "out", resume=True, progress=False, report=False)
    assert resumed.models[0].curves[1].broken_by == curve.broken_by
    schema.validate(json.loads((tmp_path / "out" / "results.json").read_text()))


CERTIFIED_CONFIG = """
[run]
name = "bracket"
dataset = "mnist"
epsilons = [0.0, 0.005, 0.02, 0.1]
n_examples = 20
batch_size = 10
check_examples = 10
examples = 0

[[attacks]]
name = "fgsm"

[[attacks]]
name = "pgd"
params = {{ steps = 10, seed = 0 }}

[[models]]
name = "trained"
path = "{trained}"

[certified]
methods = ["ibp", "crown_ibp"]
n_examples = 15
batch_size = 8
"""


@pytest.fixture(scope="module")
def certified_config(run_config):
    path = run_config.parent / "certified.toml"
    path.write_text(CERTIFIED_CONFIG.format(trained=run_config.parent / "trained.keras"))
    return path


@pytest.mark.slow
def test_a_certified_run_brackets_robust_accuracy_and_resumes_its_bounds(certified_config, tmp_path, monkeypatch,
                                                                       capsys):
    from advrobust.certify import verify

    first = runner.run(config.load(certified_config), tmp_path / "out", progress=False, report=True)
    record = first.models[0]
    ibp, crown = record.certified
    assert (ibp.method, crown.method, ibp.n_examples) == ("ibp", "crown_ibp", 15)
    assert ibp.certified_accuracy[0] == pytest.approx(crown.attacked_accuracy[0])  # eps 0: both are clean accuracy
    for bound in (ibp, crown):
        assert all(low <= high for low, high in zip(bound.certified_accuracy, bound.attacked_accuracy))
    assert all(i <= c for i, c in zip(ibp.certified_accuracy, crown.certified_accuracy))
    assert crown.certified_accuracy[1] > 0  # the CNN is certifiably robust somewhere at a tiny radius
    passed = [check for check in record.checks if check.name.startswith("certified not broken")]
    assert [check.passed for check in passed] == [True, True]
    assert "robust accuracy between crown_ibp and the attacks (first 15): eps 0 [" in capsys.readouterr().out
    rows = [row.split(",") for row in (tmp_path / "out" / "results.csv").read_text().splitlines()[1:]]
    assert {(row[6], row[4]) for row in rows} >= {("certified:ibp", "15"), ("certified:crown_ibp", "15")}
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    schema.validate(document)
    assert document["models"][0]["certified"][1]["method"] == "crown_ibp"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Certified and attacked: the bracket" in report and "figures/model-1-trained-bracket.png" in report

    def never(*args, **kwargs):
        raise AssertionError("a finished unit of the bounds was computed again")

    monkeypatch.setattr(verify, "verified_masks", never)
    resumed = runner.run(config.load(certified_config), tmp_path / "out", resume=True, progress=False, report=False)
    assert resumed.models[0].certified == record.certified


@pytest.mark.slow
def test_a_certified_point_an_attack_breaks_fails_the_run_loudly(certified_config, tmp_path, monkeypatch, capsys):
    from advrobust import cli
    from advrobust.certify import verify

    sound = verify.verified_masks

    def unsound_ibp(net, given, method, batch_size):  # IBP "certifies" every point
        if method == "ibp":
            return np.ones((len(given.epsilons), len(given.x)), dtype=bool)
        return sound(net, given, method, batch_size)

    monkeypatch.setattr(verify, "verified_masks", unsound_ibp)
    status = cli.main(["run", str(certified_config), "--out", str(tmp_path / "out"), "--no-report"])
    assert status == 3
    message = capsys.readouterr().err
    assert "CERTIFICATE VIOLATED" in message and "certified not broken (ibp)" in message
    assert "test image " in message and "(fgsm" in message
    document = json.loads((tmp_path / "out" / "results.json").read_text())  # written before the failure
    failed = [check for check in document["models"][0]["checks"] if not check["passed"]]
    assert [check["name"] for check in failed] == ["certified not broken (ibp)"]
