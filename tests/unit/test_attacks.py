"""Attack core on tiny hand-checkable models: exact FGSM values, ball and range invariants,
shapes, seeds, inference mode, tracing, and every documented bad input."""

import numpy as np
import pytest

from attacks import AttackSpec, bim, fgsm, get_attack, loop, mim, norms, pgd, random_noise
from attacks.backend import keras, tf

ATTACKS = {"fgsm": fgsm, "bim": bim, "pgd": pgd, "mim": mim}
W = np.array([[1.0, -2.0, 0.5], [-0.5, 1.0, 2.0]], np.float32)  # 2 inputs -> 3 classes
B = np.array([0.1, 0.0, -0.1], np.float32)


def linear_model():
    """A 2-D linear logits model: logits = x @ W + b, as a Keras 2 model."""
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(3)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([W, B])
    return model


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ce_input_gradient(x, y):
    """d CE / d x for the linear model, by hand: W (p - onehot(y))."""
    p = softmax(x @ W + B)
    p[np.arange(len(y)), y] -= 1.0
    return p @ W.T


X2 = np.array([[0.2, 0.7], [0.5, 0.5], [0.9, 0.1], [0.4, 0.3]], np.float32)
Y2 = np.array([0, 1, 2, 1])


@pytest.fixture(scope="module")
def model():
    return linear_model()


@pytest.mark.parametrize("run_in_function", [False, True])
def test_fgsm_linf_matches_hand_computation(model, run_in_function):
    eps = 0.05
    expected = np.clip(X2 + eps * np.sign(ce_input_gradient(X2, Y2)), 0, 1)
    if run_in_function:
        got = tf.function(lambda x: tf.sign(_tape_grad(model, x, Y2)))(tf.constant(X2)).numpy() * eps + X2
        np.testing.assert_allclose(np.clip(got, 0, 1), expected, atol=1e-6)
    np.testing.assert_allclose(fgsm(model, X2, Y2, eps=eps), expected, atol=1e-6)


def _tape_grad(model, x, y):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x)))
    return tape.gradient(loss, x)


def test_fgsm_l2_matches_hand_computation(model):
    eps = 0.1
    g = ce_input_gradient(X2, Y2)
    expected = np.clip(X2 + eps * g / np.linalg.norm(g, axis=1, keepdims=True), 0, 1)
    np.testing.assert_allclose(fgsm(model, X2, Y2, eps=eps, norm="l2"), expected, atol=1e-6)
    np.testing.assert_allclose(fgsm(model, X2, Y2, eps=eps, norm=2), expected, atol=1e-6)


def test_targeted_fgsm_descends_the_target_loss(model):
    targets = np.array([2, 2, 0, 0])
    expected = np.clip(X2 - 0.05 * np.sign(ce_input_gradient(X2, targets)), 0, 1)
    np.testing.assert_allclose(fgsm(model, X2, targets, eps=0.05, targeted=True), expected, atol=1e-6)


def test_fgsm_inside_tf_function_equals_eager(model):
    # The loop is compiled; the same attack through a model wrapped in tf.function agrees.
    wrapped = tf.function(lambda x: model(x, training=False))
    np.testing.assert_allclose(fgsm(wrapped, X2, Y2, eps=0.05), fgsm(model, X2, Y2, eps=0.05), atol=1e-7)


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_perturbation_stays_in_ball_and_range_and_keeps_dtype(model, name, norm):
    rng = np.random.default_rng(0)
    x = rng.random((64, 2), dtype=np.float32)
    y = rng.integers(0, 3, 64)
    eps = 0.3
    extra = {"seed": 1} if name in ("pgd", "mim") else {}
    x_adv = ATTACKS[name](model, x, y, eps=eps, norm=norm, **extra)
    assert x_adv.dtype == x.dtype and x_adv.shape == x.shape
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("name", list(ATTACKS))
def test_eps_zero_returns_x_exactly(model, name):
    np.testing.assert_array_equal(ATTACKS[name](model, X2, Y2, eps=0.0), X2)


def test_many_epsilons_in_one_call_equal_separate_calls(model):
    epsilons = [0.0, 0.05, 0.2]
    stacked = bim(model, X2, Y2, eps=epsilons, steps=5)
    assert stacked.shape == (3, *X2.shape)
    for index, eps in enumerate(epsilons):
        np.testing.assert_allclose(stacked[index], bim(model, X2, Y2, eps=eps, steps=5), atol=1e-7)


def test_tensor_in_tensor_out_and_float64_kept(model):
    out = fgsm(model, tf.constant(X2), Y2, eps=0.1)
    assert isinstance(out, tf.Tensor) and out.dtype == tf.float32
    out64 = fgsm(model, X2.astype(np.float64), Y2, eps=0.1)
    assert out64.dtype == np.float64


def test_same_seed_same_result_and_different_seed_differs(model):
    x = np.random.default_rng(3).random((32, 2), dtype=np.float32)
    y = np.zeros(32, dtype=np.int64)
    # One short step, so the random start still shows in the result.
    first = pgd(model, x, y, eps=0.2, steps=1, step_size=0.01, seed=7)
    np.testing.assert_array_equal(first, pgd(model, x, y, eps=0.2, steps=1, step_size=0.01, seed=7))
    assert not np.array_equal(first, pgd(model, x, y, eps=0.2, steps=1, step_size=0.01, seed=8))


def test_margin_loss_values_and_callable_loss(model):
    from attacks import margin

    logits = tf.constant([[2.0, 1.0, -1.0], [0.0, 3.0, 0.5]])
    np.testing.assert_allclose(margin(logits, tf.constant([0, 0])).numpy(), [-1.0, 3.0])
    # For this linear model the margin's input gradient is a fixed difference of W columns.
    other = np.argmax(np.where(np.eye(3)[Y2] > 0, -np.inf, X2 @ W + B), axis=1)
    expected = np.clip(X2 + 0.05 * np.sign(W[:, other].T - W[:, Y2].T), 0, 1)
    np.testing.assert_allclose(fgsm(model, X2, Y2, eps=0.05, loss="margin"), expected, atol=1e-6)
    negative_label_logit = lambda z, y: -tf.gather(z, y, batch_dims=1)
    np.testing.assert_allclose(fgsm(model, X2, Y2, eps=0.05, loss=negative_label_logit),
                               np.clip(X2 - 0.05 * np.sign(W[:, Y2].T), 0, 1), atol=1e-6)


def test_targeted_pgd_reaches_the_target(model):
    rng = np.random.default_rng(0)
    x = rng.random((50, 2), dtype=np.float32) * 0.2 + 0.4
    targets = np.full(50, 2)
    x_adv = pgd(model, x, targets, eps=0.5, steps=20, targeted=True, seed=0)
    assert np.mean(np.argmax(model(x_adv).numpy(), 1) == 2) == 1.0


def test_norms_project_and_step():
    delta = tf.constant([[3.0, 4.0], [0.3, -0.1]])
    eps = tf.constant([1.0, 1.0])
    np.testing.assert_allclose(norms.project(delta, eps, "l2").numpy(), [[0.6, 0.8], [0.3, -0.1]], atol=1e-6)
    np.testing.assert_allclose(norms.project(delta, eps, "inf").numpy(), [[1.0, 1.0], [0.3, -0.1]])
    np.testing.assert_allclose(norms.steepest_step(tf.constant([[3.0, -4.0]]), "l2").numpy(), [[0.6, -0.8]])
    np.testing.assert_array_equal(norms.steepest_step(tf.zeros((1, 2)), "l2").numpy(), [[0.0, 0.0]])
    start = norms.random_start(tf.constant([1000, 8]), tf.fill([1000], 0.5), "l2", tf.constant([1, 2], tf.int64), tf.float32)
    lengths = np.linalg.norm(start.numpy(), axis=1)
    assert lengths.max() <= 0.5 + 1e-6 and lengths.mean() > 0.4  # uniform in the 8-D ball
    cube = norms.random_start(tf.constant([1000, 8]), tf.fill([1000], 0.5), "inf", tf.constant([1, 2], tf.int64), tf.float32)
    assert np.abs(cube.numpy()).max() <= 0.5 and np.abs(cube.numpy()).max() > 0.49


def test_dropout_model_is_attacked_in_inference_mode():
    inputs = keras.Input((2,))
    hidden = keras.layers.Dropout(0.9)(keras.layers.Dense(16, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    first = pgd(model, X2, Y2, eps=0.1, steps=5, seed=0)
    np.testing.assert_array_equal(first, pgd(model, X2, Y2, eps=0.1, steps=5, seed=0))
    np.testing.assert_array_equal(fgsm(model, X2, Y2, eps=0.1), fgsm(model, X2, Y2, eps=0.1))


def test_keras3_tf_module_and_plain_function_models():
    import keras as keras3  # Keras 3 on the TensorFlow backend

    inputs = keras3.Input((2,))
    dense = keras3.layers.Dense(3)
    k3 = keras3.Model(inputs, dense(inputs))
    dense.set_weights([W, B])

    class Linear(tf.Module):
        def __call__(self, x):
            return tf.matmul(x, W) + B

    expected = fgsm(linear_model(), X2, Y2, eps=0.05)
    for candidate in (k3, Linear(), lambda x: tf.matmul(x, W) + B):
        np.testing.assert_allclose(fgsm(candidate, X2, Y2, eps=0.05), expected, atol=1e-6)


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


def _probabilities(x):
    return tf.nn.softmax(tf.matmul(x, W))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"x": np.array([[np.nan, 0.1]], np.float32)}, ValueError, "NaN or infinite"),
    ({"x": np.array([[np.inf, 0.1]], np.float32)}, ValueError, "NaN or infinite"),
    ({"x": np.array([[200.0, 3.0]], np.float32)}, ValueError, r"outside clip.*rescale"),
    ({"x": np.array([[1, 0]], np.uint8)}, TypeError, "floating-point.*x / 255"),
    ({"x": np.array([0.1, 0.2], np.float32)}, ValueError, "at least 2 dimensions"),
    ({"y": np.array([0, 1])}, ValueError, r"shape \(1,\)"),
    ({"y": np.array([5])}, ValueError, "label 5 is outside the model's 3 classes"),
    ({"y": np.array([-1])}, ValueError, "labels must be >= 0"),
    ({"y": np.array([0.5])}, TypeError, "integer class labels"),
    ({"eps": -0.1}, ValueError, "eps must be finite and >= 0"),
    ({"eps": float("nan")}, ValueError, "eps must be finite"),
    ({"eps": [0.1, float("inf")]}, ValueError, "eps must be finite"),
    ({"steps": 0}, ValueError, "steps must be an integer >= 1"),
    ({"restarts": 0}, ValueError, "restarts must be an integer >= 1"),
    ({"step_size": -1.0}, ValueError, "step_size must be finite and > 0"),
    ({"norm": "l1"}, ValueError, "unknown norm 'l1'; choose one of"),
    ({"norm": 3}, ValueError, "unknown norm 3"),
    ({"loss": "hinge"}, ValueError, "unknown loss 'hinge'; choose one of: ce, margin"),
    ({"clip": (1.0, 0.0)}, ValueError, "low < high"),
    ({"model": _probabilities}, ValueError, "look like probabilities"),
    ({"model": "not a model"}, TypeError, "model must be callable"),
    ({"seed": 1.5}, TypeError, "seed must be an int"),
    ({"seed": -1}, ValueError, "seed must be >= 0, got -1"),
])
def test_bad_input_raises_the_documented_error(model, kwargs, error, match):
    arguments = {"model": model, "x": np.array([[0.1, 0.2]], np.float32), "y": np.array([0]), "eps": 0.1}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        pgd(arguments.pop("model"), arguments.pop("x"), arguments.pop("y"), **arguments)


def test_clip_none_attacks_unbounded_inputs(model):
    x = np.array([[-3.0, 5.0]], np.float32)
    x_adv = fgsm(model, x, np.array([0]), eps=0.5, clip=None)
    np.testing.assert_allclose(np.abs(x_adv - x), 0.5, atol=1e-6)


def test_attack_spec_round_trip_and_registry(model):
    spec = AttackSpec("pgd", {"steps": 5, "norm": "l2", "seed": 3})
    assert AttackSpec.from_json(spec.to_json()) == spec
    np.testing.assert_array_equal(spec(model, X2, Y2, eps=0.1), pgd(model, X2, Y2, eps=0.1, steps=5, norm="l2", seed=3))
    assert get_attack("mim") is mim
    with pytest.raises(ValueError, match="unknown attack 'cw'; choose one of: fgsm, bim, pgd, mim"):
        AttackSpec("cw")
    with pytest.raises(ValueError, match=r"takes no parameter\(s\) \['restarts'\]"):
        AttackSpec("fgsm", {"restarts": 3})


def test_compiled_loops_per_model_are_bounded():
    model = linear_model()
    for _ in range(loop.MAX_COMPILED_PER_MODEL + 5):  # a fresh lambda each call: a new graph each time
        fgsm(model, X2, Y2, eps=0.1, loss=lambda logits, y: -tf.gather(logits, y, batch_dims=1))
    assert len(loop._COMPILED[model]) == loop.MAX_COMPILED_PER_MODEL


def test_mim_rejects_negative_decay(model):
    with pytest.raises(ValueError, match=r"decay must be in \[0, 10\]"):
        mim(model, X2, Y2, eps=0.1, decay=-0.5)


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


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_random_noise_stays_in_ball_reproduces_and_keeps_the_first_fooling_draw(model, norm):
    rng = np.random.default_rng(0)
    x = rng.random((200, 2), dtype=np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    x_adv = random_noise(model, x, y, eps=[0.0, 0.05, 0.5], norm=norm, draws=5, seed=3)
    assert x_adv.shape == (3, 200, 2) and x_adv.dtype == x.dtype
    np.testing.assert_array_equal(x_adv[0], x)
    delta = x_adv - x
    size = np.abs(delta).max(axis=2) if norm == "inf" else np.linalg.norm(delta, axis=2)
    assert size.max() <= 0.5 + 1e-6 and size[1].max() <= 0.05 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    np.testing.assert_array_equal(random_noise(model, x, y, eps=[0.0, 0.05, 0.5], norm=norm, draws=5, seed=3), x_adv)
    fooled = np.argmax(model.predict(x_adv[2], verbose=0), axis=1) != y
    one_draw = random_noise(model, x, y, eps=[0.0, 0.05, 0.5], norm=norm, draws=1, seed=3)
    single = np.argmax(model.predict(one_draw[2], verbose=0), axis=1) != y
    assert single.sum() > 0 and np.all(fooled[single])  # draw 1 is the first of 5: more draws only add
    with pytest.raises(ValueError, match="draws must be an integer >= 1"):
        random_noise(model, x, y, eps=0.1, draws=0)
    with pytest.raises(ValueError, match="label 7 is outside"):
        random_noise(model, x[:1], np.array([7]), eps=0.1)


def small_cnn(seed=0):
    """A tiny untrained Conv-Dense logits model on 8x8x1 inputs (tf-keras, functional)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(hidden)))


X8 = np.random.default_rng(1).random((40, 8, 8, 1), dtype=np.float32)
Y8 = np.arange(40) % 3


@pytest.mark.parametrize("compute_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["fgsm", "pgd", "mim"])
def test_low_precision_gradients_keep_ball_range_dtype_and_seed(name, compute_dtype):
    model = small_cnn()
    kwargs = {} if name == "fgsm" else {"steps": 4, "seed": 3}
    x_adv = ATTACKS[name](model, X8, Y8, eps=[0.05, 0.2], compute_dtype=compute_dtype, **kwargs)
    assert x_adv.dtype == np.float32 and x_adv.shape == (2, *X8.shape)
    for index, eps in enumerate((0.05, 0.2)):
        assert np.abs(x_adv[index] - X8).max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    again = ATTACKS[name](model, X8, Y8, eps=[0.05, 0.2], compute_dtype=compute_dtype, **kwargs)
    np.testing.assert_array_equal(x_adv, again)
    # Gradients in 16 bits mostly agree in sign with float32 ones: FGSM moves mostly alike.
    if name == "fgsm":
        same = np.sign(x_adv - X8) == np.sign(fgsm(model, X8, Y8, eps=[0.05, 0.2]) - X8)
        assert same.mean() > 0.8


def test_low_precision_copy_computes_in_16_bits_and_follows_weight_changes():
    from attacks import precision

    model = small_cnn()
    copy = precision.compute_model(model, "bfloat16")
    assert copy is not model and copy.layers[-1].compute_dtype == "bfloat16"
    assert copy(X8).dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(copy(X8), tf.float32), model(X8), atol=0.05, rtol=0.05)
    model.set_weights([2.0 * w for w in model.get_weights()])  # e.g. training between attacks
    copy = precision.compute_model(model, "bfloat16")
    np.testing.assert_allclose(tf.cast(copy(X8), tf.float32), model(X8), atol=0.1, rtol=0.05)
    assert precision.compute_model(model, None) is model
    assert precision.compute_model(model, "float32") is model  # already computes in float32


def test_low_precision_copy_of_a_keras3_model():
    import keras as keras3

    inputs = keras3.Input((8, 8, 1))
    k3 = keras3.Model(inputs, keras3.layers.Dense(3)(keras3.layers.Flatten()(inputs)))
    x_adv = pgd(k3, X8, Y8, eps=0.1, steps=3, seed=0, compute_dtype="bfloat16")
    assert np.abs(x_adv - X8).max() <= 0.1 + 1e-6


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.flatten, self.dense = keras.layers.Flatten(), keras.layers.Dense(3)

    def call(self, x):
        return self.dense(self.flatten(x))


@pytest.mark.parametrize("candidate, compute_dtype, match", [
    (small_cnn, "int8", "compute_dtype must be None or one of"),
    (small_cnn, "half", "compute_dtype must be None or one of"),
    (lambda: (lambda x: tf.reduce_sum(x, axis=[1, 2]) * tf.ones([1, 3])), "bfloat16", "needs a Keras model"),
    (_Subclassed, "bfloat16", "could not rebuild _Subclassed"),
])
def test_low_precision_refuses_what_it_cannot_do(candidate, compute_dtype, match):
    with pytest.raises(ValueError, match=match):
        pgd(candidate(), X8, Y8, eps=0.1, steps=2, compute_dtype=compute_dtype)
