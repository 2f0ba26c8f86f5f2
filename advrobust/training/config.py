"""TrainConfig: everything that defines one training run, checked once, before training.

TrainConfig is the one source of the training options: ``advrobust train`` makes its
flags from the fields' metadata (``advrobust/cli.py``), and a run config's ``train``
table (``advrobust/run/config.py``) passes its keys as fields. Metadata keys:

``help``
    The field is a flag of ``advrobust train`` (``--field-name``), and this is its help.
    A bool field is a switch that flips its default (``dropout=True`` gives ``--no-dropout``),
    so its help says what the switch does.
``choices``
    The allowed values: the flag's choices, and what :class:`TrainConfig` accepts.
``what``
    How an error names a value outside ``choices`` (default: the field's name).
``flag``
    The flag's name when it is not ``--field-name``.
``params``
    For a dict field: ``{key: (type, help)}``; each key is a flag ``--key`` of that type
    (default None: absent) whose value, when given, goes into the dict under ``key``.

Adding a training option is one edit: a field here, with ``help`` for a flag.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advrobust import data, models
from advrobust.training.schedules import LR_SCHEDULES
from advrobust.validation import check_choice
import defenses
from defenses import validation as defense_validation
from defenses import distribute

WEIGHT_CHOICES_HELP = "imagenet | none | PATH | pretrained-run"
_SPECIAL_WEIGHTS = (None, "none", "None", "imagenet", "pretrained-run")


def _option(default: Any, help: str, *, choices: tuple[str, ...] = (), what: str | None = None,
            flag: str | None = None) -> Any:
    """A field that ``advrobust train`` offers as a flag (metadata keys: module docstring)."""
    metadata: dict[str, Any] = {"help": help}
    if choices:
        metadata["choices"] = tuple(choices)
    if what is not None:
        metadata["what"] = what
    if flag is not None:
        metadata["flag"] = flag
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (stored in the model card).

    The fields with a ``help`` are the flags of ``advrobust train`` (see the module
    docstring); their help is the longer description.

    Attributes:
        dataset: The dataset to train and test on.
        model: ``"cnn"`` (the baseline CNN) or ``"vgg19"`` (a VGG-19 transfer model).
        vgg_mode: VGG-19: ``"frozen"`` feature extractor with a new head, or
            ``"finetune"`` the last block(s).
        weights: VGG-19 weights: ``"imagenet"``, ``"none"``, a path (.h5 weights or a saved
            VGG-19 .keras model), ``"pretrained-run"``; None: random initialisation.
        image_size: VGG-19 input size (>= 32).
        trainable_blocks: VGG-19 fine-tuning: how many of the last convolution blocks train.
        base_blocks: VGG-19 convolution blocks kept (1-5; 5: the whole base).
        dropout: Build the model with its Dropout layers (CNN: 0.25, 0.5; VGG-19 head: 0.5).
        width: CNN channel multiplier (>= 1; 1 for VGG-19).
        epochs: Training epochs (early stopping may end sooner).
        batch_size: Training examples per batch.
        learning_rate: The learning rate; None: see :attr:`effective_learning_rate`.
        lr_schedule: The learning rate over the epochs, one of ``LR_SCHEDULES``.
        val_fraction: The fraction of the training split held out for validation.
        train_subset: Train on this many training examples (None: all).
        test_subset: The card's clean accuracy on the first N test images (None: all).
        patience: Early-stopping patience in epochs.
        seed: Seed of the validation split, initialisation, shuffling and robust validation.
        pretrain_dataset: For ``weights="pretrained-run"``; None: the other dataset.
        pretrain_epochs: Epochs of that pretraining.
        pretrain_subset: Training examples of that pretraining (None: all).
        extra: Free-form entries kept with the config in the model card.
        defense: The training-time defense, one of ``defenses.DEFENSES``.
        defense_eps: The defense radius (L-inf); None: the preset's or dataset's default.
        preset: The defense preset, or None.
        defense_params: Further defense settings (``awp_gamma``, ``sigma``, ``eps_train``,
            ``warmup_epochs``, ``ramp_epochs``, ``kappa_final``).
        strategy: The ``tf.distribute`` strategy (``"auto"``: MirroredStrategy with 2+ GPUs).
        robust_val_size: Defenses: validation images attacked (PGD) after each epoch to
            pick the most robust epoch.
        robust_val_steps: The PGD steps of that attack.
        co_check_size: ``fgsm_rs``: examples of the catastrophic-overfitting check.
        ema_decay: Defenses selected by PGD (not ibp, crown_ibp or gaussian): evaluate,
            select and save an exponential moving average of the weights with this decay;
            None: the raw weights.
        augment: Augmentation of the training batches: ``"none"``, ``"shift"`` or
            ``"flip_shift"``.

    Raises:
        ValueError: A value is outside its choices or range, the options contradict each
            other (a width for VGG-19, ``ema_decay`` without a defense or with ibp,
            crown_ibp or gaussian), or the defense
            does not resolve (see :func:`defenses.resolve`); the message names the value.
        TypeError: ``dropout`` is not a bool.
        FileNotFoundError: VGG-19 ``weights`` is a path that does not exist.
    """

    dataset: str = _option("fashion_mnist", "the dataset to train and test on", choices=data.DATASETS)
    model: str = _option("cnn", "cnn: the baseline CNN; vgg19: a VGG-19 transfer model", choices=models.MODELS)
    vgg_mode: str = _option("frozen", "VGG-19: frozen feature extractor + new head, or fine-tune the last block(s)",
                            choices=models.VGG_MODES, what="VGG-19 mode")
    # VGG-19 only. None is random initialisation here and in a run config's train table;
    # `advrobust train` turns a VGG-19 without --weights into "pretrained-run" (from_command_line).
    weights: str | None = _option(
        None, "VGG-19 weights: imagenet (download) | none | PATH (.h5 weights or a saved VGG-19 .keras model) | "
              "pretrained-run (pretrain on the other dataset, then transfer). Default: pretrained-run")
    image_size: int = _option(32, "VGG-19 input size (>= 32)")
    trainable_blocks: int = _option(1, "VGG-19 fine-tuning: how many of the last convolution blocks train (1-5)")
    base_blocks: int = _option(5, "VGG-19 convolution blocks to keep (1-5; 5 = the whole base). With "
                                  "pretrained-run from MNIST, 3 transfers far better to Fashion-MNIST",
                               flag="--vgg-blocks")
    # The model's Dropout layers (CNN: 0.25, 0.5; VGG-19 head: 0.5); False: none.
    dropout: bool = _option(True, "build the model without Dropout layers (the CNN then is the reference CNN "
                                  "Conv32-Conv64-MaxPool-Dense128-Dense10)")
    width: int = _option(1, "CNN channel multiplier: Conv(32w)-Conv(64w)-MaxPool-Dense(128w) (default 1; "
                            "2 has 4x the compute per image)")
    epochs: int = _option(5, "training epochs (early stopping may end sooner)")
    batch_size: int = _option(128, "training examples per batch")
    learning_rate: float | None = _option(None, "default 1e-3, or 1e-4 when fine-tuning VGG-19")
    lr_schedule: str = _option("constant", "learning rate over the epochs: constant, cosine decay, or /10 at half "
                                           "and /100 at three quarters of the epochs",
                               choices=LR_SCHEDULES, what="learning-rate schedule")
    val_fraction: float = 0.1
    train_subset: int | None = _option(None, "train on this many training examples (default: all)")
    test_subset: int | None = None  # the card's clean accuracy on the first N test images (None: all)
    patience: int = _option(3, "early-stopping patience in epochs")
    seed: int = _option(0, "seed of the validation split, initialisation, shuffling and robust validation")
    pretrain_dataset: str | None = None  # for weights="pretrained-run"; None: the other one
    pretrain_epochs: int = _option(1, "epochs of the pretraining for --weights pretrained-run")
    pretrain_subset: int | None = _option(12000, "training examples of the pretraining for --weights "
                                                 "pretrained-run")
    extra: dict[str, Any] = field(default_factory=dict)
    defense: str = _option("none", "training-time defense (see defenses/__init__.py)", choices=defenses.DEFENSES)
    defense_eps: float | None = _option(None, "defense radius (L-inf; default per preset/dataset: 0.3 MNIST, "
                                              "0.1 Fashion-MNIST)", flag="--eps")
    preset: str | None = _option(None, "defense preset (see defenses.nsl / adversarial_training)")
    defense_params: dict[str, Any] = field(default_factory=dict, metadata={"params": {
        "awp_gamma": (float, "pgd_at and trades: adversarial weight perturbation of this relative size "
                             "(Wu et al. 2020; 0.01 for PGD-AT, 0.005 for TRADES in the paper; default: none)"),
        "sigma": (float, "gaussian: the noise's standard deviation (Cohen et al. 2019 train and certify with the "
                         "same sigma; default per preset: 0.5 MNIST, 0.25 Fashion-MNIST)"),
        "eps_train": (float, "ibp and crown_ibp: the radius trained at (default: the preset's; MNIST trains at 0.4 "
                             "for eps 0.3)"),
        "warmup_epochs": (float, "ibp and crown_ibp: epochs of clean training before the ramp (default per preset)"),
        "ramp_epochs": (float, "ibp and crown_ibp: epochs over which eps grows from 0 to eps_train and the mixing "
                               "weight from 1 to kappa_final (default per preset)"),
        "kappa_final": (float, "ibp and crown_ibp: the clean loss's weight after the ramp (default 0.5, Gowal et al.)"),
    }})
    strategy: str = _option("auto", "tf.distribute strategy (auto: MirroredStrategy with 2+ GPUs, else default)",
                            choices=distribute.STRATEGIES)
    robust_val_size: int = _option(500, "defenses: validation images attacked (PGD-10) after each epoch to pick "
                                        "the most robust epoch (default 500; more is less noisy: about 2 points "
                                        "of standard error at 500)")
    robust_val_steps: int = 10  # PGD steps of that attack
    co_check_size: int = 256  # fgsm_rs: examples of the catastrophic-overfitting check
    ema_decay: float | None = _option(None, "PGD-selected defenses only: evaluate, select and save an exponential moving "
                                            "average of the weights with this decay (e.g. 0.999; default: the "
                                            "raw weights)")
    augment: str = _option("none", "augment the training batches: shift (up to 2 pixels each way) or flip_shift "
                                   "(also mirror left-right; not for MNIST). Default: none",
                           choices=data.AUGMENTATIONS, what="augmentation")

    def __post_init__(self) -> None:
        self._check_choices()
        self._check_model()
        self._check_counts()
        self._check_defense()

    def _check_choices(self) -> None:
        for spec in dataclasses.fields(self):
            if "choices" in spec.metadata:
                check_choice(getattr(self, spec.name), spec.metadata["choices"],
                             spec.metadata.get("what", spec.name))
        if self.pretrain_dataset is not None:
            check_choice(self.pretrain_dataset, data.DATASETS, "dataset")
        data.check_augmentation(self.augment, self.dataset)

    def _check_model(self) -> None:
        if not isinstance(self.dropout, bool):
            raise TypeError(f"dropout must be true or false, got {self.dropout!r}")
        models.check_width(self.width)
        if self.width != 1 and self.model != "cnn":
            raise ValueError(f"width applies to the CNN only; model {self.model!r} takes width 1, got {self.width}")
        if self.model != "vgg19":
            return
        if self.image_size < models.VGG_MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be >= {models.VGG_MIN_IMAGE_SIZE} for VGG-19, got {self.image_size}")
        if not 1 <= self.base_blocks <= 5:
            raise ValueError(f"base_blocks must be in 1..5, got {self.base_blocks}")
        if not 0 <= self.trainable_blocks <= self.base_blocks:
            raise ValueError(f"trainable_blocks must be in 0..base_blocks ({self.base_blocks}), "
                             f"got {self.trainable_blocks}")
        if self.weights not in _SPECIAL_WEIGHTS and not Path(self.weights).is_file():
            raise FileNotFoundError(f"VGG-19 weights file {self.weights!r} does not exist; use "
                                    f"{WEIGHT_CHOICES_HELP}")

    def _check_counts(self) -> None:
        for name in ("epochs", "batch_size", "pretrain_epochs", "image_size", "robust_val_size",
                     "robust_val_steps", "co_check_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_subset", "pretrain_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")

    def _check_defense(self) -> None:
        defense_validation.check_decay(self.ema_decay, "ema_decay", optional=True)
        if self.ema_decay is not None and self.defense == "none":
            raise ValueError("ema_decay needs a defense: weight averaging is selected by robust early "
                             "stopping, which only defended training runs")
        if self.ema_decay is not None and self.defense in ("ibp", "crown_ibp", "gaussian"):
            raise ValueError(f"ema_decay does not apply to {self.defense}: its epochs are selected by the "
                             "trained weights' own validation (verified or noisy accuracy), not the averages'")
        self.defense_config()  # resolves and checks the whole defense now, before any training

    @classmethod
    def from_command_line(cls, **options: Any) -> TrainConfig:
        """The config that ``advrobust train`` means by its flags.

        The command line differs from the dataclass in one default: there a VGG-19 given
        no ``weights`` transfers from a pretrained run (``weights="pretrained-run"``),
        while ``TrainConfig(model="vgg19")`` starts from random weights.

        Args:
            **options: Fields of TrainConfig, as parsed from the flags.

        Returns:
            The checked TrainConfig.

        Raises:
            ValueError, TypeError, FileNotFoundError: As :class:`TrainConfig`.
        """
        if options.get("model", cls.model) == "vgg19" and options.get("weights") is None:
            options["weights"] = "pretrained-run"
        return cls(**options)

    def defense_config(self):
        """The resolved defense config.

        Returns:
            ``NSLConfig`` / ``AdversarialTrainingConfig`` from :func:`defenses.resolve`, or
            None for ``defense="none"``.

        Raises:
            ValueError: A defense setting is bad; the message names it.
        """
        return defenses.resolve(self.defense, dataset=self.dataset, preset=self.preset, eps=self.defense_eps,
                                params=self.defense_params)

    @property
    def effective_learning_rate(self) -> float:
        """The learning rate training uses: ``learning_rate``, or by default 1e-3.

        The default is 1e-4 when fine-tuning VGG-19.
        """
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-4 if self.model == "vgg19" and self.vgg_mode == "finetune" else 1e-3


def architecture_name(config: TrainConfig) -> str:
    """The model card's name of the architecture ``config`` builds.

    Args:
        config: A training config.

    Returns:
        ``cnn``, ``cnn-w2``, ``vgg19-frozen``, ``vgg19-finetune-blocks1to3``..., with
        ``-no-dropout`` appended when the model has no Dropout.
    """
    if config.model == "cnn":
        name = "cnn" if config.width == 1 else f"cnn-w{config.width}"
    else:
        name = f"vgg19-{config.vgg_mode}" + ("" if config.base_blocks == 5 else f"-blocks1to{config.base_blocks}")
    return name + ("" if config.dropout else "-no-dropout")
