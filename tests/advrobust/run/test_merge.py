"""advrobust.run.merge: two shards of a small real run, merged, equal the unsharded run (results.json,
results.csv, outcomes, examples, report and figures, but for times); each shard computes half the
units and half the minimal-eps search; merges of foreign, missing, repeated, unfinished or
overlapping shards are refused in one line."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3

import numpy as np
import pytest

from advrobust import cli, models
from advrobust.results import outcome_files
from advrobust.run import config, merge, runner
from advrobust.run.shard import Shard

# 2 models x (fgsm, pgd, large-eps check, noise check, transfer check) x 2 chunks of 30 images.
CONFIG = """
[run]
name = "sharded"
dataset = "mnist"
epsilons = [0.0, 0.1, 0.3]
n_examples = 60
batch_size = 30
check_examples = 60
examples = 2
noise_draws = 2

[[attacks]]
name = "fgsm"

[[attacks]]
name = "pgd"
params = { steps = 3, seed = 0 }

[[models]]
name = "trained"
path = "trained.keras"

[[models]]
name = "untrained"
baseline = "trained"
path = "untrained.keras"

[certified]
methods = ["ibp"]
"""
UNITS = 2 * 6 * 2  # models x (fgsm, pgd, ibp bounds, three checks' attacks) x chunks

# What may differ between a merged and an unsharded run: when each ran and how long its parts took
# (and, in the report, the run folder's own path).
TIMESTAMPS = ("started", "finished")  # results.json, top level
DURATION_KEYS = ("seconds", "training_seconds")  # at any depth of results.json
CSV_TIME_COLUMN = "seconds"
_REPORT_TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}|\b\d+(\.\d+)? (s|min|h)\b")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, trained_mnist_cnn):
    """The same config run whole, as shards 1/2 (by the API) and 2/2 (by the CLI), and merged (by the
    CLI): {name: folder}."""
    root = tmp_path_factory.mktemp("sharded")
    card = {"dataset": "mnist", "architecture": "cnn", "defense": "none"}
    models.save(trained_mnist_cnn[0], root / "trained.keras", card)
    models.save(models.build("cnn", dropout=False, seed=3), root / "untrained.keras", card)
    (root / "run.toml").write_text(CONFIG)
    run_config = config.load(root / "run.toml")
    runner.run(run_config, root / "whole", progress=False)
    assert runner.run(run_config, root / "shard1", progress=False, part=Shard(1, 2)) is None
    assert cli.main(["run", str(root / "run.toml"), "--out", str(root / "shard2"), "--shard", "2/2"]) == 0
    assert cli.main(["merge", str(root / "shard2"), str(root / "shard1"), "--out", str(root / "merged")]) == 0
    return {name: root / name for name in ("whole", "shard1", "shard2", "merged")}


def _without_times(document):
    if isinstance(document, dict):
        return {key: _without_times(value) for key, value in document.items() if key not in DURATION_KEYS}
    if isinstance(document, list):
        return [_without_times(value) for value in document]
    return document


def _results(folder):
    document = json.loads((folder / "results.json").read_text())
    return _without_times({key: value for key, value in document.items() if key not in TIMESTAMPS})


def _unit_keys(folder):
    with sqlite3.connect(folder / "store.sqlite") as connection:
        return set(connection.execute("SELECT model, attack, batch FROM units"))


def test_two_shards_merged_give_the_results_of_one_run(runs):
    whole, merged = _results(runs["whole"]), _results(runs["merged"])
    assert merged == whole
    assert {check["name"] for check in whole["models"][0]["checks"]} >= {"large eps (inf 1)", "noise not stronger",
                                                                       "black box not stronger (untrained)"}
    assert whole["models"][0]["clean_accuracy"] > 0.9 and whole["models"][1]["paired_vs_baseline"] is not None
    assert [record["method"] for record in whole["models"][0]["certified"]] == ["ibp"]  # bounds shard as units


def test_merged_csv_outcomes_and_examples_equal_the_unsharded_run(runs):
    def rows(folder):
        lines = [line.split(",") for line in (folder / "results.csv").read_text().splitlines()]
        drop = lines[0].index(CSV_TIME_COLUMN)
        return [line[:drop] + line[drop + 1:] for line in lines]

    assert rows(runs["merged"]) == rows(runs["whole"])
    for record in json.loads((runs["whole"] / "results.json").read_text())["models"]:
        mine, theirs = (outcome_files.read(runs[name] / record["outcomes"]) for name in ("merged", "whole"))
        assert mine.name == theirs.name and mine.per_attack.keys() == theirs.per_attack.keys()
        for field in ("epsilons", "clean", "worst", "labels"):
            np.testing.assert_array_equal(getattr(mine, field), getattr(theirs, field))
        for key in theirs.per_attack:
            np.testing.assert_array_equal(mine.per_attack[key], theirs.per_attack[key])
        with np.load(runs["merged"] / record["examples"]) as mine, np.load(runs["whole"] / record["examples"]) as theirs:
            assert sorted(mine.files) == sorted(theirs.files)
            for name in theirs.files:
                np.testing.assert_array_equal(mine[name], theirs[name])


def test_merged_report_equals_the_unsharded_report_but_for_times(runs):
    for name in ("report.md", "report.html"):
        mine, theirs = (_REPORT_TIMES.sub("TIME", (runs[run] / name).read_text().replace(str(runs[run]), "RUN"))
                        for run in ("merged", "whole"))
        assert mine == theirs, name
    figures = sorted(path.name for path in (runs["whole"] / "figures").iterdir())
    assert figures and figures == sorted(path.name for path in (runs["merged"] / "figures").iterdir())
    for figure in figures:
        assert (runs["merged"] / "figures" / figure).read_bytes() == (runs["whole"] / "figures" / figure).read_bytes()


def test_each_shard_computes_half_the_units_and_together_all(runs):
    whole, first, second = (_unit_keys(runs[name]) for name in ("whole", "shard1", "shard2"))
    assert len(whole) == UNITS and first | second == whole and not first & second
    assert max(len(first), len(second)) <= 0.55 * len(whole)
    assert _unit_keys(runs["merged"]) == whole
    for index, shard in ((1, first), (2, second)):
        record = json.loads((runs[f"shard{index}"] / "shard.json").read_text())
        assert record == {"shard": index, "shards": 2, "config_hash": config.load(runs["whole"].parent / "run.toml").hash(),
                          "finished": True, "units": len(shard)}
        assert not (runs[f"shard{index}"] / "results.json").exists()  # a shard alone has no results


def _minimal_eps_chunks(folder):
    with sqlite3.connect(folder / "store.sqlite") as connection:
        return set(connection.execute("SELECT model, start, finished, eps FROM minimal_eps_chunks"))


def test_the_minimal_eps_search_is_split_between_the_shards_and_read_not_run_by_the_merge(runs):
    whole, first, second, merged = (_minimal_eps_chunks(runs[name]) for name in ("whole", "shard1", "shard2",
                                                                               "merged"))
    keys = {(model, start) for model, start, _, _ in whole}
    assert keys == {(model, start) for model in ("trained", "untrained") for start in (0, 30)}  # 60 in chunks of 30
    assert len(first) == len(second) == 2 and first | second == merged  # copied as they were: same finish times
    assert {(model, start) for model, start, _, _ in merged} == keys
    assert {(model, start, eps) for model, start, _, eps in merged} == {(model, start, eps) for model, start, _, eps
                                                                        in whole}


@pytest.mark.parametrize("older", [False, True], ids=["row deleted", "shard of an older version"])
def test_merge_refuses_a_minimal_eps_chunk_that_no_shard_holds(older, runs, tmp_path):
    second = _copy(runs, "shard2", tmp_path)
    with sqlite3.connect(second / "store.sqlite") as connection:
        model, start = connection.execute("SELECT model, start FROM minimal_eps_chunks ORDER BY model, start"
                                          ).fetchone()
        if older:  # made before the search ran in chunks: no table at all
            connection.execute("DROP TABLE minimal_eps_chunks")
        else:
            connection.execute("DELETE FROM minimal_eps_chunks WHERE model = ? AND start = ?", (model, start))
    with pytest.raises(merge.MergeError, match=rf"minimal_eps \(model '{model}', chunk {start // 30}\) is in no "
                                               "shard"):
        merge.merge([runs["shard1"], second], tmp_path / "merged", progress=False)
    assert not (tmp_path / "merged" / "results.json").exists()


def test_merge_refuses_a_minimal_eps_chunk_from_two_shards(runs, tmp_path):
    second = _copy(runs, "shard2", tmp_path)
    with sqlite3.connect(runs["shard1"] / "store.sqlite") as source, sqlite3.connect(second / "store.sqlite") as target:
        row = source.execute("SELECT * FROM minimal_eps_chunks ORDER BY model, start LIMIT 1").fetchone()
        target.execute(f"INSERT INTO minimal_eps_chunks VALUES ({', '.join('?' * len(row))})", row)
    with pytest.raises(merge.MergeError, match=rf"minimal eps \(model '{row[0]}', chunk from check example "
                                               rf"{row[1]}\) is in both .*shard1 and .*shard2-copy"):
        merge.merge([runs["shard1"], second], tmp_path / "merged", progress=False)


def _copy(runs, name, tmp_path, **record):
    """A copy of a shard folder, its shard.json changed by ``record``."""
    folder = shutil.copytree(runs[name], tmp_path / f"{name}-copy")
    document = json.loads((folder / "shard.json").read_text())
    (folder / "shard.json").write_text(json.dumps({**document, **record}))
    return folder


@pytest.mark.parametrize("case, message", [
    ("other config", r"shards of different configs: .*shard1 has config \w+, .*shard2-copy has 000000000000"),
    ("missing", r"shard\(s\) 2/2 missing: the shards given do not cover the run"),
    ("twice", r"shard 1/2 is given twice: .*shard1 and .*shard1"),
    ("other count", r"shards of different counts: .*shard1 is 1/2, .*shard2-copy is 2/3"),
    ("unfinished", r"shard 2/2 in .*shard2-copy has not finished; continue it with `advrobust run CONFIG --out "),
    ("not a shard", r"whole is not a shard folder \(no shard.json\)"),
])
def test_merge_refuses_what_is_not_every_finished_shard_of_one_config(case, message, runs, tmp_path, capsys):
    shards = {"other config": lambda: [runs["shard1"], _copy(runs, "shard2", tmp_path, config_hash="0" * 64)],
              "missing": lambda: [runs["shard1"]],
              "twice": lambda: [runs["shard1"], runs["shard1"], runs["shard2"]],
              "other count": lambda: [runs["shard1"], _copy(runs, "shard2", tmp_path, shards=3)],
              "unfinished": lambda: [runs["shard1"], _copy(runs, "shard2", tmp_path, finished=False)],
              "not a shard": lambda: [runs["shard1"], runs["whole"]]}[case]()
    with pytest.raises(merge.MergeError, match=message):
        merge.merge(shards, tmp_path / "merged", progress=False)
    assert not (tmp_path / "merged").exists()
    assert cli.main(["merge", *map(str, shards), "--out", str(tmp_path / "merged")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and re.match(f"advrobust: error: .*{message}", error)


def test_merge_refuses_a_unit_from_two_shards(runs, tmp_path):
    second = _copy(runs, "shard2", tmp_path)
    with sqlite3.connect(runs["shard1"] / "store.sqlite") as source, sqlite3.connect(second / "store.sqlite") as target:
        columns = [row[1] for row in source.execute("PRAGMA table_info(units)")]
        row = source.execute("SELECT * FROM units ORDER BY model, attack, batch LIMIT 1").fetchone()
        target.execute(f"INSERT INTO units ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", row)
    with pytest.raises(merge.MergeError, match=r"unit \(model 'trained', attack 'certified:ibp', chunk \d\) "
                                               r"is in both .*shard1 and .*shard2-copy"):
        merge.merge([runs["shard1"], second], tmp_path / "merged", progress=False)


def test_merge_refuses_a_unit_that_no_shard_holds(runs, tmp_path):
    second = _copy(runs, "shard2", tmp_path)
    with sqlite3.connect(second / "store.sqlite") as connection:
        model, attack, batch = connection.execute("SELECT model, attack, batch FROM units WHERE model = 'trained' "
                                                  "AND attack LIKE '%fgsm%'").fetchone()
        connection.execute("DELETE FROM units WHERE model = ? AND attack = ? AND batch = ?", (model, attack, batch))
    with pytest.raises(merge.MergeError, match=rf"unit \(model 'trained', attack '{re.escape(attack)}', chunk "
                                               rf"{batch}\) is in no shard"):
        merge.merge([runs["shard1"], second], tmp_path / "merged", progress=False)
    assert not (tmp_path / "merged" / "results.json").exists()


def test_merge_refuses_shards_that_attacked_different_model_files(runs, tmp_path):
    second = _copy(runs, "shard2", tmp_path)
    model_file = second / "models" / "01-untrained" / "model.keras"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    with pytest.raises(merge.MergeError, match="model 'untrained' differs between .*shard1 and .*shard2-copy"):
        merge.merge([runs["shard1"], second], tmp_path / "merged", progress=False)


def test_merge_writes_only_into_a_new_or_empty_folder(runs, tmp_path):
    with pytest.raises(merge.MergeError, match="is not empty; a merge writes a new run"):
        merge.merge([runs["shard1"], runs["shard2"]], runs["whole"], progress=False)
