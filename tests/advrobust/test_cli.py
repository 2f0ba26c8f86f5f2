"""advrobust.cli: help, user mistakes that end in one clear line, the train flags, the attack and
compare commands, and training from the command line (slow)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from advrobust import cli, models, training
from tests.advrobust.conftest import LABELS, arm, cnn_and_data, lambda_model, make_outcomes, make_run_folder
from tests.conftest import write_fake_split


@pytest.mark.slow
def test_cli_train_vgg19_pretrained_run_transfers_the_base(tmp_path, capsys):
    # Tiny subsets: this checks the offline transfer pipeline, not its accuracy.
    status = cli.main(["train", "--dataset", "fashion_mnist", "--model", "vgg19", "--vgg-mode", "frozen",
                       "--weights", "pretrained-run", "--epochs", "1", "--train-subset", "256",
                       "--pretrain-subset", "256", "--out", str(tmp_path)])
    assert status == 0
    card = json.loads((tmp_path / "model.card.json").read_text())
    assert card["architecture"] == "vgg19-frozen" and card["pretrained_on"] == "mnist"
    pretrained = models.load(tmp_path / "pretrain" / "model.keras")
    transferred = models.load(tmp_path / "model.keras")
    # The frozen base is the pretrained one, unchanged by training the head.
    for got, want in zip(models.vgg_base(transferred).get_weights(), models.vgg_base(pretrained).get_weights()):
        np.testing.assert_array_equal(got, want)
    assert "clean test accuracy" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("width_args, architecture, conv2_filters", [
    ([], "cnn-no-dropout", 64),
    (["--width", "2"], "cnn-w2-no-dropout", 128),
])
def test_cli_train_no_dropout_builds_the_reference_cnn(width_args, architecture, conv2_filters, tmp_path):
    status = cli.main(["train", "--dataset", "mnist", "--no-dropout", *width_args, "--epochs", "1",
                       "--train-subset", "256", "--out", str(tmp_path)])
    assert status == 0
    card = json.loads((tmp_path / "model.card.json").read_text())
    assert card["architecture"] == architecture and card["training_config"]["dropout"] is False
    model = models.load(tmp_path / "model.keras")
    assert [layer.name for layer in model.layers] == ["image", "conv1", "conv2", "pool", "flatten", "dense", "logits"]
    assert model.get_layer("conv2").filters == conv2_filters


def test_the_cli_accepts_exactly_the_schedules_training_knows():
    parser = cli.build_parser()
    for schedule in training.LR_SCHEDULES:
        assert parser.parse_args(["train", "--out", "x", "--lr-schedule", schedule]).lr_schedule == schedule
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--out", "x", "--lr-schedule", "linear"])


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
     "argument --defense: invalid choice: 'nope' (choose from 'none', 'nsl', 'pgd_at', 'trades', 'fgsm_rs', "
     "'ibp', 'crown_ibp', 'gaussian')"),
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


TRAIN_FLAGS = {"--dataset", "--model", "--vgg-mode", "--weights", "--trainable-blocks", "--vgg-blocks",
               "--image-size", "--no-dropout", "--width", "--epochs", "--batch-size", "--learning-rate",
               "--lr-schedule", "--train-subset", "--pretrain-epochs", "--pretrain-subset", "--patience",
               "--defense", "--eps", "--preset", "--robust-val-size", "--augment", "--ema-decay", "--awp-gamma",
               "--sigma", "--eps-train", "--warmup-epochs", "--ramp-epochs", "--kappa-final",
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


def test_the_certified_training_flags_reach_the_defense_config():
    parse = _train_parser().parse_args
    gaussian = training.TrainConfig.from_command_line(**cli._config_options(
        parse(["--dataset", "mnist", "--defense", "gaussian", "--sigma", "0.25", "--out", "x"]), training.TrainConfig))
    assert gaussian.defense_config().sigma == 0.25
    args = parse(["--dataset", "mnist", "--defense", "ibp", "--eps-train", "0.35", "--warmup-epochs", "0.5",
                  "--ramp-epochs", "6", "--kappa-final", "0.25", "--out", "x"])
    ibp = training.TrainConfig.from_command_line(**cli._config_options(args, training.TrainConfig)).defense_config()
    assert (ibp.eps, ibp.eps_train, ibp.warmup_epochs, ibp.ramp_epochs, ibp.kappa_final) == (0.3, 0.35, 0.5, 6.0, 0.25)


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


def test_cli_attack_prints_and_writes_json(tmp_path, capsys):
    model, _, _ = cnn_and_data()
    models.save(model, tmp_path / "m.keras", {})
    write_fake_split(tmp_path / "data" / "mnist", "test", n=30)
    out = tmp_path / "result.json"
    status = cli.main(["attack", "--model", str(tmp_path / "m.keras"), "--dataset", "mnist", "--attack", "pgd",
                       "--eps", "0", "0.1", "--steps", "3", "--n", "20", "--data-dir", str(tmp_path / "data"),
                       "--out", str(out)])
    assert status == 0
    record = json.loads(out.read_text())
    assert record["attack"] == "pgd" and record["params"] == {"steps": 3, "seed": 0, "early_stop": True}
    assert record["n_examples"] == 20 and len(record["robust_accuracy"]) == 2
    assert record["robust_accuracy"][0] == record["clean_accuracy"]
    assert "robust acc" in capsys.readouterr().out


def test_cli_attack_rejects_parameters_that_do_not_apply(tmp_path, capsys):
    model, _, _ = cnn_and_data()
    models.save(model, tmp_path / "m.keras", {})
    status = cli.main(["attack", "--model", str(tmp_path / "m.keras"), "--dataset", "mnist", "--attack", "fgsm",
                       "--eps", "0.1", "--steps", "5"])
    assert status == 2 and "--steps does not apply to fgsm" in capsys.readouterr().err


def test_cli_attack_runs_the_ensemble_and_prints_what_each_member_broke(tmp_path, capsys):
    model, _, _ = cnn_and_data()
    models.save(model, tmp_path / "m.keras", {})
    write_fake_split(tmp_path / "data" / "mnist", "test", n=30)
    out = tmp_path / "result.json"
    status = cli.main(["attack", "--model", str(tmp_path / "m.keras"), "--dataset", "mnist", "--attack", "autoattack",
                       "--preset", "fast", "--eps", "0", "0.3", "--n", "12", "--data-dir", str(tmp_path / "data"),
                       "--out", str(out)])
    assert status == 0
    record = json.loads(out.read_text())
    assert record["attack"] == "autoattack" and record["params"] == {"preset": "fast", "seed": 0}
    correct = round(record["clean_accuracy"] * 12)
    assert [sum(counts.values()) for counts in record["broken_by"]] == [
        correct - round(accuracy * 12) for accuracy in record["robust_accuracy"]]
    printed = capsys.readouterr().out
    assert "points each member broke first" in printed
    assert all(label in printed for label in record["broken_by"][1])
    status = cli.main(["attack", "--model", str(tmp_path / "m.keras"), "--dataset", "mnist", "--attack", "pgd",
                       "--preset", "fast", "--eps", "0.1"])
    assert status == 2 and "--preset does not apply to pgd" in capsys.readouterr().err


def test_cli_attack_with_bfloat16_gradients_records_it(tmp_path):
    model, _, _ = cnn_and_data()
    models.save(model, tmp_path / "m.keras", {})
    write_fake_split(tmp_path / "data" / "mnist", "test", n=30)
    out = tmp_path / "result.json"
    status = cli.main(["attack", "--model", str(tmp_path / "m.keras"), "--dataset", "mnist", "--attack", "pgd",
                       "--eps", "0.1", "--steps", "3", "--n", "20", "--compute-dtype", "bfloat16",
                       "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    assert status == 0
    assert json.loads(out.read_text())["params"]["compute_dtype"] == "bfloat16"
    with pytest.raises(SystemExit):
        cli.main(["attack", "--model", str(tmp_path / "m.keras"), "--dataset", "mnist", "--eps", "0.1",
                  "--compute-dtype", "int8"])


def test_cli_attack_refuses_an_h5_model_in_one_line_and_runs_no_code(tmp_path, marker):
    lambda_model(marker).save(tmp_path / "made.h5")
    arm(marker)
    shutil.copy(tmp_path / "made.h5", tmp_path / "model.keras")
    result = subprocess.run([sys.executable, "-m", "advrobust", "attack", "--model", str(tmp_path / "model.keras"),
                             "--dataset", "mnist", "--eps", "0.1", "--n", "5"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    # TensorFlow's C++ logging may print its own lines; advrobust's error is one line.
    errors = [line for line in result.stderr.splitlines() if line.startswith("advrobust: error")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "H5 format" in errors[0] and "--unsafe-load" in errors[0]


def test_advrobust_compare_prints_and_writes_the_comparison(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    make_run_folder(tmp_path / "one", make_outcomes("w1", 300))
    make_run_folder(tmp_path / "two", make_outcomes("w2", 300, seed=3), make_outcomes("other", 300, seed=4))
    result = subprocess.run(["advrobust", "compare", str(tmp_path / "one"), f"{tmp_path / 'two'}:w2",
                             "--out", str(tmp_path / "cmp.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "w2 vs w1 on the first 300" in result.stdout and "McNemar p" in result.stdout
    written = json.loads((tmp_path / "cmp.json").read_text())
    assert written["rows"][0]["eps"] is None and written["n_examples"] == 300

    refused = subprocess.run(["advrobust", "compare", str(tmp_path / "one"), str(tmp_path / "two")],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "holds 2 models" in refused.stderr and "Traceback" not in refused.stderr
    missing = subprocess.run(["advrobust", "compare", str(tmp_path / "one"), f"{tmp_path / 'three'}:w2"],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "neither a run folder nor RUN_DIR:MODEL" in missing.stderr


def test_a_model_name_with_colons_is_found(tmp_path):
    from advrobust.cli import _outcomes_of

    make_run_folder(tmp_path, make_outcomes("pgd:eps=0.1", 20), make_outcomes("b", 20))
    assert _outcomes_of(f"{tmp_path}:pgd:eps=0.1").name == "pgd:eps=0.1"


def test_advrobust_compare_per_class(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    make_run_folder(tmp_path / "one", make_outcomes("w1", 300, labels=LABELS))
    make_run_folder(tmp_path / "two", make_outcomes("w2", 300, seed=3, labels=LABELS))
    result = subprocess.run(["advrobust", "compare", str(tmp_path / "one"), str(tmp_path / "two"), "--per-class",
                             "--out", str(tmp_path / "cmp.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "per class (eps 0.1" in result.stdout and "T-shirt/top" in result.stdout
    assert len(json.loads((tmp_path / "cmp.json").read_text())["per_class"]) == 10
