"""Run configurations: TOML text -> frozen, validated dataclasses, with a stable hash.

A run config names the models to compare (trained by the run, or loaded from a path),
the attacks and the epsilons. Everything is validated here, before any work starts,
so a typo fails in a second rather than after an hour of training::

    [run]
    dataset = "fashion_mnist"     # default dataset of every model
    norm = "inf"
    epsilons = [0, 0.05, 0.1]
    n_examples = 1000             # the first n test images (a model may use fewer)

    [[attacks]]
    name = "pgd"
    params = { steps = 40 }       # keyword arguments of attacks.pgd (not eps/norm)

    [[models]]
    name = "cnn"
    train = { model = "cnn", epochs = 2 }   # fields of advrobust.training.TrainConfig

    [[models]]
    name = "nsl-cnn"
    baseline = "cnn"              # compared against this model in the report
    train = { model = "cnn", defense = "nsl", preset = "quick", epochs = 2 }

    [[models]]
    name = "mine"
    path = "saved/model.keras"    # evaluate an existing logits model (relative to the config file)

    [certified]                   # optional: verified accuracy beside the attacks (the bracket)
    methods = ["crown_ibp"]       # "ibp" and/or "crown_ibp" (advrobust.certify)
    models = ["mine"]             # default: every model

:data:`DEFAULT_CONFIG` (``advrobust/run/configs/quick.toml``) is what ``advrobust run`` uses
without a config file. :meth:`RunConfig.hash` is the SHA-256 of the canonical JSON of
the resolved config: the results store refuses to mix results of different hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from advrobust.data.catalog import DATASETS
from advrobust.validation import check_choice
from attacks import AttackSpec
from attacks.norms import canonical_norm

DEFAULT_CONFIG_NAME = "quick.toml"
_RUN_KEYS = {"name", "dataset", "norm", "epsilons", "n_examples", "batch_size", "seed", "examples",
             "large_eps", "noise_draws", "check_examples"}
_MODEL_KEYS = {"name", "dataset", "baseline", "n_examples", "attacks", "path", "train"}
_ATTACK_KEYS = {"name", "params", "n_examples"}
_CERTIFIED_KEYS = {"methods", "models", "n_examples", "batch_size"}
# defenses.bounds.METHODS, spelled out so that reading a config imports no TensorFlow
# (tests/advrobust/run/test_config.py checks that the two agree).
CERTIFIED_METHODS = ("ibp", "crown_ibp")
_RESERVED_ATTACK_PARAMS = ("eps", "norm")
# Names older configs used; the message says what replaces them.
_REMOVED_ATTACKS = dict.fromkeys(
    ("apgd_ce_art", "apgd_dlr_art"),
    "ART's APGD no longer runs in a run: use \"autoattack\" (the ensemble, e.g. params = { preset = \"standard\" }) "
    "or \"apgd\" (params = { loss = \"ce\" } or { loss = \"dlr\" })")


class ConfigError(ValueError):
    """A run config is malformed; the message names the offending key and value."""


@dataclass(frozen=True)
class AttackEntry:
    """One attack of the run: a registered attack name and its keyword parameters.

    Attributes:
        name: A name in ``attacks.ATTACKS``.
        params: Its keyword arguments besides ``eps`` and ``norm``.
        n_examples: Attack only each model's first n test images (a costly attack); None:
            all of them.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    n_examples: int | None = None

    def spec(self, norm: str) -> AttackSpec:
        """The :class:`attacks.AttackSpec` of this attack at ``norm``.

        Args:
            norm: The run's norm (``"inf"`` or ``"l2"``).

        Returns:
            The spec of ``name`` with ``params`` and ``norm``.

        Raises:
            ValueError: The name is not registered or a parameter is not the attack's.
        """
        return AttackSpec(self.name, {**self.params, "norm": norm})


@dataclass(frozen=True)
class ModelEntry:
    """One model of the run: trained by the run (``train``) or loaded (``path``).

    Attributes:
        name: The model's name, unique in the run.
        dataset: Its dataset.
        baseline: The name of the model it is compared with, or None.
        n_examples: The test images it is evaluated on; None: the run's n_examples.
        attacks: The run's attacks it is evaluated with; None: every attack of the run.
        path: A saved logits model to load (absolute), or None.
        train: The fields of :class:`advrobust.training.TrainConfig` to train it with, or None.
        weights_sha256: SHA-256 of a weights file named in ``train`` (None otherwise):
            part of the config's hash.
    """

    name: str
    dataset: str
    baseline: str | None = None
    n_examples: int | None = None  # None: the run's n_examples
    attacks: tuple[str, ...] | None = None  # None: every attack of the run
    path: str | None = None
    train: dict[str, Any] | None = None
    # SHA-256 of a weights file named in train (None otherwise): part of the config's hash.
    weights_sha256: str | None = None

    def train_config(self, seed: int):
        """The :class:`advrobust.training.TrainConfig` of this model (validated).

        Args:
            seed: The run's seed, used unless ``train`` sets one.

        Returns:
            The training config of ``dataset`` and ``train``.

        Raises:
            ValueError: A field of ``train`` is unknown or invalid.
            TypeError: A field of ``train`` has the wrong type.
        """
        from advrobust.training import TrainConfig

        options = {"seed": seed, **(self.train or {})}
        return TrainConfig(dataset=self.dataset, **options)


@dataclass(frozen=True)
class CertifiedEntry:
    """The run's verification: which bound methods certify which models, on how many images.

    Each method gives a verified-accuracy curve per model at the run's epsilons and norm
    (:func:`advrobust.certify.certified_accuracy_curve`): a lower bound on robust accuracy
    beside the attacks' upper bound.

    Attributes:
        methods: Bound methods, each in :data:`CERTIFIED_METHODS`, each once.
        models: The models certified (names of the run's models); None: every model.
        n_examples: Certify at most each model's first n test images; None: all of them.
        batch_size: Examples per bound computation (CROWN-IBP holds one linear bound per
            class and input value of each example).
    """

    methods: tuple[str, ...] = ("crown_ibp",)
    models: tuple[str, ...] | None = None
    n_examples: int | None = None
    batch_size: int = 100


@dataclass(frozen=True)
class RunConfig:
    """A whole run: which models, which attacks, which epsilons, how many test images.

    ``examples``: adversarial examples per model shown in the report. ``large_eps``: the
    radius of the "accuracy must reach ~0" sanity check. ``noise_draws``: random-noise
    samples per example and eps in the noise check. ``check_examples``: at most this
    many examples per model go into the checks that run extra attacks.

    Attributes:
        models: The models, in order.
        attacks: The attacks, each once.
        epsilons: The radii, increasing without repeats, each >= 0.
        name: The run's name.
        dataset: The default dataset of every model.
        norm: ``"inf"`` or ``"l2"``.
        n_examples: The first n test images evaluated (a model may use fewer).
        batch_size: The examples per attacked chunk.
        seed: The seed of training and of stochastic attacks.
        examples: Adversarial examples per model shown in the report.
        large_eps: The radius of the large-eps check; None: 1.0 for L-inf, 10.0 for L2.
        noise_draws: Random-noise samples per example and eps in the noise check.
        check_examples: At most this many examples per model go into the extra attacks.
        certified: The verification of the ``[certified]`` table, or None (no bounds).
    """

    models: tuple[ModelEntry, ...]
    attacks: tuple[AttackEntry, ...]
    epsilons: tuple[float, ...]
    name: str = "run"
    dataset: str = "fashion_mnist"
    norm: str = "inf"
    n_examples: int = 1000
    batch_size: int = 500
    seed: int = 0
    examples: int = 8
    large_eps: float | None = None  # None: 1.0 for L-inf, 10.0 for L2 (28x28 images)
    noise_draws: int = 3
    check_examples: int = 500
    certified: CertifiedEntry | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the resolved config.

        Returns:
            The fields as JSON types; a model's ``weights_sha256`` and an attack's
            ``n_examples`` only when set; ``certified`` only when the config has it.
        """
        document = json.loads(json.dumps(dataclasses.asdict(self)))
        if document["certified"] is None:  # absent, so configs without it keep their hash
            del document["certified"]
        for model in document["models"]:
            if model["weights_sha256"] is None:
                # Absent, as before the field existed, so configs without a weights file
                # keep their hash and their runs can still be resumed.
                del model["weights_sha256"]
        for attack in document["attacks"]:
            if attack["n_examples"] is None:  # likewise: absent unless an attack is limited
                del attack["n_examples"]
        return document

    @classmethod
    def from_resolved(cls, document: dict[str, Any]) -> "RunConfig":
        """The config whose :meth:`to_dict` is ``document`` (what a run's config.json holds).

        Args:
            document: A :meth:`to_dict` result, as read back from JSON.

        Returns:
            The config; its :meth:`hash` is the original's.

        Raises:
            TypeError: ``document`` has a field the config does not, or lacks one.
        """
        fields = dict(document)
        models = tuple(ModelEntry(**{**entry, "attacks": None if entry["attacks"] is None else tuple(entry["attacks"])})
                       for entry in fields.pop("models"))
        attacks = tuple(AttackEntry(**entry) for entry in fields.pop("attacks"))
        certified = fields.pop("certified", None)
        if certified is not None:
            certified = CertifiedEntry(**{**certified, "methods": tuple(certified["methods"]),
                                          "models": None if certified["models"] is None else tuple(certified["models"])})
        return cls(models=models, attacks=attacks, epsilons=tuple(fields.pop("epsilons")), certified=certified,
                   **fields)

    def hash(self) -> str:
        """SHA-256 hex digest of the canonical JSON of :meth:`to_dict`.

        Returns:
            64 hexadecimal characters; equal configs give equal hashes.
        """
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def effective_large_eps(self) -> float:
        """The radius of the large-eps check: ``large_eps``, or 1.0 for L-inf, 10.0 for L2."""
        if self.large_eps is not None:
            return self.large_eps
        return 1.0 if self.norm == "inf" else 10.0

    def model(self, name: str) -> ModelEntry:
        """The model of a name.

        Args:
            name: The model's name.

        Returns:
            Its entry.

        Raises:
            KeyError: No model has that name.
        """
        for entry in self.models:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def certified_for(self, entry: ModelEntry) -> tuple[str, ...]:
        """The bound methods that certify ``entry`` (none without a ``[certified]`` table).

        Args:
            entry: A model of the run.

        Returns:
            The methods, in the config's order; empty if the model is not certified.
        """
        if self.certified is None or (self.certified.models is not None and entry.name not in self.certified.models):
            return ()
        return self.certified.methods

    def n_for(self, entry: ModelEntry) -> int:
        """Test images evaluated for ``entry``: its own n_examples, else the run's.

        Args:
            entry: A model of the run.

        Returns:
            The number of test images, >= 1.
        """
        return entry.n_examples if entry.n_examples is not None else self.n_examples

    def attacks_for(self, entry: ModelEntry) -> tuple[AttackEntry, ...]:
        """The run's attacks restricted to the ones ``entry`` names (all by default).

        Args:
            entry: A model of the run.

        Returns:
            The attacks, in the run's order.
        """
        if entry.attacks is None:
            return self.attacks
        return tuple(attack for attack in self.attacks if attack.name in entry.attacks)


def _unknown_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}")


def _int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _float(value: Any, name: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < minimum:
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {value!r}")
    return float(value)


def _attack(table: Any, index: int) -> AttackEntry:
    where = f"attacks[{index}]"
    if not isinstance(table, dict) or "name" not in table:
        raise ConfigError(f"{where} must be a table with a name, got {table!r}")
    _unknown_keys(table, _ATTACK_KEYS, where)
    params = table.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"{where}.params must be a table of the attack's keyword arguments "
                          f"(e.g. params = {{ steps = 40 }}), got {params!r}")
    params = dict(params)
    for reserved in _RESERVED_ATTACK_PARAMS:
        if reserved in params:
            raise ConfigError(f"{where}: set {reserved!r} in [run], not in an attack's params")
    try:
        AttackSpec(table["name"], params)  # validates the name and the parameter names
    except (ValueError, TypeError) as error:
        hint = _REMOVED_ATTACKS.get(table["name"])
        raise ConfigError(f"{where}: {error}" + (f" ({hint})" if hint else "")) from None
    n = table.get("n_examples")
    return AttackEntry(name=table["name"], params=params,
                       n_examples=None if n is None else _int(n, f"{where}: n_examples", 1))


# Architectures a run trains that are not a chain of bounded layers (VGG-19 copies its gray
# input to three channels with a Concatenate, and normalizes it with Normalization).
_UNBOUNDED_ARCHITECTURES = ("vgg19",)


def _check_certifiable_architectures(certified: CertifiedEntry, models: tuple[ModelEntry, ...]) -> None:
    """Refuse now, not after training, a certified model the run would train as VGG-19."""
    for entry in models:
        named = certified.models is None or entry.name in certified.models
        if named and entry.train is not None and entry.train.get("model") in _UNBOUNDED_ARCHITECTURES:
            raise ConfigError(f"[certified]: model {entry.name!r} is a {entry.train['model']} transfer model, whose "
                              "layers have no bounds (its gray-to-RGB Concatenate and Normalization); name the "
                              "models to certify in [certified] models")


def _certified(table: Any, model_names: list[str]) -> CertifiedEntry:
    where = "[certified]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table (methods, models, n_examples, batch_size), got {table!r}")
    _unknown_keys(table, _CERTIFIED_KEYS, where)
    methods = table.get("methods", list(CertifiedEntry.methods))
    if isinstance(methods, str) or not isinstance(methods, list) or not methods:
        raise ConfigError(f"{where} methods must be a non-empty list of bound methods "
                          f"({', '.join(CERTIFIED_METHODS)}), got {methods!r}")
    for method in methods:
        if method not in CERTIFIED_METHODS:
            raise ConfigError(f"{where} methods: unknown bound method {method!r}; choose from: "
                              f"{', '.join(CERTIFIED_METHODS)} (randomized smoothing certifies another classifier, "
                              f"the smoothed one: use advrobust.certify.smoothing)")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"{where} methods: each method may appear once, got {methods!r}")
    models = table.get("models")
    if models is not None:
        if isinstance(models, str) or not isinstance(models, list) or not models \
                or not all(isinstance(name, str) for name in models):
            raise ConfigError(f"{where} models must be a non-empty list of model names, got {models!r}")
        unknown = sorted(set(models) - set(model_names))
        if unknown:
            raise ConfigError(f"{where} models: {unknown} are not models of the run ({', '.join(model_names)})")
        models = tuple(models)
    n = table.get("n_examples")
    return CertifiedEntry(methods=tuple(methods), models=models,
                          n_examples=None if n is None else _int(n, f"{where} n_examples", 1),
                          batch_size=_int(table.get("batch_size", CertifiedEntry.batch_size),
                                          f"{where} batch_size", 1))


def _check_first_attack_unlimited(entry: ModelEntry, attacks: tuple[AttackEntry, ...], run_n: int) -> None:
    """A model's first attack runs on all its test images: the worst case is over those."""
    first = next((attack for attack in attacks if entry.attacks is None or attack.name in entry.attacks), None)
    n = entry.n_examples if entry.n_examples is not None else run_n
    if first is not None and first.n_examples is not None and first.n_examples < n:
        raise ConfigError(f"model {entry.name!r}: its first attack, {first.name!r}, has n_examples = "
                          f"{first.n_examples} < its {n} test images; the first attack runs on all of them (the worst "
                          f"case is over those): list an attack without n_examples first")


def _check_attack_values(attack: AttackEntry, index: int, norm: str, epsilons: tuple[float, ...]) -> None:
    """Let the attack validate its parameter values (:meth:`attacks.AttackSpec.check_values`)
    before any work, so ``steps = 0`` fails now rather than after an hour of training."""
    try:
        attack.spec(norm).check_values(list(epsilons))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"attacks[{index}] ({attack.name!r}).params: {error}") from None


def _model(table: Any, index: int, run: dict[str, Any], attack_names: set[str], base_dir: Path | None,
           seed: int) -> ModelEntry:
    where = f"models[{index}]"
    if not isinstance(table, dict) or not isinstance(table.get("name"), str) or not table["name"].strip():
        raise ConfigError(f"{where} must be a table with a non-empty name, got {table!r}")
    _unknown_keys(table, _MODEL_KEYS, where)
    where = f"models[{index}] ({table['name']!r})"
    dataset = table.get("dataset", run.get("dataset", "fashion_mnist"))
    try:
        check_choice(dataset, DATASETS, "dataset")
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None
    if ("path" in table) == ("train" in table):
        raise ConfigError(f"{where}: give exactly one of path (a saved model) or train (a training config)")
    path = table.get("path")
    if path is not None:
        resolved = Path(path) if base_dir is None or Path(path).is_absolute() else base_dir / path
        if not resolved.is_file():
            raise ConfigError(f"{where}: model file {str(resolved)!r} does not exist")
        path = str(resolved.resolve())
    train = table.get("train")
    if train is not None:
        if not isinstance(train, dict):
            raise ConfigError(f"{where}.train must be a table, got {train!r}")
        train = _resolved_weights(_check_train_types(train, f"{where}.train"), base_dir, f"{where}.train")
    entry_attacks = table.get("attacks")
    if entry_attacks is not None:
        if isinstance(entry_attacks, str) or not all(isinstance(name, str) for name in entry_attacks):
            raise ConfigError(f"{where}: attacks must be a list of attack names, got {entry_attacks!r}")
        missing = sorted(set(entry_attacks) - attack_names)
        if missing:
            raise ConfigError(f"{where}: attacks {missing} are not among the run's attacks "
                              f"({', '.join(sorted(attack_names))})")
        entry_attacks = tuple(entry_attacks)
    n = table.get("n_examples")
    entry = ModelEntry(name=table["name"], dataset=dataset, baseline=table.get("baseline"),
                       weights_sha256=_weights_digest(train),
                       n_examples=None if n is None else _int(n, f"{where}: n_examples", 1),
                       attacks=entry_attacks, path=path, train=dict(train) if train is not None else None)
    if train is not None:
        if "dataset" in train:
            raise ConfigError(f"{where}: set dataset on the model, not inside train")
        try:
            entry.train_config(seed)
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise ConfigError(f"{where}.train: {error}") from None
    return entry


_WEIGHT_WORDS = (None, "none", "None", "imagenet", "pretrained-run")


def _resolved_weights(train: dict[str, Any], base_dir: Path | None, where: str) -> dict[str, Any]:
    """``train`` with a weights file path made absolute against the config file's folder."""
    weights = train.get("weights")
    if weights in _WEIGHT_WORDS:
        return train
    path = Path(weights)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(f"{where}.weights: file {str(path)!r} does not exist (paths are relative to the config "
                          f"file); or use one of: imagenet, none, pretrained-run")
    return {**train, "weights": str(path.resolve())}


def _weights_digest(train: dict[str, Any] | None) -> str | None:
    """SHA-256 of a weights file named in ``train``, so a changed file changes the model's spec."""
    weights = (train or {}).get("weights")
    if weights in _WEIGHT_WORDS:
        return None
    return hashlib.sha256(Path(weights).read_bytes()).hexdigest()


def _type_matches(value: Any, annotation: Any) -> bool:
    """Whether a TOML value fits a field annotation (int, float, str, bool, dict, Optional, Any)."""
    if annotation is Any:
        return True
    if get_origin(annotation) in (Union, type(int | None)):
        return any(_type_matches(value, member) for member in get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = get_origin(annotation) or annotation
    return isinstance(value, origin)


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) in (Union, type(int | None)):
        return " or ".join(_type_name(member) for member in get_args(annotation))
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             dict: "a table", type(None): "absent (None)"}
    return names.get(get_origin(annotation) or annotation, str(annotation))


def _check_train_types(train: dict[str, Any], where: str) -> dict[str, Any]:
    """Check each value of a ``train`` table against its TrainConfig field's type.

    Unknown keys are left to TrainConfig, whose error lists the fields.
    """
    from advrobust.training import TrainConfig

    hints = get_type_hints(TrainConfig)
    for key, value in train.items():
        if key in hints and not _type_matches(value, hints[key]):
            raise ConfigError(f"{where}.{key} must be {_type_name(hints[key])}, got {value!r}")
    return train


def from_dict(document: dict[str, Any], *, base_dir: str | Path | None = None) -> RunConfig:
    """Validate a parsed TOML document and return the :class:`RunConfig`.

    Args:
        document: The parsed TOML: ``run``, ``attacks`` and ``models`` tables, and
            optionally ``certified``.
        base_dir: The folder relative model and weights paths are resolved against (the
            config file's); None: the working directory.

    Returns:
        The validated config.

    Raises:
        ConfigError: The first problem found: an unknown key, a value of the wrong type
            or range, an unknown attack or dataset, a missing file, a baseline that is not
            another model of the run on the same dataset, a ``[certified]`` method that is not
            a bound method or a model it names that the run lacks (a ValueError).
    """
    _unknown_keys(document, {"run", "attacks", "models", "certified"}, "config")
    run = dict(document.get("run", {}))
    _unknown_keys(run, _RUN_KEYS, "[run]")
    try:
        norm = canonical_norm(run.get("norm", "inf"))
    except ValueError as error:
        raise ConfigError(f"[run] norm: {error}") from None
    epsilons = run.get("epsilons")
    if not isinstance(epsilons, list) or not epsilons:
        raise ConfigError(f"[run] epsilons must be a non-empty list of numbers, got {epsilons!r}")
    epsilons = tuple(_float(eps, "[run] every eps") for eps in epsilons)
    if list(epsilons) != sorted(set(epsilons)):
        raise ConfigError(f"[run] epsilons must be increasing without repeats, got {list(epsilons)}")
    seed = _int(run.get("seed", 0), "[run] seed", 0)
    attacks_tables = document.get("attacks")
    if not isinstance(attacks_tables, list) or not attacks_tables:
        raise ConfigError("the config needs at least one [[attacks]] table")
    attacks = tuple(_attack(table, index) for index, table in enumerate(attacks_tables))
    if len({attack.name for attack in attacks}) != len(attacks):
        raise ConfigError("each attack may appear once in [[attacks]]")
    for index, attack in enumerate(attacks):
        _check_attack_values(attack, index, norm, epsilons)
    model_tables = document.get("models")
    if not isinstance(model_tables, list) or not model_tables:
        raise ConfigError("the config needs at least one [[models]] table")
    base = Path(base_dir) if base_dir is not None else None
    models = tuple(_model(table, index, run, {a.name for a in attacks}, base, seed)
                   for index, table in enumerate(model_tables))
    names = [entry.name for entry in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be unique, got {names}")
    run_n = _int(run.get("n_examples", 1000), "[run] n_examples", 1)
    for entry in models:
        _check_first_attack_unlimited(entry, attacks, run_n)
    for entry in models:
        if entry.baseline is not None:
            if entry.baseline not in names or entry.baseline == entry.name:
                raise ConfigError(f"model {entry.name!r}: baseline {entry.baseline!r} is not another model "
                                  f"of the run ({', '.join(names)})")
            if models[names.index(entry.baseline)].dataset != entry.dataset:
                raise ConfigError(f"model {entry.name!r}: its baseline {entry.baseline!r} is on another dataset")
    large_eps = run.get("large_eps")
    certified = None if "certified" not in document else _certified(document["certified"], names)
    if certified is not None:
        _check_certifiable_architectures(certified, models)
    return RunConfig(
        models=models, attacks=attacks, epsilons=epsilons, name=str(run.get("name", "run")),
        dataset=run.get("dataset", "fashion_mnist"), norm=norm,
        n_examples=_int(run.get("n_examples", 1000), "[run] n_examples", 1),
        batch_size=_int(run.get("batch_size", 500), "[run] batch_size", 1), seed=seed,
        examples=_int(run.get("examples", 8), "[run] examples", 0),
        large_eps=None if large_eps is None else _float(large_eps, "[run] large_eps", minimum=1e-12),
        noise_draws=_int(run.get("noise_draws", 3), "[run] noise_draws", 1),
        check_examples=_int(run.get("check_examples", 500), "[run] check_examples", 1), certified=certified)


def loads(text: str, *, base_dir: str | Path | None = None) -> RunConfig:
    """Parse TOML ``text`` into a :class:`RunConfig`.

    Args:
        text: The config's TOML text.
        base_dir: The folder relative paths are resolved against.

    Returns:
        The validated config.

    Raises:
        ConfigError: The text is not TOML, or as :func:`from_dict` raises.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}") from None
    return from_dict(document, base_dir=base_dir)


def load(path: str | Path | None = None) -> RunConfig:
    """Read a config file; ``None`` reads the embedded quick default.

    Args:
        path: The TOML file, or None.

    Returns:
        The validated config; relative paths in it are resolved against the file's folder.

    Raises:
        FileNotFoundError: There is no such file.
        ConfigError: As :func:`loads` raises; the message starts with the file's path.
    """
    if path is None:
        return loads(default_text())
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        return loads(path.read_text(encoding="utf-8"), base_dir=path.parent)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def default_text() -> str:
    """The TOML text of the embedded quick default run.

    Returns:
        The text of ``advrobust/run/configs/quick.toml``.
    """
    return resources.files("advrobust.run").joinpath("configs", DEFAULT_CONFIG_NAME).read_text(encoding="utf-8")
