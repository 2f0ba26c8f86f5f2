"""Sharded runs: ``advrobust run CONFIG --out DIR --shard I/N`` computes one N-th of a run.

A run's work is its units: for each model, each attack (the configured ones and the
checks' extra attacks) on each chunk of ``batch_size`` test images. Shard I of N
computes the units it owns and stores them in its own folder, which holds a normal run
store, ``config.json``, the models and ``shard.json``; it writes no results.
:func:`advrobust.run.merge.merge` then combines the N folders into one run.

Ownership is deterministic and balanced: units are numbered in the order the run asks
for them, which is the same in every shard (the models in config order; for each, every
chunk of every attack, then of the checks' attacks, then every chunk of the minimal-eps
search; each asked for whether stored or not),
and unit k goes to shard ``k mod N + 1``. So each shard gets ``floor`` or ``ceil`` of
``1/N`` of all units, and of the chunks of every curve (one model, one attack).

Models are trained once, never by a shard: a model given by ``path`` is copied by each
shard (the same bytes); a model the config trains is trained beforehand by
``advrobust run CONFIG --out MODELS --train-only``, and each shard copies it from there
(``--models-from MODELS``). A shard asked to train refuses, so every shard attacks the
very same weights.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advrobust.evaluation.curves import ELSEWHERE
from advrobust.files import atomic_write_text
from advrobust.models import card_path
from advrobust.run.config import RunConfig
from advrobust.run.runner import model_folder, model_spec
from advrobust.run.store import STORE_NAME, ResultStore, StoredUnits

SHARD_FILE = "shard.json"
_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


class ShardError(ValueError):
    """A shard cannot run here: its folder holds another run, or a model is not trained."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` of a run (a :class:`advrobust.run.runner.RunPart`).

    Attributes:
        index: The shard's number, from 1 to ``count``.
        count: The number of shards, >= 1.
        models_from: A ``--train-only`` run folder of the same config to copy the trained
            models from; None: the config trains no model (every model has a ``path``).
    """

    index: int
    count: int
    models_from: Path | None = None
    partial = True
    # Each unit's number, in the order the run first asks about it.
    _numbers: dict[tuple[str, str, int], int] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1 \
                or isinstance(self.index, bool) or not isinstance(self.index, int) \
                or not 1 <= self.index <= self.count:
            raise ValueError(f"a shard is I/N with 1 <= I <= N, got {self.index!r}/{self.count!r}")

    @property
    def label(self) -> str:
        """``"I/N"``, as ``--shard`` takes it."""
        return f"{self.index}/{self.count}"

    def flags(self) -> list[str]:
        """The command-line flags that name this shard.

        Returns:
            ``["--shard", "I/N"]``, and ``["--models-from", DIR]`` when set.
        """
        return ["--shard", self.label, *(["--models-from", str(self.models_from)] if self.models_from else [])]

    def owns(self, model: str, attack: str, batch: int) -> bool:
        """Whether this shard computes a unit; the first question about a unit numbers it.

        Args:
            model: The model's name.
            attack: The unit's attack key.
            batch: The index of the chunk of test images, >= 0.

        Returns:
            Whether the unit's number is ``index - 1`` modulo ``count``: for shards asked
            about the same units in the same order, True for exactly one of them.
        """
        number = self._numbers.setdefault((model, attack, batch), len(self._numbers))
        return number % self.count == self.index - 1

    def computes(self, model: str, key: str, chunk: int, *, stored: bool) -> bool:
        """Whether this shard computes a chunk of the minimal-eps search.

        The chunks are numbered with the units, so owned as they are.

        Args:
            model: The model's name.
            key: What the chunk is of (``"minimal_eps"``).
            chunk: The chunk's index, >= 0.
            stored: Whether the shard's store holds it (a resumed shard); ownership
                does not depend on it.

        Returns:
            :meth:`owns` of it.
        """
        return self.owns(model, key, chunk)

    def units(self, units: StoredUnits, model: str) -> "ShardUnits":
        """The unit cache of ``model`` in this shard.

        Args:
            units: The store's units of the model.
            model: The model's name.

        Returns:
            ``units``, answering :data:`advrobust.evaluation.curves.ELSEWHERE` for the
            units of other shards.
        """
        return ShardUnits(units, model, self)

    def prepare(self, config: RunConfig, store: ResultStore, out: Path) -> None:
        """Claim ``out`` for this shard (``shard.json``) and copy in the trained models.

        Args:
            config: The run config.
            store: The shard's store.
            out: The shard's folder.

        Raises:
            ShardError: ``out`` holds another shard, or a run that is not a shard, or a
                model the config trains is not in ``models_from`` (or none is given).
        """
        found = read_record(out)
        if found is None and store.has_work():
            raise ShardError(f"{out} holds a run that is not a shard; give each shard a folder of its own")
        if found is not None and (found["shard"], found["shards"]) != (self.index, self.count):
            raise ShardError(f"{out} holds shard {found['shard']}/{found['shards']}, not {self.label}; "
                             "give each shard a folder of its own")
        self._write_record(config, out, finished=False, units=store.unit_count())
        self._numbers.clear()  # a run numbers its units from the first one asked about
        for index, entry in enumerate(config.models):
            if entry.train is None:
                continue  # a model file: copied by the runner, as in any run
            spec = model_spec(entry, config)
            if store.model(entry.name, spec) is not None:
                continue
            path, card = self._trained(entry.name, spec, config)
            source = self.models_from / Path(path).parent
            target = out / "models" / model_folder(index, entry.name)
            shutil.copytree(source, target, dirs_exist_ok=True)
            store.put_model(entry.name, f"models/{target.name}/{Path(path).name}", card, spec)

    def _trained(self, name: str, spec: str, config: RunConfig) -> tuple[str, dict[str, Any]]:
        """The path (relative to ``models_from``) and card of the trained model ``name``."""
        again = "advrobust run CONFIG --out MODELS --train-only"
        if self.models_from is None:
            raise ShardError(f"model {name!r} is trained by the config, and a shard never trains (every shard must "
                             f"attack the same weights): train once with `{again}`, then pass --models-from MODELS "
                             "to every shard")
        row = _model_row(self.models_from, name)
        if row is None or row[2] != spec:
            state = "not trained" if row is None else "trained under other settings"
            raise ShardError(f"model {name!r} is {state} in {self.models_from}; train it there with `{again}` "
                             f"(the same config as the shards, hash {config.hash()[:12]})")
        model_file = self.models_from / row[0]
        if not model_file.is_file() or not card_path(model_file).is_file():
            raise ShardError(f"{model_file} or its card is missing; train again with `{again}`")
        return row[0], json.loads(row[1])

    def finish(self, config: RunConfig, store: ResultStore, out: Path) -> None:
        """Mark the shard finished in ``shard.json``, with the number of units it stored.

        Args:
            config: The run config.
            store: The shard's store.
            out: The shard's folder.
        """
        self._write_record(config, out, finished=True, units=store.unit_count())
        print(f"[advrobust] shard {self.label}: {store.unit_count()} units stored in {out}", flush=True)

    def _write_record(self, config: RunConfig, out: Path, *, finished: bool, units: int) -> None:
        atomic_write_text(out / SHARD_FILE, json.dumps({"shard": self.index, "shards": self.count,
                                                        "config_hash": config.hash(), "finished": finished,
                                                        "units": units}, indent=2) + "\n")


class ShardUnits:
    """The units of one model in a shard (an :class:`advrobust.evaluation.curves.UnitCache`).

    The store's units, and :data:`advrobust.evaluation.curves.ELSEWHERE` for the units
    other shards compute.

    Args:
        units: The store's units of the model.
        model: The model's name.
        shard: The shard.
    """

    def __init__(self, units: StoredUnits, model: str, shard: Shard) -> None:
        self._units = units
        self._model = model
        self._shard = shard

    def get(self, attack: str, batch: int, fingerprint: str | None = None) -> Any:
        """A stored unit, or ELSEWHERE if it is not stored and another shard's.

        Args:
            attack: The attack key.
            batch: The index of the chunk of test images.
            fingerprint: The digest of the unit's settings.

        Returns:
            ``(clean, robust, seconds)``, :data:`advrobust.evaluation.curves.ELSEWHERE`,
            or None (this shard's unit, to compute).
        """
        mine = self._shard.owns(self._model, attack, batch)  # asked even when stored: numbers every unit
        found = self._units.get(attack, batch, fingerprint)
        return ELSEWHERE if found is None and not mine else found

    def put(self, *args: Any, **kwargs: Any) -> None:
        """Store a unit this shard computed (see :meth:`advrobust.run.store.StoredUnits.put`).

        Args:
            *args: As :meth:`advrobust.run.store.StoredUnits.put` takes them.
            **kwargs: As :meth:`advrobust.run.store.StoredUnits.put` takes them.
        """
        self._units.put(*args, **kwargs)


def parse(text: str | None, *, models_from: str | Path | None = None) -> Shard | None:
    """The shard that ``--shard I/N`` (and ``--models-from``) name.

    Args:
        text: ``"I/N"``, with 1 <= I <= N (Slurm: ``$SLURM_ARRAY_TASK_ID/N`` with
            ``--array=1-N``); None: no shard, the whole run.
        models_from: The ``--train-only`` folder to copy trained models from, or None.

    Returns:
        The shard, or None when ``text`` is None.

    Raises:
        ValueError: ``text`` is not ``I/N`` with 1 <= I <= N, or ``models_from`` comes
            without a shard.
        FileNotFoundError: ``models_from`` is not a folder.
    """
    if text is None:
        if models_from is not None:
            raise ValueError("--models-from goes with --shard I/N: a whole run trains its own models")
        return None
    found = _SHARD.fullmatch(str(text))
    if found is None or not 1 <= int(found[1]) <= int(found[2]):
        raise ValueError(f"--shard must be I/N with 1 <= I <= N (1/4 is the first of four shards), got {text!r}")
    if models_from is not None and not Path(models_from).is_dir():
        raise FileNotFoundError(f"--models-from {str(models_from)!r} is not a folder; give the --out folder of "
                                "`advrobust run CONFIG --out MODELS --train-only`")
    return Shard(int(found[1]), int(found[2]), None if models_from is None else Path(models_from))


def read_record(folder: str | Path) -> dict[str, Any] | None:
    """The ``shard.json`` of a shard folder.

    Args:
        folder: The shard's ``--out`` folder.

    Returns:
        ``{"shard": I, "shards": N, "config_hash", "finished": bool, "units": int}``, or
        None if the folder holds no shard.
    """
    path = Path(folder) / SHARD_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _model_row(run_dir: Path, name: str) -> tuple[str, str, str | None] | None:
    """``(path, card JSON, spec)`` of a finished model in another run's store, read only
    (shards running at once read the same store)."""
    path = run_dir / STORE_NAME
    if not path.is_file():
        return None
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT path, card, spec FROM models WHERE name = ?", (name,)).fetchone()
    finally:
        connection.close()
