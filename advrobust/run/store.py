"""The results store of a run: one SQLite file, ``DIR/store.sqlite``.

Every finished unit of work is committed in its own transaction, so a run killed at
any moment (even ``kill -9``) keeps every finished unit and never holds a half-written
one; SQLite's journal rolls an interrupted transaction back on the next open. Units:

* a trained model (``models`` table): its name, the saved ``.keras`` path (relative to
  DIR) and its card, written after the model file itself was saved atomically;
* an attacked batch (``units`` table): model x attack x batch of test images, all the
  run's epsilons at once (they are computed in one batched call), holding the per-example
  clean and robust outcomes as packed bits and, for the ensemble ``autoattack``, per eps
  the points each member broke (JSON ``broken_by``; NULL for other attacks);
* a chunk of a model's per-example minimal eps (``minimal_eps_chunks`` table): the radii
  :func:`attacks.minimal_epsilon` found on a chunk of the model's check examples (the
  chunk's first index is its key), float64 bytes (``inf``: none found). Chunks, like
  units, are what a shard of the run computes its share of.

Stores made before chunks also hold a ``minimal_eps`` table (one row of all check
examples per model); it opens, but is no longer read: such a run searches again, in chunks.

Every model and unit also records its *spec*: a digest of everything that decides its
outcome (for a unit: the model's spec, the attack and its parameters, the epsilons and
the chunk size; see :mod:`advrobust.run.runner`). A finished one is reused only under the
same spec, so results computed under other settings are never mixed in.

Stores made by older versions open as they are: the columns added since (``spec``,
``broken_by``) are added, empty, when such a store is opened.

The store remembers the hash of the config it was created for. Opening it for another
config raises :class:`StoreMismatchError`, unless the caller asks to ``update``: then the
run goes on under the changed config, reusing each finished model and unit whose spec is
unchanged and recomputing the others. (Rows written before specs existed carry none; they
are trusted only under the very config that made them, and get their spec when read.)
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from advrobust.files import digest

STORE_NAME = "store.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY, path TEXT NOT NULL, card TEXT NOT NULL, finished REAL NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    model TEXT NOT NULL, attack TEXT NOT NULL, batch INTEGER NOT NULL,
    n INTEGER NOT NULL, epsilons TEXT NOT NULL, clean BLOB NOT NULL, robust BLOB NOT NULL,
    seconds REAL NOT NULL, finished REAL NOT NULL,
    PRIMARY KEY (model, attack, batch));
CREATE TABLE IF NOT EXISTS minimal_eps_chunks (
    model TEXT NOT NULL, start INTEGER NOT NULL, n INTEGER NOT NULL, eps BLOB NOT NULL, seconds REAL NOT NULL,
    finished REAL NOT NULL, spec TEXT,
    PRIMARY KEY (model, start));
"""
LEGACY_TABLES = ("minimal_eps",)  # made by older versions; opened, never read or written
KNOWN_TABLES = ("meta", "models", "units", "minimal_eps_chunks", *LEGACY_TABLES)
WORK_TABLES = ("models", "units", "minimal_eps_chunks", *LEGACY_TABLES)
# Nullable columns newer than the first stores, added to older ones when opened.
ADDED_COLUMNS = (("models", "spec"), ("units", "spec"), ("units", "broken_by"))


class StoreMismatchError(ValueError):
    """The folder holds results of a different config (or a run not asked to resume)."""


class StoredUnit(NamedTuple):
    """A finished unit as the store holds it.

    Attributes:
        clean: (n,) bool: correct on each clean example.
        robust: (K, n) bool: robust at each eps.
        seconds: The unit's compute time.
        broken_by: For the ensemble, per eps the points each member broke first (K
            ``{label: count}`` dicts); None for other attacks and units stored without.
    """

    clean: np.ndarray
    robust: np.ndarray
    seconds: float
    broken_by: list[dict[str, int]] | None


def _pack(mask: np.ndarray) -> bytes:
    return np.packbits(np.asarray(mask, dtype=bool), axis=-1).tobytes()


def _unpack(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    packed_width = (shape[-1] + 7) // 8
    packed = np.frombuffer(blob, dtype=np.uint8).reshape(shape[:-1] + (packed_width,))
    return np.unpackbits(packed, axis=-1, count=shape[-1]).astype(bool)


class ResultStore:
    """Finished units of one run, keyed by model name, attack key and batch index.

    Opening creates the store at ``path`` for the config with ``config_hash``, or opens
    the one there. A store that already holds results opens with ``resume=True`` and the
    same hash, or with ``update=True`` (implies resume) and any hash: the store then
    belongs to the new config. Otherwise :class:`StoreMismatchError` says what to do.

    Args:
        path: The SQLite file (``DIR/store.sqlite``); its folder is created if missing.
        config_hash: :meth:`advrobust.run.config.RunConfig.hash` of the run's config.
        config: The config as JSON-ready data, kept for reference.
        resume: Go on with a store that already holds results of this config.
        update: Go on with a store of another config, reusing the models and units whose
            spec is unchanged.

    Raises:
        StoreMismatchError: The file is not a readable advrobust store, it holds results
            of another config and ``update`` is False, or it holds results of this config
            and neither ``resume`` nor ``update`` is set.
    """

    def __init__(self, path: str | Path, *, config_hash: str, config: dict[str, Any], resume: bool,
                 update: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=30)
        try:
            self._open_schema()
        except sqlite3.DatabaseError as error:
            self._connection.close()
            raise StoreMismatchError(
                f"{self.path} is not a readable advrobust store ({error}): it is corrupt or belongs to something "
                f"else. Move it aside (its finished units cannot be reused) or choose another --out") from None
        stored = self._meta("config_hash")
        # Rows without a spec were made by the stored config: trusted only if it is this one.
        self._trust_unspecified = stored in (None, config_hash)
        self.updated_from = None
        if stored is None:
            with self._connection:
                self._connection.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("config_hash", config_hash), ("config", json.dumps(config, sort_keys=True)),
                    ("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))])
        elif stored != config_hash and update:
            self.updated_from = stored
            with self._connection:
                self._connection.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                    ("config_hash", config_hash), ("config", json.dumps(config, sort_keys=True)),
                    ("updated", time.strftime("%Y-%m-%dT%H:%M:%S%z"))])
        elif stored != config_hash:
            self.close()
            raise StoreMismatchError(
                f"{self.path.parent} holds results of a different config (hash {stored[:12]}, this config "
                f"{config_hash[:12]}); results of different configs are never mixed: choose another --out, "
                f"delete that folder, or pass --update to go on under the changed config (finished units "
                f"whose settings are unchanged are kept, the rest is recomputed)")
        elif not (resume or update) and self.has_work():
            self.close()
            raise StoreMismatchError(f"{self.path.parent} already holds results of this config; pass --resume "
                                     f"to continue (finished work is kept) or choose another --out")

    def _open_schema(self) -> None:
        """Create the tables if new; add the columns stores made before them lack."""
        self._connection.execute("PRAGMA synchronous=FULL")
        tables = {row[0] for row in self._connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables - set(KNOWN_TABLES):
            raise sqlite3.DatabaseError(f"it holds tables advrobust does not make: {', '.join(sorted(tables))}")
        with self._connection:
            self._connection.executescript(SCHEMA)
            for table, column in ADDED_COLUMNS:
                columns = [row[1] for row in self._connection.execute(f"PRAGMA table_info({table})")]
                if column not in columns:
                    self._connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")

    def _matches(self, table: str, where: str, args: tuple, stored_spec: str | None, spec: str | None) -> bool:
        """Whether a row with ``stored_spec`` may be reused under ``spec`` (None: unchecked).
        A row without a spec, trusted, gets ``spec`` written."""
        if spec is None or stored_spec == spec:
            return True
        if stored_spec is None and self._trust_unspecified:
            with self._connection:
                self._connection.execute(f"UPDATE {table} SET spec = ? WHERE {where}", (spec, *args))
            return True
        return False

    def _meta(self, key: str) -> str | None:
        row = self._connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @property
    def created(self) -> str:
        """When the store was created (``%Y-%m-%dT%H:%M:%S%z``), or ``""`` if not recorded."""
        return self._meta("created") or ""

    def has_work(self) -> bool:
        """Whether any model or unit is finished.

        Returns:
            True if a table of finished work (``WORK_TABLES``) holds a row.
        """
        tables = {row[0] for row in self._connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return any(self._connection.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
                   for table in WORK_TABLES if table in tables)

    # -- models ---------------------------------------------------------------------------
    def model(self, name: str, spec: str | None = None) -> tuple[str, dict[str, Any]] | None:
        """The saved path and card of a finished model made under ``spec``.

        Args:
            name: The model's name.
            spec: The model's spec (:func:`advrobust.run.runner.model_spec`); None:
                whatever is stored under ``name``.

        Returns:
            ``(path relative to the run folder, card)``, or None if no model of that name
            was finished under ``spec``.
        """
        row = self._connection.execute("SELECT path, card, spec FROM models WHERE name = ?", (name,)).fetchone()
        if row is None or not self._matches("models", "name = ?", (name,), row[2], spec):
            return None
        return row[0], json.loads(row[1])

    def put_model(self, name: str, path: str, card: dict[str, Any], spec: str | None = None) -> None:
        """Record a model whose file is already saved (``path`` relative to the run folder).

        Args:
            name: The model's name; replaces a model stored under it.
            path: The saved .keras file, relative to the run folder.
            card: The model card.
            spec: The model's spec, or None.
        """
        with self._connection:
            self._connection.execute("INSERT OR REPLACE INTO models (name, path, card, finished, spec) "
                                     "VALUES (?, ?, ?, ?, ?)", (name, path, json.dumps(card), time.time(), spec))

    # -- attacked batches -------------------------------------------------------------------
    def unit(self, model: str, attack: str, batch: int, spec: str | None = None) -> StoredUnit | None:
        """A finished unit made under ``spec``.

        Args:
            model: The model's name.
            attack: The attack key.
            batch: The index of the chunk of test images.
            spec: The unit's spec; None: whatever is stored under that key.

        Returns:
            The :class:`StoredUnit` ``(clean, robust, seconds, broken_by)``, or None if the
            unit was not finished under ``spec``.
        """
        where, args = "model = ? AND attack = ? AND batch = ?", (model, attack, batch)
        row = self._connection.execute(
            f"SELECT n, epsilons, clean, robust, seconds, spec, broken_by FROM units WHERE {where}", args).fetchone()
        if row is None or not self._matches("units", where, args, row[5], spec):
            return None
        n, epsilons, clean, robust, seconds, _, broken_by = row
        k = len(json.loads(epsilons))
        return StoredUnit(_unpack(clean, (n,)), _unpack(robust, (k, n)), seconds,
                          None if broken_by is None else json.loads(broken_by))

    def put_unit(self, model: str, attack: str, batch: int, epsilons: list[float], clean: np.ndarray,
                 robust: np.ndarray, seconds: float, spec: str | None = None,
                 broken_by: list[dict[str, int]] | None = None) -> None:
        """Commit one finished unit: ``clean`` (n,) and ``robust`` (K, n) boolean masks.

        Args:
            model: The model's name.
            attack: The attack key.
            batch: The index of the chunk of test images.
            epsilons: The K radii.
            clean: (n,) bool: correct on each clean example.
            robust: (K, n) bool: robust at each eps.
            seconds: The unit's compute time.
            spec: The unit's spec, or None.
            broken_by: For the ensemble, per eps the points each member broke first (K
                ``{label: count}`` dicts), or None.

        Raises:
            ValueError: ``broken_by`` does not hold one dict per eps.
        """
        clean = np.asarray(clean, dtype=bool)
        robust = np.asarray(robust, dtype=bool).reshape(len(epsilons), len(clean))
        if broken_by is not None and len(broken_by) != len(epsilons):
            raise ValueError(f"broken_by holds {len(broken_by)} entries for {len(epsilons)} epsilons; give one "
                             f"{{label: count}} dict per eps")
        counts = None if broken_by is None else json.dumps(
            [{str(label): int(count) for label, count in eps_counts.items()} for eps_counts in broken_by])
        with self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO units (model, attack, batch, n, epsilons, clean, robust, seconds, finished, "
                "spec, broken_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (model, attack, batch, len(clean), json.dumps(list(map(float, epsilons))), _pack(clean),
                 _pack(robust), float(seconds), time.time(), spec, counts))

    # -- per-example minimal eps, in chunks -------------------------------------------------
    def minimal_eps_chunk(self, model: str, start: int, spec: str | None = None) -> tuple[np.ndarray, float] | None:
        """A chunk of a model's per-example minimal eps, finished under ``spec``.

        Args:
            model: The model's name.
            start: The index of the chunk's first check example.
            spec: The digest of what decides the values (model, examples, search
                settings); None: whatever is stored for the chunk.

        Returns:
            ``(min_eps (n,) float64, inf where none was found; seconds)``, or None if the
            chunk was not finished under ``spec``.
        """
        row = self._connection.execute(
            "SELECT eps, seconds, spec FROM minimal_eps_chunks WHERE model = ? AND start = ?", (model, start)).fetchone()
        if row is None or not self._matches("minimal_eps_chunks", "model = ? AND start = ?", (model, start), row[2],
                                            spec):
            return None
        return np.frombuffer(row[0], dtype=np.float64).copy(), row[1]

    def put_minimal_eps_chunk(self, model: str, start: int, min_eps: np.ndarray, seconds: float,
                              spec: str | None = None) -> None:
        """Commit a chunk of a model's per-example minimal eps (replacing one stored for it).

        Args:
            model: The model's name.
            start: The index of the chunk's first check example.
            min_eps: (n,) radii >= 0; ``inf`` where none was found.
            seconds: The search's compute time.
            spec: The digest of what decides the values, or None.
        """
        values = np.asarray(min_eps, dtype=np.float64).reshape(-1)
        with self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO minimal_eps_chunks (model, start, n, eps, seconds, finished, spec) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (model, int(start), len(values), values.tobytes(), float(seconds),
                                                  time.time(), spec))

    def unit_count(self) -> int:
        """The number of finished units.

        Returns:
            The rows of the units table.
        """
        return self._connection.execute("SELECT COUNT(*) FROM units").fetchone()[0]

    def close(self) -> None:
        """Close the SQLite connection; every finished unit is already committed."""
        self._connection.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class StoredUnits:
    """The units of one model in a :class:`ResultStore`, as evaluation's unit cache.

    This is what evaluation takes as its :class:`advrobust.evaluation.curves.UnitCache`.
    A unit's spec is the digest of the model's spec and the ``fingerprint`` evaluation
    gives (attack, parameters, epsilons, chunk size).

    Args:
        store: The run's store.
        model: The model's name.
        model_spec: The model's spec (:func:`advrobust.run.runner.model_spec`), or None.
    """

    def __init__(self, store: ResultStore, model: str, model_spec: str | None = None) -> None:
        self.store = store
        self.model = model
        self.model_spec = model_spec

    def _spec(self, fingerprint: str | None) -> str | None:
        if self.model_spec is None and fingerprint is None:
            return None
        return digest([self.model_spec, fingerprint])

    def get(self, attack: str, batch: int, fingerprint: str | None = None) -> StoredUnit | None:
        """A finished unit of this model (see :meth:`ResultStore.unit`).

        Args:
            attack: The attack key.
            batch: The index of the chunk of test images.
            fingerprint: The digest of the unit's settings, or None.

        Returns:
            The :class:`StoredUnit` ``(clean, robust, seconds, broken_by)``, or None.
        """
        return self.store.unit(self.model, attack, batch, self._spec(fingerprint))

    def put(self, attack: str, batch: int, epsilons, clean, robust, seconds, fingerprint: str | None = None,
            broken_by: list[dict[str, int]] | None = None) -> None:
        """Commit a finished unit of this model (see :meth:`ResultStore.put_unit`).

        Args:
            attack: The attack key.
            batch: The index of the chunk of test images.
            epsilons: The K radii.
            clean: (n,) bool: correct on each clean example.
            robust: (K, n) bool: robust at each eps.
            seconds: The unit's compute time.
            fingerprint: The digest of the unit's settings, or None.
            broken_by: For the ensemble, per eps the points each member broke first, or None.
        """
        self.store.put_unit(self.model, attack, batch, epsilons, clean, robust, seconds, self._spec(fingerprint),
                            broken_by=broken_by)
