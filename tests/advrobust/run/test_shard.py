"""advrobust.run.shard: --shard I/N parsed, and refused in one line; every unit belongs to exactly
one shard, each curve split evenly; a shard's cache leaves the other shards' units alone, and
the shards' units together give the whole curve; a shard never trains: it copies the models of
a --train-only run, and its folder holds that one shard."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from advrobust import cli, models
from advrobust.evaluation import robust_accuracy_curve
from advrobust.evaluation.curves import ELSEWHERE
from advrobust.run import config, runner
from advrobust.run.shard import SHARD_FILE, Shard, ShardError, parse, read_record
from advrobust.run.store import STORE_NAME, ResultStore, StoredUnits
from tests.advrobust.conftest import cnn_and_data

BAD_SHARDS = ["0/2", "3/2", "x", "1/0", "", "1/2/3", "-1/2", "1 of 2"]


def test_parse_reads_i_of_n():
    assert parse("2/3") == Shard(2, 3) and parse(" 1 / 1 ") == Shard(1, 1)
    assert parse(None) is None
    assert parse("1/2").flags() == ["--shard", "1/2"]


@pytest.mark.parametrize("text", BAD_SHARDS)
def test_a_bad_shard_is_refused(text):
    with pytest.raises(ValueError, match=r"--shard must be I/N with 1 <= I <= N .*got "):
        parse(text)


@pytest.mark.parametrize("index, count", [(0, 2), (3, 2), (1, 0), (True, 2), (1.0, 2)])
def test_a_shard_is_i_of_n(index, count):
    with pytest.raises(ValueError, match="a shard is I/N with 1 <= I <= N"):
        Shard(index, count)


@pytest.mark.parametrize("flags, message", [
    *[(["--shard", text], "--shard must be I/N with 1 <= I <= N") for text in ("0/2", "3/2", "x")],
    (["--models-from", "."], "--models-from goes with --shard I/N"),
    (["--shard", "1/2", "--models-from", "no-such-folder"], "--models-from 'no-such-folder' is not a folder"),
    (["--shard", "1/2", "--train-only"], "--train-only trains the models for the shards; it is not itself a shard"),
])
def test_the_cli_refuses_bad_shard_flags_in_one_line(flags, message, tmp_path, capsys):
    assert cli.main(["run", "--out", str(tmp_path / "out"), *flags]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"advrobust: error: {message}") and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def _spread(counter, count):
    return max(counter.values()) - min(counter.get(index, 0) for index in range(1, count + 1))


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_every_unit_belongs_to_one_shard_and_each_curve_is_split_evenly(count):
    shards = [Shard(index, count) for index in range(1, count + 1)]
    overall = Counter()
    for model in ("cnn", "nsl-cnn"):
        for attack, chunks in (('{"name": "pgd"}', 7), ("check:noise", 1), ("check:large_eps:pgd", 2),
                               ("check:transfer:cnn:0123", 10)):
            owners = [[shard.index for shard in shards if shard.owns(model, attack, batch)] for batch in range(chunks)]
            assert all(len(owner) == 1 for owner in owners)
            per_curve = Counter(owner[0] for owner in owners)
            assert _spread(per_curve, count) <= 1
            overall += per_curve
    assert _spread(overall, count) <= 1
    # A unit keeps the number it got when first asked about: the first one is shard 1's.
    assert [shard.owns("cnn", '{"name": "pgd"}', 0) for shard in shards] == [True] + [False] * (count - 1)


def test_shards_compute_disjoint_units_that_together_give_the_whole_curve(tmp_path):
    model, x, y = cnn_and_data(n=40)
    options = dict(attack="fgsm", epsilons=[0.0, 0.05, 0.1], batch_size=10, progress=False)
    whole = robust_accuracy_curve(model, x, y, **options)
    stores = [ResultStore(tmp_path / f"{index}.sqlite", config_hash="h", config={}, resume=False) for index in (1, 2)]
    for index, store in enumerate(stores, start=1):
        robust_accuracy_curve(model, x, y, cache=Shard(index, 2).units(StoredUnits(store, "m"), "m"), **options)
    assert [store.unit_count() for store in stores] == [2, 2]

    class Both:
        def get(self, *key):
            return StoredUnits(stores[0], "m").get(*key) or StoredUnits(stores[1], "m").get(*key)

        def put(self, *args):
            raise AssertionError("every unit is stored by one of the shards")

    merged = robust_accuracy_curve(model, x, y, cache=Both(), **options)
    np.testing.assert_array_equal(merged.robust_mask, whole.robust_mask)
    np.testing.assert_array_equal(merged.clean_mask, whole.clean_mask)
    units = Shard(1, 2).units(StoredUnits(stores[0], "m"), "m")
    assert [units.get("another attack", batch) for batch in range(4)] == [None, ELSEWHERE, None, ELSEWHERE]


TRAINED = """
[run]
dataset = "mnist"
epsilons = [0.0, 0.1]
n_examples = 20
[[attacks]]
name = "fgsm"
[[models]]
name = "given"
path = "given.keras"
[[models]]
name = "cnn"
train = { model = "cnn", dropout = false, epochs = 1, train_subset = 256, test_subset = 100 }
"""


@pytest.fixture
def trained_config(tmp_path):
    models.save(models.build("cnn", dropout=False, seed=1), tmp_path / "given.keras", {"dataset": "mnist"})
    return config.loads(TRAINED, base_dir=tmp_path)


def _store(run_config, folder):
    return ResultStore(folder / STORE_NAME, config_hash=run_config.hash(), config=run_config.to_dict(), resume=True)


def test_a_shard_never_trains(trained_config, tmp_path):
    out = tmp_path / "shard"
    with _store(trained_config, out) as store:
        with pytest.raises(ShardError, match=r"model 'cnn' is trained by the config, and a shard never trains .*"
                                             r"`advrobust run CONFIG --out MODELS --train-only`"):
            Shard(1, 2).prepare(trained_config, store, out)
        (tmp_path / "empty").mkdir()
        with pytest.raises(ShardError, match="model 'cnn' is not trained in .*empty; train it there with"):
            Shard(1, 2, tmp_path / "empty").prepare(trained_config, store, out)


def test_every_shard_copies_the_models_a_train_only_run_made(trained_config, tmp_path):
    assert runner.run(trained_config, tmp_path / "models", progress=False, train_only=True) is None
    assert not (tmp_path / "models" / "results.json").exists()
    trained = (tmp_path / "models" / "models" / "01-cnn" / "model.keras").read_bytes()
    for index in (1, 2):
        out = tmp_path / f"shard{index}"
        with _store(trained_config, out) as store:
            Shard(index, 2, tmp_path / "models").prepare(trained_config, store, out)
            assert store.model("cnn", runner.model_spec(trained_config.model("cnn"), trained_config)) is not None
            assert store.model("given") is None  # a model file is copied by the runner, as in any run
        assert (out / "models" / "01-cnn" / "model.keras").read_bytes() == trained
        assert read_record(out) == {"shard": index, "shards": 2, "config_hash": trained_config.hash(),
                                    "finished": False, "units": 0}


def test_a_shard_folder_holds_one_shard(trained_config, tmp_path):
    out = tmp_path / "shard"
    with _store(trained_config, out) as store:
        store.put_model("given", "models/00-given/model.keras", {})
        with pytest.raises(ShardError, match="holds a run that is not a shard; give each shard a folder of its own"):
            Shard(1, 2).prepare(trained_config, store, out)
        (out / SHARD_FILE).write_text('{"shard": 1, "shards": 2, "config_hash": "h", "finished": false, "units": 0}')
        with pytest.raises(ShardError, match="holds shard 1/2, not 2/2; give each shard a folder of its own"):
            Shard(2, 2).prepare(trained_config, store, out)
