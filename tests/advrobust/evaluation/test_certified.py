"""advrobust.evaluation.certified: verified-accuracy curves as units (equal to the certify
masks, reused from a cache, computed only for a shard's own chunks), the bracket against
an attack, and refusals."""

import numpy as np
import pytest

from advrobust import certify
from advrobust.evaluation import certified
from advrobust.evaluation.curves import ELSEWHERE, robust_accuracy_curve
from attacks.backend import keras
from tests.advrobust.certify.test_verify import small_model


def small_data(model, n=23, seed=0):
    x = np.random.default_rng(seed).random((n, 4, 4, 1), dtype=np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    y[:3] = (y[:3] + 1) % 3  # three misclassified clean: never certified
    return x, y


class DictCache:
    """A unit cache in memory; ``elsewhere`` chunks belong to another worker."""

    def __init__(self, elsewhere=()):
        self.units, self.elsewhere, self.computed = {}, set(elsewhere), []

    def get(self, attack, batch, fingerprint):
        if batch in self.elsewhere:
            return ELSEWHERE
        return self.units.get((attack, batch, fingerprint))

    def put(self, attack, batch, epsilons, clean, robust, seconds, fingerprint, broken_by=None):
        self.computed.append(batch)
        self.units[(attack, batch, fingerprint)] = (clean, robust, seconds, broken_by)


@pytest.mark.parametrize("method", ["ibp", "crown_ibp"])
def test_the_curve_is_the_certify_mask_computed_in_chunks_and_reused(method):
    model = small_model()
    x, y = small_data(model)
    epsilons = [0.0, 0.01, 0.05, 0.3]
    cache = DictCache()
    curve = certified.certified_curve(model, x, y, method=method, epsilons=epsilons, batch_size=10,
                                      bound_batch_size=4, progress=False, cache=cache)
    expected = getattr(certify, "interval" if method == "ibp" else "crown_ibp")(model, x, y, eps=epsilons)
    np.testing.assert_array_equal(curve.robust_mask, expected)
    assert curve.attack == method and curve.n_examples == 23 and cache.computed == [0, 1, 2]
    np.testing.assert_array_equal(curve.robust_mask[0], np.arange(23) >= 3)  # eps 0: the correct points
    assert curve.clean_accuracy == pytest.approx(20 / 23)
    again = certified.certified_curve(model, x, y, method=method, epsilons=epsilons, batch_size=10,
                                      bound_batch_size=4, progress=False, cache=cache)
    assert cache.computed == [0, 1, 2]  # nothing computed twice
    np.testing.assert_array_equal(again.robust_mask, curve.robust_mask)


def test_a_shard_computes_only_its_own_chunks():
    model = small_model()
    x, y = small_data(model)
    cache = DictCache(elsewhere={1})
    curve = certified.certified_curve(model, x, y, method="ibp", epsilons=[0.0, 0.01], batch_size=10,
                                      progress=False, cache=cache)
    assert cache.computed == [0, 2] and not curve.robust_mask[:, 10:20].any()


def test_the_bracket_holds_the_attack_above_the_certificate(trained_mnist_cnn):
    model, x, y = trained_mnist_cnn
    x, y = x[:40], y[:40]
    epsilons = [0.0, 0.005, 0.01, 0.02]
    bound = certified.certified_curve(model, x[:30], y[:30], method="crown_ibp", epsilons=epsilons, progress=False)
    attacked = robust_accuracy_curve(model, x, y, attack="pgd", epsilons=epsilons,
                                     params={"steps": 10, "seed": 0}, progress=False)
    rows = certified.bracket(bound, attacked)
    assert [row.eps for row in rows] == epsilons
    assert rows[0].width == 0.0  # eps 0: both are the clean accuracy of the first 30
    assert all(0 <= row.certified <= row.attacked <= 1 for row in rows)
    assert rows[1].certified > 0 and rows[-1].width > 0
    assert rows[2].attacked == pytest.approx(attacked.robust_mask[2, :30].mean())
    with pytest.raises(ValueError, match="holds 30 examples, the certified 40"):
        certified.bracket(certified.certified_curve(model, x, y, method="ibp", epsilons=epsilons, progress=False),
                          bound)


def test_unknown_methods_unsupported_layers_and_bad_input_are_refused():
    model = small_model()
    x, y = small_data(model)
    with pytest.raises(ValueError, match="unknown bound method 'smoothing'"):
        certified.certified_curve(model, x, y, method="smoothing", epsilons=[0.1], progress=False)
    with pytest.raises(ValueError, match="no examples"):
        certified.certified_curve(model, x[:0], y[:0], method="ibp", epsilons=[0.1], progress=False)
    with pytest.raises(ValueError, match="eps"):
        certified.certified_curve(model, x, y, method="ibp", epsilons=[-0.1], progress=False)
    keras.utils.set_random_seed(0)
    softmax = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(3), keras.layers.Softmax()])
    with pytest.raises(ValueError, match="Softmax"):
        certified.certified_curve(softmax, x, y, method="ibp", epsilons=[0.1], progress=False)
