"""advrobust.certify: lazy public names; importing the package loads no TensorFlow."""

from advrobust import certify
from tests.conftest import ok_stdout, run_python


def test_every_public_name_resolves_to_its_module():
    for name in sorted(certify.__all__):  # "Smoothed" first: its module must not hide the function smoothing
        value = getattr(certify, name)
        assert value is not None and name in dir(certify)
    assert certify.crown_ibp.__module__ == "advrobust.certify.verify"
    assert certify.smoothing.__module__ == "advrobust.certify.randomized_smoothing"


def test_importing_the_package_imports_no_tensorflow():
    out = ok_stdout(run_python("from advrobust import certify\nimport sys\n"
                               "print('TF' if 'tensorflow' in sys.modules else 'NO TF')\n"))
    assert out.strip().endswith("NO TF")
