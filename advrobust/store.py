"""The results store of a run: one SQLite file, ``DIR/store.sqlite``.

Every finished unit of work is committed in its own transaction, so a run killed at
any moment (even ``kill -9``) keeps every finished unit and never holds a half-written
one; SQLite's journal rolls an interrupted transaction back on the next open. Units:

* a trained model (``models`` table): its name, the saved ``.keras`` path (relative to
  DIR) and its card, written after the model file itself was saved atomically;
* an attacked batch (``units`` table): model x attack x batch of test images, all the
  run's epsilons at once (they are computed in one batched call), holding the per-example
  clean and robust outcomes as packed bits.

The store remembers the hash of the config it was created for. Opening it for another
config raises :class:`StoreMismatchError`: results of different configs never mix.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

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
"""


class StoreMismatchError(ValueError):
    """The folder holds results of a different config (or a run not asked to resume)."""


def _pack(mask: np.ndarray) -> bytes:
    return np.packbits(np.asarray(mask, dtype=bool), axis=-1).tobytes()


def _unpack(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    packed_width = (shape[-1] + 7) // 8
    packed = np.frombuffer(blob, dtype=np.uint8).reshape(shape[:-1] + (packed_width,))
    return np.unpackbits(packed, axis=-1, count=shape[-1]).astype(bool)


class ResultStore:
    """Finished units of one run, keyed by model name, attack key and batch index."""

    def __init__(self, path: str | Path, *, config_hash: str, config: dict[str, Any], resume: bool) -> None:
        """Open or create the store at ``path`` for the config with ``config_hash``.

        A store that already holds results opens only with ``resume=True`` and the same
        hash; otherwise :class:`StoreMismatchError` says what to do.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=30)
        self._connection.execute("PRAGMA synchronous=FULL")
        with self._connection:
            self._connection.executescript(SCHEMA)
        stored = self._meta("config_hash")
        if stored is None:
            with self._connection:
                self._connection.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("config_hash", config_hash), ("config", json.dumps(config, sort_keys=True)),
                    ("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))])
        elif stored != config_hash:
            self.close()
            raise StoreMismatchError(
                f"{self.path.parent} holds results of a different config (hash {stored[:12]}, this config "
                f"{config_hash[:12]}); results of different configs are never mixed: choose another --out "
                f"or delete that folder")
        elif not resume and self.has_work():
            self.close()
            raise StoreMismatchError(f"{self.path.parent} already holds results of this config; pass --resume "
                                     f"to continue (finished work is kept) or choose another --out")

    def _meta(self, key: str) -> str | None:
        row = self._connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @property
    def created(self) -> str:
        return self._meta("created") or ""

    def has_work(self) -> bool:
        """Whether any model or unit is finished."""
        return any(self._connection.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
                   for table in ("models", "units"))

    # -- models ---------------------------------------------------------------------------
    def model(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """``(relative path, card)`` of a finished model, or None."""
        row = self._connection.execute("SELECT path, card FROM models WHERE name = ?", (name,)).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def put_model(self, name: str, path: str, card: dict[str, Any]) -> None:
        """Record a model whose file is already saved (``path`` relative to the run folder)."""
        with self._connection:
            self._connection.execute("INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?)",
                                     (name, path, json.dumps(card), time.time()))

    # -- attacked batches -------------------------------------------------------------------
    def unit(self, model: str, attack: str, batch: int) -> tuple[np.ndarray, np.ndarray, float] | None:
        """``(clean (n,) bool, robust (K, n) bool, seconds)`` of a finished unit, or None."""
        row = self._connection.execute(
            "SELECT n, epsilons, clean, robust, seconds FROM units WHERE model = ? AND attack = ? AND batch = ?",
            (model, attack, batch)).fetchone()
        if row is None:
            return None
        n, epsilons, clean, robust, seconds = row
        k = len(json.loads(epsilons))
        return _unpack(clean, (n,)), _unpack(robust, (k, n)), seconds

    def put_unit(self, model: str, attack: str, batch: int, epsilons: list[float], clean: np.ndarray,
                 robust: np.ndarray, seconds: float) -> None:
        """Commit one finished unit: ``clean`` (n,) and ``robust`` (K, n) boolean masks."""
        clean = np.asarray(clean, dtype=bool)
        robust = np.asarray(robust, dtype=bool).reshape(len(epsilons), len(clean))
        with self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (model, attack, batch, len(clean), json.dumps(list(map(float, epsilons))), _pack(clean),
                 _pack(robust), float(seconds), time.time()))

    def unit_count(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM units").fetchone()[0]

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class UnitCache:
    """The units of one model in a :class:`ResultStore`, as evaluation sees them."""

    def __init__(self, store: ResultStore, model: str) -> None:
        self.store = store
        self.model = model

    def get(self, attack: str, batch: int):
        return self.store.unit(self.model, attack, batch)

    def put(self, attack: str, batch: int, epsilons, clean, robust, seconds) -> None:
        self.store.put_unit(self.model, attack, batch, epsilons, clean, robust, seconds)
