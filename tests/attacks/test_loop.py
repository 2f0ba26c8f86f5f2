"""attacks.loop: one trace per model, unrolled step segments, empty batches, unclipped inputs, the
bound on compiled loops, and early stopping."""

import numpy as np
import pytest

from attacks import fgsm, loop, pgd
from attacks.backend import tf
from tests.attacks.conftest import ATTACKS, X2, Y2, accuracy, linear_model


def test_one_trace_for_many_batch_sizes():
    model = linear_model()
    rng = np.random.default_rng(0)
    for n in (7, 64, 300, 5):
        pgd(model, rng.random((n, 2), dtype=np.float32), np.zeros(n, np.int64), eps=0.1, steps=2, batch_size=128)
    assert loop.trace_count(model) == 1


def test_steps_run_in_unrolled_segments_traced_once_each():
    assert loop.segments(12) == [(5, False), (5, False), (2, True)]
    assert loop.segments(10) == [(5, False), (5, True)]
    assert loop.segments(3) == [(3, True)]
    assert loop.segments(7, every_end_scored=True) == [(5, True), (2, True)]
    assert sum(size for size, _ in loop.segments(40)) == 40

    model = linear_model()
    rng = np.random.default_rng(0)
    for n in (7, 64, 300, 5):
        pgd(model, rng.random((n, 2), dtype=np.float32), np.zeros(n, np.int64), eps=0.1, steps=12, batch_size=128)
    assert loop.trace_count(model) == 2  # (5 steps, end not scored) and (2 steps, end scored)


def test_segment_boundaries_do_not_change_the_trajectory():
    # Without random start or keep_best the result is the last iterate: 12 steps run as
    # segments (5, 5, 2) must equal 12 single steps, each continuing from the last point.
    model = linear_model()
    x = np.random.default_rng(1).random((16, 2), dtype=np.float32) * 0.5 + 0.25
    y = np.zeros(16, np.int64)
    last = loop.run(model, x, y, eps=0.2, steps=12, step_size=0.01, random_start=False, keep_best=False)
    by_step = x
    for _ in range(12):  # one step at a time from the previous point (eps 1: the whole box), projected here
        by_step = np.clip(x + np.clip(loop.run(model, by_step, y, eps=1.0, steps=1, step_size=0.01,
                                               random_start=False, keep_best=False) - x, -0.2, 0.2), 0.0, 1.0)
    np.testing.assert_allclose(last, by_step, atol=1e-6)


def test_empty_batch_gives_empty_result(model):
    empty = np.zeros((0, 2), np.float32)
    assert pgd(model, empty, np.zeros(0, np.int64), eps=0.1).shape == (0, 2)
    assert pgd(model, empty, np.zeros(0, np.int64), eps=[0.1, 0.2]).shape == (2, 0, 2)


def test_clip_none_attacks_unbounded_inputs(model):
    x = np.array([[-3.0, 5.0]], np.float32)
    x_adv = fgsm(model, x, np.array([0]), eps=0.5, clip=None)
    np.testing.assert_allclose(np.abs(x_adv - x), 0.5, atol=1e-6)


def test_compiled_loops_per_model_are_bounded():
    model = linear_model()
    for _ in range(loop.MAX_COMPILED_PER_MODEL + 5):  # a fresh lambda each call: a new graph each time
        fgsm(model, X2, Y2, eps=0.1, loss=lambda logits, y: -tf.gather(logits, y, batch_dims=1))
    assert len(loop._COMPILED.of(model)) == loop.MAX_COMPILED_PER_MODEL


@pytest.mark.parametrize("name", ["pgd", "bim", "mim"])
def test_early_stop_keeps_the_outcome_and_the_trajectory_of_survivors(model, name):
    rng = np.random.default_rng(1)
    x = rng.random((200, 2), dtype=np.float32)
    y = np.argmax(model(x).numpy(), axis=1)  # all correct at the start
    extra = {"seed": 4} if name != "bim" else {}
    full = ATTACKS[name](model, x, y, eps=0.15, steps=12, **extra)
    early = ATTACKS[name](model, x, y, eps=0.15, steps=12, early_stop=True, **extra)
    fooled_full = np.argmax(model(full).numpy(), axis=1) != y
    fooled_early = np.argmax(model(early).numpy(), axis=1) != y
    assert 0 < fooled_full.sum() < len(x)  # a mix, so both branches are exercised
    np.testing.assert_array_equal(fooled_early, fooled_full)
    # Survivors ran the same steps from the same start: the same point.
    np.testing.assert_allclose(early[~fooled_full], full[~fooled_full], atol=1e-6)
    assert np.abs(early - x).max() <= 0.15 + 1e-6


def test_early_stop_restarts_only_attack_survivors(model):
    rng = np.random.default_rng(2)
    x = rng.random((100, 2), dtype=np.float32)
    y = np.argmax(model(x).numpy(), axis=1)
    one = pgd(model, x, y, eps=0.1, steps=3, restarts=1, seed=0, early_stop=True)
    three = pgd(model, x, y, eps=0.1, steps=3, restarts=3, seed=0, early_stop=True)
    fooled = lambda x_adv: np.argmax(model(x_adv).numpy(), axis=1) != y
    assert fooled(three).sum() >= fooled(one).sum()
    # Points fooled by the first restart are kept as they were.
    np.testing.assert_array_equal(three[fooled(one)], one[fooled(one)])


def test_early_stop_needs_keep_best(model):
    with pytest.raises(ValueError, match="early_stop=True needs keep_best=True"):
        loop.run(model, X2, Y2, eps=0.1, keep_best=False, early_stop=True)


@pytest.mark.slow
def test_early_stop_gives_the_same_robust_accuracy(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    for eps in (0.05, 0.1):
        full = accuracy(model, pgd(model, x, y, eps=eps, steps=20, seed=0), y)
        early = accuracy(model, pgd(model, x, y, eps=eps, steps=20, seed=0, early_stop=True), y)
        # Survivors follow the same trajectory; batch composition may move a float by 1 ulp.
        assert abs(full - early) <= 1 / len(x), (eps, full, early)
