"""Adversarial attacks on TensorFlow models: pure functions of (model, x, y, parameters).

Importing this package selects Keras 2 for TensorFlow first (``attacks/_tensorflow.py``).
"""

from attacks import _tensorflow  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
