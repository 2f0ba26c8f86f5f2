"""advrobust: how robust is this model, and does this defense really help?

Importing advrobust selects Keras 2 for TensorFlow (see ``attacks/_tensorflow.py``)
before anything else imports TensorFlow. Submodules: ``data``, ``models``, ``training``,
``cli``.
"""

import attacks._tensorflow  # noqa: F401  (must run before TensorFlow is imported elsewhere)

__version__ = "0.1.0"
