"""The ``advrobust`` command: parses arguments and calls the library. No logic of its own."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import shlex
import sys
import typing
from pathlib import Path
from typing import Any, Sequence

from advrobust.evaluation.checks import CertificateViolation
from advrobust.run.folder import RunFolderError
from advrobust.run.interrupt import RunInterrupted

# What a user's input or situation causes: one line and exit status 2, never a traceback.
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, ImportError, RunFolderError)
# File-system refusals the user can fix (permissions, a full or read-only disk, a file where
# a folder belongs); other OSErrors are bugs and keep their traceback.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EISDIR}


def _add_unsafe_load(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unsafe-load", action="store_true",
                        help="also load H5 and SavedModel files, whose loading can run code stored in the file "
                             "(Lambda layers); only for files you trust. Default: only the zip .keras format, "
                             "in Keras's safe mode")


def _add_strategy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", default="auto",
                        help="tf.distribute strategy whose replicas attack the chunks, one each at a time: auto "
                             "(mirrored with 2+ GPUs, else one device), default (one device), mirrored (every GPU, "
                             "else every logical CPU); the results do not depend on it")


def _add_train(subparsers) -> None:
    from advrobust import training

    parser = subparsers.add_parser(
        "train", help="train a baseline CNN or VGG-19 transfer model and save it with its card",
        description="Train a model on MNIST or Fashion-MNIST; writes OUT/model.keras, "
                    "OUT/model.card.json, TensorBoard logs in OUT/logs and OUT/training_log.csv.")
    _add_config_flags(parser, training.TrainConfig)
    parser.add_argument("--data-dir", default=None, help="folder with the dataset files")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from advrobust import training

    config = training.TrainConfig.from_command_line(**_config_options(args, training.TrainConfig))
    training.train(config, args.out, data_dir=args.data_dir, verbose=2)
    return 0


def _add_config_flags(parser: argparse.ArgumentParser, config_type: type) -> None:
    """Add a flag for each field of the dataclass ``config_type`` whose metadata asks for one.

    The metadata keys (``help``, ``choices``, ``flag``, ``params``) are described in
    ``advrobust/training/config.py``; the flag's default is the field's, its type the
    field's (``int | None`` parses an int).
    """
    types = typing.get_type_hints(config_type)
    for spec in dataclasses.fields(config_type):
        for key, (kind, help_text) in spec.metadata.get("params", {}).items():
            parser.add_argument(_flag_name(key), dest=key, type=kind, default=None, help=help_text)
        if "help" in spec.metadata:
            _add_field_flag(parser, spec, _scalar_type(types[spec.name], spec.name))


def _add_field_flag(parser: argparse.ArgumentParser, spec: dataclasses.Field, kind: type) -> None:
    """The flag of one field: a switch that flips the default for a bool, else a value."""
    metadata = spec.metadata
    if kind is bool:
        flag = metadata.get("flag", _flag_name(f"no_{spec.name}" if spec.default else spec.name))
        parser.add_argument(flag, dest=spec.name, action="store_false" if spec.default else "store_true",
                            help=metadata["help"])
        return
    flag = metadata.get("flag", _flag_name(spec.name))
    options: dict[str, Any] = {"default": spec.default, "help": metadata["help"]}
    if "choices" in metadata:
        options["choices"] = metadata["choices"]
    else:
        options["metavar"] = flag.lstrip("-").replace("-", "_").upper()
    if kind is not str:
        options["type"] = kind
    parser.add_argument(flag, dest=spec.name, **options)


def _config_options(args: argparse.Namespace, config_type: type) -> dict[str, Any]:
    """The fields of ``config_type`` that :func:`_add_config_flags` made flags of, as parsed;
    a ``params`` field holds the keys whose flags were given."""
    options: dict[str, Any] = {}
    for spec in dataclasses.fields(config_type):
        if "params" in spec.metadata:
            options[spec.name] = {key: getattr(args, key) for key in spec.metadata["params"]
                                  if getattr(args, key) is not None}
        elif "help" in spec.metadata:
            options[spec.name] = getattr(args, spec.name)
    return options


def _flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_type(annotation: Any, name: str) -> type:
    """``annotation`` without ``None``: the type a flag parses (bool, int, float or str)."""
    kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)] or [annotation]
    if len(kinds) != 1 or kinds[0] not in (bool, int, float, str):
        raise TypeError(f"field {name!r} has type {annotation!r}; a command-line option must be "
                        "bool, int, float or str (optionally | None)")
    return kinds[0]


def _add_attack(subparsers) -> None:
    from advrobust import data
    from attacks import ATTACKS
    from attacks.ensemble import PRESETS
    from attacks.precision import COMPUTE_DTYPES

    parser = subparsers.add_parser(
        "attack", help="robust accuracy of a saved model under one attack at several epsilons",
        description="Attack the first N test images of a dataset; prints clean and robust accuracy "
                    "per eps (with 95% Wilson intervals) and writes JSON.")
    parser.add_argument("--model", required=True, help="saved .keras model (logits output)")
    parser.add_argument("--dataset", required=True, choices=data.DATASETS)
    parser.add_argument("--attack", default="pgd", choices=tuple(ATTACKS))
    parser.add_argument("--norm", default="inf", choices=("inf", "l2"))
    parser.add_argument("--eps", type=float, nargs="+", required=True)
    parser.add_argument("--steps", type=int, default=None, help="iterations (bim, pgd, mim, apgd)")
    parser.add_argument("--step-size", type=float, default=None, help="absolute step size (default per attack)")
    parser.add_argument("--restarts", type=int, default=None, help="random restarts (pgd, mim, apgd)")
    parser.add_argument("--preset", default=None, choices=tuple(PRESETS),
                        help="the members of the autoattack ensemble (default: standard); prints the points each "
                             "member broke")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compute-dtype", default=None, choices=COMPUTE_DTYPES,
                        help="take gradients in this dtype (faster on 16-bit hardware; "
                             "accuracy is always judged in the model's own dtype)")
    parser.add_argument("--n", type=int, default=1000, help="first N test images")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="write results to this JSON file")
    _add_strategy(parser)
    _add_unsafe_load(parser)
    parser.set_defaults(handler=_run_attack)


def _run_attack(args: argparse.Namespace) -> int:
    import inspect
    import json

    from advrobust import data, evaluation, models
    from advrobust.files import atomic_write_text, writable_folder
    from attacks import get_attack
    from defenses.distribute import get_strategy

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    accepted = inspect.signature(get_attack(args.attack)).parameters
    options = (("steps", args.steps), ("step_size", args.step_size), ("restarts", args.restarts),
               ("compute_dtype", args.compute_dtype), ("preset", args.preset))
    params = {name: value for name, value in (*options, ("seed", args.seed))
              if value is not None and name in accepted}
    for name, value in options:
        if value is not None and name not in accepted:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to {args.attack}")
    if args.out:  # before the model and the attack: a refused folder fails in a second
        writable_folder(Path(args.out).parent)
    model = models.load(args.model, allow_unsafe=args.unsafe_load)
    x, y = data.load(args.dataset, "test", args.data_dir)
    x, y = x[:args.n], y[:args.n]
    curve = evaluation.robust_accuracy_curve(model, x, y, attack=args.attack, epsilons=args.eps, norm=args.norm,
                                             params=params, batch_size=args.batch_size,
                                             strategy=get_strategy(args.strategy))
    print(f"{args.attack} (L{args.norm}) on {len(x)} {args.dataset} test images; clean accuracy "
          f"{curve.clean_accuracy:.4f}; {curve.seconds:.1f} s")
    print(f"{'eps':>8s} {'robust acc':>11s} {'95% CI':>17s}")
    for eps, acc, low, high in zip(curve.epsilons, curve.robust_accuracy, curve.ci95_low, curve.ci95_high):
        print(f"{eps:8.4f} {acc:11.4f}   [{low:.4f}, {high:.4f}]")
    if curve.members_broken is not None:
        print("points each member broke first (of those correct clean):")
        for eps, counts in zip(curve.epsilons, curve.members_broken):
            print(f"{eps:8.4f}   " + ", ".join(f"{label} {count}" for label, count in counts.items()))
    if args.out:
        record = {"model": str(args.model), "dataset": args.dataset, **curve.to_dict(),
                  "library_versions": models.library_versions()}
        print(f"wrote {atomic_write_text(args.out, json.dumps(record, indent=2) + chr(10))}")
    return 0


def _add_run(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="the main job: train or load models, robust-accuracy curves, checks, report",
        description="Run a comparison config (TOML; see experiments/). Without CONFIG, the embedded quick "
                    "default: baseline CNN, NSL-CNN and VGG-19 transfer on Fashion-MNIST under FGSM, PGD and the fast "
                    "autoattack ensemble. "
                    "Writes OUT/results.json, results.csv, report.html, report.md and figures/. Finished "
                    "work is committed unit by unit to OUT/store.sqlite; --resume continues a run.")
    parser.add_argument("config", nargs="?", default=None, help="run config (.toml); default: the quick run")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue a run in OUT, keeping finished work")
    parser.add_argument("--update", action="store_true",
                        help="continue a run in OUT under a changed config: finished models and units whose "
                             "settings are unchanged are kept, the rest is computed (implies --resume)")
    parser.add_argument("--data-dir", default=None, help="folder with the dataset files")
    parser.add_argument("--no-report", action="store_true", help="skip report.html/report.md")
    parser.add_argument("--force", action="store_true",
                        help="use OUT even if it is a non-empty folder that holds no advrobust run (a run writes "
                             "results.*, report.*, config.json and figures/ there)")
    parser.add_argument("--show-default", action="store_true", help="print the default config and exit")
    parser.add_argument("--shard", metavar="I/N", default=None,
                        help="compute only shard I of N (1 <= I <= N) into OUT, a folder of its own; combine the "
                             "finished shards with `advrobust merge`")
    parser.add_argument("--models-from", metavar="DIR", default=None,
                        help="with --shard: copy the trained models from DIR, a --train-only run of the same config")
    parser.add_argument("--train-only", action="store_true",
                        help="train (or copy) every model and stop: the models the shards take with --models-from")
    _add_strategy(parser)
    _add_unsafe_load(parser)
    parser.set_defaults(handler=_run_run)


def _run_run(args: argparse.Namespace) -> int:
    from advrobust.run import config, runner, shard
    from defenses.distribute import get_strategy

    if args.show_default:
        print(config.default_text(), end="")
        return 0
    part = shard.parse(args.shard, models_from=args.models_from)
    run_config = config.load(args.config)
    try:
        runner.run(run_config, args.out, resume=args.resume, update=args.update, data_dir=args.data_dir,
                   report=not args.no_report, allow_unsafe_load=args.unsafe_load, force=args.force, part=part,
                   train_only=args.train_only, strategy=get_strategy(args.strategy))
    except (KeyboardInterrupt, RunInterrupted):
        again = ["advrobust", "run", *([args.config] if args.config else []), "--out", args.out, "--resume",
                 *(part.flags() if part else []), *(["--train-only"] if args.train_only else [])]
        print(f"advrobust: interrupted; finished work is saved in {args.out}/store.sqlite. Continue with: "
              f"{shlex.join(again)}", file=sys.stderr)
        return 130  # 128 + SIGINT, the shell's convention for a command ended by Ctrl-C
    if args.train_only:
        print(f"models: {args.out}; give it to each shard with --models-from {args.out}")
        return 0
    if part is not None:
        print(f"shard {part.label} finished in {args.out}; combine all shards with: advrobust merge SHARD_DIR... "
              "--out DIR")
        return 0
    print(f"results: {args.out}/results.json, {args.out}/results.csv"
          + ("" if args.no_report else f"; report: {args.out}/report.html"))
    # A failed sanity check is a finding about a model (shown in the summary and report),
    # not an error of the run: the exit status stays 0.
    return 0


def _add_merge(subparsers) -> None:
    parser = subparsers.add_parser(
        "merge", help="combine the finished shards of a sharded run into one run",
        description="Combine the folders of every shard of `advrobust run CONFIG --out DIR --shard I/N` into one "
                    "run in OUT: results.json, results.csv, the outcomes and the report, as an unsharded run "
                    "writes them. Refuses shards of different configs, a missing or repeated shard, and units "
                    "that come from two shards or none.")
    parser.add_argument("dirs", nargs="+", metavar="SHARD_DIR", help="the --out folder of every shard")
    parser.add_argument("--out", required=True, help="a new or empty folder for the merged run")
    parser.add_argument("--data-dir", default=None, help="folder with the dataset files")
    parser.add_argument("--no-report", action="store_true", help="skip report.html/report.md")
    _add_unsafe_load(parser)
    parser.set_defaults(handler=_run_merge)


def _run_merge(args: argparse.Namespace) -> int:
    from advrobust.run import merge

    merge.merge(args.dirs, args.out, data_dir=args.data_dir, report=not args.no_report,
                allow_unsafe_load=args.unsafe_load)
    print(f"results: {args.out}/results.json, {args.out}/results.csv"
          + ("" if args.no_report else f"; report: {args.out}/report.html"))
    return 0


def _add_report(subparsers) -> None:
    parser = subparsers.add_parser("report", help="rebuild report.html and report.md from DIR/results.json")
    parser.add_argument("dir", help="a run folder (holding results.json)")
    parser.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from advrobust.reporting import build_report

    if not (Path(args.dir) / "results.json").is_file():
        raise FileNotFoundError(f"{args.dir}/results.json does not exist; run `advrobust run --out {args.dir}` first")
    for name, path in build_report(args.dir).items():
        if name in ("html", "markdown", "report.html", "report.md") or str(path).endswith((".html", ".md")):
            print(f"wrote {path}")
    return 0


def _add_compare(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare two evaluated models image by image (paired interval, McNemar test)",
        description="Compare the per-image outcomes of two models from finished runs (the same or two): "
                    "clean and worst-case robust accuracy at each eps both were attacked at, on the test "
                    "images both saw, with the 95% interval of the difference and the exact McNemar p.")
    parser.add_argument("first", help="RUN_DIR:MODEL (or RUN_DIR when the run has one model): the reference")
    parser.add_argument("second", help="RUN_DIR:MODEL: compared against the first")
    parser.add_argument("--per-class", action="store_true",
                        help="also compare within each class (clean, and worst case at the largest eps)")
    parser.add_argument("--out", default=None, help="also write the comparison to this JSON file")
    parser.set_defaults(handler=_run_compare)


def _outcomes_of(argument: str):
    from pathlib import Path

    from advrobust.results import outcomes

    if Path(argument).is_dir():
        return outcomes.load(argument)
    # RUN_DIR:MODEL, where either part may hold colons: split at the first colon after a folder.
    for index, character in enumerate(argument):
        if character == ":" and Path(argument[:index]).is_dir():
            return outcomes.load(argument[:index], argument[index + 1:])
    raise FileNotFoundError(f"{argument!r} is neither a run folder nor RUN_DIR:MODEL with an existing folder")


def _run_compare(args: argparse.Namespace) -> int:
    import json

    from advrobust.results import outcomes
    from advrobust.files import atomic_write_text

    comparison = outcomes.compare(_outcomes_of(args.first), _outcomes_of(args.second))
    print(outcomes.format_comparison(comparison, per_class=args.per_class))
    if args.out:
        atomic_write_text(args.out, json.dumps(comparison, indent=2) + "\n")
    return 0


# Subcommands that only read files. Their parsers are built without the others', whose
# choices come from TensorFlow-backed registries, so they start without importing it.
_READING_COMMANDS = ("report", "compare")


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``advrobust``.

    Args:
        commands: the subcommands to include (default: all). ``("report", "compare")``
            builds a parser that imports no TensorFlow.

    Returns:
        The ``argparse.ArgumentParser``.
    """
    parser = argparse.ArgumentParser(
        prog="advrobust",
        description="Adversarial robustness for TensorFlow models: train, attack, evaluate.")
    subparsers = parser.add_subparsers(title="subcommands", dest="command", required=True)
    adders = {"train": _add_train, "attack": _add_attack, "run": _add_run, "merge": _add_merge,
              "report": _add_report, "compare": _add_compare}
    for name, add in adders.items():
        if commands is None or name in commands:
            add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status.

    Args:
        argv: The command-line arguments without the program name (default
            ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 when the command fails on a user error (its
        message printed to stderr), 3 when an attack broke a point a bound certified (the
        run's results and report are written and show it), 130 when a run was interrupted.

    Raises:
        SystemExit: argparse rejects the arguments, or ``--help`` was given.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    reading = argv[:1] if argv[:1] and argv[0] in _READING_COMMANDS else None
    args = build_parser(reading).parse_args(argv)
    try:
        return args.handler(args)
    except CertificateViolation as error:
        print(f"advrobust: {error}", file=sys.stderr)
        return 3
    except _USER_ERRORS as error:
        print(f"advrobust: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in _USER_ERRNOS:
            raise
        print(f"advrobust: error: {error}", file=sys.stderr)  # e.g. "[Errno 28] No space left on device: 'x'"
        return 2


if __name__ == "__main__":
    sys.exit(main())
