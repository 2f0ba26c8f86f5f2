"""The one place where advrobust imports TensorFlow and chooses its Keras.

Why this module exists
----------------------
TensorFlow 2.21 ships Keras 3 behind ``tf.keras``. Neural Structured Learning 1.4.0 (the
last release) needs Keras 2 and imports ``tensorflow.estimator``, which TensorFlow no
longer has. What works:

1. ``TF_USE_LEGACY_KERAS=1`` in the environment before ``tf.keras`` is first touched.
   TensorFlow resolves ``tf.keras`` lazily, on first attribute access, to ``tf_keras``
   (Keras 2, package ``tf-keras``) when that variable is set. This module sets it, when
   the user has not set it, before importing TensorFlow.
2. A minimal stand-in for ``tensorflow.estimator`` in ``sys.modules`` before NSL is
   imported. NSL's ``nsl.estimator`` helpers only read ``ModeKeys`` at import time;
   the stand-in provides those constants and fails loudly if anything tries to build
   an Estimator. ``defenses/nsl.py`` calls :func:`import_nsl`, which installs it.

Every package of the project imports TensorFlow through here (``from attacks._tensorflow
import tf, keras``), so the order is right whichever of ``advrobust``, ``attacks`` or
``defenses`` is imported first. Project code builds its models with ``keras`` from this
module, which is always ``tf_keras``: models, training and attacks work even when the
user's own code already resolved ``tf.keras`` to Keras 3. Only NSL depends on ``tf.keras``
itself; :func:`require_legacy_tf_keras` checks that and says exactly what to do.
"""

from __future__ import annotations

import os
import sys
import types

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides real messages on CPU
# machines; users who want it can set the variable themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras", "KerasVersionError", "require_legacy_tf_keras", "import_nsl"]

_LEGACY_VALUES = ("1", "true", "True")


class KerasVersionError(ImportError):
    """``tf.keras`` is Keras 3, but the code about to run (NSL) needs Keras 2."""


def require_legacy_tf_keras() -> None:
    """Make sure ``tf.keras`` is Keras 2 (``tf_keras``); raise KerasVersionError if not.

    Touching ``tf.keras`` here resolves it if nothing has yet, with the environment this
    module set up. If it had already been resolved to Keras 3 (TensorFlow and
    ``tf.keras`` used before advrobust was imported, or ``TF_USE_LEGACY_KERAS`` set to
    something false), nothing in this process can change it any more.
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
        "advrobust stand-in for the removed tf.estimator (see attacks/_tensorflow.py).",
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


def import_nsl():
    """Import and return ``neural_structured_learning`` on TensorFlow 2.21.

    Checks that ``tf.keras`` is Keras 2 (raises KerasVersionError with the fix if not),
    installs the ``tensorflow.estimator`` stand-in unless a real one is present, then
    imports NSL.
    """
    require_legacy_tf_keras()
    if "tensorflow.estimator" not in sys.modules and not hasattr(tf, "estimator"):
        sys.modules["tensorflow.estimator"] = _estimator_stand_in()
    import neural_structured_learning as nsl

    return nsl
