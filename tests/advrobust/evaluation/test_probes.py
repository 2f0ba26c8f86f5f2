"""advrobust.evaluation.probes, judged by the masking checks: three masked versions of the
trained MNIST CNN are flagged, the CNN itself passes.

The masked models: logits times 1e4 (the softmax saturates, so cross-entropy gradients
are exactly 0 in float32), a rounding input quantizer (zero gradient everywhere) and
Gaussian input noise drawn at every call. Few examples and short budgets keep this quick.
"""

from __future__ import annotations

import numpy as np
import pytest

from advrobust.evaluation import checks, curves, probes
from attacks.backend import tf

N = 30
EPS = 0.1
STEPS = 10


class _Scaled:
    """Logits times 1e4: the same decisions, a saturated softmax."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, training=False):
        return self.model(x, training=training) * 1e4


class _Quantized:
    """Inputs rounded to {0, 1}; the gradient with respect to the input is 0."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, training=False):
        return self.model(0.0 * x + tf.stop_gradient(tf.round(x)), training=training)


class _Noisy:
    """Gaussian noise (std 0.3) added to the input at every call."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, training=False):
        return self.model(x + tf.random.normal(tf.shape(x), stddev=0.3), training=training)


@pytest.fixture(scope="module")
def cnn(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    return model, x[:N], y[:N]


def _square_verdict(model, x, y):
    """Square (250 queries) against PGD-10, on the examples PGD left robust."""
    pgd = curves.robust_accuracy_curve(model, x, y, attack="pgd", epsilons=[EPS],
                                       params={"steps": STEPS, "seed": 0}, progress=False)
    robust = pgd.robust_mask[0]
    square = pgd.robust_mask.copy()
    if robust.any():
        square[0, robust] = curves.robust_accuracy_curve(model, x[robust], y[robust], attack="square", epsilons=[EPS],
                                                         params={"queries": 250, "seed": 0},
                                                         progress=False).robust_mask[0]
    attacked = curves.curve_of("square", "inf", {"queries": 250}, pgd.epsilons, pgd.clean_mask, square, 0.0)
    return checks.square_not_stronger(attacked, pgd)


def test_the_unmasked_cnn_passes_every_probe(cnn):
    model, x, y = cnn
    assert checks.deterministic(probes.repeated_logits(model, x, passes=3)).passed
    verdict = checks.unbounded(*probes.unbounded_robust(model, x, y), "deepfool")
    assert verdict.passed, verdict.detail
    path = probes.pgd_path(model, x, y, eps=EPS, steps=STEPS)
    assert path.early_steps == 9 and path.fooled_on_path.any() and not path.fooled_on_path.all()
    robust = path.clean & ~path.fooled_on_path
    assert np.all(path.loss_final[robust] >= path.loss_early[robust] - 1e-5)  # the 90% run is a prefix
    for verdict in (checks.fooled_points_kept(path.clean, path.fooled_on_path, path.fooled_at_end),
                    checks.loss_converged(robust, path.loss_clean, path.loss_early, path.loss_final),
                    _square_verdict(model, x, y)):
        assert verdict.passed, verdict.detail


def test_saturated_logits_are_flagged_by_square(cnn):
    model, x, y = cnn
    verdict = _square_verdict(_Scaled(model), x, y)
    assert not verdict.passed, verdict.detail


def test_a_non_differentiable_quantizer_is_flagged_by_the_unbounded_attack(cnn):
    model, x, y = cnn
    verdict = checks.unbounded(*probes.unbounded_robust(_Quantized(model), x, y, steps=5), "deepfool")
    assert not verdict.passed, verdict.detail


def test_a_random_model_is_flagged_as_not_deterministic(cnn):
    model, x, _ = cnn
    verdict = checks.deterministic(probes.repeated_logits(_Noisy(model), x, passes=2))
    assert not verdict.passed and "changed class" in verdict.detail


def test_probes_refuse_what_they_cannot_measure(cnn):
    model, x, y = cnn
    with pytest.raises(ValueError, match="passes"):
        probes.repeated_logits(model, x, passes=1)
    with pytest.raises(ValueError, match="no examples"):
        probes.repeated_logits(model, x[:0])
    with pytest.raises(ValueError, match="eps"):
        probes.pgd_path(model, x, y, eps=0.0)
    with pytest.raises(ValueError, match="steps"):
        probes.pgd_path(model, x, y, eps=EPS, steps=1)
    with pytest.raises(ValueError, match="no examples"):
        probes.pgd_path(model, x[:0], y[:0], eps=EPS)
    with pytest.raises(ValueError, match="clip"):
        probes.pgd_path(model, x * 2.0 + 0.5, y, eps=EPS)
