"""APGD (attacks/auto_pgd.py) on tiny models: the
checkpoint schedule and rule, ball and range, shapes and dtypes, seeds, K epsilons in one
call, strength against PGD (also where cross-entropy gradients vanish), registration, and
every documented bad input."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attacks import AttackSpec, apgd, apgd_art, get_attack, pgd
from attacks.auto_pgd import _build, _checkpoint, _Static, checkpoints, schedule, trace_count
from attacks.backend import keras, tf
from advrobust.evaluation import robust_accuracy_curve
from tests.attacks.conftest import assert_refuses_like_pgd, probabilities
from tests.attacks.test_gradient import PROPERTY_SETTINGS, distance, problems

W = np.array([[1.0, -2.0, 0.5], [-0.5, 1.0, 2.0]], np.float32)  # 2 inputs -> 3 classes
B = np.array([0.1, 0.0, -0.1], np.float32)
X2 = np.array([[0.2, 0.7], [0.5, 0.5], [0.9, 0.1], [0.4, 0.3]], np.float32)
Y2 = np.array([2, 2, 0, 2])  # the linear model's own predictions
DIM, CLASSES = 20, 10


def dense_model(weights, bias, scale=1.0):
    """logits = scale * (x @ weights + bias), as a Keras 2 model."""
    inputs = keras.Input((weights.shape[0],))
    dense = keras.layers.Dense(weights.shape[1])
    outputs = dense(inputs) if scale == 1.0 else keras.layers.Rescaling(scale)(dense(inputs))
    model = keras.Model(inputs, outputs)
    dense.set_weights([weights, bias])
    return model


@pytest.fixture(scope="module")
def model():
    return dense_model(W, B)


@pytest.fixture(scope="module")
def wide():
    """A 20-D linear model with 10 classes, points it classifies correctly, and its weights."""
    rng = np.random.default_rng(0)
    weights, bias = rng.normal(size=(DIM, CLASSES)).astype(np.float32), np.zeros(CLASSES, np.float32)
    x = rng.uniform(0.3, 0.7, size=(60, DIM)).astype(np.float32)
    return dense_model(weights, bias), x, np.argmax(x @ weights, axis=1), weights


def predictions(model, x):
    return np.argmax(model(x, training=False).numpy(), axis=-1)


def assert_in_ball_and_range(x_adv, x, eps, norm="inf"):
    delta = (np.asarray(x_adv, np.float64) - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-6) + 1e-7
    assert np.min(x_adv) >= 0.0 and np.max(x_adv) <= 1.0


def test_checkpoints_follow_autoattack_schedule():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), times 100 steps
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    # w_j = ceil(p_j * steps), without float rounding: 0.41 * 100 is 41, not 42
    assert checkpoints(20) == [5, 9, 12, 14, 16, 18, 19] and checkpoints(10) == [3, 5, 6, 7, 8, 9]
    assert checkpoints(1) == [] and checkpoints(5) == [2, 3, 4]
    for steps in (1, 7, 20, 100, 137):
        plan = schedule(steps)
        assert sum(size for size, _ in plan) == steps
        assert {size for size, _ in plan} <= {1, 5}  # two traces serve every number of steps
        ends = np.cumsum([size for size, _ in plan])
        assert [int(end) for end, (_, interval) in zip(ends, plan) if interval] == checkpoints(steps)


def test_checkpoint_rule_halves_the_step_and_returns_to_the_best_point():
    n = 3
    # interval 4: (a) loss rose twice (< 0.75 * 4); (b) 3 times, and the best loss rose;
    # (c) 4 times, but the step was not halved last time and the best loss did not rise
    state = {"x_t": tf.fill([n, 2], 0.5), "x_best": tf.fill([n, 2], 0.25), "grad": tf.ones([n, 2]),
             "grad_best": -tf.ones([n, 2]), "step": tf.fill([n], 0.2), "loss_t": tf.zeros([n]),
             "loss_best": tf.constant([1.0, 2.0, 1.0]), "loss_checked": tf.constant([0.0, 1.0, 1.0]),
             "increases": tf.constant([2, 3, 4], tf.int32), "halved": tf.constant([True, False, False])}
    after = _checkpoint(state, 4)
    np.testing.assert_allclose(after["step"], [0.1, 0.2, 0.1])
    np.testing.assert_allclose(after["x_t"], [[0.25, 0.25], [0.5, 0.5], [0.25, 0.25]])
    np.testing.assert_allclose(after["grad"][:, 0], [-1.0, 1.0, -1.0])
    np.testing.assert_array_equal(after["halved"], [True, False, True])
    np.testing.assert_array_equal(after["increases"], [0, 0, 0])
    np.testing.assert_allclose(after["loss_checked"], [1.0, 2.0, 1.0])


@pytest.mark.parametrize("loss, targeted", [("ce", False), ("dlr", False), ("ce", True)])
@pytest.mark.parametrize("norm, eps", [("inf", 0.15), ("l2", 0.3)])
def test_inside_ball_and_range_and_fools_the_linear_model(model, loss, targeted, norm, eps):
    x_adv = apgd(model, X2, Y2, eps=eps, norm=norm, loss=loss, targeted=targeted, target_classes=2, steps=10,
                 seed=0)
    assert x_adv.shape == X2.shape and x_adv.dtype == np.float32
    assert_in_ball_and_range(x_adv, X2, eps, norm)
    assert np.mean(predictions(model, x_adv) != Y2) >= 0.25


def test_targeted_dlr_on_ten_classes_stays_in_the_ball_and_fools(wide):
    model, x, y, _ = wide
    x_adv = apgd(model, x, y, eps=0.05, loss="dlr", targeted=True, target_classes=3, steps=10, seed=0)
    assert_in_ball_and_range(x_adv, x, 0.05)
    untargeted = apgd(model, x, y, eps=0.05, loss="dlr", steps=10, seed=0)
    assert 0 < np.mean(predictions(model, x_adv) != y) and np.mean(predictions(model, untargeted) != y) > 0


def test_dtype_and_array_type_are_kept(model):
    x_adv = apgd(model, tf.constant(X2), Y2, eps=0.1, steps=3, seed=0)
    assert isinstance(x_adv, tf.Tensor) and x_adv.shape == X2.shape
    x64 = X2.astype(np.float64)
    x_adv64 = apgd(model, x64, Y2, eps=[0.1], norm="l2", steps=3, seed=0)
    assert x_adv64.dtype == np.float64 and x_adv64.shape == (1, *X2.shape)
    assert_in_ball_and_range(x_adv64[0], x64, 0.1, "l2")


def test_plain_function_and_tf_module_models_give_the_keras_result(model):
    class Linear(tf.Module):
        def __call__(self, x):
            return tf.matmul(x, W) + B

    expected = apgd(model, X2, Y2, eps=0.1, loss="dlr", steps=5, seed=0)
    for candidate in (Linear(), lambda x: tf.matmul(x, W) + B):
        np.testing.assert_allclose(apgd(candidate, X2, Y2, eps=0.1, loss="dlr", steps=5, seed=0), expected, atol=1e-6)


def test_bfloat16_gradients_keep_ball_range_and_dtype(model):
    x_adv = apgd(model, X2, Y2, eps=0.15, loss="dlr", steps=5, seed=0, compute_dtype="bfloat16")
    assert x_adv.dtype == np.float32
    assert_in_ball_and_range(x_adv, X2, 0.15)
    assert np.mean(predictions(model, x_adv) != Y2) >= 0.25


def test_eps_zero_and_misclassified_points_come_back_unchanged(model):
    np.testing.assert_array_equal(apgd(model, X2, Y2, eps=0.0, steps=3), X2)
    wrong = (Y2 + 1) % 3  # every point misclassified already: nothing to attack
    np.testing.assert_array_equal(apgd(model, X2, wrong, eps=0.2, steps=3, seed=0), X2)


def test_same_seed_same_result(model):
    # eps 0.02 fools nothing: the highest-loss iterate depends on the random start
    first = apgd(model, X2, Y2, eps=0.02, norm="l2", steps=1, restarts=2, seed=7)
    np.testing.assert_array_equal(first, apgd(model, X2, Y2, eps=0.02, norm="l2", steps=1, restarts=2, seed=7))
    assert not np.array_equal(first, apgd(model, X2, Y2, eps=0.02, norm="l2", steps=1, restarts=2, seed=8))


@pytest.mark.parametrize("norm, epsilons", [("inf", [0.0, 0.01, 0.03, 0.06]), ("l2", [0.05, 0.15, 0.3])])
def test_k_epsilons_in_one_call_equal_k_calls(wide, norm, epsilons):
    model, x, y, _ = wide
    stacked = apgd(model, x, y, eps=epsilons, norm=norm, steps=10, seed=3, batch_size=50)
    assert stacked.shape == (len(epsilons), *x.shape)
    for index, eps in enumerate(epsilons):
        single = apgd(model, x, y, eps=eps, norm=norm, steps=10, seed=3)
        assert_in_ball_and_range(stacked[index], x, eps, norm)
        np.testing.assert_array_equal(predictions(model, stacked[index]) == y, predictions(model, single) == y)


def test_new_batch_size_does_not_retrace(model):
    apgd(model, X2, Y2, eps=0.05, steps=6, seed=0)
    traces = trace_count(model)
    apgd(model, X2[:3], Y2[:3], eps=[0.05, 0.1], steps=6, seed=1, batch_size=5)
    assert trace_count(model) == traces


def test_dlr_breaks_what_pgd_ce_misses_when_softmax_saturates(wide):
    _, x, y, weights = wide
    scaled = dense_model(weights, np.zeros(CLASSES, np.float32), scale=1e4)  # CE gradients are 0 in float32
    pgd_robust = predictions(scaled, pgd(scaled, x, y, eps=0.1, steps=20, seed=0)) == y
    dlr_robust = predictions(scaled, apgd(scaled, x, y, eps=0.1, loss="dlr", steps=20, seed=0)) == y
    # by hand (margin / ||w_y - w_j||_1), about 3 in 4 of these points can be fooled at eps 0.1
    assert np.mean(pgd_robust & ~dlr_robust) >= 0.5, (np.mean(dlr_robust), np.mean(pgd_robust))


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained on 4 Gaussian blobs in [0, 1]^10, and 200 test points."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(0.3, 0.7, size=(4, 10))
    labels = rng.integers(0, 4, 800)
    x = np.clip(centres[labels] + rng.normal(scale=0.08, size=(800, 10)), 0, 1).astype(np.float32)
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)])
    mlp.compile(optimizer=keras.optimizers.Adam(0.01),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    mlp.fit(x[:600], labels[:600], epochs=15, batch_size=64, verbose=0)
    return mlp, x[600:], labels[600:]


def test_apgd_ce_is_at_least_as_strong_as_pgd_on_a_trained_model(trained):
    mlp, x, y = trained
    clean = np.mean(predictions(mlp, x) == y)
    assert clean > 0.9
    for norm, eps in (("inf", 0.08), ("l2", 0.2)):
        pgd_accuracy = np.mean(predictions(mlp, pgd(mlp, x, y, eps=eps, norm=norm, steps=20, seed=0)) == y)
        apgd_accuracy = np.mean(predictions(mlp, apgd(mlp, x, y, eps=eps, norm=norm, steps=20, seed=0)) == y)
        assert apgd_accuracy < clean - 0.3, (norm, clean, apgd_accuracy)
        assert apgd_accuracy <= pgd_accuracy + 0.01, (norm, apgd_accuracy, pgd_accuracy)



@pytest.mark.parametrize("kwargs", [
    {"x": np.array([[np.nan, 0.1]], np.float32)},
    {"x": np.array([[200.0, 3.0]], np.float32)},
    {"x": np.array([[1, 0]], np.uint8)},
    {"y": np.array([5])},
    {"y": np.array([-1])},
    {"y": np.array([0, 1])},
    {"eps": -0.1},
    {"eps": [0.1, float("inf")]},
    {"steps": 0},
    {"restarts": 0},
    {"norm": "l1"},
    {"clip": (1.0, 0.0)},
    {"model": probabilities},
    {"model": "not a model"},
    {"seed": 1.5},
])
def test_bad_input_raises_the_same_error_as_pgd(model, kwargs):
    arguments = {"model": model, "x": np.array([[0.1, 0.2]], np.float32), "y": np.array([0]), "eps": 0.1}
    arguments.update(kwargs)
    assert_refuses_like_pgd(apgd, arguments)


def test_eot_averages_the_draws_losses_and_gradients_not_their_logits():
    """With ``eot_iter=D`` a loss and gradient are the means of the D draws' own (AutoAttack's
    rand version), hand-checked on a model whose draw d scales the logits by ``scales[d]``;
    success is judged on the draws' mean logits (here: reversed, so every point succeeds,
    which no single draw but the second would say)."""
    scales = tf.constant([1.0, -4.0, 0.5, 2.0])  # draw d of a batch of B: logits * scales[d]; mean -0.125
    batch = len(X2)

    def drawn(t):  # the D draws arrive as one batch of D x B rows, draw by draw
        return tf.matmul(t, W) * tf.gather(scales, tf.range(tf.shape(t)[0]) // batch)[:, None]

    static = _Static(norm="inf", loss="ce", targeted=False, clip=(0.0, 1.0), dtype="float32", example_shape=(2,),
                     draws=len(scales))
    y = tf.constant(Y2, tf.int64)
    loss, gradient, success = _build(drawn, static)("evaluate")(tf.constant(X2), y, y)
    single = dataclasses.replace(static, draws=1)
    per_draw = [_build(lambda t, s=s: tf.matmul(t, W) * s, single)("evaluate")(tf.constant(X2), y, y)
                for s in scales.numpy()]
    np.testing.assert_allclose(loss, np.mean([d[0] for d in per_draw], axis=0), rtol=1e-5)
    np.testing.assert_allclose(gradient, np.mean([d[1] for d in per_draw], axis=0), rtol=1e-5, atol=1e-6)
    mean_logits = (X2 @ W) * float(np.mean(scales))
    np.testing.assert_array_equal(success, np.argmax(mean_logits, axis=1) != Y2)
    assert success.numpy().all()


def test_eot_on_a_deterministic_model_finds_what_one_draw_finds(wide):
    model, x, y, _ = wide
    one = apgd(model, x, y, eps=0.05, steps=20, seed=0)
    averaged = apgd(model, x, y, eps=0.05, steps=20, seed=0, eot_iter=3)
    assert 0 < np.mean(predictions(model, one) == y) < 1  # a radius where some points resist
    np.testing.assert_array_equal(predictions(model, one) == y, predictions(model, averaged) == y)
    np.testing.assert_allclose(averaged, one, atol=1e-5)


def test_apgd_specific_errors(model):
    with pytest.raises(ValueError, match="eot_iter must be an integer >= 1, got 0"):
        apgd(model, X2, Y2, eps=0.1, eot_iter=0)
    with pytest.raises(ValueError, match="unknown loss 'margin'; choose one of: ce, dlr"):
        apgd(model, X2, Y2, eps=0.1, loss="margin")
    with pytest.raises(ValueError, match=r"target_classes=3 is out of range: the model has 3 classes"):
        apgd(model, X2, Y2, eps=0.1, targeted=True, target_classes=3)
    with pytest.raises(ValueError, match="target_classes must be an integer >= 1, got 0"):
        apgd(model, X2, Y2, eps=0.1, targeted=True, target_classes=0)
    with pytest.raises(ValueError, match="targeted loss 'dlr' needs at least 4 classes, the model has 3"):
        apgd(model, X2, Y2, eps=0.1, loss="dlr", targeted=True, target_classes=2)
    two_classes = dense_model(W[:, :2], B[:2])
    with pytest.raises(ValueError, match="loss 'dlr' needs at least 3 classes, the model has 2"):
        apgd(two_classes, X2, Y2 % 2, eps=0.1, loss="dlr")
    # the default target_classes=9 only matters when targeted
    assert apgd(two_classes, X2, Y2 % 2, eps=0.1, steps=2).shape == X2.shape


def test_registered_and_run_by_the_harness(model):
    assert get_attack("apgd") is apgd
    spec = AttackSpec("apgd", {"loss": "dlr", "targeted": True, "target_classes": 3, "steps": 10, "restarts": 2,
                               "norm": "l2", "seed": 0, "batch_size": 64, "clip": [0.0, 1.0]})
    assert AttackSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match=r"takes no parameter\(s\) \['step_size'\]"):
        AttackSpec("apgd", {"step_size": 0.1})
    curve = robust_accuracy_curve(model, X2, Y2, attack="apgd", epsilons=[0.0, 0.3], params={"steps": 5},
                                  progress=False)
    assert curve.robust_accuracy[0] == curve.clean_accuracy == 1.0
    assert curve.robust_accuracy[1] < 1.0


def test_l2_steps_spend_the_whole_radius_at_the_edge_of_the_clip_range():
    # logits (s, -s) with s = x1 + x2 + x3 + x4: the loss of label 0 rises as s falls, but
    # x1 = x2 = 0 cannot fall. The best point spends the radius on x3 and x4 alone; a
    # step projected before clipping would lose the part spent on x1 and x2.
    weights = np.array([[1.0, -1.0]] * 4, np.float32)
    model = dense_model(weights, np.zeros(2, np.float32))
    x = np.tile(np.array([[0.0, 0.0, 0.5, 0.5]], np.float32), (3, 1))
    one_step = apgd(model, x, np.zeros(3, int), eps=0.2, norm="l2", steps=1, seed=0)
    np.testing.assert_allclose(np.linalg.norm(one_step - x, axis=1), 0.2, rtol=1e-5)
    best = apgd(model, x, np.zeros(3, int), eps=0.2, norm="l2", steps=10, seed=0)
    np.testing.assert_allclose(best, np.tile([[0.0, 0.0, 0.5 - 0.1 * 2**0.5, 0.5 - 0.1 * 2**0.5]], (3, 1)), atol=1e-3)


# Cross-check: the project's APGD against ART's AutoProjectedGradientDescent (run through
# attacks.apgd_art) on the trained MNIST CNN: at the same number of steps, APGD-CE and
# APGD-DLR leave a robust accuracy within one point of ART's, or lower.
N_MNIST = 200  # of the fixture's 500 test images, for speed
STEPS = 20
SLACK = 0.01  # one point of robust accuracy: 2 of 200 images


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), axis=1) == y))


def _assert_in_ball_and_range(x_adv, x, eps, norm):
    delta = (x_adv.astype(np.float64) - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-6)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.crosscheck
@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "dlr"])
@pytest.mark.parametrize("norm, eps", [("inf", 0.1), ("l2", 1.5)])
def test_robust_accuracy_within_a_point_of_art_or_lower(trained_mnist_cnn, norm, eps, loss):
    model, x, y = trained_mnist_cnn
    x, y = x[:N_MNIST], y[:N_MNIST]
    ours = apgd(model, x, y, eps=eps, norm=norm, loss=loss, steps=STEPS, seed=0)
    assert ours.shape == x.shape and ours.dtype == x.dtype
    _assert_in_ball_and_range(ours, x, eps, norm)
    clean, robust = accuracy(model, x, y), accuracy(model, ours, y)
    art = accuracy(model, apgd_art(model, x, y, eps=eps, norm=norm, loss=loss, steps=STEPS, seed=0), y)
    numbers = {"clean": clean, "apgd": robust, "art": art}
    assert robust < clean - 0.2, numbers
    assert robust <= art + SLACK, numbers


# The attack invariants over random shapes, epsilons, norms and dtypes, as for the other
# attacks (tests/attacks/test_gradient.py holds the strategy).
@PROPERTY_SETTINGS
@given(problem=problems(), targeted=st.booleans())
def test_properties_ball_clip_range_dtype_and_eps_zero(problem, targeted):
    model, x, y, norm, eps, dtype = problem
    options = {"steps": 4, "seed": 0, "norm": norm, "targeted": targeted, "target_classes": 2}
    x_adv = np.asarray(apgd(model, x, y, eps=eps, **options))
    assert x_adv.shape == x.shape and x_adv.dtype == dtype
    assert np.all(x_adv >= 0.0) and np.all(x_adv <= 1.0)
    tolerance = 4 * np.finfo(dtype).eps * max(1.0, np.sqrt(x[0].size))
    assert np.all(distance(x_adv - x, norm) <= eps + tolerance)
    np.testing.assert_array_equal(np.asarray(apgd(model, x, y, eps=0.0, **options)), x)
