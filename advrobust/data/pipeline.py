"""tf.data pipelines: seeded stratified splits, training-time augmentation, batching."""

from __future__ import annotations

import numpy as np

from advrobust.data.catalog import AUGMENTATIONS
from advrobust.validation import check_choice
from attacks.backend import tf

def train_val_split(x: np.ndarray, y: np.ndarray, *, val_fraction: float = 0.1,
                    seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split off a seeded, class-stratified validation set.

    Each class contributes ``round(val_fraction * count)`` examples to validation; the
    order within each part is that of ``x``.

    Args:
        x: The examples (N, ...).
        y: Their integer labels (N,).
        val_fraction: The share of each class that goes to validation, in (0, 1).
        seed: The same seed gives the same split.

    Returns:
        ``((x_train, y_train), (x_val, y_val))``, arrays of the dtypes of ``x`` and ``y``
        that together hold every example once.

    Raises:
        ValueError: ``val_fraction`` is not in (0, 1), or ``x`` and ``y`` differ in length.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    rng = np.random.default_rng(seed)
    val_index = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        count = int(round(val_fraction * len(members)))
        val_index.append(rng.choice(members, size=count, replace=False))
    val_mask = np.zeros(len(y), dtype=bool)
    val_mask[np.concatenate(val_index)] = True
    return (x[~val_mask], y[~val_mask]), (x[val_mask], y[val_mask])


MAX_SHIFT = 2


def check_augmentation(augment: str, dataset: str) -> str:
    """Check that an augmentation exists and keeps the dataset's labels.

    Args:
        augment: One of ``AUGMENTATIONS``: ``"none"``, ``"shift"`` or ``"flip_shift"``.
        dataset: The dataset name.

    Returns:
        ``augment``, unchanged.

    Raises:
        ValueError: An unknown augmentation, or ``"flip_shift"`` on MNIST (mirrored digits
            change their meaning).
    """
    check_choice(augment, AUGMENTATIONS, "augmentation")
    if augment == "flip_shift" and dataset == "mnist":
        raise ValueError("augmentation 'flip_shift' mirrors images, which changes digits (MNIST); use 'shift'")
    return augment


def augmenter(augment: str):
    """Build the batch augmentation function of ``augment``.

    ``seed`` of the returned function is a stateless-RNG seed: the same seed gives the same
    augmentations, whatever else has drawn random numbers before. Pixels are moved, never
    changed: every output value is an input value or 0. Each image gets its own mirror coin
    and its own whole-pixel shift, uniform in [-MAX_SHIFT, MAX_SHIFT] on each axis.

    Args:
        augment: One of ``AUGMENTATIONS``: ``"none"``, ``"shift"`` or ``"flip_shift"``.

    Returns:
        None for ``"none"``, else a function ``(images, seed) -> images`` that takes a batch
        (B, H, W, C) and an integer tensor of shape (2,) and returns the augmented batch,
        of the same shape and dtype.

    Raises:
        ValueError: An unknown augmentation; the message lists the choices.
    """
    check_choice(augment, AUGMENTATIONS, "augmentation")
    if augment == "none":
        return None

    def apply(images, seed):
        flip_seed, shift_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        if augment == "flip_shift":
            images = tf.image.stateless_random_flip_left_right(images, flip_seed)
        batch = tf.shape(images)[0]
        shift = tf.random.stateless_uniform([batch, 2], shift_seed, minval=-MAX_SHIFT, maxval=MAX_SHIFT + 1,
                                            dtype=tf.int32)
        # An output pixel (x, y) reads input pixel (x - dx, y - dy): the projective
        # transform [1, 0, -dx, 0, 1, -dy, 0, 0], with zeros where that falls outside.
        dx, dy = tf.unstack(tf.cast(shift, tf.float32), axis=1)
        one, zero = tf.ones_like(dx), tf.zeros_like(dx)
        transforms = tf.stack([one, zero, -dx, zero, one, -dy, zero, zero], axis=1)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
            fill_value=tf.constant(0, images.dtype), interpolation="NEAREST", fill_mode="CONSTANT")

    return apply


def make_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int = 128, shuffle: bool = False,
                 seed: int | None = None, drop_remainder: bool = False, augment: str = "none",
                 epoch: tf.Variable | None = None) -> tf.data.Dataset:
    """Build a batched, prefetched tf.data pipeline of ``(x, y)``.

    Without ``epoch``, as everywhere in tf.data, the draws follow ``seed`` together with
    TensorFlow's global seed (``keras.utils.set_random_seed``), and not other draws in
    between; each pass over the dataset draws anew, so the sequence of epochs restarts with
    the process. With ``epoch`` (and a ``seed``), each pass reads that variable first and
    its order and augmentation are a function of ``(seed, epoch)`` alone: a training
    restarted at epoch k (see :class:`advrobust.training.callbacks.EpochBackup`, which sets
    the variable) sees exactly the batches an uninterrupted one sees in epoch k.

    Args:
        x: The examples (N, ...).
        y: Their labels (N,).
        batch_size: Examples per batch, >= 1.
        shuffle: Reshuffle the order every epoch.
        seed: Seeds the shuffling and the augmentation; the same seed gives the same
            sequence of epochs. None: not reproducible.
        drop_remainder: Drop the last batch if it is smaller than ``batch_size``.
        augment: An augmentation (see :func:`augmenter`), drawn anew for every batch each
            epoch; labels are unchanged.
        epoch: A scalar int64 ``tf.Variable``: the index of the epoch the next pass is,
            read when a pass begins. Its owner sets it before each pass. None: passes are
            counted by tf.data as above.

    Returns:
        A ``tf.data.Dataset`` of ``(x_batch, y_batch)`` pairs, (B, ...) and (B,), with the
        dtypes of ``x`` and ``y``.

    Raises:
        ValueError: ``batch_size`` < 1, an unknown augmentation, or ``epoch`` without a
            ``seed`` while shuffling or augmenting.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    transform = augmenter(augment)
    if epoch is not None and (shuffle or transform is not None):
        if seed is None:
            raise ValueError("make_dataset(epoch=...) draws each epoch from (seed, epoch): pass a seed too")
        return _epoch_seeded(x, y, batch_size, shuffle, seed, drop_remainder, transform, epoch)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if transform is not None:
        # One stateless seed per batch, new each epoch and reproduced by ``seed``: unlike
        # stateful random layers, this stays reproducible under parallel map calls.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda batch, batch_seed: (transform(batch[0], batch_seed), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _epoch_seeded(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int, drop_remainder: bool,
                  transform, epoch: tf.Variable) -> tf.data.Dataset:
    """:func:`make_dataset` whose every pass draws its order and augmentation from the
    stateless key ``(seed, epoch)``, reading ``epoch`` when the pass begins."""
    n = len(x)
    count = n // batch_size if drop_remainder else -(-n // batch_size)
    images, labels = tf.constant(x), tf.constant(y)

    def one_epoch(index):
        key = tf.stack([tf.constant(seed, tf.int64), index])
        order_key, augment_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, order_key)
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
        batches = batches.map(lambda chosen: (tf.gather(images, chosen), tf.gather(labels, chosen)))
        if transform is None:
            return batches
        seeds = tf.data.Dataset.from_tensor_slices(tf.random.experimental.stateless_split(augment_key, count))
        return tf.data.Dataset.zip((batches, seeds)).map(
            lambda batch, batch_seed: (transform(batch[0], batch_seed), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)

    # Read once per pass, when it begins; EpochBackup sets it before Keras starts an epoch.
    dataset = tf.data.Dataset.from_tensors(0).map(lambda _: epoch.read_value()).flat_map(one_epoch)
    return dataset.apply(tf.data.experimental.assert_cardinality(count)).prefetch(tf.data.AUTOTUNE)
