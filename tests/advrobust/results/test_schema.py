"""results.json as dataclasses: the runner's building blocks write exactly what the runner
wrote before them, strict reading names the path of a problem, lenient reading takes
older files, and reading results imports no TensorFlow."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advrobust.evaluation import checks, curves
from advrobust.evaluation.stats import minimal_eps_on_grid, wilson_interval
from advrobust.results import outcomes, schema
from advrobust.run import runner
from advrobust.run.config import ModelEntry
from tests.conftest import REPO

DATA = Path(__file__).parent / "data"
# Written by the runner before results.json became dataclasses (same inputs as _golden_results).
GOLDEN = DATA / "results_v1.json"
EPSILONS = np.array([0.0, 0.1, 0.2])
LABELS = np.arange(12) % 3
CONFIG = {"name": "golden", "dataset": "fashion_mnist", "epsilons": [0.0, 0.1, 0.2], "norm": "inf",
          "attacks": [{"name": "fgsm", "params": {}}, {"name": "pgd", "params": {"steps": 10, "seed": 0}}]}
ENVIRONMENT = schema.Environment(versions={"python": "3.11.2", "numpy": "2.1.0"}, device="CPU only (2 cores)",
                                 platform="Linux", cpu_count=2)


def _curve(attack, params, clean, robust, epsilons=EPSILONS, seconds=1.25):
    robust = np.asarray(robust, bool) & clean
    low, high = wilson_interval(robust.sum(axis=1), robust.shape[1])
    return curves.Curve(attack=attack, norm="inf", params=params, epsilons=np.asarray(epsilons, np.float64),
                        robust_accuracy=robust.mean(axis=1), ci95_low=low, ci95_high=high,
                        n_examples=robust.shape[1], clean_accuracy=float(clean.mean()), seconds=seconds,
                        robust_mask=robust, clean_mask=clean)


def _evaluation(seed):
    rng = np.random.default_rng(seed)
    clean = rng.random(12) < 0.85
    fgsm = np.stack([clean, clean & (rng.random(12) < 0.7), clean & (rng.random(12) < 0.4)])
    pgd = fgsm & (rng.random((3, 12)) < 0.8)
    pgd[0] = clean
    found = (_curve("fgsm", {}, clean, fgsm, seconds=0.5), _curve("pgd", {"steps": 10, "seed": 0}, clean, pgd))
    return curves.ModelEvaluation(clean_accuracy=float(clean.mean()), n_examples=12, curves=found,
                                  worst_case=curves.worst_case(found))


def _model(index, name, baseline=None):
    entry = ModelEntry(name=name, dataset="fashion_mnist", baseline=baseline, path="given.keras")
    folder = runner.model_folder(index, name)
    card = {"defense": "none" if baseline is None else "pgd_at", "architecture": "cnn", "training_seconds": 3.5}
    return runner._Model(entry, folder, None, card, f"models/{folder}/model.keras", "spec")


def _checked(result, seed, with_transfer):
    """The verdicts and extra curves of the checks, as :func:`runner._run_checks` returns them."""
    rng = np.random.default_rng(seed + 100)
    clean = result.worst_case.clean_mask
    large = _curve("pgd", {"steps": 10, "seed": 0}, clean[:8], np.zeros((1, 8), bool), epsilons=[1.0])
    noise = _curve("noise", {"draws": 4, "seed": 0}, clean[:8], rng.random((3, 8)) < 0.95)
    transfer = _curve("pgd", {"steps": 10, "seed": 0}, clean[:8], rng.random((1, 8)) < 0.6, epsilons=[0.1])
    found = [checks.logits(np.eye(3) * 5.0 - 1.0), checks.gradients(np.array([1.0, 0.5, 0.0]))]
    found += [checks.monotone(curve) for curve in result.curves]
    found += checks.iterative_not_weaker(result.curves)
    found += [checks.large_eps(large), checks.noise_not_stronger(noise, result.worst_case),
              checks.black_box_not_stronger(transfer, result.worst_case, "base")]
    transfers = [schema.CurveRecord.of(transfer, source="base")] if with_transfer else []
    return found, schema.CheckCurves(schema.CurveRecord.of(large), schema.CurveRecord.of(noise), transfers)


def _grid_minimal_eps(result):
    """The minimal eps the runner derived from the worst case before it searched per example."""
    values = [None if np.isinf(value) else float(value)
              for value in minimal_eps_on_grid(result.worst_case.epsilons, result.worst_case.robust_mask)]
    return schema.MinimalEpsRecord(attack="worst case over the eps grid", norm="inf", values=values,
                                   note="smallest eps of the grid at which the example is not robust (an upper bound "
                                        "of its true minimal eps); null: robust at every eps of the grid")


def _golden_results(tmp_path):
    """The runner's records for two models (the second with a baseline), built as ``run`` builds them."""
    items = [_model(0, "base"), _model(1, "def <script>", baseline="base")]
    evaluations = [_evaluation(seed) for seed in range(2)]
    per_example = {item.entry.name: outcomes.from_evaluation(item.entry.name, "fashion_mnist", result,
                                                             labels=LABELS)
                   for item, result in zip(items, evaluations)}
    records = []
    for seed, (item, result) in enumerate(zip(items, evaluations)):
        found, check_curves = _checked(result, seed, with_transfer=seed == 1)
        mine = per_example[item.entry.name]
        paired = None if item.entry.baseline is None else schema.PairedVsBaseline.of(
            outcomes.compare(per_example["base"], mine))
        examples = f"examples/{item.folder}.npz" if seed == 0 else None
        records.append(runner._model_record(item, result, found, check_curves, examples, _grid_minimal_eps(result),
                                             mine, paired))
    return schema.Results(config=CONFIG, config_hash="0123abcd", started="2026-12-02T01:00:00+0000",
                          finished="2026-12-02T01:05:00+0000", seconds=300.0, environment=ENVIRONMENT,
                          models=records)


def test_the_runners_records_write_exactly_what_the_runner_wrote_before(tmp_path):
    results = _golden_results(tmp_path)
    assert results.to_json() == GOLDEN.read_text()
    assert runner._csv(results.models) == (DATA / "results_v1.csv").read_text()
    assert runner.summary_text(results) + "\n" == (DATA / "results_v1_summary.txt").read_text()


def test_reading_and_writing_again_gives_the_same_text():
    text = GOLDEN.read_text()
    results = schema.Results.from_dict(json.loads(text))
    assert results.to_json() == text and results.notes == ()
    assert results.models[1].paired_vs_baseline.baseline == "base" and results.models[0].paired_vs_baseline is None
    assert results.models[1].check_curves.transfer[0].source == "base"
    assert isinstance(results.models[0].checks[0], checks.Check)
    assert schema.read(GOLDEN) == results


def _golden():
    return json.loads(GOLDEN.read_text())


def _class(label, n, robust=(0.9, 0.5, 0.4)):
    return {"label": label, "n_examples": n, "clean_accuracy": 0.9, "robust_accuracy": list(robust),
            "ci95_low": [0.0] * 3, "ci95_high": [1.0] * 3}


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("models"), "results.json: missing 'models'"),
    (lambda r: r.update(schema_version=2), "schema_version: expected 1, got 2"),
    (lambda r: r["models"][1]["curves"][0]["robust_accuracy"].__setitem__(1, 1.5),
     "models[1].curves[0].robust_accuracy[1]: 1.5 is not a fraction"),
    (lambda r: r["models"][0]["curves"][0]["robust_accuracy"].pop(), "models[0].curves[0].robust_accuracy: 2 values "
                                                                     "for 3 epsilons"),
    (lambda r: r["models"][0]["curves"][1].update(ci95_low=[0.95, 0.0, 0.0]), "models[0].curves[1]: interval"),
    (lambda r: r["models"][0]["checks"][0].update(passed="yes"), "models[0].checks[0].passed: expected bool"),
    (lambda r: r["models"][0].update(per_class=[_class(0, 6), _class(1, 3)]), "models[0].per_class: the classes "
                                                                               "hold 9 examples, the model was "
                                                                               "evaluated on 12"),
    (lambda r: r["models"][0].update(per_class=[_class(0, 12, robust=[0.9, 1.2, 0.4])]),
     "models[0].per_class[0].robust_accuracy[1]: 1.2 is not a fraction"),
    (lambda r: r["models"][0]["per_class"][0].update(label="0"), "models[0].per_class[0].label: expected int"),
    (lambda r: r["models"][1].pop("outcomes"), "models[1]: missing 'outcomes' (an older results.json: read it "
                                               "with strict=False)"),
    (lambda r: r["models"][0].pop("card"), "models[0]: missing 'card'"),
    (lambda r: r["models"][1]["check_curves"]["transfer"][0].pop("source"),
     "models[1].check_curves.transfer[0]: missing 'source'"),
    (lambda r: r["models"][1]["paired_vs_baseline"]["rows"][0].update(ci95_low=0.5),
     "models[1].paired_vs_baseline.rows[0]: need -1 <= ci95_low <= difference"),
    (lambda r: r["models"][0]["minimal_eps"]["values"].__setitem__(0, "inf"),
     "models[0].minimal_eps.values[0]: expected a finite number, got 'inf'"),
    (lambda r: r["models"][0].update(clean_accuracy=float("nan")), "models[0].clean_accuracy: nan is not a "
                                                                   "fraction"),
    (lambda r: r["models"].append("junk"), "models[2]: expected an object, got str"),
    (lambda r: r["models"][0]["curves"][1]["broken_by"][2].update(pgd=1),
     "models[0].curves[1].broken_by[2]: the counts add up to 1, but"),
    (lambda r: r["models"][0]["curves"][1]["broken_by"].pop(), "models[0].curves[1].broken_by: 2 entries for 3"),
    (lambda r: r["models"][0]["curves"][0]["broken_by"][1].update(fgsm=-1),
     "models[0].curves[0].broken_by[1].fgsm: -1 is negative"),
    (lambda r: r["models"][1]["check_curves"]["transfer"][0].pop("broken_by"),
     "models[1].check_curves.transfer[0]: missing 'broken_by' (an older results.json: read it with strict=False)"),
])
def test_strict_reading_names_the_path_of_a_problem(mutate, message):
    schema.validate(_golden())
    broken = copy.deepcopy(_golden())
    mutate(broken)
    with pytest.raises(schema.SchemaError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        schema.validate(broken)


def _uncounted(document):
    """``document`` as written before curves counted the points each attack broke."""
    for model in document["models"]:
        checked = model["check_curves"]
        for curve in (*model["curves"], checked["large_eps"], checked["noise"], *checked["transfer"]):
            del curve["broken_by"]
    return document


def test_lenient_reading_takes_results_written_before_outcomes_were_kept():
    old = _uncounted(_golden())
    for model in old["models"]:
        del model["per_class"], model["outcomes"]
    with pytest.raises(schema.SchemaError, match=r"models\[0\]: missing 'per_class'.*strict=False"):
        schema.Results.from_dict(old)
    results = schema.Results.from_dict(old, strict=False)
    assert [model.per_class for model in results.models] == [None, None]
    assert [model.outcomes for model in results.models] == [None, None]
    assert len(results.notes) == 4 and "models[1] ('def <script>'): no per_class or outcomes" in results.notes[2]
    assert "models[1] ('def <script>'): curves without broken_by counts" in results.notes[3]
    assert all(curve.broken_by is None for model in results.models for curve in model.curves)
    assert results.to_dict() == old  # nothing is made up on the way back
    broken = copy.deepcopy(old)
    broken["models"][0].pop("checks")
    with pytest.raises(schema.SchemaError, match=r"models\[0\]: missing 'checks'"):  # every version wrote it
        schema.Results.from_dict(broken, strict=False)


def test_each_curve_counts_the_points_each_attack_broke_and_reads_back_strictly():
    document = _golden()
    for model, result in zip(document["models"], [_evaluation(seed) for seed in range(2)]):
        for written, curve in zip(model["curves"], result.curves):
            broken = curve.clean_mask.sum() - curve.robust_mask.sum(axis=1)
            assert written["broken_by"] == [{curve.attack: int(count)} for count in broken]
    assert schema.Results.from_dict(document).models[0].curves[1].broken_by[2] == {"pgd": 8}


def test_an_ensembles_members_counts_round_trip():
    clean = np.array([True, True, True, False])
    robust = np.array([clean, [True, False, False, False]])
    curve = dataclasses.replace(_curve("autoattack", {"preset": "fast"}, clean, robust, epsilons=[0.0, 0.1]),
                                members_broken=({"apgd-ce": 0, "apgd-t": 0}, {"apgd-ce": 1, "apgd-t": 1}))
    record = schema.CurveRecord.of(curve)
    assert record.broken_by == [{"apgd-ce": 0, "apgd-t": 0}, {"apgd-ce": 1, "apgd-t": 1}]
    assert schema.CurveRecord.from_dict(json.loads(json.dumps(record.to_dict())), "c") == record
    wrong = {**record.to_dict(), "broken_by": [{"apgd-ce": 0}, {"apgd-ce": 1}]}
    with pytest.raises(schema.SchemaError, match=r"^c.broken_by\[1\]: the counts add up to 1, but 2 of the 4"):
        schema.CurveRecord.from_dict(wrong, "c")


def test_a_searched_minimal_eps_keeps_its_params_and_seconds_and_older_ones_read_without():
    searched = _golden()
    searched["models"][0]["minimal_eps"].update(attack="minimal_epsilon", params={"steps": 10, "n_examples": 12},
                                                seconds=1.5)
    schema.validate(searched)
    record = schema.Results.from_dict(searched).models[0].minimal_eps
    assert record.params == {"steps": 10, "n_examples": 12} and record.seconds == 1.5
    assert schema.Results.from_dict(searched).to_dict() == searched
    older = schema.Results.from_dict(_golden()).models[0].minimal_eps
    assert older.params is None and older.seconds is None and "params" not in older.to_dict()
    searched["models"][0]["minimal_eps"]["seconds"] = "slow"
    with pytest.raises(schema.SchemaError, match=r"models\[0\]\.minimal_eps\.seconds: expected a finite number"):
        schema.validate(searched)


def test_read_says_what_is_wrong_with_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        schema.read(tmp_path / "results.json")
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(schema.SchemaError, match="is not valid JSON"):
        schema.read(tmp_path / "results.json")
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(schema.SchemaError, match="results.json: expected an object, got list"):
        schema.read(tmp_path / "results.json")


def test_outcome_paths_read_only_names_and_outcomes(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema_version": 1, "source": "a script", "models": [
        {"name": "a", "outcomes": "outcomes/a.npz"}, {"name": "b"}]}))
    assert schema.outcome_paths(path) == {"a": "outcomes/a.npz", "b": None}
    assert schema.outcome_paths(GOLDEN) == {"base": "outcomes/00-base.npz",
                                            "def <script>": "outcomes/01-def_script.npz"}
    path.write_text(json.dumps({"models": [{"outcomes": "x.npz"}]}))
    with pytest.raises(schema.SchemaError, match=r"models\[0\]: missing 'name'"):
        schema.outcome_paths(path)


def test_reading_results_outcomes_and_reports_imports_no_tensorflow():
    code = ("import sys\n"
            "from advrobust.results import outcome_files, outcomes, schema\n"
            "from advrobust.reporting import view, build_report\n"
            f"schema.read({str(GOLDEN)!r})\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_certified_models_bracket_round_trips_and_its_lengths_are_checked():
    document = _golden()
    certified = {"method": "crown_ibp", "norm": "inf", "epsilons": [0.0, 0.1, 0.3],
                 "certified_accuracy": [0.9, 0.5, 0.25], "ci95_low": [0.8, 0.4, 0.15], "ci95_high": [0.95, 0.6, 0.35],
                 "n_examples": 20, "seconds": 1.5, "attacked_accuracy": [0.9, 0.7, 0.4]}
    document["models"][0]["certified"] = [certified]
    results = schema.Results.from_dict(document)
    record = results.models[0].certified[0]
    assert (record.method, record.attacked_accuracy) == ("crown_ibp", [0.9, 0.7, 0.4])
    assert results.models[1].certified is None and "certified" not in results.models[1].to_dict()
    assert json.loads(results.to_json())["models"][0]["certified"] == [certified]
    short = {**certified, "attacked_accuracy": [0.9, 0.7]}
    with pytest.raises(schema.SchemaError, match=r"models\[0\]\.certified\[0\]\.attacked_accuracy: 2 values for 3"):
        schema.Results.from_dict({**document, "models": [{**document["models"][0], "certified": [short]}]})
    outside = {**certified, "ci95_low": [0.95, 0.4, 0.15]}
    with pytest.raises(schema.SchemaError, match=r"interval \[0.95, 0.95\] does not contain 0.9"):
        schema.Results.from_dict({**document, "models": [{**document["models"][0], "certified": [outside]}]})
