"""The main job behind ``advrobust run``: train or load every model of a config, attack
each one at every epsilon, run the sanity checks, and write results and the report.

Layout of the output folder ``DIR``::

    store.sqlite             finished units (models, attacked batches, minimal-eps chunks): resumable
    config.json              the resolved config and its hash
    models/NN-NAME/          model.keras + model.card.json (+ training logs)
    examples/NN-NAME.npz     a few clean/adversarial examples per model for the report
    outcomes/NN-NAME.npz     per test image: label, right clean, robust per eps and attack
                             (advrobust.results.outcome_files)
    results.json, results.csv, report.html, report.md, figures/

results.json is a :class:`advrobust.results.schema.Results` written with its ``to_json``.
Every unit is committed when finished (see :mod:`advrobust.run.store`), so ``--resume``
after a crash or ``kill -9`` recomputes only what was not finished; all other files are
rebuilt from the store and written atomically.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import math
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np

from advrobust import data, evaluation, models, training
from advrobust.evaluation import checks, probes
from advrobust.evaluation.certified import bracket, certified_curve
from advrobust.files import atomic_write_bytes, atomic_write_text, digest
from advrobust.results import outcome_files, outcomes
from advrobust.results.schema import (CertifiedRecord, CheckCurves, CurveRecord, Environment, MinimalEpsRecord,
                                      ModelRecord, PairedVsBaseline, Results, WorstCaseRecord, validate)
from advrobust.run import folder
from advrobust.run.interrupt import CheckedUnits, Interrupts
from advrobust.run.config import AttackEntry, ModelEntry, RunConfig
from advrobust.run.store import STORE_NAME, ResultStore, StoredUnits
from attacks import AttackSpec, get_attack, minimal
from attacks.backend import tf

CSV_COLUMNS = ("model", "dataset", "defense", "architecture", "n_examples", "clean_accuracy", "attack", "norm",
               "eps", "robust_accuracy", "ci95_low", "ci95_high", "seconds")


class RunPart(Protocol):
    """A part of a run: a shard (:mod:`advrobust.run.shard`) or a merge (:mod:`advrobust.run.merge`).

    It prepares the store, decides which units are computed here, and, when ``partial``,
    ends the run once its units are stored, writing no results.

    Attributes:
        partial: The run stops after its units (a shard); False: it writes results.
    """

    partial: bool

    def prepare(self, config: RunConfig, store: ResultStore, out: Path) -> None:
        """Fill or check the store before any model is obtained.

        Args:
            config: The run config.
            store: The run's store.
            out: The run folder.
        """

    def units(self, units: StoredUnits, model: str) -> Any:
        """The unit cache the run uses for a model's units.

        Args:
            units: The store's units of the model.
            model: The model's name.

        Returns:
            An :class:`advrobust.evaluation.curves.UnitCache` wrapping ``units``.
        """

    def computes(self, model: str, key: str, chunk: int, *, stored: bool) -> bool:
        """Whether a chunk of work that is not a unit is this part's to compute or read.

        Such chunks are those of the minimal-eps search; the run asks about every one, in
        run order, stored or not.

        Args:
            model: The model's name.
            key: What the chunk is of (``"minimal_eps"``).
            chunk: The chunk's index, >= 0.
            stored: Whether the store holds the chunk already.

        Returns:
            True if the chunk is this part's: computed here unless stored, and read.
        """

    def finish(self, config: RunConfig, store: ResultStore, out: Path) -> None:
        """Record that a partial run's units are all stored.

        Args:
            config: The run config.
            store: The run's store.
            out: The run folder.
        """


def _log(message: str) -> None:
    print(f"[advrobust] {message}", flush=True)


def model_folder(index: int, name: str) -> str:
    """A file-system-safe folder name for the ``index``-th model called ``name``.

    Args:
        index: The model's position in the run, from 1.
        name: The model's name.

    Returns:
        ``"NN-SLUG"``: the index with two digits and at most 40 characters of
        ``[A-Za-z0-9_-]`` from the name (``"model"`` if none are left).
    """
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:40] or "model"
    return f"{index:02d}-{slug}"


@dataclass
class _Model:
    entry: ModelEntry
    folder: str
    model: Any
    card: dict[str, Any]
    path: str  # relative to the run folder
    spec: str  # see model_spec


def model_spec(entry: ModelEntry, config: RunConfig) -> str:
    """Digest of what decides a model; part of every unit's spec.

    That is its dataset and either its training settings as configured (with the run's
    seed and the bytes of a weights file it names) or the bytes of its file.

    Args:
        entry: The model's entry in the run config.
        config: The run config (for its seed).

    Returns:
        The digest (:func:`advrobust.files.digest`).

    Raises:
        OSError: The model file named by ``path`` cannot be read.
    """
    if entry.path is not None:
        file_digest = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
        return digest({"dataset": entry.dataset, "file_sha256": file_digest})
    settings = {"dataset": entry.dataset, "seed": config.seed, "train": entry.train}
    if entry.weights_sha256 is not None:  # a weights file's bytes decide the model too
        settings["weights_sha256"] = entry.weights_sha256
    return digest(settings)


def _claim_folder(path: Path, spec: str, replaced: bool) -> None:
    """Make ``path`` the folder of the model with ``spec``. A folder left by a model of
    another spec (``replaced``: the store holds one; or its ``model.spec`` differs) is
    moved aside to ``NAME.replaced-TIME``, never trained on from or overwritten; an
    interrupted training of this spec stays, and is resumed."""
    marker = path / "model.spec"
    if path.exists() and (replaced or (marker.exists() and marker.read_text().strip() != spec)):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside, number = path.with_name(f"{path.name}.replaced-{stamp}"), 1
        while aside.exists():
            aside, number = path.with_name(f"{path.name}.replaced-{stamp}-{number}"), number + 1
        path.rename(aside)
        _log(f"{path.name}: made under other settings, moved to {aside.name}")
    atomic_write_text(marker, spec + "\n")


def _obtain_model(index: int, entry: ModelEntry, config: RunConfig, store: ResultStore, out: Path,
                  data_dir: Any, verbose: int, allow_unsafe_load: bool) -> _Model:
    """Load a finished model from the store, or train / copy it and commit it.

    A given file is checked (:func:`advrobust.models.load`) before it is copied into the run.
    """
    folder = model_folder(index, entry.name)
    spec = model_spec(entry, config)
    done = store.model(entry.name, spec)
    if done is not None:
        path, card = done
        _log(f"model {entry.name!r}: finished earlier, loading {path}")
        return _Model(entry, folder, models.load(out / path, allow_unsafe=allow_unsafe_load), card, path, spec)
    _claim_folder(out / "models" / folder, spec, replaced=store.model(entry.name) is not None)
    relative = f"models/{folder}/model.keras"
    if entry.path is not None:
        _log(f"model {entry.name!r}: copying {entry.path}")
        source = Path(entry.path)
        models.load(source, allow_unsafe=allow_unsafe_load)
        atomic_write_bytes(out / relative, source.read_bytes())
        source_card = models.card_path(source)
        card = models.load_card(source) if source_card.is_file() else {}
        card = {**card, "dataset": card.get("dataset", entry.dataset), "source_path": str(source)}
        model = models.load(out / relative, allow_unsafe=allow_unsafe_load)
    else:
        _log(f"model {entry.name!r}: training ({json.dumps(entry.train, sort_keys=True)})")
        trained = training.train(entry.train_config(config.seed), out / "models" / folder, data_dir=data_dir,
                                 verbose=verbose)
        model, card = trained["model"], trained["card"]
    store.put_model(entry.name, relative, card, spec)
    return _Model(entry, folder, model, card, relative, spec)


def _iterative(attacks: tuple[AttackEntry, ...]) -> AttackEntry:
    """The attack used for the extra checks and the example grid: the run's strongest
    iterative one (:data:`advrobust.evaluation.checks.ITERATIVE` lists them strongest first)."""
    for name in checks.ITERATIVE:
        for attack in attacks:
            if attack.name == name:
                return attack
    return AttackEntry("pgd", {"steps": 40, "seed": 0})


def _middle_eps(epsilons: tuple[float, ...]) -> float:
    positive = [eps for eps in epsilons if eps > 0]
    return positive[(len(positive) - 1) // 2] if positive else 0.0


MINIMAL_EPS_SEARCH_STEPS = 8  # bisection rounds: the bracket ends within 2**-8 (0.4%) of DeepFool's bound
MINIMAL_EPS_CHUNK = 100  # check examples per stored chunk of the search (fewer if the run's batch_size is)


def _minimal_eps(item: _Model, x: np.ndarray, y: np.ndarray, config: RunConfig, store: ResultStore,
                 interrupts: Interrupts, part: RunPart | None) -> MinimalEpsRecord | None:
    """Per example of the check examples, the smallest eps at which
    :func:`attacks.minimal_epsilon` found an adversarial example. APGD gets the steps of
    the run's strongest iterative attack, so the curve it implies is comparable with the
    worst case.

    The search runs in chunks of check examples, each seeded from the run's seed and its
    first index, and each stored when done (reused on resume). ``part`` decides which
    chunks are computed here: a shard computes its share and gets None; a merge computes
    none and reads them all.
    """
    n_check = min(config.check_examples, len(x))
    strong = _iterative(config.attacks_for(item.entry))
    default_steps = inspect.signature(get_attack(strong.name)).parameters["steps"].default
    chunk = min(MINIMAL_EPS_CHUNK, config.batch_size)
    params = {"steps": int(strong.params.get("steps", default_steps)),
              "search_steps": MINIMAL_EPS_SEARCH_STEPS, "loss": "ce", "seed": config.seed}
    values, seconds, computed = [], 0.0, []
    for index, start in enumerate(range(0, n_check, chunk)):
        stop = min(start + chunk, n_check)
        spec = digest({"model": item.spec, "norm": config.norm, "examples": [start, stop], "params": params})
        done = store.minimal_eps_chunk(item.entry.name, start, spec)
        if part is not None and not part.computes(item.entry.name, "minimal_eps", index, stored=done is not None):
            continue  # another shard's, or (a merge) read from the store
        if done is None:
            started = time.time()
            seed = int(np.random.default_rng([config.seed, start]).integers(0, 2**62))
            radii = minimal.minimal_epsilon(item.model, x[start:stop], y[start:stop], norm=config.norm,
                                            batch_size=config.batch_size, **{**params, "seed": seed})
            done = (radii, time.time() - started)
            store.put_minimal_eps_chunk(item.entry.name, start, *done, spec=spec)
            computed.append(stop - start)
            interrupts.check()
        values.append(done[0])
        seconds += done[1]
    if computed:
        _log(f"model {item.entry.name!r}: minimal eps searched on {sum(computed)} check examples "
             f"({len(computed)} chunk(s) of at most {chunk})")
    if part is not None and part.partial:
        return None
    found = np.concatenate(values)
    return MinimalEpsRecord(
        attack="minimal_epsilon", norm=config.norm, values=[None if math.isinf(v) else float(v) for v in found],
        note=f"per example of the first {n_check} test images, the distance of the closest adversarial example "
             f"found (DeepFool bound, then {MINIMAL_EPS_SEARCH_STEPS} bisection rounds of APGD-CE with "
             f"{params['steps']} steps); 0: misclassified clean; null: none found within the clip box",
        params={**params, "n_examples": n_check, "chunk_examples": chunk}, seconds=round(seconds, 2))


def _examples(item: _Model, x: np.ndarray, y: np.ndarray, attack: AttackEntry, eps: float, norm: str,
              count: int, out: Path) -> str | None:
    """Attack the first ``count`` clean-correct examples; save them for the report's grid."""
    if count == 0 or eps <= 0:
        return None
    predictions = np.argmax(evaluation.logits_of(item.model, x), axis=1)
    chosen = np.flatnonzero(predictions == y)[:count]
    if not chosen.size:
        return None
    params = {key: value for key, value in attack.params.items() if key != "early_stop"}
    x_adv = AttackSpec(attack.name, {**params, "norm": norm})(item.model, x[chosen], y[chosen], eps=eps)
    relative = f"examples/{item.folder}.npz"
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=x[chosen], x_adv=x_adv, y=y[chosen], pred_clean=predictions[chosen],
                        pred_adv=np.argmax(evaluation.logits_of(item.model, x_adv), axis=1),
                        eps=np.float64(eps), attack=np.str_(attack.name))
    atomic_write_bytes(out / relative, buffer.getvalue())
    return relative


def _run_checks(item: _Model, others: list[_Model], x: np.ndarray, y: np.ndarray, result: evaluation.ModelEvaluation,
                config: RunConfig, cache: StoredUnits, progress: bool, *,
                probes: bool = True, strategy: Any = None) -> tuple[list[checks.Check], CheckCurves]:
    """Run the extra attacks the checks need (as stored units); the verdicts and those curves.

    ``probes=False`` leaves out the masking probes (a shard: its curves are partial, and
    the merge, which sees them whole, runs the probes).
    """
    n_check = min(config.check_examples, len(x))
    x_check, y_check = x[:n_check], y[:n_check]
    found = [checks.logits(evaluation.logits_of(item.model, x_check)),
             checks.gradients(evaluation.input_gradient_norms(item.model, x_check, y_check))]
    # Not the worst case: it is monotone by construction (evaluation.worst_case).
    found += [checks.monotone(curve) for curve in result.curves]
    found += checks.iterative_not_weaker(result.curves)
    strong = _iterative(config.attacks_for(item.entry))
    common = dict(norm=config.norm, batch_size=config.batch_size, progress=progress, cache=cache, strategy=strategy)
    large = evaluation.robust_accuracy_curve(item.model, x_check, y_check, attack=strong.name,
                                             epsilons=[config.effective_large_eps], params=strong.params,
                                             cache_key=f"check:large_eps:{strong.name}", **common)
    found.append(checks.large_eps(large))
    noise = evaluation.robust_accuracy_curve(item.model, x_check, y_check, attack="noise",
                                             epsilons=config.epsilons,
                                             params={"draws": config.noise_draws, "seed": config.seed},
                                             cache_key="check:noise", **common)
    found.append(checks.noise_not_stronger(noise, result.worst_case))
    transfers = []
    middle = _middle_eps(config.epsilons)
    for source in others:
        if source.entry.dataset != item.entry.dataset or middle <= 0:
            continue
        n_transfer = min(n_check, config.n_for(source.entry))
        transfer = evaluation.robust_accuracy_curve(
            item.model, x[:n_transfer], y[:n_transfer], attack=strong.name, epsilons=[middle], params=strong.params,
            source_model=source.model, cache_key=f"check:transfer:{source.entry.name}:{source.spec[:16]}",
            **common)
        found.append(checks.black_box_not_stronger(transfer, result.worst_case, source.entry.name))
        transfers.append(CurveRecord.of(transfer, source=source.entry.name))
    attacks = config.attacks_for(item.entry)
    base = result.curves[attacks.index(strong)] if strong in attacks else None
    if probes:
        found += _masking_checks(item.model, x_check, y_check, result, config, strong, base, progress)
    return found, CheckCurves(large_eps=CurveRecord.of(large), noise=CurveRecord.of(noise), transfer=transfers)


# Budgets of the masking probes (docs/guide/report.md states them with each check).
PROBE_EXAMPLES = 50  # the most examples the PGD path probe and DeepFool run on
SQUARE_QUERIES_PER_STEP = 10  # Square's queries per step of the run's iterative attack: 400 for PGD-40


def _probe_eps(worst: evaluation.Curve, n_check: int) -> float | None:
    """The eps of the grid where the worst case leaves closest to half of the clean-correct
    check examples robust (where a stronger attack could show most); None if no eps > 0."""
    positive = np.flatnonzero(worst.epsilons > 0)
    if not positive.size:
        return None
    robust = worst.robust_mask[positive, :n_check].mean(axis=1)
    half = worst.clean_mask[:n_check].mean() / 2
    return float(worst.epsilons[positive[int(np.argmin(np.abs(robust - half)))]])


def _attack_default(name: str, parameter: str) -> Any:
    parameters = inspect.signature(get_attack(name)).parameters
    return parameters[parameter].default if parameter in parameters else None


def _still_robust_under(attack: str, params: dict[str, Any], model: Any, x: np.ndarray, y: np.ndarray, eps: float,
                        before: np.ndarray, clean: np.ndarray, config: RunConfig, progress: bool) -> SimpleNamespace:
    """A curve-like record at ``eps``: ``attack`` on the examples robust ``before`` (n,);
    the others, fooled already, keep their mask. Only the attacked examples cost work."""
    robust = before.copy()
    todo = np.flatnonzero(before)
    if todo.size:
        curve = evaluation.robust_accuracy_curve(model, x[todo], y[todo], attack=attack, epsilons=[eps],
                                                 norm=config.norm, params=params, batch_size=config.batch_size,
                                                 progress=progress)
        robust[todo] = curve.robust_mask[0]
    return SimpleNamespace(attack=attack, params=params, epsilons=np.array([eps]), robust_mask=robust[None, :],
                           clean_mask=clean, robust_accuracy=robust[None, :].mean(axis=1))


def _masking_checks(model: Any, x: np.ndarray, y: np.ndarray, result: evaluation.ModelEvaluation,
                    config: RunConfig, strong: AttackEntry, base: evaluation.Curve | None,
                    progress: bool) -> list[checks.Check]:
    """The probes for gradient masking on the check examples ``x, y`` (see
    :mod:`advrobust.evaluation.probes`); ``base`` is the run's curve of ``strong``, None if
    the run has no iterative attack (then there is no budget of its own to double). The
    probes are not stored units: they are seeded, and recomputed by a resume."""
    n = len(x)
    found = [checks.deterministic(probes.repeated_logits(model, x, batch_size=config.batch_size))]
    eps = _probe_eps(result.worst_case, n)
    if eps is None or not result.worst_case.robust_mask[result.worst_case.epsilons > 0, :n].any():
        return found  # every check example is fooled at every eps > 0: no number that masking could inflate
    x_probe, y_probe = x[:PROBE_EXAMPLES], y[:PROBE_EXAMPLES]
    clean, robust = probes.unbounded_robust(model, x_probe, y_probe, norm=config.norm)
    found.append(checks.unbounded(clean, robust, "deepfool"))
    steps = int(strong.params.get("steps", _attack_default(strong.name, "steps")))
    seed = int(strong.params.get("seed", config.seed))
    path = probes.pgd_path(model, x_probe, y_probe, eps=eps, norm=config.norm, steps=max(steps, 2), seed=seed,
                           batch_size=config.batch_size)
    found.append(checks.fooled_points_kept(path.clean, path.fooled_on_path, path.fooled_at_end))
    found.append(checks.loss_converged(path.clean & ~path.fooled_on_path, path.loss_clean, path.loss_early,
                                       path.loss_final))
    if base is not None:  # the run's own iterative attack: does its budget decide its numbers?
        found += _doubling_checks(model, x, y, base, strong, eps, steps, config, progress)
    white_box = [curve for curve in result.curves if curve.attack not in checks.BLACK_BOX]
    if white_box:
        found.append(_square_check(model, x, y, result, evaluation.worst_case(white_box), config, eps,
                                   SQUARE_QUERIES_PER_STEP * steps, seed, progress))
    return found


def _doubling_checks(model: Any, x: np.ndarray, y: np.ndarray, base: evaluation.Curve, strong: AttackEntry,
                     eps: float, steps: int, config: RunConfig, progress: bool) -> list[checks.Check]:
    """``strong`` (whose curve is ``base``) with twice its steps, and with twice its restarts
    if it has any, on the check examples it left robust at ``eps``."""
    n = len(x)
    at = int(np.flatnonzero(np.isclose(base.epsilons, eps))[0])
    doubled = {"steps": 2 * steps}
    restarts = _attack_default(strong.name, "restarts")
    if restarts is not None:
        doubled["restarts"] = 2 * int(strong.params.get("restarts", restarts))
    found = []
    for what, value in doubled.items():
        twice = _still_robust_under(strong.name, {**strong.params, what: value}, model, x, y, eps,
                                    base.robust_mask[at, :n], base.clean_mask[:n], config, progress)
        found.append(checks.budget_doubled(base, twice, what))
    return found


def _square_check(model: Any, x: np.ndarray, y: np.ndarray, result: evaluation.ModelEvaluation,
                  white_box: evaluation.Curve, config: RunConfig, eps: float, queries: int, seed: int,
                  progress: bool) -> checks.Check:
    """Square against the white-box worst case: the run's own Square curve at every eps if
    it ran one, else Square at ``eps`` on the check examples every white-box attack missed."""
    ran = [curve for curve in result.curves if curve.attack == "square"]
    if ran:
        return checks.square_not_stronger(ran[0], white_box)
    n = len(x)
    at = int(np.flatnonzero(np.isclose(white_box.epsilons, eps))[0])
    square = _still_robust_under("square", {"queries": queries, "seed": seed}, model, x, y, eps,
                                 white_box.robust_mask[at, :n], white_box.clean_mask[:n], config, progress)
    return checks.square_not_stronger(square, white_box)


def environment() -> Environment:
    """Library versions, the compute device and the platform.

    Returns:
        The environment: the GPUs' names, or ``"CPU only (N cores)"``.
    """
    gpus = tf.config.list_physical_devices("GPU")
    device = (", ".join(gpu.name for gpu in gpus) if gpus else f"CPU only ({os.cpu_count()} cores)")
    return Environment(versions=models.library_versions(), device=device, platform=platform.platform(),
                       cpu_count=os.cpu_count())


def _model_record(item: _Model, result: evaluation.ModelEvaluation, found: list[checks.Check],
                  check_curves: CheckCurves, examples: str | None, minimal_eps: MinimalEpsRecord,
                  per_example: outcome_files.Outcomes, paired: PairedVsBaseline | None,
                  certified: list[CertifiedRecord] | None = None) -> ModelRecord:
    """results.json's record of one evaluated model; its outcomes file is ``outcomes/FOLDER.npz``."""
    return ModelRecord(
        name=item.entry.name, dataset=item.entry.dataset, defense=item.card.get("defense", "none"),
        architecture=item.card.get("architecture", "unknown"), baseline=item.entry.baseline, path=item.path,
        card=str(models.card_path(item.path)), n_examples=per_example.n, clean_accuracy=float(result.clean_accuracy),
        training_seconds=item.card.get("training_seconds"), curves=[CurveRecord.of(curve) for curve in result.curves],
        worst_case=WorstCaseRecord.of(result.worst_case), checks=list(found), check_curves=check_curves,
        examples=examples, minimal_eps=minimal_eps, per_class=outcomes.per_class(per_example),
        outcomes=f"outcomes/{item.folder}.npz", paired_vs_baseline=paired, certified=certified)


def _csv(records: list[ModelRecord]) -> str:
    """results.csv: one row per model, attack (the worst case, each bound method) and eps."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        worst = record.worst_case
        rows = [(curve.attack, curve.norm, curve.epsilons, curve.robust_accuracy, curve.ci95_low, curve.ci95_high,
                 curve.seconds, curve.n_examples, curve.clean_accuracy) for curve in record.curves]
        rows.append(("worst_case", record.curves[0].norm, worst.epsilons, worst.robust_accuracy, worst.ci95_low,
                     worst.ci95_high, sum(curve.seconds for curve in record.curves), record.n_examples,
                     record.clean_accuracy))
        # A bound's rows: its verified accuracy on the first n (its clean column: the model's).
        rows += [(f"certified:{bound.method}", bound.norm, bound.epsilons, bound.certified_accuracy, bound.ci95_low,
                  bound.ci95_high, bound.seconds, bound.n_examples, record.clean_accuracy)
                 for bound in record.certified or []]
        # An attack limited to the first images (per-attack n_examples) has its own n and clean accuracy.
        for attack, norm, epsilons, accuracy, low, high, seconds, n, clean in rows:
            for index, eps in enumerate(epsilons):
                writer.writerow([record.name, record.dataset, record.defense, record.architecture,
                                 n, f"{clean:.6f}", attack, norm, f"{eps:g}",
                                 f"{accuracy[index]:.6f}", f"{low[index]:.6f}", f"{high[index]:.6f}",
                                 f"{seconds:.2f}"])
    return buffer.getvalue()


def summary_text(results: Results) -> str:
    """Clean and worst-case robust accuracy per model and eps, and failed checks, as text.

    Args:
        results: a run's results.

    Returns:
        The lines the run prints at its end, joined by newlines.
    """
    epsilons = results.config["epsilons"]
    lines = ["worst-case robust accuracy per eps",
             f"{'model':<22s}{'n':>6s}{'clean':>8s}" + "".join(f"{eps:>8g}" for eps in epsilons)]
    for record in results.models:
        accuracies = "".join(f"{value:8.3f}" for value in record.worst_case.robust_accuracy)
        lines.append(f"{record.name[:21]:<22s}{record.n_examples:>6d}{record.clean_accuracy:8.3f}{accuracies}")
    failed = [(record.name, check) for record in results.models for check in record.checks if not check.passed]
    lines.append("worst case over: " + ", ".join(a["name"] for a in results.config["attacks"])
                 + f" ({results.config['norm']})")
    for record in results.models:
        lines += _weakest_classes(record)
    for record in results.models:
        lines += _paired_lines(record)
    for record in results.models:
        lines += _bracket_lines(record)
    if failed:
        lines.append(f"FAILED CHECKS ({len(failed)}):")
        lines += [f"  {name}: {check.name}: {check.detail}" for name, check in failed]
    else:
        lines.append("all sanity checks passed")
    return "\n".join(lines)


def _paired_lines(record: ModelRecord) -> list[str]:
    paired = record.paired_vs_baseline
    if paired is None:
        return []
    lines = []
    for row in outcomes.distinct_rows([row.to_dict() for row in paired.rows]):
        where = "clean" if row["eps"] is None else f"eps {row['eps']:g}"
        lines.append(f"{record.name} vs {paired.baseline}, {where}: "
                     f"{100 * row['difference']:+.1f} points [{100 * row['ci95_low']:+.1f}, "
                     f"{100 * row['ci95_high']:+.1f}] (paired 95%), McNemar p {row['p_value']:.2g}, "
                     f"n {paired.n_examples}")
    return lines


def _bracket_lines(record: ModelRecord) -> list[str]:
    """Per bound method, the robust accuracy's bracket at each eps: certified <= attacked."""
    return [f"{record.name}, robust accuracy between {certified.method} and the attacks (first "
            f"{certified.n_examples}): " + ", ".join(
                f"eps {eps:g} [{low:.3f}, {high:.3f}]"
                for eps, low, high in zip(certified.epsilons, certified.certified_accuracy,
                                          certified.attacked_accuracy))
            for certified in record.certified or []]


def _weakest_classes(record: ModelRecord, count: int = 3) -> list[str]:
    """One line naming the ``count`` classes with the lowest worst case at the largest eps."""
    classes, epsilons = record.per_class, record.worst_case.epsilons
    if not classes or not epsilons:
        return []
    at = int(np.argmax(epsilons))
    weakest = sorted(classes, key=lambda entry: entry.robust_accuracy[at])[:count]
    return [f"{record.name}, weakest classes at eps {epsilons[at]:g}: " + ", ".join(
        f"{data.class_name(record.dataset, entry.label)} {entry.robust_accuracy[at]:.3f} (n {entry.n_examples})"
        for entry in weakest)]


def _test_set(entry: ModelEntry, config: RunConfig, data_dir: Any) -> tuple[np.ndarray, np.ndarray]:
    """The first ``config.n_for(entry)`` test images of the model's dataset and their labels."""
    n = config.n_for(entry)
    x, y = data.load(entry.dataset, "test", data_dir)
    return x[:n], y[:n]


def _units(store: ResultStore, item: _Model, interrupts: Interrupts, part: RunPart | None) -> CheckedUnits:
    """The cache of ``item``'s units: the store's, as ``part`` restricts it, checked for Ctrl-C."""
    units = StoredUnits(store, item.entry.name, item.spec)
    return CheckedUnits(units if part is None else part.units(units, item.entry.name), interrupts)


def _evaluate(item: _Model, config: RunConfig, store: ResultStore, data_dir: Any,
              progress: bool, interrupts: Interrupts, part: RunPart | None,
              strategy: Any = None) -> evaluation.ModelEvaluation:
    """Every configured attack on ``item`` at every eps (units cached in ``store``)."""
    entry = item.entry
    x, y = _test_set(entry, config, data_dir)
    attacks = config.attacks_for(entry)
    _log(f"model {entry.name!r}: {', '.join(a.name for a in attacks)} on {len(x)} {entry.dataset} test "
         f"images at eps {', '.join(f'{e:g}' for e in config.epsilons)} ({config.norm})")
    units = _units(store, item, interrupts, part)
    with interrupts.deferred():
        result = evaluation.evaluate({entry.name: item.model}, x, y, attacks=[(a.name, a.params) for a in attacks],
                                     epsilons=config.epsilons, norm=config.norm, batch_size=config.batch_size,
                                     caches={entry.name: units}, progress=progress,
                                     n_examples={a.name: a.n_examples for a in attacks if a.n_examples},
                                     strategy=strategy)[entry.name]
    worst = result.worst_case
    if part is not None and part.partial:
        return result  # a shard's curves hold only its own units: nothing to tell yet
    _log(f"model {entry.name!r}: clean {worst.clean_accuracy:.4f}; worst case "
         + ", ".join(f"{acc:.4f} at eps {eps:g}" for eps, acc in zip(worst.epsilons, worst.robust_accuracy)))
    return result


def _check_certifiable(item: _Model, config: RunConfig) -> None:
    """Refuse, before any attack, a model to be certified that holds a layer without a bound."""
    if config.certified_for(item.entry):
        from defenses import bounds

        try:
            bounds.network(item.model)
        except (ValueError, TypeError) as error:
            raise ValueError(f"model {item.entry.name!r} cannot be certified ([certified] in the config): {error}; "
                             f"list the models to certify in [certified] models") from None


def _certify(item: _Model, config: RunConfig, store: ResultStore, data_dir: Any, progress: bool,
             interrupts: Interrupts, part: RunPart | None, strategy: Any = None) -> list[evaluation.Curve]:
    """The verified-accuracy curve of each bound method the config names for ``item``, on
    its first ``[certified] n_examples`` test images (units cached in ``store``)."""
    methods = config.certified_for(item.entry)
    if not methods:
        return []
    x, y = _test_set(item.entry, config, data_dir)
    n = min(len(x), config.certified.n_examples or len(x))
    units = _units(store, item, interrupts, part)
    curves = []
    for method in methods:
        _log(f"model {item.entry.name!r}: {method} bounds on {n} test images at eps "
             f"{', '.join(f'{e:g}' for e in config.epsilons)} ({config.norm})")
        with interrupts.deferred():
            curves.append(certified_curve(item.model, x[:n], y[:n], method=method, epsilons=config.epsilons,
                                          norm=config.norm, batch_size=config.batch_size,
                                          bound_batch_size=config.certified.batch_size, progress=progress,
                                          cache=units, strategy=strategy))
        if part is None or not part.partial:
            _log(f"model {item.entry.name!r}: verified ({method}) "
                 + ", ".join(f"{acc:.4f} at eps {eps:g}" for eps, acc in zip(curves[-1].epsilons,
                                                                              curves[-1].robust_accuracy)))
    return curves


def run(config: RunConfig, out_dir: str | Path, *, resume: bool = False, update: bool = False,
        data_dir: Any = None, progress: bool = True, report: bool = True,
        allow_unsafe_load: bool = False, force: bool = False, part: RunPart | None = None,
        train_only: bool = False, strategy: Any = None) -> Results | None:
    """Run ``config`` into ``out_dir``: results.json, results.csv and (with ``report``) the report.

    Args:
        config: the run config.
        out_dir: the run folder (created if needed).
        resume: go on with the finished models and units of an interrupted run of ``config``.
        update: go on under the changed config, reusing every finished model and unit whose
            spec (what decides its outcome) is unchanged; the results then cover exactly this
            config.
        data_dir: where the datasets are (None: the default lookup).
        progress: show progress bars and training logs.
        report: also write report.html, report.md and the figures.
        allow_unsafe_load: models given by ``path`` may be H5 or SavedModel files, whose
            loading can run code from the file (see :func:`advrobust.models.load`); only for
            files you trust.
        force: use ``out_dir`` even if it is a non-empty folder that holds no run.
        part: run only a part: a shard (:class:`advrobust.run.shard.Shard`) or a merge of
            shards (:func:`advrobust.run.merge.merge`); None: the whole run.
        train_only: train (or copy) every model and stop, attacking nothing: the models a
            sharded run's shards take with ``--models-from``.
        strategy: A ``tf.distribute.Strategy`` whose replicas attack the units of
            evaluation, one each at a time (see :mod:`advrobust.evaluation.replicas`), or
            None for one device. Not part of the config: the results do not depend on it.

    Returns:
        The :class:`~advrobust.results.schema.Results` written to results.json; None for a
        ``train_only`` run or a shard, which write no results.

    Raises:
        advrobust.run.store.StoreMismatchError: ``out_dir`` holds results of another config
            (unless ``update``), or of this one without ``resume``.
        advrobust.run.folder.RunFolderError: another run holds ``out_dir``, or it is a
            non-empty folder that holds no run (and not ``force``).
        ValueError: ``train_only`` with a ``part``, or as ``part`` refuses the folder, or a
            model the config certifies holds a layer without a bound.
        advrobust.evaluation.checks.CertificateViolation: an attack broke a point a bound
            certified (raised after results.json and the report are written, which show it).
    """
    if train_only and part is not None:
        raise ValueError("--train-only trains the models for the shards; it is not itself a shard: drop --shard")
    with folder.claim(out_dir, force=force) as out, Interrupts().installed() as interrupts:
        return _run(config, out, resume=resume, update=update, data_dir=data_dir, progress=progress, report=report,
                    allow_unsafe_load=allow_unsafe_load, interrupts=interrupts, part=part, train_only=train_only,
                    strategy=strategy)


def _run(config: RunConfig, out: Path, *, resume: bool, update: bool, data_dir: Any, progress: bool, report: bool,
         allow_unsafe_load: bool, interrupts: Interrupts, part: RunPart | None,
         train_only: bool, strategy: Any = None) -> Results | None:
    """:func:`run` inside the claimed run folder ``out``."""
    started = time.time()
    config_hash = config.hash()
    with ResultStore(out / STORE_NAME, config_hash=config_hash, config=config.to_dict(), resume=resume,
                     update=update) as store:
        if store.updated_from is not None:
            _log(f"config changed (hash {store.updated_from[:12]} -> {config_hash[:12]}): finished models and "
                 f"units whose settings are unchanged are kept, the rest is computed")
        atomic_write_text(out / "config.json", json.dumps({"config_hash": config_hash, "config": config.to_dict()},
                                                          indent=2) + "\n")
        verbose = 2 if progress else 0
        if part is not None:
            part.prepare(config, store, out)
        # Each model is evaluated as soon as it exists, so a long run shows (and stores) a
        # model's robustness before the next one trains; the checks, which attack each model
        # from the others, follow once all are there.
        items, evaluations, certified = [], [], []
        for index, entry in enumerate(config.models):
            items.append(_obtain_model(index, entry, config, store, out, data_dir, verbose, allow_unsafe_load))
            _check_certifiable(items[-1], config)
            if not train_only:
                evaluations.append(_evaluate(items[-1], config, store, data_dir, progress, interrupts, part,
                                             strategy))
                certified.append(_certify(items[-1], config, store, data_dir, progress, interrupts, part, strategy))
        if train_only:
            _log(f"{len(items)} model(s) ready in {out}; nothing attacked (--train-only)")
            return None
        measured, per_example = [], {}
        for item, result, bounded in zip(items, evaluations, certified):
            x, y = _test_set(item.entry, config, data_dir)
            units = _units(store, item, interrupts, part)
            with interrupts.deferred():
                verdicts, check_curves = _run_checks(item, [other for other in items if other is not item], x, y,
                                                     result, config, units, progress,
                                                     probes=part is None or not part.partial, strategy=strategy)
            with interrupts.deferred():
                minimal_eps = _minimal_eps(item, x, y, config, store, interrupts, part)
            if part is not None and part.partial:
                continue
            verdicts += [checks.certified_not_broken(curve, result.curves, model=item.entry.name) for curve in bounded]
            examples = _examples(item, x, y, _iterative(config.attacks_for(item.entry)), _middle_eps(config.epsilons),
                                 config.norm, config.examples, out)
            measured.append((verdicts, check_curves, examples, minimal_eps,
                             [CertifiedRecord.of(curve, bracket(curve, result.worst_case)) for curve in bounded]))
            per_example[item.entry.name] = outcomes.from_evaluation(item.entry.name, item.entry.dataset, result,
                                                                    labels=y)
        if part is not None and part.partial:
            part.finish(config, store, out)
            return None
        records = []
        for item, result, (verdicts, check_curves, examples, minimal_eps, bounded) in zip(items, evaluations,
                                                                                           measured):
            mine = per_example[item.entry.name]
            paired = None if item.entry.baseline is None else PairedVsBaseline.of(
                outcomes.compare(per_example[item.entry.baseline], mine))
            records.append(_model_record(item, result, verdicts, check_curves, examples, minimal_eps, mine, paired,
                                         bounded or None))
            outcome_files.write(mine, out / records[-1].outcomes)
        results = Results(config=config.to_dict(), config_hash=config_hash, started=store.created,
                          finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), seconds=round(time.time() - started, 1),
                          environment=environment(), models=records)
    text = results.to_json()
    validate(json.loads(text))  # what is written must read back strictly
    atomic_write_text(out / "results.json", text)
    atomic_write_text(out / "results.csv", _csv(records))
    if report:
        from advrobust.reporting import build_report

        build_report(out)
    print(summary_text(results), flush=True)
    violated = [check for record in records for check in record.checks
                if checks.kind_of(check.name) == "certified_not_broken" and not check.passed]
    if violated:
        raise checks.CertificateViolation(violated)
    return results
