"""Neural Structured Learning 1.4.0 on TensorFlow 2.21: the Keras check and the estimator stand-in.

NSL 1.4.0 (the last release) needs Keras 2 behind ``tf.keras`` and imports
``tensorflow.estimator``, which TensorFlow removed in 2.16. What works:

1. ``TF_USE_LEGACY_KERAS=1`` before ``tf.keras`` is first touched (``attacks/backend.py``
   sets it before importing TensorFlow), so ``tf.keras`` is ``tf_keras``;
2. a minimal stand-in for ``tensorflow.estimator`` in ``sys.modules`` before NSL is
   imported. NSL's ``nsl.estimator`` helpers only read ``ModeKeys`` at import time; the
   stand-in provides those constants and fails loudly if anything tries to build an
   Estimator.

``import defenses`` installs the stand-in (:func:`install_estimator_stand_in`), so after
it a plain ``import neural_structured_learning`` works. :func:`import_nsl` also checks
that ``tf.keras`` is Keras 2 and says exactly what to do when it is not.
"""

from __future__ import annotations

import os
import sys
import types

from attacks.backend import keras, tf

__all__ = ["KerasVersionError", "require_legacy_tf_keras", "install_estimator_stand_in", "import_nsl"]

_LEGACY_VALUES = ("1", "true", "True")


class KerasVersionError(ImportError):
    """``tf.keras`` is Keras 3, but the code about to run (NSL) needs Keras 2."""


def require_legacy_tf_keras() -> None:
    """Make sure ``tf.keras`` is Keras 2 (``tf_keras``).

    Touching ``tf.keras`` here resolves it if nothing has yet, with the environment
    ``attacks.backend`` set up. If it had already been resolved to Keras 3 (TensorFlow and
    ``tf.keras`` used before the project was imported, or ``TF_USE_LEGACY_KERAS`` set to
    something false), nothing in this process can change it any more.

    Raises:
        KerasVersionError: ``tf.keras`` is Keras 3; the message says how to fix it.
    """
    if tf.keras.Model is keras.Model:
        return
    setting = os.environ.get("TF_USE_LEGACY_KERAS")
    if setting not in _LEGACY_VALUES:
        cause = f"TF_USE_LEGACY_KERAS is set to {setting!r}"
    else:
        cause = "tf.keras was used (and resolved to Keras 3) before advrobust was imported"
    raise KerasVersionError(
        "Neural Structured Learning needs Keras 2 behind tf.keras, but tf.keras is Keras 3 "
        f"in this process ({cause}). Fix: set TF_USE_LEGACY_KERAS=1 before TensorFlow is "
        "first imported, e.g. `export TF_USE_LEGACY_KERAS=1` in the shell, or "
        "`import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'` at the very top of your "
        "script, or import advrobust (or attacks/defenses) before tensorflow/keras; then "
        "start a new Python process."
    )


class _EstimatorUnavailable:
    """Stands in for estimator classes that TensorFlow 2.21 no longer has."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            "tf.estimator was removed in TensorFlow 2.16; advrobust only provides the "
            "constants that NSL reads at import time. Use nsl.keras, not nsl.estimator."
        )


def _estimator_stand_in() -> types.ModuleType:
    module = types.ModuleType(
        "tensorflow.estimator",
        "advrobust stand-in for the removed tf.estimator (see defenses/nsl_compat.py).",
    )

    class ModeKeys:  # the values tf.estimator.ModeKeys had
        TRAIN = "train"
        EVAL = "eval"
        PREDICT = "infer"

    module.ModeKeys = ModeKeys
    module.Estimator = _EstimatorUnavailable
    module.EstimatorSpec = _EstimatorUnavailable
    module.RunConfig = _EstimatorUnavailable
    return module


def install_estimator_stand_in() -> None:
    """Put the ``tensorflow.estimator`` stand-in in ``sys.modules`` unless a real one exists.

    Idempotent: a second call changes nothing.
    """
    if "tensorflow.estimator" not in sys.modules and not hasattr(tf, "estimator"):
        sys.modules["tensorflow.estimator"] = _estimator_stand_in()


def import_nsl():
    """Import and return ``neural_structured_learning`` on TensorFlow 2.21.

    Returns:
        The ``neural_structured_learning`` module.

    Raises:
        KerasVersionError: ``tf.keras`` is Keras 3 in this process.
    """
    require_legacy_tf_keras()
    install_estimator_stand_in()
    import neural_structured_learning as nsl

    return nsl
