"""defenses.nsl_compat: the Keras-2 check and the tf.estimator stand-in, in both import orders
(subprocesses)."""

from tests.conftest import ok_stdout, run_python


def test_advrobust_first_gives_keras2_and_working_nsl():
    out = ok_stdout(run_python(
        "import advrobust, tensorflow as tf, tf_keras\n"
        "from defenses.nsl_compat import import_nsl\n"
        "assert tf.keras.Model is tf_keras.Model\n"
        "nsl = import_nsl()\n"
        "cfg = nsl.configs.make_adv_reg_config(multiplier=0.2, adv_step_size=0.05)\n"
        "inp = tf_keras.Input((2,)); m = tf_keras.Model(inp, tf_keras.layers.Dense(3)(inp))\n"
        "adv = nsl.keras.AdversarialRegularization(m, adv_config=cfg)\n"
        "print('OK', cfg.multiplier, type(adv).__name__)\n"))
    assert "OK 0.2 AdversarialRegularization" in out


def test_tensorflow_imported_first_but_keras_untouched_still_works():
    # tf.keras resolves lazily on first attribute access, so this order is fine.
    out = ok_stdout(run_python("import tensorflow as tf\nimport advrobust\n"
                         "from defenses.nsl_compat import import_nsl\nimport_nsl()\nprint('OK')\n"))
    assert "OK" in out


def test_keras3_already_resolved_fails_with_instructions():
    result = run_python(
        "import tensorflow as tf\n_ = tf.keras.Model  # resolves to Keras 3\n"
        "import advrobust\nfrom defenses.nsl_compat import import_nsl, KerasVersionError\n"
        "try:\n    import_nsl()\nexcept KerasVersionError as e:\n    print('RAISED', e)\n")
    out = ok_stdout(result)
    assert "RAISED" in out
    assert "TF_USE_LEGACY_KERAS=1" in out and "before advrobust was imported" in out


def test_legacy_keras_explicitly_disabled_is_reported():
    result = run_python(
        "import advrobust\nfrom defenses.nsl_compat import import_nsl, KerasVersionError\n"
        "try:\n    import_nsl()\nexcept KerasVersionError as e:\n    print('RAISED', e)\n",
        env={"TF_USE_LEGACY_KERAS": "0"})
    out = ok_stdout(result)
    assert "RAISED" in out and "TF_USE_LEGACY_KERAS is set to '0'" in out


def test_estimator_stand_in_refuses_to_build_estimators():
    out = ok_stdout(run_python(
        "from defenses.nsl_compat import import_nsl\nimport_nsl()\nimport tensorflow.estimator as e\n"
        "assert e.ModeKeys.TRAIN == 'train' and e.ModeKeys.PREDICT == 'infer'\n"
        "try:\n    e.Estimator()\nexcept NotImplementedError as err:\n    print('RAISED', err)\n"))
    assert "RAISED tf.estimator was removed" in out


def test_after_import_defenses_a_plain_import_of_nsl_works():
    # The foundation's promise: no private helper needs to run first.
    out = ok_stdout(run_python(
        "import defenses\nimport neural_structured_learning as nsl\n"
        "print('OK', nsl.keras.AdversarialRegularization.__name__)\n"))
    assert "OK AdversarialRegularization" in out
