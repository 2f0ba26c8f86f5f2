"""Run configs (TOML), the SQLite results store and the sanity checks (results.json: test_results_schema.py)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from advrobust.evaluation import curves
from advrobust.evaluation import checks
from advrobust.run import config, runner
from advrobust.run.store import ResultStore, StoredUnits, StoreMismatchError
from tests.conftest import REPO

BASE = """
[run]
dataset = "mnist"
epsilons = [0.0, 0.1]
[[attacks]]
name = "pgd"
params = { steps = 3 }
[[models]]
name = "a"
train = { model = "cnn", epochs = 1 }
"""


def test_default_config_is_the_quick_fashion_mnist_comparison():
    default = config.load()
    assert default.dataset == "fashion_mnist" and default.norm == "inf"
    assert default.epsilons == (0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3)
    assert [a.name for a in default.attacks] == ["fgsm", "pgd"]
    names = [m.name for m in default.models]
    assert {"cnn", "nsl-cnn", "vgg19"} <= set(names)
    assert default.model("nsl-cnn").baseline == "cnn"
    assert default.n_for(default.model("cnn")) >= 1000
    assert default.model("nsl-cnn").train_config(0).defense == "nsl"


def test_hash_is_stable_and_changes_with_the_config():
    first, second = config.loads(BASE), config.loads(BASE)
    assert first.hash() == second.hash()
    assert config.loads(BASE.replace("0.1]", "0.2]")).hash() != first.hash()
    assert config.loads(BASE.replace("steps = 3", "steps = 4")).hash() != first.hash()


@pytest.mark.parametrize("change, message", [
    (("[run]", "[run]\nbogus = 1"), "unknown key(s) ['bogus']"),
    (("[0.0, 0.1]", "[0.1, 0.0]"), "increasing"),
    (("[0.0, 0.1]", "[-0.1, 0.1]"), ">= 0.0"),
    (("[0.0, 0.1]", "[]"), "non-empty list"),
    (('name = "pgd"', 'name = "pgdd"'), "unknown attack 'pgdd'"),
    (("steps = 3", "stepz = 3"), "takes no parameter(s) ['stepz']"),
    (("steps = 3", "eps = 3"), "set 'eps' in [run]"),
    (('model = "cnn", epochs = 1', 'model = "cnn", epochs = 0'), "epochs must be >= 1"),
    (('model = "cnn"', 'model = "resnet"'), "unknown model 'resnet'"),
    (('train = { model = "cnn", epochs = 1 }', 'path = "missing.keras"'), "does not exist"),
    (('train = { model = "cnn", epochs = 1 }', 'train = { model = "cnn" }\nbaseline = "zz"'), "baseline 'zz'"),
    (('dataset = "mnist"', 'dataset = "cifar"'), "unknown dataset 'cifar'"),
    (("[run]", "[run"), "not valid TOML"),
])
def test_bad_configs_fail_before_any_work_with_a_clear_message(change, message):
    with pytest.raises(config.ConfigError) as error:
        config.loads(BASE.replace(*change))
    assert message in str(error.value)


def test_duplicate_model_names_and_a_model_with_path_and_train_are_refused(tmp_path):
    twice = BASE + '[[models]]\nname = "a"\ntrain = { model = "cnn" }\n'
    with pytest.raises(config.ConfigError, match="unique"):
        config.loads(twice)
    model_file = tmp_path / "m.keras"
    model_file.write_bytes(b"x")
    both = BASE.replace('train = { model = "cnn", epochs = 1 }',
                        'train = { model = "cnn" }\npath = "m.keras"')
    with pytest.raises(config.ConfigError, match="exactly one of path"):
        config.loads(both, base_dir=tmp_path)


def test_store_round_trips_units_and_refuses_another_config(tmp_path):
    path = tmp_path / "store.sqlite"
    clean = np.array([True, False, True])
    robust = np.array([[True, False, True], [False, False, True]])
    with ResultStore(path, config_hash="h1", config={}, resume=False) as store:
        assert store.unit("m", "pgd", 0) is None
        store.put_unit("m", "pgd", 0, [0.0, 0.1], clean, robust, 1.5)
        store.put_model("m", "models/m/model.keras", {"defense": "none"})
    with pytest.raises(StoreMismatchError, match="different config"):
        ResultStore(path, config_hash="h2", config={}, resume=True)
    with pytest.raises(StoreMismatchError, match="--resume"):
        ResultStore(path, config_hash="h1", config={}, resume=False)
    with ResultStore(path, config_hash="h1", config={}, resume=True) as store:
        got_clean, got_robust, seconds = store.unit("m", "pgd", 0)
        assert np.array_equal(got_clean, clean) and np.array_equal(got_robust, robust) and seconds == 1.5
        assert store.model("m") == ("models/m/model.keras", {"defense": "none"})


def _curve(attack, accuracies, n=100, epsilons=None, robust_mask=None, clean_mask=None):
    accuracies = np.asarray(accuracies, dtype=float)
    epsilons = np.linspace(0, 0.3, len(accuracies)) if epsilons is None else np.asarray(epsilons)
    if robust_mask is None:
        robust_mask = np.arange(n)[None, :] < np.round(accuracies * n)[:, None]
    if clean_mask is None:
        clean_mask = robust_mask[0].copy()
    return curves._curve(attack, "inf", {}, epsilons, clean_mask, robust_mask, 1.0)


def test_monotone_check_flags_a_rising_curve_and_passes_a_falling_one():
    assert checks.monotone(_curve("pgd", [0.9, 0.5, 0.2])).passed
    failed = checks.monotone(_curve("pgd", [0.9, 0.4, 0.6]))
    assert not failed.passed and "0.400 -> 0.600" in failed.detail


def test_iterative_weaker_than_fgsm_fails():
    fgsm = _curve("fgsm", [0.9, 0.5, 0.3])
    assert all(c.passed for c in checks.iterative_not_weaker([fgsm, _curve("pgd", [0.9, 0.3, 0.1])]))
    [verdict] = checks.iterative_not_weaker([fgsm, _curve("pgd", [0.9, 0.6, 0.1])])
    assert not verdict.passed and "eps 0.15" in verdict.detail


def test_large_eps_check_needs_accuracy_near_zero():
    assert checks.large_eps(_curve("pgd", [0.0], epsilons=[1.0])).passed
    assert not checks.large_eps(_curve("pgd", [0.2], epsilons=[1.0])).passed


def test_noise_that_fools_what_the_white_box_missed_is_flagged():
    n = 100
    worst = _curve("worst_case", [1.0, 0.5, 0.5], n=n)  # examples 0..49 robust at eps > 0
    weak_noise = _curve("noise", [1.0, 0.8, 0.6], n=n)  # fools only examples the white box fooled too
    assert checks.noise_not_stronger(weak_noise, worst).passed
    mask = np.ones((3, n), bool)
    mask[1:, :10] = False  # fools examples 0..9, which the white box could not
    strong_noise = _curve("noise", [1.0, 0.9, 0.9], n=n, robust_mask=mask, clean_mask=np.ones(n, bool))
    verdict = checks.noise_not_stronger(strong_noise, worst)
    assert not verdict.passed and "10 of 100" in verdict.detail
    transfer = _curve("pgd", [0.9], n=n, epsilons=[0.15], robust_mask=mask[1:2], clean_mask=np.ones(n, bool))
    assert not checks.black_box_not_stronger(transfer, worst, "other").passed


def test_logits_and_gradient_checks():
    assert checks.logits(np.array([[2.0, -1.0], [0.5, 3.0]])).passed
    assert not checks.logits(np.array([[0.2, 0.8], [0.5, 0.5]])).passed
    assert not checks.logits(np.array([[np.nan, 0.0]])).passed
    assert checks.gradients(np.array([1.0, 2.0, 0.5])).passed
    assert not checks.gradients(np.array([0.0, 0.0, 1.0])).passed
    assert not checks.gradients(np.array([np.inf, 1.0])).passed


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.toml")), ids=lambda p: p.name)
def test_every_experiment_config_is_valid(path):
    loaded = config.load(path)
    assert loaded.models and loaded.attacks and loaded.epsilons[0] == 0.0


def test_store_reuses_a_unit_or_model_only_under_the_same_spec(tmp_path):
    path = tmp_path / "store.sqlite"
    clean, robust = np.array([True, True]), np.array([[True, False]])
    with ResultStore(path, config_hash="h1", config={}, resume=False) as store:
        store.put_unit("m", "pgd", 0, [0.1], clean, robust, 1.0, spec="s1")
        store.put_model("m", "models/m/model.keras", {}, spec="m1")
        assert store.unit("m", "pgd", 0, "s1") is not None and store.unit("m", "pgd", 0, "s2") is None
        assert store.model("m", "m1") is not None and store.model("m", "m2") is None
        assert store.model("m") is not None  # no spec asked: whatever is stored under the name


def test_store_update_goes_on_under_a_changed_config(tmp_path):
    path = tmp_path / "store.sqlite"
    clean, robust = np.array([True, True]), np.array([[True, False]])
    with ResultStore(path, config_hash="h1", config={"v": 1}, resume=False) as store:
        store.put_unit("m", "pgd", 0, [0.1], clean, robust, 1.0, spec="s1")
    with pytest.raises(StoreMismatchError, match="--update"):
        ResultStore(path, config_hash="h2", config={"v": 2}, resume=True)
    with ResultStore(path, config_hash="h2", config={"v": 2}, resume=False, update=True) as store:
        assert store.updated_from == "h1"
        assert store.unit("m", "pgd", 0, "s1") is not None  # unchanged settings: kept
        assert store.unit("m", "pgd", 0, "s9") is None  # changed settings: computed again
    with ResultStore(path, config_hash="h2", config={"v": 2}, resume=True) as store:  # the store is h2's now
        assert store.updated_from is None


def _legacy_store(path, clean, robust):
    """A store as advrobust wrote it before units had specs."""
    connection = sqlite3.connect(path)
    with connection:
        connection.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE models (name TEXT PRIMARY KEY, path TEXT NOT NULL, card TEXT NOT NULL, finished REAL NOT NULL);
            CREATE TABLE units (model TEXT NOT NULL, attack TEXT NOT NULL, batch INTEGER NOT NULL,
                n INTEGER NOT NULL, epsilons TEXT NOT NULL, clean BLOB NOT NULL, robust BLOB NOT NULL,
                seconds REAL NOT NULL, finished REAL NOT NULL, PRIMARY KEY (model, attack, batch));""")
        connection.execute("INSERT INTO meta VALUES ('config_hash', 'h1')")
        connection.execute("INSERT INTO models VALUES ('m', 'models/m/model.keras', '{}', 0)")
        connection.execute("INSERT INTO units VALUES ('m', 'pgd', 0, 2, '[0.1]', ?, ?, 1.0, 0)",
                           (np.packbits(clean).tobytes(), np.packbits(robust, axis=-1).tobytes()))
    connection.close()


def test_store_rows_without_spec_are_trusted_only_under_the_config_that_made_them(tmp_path):
    clean, robust = np.array([True, True]), np.array([[True, False]])
    same, changed = tmp_path / "same.sqlite", tmp_path / "changed.sqlite"
    _legacy_store(same, clean, robust)
    _legacy_store(changed, clean, robust)
    with ResultStore(same, config_hash="h1", config={}, resume=True) as store:
        got = store.unit("m", "pgd", 0, "s1")
        assert got is not None and np.array_equal(got[1], robust)
        assert store.model("m", "m1") == ("models/m/model.keras", {})
    with ResultStore(same, config_hash="h2", config={}, resume=True, update=True) as store:
        # The spec was written when first read: now it is checked like any other.
        assert store.unit("m", "pgd", 0, "s1") is not None and store.unit("m", "pgd", 0, "s2") is None
        assert store.model("m", "m1") is not None and store.model("m", "m2") is None
    with ResultStore(changed, config_hash="h2", config={}, resume=True, update=True) as store:
        assert store.unit("m", "pgd", 0, "s1") is None and store.model("m", "m1") is None


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


def test_stored_units_return_a_unit_only_under_the_model_spec_and_fingerprint_it_was_put_with(tmp_path):
    clean, robust = np.array([True, False]), np.array([[True, False]])
    with ResultStore(tmp_path / "store.sqlite", config_hash="h", config={}, resume=False) as store:
        units = StoredUnits(store, "m", "spec-a")
        units.put("pgd", 0, [0.1], clean, robust, 1.5, "fingerprint")
        got_clean, got_robust, seconds = units.get("pgd", 0, "fingerprint")
        np.testing.assert_array_equal(got_clean, clean)
        np.testing.assert_array_equal(got_robust, robust)
        assert seconds == 1.5
        assert units.get("pgd", 0, "other fingerprint") is None
        assert StoredUnits(store, "m", "spec-b").get("pgd", 0, "fingerprint") is None
