"""The one place where the project imports TensorFlow and chooses its Keras.

TensorFlow 2.21 ships Keras 3 behind ``tf.keras``; the project's models, training and
Neural Structured Learning need Keras 2 (``tf_keras``). TensorFlow resolves ``tf.keras``
lazily, on first attribute access, to ``tf_keras`` when ``TF_USE_LEGACY_KERAS`` is set.
This module sets it (unless the user has) before importing TensorFlow, then exposes::

    from attacks.backend import tf, keras    # keras is always tf_keras (Keras 2)

Every module of ``attacks``, ``defenses`` and ``advrobust`` that needs TensorFlow imports
it from here, so the order is right whichever package is imported first; modules that
only read files (reports, comparisons, plots) never import it. Project code builds its
models with ``keras`` from this module, so models, training and attacks work even when
the user's own code already resolved ``tf.keras`` to Keras 3; attacks accept Keras 3
models too. NSL's ``tensorflow.estimator`` stand-in lives with the NSL defense
(``defenses/nsl_compat.py``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides real messages on CPU
# machines; users who want it can set the variable themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
