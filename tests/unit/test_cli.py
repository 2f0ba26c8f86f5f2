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
])
def test_user_errors_are_one_line_without_traceback(extra, message, tmp_path):
    result = subprocess.run(["advrobust", "train", "--out", str(tmp_path), *extra],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
