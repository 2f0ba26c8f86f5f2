"""Adversarial regularization with Neural Structured Learning (NSL 1.4.0) for advrobust models.

    from defenses import nsl
    config = nsl.preset("fashion_mnist")                  # or nsl.NSLConfig(...)
    history = nsl.fit(base_model, train_ds, val_ds, config=config, epochs=5)
    # base_model (a plain logits model) is trained in place; save or attack it as usual

``train_ds``/``val_ds`` are ordinary batched ``(x, y)`` datasets; NSL's dict-input
convention is handled here. NSL trains the *base model's* variables (the wrapper adds
none), so after :func:`fit` the base model is the defended model.

The objective NSL minimises per batch::

    CE(y, f(x)) + multiplier * CE(y, f(x_adv))

where ``x_adv`` is found by ``pgd_iterations`` signed (L-inf) or normalised (L2) gradient
steps of length ``step_size``, each projected onto the ``eps``-ball around ``x`` and
clipped to ``clip``.

Mapping onto ``nsl.configs.make_adv_reg_config``
------------------------------------------------
=================  ========================  ===============================================
NSLConfig          make_adv_reg_config       meaning
=================  ========================  ===============================================
multiplier         multiplier                weight of the adversarial loss term
norm "inf"/"l2"    adv_grad_norm             "infinity"/"l2": the step direction (sign of the
                                             gradient / gradient over its L2 norm) and the
                                             ball the perturbation is projected onto
step_size          adv_step_size             length of ONE step (L-inf: change per pixel)
pgd_iterations     pgd_iterations            number of steps (1 = FGSM-like)
eps                pgd_epsilon               radius of the ball around the clean input;
                                             None: no projection at all
clip               clip_value_min/max        valid input range, applied after every step
random_init        random_init               start from a uniform point of the eps-ball
=================  ========================  ===============================================

``adv_step_size`` is not the radius. With one iteration and no ``pgd_epsilon`` the
perturbation has length ``adv_step_size`` (it *is* FGSM's epsilon); with k iterations and
no ``pgd_epsilon`` it can grow to ``k * adv_step_size``; ``pgd_epsilon`` only bounds it.
To train for robustness at an L-inf radius eps, set ``norm="inf"``, ``eps`` to that
radius and ``step_size`` to about ``2.5 * eps / pgd_iterations`` (Madry et al.'s rule,
also the default of ``attacks.pgd``), which lets the iterate reach the ball's surface.

NSL's defaults (L2 norm, ``adv_step_size=0.001``, one step) perturb a 28x28 image by an
L2 length of 0.001, about 4e-5 per pixel on average: training with them changes almost
nothing, and gives no measurable L-inf robustness. The seed lecture's
``make_adv_reg_config(multiplier=0.2, adv_step_size=0.05)`` keeps the L2 norm: an L2
step of 0.05 (on average under 0.002 per pixel) -- a regulariser, not an L-inf defense.

What NSL 1.4.0 does (read in its source, ``keras/adversarial_regularization.py`` and
``lib/adversarial_neighbor.py``)
-----------------------------------------------------------------------------------
- The first step reuses the gradient of the clean labeled loss (no extra forward pass);
  steps 2..k run in a ``tf.while_loop``. Each step is projected (``pgd_epsilon``) and
  then clipped; the perturbation is always measured from the clean input.
- The base model is called with the ``training`` flag of the wrapper's call: during
  ``fit`` the adversarial examples are crafted, and their loss taken, with **Dropout
  active** (each PGD step sees a fresh dropout mask, a noisier and weaker attack than
  the inference-mode attack used for evaluation). ``evaluate`` crafts with
  ``training=False``. advrobust keeps NSL's behaviour; ``defenses.adversarial_training``
  crafts in inference mode.
- ``random_init`` draws with ``tf.random.uniform(t.shape)``, which fails inside Keras's
  ``fit`` when the batch dimension is unknown ("Cannot convert a partially known
  TensorShape"). :func:`fit` therefore drops the last partial batch when
  ``random_init=True``, so every batch has a static shape.
- A functional base model receives the features by its ``Input`` names: the dict key
  must be the input's name (``"image"`` for advrobust models), not NSL tutorials'
  ``"feature"``. Passing the config positionally, as in
  ``AdversarialRegularization(model, adv_config)`` on the lecture slide, silently sets
  ``label_keys``; always pass ``adv_config=`` by keyword.
- Compiled with ``metrics=["accuracy"]``, NSL renames the metric to
  ``sparse_categorical_accuracy``; :func:`wrap` passes an accuracy metric named
  ``accuracy`` so logs keep ``accuracy``/``val_accuracy`` (clean accuracy). ``loss`` and
  ``val_loss`` include ``multiplier * adversarial loss`` (NSL crafts in ``evaluate`` too).
- NSL logs once "Cannot perturb non-Tensor input: dict_keys(['label'])" (absl): the
  integer labels travel in the same dict and are, correctly, not perturbed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from attacks.backend import keras, tf
from attacks.norms import canonical_norm
from defenses import distribute
from defenses.validation import check_clip, check_iterations, check_nonnegative, check_radius
from defenses.nsl_compat import import_nsl

REL_STEP_SIZE = 2.5  # step = 2.5 * eps / iterations when a preset gives no explicit step

# Each preset is the set of NSLConfig fields it fixes; "eps": None means no projection.
# Every preset clips to [0, 1] (NSLConfig's default), which NSL's own default does not.
PRESETS: dict[str, dict[str, Any]] = {
    # The seed lecture: make_adv_reg_config(multiplier=0.2, adv_step_size=0.05), NSL's L2
    # norm, one step, no ball.
    "lecture": {"multiplier": 0.2, "norm": "l2", "eps": None, "step_size": 0.05, "pgd_iterations": 1},
    # Goal settings: the standard L-inf radii of the two datasets.
    "mnist": {"multiplier": 1.0, "norm": "inf", "eps": 0.3, "pgd_iterations": 10},
    "fashion_mnist": {"multiplier": 1.0, "norm": "inf", "eps": 0.1, "pgd_iterations": 7},
    # A demo. Measured with advrobust.training.train, 2 epochs of the CNN on all of
    # Fashion-MNIST: 400 CPU-seconds (about 3.3 min on 2 cores), clean test accuracy 0.84,
    # PGD-20 robust accuracy 0.60 at eps 0.1; with 3 iterations 480 CPU-seconds, 0.86 and
    # 0.65. The two steps are 1.25 * eps long, as FGSM-RS's.
    "quick": {"multiplier": 1.0, "norm": "inf", "eps": 0.1, "pgd_iterations": 2},
}
PARAMS: tuple[str, ...] = ("multiplier", "norm", "step_size", "pgd_iterations", "clip", "random_init")


@dataclass(frozen=True)
class NSLConfig:
    """NSL adversarial-regularization settings under explicit names (see module docstring).

    The defaults are NSL's own (L2, 0.001, one step), which give almost no robustness: use
    :func:`preset`. Checked on construction; ``norm`` is stored canonical and ``clip`` as a
    float pair.

    Attributes:
        multiplier: The weight of the adversarial loss term, >= 0.
        norm: ``"inf"`` or ``"l2"`` (NSL's ``adv_grad_norm``).
        eps: The perturbation radius (``pgd_epsilon``); None for no projection.
        step_size: The length of one step (``adv_step_size``), > 0.
        pgd_iterations: The number of steps, >= 1.
        clip: The valid input range ``(low, high)``, applied after every step, or None.
        random_init: Start from a uniform point of the eps-ball (needs ``eps``).

    Raises:
        ValueError: An unknown norm, a negative multiplier, ``step_size`` <= 0,
            ``pgd_iterations`` < 1, a bad clip or eps, or ``random_init`` without ``eps``.
    """

    multiplier: float = 0.2
    norm: str = "l2"
    eps: float | None = None
    step_size: float = 0.001
    pgd_iterations: int = 1
    clip: tuple[float, float] | None = (0.0, 1.0)
    random_init: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", canonical_norm(self.norm))
        check_nonnegative(self.multiplier, "multiplier")
        check_nonnegative(self.step_size, "step_size", strict=True)
        check_iterations(self.pgd_iterations, "pgd_iterations")
        object.__setattr__(self, "clip", check_clip(self.clip))
        check_radius(self.eps, self.norm, self.clip, allow_none=True)
        if self.random_init and self.eps is None:
            raise ValueError("random_init=True needs eps (the ball to draw the start from)")

    def make_adv_reg_config_kwargs(self) -> dict[str, Any]:
        """Translate the config into NSL's names.

        Returns:
            The keyword arguments for ``nsl.configs.make_adv_reg_config``, plain Python values:
            ``multiplier``, ``adv_step_size``, ``adv_grad_norm`` (``"infinity"`` or ``"l2"``),
            ``pgd_iterations``, ``pgd_epsilon``, ``clip_value_min``, ``clip_value_max`` and
            ``random_init``.
        """
        return {
            "multiplier": float(self.multiplier),
            "adv_step_size": float(self.step_size),
            "adv_grad_norm": "infinity" if self.norm == "inf" else "l2",
            "pgd_iterations": int(self.pgd_iterations),
            "pgd_epsilon": None if self.eps is None else float(self.eps),
            "clip_value_min": None if self.clip is None else self.clip[0],
            "clip_value_max": None if self.clip is None else self.clip[1],
            "random_init": bool(self.random_init),
        }

    def to_nsl(self):
        """Build NSL's own config object (imports NSL).

        Returns:
            An ``nsl.configs.AdvRegConfig``.

        Raises:
            KerasVersionError: ``tf.keras`` is Keras 3 in this process.
        """
        nsl = import_nsl()
        return nsl.configs.make_adv_reg_config(**self.make_adv_reg_config_kwargs())

    def to_dict(self) -> dict[str, Any]:
        """Describe the config as a JSON-ready record.

        Returns:
            ``{"defense": "nsl", **fields, "nsl_make_adv_reg_config": ...}``, with ``clip`` as a
            list (or None) and the NSL arguments the fields map to.
        """
        record = asdict(self)
        record["clip"] = None if self.clip is None else list(self.clip)
        return {"defense": "nsl", **record, "nsl_make_adv_reg_config": self.make_adv_reg_config_kwargs()}


def preset(name: str, *, eps: float | None = None, **overrides: Any) -> NSLConfig:
    """Build the NSLConfig of a preset, optionally changed.

    Step size: ``overrides["step_size"]``, else the preset's explicit one (only
    ``lecture`` has one), else ``2.5 * eps / pgd_iterations`` (computed for the final eps
    and iterations).

    Args:
        name: One of ``PRESETS``: ``"lecture"``, ``"mnist"``, ``"fashion_mnist"`` or
            ``"quick"``.
        eps: Replaces the preset's radius; None keeps it.
        **overrides: Any of ``PARAMS``.

    Returns:
        The checked :class:`NSLConfig`.

    Raises:
        ValueError: An unknown preset or parameter, ``eps=None`` without a step size, or a
            bad value (see :class:`NSLConfig`).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown NSL preset {name!r}; choose one of: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown NSL parameter(s) {unknown}; choose from: {', '.join(PARAMS)}")
    fields = {**PRESETS[name], **overrides}
    if eps is not None:
        fields["eps"] = eps
    if "step_size" not in fields:
        if fields.get("eps") is None:
            raise ValueError(f"NSL preset {name!r} with eps=None needs an explicit step_size")
        iterations = check_iterations(fields["pgd_iterations"], "pgd_iterations")
        check_radius(fields["eps"], canonical_norm(fields["norm"]), fields.get("clip", (0.0, 1.0)))
        fields["step_size"] = REL_STEP_SIZE * float(fields["eps"]) / iterations
    return NSLConfig(**fields)


def feature_key(base_model: keras.Model) -> str:
    """Find the dict key NSL feeds the base model's single input by (its Input name).

    Args:
        base_model: A Keras functional model.

    Returns:
        The name of its one input, e.g. ``"image"`` for advrobust models.

    Raises:
        ValueError: The model does not have exactly one named input.
    """
    names = list(getattr(base_model, "input_names", None) or [])
    if len(names) != 1:
        raise ValueError(f"NSL wrapping needs a model with exactly one named input, got inputs {names}")
    return names[0]


def as_nsl_dataset(dataset: tf.data.Dataset, base_model: keras.Model, *, label_key: str = "label",
                   static_batch: bool = False) -> tf.data.Dataset:
    """Map a batched ``(x, y)`` dataset to NSL's ``{input_name: x, label_key: y}`` batches.

    Args:
        dataset: A batched ``(x, y)`` dataset.
        base_model: The model NSL wraps; its input name is the features' key.
        label_key: The labels' key.
        static_batch: Drop a final partial batch, so every batch has a static shape (needed
            for NSL's ``random_init``).

    Returns:
        A ``tf.data.Dataset`` of dicts with the same batches (the last partial one dropped
        with ``static_batch``).

    Raises:
        ValueError: The model does not have exactly one named input, or the dataset is
            empty (with ``static_batch``).
    """
    key = feature_key(base_model)
    if static_batch:
        dataset = dataset.unbatch().batch(_batch_size(dataset), drop_remainder=True)

    @tf.autograph.experimental.do_not_convert  # plain dict building: nothing for AutoGraph to convert
    def to_dict(x, y):
        return {key: x, label_key: y}

    return dataset.map(to_dict, num_parallel_calls=tf.data.AUTOTUNE)


def _batch_size(dataset: tf.data.Dataset) -> int:
    for x, _ in dataset.take(1):
        return int(x.shape[0])
    raise ValueError("the training dataset is empty")


def wrap(base_model: keras.Model, config: NSLConfig, *, learning_rate: float = 1e-3, label_key: str = "label"):
    """Wrap ``base_model`` in ``nsl.keras.AdversarialRegularization``, compiled.

    Compiled with Adam(``learning_rate``), sparse cross-entropy on logits and an
    accuracy metric named ``accuracy``. Build and wrap inside a ``tf.distribute``
    strategy's scope to train distributed.

    Args:
        base_model: The Keras 2 logits model with one named input.
        config: The NSL settings.
        learning_rate: Adam's learning rate.
        label_key: The labels' key in the dict batches.

    Returns:
        The compiled wrapper; its ``base_model`` is ``base_model``.

    Raises:
        ValueError: The model does not have exactly one named input.
        KerasVersionError: ``tf.keras`` is Keras 3 in this process.
    """
    nsl = import_nsl()
    feature_key(base_model)
    adversarial = nsl.keras.AdversarialRegularization(base_model, label_keys=[label_key],
                                                      adv_config=config.to_nsl())
    adversarial.compile(optimizer=keras.optimizers.Adam(learning_rate),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return adversarial


def fit(base_model: keras.Model, train: tf.data.Dataset, validation: tf.data.Dataset | None = None, *,
        config: NSLConfig, epochs: int, learning_rate: float = 1e-3,
        callbacks: list[keras.callbacks.Callback] | None = None,
        verbose: int | str = "auto") -> keras.callbacks.History:
    """Train ``base_model`` in place with NSL adversarial regularization.

    Callbacks see the wrapper as ``self.model``; attack ``base_model`` from them.

    Args:
        base_model: The Keras 2 logits model with one named input.
        train: A batched ``(x, y)`` dataset, x in ``config.clip``, integer labels.
        validation: A batched ``(x, y)`` dataset for Keras's validation, or None.
        config: The NSL settings.
        epochs: Epochs to train, >= 1.
        learning_rate: Adam's learning rate.
        callbacks: Keras callbacks, or None.
        verbose: Keras's ``verbose`` for ``fit``.

    Returns:
        The Keras ``History`` (``loss``, ``accuracy``, ``sparse_categorical_crossentropy``,
        ``scaled_adversarial_loss`` and ``val_*``).

    Raises:
        ValueError: ``epochs`` < 1, a model without exactly one named input, or an empty
            dataset with ``random_init``.
        KerasVersionError: ``tf.keras`` is Keras 3 in this process.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    strategy = base_model.distribute_strategy
    train_nsl = as_nsl_dataset(train, base_model, static_batch=config.random_init)
    with strategy.scope():
        adversarial = wrap(base_model, config, learning_rate=learning_rate)
        # Build the wrapper on one batch now: Keras's BackupAndRestore warns about, and
        # defers restoring into, a model that is not yet built.
        adversarial(next(iter(train_nsl)), training=False)
    val_nsl = None if validation is None else as_nsl_dataset(validation, base_model,
                                                             static_batch=config.random_init)
    distribute.report_global_metrics(adversarial)
    return adversarial.fit(train_nsl, validation_data=val_nsl, epochs=epochs, callbacks=list(callbacks or []),
                           verbose=verbose)
