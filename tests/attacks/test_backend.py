"""attacks.backend: importing a package selects Keras 2 (subprocesses)."""

import pytest

from tests.conftest import ok_stdout, run_python


@pytest.mark.parametrize("package", ["attacks", "defenses"])
def test_each_package_selects_keras2(package):
    out = ok_stdout(run_python(f"import {package}\nimport tensorflow as tf, tf_keras\n"
                         "print(tf.keras.Model is tf_keras.Model)\n"))
    assert out.strip().endswith("True")
