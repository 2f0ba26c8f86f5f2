"""Attacks from other libraries, behind this project's API and input checks.

:func:`apgd_art` runs the Adversarial Robustness Toolbox's (ART 1.20.1)
``AutoProjectedGradientDescent`` (APGD; Croce & Hein 2020, "Reliable evaluation of
adversarial robustness with an ensemble of diverse parameter-free attacks") with the
cross-entropy or the difference-of-logits-ratio loss, to cross-check the project's own
(:func:`attacks.apgd`); it is not registered in ``attacks.ATTACKS``, so no run needs ART.
ART is imported only when the attack runs (``pip install ".[test]"`` installs it).

What ART does, read from ``art/attacks/evasion/auto_projected_gradient_descent.py``:

- Every restart begins at a uniform random point of the eps-ball (``nb_random_init``
  restarts, at least one; there is no start from ``x`` itself). A restart attacks only
  the examples that are still classified correctly; an example fooled in one restart
  keeps that point. An example never fooled comes back at its last random start.
- The step size starts at ``eps_step`` and is halved at checkpoints where progress
  stalls. ART's default is an absolute 0.1; we pass ``2 * eps``, the paper's initial step.
- The loss object decides the objective: "cross_entropy" on logits (ART would quietly
  switch to probabilities if the model's outputs looked like them; we refuse such models
  first, as every attack here does) and "difference_logits_ratio", which needs logits
  and at least three classes.
- Random starts come from NumPy's global random generator, and ART works in float32.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal, Sequence

import numpy as np

from attacks import norms, validation
from attacks.backend import tf

DEFAULT_BATCH_SIZE = 512
ART_LOSSES = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}
ART_NORMS = {"inf": np.inf, "l2": 2}
# ART computes in float32: its points may leave the ball or the clip range by rounding.
# Anything larger than this (relative to the scale of x and eps) is a real violation.
ROUNDING_TOLERANCE = 1e-5

Eps = float | Sequence[float]
Clip = tuple[float, float] | None


class _InferenceModel:
    """The model as ART calls it, ``model(x, training=...)``: always in inference mode.

    ART passes ``training=False`` anyway, but a plain function or ``tf.Module`` takes no
    ``training`` argument, and ART probes with float64 inputs, so inputs are cast to the
    dtype of the attacked ``x``.
    """

    def __init__(self, logits_fn: Any, dtype: tf.DType, example_shape: tuple[int, ...]) -> None:
        self._dtype = dtype
        # ART calls the model eagerly, twice per step; compiled (one trace for any batch
        # size) it runs several times faster.
        self._logits_fn = tf.function(logits_fn, input_signature=[tf.TensorSpec((None, *example_shape), dtype)])

    def __call__(self, x: Any, training: bool = False) -> tf.Tensor:
        del training  # attacks never train: Dropout and BatchNorm stay in test mode
        return self._logits_fn(tf.cast(x, self._dtype))


def _import_art() -> tuple[Any, Any]:
    try:
        with warnings.catch_warnings():
            # ART's package import warns that PyTorch (for its certification tools) is
            # missing; APGD on TensorFlow does not need it.
            warnings.filterwarnings("ignore", message="PyTorch not found", category=UserWarning)
            from art.attacks.evasion.auto_projected_gradient_descent import AutoProjectedGradientDescent
            from art.estimators.classification import TensorFlowV2Classifier
    except ImportError as error:
        raise ImportError(f"apgd_art needs the Adversarial Robustness Toolbox ({error}): "
                          'pip install "adversarial-robustness-toolbox==1.20.1" (or pip install ".[test]")') \
            from error
    return AutoProjectedGradientDescent, TensorFlowV2Classifier


def apgd_art(model: Any, x: Any, y: Any, *, eps: Eps, norm: Any = "inf", loss: Literal["ce", "dlr"] = "ce",
             steps: int = 100, restarts: int = 1, clip: Clip = (0.0, 1.0), seed: int | None = None,
             batch_size: int | None = None):
    """Untargeted APGD (Croce & Hein 2020) as implemented by ART 1.20.1.

    The initial step is ``2 * eps``. Per example, a misclassified point is returned if any
    restart found one, else the last random start (see the module docstring). The model is
    called in inference mode (``training=False``).

    ART draws its random starts from NumPy's global generator. This function seeds that
    generator for the run (from ``seed``, or from fresh entropy when None) and restores its
    previous state afterwards, so the caller's global random stream is left as it was; do
    not draw from it in another thread meanwhile.

    Args:
        model: The attacked model: any callable mapping a float batch to **logits** (N, C),
            a tf-keras or Keras 3 model, a ``tf.Module`` or a function. Called in inference
            mode (``training=False``).
        x: The clean inputs, an array or tensor (N, ...), floating point, inside ``clip``.
            Never rescaled or clipped.
        y: Integer labels (N,), the true classes.
        eps: The radius: a float, or a sequence of K floats computed in one batched run;
            each finite and >= 0 (eps = 0 returns ``x``).
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
        loss: ``"ce"`` (APGD-CE) or ``"dlr"`` (APGD-DLR, needs >= 3 classes).
        steps: Iterations per restart (ART's ``max_iter``), >= 1.
        restarts: Random starts per example (ART's ``nb_random_init``), >= 1.
        clip: The valid input range ``(low, high)``; None for unbounded inputs.
        seed: Seeds the random starts; the same seed (and ``batch_size``) gives the same
            result. None draws fresh entropy.
        batch_size: Examples per ART call (None: 512).

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out): shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons (one
        ART run per epsilon). Inside the eps-ball and inside ``clip``; eps = 0 returns ``x``.

    Raises:
        TypeError: ``model`` is not callable, ``x`` is not floating point, ``y`` does not
            hold integers, ``eps`` is not numeric, or ``seed`` is not an int.
        ValueError: A value named in the message is wrong: NaN in ``x``, ``x`` outside
            ``clip``, a length mismatch, labels outside the model's classes, negative
            ``eps``, ``steps``, ``restarts`` or ``batch_size`` < 1, an unknown ``loss``,
            ``loss="dlr"`` with fewer than 3 classes, an unknown ``norm``, or a model that
            returns probabilities.
        ImportError: The Adversarial Robustness Toolbox is not installed.
        RuntimeError: ART returned a point outside the ball or ``clip`` by more than float32
            rounding, or an array of the wrong shape or not finite.
    """
    given = validation.attack_input(x, y, eps, norm, clip)
    x_np, y_np, epsilons, norm, clip = given.x, given.y, given.epsilons, given.norm, given.clip
    n = len(x_np)
    if not isinstance(loss, str) or loss not in ART_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of: {', '.join(ART_LOSSES)}")
    steps = validation.check_positive_int(steps, "steps")
    restarts = validation.check_positive_int(restarts, "restarts")
    batch_size = validation.check_positive_int(batch_size or DEFAULT_BATCH_SIZE, "batch_size")
    validation.check_seed(seed)

    k = len(epsilons)
    out = np.broadcast_to(x_np, (k, *x_np.shape)).copy()  # eps = 0 rows stay x
    if n and np.any(epsilons > 0):
        logits_fn = validation.inference_fn(model)
        num_classes = validation.model_classes(logits_fn, x_np, y_np)
        if loss == "dlr" and num_classes < 3:
            raise ValueError(f"loss 'dlr' needs at least 3 classes, the model has {num_classes}; use loss='ce'")
        attack = _art_attack(logits_fn, x_np, num_classes, norm=norm, loss=loss, steps=steps,
                             restarts=restarts, clip=clip, batch_size=batch_size)
        one_hot = np.eye(num_classes, dtype=np.float32)[y_np]
        base_seed = int(np.random.default_rng(seed).integers(0, 2**62))
        saved_state = np.random.get_state()
        try:
            for index, radius in enumerate(epsilons):
                if radius == 0:
                    continue
                attack.set_params(eps=float(radius), eps_step=2.0 * float(radius))
                for start in range(0, n, batch_size):
                    rows = slice(start, start + batch_size)
                    np.random.seed(np.random.SeedSequence([base_seed, index, start]).generate_state(4))
                    x_adv = attack.generate(x_np[rows], one_hot[rows])
                    out[index, rows] = _checked(x_np[rows], x_adv, radius, norm, clip)
        finally:
            np.random.set_state(saved_state)
    return given.output(out)


def _art_attack(logits_fn: Any, x: np.ndarray, num_classes: int, *, norm: str, loss: str, steps: int,
                restarts: int, clip: Clip, batch_size: int) -> Any:
    """ART's APGD on the model; eps is set per run with ``set_params``."""
    AutoProjectedGradientDescent, TensorFlowV2Classifier = _import_art()
    classifier = TensorFlowV2Classifier(model=_InferenceModel(logits_fn, tf.as_dtype(x.dtype), tuple(x.shape[1:])),
                                        nb_classes=num_classes, input_shape=tuple(x.shape[1:]),
                                        clip_values=clip)
    # eps here is a placeholder that passes ART's checks; every run sets its own.
    return AutoProjectedGradientDescent(classifier, norm=ART_NORMS[norm], eps=1.0, eps_step=2.0, max_iter=steps,
                                        targeted=False, nb_random_init=restarts, batch_size=batch_size,
                                        loss_type=ART_LOSSES[loss], verbose=False)


def _checked(x: np.ndarray, x_adv: np.ndarray, eps: float, norm: str, clip: Clip) -> np.ndarray:
    """ART's ``x_adv`` in the dtype of ``x``, projected onto the ball and clipped.

    ART computes in float32, so its points can be outside by rounding; that is corrected.
    A larger violation means ART misbehaved: RuntimeError rather than a silent fix.
    """
    x_adv = np.asarray(x_adv).astype(x.dtype)
    if x_adv.shape != x.shape or not np.all(np.isfinite(x_adv)):
        raise RuntimeError(f"ART's APGD returned an array of shape {x_adv.shape} (finite: "
                           f"{bool(np.all(np.isfinite(x_adv)))}) for inputs of shape {x.shape}")
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta.astype(np.float64), axis=1)
    tolerance = ROUNDING_TOLERANCE * max(1.0, float(np.abs(x).max(initial=0.0)), eps)
    excess = max(float(size.max(initial=0.0)) - eps, 0.0)
    if clip is not None:
        excess = max(excess, clip[0] - float(x_adv.min()), float(x_adv.max()) - clip[1])
    if excess > tolerance:
        raise RuntimeError(f"ART's APGD returned points {excess:g} outside the {norm} ball of radius {eps:g} "
                           f"or the clip range {clip}")
    radius = tf.fill([len(x)], tf.constant(eps, tf.as_dtype(x.dtype)))
    projected = tf.constant(x) + norms.project(tf.constant(x_adv - x), radius, norm)
    if clip is not None:
        projected = tf.clip_by_value(projected, clip[0], clip[1])
    return projected.numpy()


def apgd_ce_art(model: Any, x: Any, y: Any, *, eps: Eps, norm: Any = "inf", steps: int = 100, restarts: int = 1,
                clip: Clip = (0.0, 1.0), seed: int | None = None, batch_size: int | None = None):
    """APGD-CE: :func:`apgd_art` with ``loss="ce"``.

    Args:
        model: The attacked model: any callable mapping a float batch to **logits** (N, C),
            a tf-keras or Keras 3 model, a ``tf.Module`` or a function. Called in inference
            mode (``training=False``).
        x: The clean inputs, an array or tensor (N, ...), floating point, inside ``clip``.
            Never rescaled or clipped.
        y: Integer labels (N,), the true classes.
        eps: The radius: a float, or a sequence of K floats computed in one batched run;
            each finite and >= 0 (eps = 0 returns ``x``).
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
        steps: Iterations per restart (ART's ``max_iter``), >= 1.
        restarts: Random starts per example (ART's ``nb_random_init``), >= 1.
        clip: The valid input range ``(low, high)``; None for unbounded inputs.
        seed: Seeds the random starts; the same seed (and ``batch_size``) gives the same
            result. None draws fresh entropy.
        batch_size: Examples per ART call (None: 512).

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out): shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons (one
        ART run per epsilon). Inside the eps-ball and inside ``clip``; eps = 0 returns ``x``.

    Raises:
        TypeError: ``model`` is not callable, ``x`` is not floating point, ``y`` does not
            hold integers, ``eps`` is not numeric, or ``seed`` is not an int.
        ValueError: A value named in the message is wrong: NaN in ``x``, ``x`` outside
            ``clip``, a length mismatch, labels outside the model's classes, negative
            ``eps``, ``steps``, ``restarts`` or ``batch_size`` < 1, an unknown ``norm``, or
            a model that returns probabilities.
        ImportError: The Adversarial Robustness Toolbox is not installed.
        RuntimeError: ART returned a point outside the ball or ``clip`` by more than float32
            rounding, or an array of the wrong shape or not finite.
    """
    return apgd_art(model, x, y, eps=eps, norm=norm, loss="ce", steps=steps, restarts=restarts, clip=clip,
                    seed=seed, batch_size=batch_size)


def apgd_dlr_art(model: Any, x: Any, y: Any, *, eps: Eps, norm: Any = "inf", steps: int = 100, restarts: int = 1,
                 clip: Clip = (0.0, 1.0), seed: int | None = None, batch_size: int | None = None):
    """APGD-DLR: :func:`apgd_art` with ``loss="dlr"``.

    Args:
        model: The attacked model: any callable mapping a float batch to **logits** (N, C),
            a tf-keras or Keras 3 model, a ``tf.Module`` or a function. Called in inference
            mode (``training=False``).
        x: The clean inputs, an array or tensor (N, ...), floating point, inside ``clip``.
            Never rescaled or clipped.
        y: Integer labels (N,), the true classes.
        eps: The radius: a float, or a sequence of K floats computed in one batched run;
            each finite and >= 0 (eps = 0 returns ``x``).
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
        steps: Iterations per restart (ART's ``max_iter``), >= 1.
        restarts: Random starts per example (ART's ``nb_random_init``), >= 1.
        clip: The valid input range ``(low, high)``; None for unbounded inputs.
        seed: Seeds the random starts; the same seed (and ``batch_size``) gives the same
            result. None draws fresh entropy.
        batch_size: Examples per ART call (None: 512).

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out): shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons (one
        ART run per epsilon). Inside the eps-ball and inside ``clip``; eps = 0 returns ``x``.

    Raises:
        TypeError: ``model`` is not callable, ``x`` is not floating point, ``y`` does not
            hold integers, ``eps`` is not numeric, or ``seed`` is not an int.
        ValueError: A value named in the message is wrong: NaN in ``x``, ``x`` outside
            ``clip``, a length mismatch, labels outside the model's classes, negative
            ``eps``, ``steps``, ``restarts`` or ``batch_size`` < 1, a model with fewer than
            3 classes, an unknown ``norm``, or a model that returns probabilities.
        ImportError: The Adversarial Robustness Toolbox is not installed.
        RuntimeError: ART returned a point outside the ball or ``clip`` by more than float32
            rounding, or an array of the wrong shape or not finite.
    """
    return apgd_art(model, x, y, eps=eps, norm=norm, loss="dlr", steps=steps, restarts=restarts, clip=clip,
                    seed=seed, batch_size=batch_size)
