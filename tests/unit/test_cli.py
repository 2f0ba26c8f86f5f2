"""The CLI: help, and user mistakes that end in one clear line, never a traceback."""

import argparse
import dataclasses
import subprocess
import sys

import pytest

from advrobust import cli, training


def test_help_lists_subcommands():
    result = subprocess.run([sys.executable, "-m", "advrobust", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "train" in result.stdout and "subcommands" in result.stdout


def test_console_script_is_installed():
    result = subprocess.run(["advrobust", "train", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--vgg-mode" in result.stdout and "pretrained-run" in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "cifar10", "--out", "x"], "invalid choice: 'cifar10'"),
    (["train", "--model", "resnet", "--out", "x"], "invalid choice: 'resnet'"),
    (["train", "--vgg-mode", "half", "--out", "x"], "invalid choice: 'half'"),
    (["train", "--defense", "nope", "--out", "x"],
     "argument --defense: invalid choice: 'nope' (choose from 'none', 'nsl', 'pgd_at', 'trades', 'fgsm_rs')"),
])
def test_unknown_choices_exit_2_listing_choices(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--data-dir", "/definitely/not/here"], "data_dir '/definitely/not/here' does not exist"),
    (["--epochs", "0"], "epochs must be >= 1, got 0"),
    (["--model", "vgg19", "--image-size", "16"], "image_size must be >= 32"),
    (["--defense", "nsl", "--preset", "bogus"], "unknown NSL preset 'bogus'; choose one of: lecture,"),
    (["--width", "0"], "width must be an int >= 1"),
    (["--model", "vgg19", "--width", "2"], "width applies to the CNN only"),
    (["--defense", "pgd_at", "--eps", "2"], "L-inf eps must be in (0, 1]"),
    (["--defense", "pgd_at", "--ema-decay", "1"], "ema_decay must be a number in (0, 1) or None, got 1.0"),
    (["--ema-decay", "0.999"], "ema_decay needs a defense"),
    (["--dataset", "mnist", "--augment", "flip_shift"], "mirrors images, which changes digits (MNIST)"),
    (["--defense", "pgd_at", "--robust-val-size", "0"], "robust_val_size must be >= 1, got 0"),
    (["--defense", "fgsm_rs", "--awp-gamma", "0.01"], "awp_gamma applies to pgd_at and trades, not fgsm_rs"),
    (["--awp-gamma", "0.01"], "defense 'none' takes no preset, eps or defense parameters"),
])
def test_user_errors_are_one_line_without_traceback(extra, message, tmp_path):
    # `python -m` runs the code under test (the console script runs the installed copy).
    result = subprocess.run([sys.executable, "-m", "advrobust", "train", "--out", str(tmp_path), *extra],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_run_shows_the_embedded_default(capsys):
    assert cli.main(["run", "--show-default", "--out", "unused"]) == 0
    assert 'name = "nsl-cnn"' in capsys.readouterr().out


@pytest.mark.parametrize("config_text, message", [
    ("[run]\nepsilons = [0.1]\n", "at least one [[attacks]]"),
    ("[run\n", "not valid TOML"),
])
def test_run_config_mistakes_exit_2_in_one_line(config_text, message, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(config_text)
    assert cli.main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("advrobust: error:") and message in err and "bad.toml" in err
    assert not (tmp_path / "out").exists()  # nothing written before the config is valid


def test_run_missing_config_and_report_without_results(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "none.toml"), "--out", str(tmp_path)]) == 2
    assert "none.toml" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "results.json does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("flags, resume, update", [([], False, False), (["--resume"], True, False),
                                                   (["--update"], False, True)])
def test_run_passes_resume_and_update_to_the_runner(flags, resume, update, monkeypatch, tmp_path):
    from advrobust.run import runner

    calls = []
    monkeypatch.setattr(runner, "run", lambda config, out, **options: calls.append(options))
    assert cli.main(["run", "--out", str(tmp_path), "--no-report", *flags]) == 0
    assert calls[0]["resume"] is resume and calls[0]["update"] is update


# --- advrobust train: its flags come from TrainConfig -------------------------------------------

TRAIN_FLAGS = {"--dataset", "--model", "--vgg-mode", "--weights", "--trainable-blocks", "--vgg-blocks",
               "--image-size", "--no-dropout", "--width", "--epochs", "--batch-size", "--learning-rate",
               "--lr-schedule", "--train-subset", "--pretrain-epochs", "--pretrain-subset", "--patience",
               "--defense", "--eps", "--preset", "--robust-val-size", "--augment", "--ema-decay", "--awp-gamma",
               "--strategy", "--seed", "--data-dir", "--out"}


def _train_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    subcommands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return subcommands.choices["train"]


def _flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings and action.dest != "help"]


def test_train_keeps_every_flag_name():
    assert {name for action in _flags(_train_parser()) for name in action.option_strings} == TRAIN_FLAGS


def test_each_train_option_is_one_flag_with_the_fields_default_choices_and_help():
    flags = _flags(_train_parser())
    for spec in dataclasses.fields(training.TrainConfig):
        matching = [action for action in flags if action.dest == spec.name]
        if "help" not in spec.metadata:
            assert matching == [], spec.name
            continue
        (action,) = matching
        assert action.default == spec.default, spec.name
        assert tuple(action.choices or ()) == spec.metadata.get("choices", ()), spec.name
        assert action.help == spec.metadata["help"], spec.name


def test_each_defense_parameter_is_one_flag_that_defaults_to_absent():
    flags = _flags(_train_parser())
    fields = {spec.name: spec for spec in dataclasses.fields(training.TrainConfig)}
    for key, (kind, help_text) in fields["defense_params"].metadata["params"].items():
        (action,) = [action for action in flags if action.dest == key]
        assert key not in fields
        assert (action.default, action.type, action.help) == (None, kind, help_text)


def test_a_field_added_to_train_config_with_metadata_becomes_a_flag(monkeypatch, capsys):
    @dataclasses.dataclass(frozen=True)
    class Extended(training.TrainConfig):
        label_smoothing: float | None = dataclasses.field(default=None, metadata={"help": "smooth the labels"})
        optimizer: str = dataclasses.field(default="adam", metadata={"help": "the optimizer",
                                                                     "choices": ("adam", "sgd")})
        mixed_precision: bool = dataclasses.field(default=False, metadata={"help": "train in float16"})
        note: str = "not a flag"

    monkeypatch.setattr(training, "TrainConfig", Extended)
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["train", "--help"])
    assert info.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--label-smoothing LABEL_SMOOTHING smooth the labels" in shown
    assert "--optimizer {adam,sgd} the optimizer" in shown and "--mixed-precision train in float16" in shown
    assert "--note" not in shown
    args = _train_parser().parse_args(["--out", "x", "--label-smoothing", "0.1", "--optimizer", "sgd",
                                       "--mixed-precision"])
    assert (args.label_smoothing, args.optimizer, args.mixed_precision) == (0.1, "sgd", True)


def test_a_flag_is_only_made_of_a_scalar_field():
    @dataclasses.dataclass(frozen=True)
    class Bad:
        sizes: tuple = dataclasses.field(default=(), metadata={"help": "sizes"})

    with pytest.raises(TypeError, match="field 'sizes' has type .*bool, int, float or str"):
        cli._add_config_flags(argparse.ArgumentParser(), Bad)


@pytest.mark.parametrize("argv, expected", [
    ([], training.TrainConfig()),
    (["--dataset", "mnist", "--epochs", "2", "--no-dropout", "--width", "2", "--seed", "3", "--train-subset", "100"],
     training.TrainConfig(dataset="mnist", epochs=2, dropout=False, width=2, seed=3, train_subset=100)),
    (["--model", "vgg19"], training.TrainConfig(model="vgg19", weights="pretrained-run")),
    (["--model", "vgg19", "--weights", "none", "--vgg-mode", "finetune", "--vgg-blocks", "3",
      "--trainable-blocks", "2", "--image-size", "48", "--pretrain-epochs", "2", "--pretrain-subset", "50"],
     training.TrainConfig(model="vgg19", weights="none", vgg_mode="finetune", base_blocks=3, trainable_blocks=2,
                          image_size=48, pretrain_epochs=2, pretrain_subset=50)),
    (["--defense", "pgd_at", "--eps", "0.2", "--preset", "quick", "--awp-gamma", "0.01", "--ema-decay", "0.99",
      "--robust-val-size", "100", "--strategy", "default"],
     training.TrainConfig(defense="pgd_at", defense_eps=0.2, preset="quick", defense_params={"awp_gamma": 0.01},
                          ema_decay=0.99, robust_val_size=100, strategy="default")),
    (["--defense", "nsl", "--lr-schedule", "cosine", "--learning-rate", "0.01", "--augment", "shift",
      "--batch-size", "64", "--patience", "2"],
     training.TrainConfig(defense="nsl", lr_schedule="cosine", learning_rate=0.01, augment="shift", batch_size=64,
                          patience=2)),
])
def test_train_flags_give_the_same_config_as_the_dataclass(argv, expected, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(training, "train", lambda config, out, **options: calls.append((config, out, options)))
    assert cli.main(["train", "--out", str(tmp_path), "--data-dir", "data", *argv]) == 0
    assert calls == [(expected, str(tmp_path), {"data_dir": "data", "verbose": 2})]
