"""Square Attack (attacks/square_attack.py) on tiny models: the p schedule and the L2 block, ball and
range, dtype and array type, eps 0, seeds, K epsilons in one call, no gradient ever taken,
query counting, bad inputs as for PGD; on the trained MNIST CNN (slow) it lowers accuracy,
and (crosscheck) it matches ART's SquareAttack."""

import warnings

import numpy as np
import pytest
from hypothesis import given

from attacks.backend import tf
from attacks.square_attack import p_schedule, pseudo_gaussian_block, square, square_with_queries
from tests.attacks.conftest import assert_refuses_like_pgd, probabilities
from tests.attacks.test_gradient import PROPERTY_SETTINGS, _model, distance, problems

SHAPE = (6, 6, 1)


def tiny_problem(n=12, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.random((n, *SHAPE)).astype(dtype)
    model = _model(SHAPE)
    return model, x, np.argmax(model(x, training=False).numpy(), axis=1)


def no_gradient_model(model):
    """The model's logits, but taking any gradient through them raises."""
    @tf.custom_gradient
    def guarded(x):
        def gradient(upstream, variables=None):
            raise AssertionError("Square Attack took a gradient")
        return model(x, training=False), gradient
    return guarded


def counting_model(model):
    """The model, counting the inputs it is called on (in a variable, so compiled calls count)."""
    count = tf.Variable(0, dtype=tf.int64)

    def counted(x):
        count.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
        return model(x, training=False)
    return counted, count


def test_p_schedule_halves_at_the_reference_fractions():
    assert p_schedule(0, 5000, 0.8) == 0.8 and p_schedule(5, 5000, 0.8) == 0.8
    assert p_schedule(6, 5000, 0.8) == 0.4  # past 10/10000 of 5000 queries
    assert p_schedule(26, 5000, 0.8) == 0.2 and p_schedule(4001, 5000, 0.8) == 0.8 / 2 ** 9
    assert [p_schedule(i, 100, 1.0) for i in (0, 1, 3, 11, 51, 99)] == [1.0, 0.25, 0.125, 1 / 32, 1 / 128, 1 / 512]


def test_pseudo_gaussian_block_has_unit_norm_and_opposite_halves():
    block = pseudo_gaussian_block(5)
    assert np.isclose(np.sum(block ** 2), 1.0)
    assert np.all(block[:2] > 0) and np.all(block[2:] < 0)
    np.testing.assert_allclose(pseudo_gaussian_block(5, transposed=True), block.T)
    assert np.isclose(np.sum(pseudo_gaussian_block(1) ** 2), 1.0)


@pytest.mark.parametrize("norm, eps", [("inf", 0.2), ("l2", 1.0)])
def test_in_the_ball_and_range_and_fools_the_tiny_model(norm, eps):
    model, x, y = tiny_problem()
    x_adv = square(model, x, y, eps=eps, norm=norm, queries=200, seed=0)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.all(x_adv >= 0) and np.all(x_adv <= 1)
    assert np.all(distance(x_adv - x, norm) <= eps + 1e-6)
    assert np.mean(np.argmax(model(x_adv, training=False).numpy(), axis=1) != y) >= 0.5


@PROPERTY_SETTINGS
@given(problem=problems())
def test_property_ball_range_dtype(problem):
    model, x, y, norm, eps, dtype = problem
    x_adv = square(model, x, y, eps=eps, norm=norm, queries=20, seed=0)
    assert x_adv.shape == x.shape and x_adv.dtype == dtype
    assert np.all(x_adv >= 0.0) and np.all(x_adv <= 1.0)
    tolerance = 4 * np.finfo(dtype).eps * max(1.0, np.sqrt(x[0].size))
    assert np.all(distance(x_adv - x, norm) <= eps + tolerance)


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_eps_zero_is_the_identity_and_costs_no_query(norm):
    model, x, y = tiny_problem()
    x_adv, used = square_with_queries(model, x, y, eps=0.0, norm=norm, queries=30, seed=0)
    np.testing.assert_array_equal(x_adv, x)
    assert not used.any()


def test_tensor_in_tensor_out_and_float64_kept():
    model, x, y = tiny_problem()
    x_adv = square(model, tf.constant(x), y, eps=0.1, queries=10, seed=0)
    assert isinstance(x_adv, tf.Tensor) and x_adv.dtype == tf.float32
    x64 = x.astype(np.float64)
    x_adv64 = square(model, x64, y, eps=[0.5], norm="l2", queries=10, seed=0)
    assert x_adv64.dtype == np.float64 and x_adv64.shape == (1, *x.shape)


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_same_seed_same_result_other_seed_other_result(norm):
    model, x, y = tiny_problem()
    first = square(model, x, y, eps=0.1, norm=norm, queries=40, seed=3)
    np.testing.assert_array_equal(first, square(model, x, y, eps=0.1, norm=norm, queries=40, seed=3))
    assert not np.array_equal(first, square(model, x, y, eps=0.1, norm=norm, queries=40, seed=4))


@pytest.mark.parametrize("norm, epsilons", [("inf", [0.05, 0.0, 0.2]), ("l2", [0.3, 1.5])])
def test_k_epsilons_in_one_call_equal_k_calls_and_batch_size_does_not_matter(norm, epsilons):
    model, x, y = tiny_problem()
    together = square(model, x, y, eps=epsilons, norm=norm, queries=40, seed=7, batch_size=5)
    assert together.shape == (len(epsilons), *x.shape)
    for row, eps in zip(together, epsilons):
        np.testing.assert_allclose(row, square(model, x, y, eps=eps, norm=norm, queries=40, seed=7), atol=1e-6)


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_never_takes_a_gradient(norm):
    model, x, y = tiny_problem()
    guarded = no_gradient_model(model)
    with pytest.raises(AssertionError, match="took a gradient"):  # the guard works
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = tf.reduce_sum(guarded(xt))
        tape.gradient(loss, xt)
    x_adv = square(guarded, x, y, eps=0.2, norm=norm, queries=30, seed=0)
    np.testing.assert_array_equal(x_adv, square(model, x, y, eps=0.2, norm=norm, queries=30, seed=0))


def test_queries_are_counted_per_example():
    model, x, y = tiny_problem()
    y_wrong = (y + 1) % 3  # misclassified already: no query
    x_adv, used = square_with_queries(model, x, y_wrong, eps=0.2, queries=30, seed=0)
    np.testing.assert_array_equal(x_adv, x)
    assert not used.any()
    # eps 1 in L-inf: the initial stripes are far from x and fool some examples at once.
    _, used_k = square_with_queries(model, x, y, eps=[1.0, 1e-4], queries=30, seed=0)
    assert used_k.shape == (2, len(x)) and np.all(used_k >= 1) and np.all(used_k <= 30)
    assert np.all(used_k[1] == 30)  # a tiny ball fools nothing: the whole budget is spent
    counted, count = counting_model(model)
    _, used = square_with_queries(counted, x, y, eps=[1.0, 1e-4], queries=30, seed=0)
    np.testing.assert_array_equal(used, used_k)
    probe_and_clean = min(len(x), 16) + len(x)
    assert int(count.numpy()) == probe_and_clean + used.sum()


def test_a_point_fooled_by_the_initial_point_costs_one_query():
    model, x, y = tiny_problem()
    x_adv, used = square_with_queries(model, x, y, eps=1.0, queries=30, seed=0)
    fooled = np.argmax(model(x_adv, training=False).numpy(), axis=1) != y
    first = square_with_queries(model, x, y, eps=1.0, queries=1, seed=0)[0]
    fooled_at_start = np.argmax(model(first, training=False).numpy(), axis=1) != y
    assert fooled_at_start.any()
    np.testing.assert_array_equal(used[fooled_at_start], 1)
    assert np.all(used[fooled & ~fooled_at_start] > 1)


def test_empty_batch_checks_parameters_then_returns():
    model = _model(SHAPE)
    empty = np.zeros((0, *SHAPE), np.float32)
    assert square(model, empty, np.zeros(0, int), eps=0.1).shape == empty.shape
    assert square(model, empty, np.zeros(0, int), eps=[0.1, 0.2]).shape == (2, *empty.shape)
    with pytest.raises(ValueError, match="queries must be an integer >= 1, got 0"):
        square(model, empty, np.zeros(0, int), eps=0.1, queries=0)
    with pytest.raises(ValueError, match=r"p_init must be a share of the pixels in \(0, 1\], got 1.5"):
        square(model, empty, np.zeros(0, int), eps=0.1, p_init=1.5)



@pytest.mark.parametrize("kwargs", [
    {"x": np.array([[np.nan, 0.1]], np.float32)},
    {"x": np.array([[200.0, 3.0]], np.float32)},
    {"x": np.array([[1, 0]], np.uint8)},
    {"y": np.array([5])},
    {"y": np.array([-1])},
    {"y": np.array([0, 1])},
    {"eps": -0.1},
    {"eps": [0.1, float("inf")]},
    {"norm": "l1"},
    {"clip": (1.0, 0.0)},
    {"model": probabilities},
    {"model": "not a model"},
    {"seed": 1.5},
])
def test_bad_input_raises_the_same_error_as_pgd(kwargs):
    arguments = {"model": _model((2,)), "x": np.array([[0.1, 0.2]], np.float32), "y": np.array([0]), "eps": 0.1}
    arguments.update(kwargs)
    assert_refuses_like_pgd(square, arguments)


def test_own_parameters_are_checked():
    model, x, y = tiny_problem(2)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="queries must be an integer >= 1"):
            square(model, x, y, eps=0.1, queries=bad)
    with pytest.raises(ValueError, match="p_init must be finite and > 0"):
        square(model, x, y, eps=0.1, p_init=0.0)
    with pytest.raises(TypeError, match="p_init must be a number"):
        square(model, x, y, eps=0.1, p_init="big")


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


@pytest.mark.slow
@pytest.mark.parametrize("norm, eps", [("inf", 0.2), ("l2", 2.0)])
def test_lowers_the_accuracy_of_the_trained_mnist_cnn(trained_mnist_cnn, norm, eps):
    model, x, y = trained_mnist_cnn
    x, y = x[:100], y[:100]
    x_adv = square(model, x, y, eps=eps, norm=norm, queries=300, seed=0)
    assert np.all(distance(x_adv - x, norm) <= eps + 1e-5)
    clean, robust = _accuracy(model, x, y), _accuracy(model, x_adv, y)
    assert robust < clean - 0.2, (clean, robust)


def _art_square_accuracy(model, x, y, *, eps, norm, queries, seed):
    from attacks.external import _InferenceModel
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PyTorch not found", category=UserWarning)
        from art.attacks.evasion import SquareAttack
        from art.estimators.classification import TensorFlowV2Classifier
    classifier = TensorFlowV2Classifier(model=_InferenceModel(model, tf.float32, tuple(x.shape[1:])), nb_classes=10,
                                        input_shape=tuple(x.shape[1:]), clip_values=(0.0, 1.0))
    attack = SquareAttack(classifier, norm=np.inf if norm == "inf" else 2, eps=eps, max_iter=queries - 1,
                          nb_restarts=1, batch_size=256, verbose=False)
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        x_adv = attack.generate(x, y=y)
    finally:
        np.random.set_state(state)
    # ART's L2 update divides by a zero budget for some examples and returns NaN images; the
    # model classifies those arbitrarily, so they would count as fooled. They are attacks
    # that failed: the clean image stands in for them.
    failed = ~np.all(np.isfinite(x_adv.reshape(len(x), -1)), axis=1)
    x_adv = np.where(failed[:, None, None, None], x, x_adv).astype(np.float32)
    assert np.all(distance(x_adv - x, norm) <= eps + 1e-5)
    return _accuracy(model, x_adv, y)


@pytest.mark.slow
@pytest.mark.crosscheck
def test_linf_robust_accuracy_matches_art(trained_mnist_cnn):
    """Within 2 points of ART 1.20.1, or a little stronger: ART draws one square per step for
    the whole batch and never redraws a square that leaves the point unchanged (the
    reference does), so late in the search, with squares of a pixel or two, about half of
    its queries change nothing. Measured (200 images, 500 queries, seeds 0, 1, 2): ours
    0.75, 0.74, 0.74; ART 0.77, 0.76, 0.77."""
    model, x, y = trained_mnist_cnn
    x, y, queries = x[:200], y[:200], 500
    ours = _accuracy(model, square(model, x, y, eps=0.1, queries=queries, seed=0), y)
    theirs = _art_square_accuracy(model, x, y, eps=0.1, norm="inf", queries=queries, seed=0)
    print(f"square inf eps=0.1 queries={queries}: ours {ours:.3f}, ART {theirs:.3f}")
    assert -0.05 <= ours - theirs <= 0.02 + 1e-9, (ours, theirs)


@pytest.mark.slow
@pytest.mark.crosscheck
def test_l2_is_at_least_as_strong_as_art(trained_mnist_cnn):
    """ART 1.20.1's L2 update divides the new square by its budget where the reference
    multiplies (``delta_new /= norm * sqrt(budget)``, operator precedence), which makes it
    weaker: ours ended near 0.715 and ART near 0.82 at these settings, and the same division
    put into ours gave 0.80. So only ``ours <= ART`` (+2 points) is asserted."""
    model, x, y = trained_mnist_cnn
    x, y, queries = x[:200], y[:200], 500
    ours = _accuracy(model, square(model, x, y, eps=1.5, norm="l2", queries=queries, seed=0), y)
    theirs = _art_square_accuracy(model, x, y, eps=1.5, norm="l2", queries=queries, seed=0)
    print(f"square l2 eps=1.5 queries={queries}: ours {ours:.3f}, ART {theirs:.3f}")
    assert ours <= theirs + 0.02 + 1e-9, (ours, theirs)
