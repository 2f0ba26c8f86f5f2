"""FAB (attacks/fab_attack.py): the box-constrained projection against a generic solver, the
exact minimal distance on affine models (box free and box binding), the eps mode's ball, range,
dtype, eps 0, K epsilons and seeds, registration, no retracing, every documented bad input, and
on the trained MNIST CNN: minimal L2 against DeepFool, FAB-T's robust accuracy against APGD."""

import numpy as np
import pytest

from advrobust.evaluation import robust_accuracy_curve
from attacks import AttackSpec, apgd, deepfool, fab, get_attack
from attacks.backend import tf
from attacks.fab_attack import box_projection, norm_of, trace_count
from tests.attacks.conftest import assert_refuses_like_pgd, probabilities
from tests.attacks.test_deep_fool import dense_model, minimal_distance
from tests.attacks.test_gradient import _model

DIM, CLASSES = 20, 10


@pytest.fixture(scope="module")
def affine():
    """A 20-D affine model with 10 classes, its weights, and 40 points it classifies as y."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(DIM, CLASSES)).astype(np.float32)
    bias = rng.normal(size=CLASSES).astype(np.float32)
    x = rng.uniform(0.2, 0.8, size=(40, DIM)).astype(np.float32)
    return dense_model(weights, bias), weights, bias, x, np.argmax(x @ weights + bias, axis=1)


def predictions(model, x):
    return np.argmax(model(x, training=False).numpy(), axis=-1)


def _least_norm_step(point, w, c, norm, low, high):
    """min ||delta|| with c + w . delta = 0 and low <= point + delta <= high, by scipy."""
    from scipy import optimize

    bounds = list(zip(low - point, high - point))
    if norm == "inf":  # variables (delta, t): minimise t with -t <= delta_i <= t
        d = len(point)
        rows = np.block([[np.eye(d), -np.ones((d, 1))], [-np.eye(d), -np.ones((d, 1))]])
        solution = optimize.linprog(np.r_[np.zeros(d), 1.0], A_ub=rows, b_ub=np.zeros(2 * d),
                                    A_eq=np.r_[w, 0.0][None], b_eq=[-c], bounds=[*bounds, (0, None)])
        return solution.x[:d]
    solution = optimize.minimize(lambda delta: delta @ delta, np.zeros_like(point), jac=lambda delta: 2 * delta,
                                 constraints=[{"type": "eq", "fun": lambda delta: c + w @ delta, "jac": lambda _: w}],
                                 bounds=bounds, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    return solution.x


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_box_projection_is_the_least_norm_step_within_the_box(norm):
    rng = np.random.default_rng(1)
    points = rng.uniform(0.0, 1.0, size=(30, 6))
    points[:5, :2] = [0.0, 1.0]  # some coordinates on the box's edges
    normals = rng.normal(size=(30, 6))
    normals[5:10, 3] = 0.0  # some coordinates the hyperplane does not involve
    values = rng.uniform(-1.0, 1.0, size=30)  # small enough for the box to reach the hyperplane
    steps = box_projection(tf.constant(points), tf.constant(normals), tf.constant(values), norm, (0.0, 1.0)).numpy()
    order = np.inf if norm == "inf" else 2
    for point, w, c, step in zip(points, normals, values, steps):
        expected = _least_norm_step(point, w, c, norm, 0.0, 1.0)
        assert abs(c + w @ step) < 1e-9
        assert np.all(point + step >= -1e-12) and np.all(point + step <= 1 + 1e-12)
        np.testing.assert_allclose(np.linalg.norm(step, order), np.linalg.norm(expected, order), rtol=1e-5)


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_box_projection_goes_to_the_nearest_corner_when_the_box_cannot_reach(norm):
    point, w = np.array([[0.2, 0.5, 0.9]]), np.array([[1.0, -2.0, 0.0]])
    step = box_projection(tf.constant(point), tf.constant(w), tf.constant([10.0], tf.float64), norm, (0.0, 1.0)).numpy()
    np.testing.assert_allclose(step, [[-0.2, 0.5, 0.0]])  # x1 down to 0, x2 up to 1, x3 free of w
    unbounded = box_projection(tf.constant(point), tf.constant(w), tf.constant([3.0], tf.float64), norm, None).numpy()
    np.testing.assert_allclose(unbounded, [[-1.0, 1.0, 0.0]] if norm == "inf" else [[-0.6, 1.2, 0.0]])


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("norm, dual", [("l2", 2), ("inf", 1)])
def test_finds_the_minimal_distance_on_an_affine_model(affine, norm, dual, targeted):
    model, weights, bias, x, y = affine
    expected = minimal_distance(weights, bias, x, y, dual)
    # Where the box binds, the minimum is larger than the hand-computed one: those points are left out.
    free = _minimal_step_inside_box(weights, bias, x, y, norm, dual, expected)
    assert free.sum() >= 25
    x_adv = fab(model, x, y, norm=norm, targeted=targeted, steps=8)
    assert np.all(predictions(model, x_adv) != y) and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    found = norm_of(x_adv - x, norm)[free]
    assert np.all(found >= expected[free] * (1 - 1e-5))
    np.testing.assert_allclose(found, expected[free], rtol=0.01)


def _minimal_step_inside_box(weights, bias, x, y, norm, dual, distances):
    """Whether each point's unconstrained closest boundary point lies in [0, 1]."""
    logits = x @ weights + bias
    gaps = np.abs(logits - logits[np.arange(len(x)), y][:, None])
    sizes = np.linalg.norm(weights.T[None] - weights.T[y][:, None], ord=dual, axis=2)
    closest = np.argmin(np.where(np.arange(CLASSES) == y[:, None], np.inf, gaps / np.maximum(sizes, 1e-12)), axis=1)
    w = (weights.T[closest] - weights.T[y]).astype(np.float64)  # the logit gap grows along w
    direction = np.sign(w) if norm == "inf" else w / np.linalg.norm(w, axis=1, keepdims=True)
    target = x + distances[:, None] * direction
    return np.all((target >= 0.0) & (target <= 1.0), axis=1)


@pytest.mark.parametrize("norm, expected_box, expected_free", [("l2", np.sqrt(0.08), 0.2), ("inf", 0.2, 0.1)])
def test_finds_the_minimal_distance_where_the_box_binds(norm, expected_box, expected_free):
    # z0 = x1 + x2 + x3 + x4 against z1 = 0.6: from (0, 0, 0.5, 0.5) the sum must fall by 0.4,
    # which x1 = x2 = 0 cannot help with inside [0, 1] (box: x3 and x4 fall by 0.2 each).
    model = dense_model(np.array([[1.0, 0.0]] * 4, np.float32), np.array([0.0, 0.6], np.float32))
    x, y = np.array([[0.0, 0.0, 0.5, 0.5]] * 2, np.float32), np.array([0, 0])
    boxed = fab(model, x, y, norm=norm, steps=20, target_classes=1)
    assert np.all(predictions(model, boxed) != y) and boxed.min() >= 0.0
    np.testing.assert_allclose(norm_of(boxed - x, norm), expected_box, rtol=0.01)
    free = fab(model, x, y, norm=norm, steps=20, target_classes=1, clip=None)
    np.testing.assert_allclose(norm_of(free - x, norm), expected_free, rtol=0.01)


@pytest.mark.parametrize("norm, epsilons", [("inf", [0.0, 0.02, 0.05, 0.1]), ("l2", [0.05, 0.15, 0.3])])
@pytest.mark.parametrize("targeted", [False, True])
def test_eps_mode_stays_in_the_ball_and_range_and_k_epsilons_equal_k_calls(affine, norm, epsilons, targeted):
    model, _, _, x, y = affine
    options = {"norm": norm, "targeted": targeted, "target_classes": 3, "steps": 10, "restarts": 2, "seed": 3}
    stacked = fab(model, x, y, eps=epsilons, batch_size=50, **options)
    assert stacked.shape == (len(epsilons), *x.shape) and stacked.dtype == x.dtype
    minimal = norm_of(fab(model, x, y, **options) - x, norm)
    for index, eps in enumerate(epsilons):
        single = fab(model, x, y, eps=eps, **options)
        # equal on CPU; the tolerance leaves room for kernels whose rounding depends on the batch size
        np.testing.assert_allclose(single, stacked[index], atol=1e-5)
        np.testing.assert_array_equal(predictions(model, single), predictions(model, stacked[index]))
        assert np.all(norm_of(single - x, norm) <= eps) and single.min() >= 0.0 and single.max() <= 1.0
        fooled = predictions(model, single) != y
        np.testing.assert_array_equal(fooled, np.any(single != x, axis=1))  # x where nothing was found
        assert np.all(fooled[minimal <= eps * 0.99])  # what the minimal-norm mode finds within eps, found
    if epsilons[0] == 0:
        np.testing.assert_array_equal(stacked[0], x)


def test_dtype_array_type_and_already_misclassified_points(affine):
    model, _, _, x, y = affine
    for dtype in (np.float32, np.float64):
        for eps in (None, 0.05):
            x_adv = fab(model, x.astype(dtype), y, eps=eps, steps=5)
            assert x_adv.dtype == dtype and x_adv.shape == x.shape and isinstance(x_adv, np.ndarray)
    as_tensor = fab(model, tf.constant(x), tf.constant(y), norm="l2", steps=5)
    assert isinstance(as_tensor, tf.Tensor) and as_tensor.dtype == tf.float32
    wrong = (y + 1) % CLASSES
    np.testing.assert_array_equal(fab(model, x, wrong, steps=5), x)
    np.testing.assert_array_equal(fab(model, x, y, eps=0.0, steps=5), x)


def test_nothing_found_returns_x():
    model = dense_model(np.array([[1.0, 0.0]] * 4, np.float32), np.array([0.0, 0.6], np.float32))
    x, y = np.array([[0.5, 0.5, 0.5, 0.5]], np.float32), np.array([0])
    # inside the box [0.45, 1] the sum stays >= 1.8 > 0.6: nothing to find
    np.testing.assert_array_equal(fab(model, x, y, steps=5, target_classes=1, clip=(0.45, 1.0)), x)


def test_same_seed_same_result():
    # On a ReLU network (not an affine model) a random restart sometimes lands closer than the
    # run from x, so the seed shows in the result.
    model = _model((3, 3, 1))
    x = np.random.default_rng(0).random((20, 3, 3, 1)).astype(np.float32)
    y = predictions(model, x)
    options = {"norm": "l2", "target_classes": 2, "steps": 1, "restarts": 3}
    first = fab(model, x, y, seed=7, **options)
    np.testing.assert_array_equal(first, fab(model, x, y, seed=7, **options))
    assert not np.array_equal(first, fab(model, x, y, seed=8, **options))


def test_a_new_batch_size_does_not_retrace(affine):
    _, weights, bias, x, y = affine
    model = dense_model(weights, bias)
    fab(model, x[:5], y[:5], steps=2, target_classes=2)
    traces = trace_count(model)
    fab(model, x, y, steps=2, target_classes=2, eps=[0.05, 0.1], batch_size=7)
    assert traces > 0 and trace_count(model) == traces


def test_registered_and_run_by_the_harness(affine):
    model, _, _, x, y = affine
    assert get_attack("fab") is fab
    spec = AttackSpec("fab", {"targeted": False, "steps": 5, "norm": "l2", "seed": 0, "alpha_max": 0.2})
    assert AttackSpec.from_json(spec.to_json()) == spec
    curve = robust_accuracy_curve(model, x, y, attack="fab", epsilons=[0.0, 0.1], params={"steps": 5},
                                  progress=False)
    assert curve.robust_accuracy[0] == curve.clean_accuracy == 1.0
    assert curve.robust_accuracy[1] < 0.5


@pytest.mark.parametrize("kwargs", [
    {"x": np.array([[np.nan, 0.2]], np.float32)},
    {"x": np.array([[0.1, 2.0]], np.float32)},
    {"x": np.array([[1, 2]], np.int64)},
    {"x": np.array([0.1, 0.2], np.float32)},
    {"y": np.array([7])},
    {"y": np.array([-1])},
    {"y": np.array([0, 1])},
    {"y": np.array([0.5])},
    {"eps": -0.1},
    {"eps": [0.1, float("inf")]},
    {"eps": "big"},
    {"steps": 0},
    {"restarts": 0},
    {"norm": "l1"},
    {"clip": (1.0, 0.0)},
    {"batch_size": -1},
    {"seed": 1.5},
    {"model": probabilities},
    {"model": "not a model"},
])
def test_bad_input_raises_the_same_error_as_pgd(kwargs):
    model = dense_model(np.array([[1.0, -2.0, 0.5], [-0.5, 1.0, 2.0]], np.float32), np.zeros(3, np.float32))
    arguments = {"model": model, "x": np.array([[0.1, 0.2]], np.float32), "y": np.array([0])}
    arguments.update(kwargs)
    assert_refuses_like_pgd(fab, arguments, takes_eps="eps" in kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"target_classes": 3}, ValueError, r"target_classes=3 is out of range: the model has 3 classes"),
    ({"target_classes": 0}, ValueError, "target_classes must be an integer >= 1, got 0"),
    ({"alpha_max": 1.5}, ValueError, r"alpha_max must be finite and in \[0, 1\], got 1.5"),
    ({"eta": 0.5}, ValueError, r"eta must be finite and in \[1, inf\), got 0.5"),
    ({"beta": 0.0}, ValueError, r"beta must be finite and in \(0, 1\], got 0.0"),
    ({"beta": "half"}, TypeError, "beta must be a number, got 'half'"),
])
def test_fab_specific_errors(kwargs, error, message):
    model = dense_model(np.array([[1.0, -2.0, 0.5], [-0.5, 1.0, 2.0]], np.float32), np.zeros(3, np.float32))
    with pytest.raises(error, match=message):
        fab(model, np.array([[0.1, 0.2]], np.float32), np.array([0]), **kwargs)


def test_untargeted_two_class_model_ignores_target_classes():
    model = dense_model(np.array([[1.0, -1.0]], np.float32), np.array([-0.5, 0.5], np.float32))  # boundary 0.5
    x, y = np.array([[0.7]], np.float32), np.array([0])
    np.testing.assert_allclose(fab(model, x, y, targeted=False, steps=10), [[0.5]], rtol=0.01)
    with pytest.raises(ValueError, match="target_classes=9 is out of range"):
        fab(model, x, y)


@pytest.mark.slow
def test_minimal_l2_no_larger_than_deepfool_and_fab_t_as_strong_as_apgd(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    x, y = x[:40], y[:40]
    correct = predictions(model, x) == y
    x_fab = fab(model, x, y, norm="l2", targeted=False, steps=10, seed=0)
    fooled = predictions(model, x_fab) != y
    assert np.all(fooled[correct]) and x_fab.min() >= 0.0 and x_fab.max() <= 1.0
    fab_median = np.median(norm_of(x_fab - x, "l2")[correct])
    deepfool_median = np.median(norm_of(deepfool(model, x, y) - x, "l2")[correct])
    assert fab_median <= 1.1 * deepfool_median, (fab_median, deepfool_median)
    x_t = fab(model, x, y, eps=0.1, steps=15, seed=0)  # measured: 65% robust, as APGD-CE; 70% after 10 steps
    assert np.abs(x_t - x).max() <= 0.1
    fab_accuracy = np.mean(predictions(model, x_t) == y)
    apgd_accuracy = np.mean(predictions(model, apgd(model, x, y, eps=0.1, steps=20, seed=0)) == y)
    assert fab_accuracy < np.mean(correct) - 0.2 and fab_accuracy <= apgd_accuracy + 0.05, (fab_accuracy,
                                                                                           apgd_accuracy)
