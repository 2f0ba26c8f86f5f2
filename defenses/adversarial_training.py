"""Adversarial training: Madry PGD-AT, TRADES and fast FGSM with random start.

    from defenses import adversarial_training as at
    config = at.preset("pgd_at", "mnist")                  # or AdversarialTrainingConfig(...)
    history = at.fit(base_model, train_ds, val_ds, config=config, epochs=10)

``fit`` wraps the base (logits) model in :class:`AdversarialTrainer`, a ``keras.Model``
whose ``train_step`` crafts adversarial examples with a ``GradientTape`` inside the
compiled step and trains on them; the base model is trained in place and stays a plain
logits model. Each method, per batch (x, y):

``pgd_at`` (Madry et al. 2018)
    ``x_adv`` = ``steps`` steps of projected gradient ascent on the cross-entropy from a
    uniform random point of the eps-ball (``random_start``); loss ``CE(y, f(x_adv))``.
``trades`` (Zhang et al. 2019)
    ``x_adv`` = ``steps`` steps ascending ``KL(p(x) || p(x_adv))`` from
    ``x + 0.001 * N(0, 1)`` (the paper's start); loss
    ``CE(y, f(x)) + beta * KL(p(x) || p(x_adv))``, the KL summed over classes and
    averaged over the batch (see :func:`trades_loss`).
``fgsm_rs`` (Wong, Rice & Kolter 2020, "Fast is better than free")
    one signed step of ``step_size`` (default ``1.25 * eps``) from a uniform random point
    of the eps-ball, projected back; loss ``CE(y, f(x_adv))``. Fast, but prone to
    *catastrophic overfitting*: within a few batches the model learns to defeat FGSM
    (its gradients stop pointing to the adversarial examples) while PGD accuracy falls
    to near zero. Monitor it with ``defenses.callbacks.CatastrophicOverfittingMonitor``
    (``advrobust.training.train`` adds one for ``fgsm_rs``, checking 4 times an epoch).

Adversarial weight perturbation (``awp_gamma > 0``; Wu, Xia & Wang 2020, "Adversarial
weight perturbation helps robust generalization"), for pgd_at and trades: after crafting
the batch's examples, each weight matrix and kernel ``w`` (rank >= 2; biases and
normalisation scales are left alone) is moved by ``awp_gamma * ||w|| * g / ||g||``, with
``g`` the gradient of the training loss on those examples (one normalised ascent step,
the direction of the authors' one-step proxy optimizer); the gradient of the loss at the
moved weights updates the original weights. It flattens the robust loss landscape over
the weights and narrows the gap between training and test robustness; the authors use
``awp_gamma = 0.01`` for PGD-AT and ``0.005`` for TRADES. It costs one more forward and
backward pass per batch. Under a ``tf.distribute`` strategy the replicas average their
``g`` first, so every replica moves the weights alike.

The attack runs in **inference mode** (``training=False``: Dropout off, as at test
time); the training loss uses ``training=True``. ``attacks.pgd`` itself cannot run
inside a compiled ``train_step`` (it validates and batches on the NumPy side), so
:func:`perturb` assembles the same iteration from ``attacks``' own pieces
(``attacks.loop.start_point``, ``attacks.norms.steepest_step`` and ``project``,
``attacks.losses``); ``tests/defenses/test_adversarial_training.py`` checks it against ``attacks.fgsm``
and a hand-written PGD.

Epsilon warm-up (``warmup_epochs``): the radius grows linearly from ``eps /
warmup_steps`` to ``eps`` over the first ``warmup_epochs`` epochs (per optimizer step),
with the step size scaled alike; it helps MNIST at eps 0.3, where PGD-AT from a random
initialisation can stall at chance accuracy. Random starts use stateless seeds derived
from ``seed``, the optimizer step and the replica, so runs repeat exactly and replicas
under a ``tf.distribute`` strategy draw different starts.

Under a ``tf.distribute`` strategy (build the base model inside ``strategy.scope()``),
each replica crafts adversarial examples for its share of the batch; the loss is
divided by the number of replicas because the optimizer sums replica gradients.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

from attacks import losses, norms
from attacks.backend import keras, tf
from attacks.loop import start_point
from defenses import distribute
from defenses.validation import check_clip, check_iterations, check_nonnegative, check_radius

METHODS: tuple[str, ...] = ("pgd_at", "trades", "fgsm_rs")
REL_STEP_SIZE = {"pgd_at": 2.5, "trades": 2.5, "fgsm_rs": 1.25}  # step = rel * eps / steps
TRADES_START_STD = 0.001  # the TRADES paper's random start: x + 0.001 * N(0, 1)

# Per method and preset, the fields it fixes; the step size follows REL_STEP_SIZE.
# "quick" (demos) costs about 3 forward-backward passes per batch, as NSL's quick preset.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "pgd_at": {
        # Madry et al. used 40 steps of 0.01 at eps 0.3; 10 steps of 2.5 * eps / 10
        # reach the same ball at a quarter of the cost. The warm-up avoids the stall.
        "mnist": {"eps": 0.3, "steps": 10, "warmup_epochs": 1.0},
        "fashion_mnist": {"eps": 0.1, "steps": 7},
        "quick": {"eps": 0.1, "steps": 2},
    },
    "trades": {
        "mnist": {"eps": 0.3, "steps": 10, "beta": 6.0, "warmup_epochs": 1.0},
        "fashion_mnist": {"eps": 0.1, "steps": 7, "beta": 6.0},
        "quick": {"eps": 0.1, "steps": 2, "beta": 6.0},
    },
    "fgsm_rs": {
        "mnist": {"eps": 0.3, "steps": 1},
        "fashion_mnist": {"eps": 0.1, "steps": 1},
        "quick": {"eps": 0.1, "steps": 1},
    },
}
PARAMS: tuple[str, ...] = ("norm", "steps", "step_size", "random_start", "beta", "warmup_epochs", "clip", "seed",
                           "awp_gamma")


@dataclass(frozen=True)
class AdversarialTrainingConfig:
    """One adversarial-training method with its attack settings.

    Checked on construction; ``norm`` is stored canonical (``"inf"`` or ``"l2"``) and
    ``clip`` as a float pair.

    Attributes:
        method: ``"pgd_at"``, ``"trades"`` or ``"fgsm_rs"``.
        eps: The radius trained for (see :func:`defenses.check_radius`).
        norm: ``"inf"`` or ``"l2"`` (aliases as in :func:`attacks.norms.canonical_norm`).
        steps: Attack steps per batch, >= 1; exactly 1 for fgsm_rs.
        step_size: The attack's step; None: ``2.5 * eps / steps`` (pgd_at, trades) or
            ``1.25 * eps`` (fgsm_rs).
        random_start: Start pgd_at from a uniform random point of the ball (trades and
            fgsm_rs always use their papers' starts).
        beta: The TRADES trade-off, >= 0 (ignored otherwise).
        warmup_epochs: Epochs over which eps grows linearly to its value, >= 0.
        clip: The valid input range ``(low, high)``, or None.
        seed: Seeds the random starts (stateless, with the optimizer step and the replica).
        awp_gamma: The relative size of the adversarial weight perturbation, >= 0 (0: none;
            see the module docstring); pgd_at and trades only.

    Raises:
        ValueError: An unknown method or norm, a bad clip or eps, ``steps`` < 1,
            ``steps != 1`` for fgsm_rs, ``step_size`` <= 0, a negative ``beta``,
            ``warmup_epochs`` or ``awp_gamma``, or ``awp_gamma > 0`` for fgsm_rs.
    """

    method: str
    eps: float
    norm: str = "inf"
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    beta: float = 6.0
    warmup_epochs: float = 0.0
    clip: tuple[float, float] | None = (0.0, 1.0)
    seed: int = 0
    awp_gamma: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown adversarial-training method {self.method!r}; choose one of: "
                             f"{', '.join(METHODS)}")
        object.__setattr__(self, "norm", norms.canonical_norm(self.norm))
        object.__setattr__(self, "clip", check_clip(self.clip))
        check_radius(self.eps, self.norm, self.clip)
        check_iterations(self.steps, "steps")
        if self.method == "fgsm_rs" and self.steps != 1:
            raise ValueError(f"fgsm_rs takes exactly one step, got steps={self.steps}; use pgd_at for more")
        if self.step_size is not None:
            check_nonnegative(self.step_size, "step_size", strict=True)
        check_nonnegative(self.beta, "beta")
        check_nonnegative(self.warmup_epochs, "warmup_epochs")
        check_nonnegative(self.awp_gamma, "awp_gamma")
        if self.awp_gamma > 0 and self.method == "fgsm_rs":
            raise ValueError("awp_gamma applies to pgd_at and trades, not fgsm_rs")

    @property
    def relative_step_size(self) -> float:
        """The step size as a multiple of ``eps / steps`` (what it is during warm-up), a float > 0."""
        if self.step_size is None:
            return REL_STEP_SIZE[self.method]
        return self.step_size * self.steps / self.eps

    def to_dict(self) -> dict[str, Any]:
        """Describe the settings as a JSON-ready record, with the step size resolved.

        Returns:
            ``{"defense": method, **fields}`` with ``clip`` as a list (or None) and
            ``step_size`` the absolute step at full ``eps``.
        """
        record = asdict(self)
        record["clip"] = None if self.clip is None else list(self.clip)
        record["step_size"] = self.relative_step_size * self.eps / self.steps
        return {"defense": self.method, **record}


def preset(method: str, name: str, *, eps: float | None = None, **overrides: Any) -> AdversarialTrainingConfig:
    """Build the config of a preset, optionally changed.

    Args:
        method: ``"pgd_at"``, ``"trades"`` or ``"fgsm_rs"``.
        name: A preset of ``method`` in ``PRESETS``: ``"mnist"``, ``"fashion_mnist"`` or
            ``"quick"``.
        eps: Replaces the preset's radius; None keeps it.
        **overrides: Any of ``PARAMS``.

    Returns:
        The checked :class:`AdversarialTrainingConfig`.

    Raises:
        ValueError: An unknown method, preset or parameter, or a bad value (see
            :class:`AdversarialTrainingConfig`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown adversarial-training method {method!r}; choose one of: {', '.join(METHODS)}")
    if name not in PRESETS[method]:
        raise ValueError(f"unknown {method} preset {name!r}; choose one of: {', '.join(PRESETS[method])}")
    unknown = sorted(set(overrides) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown {method} parameter(s) {unknown}; choose from: {', '.join(PARAMS)}")
    fields = {**PRESETS[method][name], **overrides}
    if eps is not None:
        fields["eps"] = eps
    return AdversarialTrainingConfig(method=method, **fields)


def perturb(model: Callable, x: tf.Tensor, objective: Callable[[tf.Tensor], tf.Tensor], *, eps: tf.Tensor,
            norm: str, steps: int, step_size: tf.Tensor, start: tf.Tensor, clip: tuple[float, float] | None
            ) -> tf.Tensor:
    """Craft adversarial examples by ``steps`` steps of projected gradient ascent.

    Each step: ``x_t <- clip(x + project(x_t + step_size * steepest_step(g) - x))``, with
    ``g`` the gradient of ``objective(model(x_t))``; the step is
    :func:`attacks.norms.ascent_step`, the one the attacks use. Works eagerly and inside
    ``tf.function``.

    The steps are unrolled (a Python loop), not a ``tf.while_loop``: with oneDNN on CPU a
    traced while loop around MaxPool falls back to Eigen's slower pooling gradient in some
    traces (see ``attacks.loop._build``). Training crafts with few steps (10 for the
    presets), so the unrolled graph stays small.

    Args:
        model: The model, called as given (pass an inference-mode function).
        x: The clean inputs, a float tensor (N, ...).
        objective: Maps logits (N, C) to the per-example values (N,) to ascend.
        eps: The radius, a scalar or a per-example (N,) tensor.
        norm: ``"inf"`` or ``"l2"``.
        steps: The number of steps, a Python int >= 1.
        step_size: The step, a scalar or a per-example (N,) tensor.
        start: The first iterate, shaped like ``x``, inside the ball and ``clip``.
        clip: The valid input range ``(low, high)``, or None.

    Returns:
        The last iterate, a tensor shaped like ``x`` in its dtype, inside each ball and
        ``clip``, with no gradient path to ``x`` or the model.

    Raises:
        ValueError: ``steps`` is not an int >= 1.
    """
    steps = check_iterations(steps, "steps")
    n = tf.shape(x)[0]
    eps = tf.broadcast_to(tf.cast(eps, x.dtype), [n])
    alpha = tf.reshape(tf.broadcast_to(tf.cast(step_size, x.dtype), [n]),
                       tf.concat([[n], tf.ones([tf.rank(x) - 1], tf.int32)], 0))
    x_t = tf.convert_to_tensor(start)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            total = tf.reduce_sum(objective(model(x_t)))
        x_t = norms.ascent_step(x, x_t, tape.gradient(total, x_t), alpha, eps, norm, clip)
    return tf.stop_gradient(x_t)


def kl_divergence(clean_logits: tf.Tensor, adv_logits: tf.Tensor) -> tf.Tensor:
    """Compute ``KL(softmax(clean) || softmax(adv))`` per example, summed over classes.

    Args:
        clean_logits: Logits on the clean inputs, a float tensor (N, C).
        adv_logits: Logits on the adversarial inputs, (N, C).

    Returns:
        A tensor (N,) in the logits' dtype, values >= 0.
    """
    clean_log_p = tf.nn.log_softmax(clean_logits, axis=-1)
    adv_log_p = tf.nn.log_softmax(adv_logits, axis=-1)
    return tf.reduce_sum(tf.exp(clean_log_p) * (clean_log_p - adv_log_p), axis=-1)


def trades_loss(clean_logits: tf.Tensor, adv_logits: tf.Tensor, labels: tf.Tensor, *, beta: float) -> tf.Tensor:
    """Compute the TRADES loss per example: ``CE(y, clean) + beta * KL(p(clean) || p(adv))``.

    As in the authors' code (``nn.KLDivLoss(size_average=False) / batch_size``), the KL
    is summed over classes; gradients flow through both terms. Average over the batch
    for the training loss.

    Args:
        clean_logits: Logits on the clean inputs, a float tensor (N, C).
        adv_logits: Logits on the adversarial inputs, (N, C).
        labels: Integer labels (N,).
        beta: The weight of the KL term, >= 0.

    Returns:
        A tensor (N,) in the logits' dtype, values >= 0.
    """
    return losses.cross_entropy(clean_logits, labels) + beta * kl_divergence(clean_logits, adv_logits)


class AdversarialTrainer(keras.Model):
    """Train ``base_model`` adversarially in ``fit``; otherwise behave as ``base_model``.

    ``fit`` logs ``loss`` (the training objective), ``adv_accuracy`` (accuracy on the
    crafted examples, training mode), ``eps`` (the radius used, < config.eps during
    warm-up) and for TRADES ``accuracy`` (clean); ``evaluate`` (and validation) logs
    the clean ``loss`` and ``accuracy``. With ``awp_gamma > 0`` the logged training
    ``loss`` and accuracies are those at the perturbed weights the gradient is taken at.
    ``save`` saves the plain base model.

    Args:
        base_model: The Keras 2 logits model, trained in place.
        config: The method and its settings.
        steps_per_epoch: Optimizer steps per epoch; required with ``warmup_epochs > 0``.

    Raises:
        ValueError: ``warmup_epochs > 0`` without ``steps_per_epoch``, or
            ``steps_per_epoch`` < 1.
    """

    def __init__(self, base_model: keras.Model, config: AdversarialTrainingConfig, *,
                 steps_per_epoch: int | None = None):
        super().__init__(name=f"{config.method}_trainer")
        if config.warmup_epochs > 0:
            if steps_per_epoch is None:
                raise ValueError("warmup_epochs > 0 needs steps_per_epoch (batches per epoch)")
            check_iterations(steps_per_epoch, "steps_per_epoch")
        self.base_model = base_model
        self.config = config
        self._warmup_steps = config.warmup_epochs * (steps_per_epoch or 0)
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self._adv_accuracy = keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy")
        self._eps_tracker = keras.metrics.Mean(name="eps")

    def call(self, inputs, training=None):
        return self.base_model(inputs, training=training)

    @property
    def metrics(self):
        # All four, so Keras resets each every epoch; train_step reports "accuracy" (clean)
        # only for TRADES, which computes clean logits anyway.
        return [self._loss_tracker, self._accuracy, self._adv_accuracy, self._eps_tracker]

    def current_eps(self) -> tf.Tensor:
        """Compute the radius for the next optimizer step (warm-up included).

        Returns:
            A scalar float32 tensor in (0, config.eps].
        """
        eps = tf.constant(self.config.eps, tf.float32)
        if self._warmup_steps <= 0:
            return eps
        progress = tf.cast(self.optimizer.iterations + 1, tf.float32) / float(self._warmup_steps)
        return eps * tf.minimum(1.0, progress)

    def _seed(self) -> tf.Tensor:
        context = tf.distribute.get_replica_context()
        replica = tf.cast(context.replica_id_in_sync_group if context is not None else 0, tf.int64)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        counter = tf.cast(self.optimizer.iterations, tf.int64) * replicas + replica
        return tf.stack([tf.constant(self.config.seed, tf.int64), counter])

    def craft(self, x: tf.Tensor, y: tf.Tensor, eps: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Craft the training-time adversarial examples of the configured method, in inference mode.

        Args:
            x: The clean batch, a float tensor (N, ...).
            y: Integer labels (N,).
            eps: The radius for this step, a scalar tensor.
            seed: A stateless seed, an int64 tensor of shape (2,), for the random start.

        Returns:
            ``x_adv``, a tensor shaped like ``x``, inside the eps-ball and ``config.clip``, with
            no gradient path to ``x`` or the model.
        """
        config = self.config
        x = tf.convert_to_tensor(x)
        step_size = config.relative_step_size * eps / config.steps
        inference = lambda t: self.base_model(t, training=False)  # noqa: E731
        n = tf.shape(x)[0]
        eps_n = tf.fill([n], tf.cast(eps, x.dtype))
        if config.method == "trades":
            clean_logits = tf.stop_gradient(inference(x))
            start = x + TRADES_START_STD * tf.random.stateless_normal(tf.shape(x), seed, dtype=x.dtype)
            start = start if config.clip is None else tf.clip_by_value(start, *config.clip)
            objective = lambda logits: kl_divergence(clean_logits, logits)  # noqa: E731
        else:
            start = start_point(x, eps_n, norm=config.norm, seed=seed, clip=config.clip,
                                random=config.method == "fgsm_rs" or config.random_start)
            objective = lambda logits: losses.cross_entropy(logits, y)  # noqa: E731
        return perturb(inference, x, objective, eps=eps_n, norm=config.norm, steps=config.steps,
                       step_size=step_size, start=start, clip=config.clip)

    def training_loss(self, x: tf.Tensor, y: tf.Tensor, x_adv: tf.Tensor):
        """Compute the batch's training objective in training mode.

        Args:
            x: The clean batch (N, ...).
            y: Integer labels (N,).
            x_adv: The crafted examples, shaped like ``x``.

        Returns:
            ``(loss, adv_logits, clean_logits)``: the mean loss, a scalar including the base
            model's own losses (regularizers); the logits (N, C) on ``x_adv``; the clean logits
            (N, C) for TRADES, else None.
        """
        adv_logits = self.base_model(x_adv, training=True)
        clean_logits = None
        if self.config.method == "trades":
            clean_logits = self.base_model(x, training=True)
            per_example = trades_loss(clean_logits, adv_logits, y, beta=self.config.beta)
        else:
            per_example = losses.cross_entropy(adv_logits, y)
        loss = tf.reduce_mean(per_example)
        if self.base_model.losses:
            loss += tf.add_n(self.base_model.losses)
        return loss, adv_logits, clean_logits

    def weight_perturbation(self, x: tf.Tensor, y: tf.Tensor, x_adv: tf.Tensor):
        """Compute the adversarial weight perturbation for this batch.

        Each delta is ``awp_gamma * ||w|| * g / ||g||`` for its variable ``w`` (rank >= 2),
        ``g`` the gradient of :meth:`training_loss`, averaged over replicas.

        Args:
            x: The clean batch (N, ...).
            y: Integer labels (N,).
            x_adv: The crafted examples, shaped like ``x``.

        Returns:
            ``(variables, deltas)``: the trainable variables of rank >= 2 that have a gradient,
            and one tensor per variable, of its shape.
        """
        variables = [v for v in self.base_model.trainable_variables if v.shape.rank >= 2]
        with tf.GradientTape() as tape:
            loss = self.training_loss(x, y, x_adv)[0]
        gradients = tape.gradient(loss, variables)
        pairs = [(v, g) for v, g in zip(variables, gradients) if g is not None]
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            reduced = context.all_reduce(tf.distribute.ReduceOp.MEAN, [g for _, g in pairs])
            pairs = [(v, g) for (v, _), g in zip(pairs, reduced)]
        gamma = self.config.awp_gamma
        deltas = [gamma * tf.norm(v) * g / (tf.norm(g) + 1e-12) for v, g in pairs]
        return [v for v, _ in pairs], deltas

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        eps = self.current_eps()
        x_adv = self.craft(x, y, eps, self._seed())
        moved = None
        if self.config.awp_gamma > 0:
            moved = self.weight_perturbation(x, y, x_adv)
            _shift_variables(*moved, sign=1.0)
        variables = self.base_model.trainable_variables
        with tf.GradientTape() as tape:
            loss, adv_logits, clean_logits = self.training_loss(x, y, x_adv)
            # The optimizer sums gradients over replicas: scale each replica's share.
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        gradients = tape.gradient(scaled, variables)
        if moved is not None:
            _shift_variables(*moved, sign=-1.0)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self._loss_tracker.update_state(loss)
        self._adv_accuracy.update_state(y, adv_logits)
        self._eps_tracker.update_state(eps)
        if clean_logits is not None:
            self._accuracy.update_state(y, clean_logits)
        logs = {"loss": self._loss_tracker.result(), "adv_accuracy": self._adv_accuracy.result(),
                "eps": self._eps_tracker.result()}
        if clean_logits is not None:
            logs["accuracy"] = self._accuracy.result()
        return logs

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self.base_model(x, training=False)
        self._loss_tracker.update_state(tf.reduce_mean(losses.cross_entropy(logits, y)))
        self._accuracy.update_state(y, logits)
        return {"loss": self._loss_tracker.result(), "accuracy": self._accuracy.result()}

    def save(self, *args, **kwargs):
        """Save the base model (the trainer adds no variables of its own)."""
        self.base_model.save(*args, **kwargs)


def _shift_variables(variables: list[tf.Variable], deltas: list[tf.Tensor], *, sign: float) -> None:
    """``v += sign * delta`` for each pair, from inside a replica (``train_step``): the
    update goes through the strategy, as an optimizer's does, so it also works on
    mirrored variables."""
    def update(strategy, deltas):
        for variable, delta in zip(variables, deltas):
            strategy.extended.update(variable, lambda v, d: v.assign_add(sign * d), args=(delta,), group=False)

    tf.distribute.get_replica_context().merge_call(update, args=(deltas,))


def fit(base_model: keras.Model, train: tf.data.Dataset, validation: tf.data.Dataset | None = None, *,
        config: AdversarialTrainingConfig, epochs: int, learning_rate: float = 1e-3,
        callbacks: list[keras.callbacks.Callback] | None = None, verbose: int | str = "auto",
        steps_per_epoch: int | None = None) -> keras.callbacks.History:
    """Train ``base_model`` in place with ``config``'s adversarial training.

    Build ``base_model`` inside a strategy's scope to train distributed. Callbacks see the
    :class:`AdversarialTrainer` as ``self.model``.

    Args:
        base_model: The Keras 2 logits model to train.
        train: A batched ``(x, y)`` dataset with x inside ``config.clip``.
        validation: A batched ``(x, y)`` dataset for Keras's validation, or None.
        config: The method and its settings.
        epochs: Epochs to train, >= 1.
        learning_rate: Adam's learning rate.
        callbacks: Keras callbacks, or None.
        verbose: Keras's ``verbose`` for ``fit``.
        steps_per_epoch: Batches per epoch, for the eps warm-up; None: the dataset's
            cardinality.

    Returns:
        The Keras ``History`` of the trainer.

    Raises:
        ValueError: ``epochs`` < 1, or a warm-up with neither ``steps_per_epoch`` nor a
            known dataset cardinality.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if steps_per_epoch is None and config.warmup_epochs > 0:
        cardinality = int(train.cardinality())
        if cardinality < 1:
            raise ValueError("cannot infer the dataset's batches per epoch; pass steps_per_epoch")
        steps_per_epoch = cardinality
    with base_model.distribute_strategy.scope():
        trainer = AdversarialTrainer(base_model, config, steps_per_epoch=steps_per_epoch)
        trainer.build(base_model.input_shape)  # built before fit, so BackupAndRestore can restore it
        trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    distribute.report_global_metrics(trainer)
    return trainer.fit(train, validation_data=validation, epochs=epochs, callbacks=list(callbacks or []),
                       verbose=verbose)

