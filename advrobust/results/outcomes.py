"""What is done with per-image outcomes: finding them in a run folder, per class, and the
paired comparison of two models. NumPy only.

The runner saves, for every model, which test images it got right clean and which
stayed robust at each eps under each attack and under their worst case
(:mod:`advrobust.results.outcome_files`, referenced as ``outcomes`` in results.json).
Two models evaluated on the same test images (the first n of one test split, in one run
or in two) are then compared image by image (:func:`compare`,
:mod:`advrobust.evaluation.stats`); this is what ``advrobust compare`` and the report's
defended-vs-baseline rows show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from advrobust.data.catalog import class_name
from advrobust.evaluation import stats
from advrobust.files import inside
from advrobust.results import outcome_files, schema
from advrobust.results.outcome_files import Outcomes

METHOD = ("per example on the test images both models saw; interval: Newcombe (1998) method 10; "
          "p: exact McNemar (two-sided)")


def from_evaluation(name: str, dataset: str, result: Any, labels: Any = None) -> Outcomes:
    """The outcomes held in an evaluation.

    Args:
        name: the model's name.
        dataset: the dataset of the evaluated test images.
        result: an :class:`advrobust.evaluation.ModelEvaluation`.
        labels: (n,) integer true classes of the evaluated images, or None.

    Returns:
        The :class:`~advrobust.results.outcome_files.Outcomes`; each attack is labelled
        by its name and its parameters as sorted JSON. An attack run on only the first
        examples (a run config's per-attack ``n_examples``) is in ``worst`` but has no
        per-attack row, which holds every example.
    """
    worst = result.worst_case
    complete = [curve for curve in result.curves if curve.n_examples == worst.n_examples]
    return Outcomes(name=name, dataset=dataset, norm=worst.norm, epsilons=np.asarray(worst.epsilons, np.float64),
                    clean=np.asarray(worst.clean_mask, bool), worst=np.asarray(worst.robust_mask, bool),
                    per_attack={f"{curve.attack} {json.dumps(curve.params, sort_keys=True)}":
                                np.asarray(curve.robust_mask, bool) for curve in complete},
                    labels=None if labels is None else np.asarray(labels))


def load(run_dir: str | Path, model: str | None = None) -> Outcomes:
    """The outcomes of one model of a finished run folder.

    Args:
        run_dir: the run folder (holding results.json).
        model: the model's name in the run; None: the run's only model.

    Returns:
        Its :class:`~advrobust.results.outcome_files.Outcomes`, named as in the run.

    Raises:
        FileNotFoundError: no results.json, or no outcomes file for the model (older runs).
        ValueError: ``model`` is None and the run holds several, or no model has that name.
    """
    run_dir = Path(run_dir)
    paths = schema.outcome_paths(run_dir / "results.json")
    names = list(paths)
    if model is None:
        if len(names) != 1:
            raise ValueError(f"{run_dir} holds {len(names)} models; name one as {run_dir}:MODEL, one of: "
                             + ", ".join(names))
        model = names[0]
    elif model not in paths:
        raise ValueError(f"no model {model!r} in {run_dir}; choose one of: {', '.join(names)}")
    relative = paths[model]
    if not relative or not inside(run_dir, relative).is_file():
        raise FileNotFoundError(f"{run_dir} has no per-example outcomes for {model!r} (runs before they were "
                                f"saved); `advrobust run CONFIG --out {run_dir} --resume` writes them from the "
                                f"stored results without attacking again")
    return outcome_files.read(inside(run_dir, relative), name=model)


def per_class(outcomes: Outcomes) -> list[schema.ClassRecord]:
    """Clean and worst-case robust accuracy within each class present among the images.

    Args:
        outcomes: outcomes saved with their labels.

    Returns:
        One :class:`~advrobust.results.schema.ClassRecord` per class, in label order, its
        ``robust_accuracy``, ``ci95_low`` and ``ci95_high`` aligned with
        ``outcomes.epsilons`` (fractions in [0, 1]; 95% Wilson intervals).

    Raises:
        ValueError: the outcomes were saved without their labels.
    """
    labels = _need_labels(outcomes)
    rows = []
    for label in np.unique(labels):
        members = labels == label
        n = int(members.sum())
        robust = outcomes.worst[:, members].sum(axis=1)
        low, high = stats.wilson_interval(robust, n)
        rows.append(schema.ClassRecord(label=int(label), n_examples=n,
                                       clean_accuracy=float(outcomes.clean[members].mean()),
                                       robust_accuracy=(robust / n).tolist(), ci95_low=low.tolist(),
                                       ci95_high=high.tolist()))
    return rows


def _need_labels(outcomes: Outcomes) -> np.ndarray:
    if outcomes.labels is None:
        raise ValueError(f"the outcomes of {outcomes.name!r} were saved without the images' labels (before "
                         f"advrobust kept them); `advrobust run CONFIG --out RUN --resume` writes them again from "
                         f"the stored results without attacking again")
    return outcomes.labels


def _paired_rows(pairs: list[tuple[float | None, np.ndarray, np.ndarray]],
                 members: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for eps, mine, theirs in pairs:
        result = stats.compare_paired(mine[members], theirs[members]).to_dict()
        rows.append({"eps": eps, **{key: value for key, value in result.items() if key != "n_examples"}})
    return rows


def compare(first: Outcomes, second: Outcomes) -> dict[str, Any]:
    """Second against first, image by image, on the first min(n) test images.

    Compares clean accuracy, then worst-case robust accuracy at each eps both were
    evaluated at.

    Args:
        first: The outcomes of the reference model (e.g. the baseline).
        second: The outcomes of the model compared with it (e.g. the defended one).

    Returns:
        ``{"first", "second", "dataset", "norm", "n_examples", "method", "attacks",
        "same_attacks", "rows", "per_class"}`` (``same_attacks``: whether both worst cases
        are over the same attacks and parameters; if not, the comparison mixes model and
        attack); each row: ``eps`` (None: clean), both accuracies, ``difference`` (second
        minus first, in [-1, 1]) with its paired 95% interval, ``only_first``/``only_second``
        (the discordant images) and the exact McNemar ``p_value``. ``per_class``: the same
        rows within each class (``[{"label", "n_examples", "rows"}]``, label order), or None
        when either model's outcomes lack labels.

    Raises:
        ValueError: The two are not comparable (other dataset or norm, or other labels on
            the same images).
    """
    if first.dataset != second.dataset:
        raise ValueError(f"{first.name!r} was evaluated on {first.dataset} and {second.name!r} on {second.dataset}: "
                         f"not the same test images")
    if first.norm != second.norm:
        raise ValueError(f"{first.name!r} was attacked in {first.norm} and {second.name!r} in {second.norm}")
    n = min(first.n, second.n)
    pairs = [(None, first.clean[:n], second.clean[:n])]
    for index, eps in enumerate(second.epsilons):
        hits = np.flatnonzero(np.isclose(first.epsilons, eps, rtol=0.0, atol=1e-9))
        if len(hits):
            pairs.append((float(eps), first.worst[hits[0], :n], second.worst[index, :n]))
    classes = None
    if first.labels is not None and second.labels is not None:
        labels = first.labels[:n]
        if not np.array_equal(labels, second.labels[:n]):
            raise ValueError(f"{first.name!r} and {second.name!r} carry other labels for the same first {n} "
                             f"images: not the same test images")
        classes = [{"label": int(label), "n_examples": int((labels == label).sum()),
                    "rows": _paired_rows(pairs, labels == label)} for label in np.unique(labels)]
    return {"first": first.name, "second": second.name, "dataset": first.dataset, "norm": first.norm,
            "n_examples": n, "method": METHOD, "attacks": {"first": list(first.per_attack),
                                                            "second": list(second.per_attack)},
            "same_attacks": sorted(first.per_attack) == sorted(second.per_attack),
            "rows": _paired_rows(pairs, np.ones(n, bool)), "per_class": classes}


def distinct_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` without an eps-0 row that only repeats the clean row: what tables show.

    Such a row appears when every attack leaves the images unchanged at eps 0.

    Args:
        rows: The rows of :func:`compare` (or of one class), each with ``eps`` (None: clean).

    Returns:
        A new list of the rows in order, less the eps-0 rows equal to the clean row in
        every other field; all of them if there is no clean row.
    """
    clean = next((row for row in rows if row["eps"] is None), None)
    if clean is None:
        return list(rows)
    same_as_clean = [row["eps"] == 0.0 and all(row[key] == clean[key] for key in row if key != "eps")
                     for row in rows]
    return [row for row, repeated in zip(rows, same_as_clean) if not repeated]


def format_comparison(comparison: dict[str, Any], *, per_class: bool = False) -> str:
    """:func:`compare`'s result as a text table (accuracies and differences in percent).

    Args:
        comparison: The result of :func:`compare`.
        per_class: Then add one line per class: clean accuracy and the worst case at the
            largest eps, with the paired difference there (or a line saying why per-class
            rows are not available).

    Returns:
        The lines, joined by newlines: a title, one row per distinct eps (clean first),
        the method, the per-class lines if asked, and a warning when the two worst cases
        are over different attacks.
    """
    lines = [f"{comparison['second']} vs {comparison['first']} on the first {comparison['n_examples']} "
             f"{comparison['dataset']} test images ({comparison['norm']}, worst case per image)",
             f"{'':<10s}{'first':>8s}{'second':>8s}{'Δ points':>10s}{'95% CI (paired)':>20s}"
             f"{'only first':>12s}{'only second':>13s}{'McNemar p':>11s}"]
    for row in distinct_rows(comparison["rows"]):
        where = "clean" if row["eps"] is None else f"eps {row['eps']:g}"
        interval = f"{100 * row['ci95_low']:+.1f} to {100 * row['ci95_high']:+.1f}"
        lines.append(f"{where:<10s}{100 * row['first']:7.1f}%{100 * row['second']:7.1f}%"
                     f"{100 * row['difference']:+10.1f}{interval:>20s}{row['only_first']:>12d}"
                     f"{row['only_second']:>13d}{row['p_value']:>11.2g}")
    lines.append(comparison["method"])
    if per_class:
        lines += _per_class_lines(comparison)
    if not comparison.get("same_attacks", True):
        lines.append("WARNING: the two worst cases are over different attacks, so the difference mixes model "
                     "and attack: " + "; ".join(f"{which}: {', '.join(labels)}"
                                               for which, labels in comparison["attacks"].items()))
    return "\n".join(lines)


def _per_class_lines(comparison: dict[str, Any]) -> list[str]:
    classes = comparison.get("per_class")
    if not classes:
        return ["per class: not available, the outcomes of one model were saved without the images' labels "
                "(`advrobust run CONFIG --out RUN --resume` writes them again)"]
    rows = classes[0]["rows"]
    at = max(range(len(rows)), key=lambda index: -1.0 if rows[index]["eps"] is None else rows[index]["eps"])
    where = "clean" if rows[at]["eps"] is None else f"eps {rows[at]['eps']:g}"
    lines = [f"per class ({where}: worst case per image; Δ: second minus first, paired 95% CI)",
             f"{'class':<14s}{'n':>6s}{'clean 1st':>11s}{'2nd':>7s}{where + ' 1st':>14s}{'2nd':>7s}"
             f"{'Δ points':>10s}{'95% CI':>16s}{'McNemar p':>11s}"]
    for entry in classes:
        clean, robust = entry["rows"][0], entry["rows"][at]
        name = class_name(comparison["dataset"], entry["label"])
        interval = f"{100 * robust['ci95_low']:+.1f} to {100 * robust['ci95_high']:+.1f}"
        lines.append(f"{name[:13]:<14s}{entry['n_examples']:>6d}{100 * clean['first']:10.1f}%"
                     f"{100 * clean['second']:6.1f}%{100 * robust['first']:13.1f}%{100 * robust['second']:6.1f}%"
                     f"{100 * robust['difference']:+10.1f}{interval:>16s}{robust['p_value']:>11.2g}")
    return lines
