"""defenses.certified: the IBP / CROWN-IBP schedules and loss against hand values, training that
raises IBP-verified accuracy, Gaussian augmentation in training only, and the harness wiring."""

from __future__ import annotations

import numpy as np
import pytest

import defenses
from advrobust import data, models, training
from attacks.backend import keras, tf
from defenses import bounds, certified


def _mlp(hidden=3, dim=2, classes=3, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((dim,)), keras.layers.Dense(hidden, activation="relu"),
                             keras.layers.Dense(classes)])


def _ce(logits, y):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return -(shifted[np.arange(len(y)), y] - np.log(np.exp(shifted).sum(axis=1)))


# ---------------------------------------------------------------------------- schedules

@pytest.mark.parametrize("step, eps, kappa, beta", [
    (0, 0.0, 1.0, 1.0), (10, 0.0, 1.0, 1.0),        # warm-up: clean training
    (20, 0.2, 0.75, 0.5), (25, 0.3, 0.625, 0.25),   # half-way and three quarters through the ramp
    (30, 0.4, 0.5, 0.0), (1000, 0.4, 0.5, 0.0),     # after the ramp
])
def test_the_schedule_ramps_eps_kappa_and_beta_linearly_after_the_warmup(step, eps, kappa, beta):
    config = certified.CertifiedTrainingConfig("crown_ibp", eps=0.3, eps_train=0.4, warmup_epochs=1.0,
                                               ramp_epochs=2.0)
    values = certified.schedule(config, step, steps_per_epoch=10)
    assert {name: float(value) for name, value in values.items()} == pytest.approx(
        {"eps": eps, "kappa": kappa, "beta": beta})


def test_without_a_ramp_the_schedule_jumps_when_the_warmup_ends():
    assert [float(certified.ramp(t, warmup_steps=5, ramp_steps=0)) for t in (0, 4, 5, 6)] == [0, 0, 1, 1]
    config = certified.preset("ibp", "quick", warmup_epochs=0.0, ramp_epochs=0.0)
    assert float(certified.schedule(config, 0, steps_per_epoch=7)["eps"]) == pytest.approx(0.1)


# ---------------------------------------------------------------------------- the loss

def test_the_ibp_loss_of_an_affine_model_is_the_exact_worst_case_cross_entropy():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    w, b = np.array([[1.0, -2.0, 0.5], [0.5, 1.0, -1.0]], np.float32), np.array([0.1, 0.0, -0.2], np.float32)
    model.set_weights([w, b])
    x, y, eps = np.array([[0.3, 0.8], [0.6, 0.2]], np.float32), np.array([0, 2]), 0.1
    logits = x @ w + b
    margins = np.stack([[(logits[n, y[n]] - logits[n, j]) - eps * np.abs(w[:, y[n]] - w[:, j]).sum()
                         for j in range(3)] for n in range(2)])
    expected = 0.7 * _ce(logits, y) + 0.3 * _ce(-margins, y)

    got_margins = certified.bound_margins(bounds.network(model), x, y, eps, method="ibp", clip=None)
    got = certified.certified_loss(model(x), got_margins, y, kappa=0.7)
    np.testing.assert_allclose(got_margins, margins, atol=1e-6)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_the_ibp_loss_of_a_relu_network_follows_interval_arithmetic_by_hand():
    model = _mlp()
    (w1, b1, w2, b2) = model.get_weights()
    x, y, eps = np.array([[0.2, 0.9], [0.7, 0.4]], np.float32), np.array([1, 0]), 0.05
    centre = x @ w1 + b1
    low, high = np.maximum(centre - eps * np.abs(w1).sum(0), 0), np.maximum(centre + eps * np.abs(w1).sum(0), 0)
    margins = np.zeros((2, 3))
    for n in range(2):
        for j in range(3):
            c = w2[:, y[n]] - w2[:, j]  # the spec folded into the last affine layer
            margins[n, j] = c @ (low[n] + high[n]) / 2 - np.abs(c) @ (high[n] - low[n]) / 2 + b2[y[n]] - b2[j]
    expected = 0.5 * _ce(model(x).numpy(), y) + 0.5 * _ce(-margins, y)

    got = certified.certified_loss(model(x), certified.bound_margins(bounds.network(model), x, y, eps,
                                                                     method="ibp", clip=None), y, kappa=0.5)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_at_eps_zero_the_worst_case_term_is_the_clean_cross_entropy():
    model, x, y = _mlp(), np.random.default_rng(0).random((5, 2), dtype=np.float32), np.array([0, 1, 2, 0, 1])
    margins = certified.bound_margins(bounds.network(model), x, y, 0.0, method="ibp")
    np.testing.assert_allclose(certified.certified_loss(model(x), margins, y, kappa=0.0), _ce(model(x).numpy(), y),
                               rtol=1e-5)


def test_crown_ibp_at_beta_one_is_never_looser_than_ibp_and_mixes_linearly():
    model = _mlp(hidden=16, dim=4, classes=3, seed=1)
    x, y = np.random.default_rng(1).random((32, 4), dtype=np.float32), np.arange(32) % 3
    net, eps = bounds.network(model), 0.1
    ibp = certified.bound_margins(net, x, y, eps, method="ibp")
    crown = certified.bound_margins(net, x, y, eps, method="crown_ibp", beta=1.0)
    half = certified.bound_margins(net, x, y, eps, method="crown_ibp", beta=0.5)
    assert np.all(crown.numpy() >= ibp.numpy() - 1e-6) and np.any(crown.numpy() > ibp.numpy() + 1e-4)
    np.testing.assert_allclose(half, (crown + ibp) / 2, atol=1e-6)
    np.testing.assert_array_equal(certified.bound_margins(net, x, y, eps, method="crown_ibp", beta=0.0), ibp)
    # At eps 0 (the warm-up, where the CROWN pass is skipped) the bound is the exact margin.
    logits = model(x).numpy()
    exact = logits[np.arange(32), y][:, None] - logits
    np.testing.assert_allclose(certified.bound_margins(net, x, y, 0.0, method="crown_ibp", beta=1.0), exact,
                               atol=1e-5)
    clean = model(x)
    assert float(tf.reduce_mean(certified.certified_loss(clean, crown, y, kappa=0.5))) <= float(
        tf.reduce_mean(certified.certified_loss(clean, ibp, y, kappa=0.5)))


# ---------------------------------------------------------------------------- training

def _small_cnn(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 4, strides=2, activation="relu"),
        keras.layers.Conv2D(32, 4, strides=2, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])


def _ibp_verified_accuracy(model, x, y, eps):
    margins = bounds.margin_lower_bounds(bounds.network(model), x, y, eps, method="ibp")
    return float(np.mean(bounds.certified(margins, y)))


@pytest.mark.slow
def test_ibp_training_raises_verified_accuracy_above_plain_training_of_the_same_budget():
    x, y = data.load("mnist", "train", download=False)
    x_test, y_test = data.load("mnist", "test", download=False)
    x, y, x_test, y_test = x[:2000], y[:2000], x_test[:500], y_test[:500]
    eps, epochs = 0.1, 4
    train = data.make_dataset(x, y, batch_size=50, shuffle=True, seed=0)

    plain = _small_cnn()
    plain.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain.fit(train, epochs=epochs, verbose=0)
    ibp_model = _small_cnn()
    config = certified.CertifiedTrainingConfig("ibp", eps=eps, ramp_epochs=2.0)
    history = defenses.fit(config, ibp_model, train, data.make_dataset(x_test, y_test, batch_size=250),
                           epochs=epochs, verbose=0)

    plain_verified = _ibp_verified_accuracy(plain, x_test, y_test, eps)
    ibp_verified = _ibp_verified_accuracy(ibp_model, x_test, y_test, eps)
    print(f"IBP-verified accuracy at eps {eps}: plain {plain_verified:.3f}, IBP-trained {ibp_verified:.3f}")
    assert plain_verified < 0.05 < 0.2 < ibp_verified
    # The logged per-epoch verified accuracy is the same IBP measurement.
    assert history.history["val_verified_accuracy"][-1] == pytest.approx(ibp_verified, abs=1e-6)
    assert history.history["eps"][-1] == pytest.approx(eps)


def test_crown_ibp_training_runs_with_finite_losses_and_logs_beta():
    model = _mlp(hidden=8, dim=4, classes=3)
    rng = np.random.default_rng(0)
    x = rng.random((64, 4), dtype=np.float32)
    train = tf.data.Dataset.from_tensor_slices((x, np.argmax(x[:, :3], 1))).batch(16)
    config = certified.CertifiedTrainingConfig("crown_ibp", eps=0.05, ramp_epochs=1.0)
    history = certified.fit(model, train, config=config, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    # 4 steps an epoch, ramped over the first: r = 0, 1/4, 1/2, 3/4, then 1; logged as epoch means.
    assert history.history["beta"] == pytest.approx([0.625, 0.0])
    assert history.history["kappa"] == pytest.approx([0.8125, 0.5])


def test_gaussian_noise_is_seeded_unclipped_and_in_training_only():
    model = _mlp()
    config = certified.preset("gaussian", "mnist", seed=3)
    trainer = certified.CertifiedTrainer(model, config)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))
    x = np.full((2000, 2), 0.5, np.float32)
    first, again = trainer.noisy(x).numpy(), trainer.noisy(x).numpy()
    np.testing.assert_array_equal(first, again)  # the same step and seed: the same draw
    other = certified.CertifiedTrainer(model, certified.preset("gaussian", "mnist", seed=4))
    other.compile(optimizer=keras.optimizers.SGD(0.0))
    assert not np.allclose(other.noisy(x), first)
    assert np.std(first - x) == pytest.approx(0.5, rel=0.05)
    assert first.min() < 0 and first.max() > 1  # not clipped (Cohen et al.)
    np.testing.assert_array_equal(trainer.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0))
    trainer.fit(x[:8], np.zeros(8, np.int64), batch_size=4, epochs=1, verbose=0)
    assert not np.array_equal(trainer.noisy(x), first)  # a new step draws new noise


# ---------------------------------------------------------------------------- harness

@pytest.mark.slow
def test_ibp_trains_through_a_train_config_and_the_card_records_its_config(tmp_path):
    defense = "ibp"
    config = training.TrainConfig(dataset="mnist", epochs=1, train_subset=256, batch_size=64, defense=defense,
                                  preset="quick", robust_val_size=20, test_subset=200, seed=0)
    card = training.train(config, tmp_path, verbose=0)["card"]
    assert card["defense"] == defense
    assert card["defense_config"] == defenses.resolve(defense, preset="quick").to_dict()
    assert card["robust_validation"]["eps"] == pytest.approx(0.1)
    assert len(card["history"]["val_verified_accuracy"]) == 1


@pytest.mark.slow
def test_ibp_keeps_the_best_verified_epoch_at_full_radius_and_decays_the_rate_only_after_the_ramp(tmp_path, capsys):
    config = training.TrainConfig(dataset="mnist", epochs=4, train_subset=256, batch_size=64, defense="ibp",
                                  preset="quick", defense_params={"warmup_epochs": 1.0, "ramp_epochs": 1.0},
                                  lr_schedule="piecewise", patience=5, robust_val_size=20, test_subset=200, seed=0)
    card = training.train(config, tmp_path, verbose=0)["card"]
    verified = card["history"]["val_verified_accuracy"]
    best = 2 + int(np.argmax(verified[2:]))  # epochs 0 (warm-up) and 1 (ramp) are no candidates
    assert card["model_selection"] == {"monitor": "val_verified_accuracy", "first_candidate_epoch": 3,
                                       "best_epoch": best + 1, "best_verified_accuracy": pytest.approx(verified[best])}
    assert len(card["robust_validation"]["per_epoch"]) == 4  # PGD is still measured every epoch
    assert card["history"]["lr"] == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4])  # piecewise over epochs 2..3
    assert f"kept epoch {best + 1} (validation verified accuracy {verified[best]:.4f})" in capsys.readouterr().out
    kept, checkpoint = models.load(tmp_path / "model.keras"), models.load(tmp_path / "checkpoints" / "best.keras")
    for mine, theirs in zip(kept.get_weights(), checkpoint.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_ema_is_refused_where_the_epoch_is_not_chosen_by_pgd():
    for defense in ("ibp", "crown_ibp", "gaussian"):
        with pytest.raises(ValueError, match=f"ema_decay does not apply to {defense}"):
            training.TrainConfig(dataset="mnist", defense=defense, ema_decay=0.999)


@pytest.mark.slow
def test_gaussian_training_keeps_the_epoch_with_the_best_accuracy_on_noisy_validation_images(tmp_path):
    config = training.TrainConfig(dataset="mnist", epochs=2, train_subset=256, batch_size=64, defense="gaussian",
                                  defense_params={"sigma": 0.25}, test_subset=200, seed=0)
    card = training.train(config, tmp_path, verbose=0)["card"]
    assert card["defense_config"] == {"defense": "gaussian", "sigma": 0.25, "seed": 0}
    noisy = card["history"]["val_noisy_accuracy"]
    assert len(noisy) == 2 and "robust_validation" not in card and "val_robust_accuracy" not in card["history"]
    assert (tmp_path / "checkpoints" / "best.keras").is_file()
    kept = models.load(tmp_path / "model.keras")
    best = models.load(tmp_path / "checkpoints" / "best.keras")
    for mine, theirs in zip(kept.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(mine, theirs)  # the saved model is the best epoch's


def test_noisy_validation_draws_the_same_noise_every_time():
    model = _mlp()
    trainer = certified.CertifiedTrainer(model, certified.preset("gaussian", "mnist", seed=3))
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y = np.random.default_rng(0).random((64, 2), dtype=np.float32), np.arange(64) % 2
    first = trainer.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert trainer.evaluate(x, y, batch_size=16, verbose=0, return_dict=True) == first
    assert set(first) == {"loss", "accuracy", "noisy_accuracy"}


def test_interrupted_ibp_training_resumes_from_the_last_finished_epoch(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    rng = np.random.default_rng(0)
    x = rng.random((128, 28, 28, 1), dtype=np.float32)
    y = (x[:, :14].mean(axis=(1, 2, 3)) > x[:, 14:].mean(axis=(1, 2, 3))).astype(np.int64)

    class Saved(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.at_start = [w.copy() for w in self.model.get_weights()], int(self.model.optimizer.iterations)

        def on_epoch_end(self, epoch, logs=None):
            self.after = [w.copy() for w in self.model.get_weights()], int(self.model.optimizer.iterations)

    def run(extra):
        training.set_seed(0)
        callbacks = training.standard_callbacks(tmp_path, checkpoint=False, early_stopping=False) + list(extra)
        config = defenses.resolve("ibp", preset="quick", params={"ramp_epochs": 2.0})
        return defenses.fit(config, _small_cnn(), data.make_dataset(x, y, batch_size=64, shuffle=True, seed=0),
                            None, epochs=2, callbacks=callbacks, verbose=0)

    first, second = Saved(), Saved()
    with pytest.raises(KeyboardInterrupt):
        run([first, Interrupt()])
    history = run([second])
    assert history.epoch == [1]
    assert second.at_start[1] == first.after[1] == 2
    for restored, saved in zip(second.at_start[0], first.after[0]):
        np.testing.assert_array_equal(restored, saved)
    # 2 steps an epoch, ramped over 2 epochs: steps 2 and 3 of the ramp, r = 1/2 and 3/4.
    assert history.history["eps"] == pytest.approx([0.1 * 0.625])


# ---------------------------------------------------------------------------- bad parameters

@pytest.mark.parametrize("call, message", [
    (lambda: certified.preset("ibp", "mnist", kappa_final=2.0), "kappa_final must be in"),
    (lambda: certified.preset("ibp", "cifar"), "unknown ibp preset 'cifar'"),
    (lambda: certified.preset("ibp", "mnist", sigma=0.5), "unknown ibp parameter"),
    (lambda: certified.preset("ibp", "mnist", ramp_epochs=-1), "ramp_epochs"),
    (lambda: certified.preset("crown_ibp", "mnist", eps_train=2.0), "eps"),
    (lambda: certified.preset("gaussian", "mnist", eps=0.3), "gaussian augmentation has no radius"),
    (lambda: certified.preset("gaussian", "quick", sigma=0.0), "sigma"),
    (lambda: certified.preset("gaussian", "quick", steps=3), "unknown gaussian parameter"),
    (lambda: certified.CertifiedTrainingConfig("pgd_at", eps=0.1), "unknown certified-training method"),
    (lambda: certified.CertifiedTrainer(_mlp(), certified.preset("ibp", "quick")), "steps_per_epoch"),
    (lambda: certified.bound_margins(bounds.network(_mlp()), np.zeros((1, 2)), [0], 0.1, method="crown"),
     "unknown bound method"),
])
def test_bad_parameters_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_layer_without_a_bound_is_refused_before_training():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4), keras.layers.BatchNormalization(),
                              keras.layers.Dense(2)])
    train = tf.data.Dataset.from_tensor_slices((np.zeros((4, 2), np.float32), np.zeros(4, np.int64))).batch(2)
    with pytest.raises(ValueError, match="BatchNormalization"):
        certified.fit(model, train, config=certified.preset("ibp", "quick"), epochs=1, verbose=0)


def test_resolve_and_presets_know_the_certified_defenses():
    assert {"ibp", "crown_ibp", "gaussian"} <= set(defenses.DEFENSES)
    assert defenses.presets("gaussian") == ("mnist", "fashion_mnist", "quick")
    config = defenses.resolve("ibp", dataset="mnist")
    assert (config.eps, config.final_eps_train, config.kappa_final) == (0.3, 0.4, 0.5)
    assert defenses.resolve("ibp", dataset="mnist", eps=0.2).final_eps_train == 0.2  # eps moves eps_train along
    assert defenses.resolve("gaussian", dataset="fashion_mnist").sigma == 0.25
