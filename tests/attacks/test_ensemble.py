"""The worst-case ensemble (attacks/ensemble.py): at least as strong as each member, verdicts
that agree with the points, exact pass counts, masked models it sees through, seeds, the
K-epsilon form, input errors, and a cross-check against ART's AutoAttack.

Budgets are reduced through ``attacks=`` (the presets' 100 steps and 5000 queries take
minutes on a CPU); the claims are those of the full presets, at a smaller scale."""

import numpy as np
import pytest

from attacks import apgd, autoattack, get_attack, pgd
from attacks.backend import keras, tf
from attacks.ensemble import PRESETS, EnsembleResult, counting_model, worst_case
from tests.attacks.conftest import assert_refuses_like_pgd, probabilities

EPS = 0.15  # L-inf, on MNIST: the fixture's CNN keeps about 16% of its points at this radius
N = 50  # of the fixture's test images
NOISE_GAP = 0.04
SMALL = (("apgd-ce", "apgd", {"loss": "ce", "steps": 10}),
         ("apgd-t", "apgd", {"loss": "dlr", "targeted": True, "target_classes": 2, "steps": 10}),
         ("square", "square", {"queries": 50}))


def predictions(model, x):
    return np.argmax(np.asarray(model(tf.constant(x))), axis=1)


def robust_accuracy(model, x_adv, y):
    return float(np.mean(predictions(model, x_adv) == y))


def assert_consistent(result: EnsembleResult, model, x, y, eps, labels):
    """broken_by agrees with the points; every point is in the ball and the range."""
    delta = np.abs(result.x_adv - x).reshape(len(x), -1).max(axis=1)
    assert delta.max() <= eps + 1e-6 and result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    predicted = predictions(model, result.x_adv)
    clean = predictions(model, x) != y
    np.testing.assert_array_equal(result.broken_by == "clean", clean)
    np.testing.assert_array_equal(result.robust, result.broken_by == None)  # noqa: E711 (elementwise)
    assert np.all(predicted[result.robust] == y[result.robust])
    assert np.all(predicted[~result.robust] != y[~result.robust])
    assert set(result.broken_by[~result.robust]) <= {"clean", *labels}
    np.testing.assert_array_equal(result.x_adv[result.robust], x[result.robust])
    accuracies = [accuracy for _, accuracy in result.per_attack]
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies[-1] == pytest.approx(result.robust.mean())


@pytest.fixture(scope="module")
def cnn(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    return model, x[:N], y[:N]


@pytest.fixture(scope="module")
def small_run(cnn):
    model, x, y = cnn
    return worst_case(model, x, y, eps=EPS, attacks=SMALL, seed=0)


def test_presets_are_autoattack_sets(linear4):
    assert [label for label, _, _ in PRESETS["standard"]] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert [name for _, name, _ in PRESETS["standard"]] == ["apgd", "apgd", "fab", "square"]
    assert PRESETS["standard"][3][2]["queries"] == 5000
    assert all(params["steps"] == 100 for _, name, params in PRESETS["standard"] if name != "square")
    assert all(params["eot"] == 20 for _, _, params in PRESETS["rand"])
    for preset in PRESETS:  # every member and parameter is accepted (checked on an empty batch)
        empty = worst_case(linear4, np.zeros((0, 2), np.float32), np.zeros(0, np.int64), eps=0.1, preset=preset)
        assert [label for label, _ in empty.per_attack] == [label for label, _, _ in PRESETS[preset]]


def test_ensemble_is_consistent_and_at_least_as_strong_as_each_member(cnn, small_run):
    model, x, y = cnn
    assert_consistent(small_run, model, x, y, EPS, ["apgd-ce", "apgd-t", "square"])
    for label, name, params in SMALL:
        alone = robust_accuracy(model, get_attack(name)(model, x, y, eps=EPS, seed=1, **params), y)
        assert small_run.robust_accuracy <= alone, label
    assert small_run.robust_accuracy < small_run.per_attack[0][1] + 1e-9


def test_the_standard_members_at_reduced_budgets(cnn):
    """APGD-CE, APGD-T, FAB-T and Square as in ``standard``, with 5 steps, 2 targets and 50
    queries: consistent verdicts, never weaker than the first member."""
    model, x, y = cnn
    x, y = x[:12], y[:12]
    members = [(label, name, {**params, **({"queries": 50} if name == "square" else {"steps": 5}),
                              **({"target_classes": 2} if "target_classes" in params else {})})
               for label, name, params in PRESETS["standard"]]
    result = worst_case(model, x, y, eps=EPS, attacks=members, seed=0)
    assert_consistent(result, model, x, y, EPS, [label for label, _, _ in members])
    assert [label for label, _ in result.per_attack] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert result.robust_accuracy <= result.per_attack[0][1]


def test_passes_are_counted_per_image(cnn, small_run):
    """Square takes no gradient; APGD one per step; the forward count covers every call."""
    _, x, _ = cnn
    by_label = {label: (forward, backward) for label, forward, backward in small_run.passes_by_attack}
    assert by_label["square"][1] == 0 and by_label["square"][0] > 0
    assert 0 < by_label["apgd-ce"][1] <= 11 * 1.0 + 1e-9  # start + 10 steps, at most, per image
    assert small_run.backward_passes == pytest.approx(sum(b for _, _, b in small_run.passes_by_attack))
    clean = 1 + 16 / len(x)  # the clean predictions and the 16-image probe of the model
    assert small_run.forward_passes == pytest.approx(sum(f for _, f, _ in small_run.passes_by_attack) + clean)


def test_counting_is_exact_on_a_known_run(linear4):
    """One APGD step on 4 points: the start and one step, forward and backward, then the verdict."""
    model, x = linear4, np.array([[0.2, 0.7], [0.5, 0.5], [0.9, 0.1], [0.4, 0.3]], np.float32)
    y = np.argmax(model(x).numpy(), axis=1)
    result = worst_case(model, x, y, eps=1e-4, attacks=[("one", "apgd", {"steps": 1})], seed=0)
    assert result.robust.all()
    # probe (4) + clean (4) + apgd's probe (4), clean logits (4), start (4), step (4) + verdict (4)
    assert result.forward_passes == 28 / 4
    assert result.backward_passes == 2.0
    counted = counting_model(model)  # the wrapper the run used, differentiated from outside as ART does
    before = counted.counts()
    compiled = tf.function(counted, input_signature=[tf.TensorSpec((None, 2), tf.float32)])
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        total = tf.reduce_sum(compiled(inputs))
    tape.gradient(total, inputs)
    assert np.subtract(counted.counts(), before).tolist() == [4, 4]


def test_a_bfloat16_search_keeps_the_float32_verdicts(cnn, small_run):
    """compute_dtype: the members search on a bfloat16 copy, yet every verdict is the
    model's own (assert_consistent predicts with the float32 model); the search finds about
    as much as the float32 one, its passes are counted, and a seed repeats it."""
    model, x, y = cnn
    low = worst_case(model, x, y, eps=EPS, attacks=SMALL, seed=0, compute_dtype="bfloat16")
    assert_consistent(low, model, x, y, EPS, [label for label, _, _ in SMALL])
    assert abs(low.robust_accuracy - small_run.robust_accuracy) <= 3 / N
    by_label = {label: (forward, backward) for label, forward, backward in low.passes_by_attack}
    assert by_label["apgd-ce"][1] > 0 and by_label["square"][0] > 0
    assert low.forward_passes == pytest.approx(small_run.forward_passes, rel=0.25)
    again = worst_case(model, x, y, eps=EPS, attacks=SMALL, seed=0, compute_dtype="bfloat16")
    np.testing.assert_array_equal(again.x_adv, low.x_adv)


def test_a_point_only_the_bfloat16_copy_misclassifies_is_searched_again_in_float32():
    """Logits 1.0 and 1.002 tie in bfloat16 (its spacing near 1 is 2**-7), so the copy
    misclassifies the clean point while the model does not: the member runs again with the
    model itself (its gradients are counted there) and the point stays robust."""
    inputs = keras.Input((1,))
    dense = keras.layers.Dense(4)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.array([[1.0, 1.002, 0.0, -1.0]], np.float32), np.zeros(4, np.float32)])
    x, y = np.ones((1, 1), np.float32), np.array([1])
    counted = counting_model(model)
    before = counted.counts()
    result = worst_case(model, x, y, eps=1e-4, attacks=[("a", "apgd", {"steps": 2})], seed=0,
                        compute_dtype="bfloat16")
    assert result.robust.tolist() == [True]
    assert counted.counts()[1] - before[1] > 0  # the float32 model was differentiated: the retry ran


def test_same_seed_same_result_and_k_epsilons_equal_k_calls(cnn):
    model, x, y = cnn
    x, y = x[:12], y[:12]
    members = SMALL[:1]
    first, second = (worst_case(model, x, y, eps=EPS, attacks=members, seed=3) for _ in range(2))
    np.testing.assert_array_equal(first.x_adv, second.x_adv)
    np.testing.assert_array_equal(first.broken_by, second.broken_by)
    batched = autoattack(model, x, y, eps=[0.05, EPS], attacks=members, seed=3)
    assert batched.shape == (2, *x.shape)
    np.testing.assert_array_equal(batched[1], first.x_adv)
    np.testing.assert_array_equal(batched[0], autoattack(model, x, y, eps=0.05, attacks=members, seed=3))


def test_scaled_logits_mask_cross_entropy_but_not_the_ensemble(cnn, small_run):
    """Logits x 1e4: softmax saturates, cross-entropy gradients vanish in float32; the
    targeted DLR loss is scale-invariant and breaks the model as before. APGD-T runs over
    the standard preset's 9 target classes: with only 2 (SMALL's), APGD-T alone left 18%
    of the masked model's points against the unmasked ensemble's 14% on one CPU type."""
    model, x, y = cnn

    def scaled(batch):
        return model(batch, training=False) * 1e4

    assert robust_accuracy(scaled, pgd(scaled, x, y, eps=EPS, steps=10, seed=0), y) >= \
        small_run.robust_accuracy + 0.5
    targets = ("apgd-t", "apgd", {**SMALL[1][2], "target_classes": 9})
    result = worst_case(scaled, x, y, eps=EPS, attacks=(SMALL[0], targets), seed=0)
    assert result.per_attack[0][1] >= small_run.robust_accuracy + 0.5  # APGD-CE is fooled too
    assert result.robust_accuracy <= small_run.robust_accuracy + 0.03


def test_a_quantizer_with_zero_gradient_is_seen_through_by_square(cnn):
    """Inputs rounded to 1/255 (gradient zero): gradient attacks stay at their start, Square
    does not need gradients."""
    model, x, y = cnn

    def quantized(batch):
        return model(tf.round(batch * 255.0) / 255.0 + 0.0 * batch, training=False)

    eps = 0.25
    reference = worst_case(model, x, y, eps=eps, attacks=SMALL[:2], seed=0).robust_accuracy
    assert robust_accuracy(quantized, pgd(quantized, x, y, eps=eps, steps=10, seed=0), y) >= reference + 0.5
    result = worst_case(quantized, x, y, eps=eps, attacks=[("square", "square", {"queries": 400})], seed=0)
    assert result.robust_accuracy <= reference + 0.03


def test_random_input_noise_is_seen_through_by_expectation(cnn, small_run):
    """Uniform input noise (+-0.5, seeded): PGD-CE on single draws stops at points a lucky
    draw misclassified; the expectation over draws (the ``rand`` preset's EOT) pushes past
    them, to the unmasked model's level."""
    model, x, y = cnn
    draws = tf.random.Generator.from_seed(0)

    def noisy(batch):
        return model(tf.clip_by_value(batch + draws.uniform(tf.shape(batch), -0.5, 0.5), 0.0, 1.0),
                     training=False)

    single = robust_accuracy(noisy, pgd(noisy, x, y, eps=EPS, steps=10, seed=0), y)
    # the rand preset's members on the ensemble's mean-logits model (eot), and on APGD's own
    # AutoAttack-style EOT, the mean of the draws' losses and gradients (eot_iter)
    for expectation in ("eot", "eot_iter"):
        members = [(f"apgd-{loss}", "apgd", {"loss": loss, "steps": 10, expectation: 10}) for loss in ("ce", "dlr")]
        result = worst_case(noisy, x, y, eps=EPS, attacks=members, seed=0)
        assert result.robust_accuracy <= small_run.robust_accuracy + 0.03, expectation
        assert single >= result.robust_accuracy + NOISE_GAP, expectation
        assert result.backward_passes >= 10 * 10 * small_run.robust_accuracy, expectation  # every draw counted


def test_unknown_preset_and_bad_members_are_refused(linear4):
    model = linear4
    x, y = np.zeros((2, 2), np.float32), np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="unknown preset 'quick'; choose one of: standard, fast, rand"):
        worst_case(model, x, y, eps=0.1, preset="quick")
    with pytest.raises(ValueError, match="unknown attack 'nope'"):
        worst_case(model, x, y, eps=0.1, attacks=["nope"])
    with pytest.raises(ValueError, match=r"takes no parameter\(s\) \['stepz'\]"):
        worst_case(model, x, y, eps=0.1, attacks=[("a", "apgd", {"stepz": 3})])
    with pytest.raises(ValueError, match=r"sets \['eps'\] itself"):
        worst_case(model, x, y, eps=0.1, attacks=[("a", "apgd", {"eps": 3})])
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        worst_case(model, x, y, eps=0.1, attacks=[("a", "apgd", {"steps": 0})])
    with pytest.raises(ValueError, match="labels must be distinct"):
        worst_case(model, x, y, eps=0.1, attacks=["apgd", "apgd"])
    with pytest.raises(ValueError, match="takes one eps"):
        worst_case(model, x, y, eps=[0.1, 0.2], attacks=["apgd"])
    with pytest.raises(TypeError, match="a \\(label, name, params\\) triple"):
        worst_case(model, x, y, eps=0.1, attacks=[("a", "apgd")])
    with pytest.raises(ValueError, match="compute_dtype must be None or one of"):
        worst_case(model, x, y, eps=0.1, attacks=["apgd"], compute_dtype="int8")
    with pytest.raises(ValueError, match="compute_dtype needs a Keras model"):
        worst_case(lambda batch: model(batch), x, y, eps=0.1, attacks=["apgd"], compute_dtype="bfloat16")


@pytest.mark.parametrize("arguments", [
    {"x": np.zeros((2, 2), np.int64), "y": np.zeros(2, np.int64)},
    {"x": np.full((2, 2), 2.0, np.float32), "y": np.zeros(2, np.int64)},
    {"x": np.zeros((2, 2), np.float32), "y": np.zeros(3, np.int64)},
    {"x": np.zeros((2, 2), np.float32), "y": np.zeros(2, np.int64), "eps": -1.0},
    {"x": np.zeros((2, 2), np.float32), "y": np.zeros(2, np.int64), "seed": -1},
], ids=["integer-x", "outside-clip", "label-count", "negative-eps", "negative-seed"])
def test_autoattack_refuses_bad_input_like_pgd(linear4, arguments):
    assert_refuses_like_pgd(autoattack, {"model": linear4, **arguments})


def test_probabilities_are_refused():
    x, y = np.full((2, 2), 0.5, np.float32), np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="look like probabilities"):
        worst_case(probabilities, x, y, eps=0.1, attacks=["apgd"])


def test_empty_batch_and_tensor_in_tensor_out(linear4):
    empty = worst_case(lambda batch: (_ for _ in ()).throw(AssertionError("called")),
                       np.zeros((0, 2), np.float32), np.zeros(0, np.int64), eps=0.1, attacks=["apgd"])
    assert empty.x_adv.shape == (0, 2) and empty.robust.shape == (0,) and empty.forward_passes == 0
    x = tf.constant([[0.2, 0.7], [0.5, 0.5]])
    out = autoattack(linear4, x, np.array([2, 2]), eps=[0.01, 0.02], attacks=["apgd"], seed=0)
    assert isinstance(out, tf.Tensor) and out.shape == (2, 2, 2)


@pytest.fixture(scope="module")
def linear4():
    """A 2-D linear logits model with 4 classes (targeted DLR needs at least 4)."""
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(4)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.array([[1.0, -2.0, 0.5, 0.2], [-0.5, 1.0, 2.0, -0.3]], np.float32), np.zeros(4, np.float32)])
    return model


def art_autoattack(model, x, y, *, eps, steps, queries, seed=0):
    """ART 1.20.1's AutoAttack with reduced budgets: APGD-CE, APGD-DLR, Square (one restart each)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PyTorch not found", category=UserWarning)
        from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, SquareAttack
        from art.estimators.classification import TensorFlowV2Classifier

    logits = tf.function(lambda batch: model(batch, training=False),
                         input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.float32)])
    classifier = TensorFlowV2Classifier(model=lambda batch, training=False: logits(tf.cast(batch, tf.float32)),
                                        nb_classes=10, input_shape=x.shape[1:], clip_values=(0.0, 1.0))
    members = [AutoProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=steps,
                                            nb_random_init=1, loss_type=loss, verbose=False)
               for loss in ("cross_entropy", "difference_logits_ratio")]
    members.append(SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=queries, nb_restarts=1, verbose=False))
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return AutoAttack(classifier, norm=np.inf, eps=eps, attacks=members).generate(x, np.eye(10)[y])
    finally:
        np.random.set_state(state)


@pytest.mark.crosscheck
@pytest.mark.slow
def test_at_least_as_strong_as_arts_autoattack(cnn, small_run):
    """Same budgets (10 steps, 50 queries): the ensemble's robust accuracy is at most ART's
    AutoAttack's plus 0.5 points."""
    model, x, y = cnn
    x_art = art_autoattack(model, x, y, eps=EPS, steps=10, queries=50)
    delta = np.abs(x_art - x).reshape(len(x), -1).max(axis=1)
    assert delta.max() <= EPS * (1 + 1e-4) + 1e-6
    assert small_run.robust_accuracy <= robust_accuracy(model, x_art, y) + 0.005
