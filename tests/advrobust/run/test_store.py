"""advrobust.run.store: the SQLite results store and the units it reuses."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from advrobust.run.store import ResultStore, StoreMismatchError, StoredUnits


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
        got_clean, got_robust, seconds, broken_by = store.unit("m", "pgd", 0)
        assert np.array_equal(got_clean, clean) and np.array_equal(got_robust, robust) and seconds == 1.5
        assert broken_by is None  # counted only for an ensemble
        assert store.model("m") == ("models/m/model.keras", {"defense": "none"})


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
        assert got is not None and np.array_equal(got.robust, robust) and got.broken_by is None
        assert store.model("m", "m1") == ("models/m/model.keras", {})
    with ResultStore(same, config_hash="h2", config={}, resume=True, update=True) as store:
        # The spec was written when first read: now it is checked like any other.
        assert store.unit("m", "pgd", 0, "s1") is not None and store.unit("m", "pgd", 0, "s2") is None
        assert store.model("m", "m1") is not None and store.model("m", "m2") is None
    with ResultStore(changed, config_hash="h2", config={}, resume=True, update=True) as store:
        assert store.unit("m", "pgd", 0, "s1") is None and store.model("m", "m1") is None


def test_stored_units_return_a_unit_only_under_the_model_spec_and_fingerprint_it_was_put_with(tmp_path):
    clean, robust = np.array([True, False]), np.array([[True, False]])
    with ResultStore(tmp_path / "store.sqlite", config_hash="h", config={}, resume=False) as store:
        units = StoredUnits(store, "m", "spec-a")
        units.put("pgd", 0, [0.1], clean, robust, 1.5, "fingerprint")
        got_clean, got_robust, seconds, _ = units.get("pgd", 0, "fingerprint")
        np.testing.assert_array_equal(got_clean, clean)
        np.testing.assert_array_equal(got_robust, robust)
        assert seconds == 1.5
        assert units.get("pgd", 0, "other fingerprint") is None
        assert StoredUnits(store, "m", "spec-b").get("pgd", 0, "fingerprint") is None


def test_a_units_per_member_counts_survive_closing_and_reopening(tmp_path):
    path, clean, robust = tmp_path / "store.sqlite", np.array([True, True, False]), np.array([[True, True, False],
                                                                                             [False, True, False]])
    counts = [{"apgd-ce": 0, "apgd-t": 0}, {"apgd-ce": 0, "apgd-t": 1}]
    with ResultStore(path, config_hash="h", config={}, resume=False) as store:
        StoredUnits(store, "m", "spec").put("autoattack", 0, [0.0, 0.1], clean, robust, 2.0, "f", broken_by=counts)
        with pytest.raises(ValueError, match="broken_by holds 1 entries for 2 epsilons"):
            store.put_unit("m", "autoattack", 1, [0.0, 0.1], clean, robust, 1.0, broken_by=counts[:1])
    with ResultStore(path, config_hash="h", config={}, resume=True) as store:
        assert StoredUnits(store, "m", "spec").get("autoattack", 0, "f").broken_by == counts


def test_a_store_made_before_units_held_counts_opens_and_gains_the_column(tmp_path):
    clean, robust = np.array([True, True]), np.array([[True, False]])
    _legacy_store(tmp_path / "old.sqlite", clean, robust)
    with ResultStore(tmp_path / "old.sqlite", config_hash="h1", config={}, resume=True) as store:
        assert store.unit("m", "pgd", 0).broken_by is None
        store.put_unit("m", "autoattack", 0, [0.1], clean, robust, 1.0, broken_by=[{"apgd-ce": 1}])
        assert store.unit("m", "autoattack", 0).broken_by == [{"apgd-ce": 1}]


def test_store_keeps_each_chunk_of_a_models_minimal_eps_with_inf_under_its_spec(tmp_path):
    path = tmp_path / "store.sqlite"
    first, second = np.array([0.0, 0.125, np.inf]), np.array([0.3])
    with ResultStore(path, config_hash="h1", config={}, resume=False) as store:
        assert store.minimal_eps_chunk("m", 0) is None
        store.put_minimal_eps_chunk("m", 0, first, 2.5, spec="s1")
        store.put_minimal_eps_chunk("m", 3, second, 1.0, spec="s2")
        assert store.has_work()
    with pytest.raises(StoreMismatchError, match="--resume"):  # a finished chunk is work to keep
        ResultStore(path, config_hash="h1", config={}, resume=False)
    with ResultStore(path, config_hash="h1", config={}, resume=True) as store:
        got, seconds = store.minimal_eps_chunk("m", 0, "s1")
        np.testing.assert_array_equal(got, first)
        assert seconds == 2.5 and store.minimal_eps_chunk("m", 3, "s2")[0].tolist() == [0.3]
        assert store.minimal_eps_chunk("m", 0, "s2") is None and store.minimal_eps_chunk("m", 3, "s1") is None
        assert store.minimal_eps_chunk("m", 1) is None and store.minimal_eps_chunk("other", 0) is None


def test_a_store_made_before_minimal_eps_chunks_opens_gains_their_table_and_keeps_its_work(tmp_path):
    path = tmp_path / "store.sqlite"
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE models (name TEXT PRIMARY KEY, path TEXT NOT NULL, card TEXT NOT NULL, finished REAL NOT NULL);"
            "CREATE TABLE units (model TEXT NOT NULL, attack TEXT NOT NULL, batch INTEGER NOT NULL, n INTEGER NOT NULL,"
            " epsilons TEXT NOT NULL, clean BLOB NOT NULL, robust BLOB NOT NULL, seconds REAL NOT NULL,"
            " finished REAL NOT NULL, PRIMARY KEY (model, attack, batch));"
            "CREATE TABLE minimal_eps (model TEXT PRIMARY KEY, n INTEGER NOT NULL, eps BLOB NOT NULL,"
            " seconds REAL NOT NULL, finished REAL NOT NULL, spec TEXT);"
            "INSERT INTO minimal_eps VALUES ('m', 1, x'0000000000000000', 1.0, 0.0, 's');"
            "INSERT INTO meta VALUES ('config_hash', 'h1');")
    with pytest.raises(StoreMismatchError, match="--resume"):  # the old table's row is finished work too
        ResultStore(path, config_hash="h1", config={}, resume=False)
    with ResultStore(path, config_hash="h1", config={}, resume=True) as store:
        assert store.minimal_eps_chunk("m", 0) is None  # the old whole-set row is not read: searched again
        store.put_minimal_eps_chunk("m", 0, np.array([0.5]), 1.0, spec="s")
        assert store.minimal_eps_chunk("m", 0, "s")[0].tolist() == [0.5]
