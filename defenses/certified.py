"""Certified training (IBP, CROWN-IBP) and Gaussian augmentation for randomized smoothing.

    from defenses import certified
    config = certified.preset("ibp", "mnist")                # or CertifiedTrainingConfig(...)
    history = certified.fit(base_model, train_ds, val_ds, config=config, epochs=20)

``fit`` wraps the base (logits) model in :class:`CertifiedTrainer`, a ``keras.Model``
whose ``train_step`` computes the bounds of :mod:`defenses.bounds` inside the compiled
step; the base model is trained in place and stays a plain logits model. Per batch (x, y):

``ibp`` (Gowal et al. 2018, "On the effectiveness of interval bound propagation for
training verifiably robust models")
    ``loss = kappa * CE(f(x), y) + (1 - kappa) * CE(z_worst, y)``, with ``z_worst`` the
    worst-case logits over the ``eps_t``-ball: ``z_worst_j = -m_j``, ``m_j`` the IBP lower
    bound of ``f_y - f_j`` (0 at the label). CE is shift-invariant, so at ``eps_t = 0``
    the second term is the clean cross-entropy.
``crown_ibp`` (Zhang et al. 2020, "Towards stable and efficient training of verifiably
robust neural networks")
    the same loss with ``m = beta * m_crown_ibp + (1 - beta) * m_ibp``. ``m_crown_ibp`` is
    :func:`defenses.bounds.spec_lower_bounds` with ``method="crown_ibp"``, which returns
    the elementwise maximum of the CROWN-IBP and IBP bounds (never looser than the paper's
    pure CROWN-IBP term). CROWN's backward pass costs about K (classes) times a forward
    pass of the network per example; it is skipped once beta reaches 0.
``gaussian`` (Cohen, Rosenfeld & Kolter 2019, "Certified adversarial robustness via
randomized smoothing")
    ``loss = CE(f(x + N(0, sigma^2)), y)``; the noise is added in training only and not
    clipped to the valid range (as the paper does), so the base classifier sees what the
    smoothed classifier will feed it. Certify the result with ``advrobust.certify``'s
    randomized smoothing at the same sigma.

Schedule (ibp, crown_ibp; per optimizer step t, counted from 0, with ``S`` the batches
per epoch): ``r(t) = clip((t - warmup_epochs * S) / (ramp_epochs * S), 0, 1)`` (a step
from 0 to 1 at the end of the warm-up when ``ramp_epochs = 0``), then

* ``eps_t = r(t) * eps_train`` (0 during the warm-up: clean training);
* ``kappa_t = 1 - r(t) * (1 - kappa_final)``: 1 to ``kappa_final`` (0.5, Gowal et al.);
* ``beta_t = 1 - r(t)`` (crown_ibp): 1 to 0, as Zhang et al.

``eps`` is the radius the model is meant to be certified and validated at;
``eps_train`` (default ``eps``) the one it is trained at. The MNIST preset trains at
0.4 for eps 0.3, as both papers do: IBP bounds are loose, and training at a larger
radius gives more verified accuracy at 0.3 (Gowal et al., Table 1 setup) for a little
clean accuracy.

Validation logs the clean ``loss`` and ``accuracy`` and, for ibp and crown_ibp,
``verified_accuracy``: the share of examples IBP certifies at ``eps`` (so Keras logs
``val_verified_accuracy`` per epoch); for gaussian, ``noisy_accuracy``: the accuracy on
``x + N(0, sigma^2)`` with the same noise every epoch (:data:`VALIDATION_NOISE_SEED`), what
the smoothed classifier's votes depend on, so epochs are compared on equal terms. The
bounds are computed in inference mode (Dropout is the identity); the clean term uses
training mode.
"""

from __future__ import annotations

import math

from dataclasses import asdict, dataclass
from typing import Any

from attacks import losses
from attacks.backend import keras, tf
from defenses import bounds, distribute
from defenses.validation import check_clip, check_iterations, check_nonnegative, check_radius

BOUND_METHODS: tuple[str, ...] = ("ibp", "crown_ibp")
VALIDATION_NOISE_SEED = -1  # gaussian: the second half of the validation noise's stateless seed
METHODS: tuple[str, ...] = (*BOUND_METHODS, "gaussian")

# Gowal et al. trained MNIST for 100 epochs with a 3-epoch warm-up and a 17-epoch ramp;
# this project trains for 10 to 30 epochs, so the presets keep the ramp at about half of that.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ibp": {
        "mnist": {"eps": 0.3, "eps_train": 0.4, "warmup_epochs": 1.0, "ramp_epochs": 10.0},
        "fashion_mnist": {"eps": 0.1, "warmup_epochs": 1.0, "ramp_epochs": 10.0},
        "quick": {"eps": 0.1, "warmup_epochs": 0.0, "ramp_epochs": 1.0},
    },
    "crown_ibp": {
        "mnist": {"eps": 0.3, "eps_train": 0.4, "warmup_epochs": 1.0, "ramp_epochs": 10.0},
        "fashion_mnist": {"eps": 0.1, "warmup_epochs": 1.0, "ramp_epochs": 10.0},
        "quick": {"eps": 0.1, "warmup_epochs": 0.0, "ramp_epochs": 1.0},
    },
    "gaussian": {
        "mnist": {"sigma": 0.5},
        "fashion_mnist": {"sigma": 0.25},
        "quick": {"sigma": 0.25},
    },
}
PARAMS: dict[str, tuple[str, ...]] = {
    "ibp": ("eps_train", "warmup_epochs", "ramp_epochs", "kappa_final", "clip"),
    "crown_ibp": ("eps_train", "warmup_epochs", "ramp_epochs", "kappa_final", "clip"),
    "gaussian": ("sigma", "seed"),
}


@dataclass(frozen=True)
class CertifiedTrainingConfig:
    """IBP or CROWN-IBP training with its schedule (see the module docstring).

    Attributes:
        method: ``"ibp"`` or ``"crown_ibp"``.
        eps: The L-inf radius to certify (and validate) at.
        eps_train: The radius trained at after the ramp; None: ``eps``.
        warmup_epochs: Epochs of clean training first (eps 0, kappa 1), >= 0.
        ramp_epochs: Epochs over which eps, kappa and beta move linearly to their final
            values, >= 0.
        kappa_final: The weight of the clean loss after the ramp, in [0, 1].
        clip: The valid input range ``(low, high)`` the ball is intersected with, or None.

    Raises:
        ValueError: An unknown method, a bad eps, eps_train or clip, a negative
            ``warmup_epochs`` or ``ramp_epochs``, or ``kappa_final`` outside [0, 1].
    """

    method: str
    eps: float
    eps_train: float | None = None
    warmup_epochs: float = 0.0
    ramp_epochs: float = 0.0
    kappa_final: float = 0.5
    clip: tuple[float, float] | None = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.method not in BOUND_METHODS:
            raise ValueError(f"unknown certified-training method {self.method!r}; choose one of: "
                             f"{', '.join(BOUND_METHODS)}")
        object.__setattr__(self, "clip", check_clip(self.clip))
        check_radius(self.eps, "inf", self.clip)
        if self.eps_train is not None:
            check_radius(self.eps_train, "inf", self.clip)
        check_nonnegative(self.warmup_epochs, "warmup_epochs")
        check_nonnegative(self.ramp_epochs, "ramp_epochs")
        if not 0.0 <= float(self.kappa_final) <= 1.0:
            raise ValueError(f"kappa_final must be in [0, 1] (0.5 in Gowal et al.), got {self.kappa_final!r}")

    @property
    def norm(self) -> str:
        """The norm of the ball: always ``"inf"`` (what robust validation attacks)."""
        return "inf"

    @property
    def final_eps_train(self) -> float:
        """The radius trained at after the ramp: ``eps_train``, or ``eps`` when it is None."""
        return self.eps if self.eps_train is None else self.eps_train

    @property
    def full_strength_epoch(self) -> int:
        """The first 0-based epoch wholly at the final radius: ``ceil(warmup_epochs + ramp_epochs)``.

        From its first step on, eps and kappa (and beta) hold their final values.
        """
        return math.ceil(self.warmup_epochs + self.ramp_epochs)

    def to_dict(self) -> dict[str, Any]:
        """Describe the settings as a JSON-ready record.

        Returns:
            ``{"defense": method, **fields, "norm": "inf"}`` with ``eps_train`` resolved and
            ``clip`` as a list (or None).
        """
        record = asdict(self)
        record["clip"] = None if self.clip is None else list(self.clip)
        record["eps_train"] = self.final_eps_train
        return {"defense": self.method, **record, "norm": self.norm}


@dataclass(frozen=True)
class GaussianAugmentationConfig:
    """Training on ``x + N(0, sigma^2)`` (unclipped) for randomized smoothing.

    Attributes:
        sigma: The noise's standard deviation, > 0 (0.25 or 0.5 in Cohen et al.).
        seed: Seeds the noise (stateless, with the optimizer step and the replica).
        method: Always ``"gaussian"``.

    Raises:
        ValueError: ``sigma`` <= 0 or not a number, or ``seed`` not an int.
    """

    sigma: float
    seed: int = 0
    method: str = "gaussian"

    def __post_init__(self) -> None:
        check_nonnegative(self.sigma, "sigma", strict=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        if self.method != "gaussian":
            raise ValueError(f"GaussianAugmentationConfig's method is 'gaussian', got {self.method!r}")

    @property
    def eps(self) -> None:
        """No radius: the epoch is chosen by the accuracy on noisy validation images."""
        return None

    @property
    def norm(self) -> str:
        """``"l2"``: the norm of the radius randomized smoothing certifies."""
        return "l2"

    def to_dict(self) -> dict[str, Any]:
        """Describe the settings as a JSON-ready record.

        Returns:
            ``{"defense": "gaussian", "sigma": ..., "seed": ...}``.
        """
        return {"defense": self.method, "sigma": float(self.sigma), "seed": self.seed}


def preset(method: str, name: str, *, eps: float | None = None, **overrides: Any):
    """Build the config of a preset, optionally changed.

    Args:
        method: ``"ibp"``, ``"crown_ibp"`` or ``"gaussian"``.
        name: A preset of ``method`` in ``PRESETS``: ``"mnist"``, ``"fashion_mnist"`` or
            ``"quick"``.
        eps: Replaces the preset's radius (ibp, crown_ibp; ``eps_train`` too unless
            overridden); None keeps it. Must be None for gaussian.
        **overrides: Any of ``PARAMS[method]``.

    Returns:
        The checked :class:`CertifiedTrainingConfig` or :class:`GaussianAugmentationConfig`.

    Raises:
        ValueError: An unknown method, preset or parameter, an eps for gaussian, or a bad
            value (see the config classes).
    """
    if method not in METHODS:
        raise ValueError(f"unknown certified-training method {method!r}; choose one of: {', '.join(METHODS)}")
    if name not in PRESETS[method]:
        raise ValueError(f"unknown {method} preset {name!r}; choose one of: {', '.join(PRESETS[method])}")
    unknown = sorted(set(overrides) - set(PARAMS[method]))
    if unknown:
        raise ValueError(f"unknown {method} parameter(s) {unknown}; choose from: {', '.join(PARAMS[method])}")
    fields = {**PRESETS[method][name], **overrides}
    if method == "gaussian":
        if eps is not None:
            raise ValueError(f"gaussian augmentation has no radius (got eps={eps!r}); choose sigma with a preset "
                             "(mnist 0.5, fashion_mnist 0.25) or params {'sigma': ...} (a run config's defense_params)")
        return GaussianAugmentationConfig(**fields)
    if eps is not None:
        fields["eps"] = eps
        if "eps_train" not in overrides:
            fields.pop("eps_train", None)
    return CertifiedTrainingConfig(method=method, **fields)


def ramp(step: Any, *, warmup_steps: float, ramp_steps: float) -> tf.Tensor:
    """The schedule's progress r(t): 0 during the warm-up, then linear up to 1.

    Args:
        step: The optimizer step t (counted from 0), a number or scalar tensor.
        warmup_steps: Steps before the ramp starts, >= 0.
        ramp_steps: Steps the ramp lasts, >= 0 (0: jump to 1 when the warm-up ends).

    Returns:
        A scalar float32 tensor in [0, 1].
    """
    done = tf.cast(step, tf.float32) - float(warmup_steps)
    if ramp_steps <= 0:
        return tf.cast(done >= 0, tf.float32)
    return tf.clip_by_value(done / float(ramp_steps), 0.0, 1.0)


def schedule(config: CertifiedTrainingConfig, step: Any, *, steps_per_epoch: int) -> dict[str, tf.Tensor]:
    """The radius and weights for optimizer step ``step``.

    Args:
        config: The IBP or CROWN-IBP config.
        step: The optimizer step t (counted from 0), a number or scalar tensor.
        steps_per_epoch: Batches per epoch, >= 1.

    Returns:
        Scalar float32 tensors ``{"eps": in [0, eps_train], "kappa": in [kappa_final, 1],
        "beta": in [0, 1]}`` (beta is used by crown_ibp only).
    """
    progress = ramp(step, warmup_steps=config.warmup_epochs * steps_per_epoch,
                    ramp_steps=config.ramp_epochs * steps_per_epoch)
    return {"eps": progress * config.final_eps_train,
            "kappa": 1.0 - progress * (1.0 - config.kappa_final),
            "beta": 1.0 - progress}


def worst_case_logits(margins: tf.Tensor) -> tf.Tensor:
    """Turn margin lower bounds into the logits of the worst case (Gowal et al. 2018).

    Args:
        margins: Lower bounds of ``f_y - f_j``, (N, K), 0 at each label.

    Returns:
        ``-margins``, (N, K): the cross-entropy on it bounds the worst-case one from above.
    """
    return -margins


def bound_margins(net: bounds.Network, x: tf.Tensor, y: tf.Tensor, eps: tf.Tensor, *, method: str,
                  beta: tf.Tensor | float = 1.0, clip: tuple[float, float] | None = (0.0, 1.0)) -> tf.Tensor:
    """Lower-bound the margins for certified training: IBP, or the CROWN-IBP/IBP mix.

    Args:
        net: The network from :func:`defenses.bounds.network`.
        x: The batch (N, ...).
        y: Integer labels (N,).
        eps: The L-inf radius, a scalar.
        method: ``"ibp"`` or ``"crown_ibp"``.
        beta: crown_ibp only: ``beta * crown_ibp + (1 - beta) * ibp``, in [0, 1].
        clip: The valid input range, or None.

    Returns:
        The lower bounds (N, K) in ``net.dtype``, 0 at each label, differentiable in the
        weights.

    Raises:
        ValueError: ``method`` is unknown.
    """
    if method not in BOUND_METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose one of: {', '.join(BOUND_METHODS)}")
    ibp = bounds.margin_lower_bounds(net, x, y, eps, method="ibp", clip=clip)
    if method == "ibp":
        return ibp
    beta = tf.cast(beta, net.dtype)

    def mixed():
        crown = bounds.margin_lower_bounds(net, x, y, eps, method="crown_ibp", clip=clip)
        return beta * crown + (1.0 - beta) * ibp

    # After the ramp beta is 0, and during the warm-up eps is 0, where IBP is already exact:
    # either way skip CROWN's backward pass, the costly part. (That branch repeats the IBP
    # pass: sharing it gives the two branches different intermediates, which TensorFlow's
    # type inference for the cond's gradient reports as an invalid graph.)
    return tf.cond((beta > 0) & (tf.cast(eps, net.dtype) > 0), mixed, lambda: ibp)


def certified_loss(clean_logits: tf.Tensor, margins: tf.Tensor, y: tf.Tensor, *, kappa: tf.Tensor | float
                   ) -> tf.Tensor:
    """The certified-training loss per example: ``kappa * CE(clean) + (1 - kappa) * CE(-margins)``.

    Args:
        clean_logits: Logits on the clean batch (N, K).
        margins: Margin lower bounds (N, K), 0 at the labels (:func:`bound_margins`).
        y: Integer labels (N,).
        kappa: The clean term's weight, in [0, 1].

    Returns:
        A tensor (N,) in the logits' dtype, values >= 0.
    """
    kappa = tf.cast(kappa, clean_logits.dtype)
    robust = losses.cross_entropy(tf.cast(worst_case_logits(margins), clean_logits.dtype), y)
    return kappa * losses.cross_entropy(clean_logits, y) + (1.0 - kappa) * robust


class CertifiedTrainer(keras.Model):
    """Train ``base_model`` with IBP, CROWN-IBP or Gaussian noise in ``fit``; else behave as it.

    ``fit`` logs ``loss`` and ``accuracy`` (clean; on the noisy inputs for gaussian) and,
    for ibp and crown_ibp, ``verified_accuracy`` (the batch's share certified at the
    current radius by the training bound), ``eps`` and ``kappa`` (crown_ibp: ``beta``).
    ``evaluate`` (and validation) logs the clean ``loss``, ``accuracy`` and, for ibp and
    crown_ibp, ``verified_accuracy`` by IBP at ``config.eps``; for gaussian,
    ``noisy_accuracy`` on the images plus noise drawn the same way at every call. ``save``
    saves the base model.

    Args:
        base_model: The Keras 2 logits model, trained in place (ibp, crown_ibp: made of
            the layers :mod:`defenses.bounds` supports).
        config: A :class:`CertifiedTrainingConfig` or :class:`GaussianAugmentationConfig`.
        steps_per_epoch: Optimizer steps per epoch; required for ibp and crown_ibp with a
            warm-up or ramp.

    Raises:
        ValueError: A schedule without ``steps_per_epoch``, ``steps_per_epoch`` < 1, or a
            layer the bounds do not support (named).
    """

    def __init__(self, base_model: keras.Model, config, *, steps_per_epoch: int | None = None):
        super().__init__(name=f"{config.method}_trainer")
        self.base_model = base_model
        self.config = config
        self._bounded = isinstance(config, CertifiedTrainingConfig)
        self._steps_per_epoch = 1
        if self._bounded and config.warmup_epochs + config.ramp_epochs > 0:
            if steps_per_epoch is None:
                raise ValueError("a warm-up or ramp needs steps_per_epoch (batches per epoch)")
            self._steps_per_epoch = check_iterations(steps_per_epoch, "steps_per_epoch")
        self._net = bounds.network(base_model) if self._bounded else None
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self._verified = keras.metrics.Mean(name="verified_accuracy")
        self._noisy_accuracy = keras.metrics.SparseCategoricalAccuracy(name="noisy_accuracy")
        self._trackers = {name: keras.metrics.Mean(name=name) for name in ("eps", "kappa", "beta")}

    def call(self, inputs, training=None):
        return self.base_model(inputs, training=training)

    @property
    def metrics(self):
        return [self._loss_tracker, self._accuracy, self._verified, self._noisy_accuracy, *self._trackers.values()]

    def _seed(self) -> tf.Tensor:
        context = tf.distribute.get_replica_context()
        replica = tf.cast(context.replica_id_in_sync_group if context is not None else 0, tf.int64)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        counter = tf.cast(self.optimizer.iterations, tf.int64) * replicas + replica
        return tf.stack([tf.constant(self.config.seed, tf.int64), counter])

    def noisy(self, x: tf.Tensor) -> tf.Tensor:
        """Add the step's Gaussian noise (gaussian only), unclipped.

        Args:
            x: The clean batch (N, ...).

        Returns:
            ``x + sigma * N(0, 1)``, shaped like ``x``, from a stateless seed of
            ``(config.seed, optimizer step, replica)``.
        """
        x = tf.convert_to_tensor(x)
        return x + self.config.sigma * tf.random.stateless_normal(tf.shape(x), self._seed(), dtype=x.dtype)

    def training_loss(self, x: tf.Tensor, y: tf.Tensor):
        """Compute the batch's training objective at the current step.

        Args:
            x: The clean batch (N, ...).
            y: Integer labels (N,).

        Returns:
            ``(loss, logits, logs)``: the mean loss, a scalar including the base model's own
            losses; the logits (N, K) the accuracy is measured on; the scalar tensors to log
            (ibp, crown_ibp: ``eps``, ``kappa``, ``beta``, ``verified`` (N,) bool).
        """
        if not self._bounded:
            logits = self.base_model(self.noisy(x), training=True)
            loss, logs = tf.reduce_mean(losses.cross_entropy(logits, y)), {}
        else:
            logs = schedule(self.config, self.optimizer.iterations, steps_per_epoch=self._steps_per_epoch)
            logits = self.base_model(x, training=True)
            margins = bound_margins(self._net, x, y, logs["eps"], method=self.config.method, beta=logs["beta"],
                                    clip=self.config.clip)
            loss = tf.reduce_mean(certified_loss(logits, margins, y, kappa=logs["kappa"]))
            logs["verified"] = bounds.certified(margins, y)
        if self.base_model.losses:
            loss += tf.add_n(self.base_model.losses)
        return loss, logits, logs

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.base_model.trainable_variables
        with tf.GradientTape() as tape:
            loss, logits, logs = self.training_loss(x, y)
            # The optimizer sums gradients over replicas: scale each replica's share.
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        self._loss_tracker.update_state(loss)
        self._accuracy.update_state(y, logits)
        results = {"loss": self._loss_tracker.result(), "accuracy": self._accuracy.result()}
        if self._bounded:
            self._verified.update_state(tf.cast(logs.pop("verified"), tf.float32))
            results["verified_accuracy"] = self._verified.result()
            names = ("eps", "kappa", "beta") if self.config.method == "crown_ibp" else ("eps", "kappa")
            for name in names:
                self._trackers[name].update_state(logs[name])
                results[name] = self._trackers[name].result()
        return results

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self.base_model(x, training=False)
        self._loss_tracker.update_state(tf.reduce_mean(losses.cross_entropy(logits, y)))
        self._accuracy.update_state(y, logits)
        results = {"loss": self._loss_tracker.result(), "accuracy": self._accuracy.result()}
        if self._bounded:
            margins = bounds.margin_lower_bounds(self._net, x, y, self.config.eps, method="ibp",
                                                 clip=self.config.clip)
            self._verified.update_state(tf.cast(bounds.certified(margins, y), tf.float32))
            results["verified_accuracy"] = self._verified.result()
        else:
            x = tf.convert_to_tensor(x)
            noise = tf.random.stateless_normal(tf.shape(x), [self.config.seed, VALIDATION_NOISE_SEED], dtype=x.dtype)
            self._noisy_accuracy.update_state(y, self.base_model(x + self.config.sigma * noise, training=False))
            results["noisy_accuracy"] = self._noisy_accuracy.result()
        return results

    def save(self, *args, **kwargs):
        """Save the base model (the trainer adds no variables of its own)."""
        self.base_model.save(*args, **kwargs)


def fit(base_model: keras.Model, train: tf.data.Dataset, validation: tf.data.Dataset | None = None, *,
        config, epochs: int, learning_rate: float = 1e-3,
        callbacks: list[keras.callbacks.Callback] | None = None, verbose: int | str = "auto",
        steps_per_epoch: int | None = None) -> keras.callbacks.History:
    """Train ``base_model`` in place with ``config``'s certified training or Gaussian augmentation.

    Callbacks see the :class:`CertifiedTrainer` as ``self.model``.

    Args:
        base_model: The Keras 2 logits model to train.
        train: A batched ``(x, y)`` dataset with x inside ``config.clip``.
        validation: A batched ``(x, y)`` dataset for Keras's validation, or None.
        config: A :class:`CertifiedTrainingConfig` or :class:`GaussianAugmentationConfig`.
        epochs: Epochs to train, >= 1.
        learning_rate: Adam's learning rate.
        callbacks: Keras callbacks, or None.
        verbose: Keras's ``verbose`` for ``fit``.
        steps_per_epoch: Batches per epoch, for the schedule; None: the dataset's cardinality.

    Returns:
        The Keras ``History`` of the trainer.

    Raises:
        ValueError: ``epochs`` < 1, a schedule whose batches per epoch cannot be known, or
            a layer the bounds do not support.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if steps_per_epoch is None and isinstance(config, CertifiedTrainingConfig):
        cardinality = int(train.cardinality())
        if cardinality < 1 and config.warmup_epochs + config.ramp_epochs > 0:
            raise ValueError("cannot infer the dataset's batches per epoch; pass steps_per_epoch")
        steps_per_epoch = cardinality if cardinality >= 1 else None
    with base_model.distribute_strategy.scope():
        trainer = CertifiedTrainer(base_model, config, steps_per_epoch=steps_per_epoch)
        trainer.build(base_model.input_shape)  # built before fit, so BackupAndRestore can restore it
        trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    distribute.report_global_metrics(trainer)
    return trainer.fit(train, validation_data=validation, epochs=epochs, callbacks=list(callbacks or []),
                       verbose=verbose)
