"""``advrobust merge SHARD_DIR... --out DIR``: the finished shards of a run, as one run.

The shards (:mod:`advrobust.run.shard`) must be all N shards of one config, each given
once and finished, and no unit may come from two of them. Then their models and units
are copied into a new store in ``DIR``, and the normal runner (:func:`advrobust.run.runner.run`)
writes results.json, the outcomes and the report from it: every unit and every chunk of
the minimal-eps search is read, none is computed (one that no shard holds stops the merge
with its name). What the runner computes besides them is deterministic: the checks on the
clean check examples (logits, gradients), the masking probes, which need the whole
curves (DeepFool, the PGD path, the doubled budget, Square on what the white-box attacks
left), and the few adversarial examples the report shows. So the merged run's files
equal an unsharded run's, but for the times in them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any, Sequence

from advrobust.results.schema import Results
from advrobust.run import runner
from advrobust.run.config import RunConfig
from advrobust.run.shard import read_record
from advrobust.run.store import STORE_NAME, ResultStore, StoredUnits


SHARED_TABLES = ("units", "minimal_eps_chunks")  # each shard holds its share of their rows


class MergeError(ValueError):
    """The folders are not the complete, finished shards of one run."""


def merge(shard_dirs: Sequence[str | Path], out_dir: str | Path, *, data_dir: Any = None, progress: bool = True,
          report: bool = True, allow_unsafe_load: bool = False) -> Results:
    """Combine the finished shards of a run into one run in ``out_dir``.

    Args:
        shard_dirs: The ``--out`` folders of every shard ``1/N`` to ``N/N``, each once.
        out_dir: A new (or empty) folder for the merged run.
        data_dir: Where the datasets are (None: the default lookup).
        progress: Show progress bars.
        report: Also write report.html, report.md and the figures.
        allow_unsafe_load: As :func:`advrobust.run.runner.run` takes it.

    Returns:
        The :class:`~advrobust.results.schema.Results` written to ``out_dir/results.json``.

    Raises:
        MergeError: A folder is not a finished shard, the shards are of different configs
            or counts, a shard is missing or given twice, a unit or model differs between
            shards or is in none, or ``out_dir`` is not empty (a ValueError).
        advrobust.run.folder.RunFolderError: Another process holds ``out_dir``.
    """
    shards = _finished_shards([Path(path) for path in shard_dirs])
    if Path(out_dir).exists() and any(Path(out_dir).iterdir()):
        raise MergeError(f"--out {str(out_dir)!r} is not empty; a merge writes a new run: choose a new or empty folder")
    config = _config(shards[0])
    _check_models(shards)
    _check_units(shards)
    return runner.run(config, out_dir, data_dir=data_dir, progress=progress, report=report,
                      allow_unsafe_load=allow_unsafe_load, part=_Merge(shards))


def _finished_shards(paths: list[Path]) -> list[Path]:
    """``paths`` ordered by shard number, once they are found to be all the finished
    shards of one config."""
    if not paths:
        raise MergeError("give the --out folder of every shard to merge")
    records = []
    for path in paths:
        record = read_record(path) if path.is_dir() else None
        if record is None:
            raise MergeError(f"{path} is not a shard folder (no shard.json); give the --out folders of "
                             "`advrobust run CONFIG --out DIR --shard I/N`")
        records.append((path, record))
    first, first_record = records[0]
    by_index: dict[int, tuple[Path, dict[str, Any]]] = {}
    for path, record in records:
        if record["config_hash"] != first_record["config_hash"]:
            raise MergeError(f"shards of different configs: {first} has config {first_record['config_hash'][:12]}, "
                             f"{path} has {record['config_hash'][:12]}; merge the shards of one config only")
        if record["shards"] != first_record["shards"]:
            raise MergeError(f"shards of different counts: {first} is {first_record['shard']}/"
                             f"{first_record['shards']}, {path} is {record['shard']}/{record['shards']}")
        if record["shard"] in by_index:
            raise MergeError(f"shard {record['shard']}/{record['shards']} is given twice: "
                             f"{by_index[record['shard']][0]} and {path}")
        by_index[record["shard"]] = path, record
    count = first_record["shards"]
    missing = [f"{index}/{count}" for index in range(1, count + 1) if index not in by_index]
    if missing:
        raise MergeError(f"shard(s) {', '.join(missing)} missing: the shards given do not cover the run; give "
                         "every shard's --out folder")
    for index, (path, record) in sorted(by_index.items()):
        if not record["finished"]:
            raise MergeError(f"shard {index}/{count} in {path} has not finished; continue it with `advrobust run "
                             f"CONFIG --out {path} --shard {index}/{count} --resume`")
    return [by_index[index][0] for index in sorted(by_index)]


def _config(shard: Path) -> RunConfig:
    """The run config a shard recorded in its config.json, checked against its hash."""
    document = json.loads((shard / "config.json").read_text(encoding="utf-8"))
    config = RunConfig.from_resolved(document["config"])
    if config.hash() != document["config_hash"]:
        raise MergeError(f"{shard}/config.json does not match its hash {document['config_hash'][:12]}: it was "
                         "edited, or written by another version of advrobust; run the shards again")
    return config


def _rows(shard: Path, table: str) -> tuple[list[str], list[tuple]]:
    """The column names and rows of a table of a shard's store, read only; none if the
    store has no such table (a shard of an older version: what it lacks is then missing)."""
    connection = sqlite3.connect(f"{(shard / STORE_NAME).resolve().as_uri()}?mode=ro", uri=True)
    try:
        if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() \
                is None:
            return [], []
        cursor = connection.execute(f"SELECT * FROM {table}")
        return [column[0] for column in cursor.description], cursor.fetchall()
    finally:
        connection.close()


def _check_models(shards: list[Path]) -> None:
    """Every shard attacked the same model files under the same specs."""
    first: dict[str, tuple[str, str]] = {}
    for shard in shards:
        columns, rows = _rows(shard, "models")
        for row in rows:
            record = dict(zip(columns, row))
            model_file = shard / record["path"]
            if not model_file.is_file():
                raise MergeError(f"{model_file} is missing: the shard's model file is gone; run that shard again")
            found = (record["spec"], hashlib.sha256(model_file.read_bytes()).hexdigest())
            seen = first.setdefault(record["name"], found)
            if found != seen:
                raise MergeError(f"model {record['name']!r} differs between {shards[0]} and {shard}: the shards "
                                 "attacked different weights; train once with --train-only and give every shard "
                                 "--models-from")


def _check_units(shards: list[Path]) -> None:
    """No unit, and no chunk of the minimal-eps search, comes from two shards."""
    for table, keys, what in (("units", ("model", "attack", "batch"), "unit (model {!r}, attack {!r}, chunk {})"),
                              ("minimal_eps_chunks", ("model", "start"),
                               "minimal eps (model {!r}, chunk from check example {})")):
        owner: dict[tuple, Path] = {}
        for shard in shards:
            columns, rows = _rows(shard, table)
            at = [columns.index(name) for name in keys] if rows else []
            for row in rows:
                key = tuple(row[index] for index in at)
                if key in owner:
                    raise MergeError(f"{what.format(*key)} is in both {owner[key]} and {shard}; each unit must come "
                                     "from one shard")
                owner[key] = shard


class _Merge:
    """The merge as a :class:`advrobust.run.runner.RunPart`: copies the shards' models and
    units into the new store, and refuses to compute a unit."""

    partial = False

    def __init__(self, shards: list[Path]) -> None:
        self.shards = shards

    def prepare(self, config: RunConfig, store: ResultStore, out: Path) -> None:
        """Copy every model folder of the first shard and every shard's units and minimal-eps
        chunks into ``out``."""
        shutil.copytree(self.shards[0] / "models", out / "models", dirs_exist_ok=True)
        connection = sqlite3.connect(store.path, timeout=30)
        try:
            with connection:
                for number, shard in enumerate(self.shards):
                    for table in ("models", *SHARED_TABLES) if number == 0 else SHARED_TABLES:
                        columns, rows = _rows(shard, table)
                        if not rows:
                            continue
                        names = ", ".join(columns)
                        marks = ", ".join("?" for _ in columns)
                        connection.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
        finally:
            connection.close()

    def units(self, units: StoredUnits, model: str) -> "_Complete":
        """``units``, where a unit not stored is an error."""
        return _Complete(units, model)

    def computes(self, model: str, key: str, chunk: int, *, stored: bool) -> bool:
        """True for a chunk the shards stored: the merge reads it; one they did not is an error.

        Raises:
            MergeError: The chunk is in no shard (or was made under other settings).
        """
        if not stored:
            raise MergeError(f"{key} (model {model!r}, chunk {chunk}) is in no shard, or was made under other "
                             "settings: run the shards again (with --resume) from the same config and version of "
                             "advrobust")
        return True

    def finish(self, config: RunConfig, store: ResultStore, out: Path) -> None:
        """Never called: a merge is a whole run."""


class _Complete:
    """A model's units in a merged store: every unit must be there."""

    def __init__(self, units: StoredUnits, model: str) -> None:
        self._units = units
        self._model = model

    def get(self, attack: str, batch: int, fingerprint: str | None = None) -> Any:
        found = self._units.get(attack, batch, fingerprint)
        if found is None:
            raise MergeError(f"unit (model {self._model!r}, attack {attack!r}, chunk {batch}) is in no shard, or was "
                             "made under other settings: run the shards again (with --resume) from the same config "
                             "and version of advrobust")
        return found

    def put(self, *args: Any, **kwargs: Any) -> None:
        raise MergeError("a merge computes no unit")  # unreachable: get raised for the missing unit
