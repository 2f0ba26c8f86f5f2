"""advrobust.data.pipeline: the seeded train/validation split, shuffling, and training-time
augmentation (images only moved, labels kept, a new draw every epoch)."""

import numpy as np
import pytest

from advrobust import data
from attacks.backend import keras, tf


def _images(n=64, seed=0):
    return np.random.default_rng(seed).random((n, 28, 28, 1)).astype(np.float32)


def _one_epoch(x, y, augment, seed=0):
    batches = list(data.make_dataset(x, y, batch_size=16, augment=augment, seed=seed).as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _transform_of(original, augmented):
    """(mirrored, dy, dx) such that augmented is original so moved (zeros filling in), or None."""
    pad = data.MAX_SHIFT
    for mirrored in (False, True):
        image = original[:, ::-1] if mirrored else original
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                if np.array_equal(padded[dy:dy + 28, dx:dx + 28], augmented):
                    return mirrored, dy - pad, dx - pad
    return None


@pytest.mark.parametrize("augment", ["shift", "flip_shift"])
def test_augmentation_only_moves_pixels_and_keeps_labels(augment):
    keras.utils.set_random_seed(0)
    x, y = _images(), np.arange(64) % 10
    augmented, labels = _one_epoch(x, y, augment)
    np.testing.assert_array_equal(labels, y)
    transforms = [_transform_of(a, b) for a, b in zip(x, augmented)]
    assert None not in transforms, "an image was changed, not just moved"
    mirrored = [t[0] for t in transforms]
    shifts = {(t[1], t[2]) for t in transforms}
    assert any(mirrored) == (augment == "flip_shift") and not all(mirrored)
    assert len(shifts) >= 10 and {-2, 2} <= {dy for dy, _ in shifts}, shifts


def test_each_epoch_draws_anew_and_a_seed_reproduces_the_draws():
    x, y = _images(32), np.zeros(32, np.int64)
    epochs = lambda dataset, n: [np.concatenate([b[0] for b in dataset.as_numpy_iterator()]) for _ in range(n)]
    keras.utils.set_random_seed(0)
    dataset = data.make_dataset(x, y, batch_size=16, augment="flip_shift", seed=3)
    first, second = epochs(dataset, 2)
    assert not np.array_equal(first, second)
    # As in tf.data, the draws follow the global seed and ``seed``; other random draws in
    # between, and the first pipeline still alive, change nothing.
    for _ in range(3):
        keras.utils.set_random_seed(0)
        tf.random.uniform([3]), keras.layers.RandomFlip(seed=3)(x[:2], training=True)
        again = data.make_dataset(x, y, batch_size=16, augment="flip_shift", seed=3)
        again_first, again_second = epochs(again, 2)
        np.testing.assert_array_equal(again_first, first)
        np.testing.assert_array_equal(again_second, second)
    other_seed = epochs(data.make_dataset(x, y, batch_size=16, augment="flip_shift", seed=4), 1)[0]
    assert not np.array_equal(other_seed, first)


def test_no_augmentation_leaves_the_batches_alone():
    x, y = _images(20), np.arange(20)
    augmented, labels = _one_epoch(x, y, "none")
    np.testing.assert_array_equal(augmented, x)
    np.testing.assert_array_equal(labels, y)


@pytest.mark.parametrize("augment, dataset, match", [
    ("rotate", "fashion_mnist", "unknown augmentation 'rotate'; choose one of: none, shift, flip_shift"),
    ("flip_shift", "mnist", "mirrors images, which changes digits"),
])
def test_augmentations_that_do_not_exist_or_change_labels_are_refused(augment, dataset, match):
    with pytest.raises(ValueError, match=match):
        data.check_augmentation(augment, dataset)


def test_train_val_split_is_seeded_and_stratified():
    x = np.arange(1000, dtype=np.float32).reshape(1000, 1)
    y = np.repeat(np.arange(10), 100)
    (xt, yt), (xv, yv) = data.train_val_split(x, y, val_fraction=0.1, seed=3)
    (xt2, _), (xv2, _) = data.train_val_split(x, y, val_fraction=0.1, seed=3)
    (_, _), (xv3, _) = data.train_val_split(x, y, val_fraction=0.1, seed=4)
    np.testing.assert_array_equal(xv, xv2)
    np.testing.assert_array_equal(xt, xt2)
    assert not np.array_equal(xv, xv3)
    assert np.bincount(yv).tolist() == [10] * 10
    assert len(np.intersect1d(xt[:, 0], xv[:, 0])) == 0 and len(xt) + len(xv) == 1000


def test_make_dataset_shuffles_reproducibly():
    x = np.arange(64, dtype=np.float32)
    y = np.arange(64)
    order = lambda seed: np.concatenate([b.numpy() for b, _ in data.make_dataset(x, y, batch_size=16, shuffle=True, seed=seed)])
    first, again, other = order(1), order(1), order(2)
    np.testing.assert_array_equal(first, again)
    assert sorted(first.tolist()) == list(range(64)) and not np.array_equal(first, other)
    assert [b.shape[0] for b, _ in data.make_dataset(x, y, batch_size=20)] == [20, 20, 20, 4]


def test_with_an_epoch_variable_each_pass_follows_seed_and_epoch_alone():
    x, y = _images(40), np.arange(40)
    epoch = tf.Variable(0, dtype=tf.int64)

    def one_pass(dataset):
        batches = list(dataset.as_numpy_iterator())
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    dataset = data.make_dataset(x, y, batch_size=16, shuffle=True, seed=3, augment="shift", epoch=epoch)
    assert dataset.cardinality().numpy() == 3
    first, again = one_pass(dataset), one_pass(dataset)
    epoch.assign(1)
    second = one_pass(dataset)
    # A new pipeline (as after a restart) set to epoch 1 passes exactly as the first one did.
    restarted = data.make_dataset(x, y, batch_size=16, shuffle=True, seed=3, augment="shift",
                                  epoch=tf.Variable(1, dtype=tf.int64))
    for got, expected in zip(one_pass(restarted), second):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], second[1]) and sorted(second[1]) == list(range(40))
    by_label = lambda one: one[0][np.argsort(one[1])]
    assert not np.array_equal(by_label(first), by_label(second))  # a new augmentation too
    with pytest.raises(ValueError, match="pass a seed too"):
        data.make_dataset(x, y, shuffle=True, epoch=epoch)
