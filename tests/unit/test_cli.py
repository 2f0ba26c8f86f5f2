"""The CLI: help, and user mistakes that end in one clear line, never a traceback."""

import subprocess
import sys

import pytest

from advrobust import cli


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
    (["--defense", "nope"], "unknown defense 'nope'; choose one of: none, nsl, pgd_at, trades, fgsm_rs"),
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
    result = subprocess.run(["advrobust", "train", "--out", str(tmp_path), *extra],
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
