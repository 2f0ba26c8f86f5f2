"""Training-time defenses: NSL adversarial regularization, adversarial and certified training.

    import defenses
    config = defenses.resolve("pgd_at", dataset="mnist")          # the dataset's preset
    config = defenses.resolve("nsl", dataset="fashion_mnist", preset="quick", eps=0.05)
    history = defenses.fit(config, base_model, train_ds, val_ds, epochs=5)

=========  ==========================================  =============================
defense    what it trains on                           module
=========  ==========================================  =============================
nsl        clean + multiplier * NSL adversarial loss   :mod:`defenses.nsl`
pgd_at     PGD examples (Madry et al. 2018)            :mod:`defenses.adversarial_training`
trades     clean CE + beta * KL(clean || adversarial)  :mod:`defenses.adversarial_training`
fgsm_rs    FGSM from a random start (Wong et al. 2020) :mod:`defenses.adversarial_training`
ibp        clean CE + IBP worst-case CE (Gowal 2018)   :mod:`defenses.certified`
crown_ibp  as ibp, CROWN-IBP bounds (Zhang 2020)       :mod:`defenses.certified`
gaussian   x + N(0, sigma^2) (Cohen et al. 2019)       :mod:`defenses.certified`
=========  ==========================================  =============================

Presets: every defense has ``mnist`` (L-inf eps 0.3), ``fashion_mnist`` (L-inf eps 0.1)
and ``quick`` (L-inf eps 0.1, few steps, for demos); ``nsl`` also has ``lecture`` (the
seed lecture's ``multiplier=0.2, adv_step_size=0.05``). ``ibp`` and ``crown_ibp`` train
MNIST at eps 0.4 for eps 0.3; ``gaussian`` has no eps but a noise level sigma (0.5 MNIST,
0.25 Fashion-MNIST and quick). ``preset=None`` picks the
dataset's preset. :mod:`defenses.callbacks` holds robust early stopping and the
catastrophic-overfitting monitor; :mod:`defenses.distribute` the ``tf.distribute``
strategies; :mod:`defenses.bounds` the interval (IBP) and CROWN-IBP bounds that certified
training and ``advrobust.certify`` share.

Importing this package selects Keras 2 for TensorFlow first (``attacks/backend.py``) and
puts NSL's ``tensorflow.estimator`` stand-in in place (``defenses/nsl_compat.py``), so a
plain ``import neural_structured_learning`` works afterwards; NSL itself is imported
only when an NSL defense is first used.
"""

from __future__ import annotations

from typing import Any


from attacks import backend  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
from defenses.nsl_compat import install_estimator_stand_in
from defenses.validation import check_nonnegative, check_radius  # noqa: F401  (public, as before)

install_estimator_stand_in()

DEFENSES: tuple[str, ...] = ("none", "nsl", "pgd_at", "trades", "fgsm_rs", "ibp", "crown_ibp", "gaussian")
CERTIFIED: tuple[str, ...] = ("ibp", "crown_ibp", "gaussian")


def presets(defense: str) -> tuple[str, ...]:
    """List the presets of a defense.

    Args:
        defense: One of ``DEFENSES``.

    Returns:
        The preset names, e.g. ``("mnist", "fashion_mnist", "quick")``; empty for ``"none"``.

    Raises:
        ValueError: ``defense`` is unknown; the message lists the choices.
    """
    _check_defense(defense)
    if defense == "none":
        return ()
    if defense == "nsl":
        from defenses import nsl
        return tuple(nsl.PRESETS)
    if defense in CERTIFIED:
        from defenses import certified
        return tuple(certified.PRESETS[defense])
    from defenses import adversarial_training
    return tuple(adversarial_training.PRESETS[defense])


def resolve(defense: str, *, dataset: str | None = None, preset: str | None = None, eps: float | None = None,
            params: dict[str, Any] | None = None):
    """Build the complete, checked config of a defense.

    ``preset=None`` uses the preset named after ``dataset``. ``params`` override the
    preset's fields, and ``eps`` overrides both.

    Args:
        defense: One of ``DEFENSES``: ``"none"``, ``"nsl"``, ``"pgd_at"``, ``"trades"``,
            ``"fgsm_rs"``, ``"ibp"``, ``"crown_ibp"`` or ``"gaussian"``.
        dataset: ``"mnist"`` or ``"fashion_mnist"``, used only when ``preset`` is None.
        preset: A preset name of the defense (see :func:`presets`), or None.
        eps: Replaces the preset's radius; None keeps it (must be None for gaussian).
        params: Any other field (see ``defenses.nsl.PARAMS``,
            ``defenses.adversarial_training.PARAMS`` and ``defenses.certified.PARAMS``);
            None for none.

    Returns:
        An ``NSLConfig``, ``AdversarialTrainingConfig``, ``CertifiedTrainingConfig`` or
        ``GaussianAugmentationConfig``; None for ``"none"``.

    Raises:
        ValueError: Naming the bad value and the choices: unknown defense, preset or
            parameter; a preset, eps or parameters given with ``"none"`` (eps with
            ``"gaussian"``); no preset and a dataset without a default one; eps out of
            range; negative multiplier or beta; iterations < 1; sigma <= 0; kappa_final
            outside [0, 1].
    """
    _check_defense(defense)
    params = dict(params or {})
    if defense == "none":
        if preset is not None or eps is not None or params:
            raise ValueError("defense 'none' takes no preset, eps or defense parameters; choose a defense: "
                             + ", ".join(DEFENSES[1:]))
        return None
    if preset is None:
        if dataset not in ("mnist", "fashion_mnist"):
            raise ValueError(f"no default {defense} preset for dataset {dataset!r}; pass preset= one of: "
                             + ", ".join(presets(defense)))
        preset = dataset
    if defense == "nsl":
        from defenses import nsl
        return nsl.preset(preset, eps=eps, **params)
    if defense in CERTIFIED:
        from defenses import certified
        return certified.preset(defense, preset, eps=eps, **params)
    from defenses import adversarial_training
    return adversarial_training.preset(defense, preset, eps=eps, **params)


def fit(config, base_model, train, validation=None, *, epochs: int, learning_rate: float = 1e-3,
        callbacks=None, verbose: int | str = "auto", steps_per_epoch: int | None = None):
    """Train ``base_model`` in place with the defense ``config`` (from :func:`resolve`).

    ``base_model`` stays a plain logits model; save or attack it as usual afterwards.

    Args:
        config: An ``NSLConfig``, ``AdversarialTrainingConfig``, ``CertifiedTrainingConfig``
            or ``GaussianAugmentationConfig``.
        base_model: The Keras 2 logits model to train (built inside a strategy's scope to
            train distributed).
        train: A batched ``(x, y)`` dataset, x inside ``config.clip``, integer labels.
        validation: A batched ``(x, y)`` dataset for Keras's validation, or None.
        epochs: Epochs to train, >= 1.
        learning_rate: Adam's learning rate.
        callbacks: Keras callbacks, or None; they see the training wrapper as ``self.model``.
        verbose: Keras's ``verbose`` for ``fit``.
        steps_per_epoch: Batches per epoch; needed only for adversarial training with an
            eps warm-up, or certified training with a warm-up or ramp, when the dataset's
            cardinality is unknown.

    Returns:
        The Keras ``History`` of the training wrapper.

    Raises:
        TypeError: ``config`` is none of the config types.
        ValueError: ``epochs`` < 1, the warm-up's batches per epoch cannot be known,
            (NSL) ``base_model`` does not have exactly one named input, or (ibp, crown_ibp)
            it holds a layer the bounds do not support.
    """
    from defenses import adversarial_training, certified, nsl

    if isinstance(config, nsl.NSLConfig):
        return nsl.fit(base_model, train, validation, config=config, epochs=epochs, learning_rate=learning_rate,
                       callbacks=callbacks, verbose=verbose)
    if isinstance(config, adversarial_training.AdversarialTrainingConfig):
        return adversarial_training.fit(base_model, train, validation, config=config, epochs=epochs,
                                        learning_rate=learning_rate, callbacks=callbacks, verbose=verbose,
                                        steps_per_epoch=steps_per_epoch)
    if isinstance(config, (certified.CertifiedTrainingConfig, certified.GaussianAugmentationConfig)):
        return certified.fit(base_model, train, validation, config=config, epochs=epochs, learning_rate=learning_rate,
                             callbacks=callbacks, verbose=verbose, steps_per_epoch=steps_per_epoch)
    raise TypeError("config must be an NSLConfig, AdversarialTrainingConfig, CertifiedTrainingConfig or "
                    f"GaussianAugmentationConfig, got {type(config).__name__}")


def _check_defense(defense: str) -> None:
    if defense not in DEFENSES:
        raise ValueError(f"unknown defense {defense!r}; choose one of: {', '.join(DEFENSES)}")
