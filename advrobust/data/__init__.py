"""MNIST and Fashion-MNIST: lookup and loading (offline first), IDX files, tf.data pipelines.

    from advrobust import data
    x, y = data.load("fashion_mnist", "test")      # float32 (N, 28, 28, 1) in [0, 1], int64 0..9
    train = data.make_dataset(x, y, batch_size=128, shuffle=True, seed=0)

Modules: :mod:`~advrobust.data.catalog` (names, class names), :mod:`~advrobust.data.idx`
(the IDX file format), :mod:`~advrobust.data.loading` (where files are looked for, and
loading), :mod:`~advrobust.data.pipeline` (splits, augmentation, ``tf.data``). Only the
pipeline imports TensorFlow, on first use.
"""

from advrobust._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("DATASETS", "SPLITS", "NUM_CLASSES", "CLASS_NAMES", "AUGMENTATIONS", "DatasetName", "Split",
                     "class_name"), "catalog"),
    **dict.fromkeys(("DataFileError",), "idx"),
    **dict.fromkeys(("DataNotFoundError", "load", "locate"), "loading"),
    **dict.fromkeys(("train_val_split", "check_augmentation", "augmenter", "make_dataset", "MAX_SHIFT"), "pipeline"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
