"""defenses.bounds: IBP and CROWN-IBP are sound (sampled points lie inside), exact where
they should be (hand-computed numbers), never looser for CROWN-IBP, differentiable, and
refuse what they cannot bound."""

import numpy as np
import pytest

from advrobust import models
from attacks.backend import keras, tf
from defenses import bounds

METHODS = bounds.METHODS
TOLERANCE = 1e-4  # float32 rounding of bounds and model


def _set(model, *weights):
    model.set_weights([np.asarray(w, np.float32) for w in weights])
    return model


def affine_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    return _set(model, [[1, 2], [-3, 4]], [0.5, -1])


def two_neuron_model():
    """z0 = relu(x) + relu(-x) = |x|, z1 = relu(x) - relu(-x) = x."""
    inputs = keras.Input((1,))
    hidden = keras.layers.Dense(2, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    return _set(model, [[1, -1]], [0, 0], [[1, 1], [1, -1]], [0, 0])


def dense_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Rescaling(2.0, offset=-1.0),
                             keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.5),
                             keras.layers.Dense(8), keras.layers.ReLU(), keras.layers.Dense(4)])


def conv_model(seed=0):
    """Both kinds of max-pool: disjoint windows (decided windows are used; the 9th row and
    column are dropped) and overlapping ones; a strided convolution."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((9, 9, 2))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(6, 2, strides=2)(h)
    h = keras.layers.Activation("relu")(h)
    h = keras.layers.MaxPooling2D(2, strides=1, padding="same")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(10, activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


def odd_conv_model(seed=0):
    """A stride that drops the last row and column, and a dilated 'same' convolution."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((7, 7, 1)), keras.layers.Conv2D(2, 2, strides=2, activation="relu"),
                             keras.layers.Conv2D(2, 3, dilation_rate=2, padding="same"), keras.layers.Flatten(),
                             keras.layers.Dense(2)])


def tiled_pool_model(seed=0):
    """Max-pool windows that tile their input exactly, as in the reference CNN: the
    backward step spreads its coefficients over the windows instead of scattering them."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                             keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(3)])


def resize_model(seed=0):
    """Resizing up (bilinear, non-negative weights) and down (bicubic, some negative)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((7, 7, 1)), keras.layers.Resizing(10, 10),
                             keras.layers.Conv2D(3, 3, activation="relu"),
                             keras.layers.Resizing(5, 6, interpolation="bicubic"), keras.layers.Flatten(),
                             keras.layers.Dense(3)])


MODELS = {"dense": dense_model, "conv": conv_model, "odd_conv": odd_conv_model, "tiled_pool": tiled_pool_model,
          "resize": resize_model}


def test_the_network_computes_what_the_model_computes():
    x = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    for model in (models.build("cnn", dropout=True, width=1, seed=0), models.build("cnn", width=2, seed=0),
                  conv_model()):
        x_model = x if model.input_shape[1:] == (28, 28, 1) else x[:, :9, :9, :1].repeat(2, axis=3)
        np.testing.assert_allclose(bounds.network(model).forward(x_model).numpy(), model(x_model).numpy(),
                                   atol=1e-4)
    assert [type(op).__name__ for op in bounds.network(models.build("cnn", seed=0)).ops] == \
        ["_Conv", "_Relu", "_Conv", "_Relu", "_MaxPool", "_Flatten", "_Dense", "_Relu", "_Dense"]


INTERPOLATIONS = ["bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic"]


@pytest.mark.parametrize("crop", [False, True], ids=["stretch", "crop"])
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_a_resizing_layer_is_read_as_the_linear_map_it_computes(interpolation, crop):
    layer = keras.layers.Resizing(9, 6, interpolation=interpolation, crop_to_aspect_ratio=crop)
    model = keras.Sequential([keras.Input((7, 11, 2)), layer, keras.layers.Flatten(), keras.layers.Dense(2)])
    net = bounds.network(model)
    x = np.random.default_rng(0).random((4, 7, 11, 2), dtype=np.float32)
    np.testing.assert_allclose(net.forward(x).numpy(), model(x).numpy(), atol=1e-5)
    # the resize alone: interval arithmetic through it holds the layer's output of the box's points
    resize = net.ops[0]
    lower, upper = resize.interval(tf.constant(x - 0.1), tf.constant(x + 0.1))
    inside = layer((x + np.random.default_rng(1).uniform(-0.1, 0.1, x.shape)).astype(np.float32))
    assert np.all(inside.numpy() >= lower.numpy() - TOLERANCE) and np.all(inside.numpy() <= upper.numpy() + TOLERANCE)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("method", METHODS)
def test_an_affine_model_is_bounded_exactly(method, compiled):
    net = bounds.network(affine_model())
    x = np.array([[0.5, 0.5]], np.float32)

    def logits(*args, **kwargs):
        return tf.function(lambda: bounds.logit_bounds(*args, **kwargs), autograph=False)() if compiled \
            else bounds.logit_bounds(*args, **kwargs)

    def margins(*args, **kwargs):
        return tf.function(lambda: bounds.margin_lower_bounds(*args, **kwargs), autograph=False)() if compiled \
            else bounds.margin_lower_bounds(*args, **kwargs)

    lower, upper = logits(net, x, 0.1, method=method)
    # z = x W + b = (-0.5, 2); radii 0.1 * (|1| + |-3|) = 0.4 and 0.1 * (2 + 4) = 0.6.
    np.testing.assert_allclose(lower.numpy(), [[-0.9, 1.4]], atol=1e-6)
    np.testing.assert_allclose(upper.numpy(), [[-0.1, 2.6]], atol=1e-6)
    # z1 - z0 = x . (1, 7) - 1.5: 2.5 at x, minus 0.1 * (1 + 7); not 1.4 - (-0.1) = 1.5.
    np.testing.assert_allclose(margins(net, x, np.array([1]), 0.1, method=method).numpy(), [[1.7, 0.0]], atol=1e-6)
    # L2: 2.5 - 0.1 * |(1, 7)|_2.
    l2 = margins(net, x, np.array([1]), 0.1, method=method, norm="l2").numpy()
    np.testing.assert_allclose(l2, [[2.5 - 0.1 * np.sqrt(50), 0.0]], atol=1e-6)


def test_two_relu_neurons_have_the_hand_derived_bounds():
    net = bounds.network(two_neuron_model())
    x, eps = np.array([[0.5]], np.float32), 1.5  # x' in [-1, 2], no clip
    lower, upper = bounds.logit_bounds(net, x, eps, method="ibp", clip=None)
    # h1 = relu(x) in [0, 2], h2 = relu(-x) in [0, 1].
    np.testing.assert_allclose(lower.numpy(), [[0.0, -1.0]], atol=1e-6)
    np.testing.assert_allclose(upper.numpy(), [[3.0, 2.0]], atol=1e-6)
    lower, upper = bounds.logit_bounds(net, x, eps, method="crown_ibp", clip=None)
    # CROWN: 1*x <= h1 <= 2/3 (x + 1) (u > -l), 0 <= h2 <= 1/3 (2 - x) (u < -l).
    # z0 <= (x + 4) / 3 <= 2 (exact; IBP 3); z1 <= 2/3 (x + 1) <= 2. The lower bounds of
    # CROWN alone, x >= -1 for z0 and (4x - 2) / 3 >= -2 for z1, are looser than IBP's 0
    # and -1, so the elementwise maximum keeps IBP's.
    np.testing.assert_allclose(lower.numpy(), [[0.0, -1.0]], atol=1e-6)
    np.testing.assert_allclose(upper.numpy(), [[2.0, 2.0]], atol=1e-6)
    for method in METHODS:  # z1 - z0 = -2 relu(-x), at least -2: exact for both
        margins = bounds.margin_lower_bounds(net, x, np.array([1]), eps, method=method, clip=None)
        np.testing.assert_allclose(margins.numpy(), [[-2.0, 0.0]], atol=1e-6)


def _samples(x, eps, norm, clip, count, rng):
    """``count`` points of the set: half at random vertices (L-inf) or on the sphere (L2)."""
    shape = (count, *x.shape[1:])
    if norm == "inf":
        uniform = rng.uniform(-eps, eps, shape)
        uniform[: count // 2] = eps * np.sign(uniform[: count // 2])
        points = x + uniform
        return (np.clip(points, *clip) if clip else points).astype(np.float32)
    direction = rng.standard_normal(shape)
    direction /= np.linalg.norm(direction.reshape(count, -1), axis=1).reshape(-1, *[1] * (len(shape) - 1))
    scale = rng.uniform(0, 1, count) ** (1 / np.prod(x.shape[1:]))
    scale[: count // 2] = 1.0
    return (x + eps * direction * scale.reshape(-1, *[1] * (len(shape) - 1))).astype(np.float32)


CASES = [("dense", "inf", 0.1), ("dense", "l2", 0.3), ("conv", "inf", 0.05), ("conv", "l2", 0.3),
         ("tiled_pool", "inf", 0.05), ("resize", "inf", 0.05), ("resize", "l2", 0.3)]


@pytest.mark.parametrize("kind, norm, eps", CASES, ids=[f"{k}-{n}" for k, n, _ in CASES])
def test_sampled_points_lie_inside_the_bounds(kind, norm, eps):
    rng = np.random.default_rng(1)
    model = MODELS[kind]()
    net = bounds.network(model)
    clip = (0.0, 1.0) if norm == "inf" else None
    x = rng.random((1, *model.input_shape[1:]), dtype=np.float32)
    y = np.array([int(np.argmax(model(x)))])
    points = _samples(x, eps, norm, clip, 10_000, rng)
    logits = model.predict(points, batch_size=2500, verbose=0)
    margins = logits[:, y[0]][:, None] - logits
    for method in METHODS:
        lower, upper = bounds.logit_bounds(net, x, eps, method=method, norm=norm, clip=clip)
        assert np.all(logits >= lower.numpy() - TOLERANCE) and np.all(logits <= upper.numpy() + TOLERANCE), method
        margin_lower = bounds.margin_lower_bounds(net, x, y, eps, method=method, norm=norm, clip=clip).numpy()
        assert np.all(margins >= margin_lower - TOLERANCE), method


def _points_in(lower, upper, count, rng):
    """``count`` points of the box [lower, upper] (1, ...): half of them vertices."""
    t = rng.uniform(0, 1, (count, *lower.shape[1:]))
    t[: count // 2] = np.round(t[: count // 2])
    return (lower + t * (upper - lower)).astype(np.float32)


@pytest.mark.parametrize("kind", MODELS)
def test_each_backward_step_is_a_linear_lower_bound_of_its_layer(kind):
    """For every op and random coefficients A: A . op(z) >= A' . z + offset on the op's input
    box, with equality for affine ops; the ReLU and max-pool relaxations are tested alone,
    where no looseness elsewhere can hide a wrong sign."""
    rng = np.random.default_rng(4)
    model = MODELS[kind](seed=5)
    net = bounds.network(model)
    x = rng.random((1, *model.input_shape[1:]), dtype=np.float32)
    boxes = bounds.interval_bounds(net, x, 0.05)
    for op, (lower, upper), (out, _) in zip(net.ops, boxes, boxes[1:]):
        coef = tf.constant(rng.standard_normal((1, 2, *out.shape[1:])), tf.float32)
        coef_in, offset = op.backward(coef, lower, upper)
        z = _points_in(lower.numpy(), upper.numpy(), 2000, rng)
        exact = np.einsum("sj,nj->ns", coef.numpy()[0].reshape(2, -1), op.forward(z).numpy().reshape(2000, -1))
        linear = np.einsum("sj,nj->ns", coef_in.numpy()[0].reshape(2, -1), z.reshape(2000, -1)) + offset.numpy()
        assert np.all(exact >= linear - TOLERANCE), op.name
        if isinstance(op, bounds._Affine):
            np.testing.assert_allclose(exact, linear, atol=TOLERANCE, err_msg=op.name)


def test_a_decided_max_pool_window_is_bounded_exactly():
    """max(a, b) with a in [0.5, 0.7] >= b in [0.1, 0.5]: the window is decided, so
    -max(a, b) = -a, bounded below by -0.7 and above by -0.5 (IBP: the same here) and,
    unlike an undecided window, linearly: the backward step puts all weight on a."""
    model = keras.Sequential([keras.Input((1, 2, 1)), keras.layers.MaxPooling2D((1, 2)), keras.layers.Flatten(),
                              keras.layers.Dense(1, use_bias=False)])
    _set(model, [[-1.0]])
    pool = bounds.network(model).ops[0]
    lower, upper = tf.constant([[[[0.5], [0.1]]]]), tf.constant([[[[0.7], [0.5]]]])
    coef_in, offset = pool.backward(tf.constant([[[[[-1.0]]]]]), lower, upper)
    np.testing.assert_allclose(coef_in.numpy().ravel(), [-1.0, 0.0])
    np.testing.assert_allclose(offset.numpy(), [[0.0]])
    coef_in, offset = pool.backward(tf.constant([[[[[-1.0]]]]]), lower, upper + 0.1)  # b up to 0.6: undecided
    np.testing.assert_allclose(coef_in.numpy().ravel(), [0.0, 0.0])
    np.testing.assert_allclose(offset.numpy(), [[-0.8]], rtol=1e-6)


def test_where_windows_tile_the_spread_places_coefficients_as_the_scatter_does():
    rng = np.random.default_rng(6)
    pool = bounds.network(tiled_pool_model()).ops[2]
    assert isinstance(pool, bounds._MaxPool)
    lower = tf.constant(rng.standard_normal((2, 8, 8, 4)), tf.float32)
    lower_max, argmax = tf.nn.max_pool_with_argmax(lower, 2, 2, "VALID")
    chosen = pool._scatter(tf.ones_like(lower_max)[:, None], argmax, lower)[:, 0] > 0
    coef = tf.constant(rng.standard_normal((2, 3, 4, 4, 4)), tf.float32)
    decided = tf.constant(rng.integers(0, 2, (2, 4, 4, 4)), tf.float32)
    upper_max = tf.constant(rng.standard_normal((2, 4, 4, 4)), tf.float32)
    assert pool._tiles(lower) and not bounds.network(conv_model()).ops[2]._tiles(tf.zeros((1, 9, 9, 4)))
    spread, spread_offset = bounds._pool_spread_backward(coef, decided, upper_max, chosen, pool.pool_size)
    on_argmax, offset = bounds._pool_backward(coef, decided, upper_max)
    np.testing.assert_array_equal(spread.numpy(), pool._scatter(on_argmax, argmax, lower).numpy())
    np.testing.assert_allclose(spread_offset.numpy(), offset.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["dense", "conv", "tiled_pool", "resize"])
def test_crown_ibp_is_never_looser_than_ibp_and_tighter_somewhere(kind):
    rng = np.random.default_rng(2)
    model = MODELS[kind](seed=3)
    net = bounds.network(model)
    x = rng.random((16, *model.input_shape[1:]), dtype=np.float32)
    y = rng.integers(0, net.num_classes, 16)
    for eps in (0.01, 0.05):
        ibp = bounds.margin_lower_bounds(net, x, y, eps, method="ibp").numpy()
        crown = bounds.margin_lower_bounds(net, x, y, eps, method="crown_ibp").numpy()
        assert np.all(crown >= ibp)
        assert np.mean(crown > ibp + 1e-6) > 0.5


@pytest.mark.parametrize("method", METHODS)
def test_margins_are_the_full_margin_spec_s_bounds_with_the_label_s_row_skipped(method):
    rng = np.random.default_rng(4)
    model = conv_model(seed=1)
    net = bounds.network(model)
    x = rng.random((12, *model.input_shape[1:]), dtype=np.float32)
    y = np.arange(12) % net.num_classes  # every label, first and last class included
    full = bounds.spec_lower_bounds(net, x, 0.03, bounds.margin_spec(y, net.num_classes), method=method).numpy()
    full[np.arange(12), y] = 0.0
    margins = bounds.margin_lower_bounds(net, x, y, 0.03, method=method).numpy()
    np.testing.assert_allclose(margins, full, rtol=1e-5, atol=1e-5)


def test_bounds_are_differentiable_in_the_weights():
    model = conv_model()
    net = bounds.network(model)
    x = np.random.default_rng(0).random((4, 9, 9, 2), dtype=np.float32)
    y = np.array([0, 1, 2, 0])
    with tf.GradientTape() as tape:
        margins = bounds.margin_lower_bounds(net, x, y, 0.02, method="crown_ibp")
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, -margins, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    assert all(np.any(g.numpy() != 0) for g in grads)


def test_a_float64_network_follows_its_model_s_training():
    model = dense_model()
    net = bounds.network(model, dtype="float64")
    x = np.random.default_rng(0).random((3, 6))
    model.layers[1].kernel.assign(model.layers[1].kernel * 2.0)  # the first Dense, after Rescaling
    np.testing.assert_allclose(net.forward(x).numpy(), model(x).numpy(), atol=1e-5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(bounds.margin_lower_bounds(net, x, np.array([0, 1, 2]), 0.1, method="ibp"))
    assert net.forward(x).dtype == tf.float64
    assert all(g is not None for g in tape.gradient(loss, model.trainable_variables))


def test_eps_zero_bounds_are_the_logits_and_certified_means_correct():
    model = conv_model()
    net = bounds.network(model)
    x = np.random.default_rng(3).random((8, 9, 9, 2), dtype=np.float32)
    logits = model(x).numpy()
    for method in METHODS:
        lower, upper = bounds.logit_bounds(net, x, 0.0, method=method)
        np.testing.assert_allclose(lower.numpy(), logits, atol=1e-5)
        np.testing.assert_allclose(upper.numpy(), logits, atol=1e-5)
    labels = np.argmax(logits, axis=1)
    wrong = (labels + 1) % 3
    margins = bounds.margin_lower_bounds(net, x, labels, 0.0)
    assert np.all(bounds.certified(margins, labels).numpy())
    assert not np.any(bounds.certified(bounds.margin_lower_bounds(net, x, wrong, 0.0), wrong).numpy())


def _with(layer, input_shape=(4, 4, 1)):
    return keras.Sequential([keras.Input(input_shape), layer, keras.layers.Flatten(), keras.layers.Dense(2)])


REFUSED = {
    "tanh": (_with(keras.layers.Dense(3, activation="tanh", name="squash"), (3,)), ["'squash'", "Dense", "tanh"]),
    "batchnorm": (_with(keras.layers.BatchNormalization(name="bn")), ["'bn'", "BatchNormalization"]),
    "resizing_of_any_size": (_with(keras.layers.Resizing(8, 8, name="resize"), (None, None, 1)),
                             ["'resize'", "Resizing", "fixed height and width"]),
    "leaky": (_with(keras.layers.LeakyReLU(name="leaky")), ["'leaky'", "LeakyReLU"]),
    "relu6": (_with(keras.layers.ReLU(max_value=6.0, name="six")), ["'six'", "ReLU", "max_value"]),
    "sigmoid": (_with(keras.layers.Activation("sigmoid", name="act")), ["'act'", "Activation", "sigmoid"]),
    "avgpool": (_with(keras.layers.AveragePooling2D(name="avg")), ["'avg'", "AveragePooling2D"]),
    "transpose": (_with(keras.layers.Conv2DTranspose(2, 2, name="up")), ["'up'", "Conv2DTranspose"]),
}


@pytest.mark.parametrize("name", REFUSED)
def test_an_unsupported_layer_is_refused_by_name(name):
    model, words = REFUSED[name]
    with pytest.raises(ValueError) as error:
        bounds.network(model)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_models_that_are_not_a_single_keras_2_chain_are_refused():
    inputs = keras.Input((3,))
    residual = keras.layers.Add(name="add")([keras.layers.Dense(3)(inputs), inputs])
    with pytest.raises(ValueError, match="single chain.*'add' \\(Add\\)"):
        bounds.network(keras.Model(inputs, keras.layers.Dense(2)(residual)))

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="Sequential or functional"):
        bounds.network(Subclassed())
    with pytest.raises(ValueError, match="not built"):
        bounds.network(keras.Sequential([keras.layers.Dense(2)]))


def test_a_nested_model_is_read_through():
    inner = dense_model()
    inputs = keras.Input((6,))
    functional = keras.Model(inputs, keras.layers.Activation("linear")(inner(inputs)))  # Sequential in functional
    outer_inputs = keras.Input((6,))
    nested_twice = keras.Model(outer_inputs, functional(outer_inputs))  # functional in functional
    x = np.random.default_rng(0).random((3, 6), dtype=np.float32)
    for model in (keras.Sequential([keras.Input((6,)), inner]), functional, nested_twice):
        np.testing.assert_allclose(bounds.network(model).forward(x).numpy(), inner(x).numpy(), atol=1e-6)


def test_unknown_method_and_norm_are_refused():
    net = bounds.network(affine_model())
    x = np.zeros((1, 2), np.float32)
    with pytest.raises(ValueError, match="method 'crown'"):
        bounds.margin_lower_bounds(net, x, np.array([0]), 0.1, method="crown")
    with pytest.raises(ValueError, match="norm 'l1'"):
        bounds.margin_lower_bounds(net, x, np.array([0]), 0.1, norm="l1")
