"""Training-time defenses (NSL adversarial regularization, adversarial training).

Importing this package selects Keras 2 for TensorFlow first (``attacks/_tensorflow.py``);
NSL itself is imported through ``attacks._tensorflow.import_nsl``.
"""

from attacks import _tensorflow  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
