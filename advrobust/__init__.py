"""advrobust: how robust is this model, and does this defense really help?

The pipeline, one subpackage a stage::

    data/        MNIST and Fashion-MNIST: lookup, IDX files, tf.data pipelines
    models/      baseline CNN, VGG-19 transfer, safe save/load, model cards
    training/    TrainConfig, fit with Keras callbacks, the train job (defenses via ``defenses``)
    evaluation/  robust-accuracy curves, sanity and masking checks, statistics, units on replicas
    certify/     verified lower bounds: IBP, CROWN-IBP, randomized smoothing
    run/         the main job: run config (TOML), runner, resumable store, shards and merge
    results/     results.json schema, per-image outcomes, paired comparisons
    reporting/   figures, HTML and Markdown reports (reads results only)
    cli.py       the ``advrobust`` command

Importing advrobust imports no TensorFlow: reading results, reports and comparisons stay
light. It only sets ``TF_USE_LEGACY_KERAS=1`` (unless set) so that TensorFlow, whenever
it is first imported, resolves ``tf.keras`` to Keras 2; ``attacks/backend.py`` is where
TensorFlow is imported and explains why.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
