"""Checks at the public boundary of every attack: fail early, with the bad value named.

Nothing here changes user data: no clipping, casting or rescaling. A value that is wrong
raises ValueError (or TypeError for a wrong kind of object) that says what to do.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from attacks.backend import tf

PROBE_SIZE = 16  # examples run through the model once to learn its classes and output kind


def as_array(value: Any, name: str) -> np.ndarray:
    """Convert an array, tensor or list to a NumPy array, keeping its dtype.

    Args:
        value: A NumPy array, ``tf.Tensor``, ``tf.Variable`` or anything ``np.asarray`` takes.
        name: The argument's name, used in the error message.

    Returns:
        ``value`` as an ``np.ndarray`` of the same shape and dtype (tensors are read with
        ``.numpy()``; nothing is cast).

    Raises:
        TypeError: ``value`` cannot be turned into an array (e.g. a ragged list).
    """
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array or tensor, got {type(value).__name__}") from error


def check_clip(clip: tuple[float, float] | None) -> tuple[float, float] | None:
    """Check the valid input range of an attack.

    Args:
        clip: A ``(low, high)`` pair of numbers, or None for unbounded inputs.

    Returns:
        None for ``clip=None``, else ``(low, high)`` as Python floats, finite, with
        ``low < high``.

    Raises:
        ValueError: ``clip`` is not a pair of numbers, is not finite, or has ``low >= high``.
    """
    if clip is None:
        return None
    try:
        low, high = (float(v) for v in clip)
    except (TypeError, ValueError) as error:
        raise ValueError(f"clip must be a (low, high) pair or None, got {clip!r}") from error
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"clip must be finite with low < high, got {clip!r}")
    return low, high


def check_x(x: np.ndarray, clip: tuple[float, float] | None) -> None:
    """Check the inputs of an attack; nothing is changed.

    An empty batch (N = 0) passes after the dtype and rank checks.

    Args:
        x: The inputs, an array of shape (N, ...).
        clip: The valid input range ``(low, high)`` from :func:`check_clip`, or None.

    Raises:
        TypeError: ``x`` is not floating point (the message suggests ``x / 255`` for
            integer images).
        ValueError: ``x`` has fewer than 2 dimensions, holds NaN or infinite values, or
            has values outside ``clip`` (the message points out 0-255 images).
    """
    if not np.issubdtype(x.dtype, np.floating):
        hint = " (8-bit images: convert to float and rescale into the clip range, e.g. x / 255)" \
            if np.issubdtype(x.dtype, np.integer) else ""
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}{hint}")
    if x.ndim < 2:
        raise ValueError(f"x must be a batch of shape (N, ...) with at least 2 dimensions, got shape {x.shape}")
    if x.size == 0:
        return
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise ValueError(f"x contains {bad} NaN or infinite values")
    if clip is not None:
        low, high = float(x.min()), float(x.max())
        if low < clip[0] or high > clip[1]:
            hint = " It looks like 0-255 images: rescale them, e.g. x / 255." if high > 1.5 and clip[1] <= 1 else ""
            raise ValueError(f"x has values in [{low:g}, {high:g}], outside clip={clip}.{hint} "
                             "Attacks never rescale or clip your data; pass clip=None to attack "
                             "unbounded inputs.")


def check_labels(y: Any, n: int) -> np.ndarray:
    """Check integer class labels for a batch of ``n`` examples.

    Args:
        y: The labels: an array, tensor or list of shape (n,).
        n: The number of examples in ``x``.

    Returns:
        ``y`` as an int64 array of shape (n,), values >= 0.

    Raises:
        TypeError: ``y`` cannot be turned into an array or does not hold integers (bool
            labels included).
        ValueError: ``y`` does not have shape (n,), or holds a negative label.
    """
    y = as_array(y, "y")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match x, got {y.shape}")
    if n and y.min() < 0:
        raise ValueError(f"labels must be >= 0, got {int(y.min())}")
    return y.astype(np.int64)


def check_eps(eps: float | Sequence[float]) -> tuple[np.ndarray, bool]:
    """Check the attack radii: one epsilon or a list of them.

    Args:
        eps: A number or a sequence of numbers, each finite and >= 0.

    Returns:
        ``(epsilons, scalar)``: the radii as a float64 array of shape (K,), K >= 1, and
        whether ``eps`` was a single number (then K = 1 and the attack returns one batch,
        not K).

    Raises:
        TypeError: ``eps`` is neither a number nor a sequence of numbers.
        ValueError: ``eps`` is an empty or nested sequence, or holds a value that is not
            finite or is negative.
    """
    scalar = np.ndim(eps) == 0
    try:
        values = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise TypeError(f"eps must be a number or a sequence of numbers, got {eps!r}") from error
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"eps must be a number or a non-empty 1-D sequence, got {eps!r}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
    return values, scalar


def check_positive_int(value: Any, name: str) -> int:
    """Check a count such as ``steps`` or ``restarts``.

    Args:
        value: The value to check; Python and NumPy integers are accepted, bools are not.
        name: The argument's name, used in the error message.

    Returns:
        ``value`` as a Python int >= 1.

    Raises:
        ValueError: ``value`` is not an integer (or is a bool), or is < 1.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_positive_float(value: Any, name: str) -> float:
    """Check a positive real parameter such as ``step_size``.

    Args:
        value: The value to check: anything ``float()`` accepts.
        name: The argument's name, used in the error message.

    Returns:
        ``value`` as a Python float, finite and > 0.

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: ``value`` is not finite, or is <= 0.
    """
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a number, got {value!r}") from error
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return number


def inference_fn(model: Any) -> Callable[[tf.Tensor], tf.Tensor]:
    """Wrap ``model`` as a function from inputs to logits, called in inference mode.

    Keras models (Keras 2 and 3) and any callable that takes a ``training`` argument are
    called with ``training=False``, so Dropout and BatchNorm act as at test time.

    Args:
        model: A Keras model, ``tf.Module`` or function mapping a batch (N, ...) to logits.

    Returns:
        A callable ``x -> logits``: ``model`` itself when it takes no ``training``
        argument, else a function calling ``model(x, training=False)``.

    Raises:
        TypeError: ``model`` is not callable.
    """
    if not callable(model):
        raise TypeError(f"model must be callable (a Keras model, tf.Module or function), got {type(model).__name__}")
    call = getattr(model, "call", None)
    takes_training = _accepts_training(call) if call is not None else False
    takes_training = takes_training or _accepts_training(model) or hasattr(model, "layers")
    if takes_training:
        return lambda x: model(x, training=False)
    return model


def _accepts_training(fn: Any) -> bool:
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "training" in parameters or any(p.kind == p.VAR_KEYWORD for p in parameters.values())


def check_model_output(logits: Any, n: int) -> int:
    """Check the model's output on a probe batch and count its classes.

    Gradient attacks need logits: softmax outputs saturate and mask gradients, so outputs
    that look like probabilities are refused rather than attacked.

    Args:
        logits: The model's output for ``n`` probe inputs (array or tensor).
        n: The number of probe inputs.

    Returns:
        The number of classes C >= 2 (the output's second dimension).

    Raises:
        ValueError: The output is not of shape (n, C) with C >= 2, is not finite, or looks
            like probabilities (every row in [0, 1] and summing to 1).
    """
    out = np.asarray(logits)
    if out.ndim != 2 or out.shape[0] != n or out.shape[1] < 2:
        raise ValueError(f"model must return logits of shape (N, num_classes) with num_classes >= 2; "
                         f"for {n} inputs it returned shape {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError("model returned NaN or infinite logits")
    if np.all((out >= 0) & (out <= 1)) and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("model outputs look like probabilities (rows in [0, 1] summing to 1); attacks need "
                         "logits. Remove the final softmax (e.g. build the last Dense layer without "
                         "activation) and pass that model.")
    return int(out.shape[1])


@dataclass(frozen=True)
class AttackInput:
    """The validated ``(x, y, eps, norm, clip)`` of one attack call, and how to shape its output.

    Made by :func:`attack_input`; attacks work on these NumPy values and hand their
    (K, N, ...) result to :meth:`output`.

    Attributes:
        x: The inputs, (N, ...) floating point, inside ``clip``.
        y: The labels, (N,) int64 >= 0.
        epsilons: The radii, (K,) float64 >= 0.
        scalar_eps: Whether the caller passed a single epsilon.
        norm: ``"inf"`` or ``"l2"``.
        clip: ``(low, high)`` or None.
        is_tensor: Whether the caller passed ``x`` as a TensorFlow tensor or variable.
    """

    x: np.ndarray  # (N, ...) floating point, inside clip
    y: np.ndarray  # (N,) int64 >= 0
    epsilons: np.ndarray  # (K,) float64 >= 0
    scalar_eps: bool
    norm: str
    clip: tuple[float, float] | None
    is_tensor: bool

    def output(self, adversarial: np.ndarray) -> Any:
        """Shape an attack's result as the caller expects it.

        Args:
            adversarial: The adversarial examples for every epsilon, an array (K, N, ...).

        Returns:
            (N, ...) for a scalar eps, else (K, N, ...); a ``tf.Tensor`` if ``x`` was a tensor,
            else a NumPy array. The dtype is that of ``adversarial``.
        """
        result = adversarial[0] if self.scalar_eps else adversarial
        return tf.constant(result) if self.is_tensor else result


def attack_input(x: Any, y: Any, eps: Any, norm: Any, clip: Any) -> AttackInput:
    """Validate the data arguments every attack shares.

    The checks are :func:`check_clip`, :func:`check_x`, :func:`check_labels`,
    :func:`check_eps` and :func:`attacks.norms.canonical_norm`; nothing is changed.

    Args:
        x: The inputs (N, ...), array or tensor, floating point, inside ``clip``.
        y: The integer labels (N,).
        eps: A radius or a sequence of radii, each finite and >= 0.
        norm: ``"inf"`` (or ``np.inf``, ``"linf"``) or ``"l2"`` (or ``2``).
        clip: The valid input range ``(low, high)``, or None.

    Returns:
        The validated call as an :class:`AttackInput`.

    Raises:
        TypeError: ``x`` is not a floating-point array, ``y`` does not hold integers, or
            ``eps`` is not numeric.
        ValueError: A value is out of range: ``clip`` malformed, ``x`` not (N, ...) or not
            finite or outside ``clip``, ``y`` of the wrong shape or negative, ``eps`` negative
            or not finite, or an unknown ``norm``.
    """
    from attacks.norms import canonical_norm

    clip = check_clip(clip)
    x_np = as_array(x, "x")
    check_x(x_np, clip)
    y_np = check_labels(y, len(x_np))
    epsilons, scalar_eps = check_eps(eps)
    norm = canonical_norm(norm)
    check_eps_within_reach(epsilons, norm, clip, x_np.shape[1:])
    return AttackInput(x=x_np, y=y_np, epsilons=epsilons, scalar_eps=scalar_eps, norm=norm,
                       clip=clip, is_tensor=isinstance(x, (tf.Tensor, tf.Variable)))


def check_eps_within_reach(epsilons: np.ndarray, norm: str, clip: tuple[float, float] | None,
                           example_shape: tuple[int, ...]) -> None:
    """Refuse radii larger than the whole clip box: a sign of eps on the wrong scale.

    Within ``clip`` no two points are further apart than ``high - low`` in L-inf, or
    ``(high - low) * sqrt(d)`` in L2 for d features per example; a larger eps (say 8 meant
    as 8/255) allows nothing more and usually means a unit mistake.

    Args:
        epsilons: The radii, (K,) finite and >= 0.
        norm: ``"inf"`` or ``"l2"``.
        clip: The valid input range, or None (unbounded: any eps is accepted).
        example_shape: The shape of one example, e.g. (28, 28, 1).

    Raises:
        ValueError: An eps exceeds the largest distance within the box, naming both.
    """
    if clip is None:
        return
    span = clip[1] - clip[0]
    reach = span if norm == "inf" else span * float(np.sqrt(np.prod(example_shape, dtype=np.float64)))
    if epsilons.size and float(epsilons.max()) > reach * (1 + 1e-9):
        raise ValueError(f"eps {float(epsilons.max())} is larger than any distance within clip={clip} "
                         f"(at most {reach:.6g} in {'L-inf' if norm == 'inf' else 'L2'} for these inputs): is it "
                         f"on the wrong scale (e.g. 8 for 8/255)?")


def check_seed(seed: Any) -> None:
    """Check a random seed.

    Args:
        seed: An int >= 0 (Python or NumPy), or None for fresh entropy.

    Raises:
        TypeError: ``seed`` is neither an int nor None (bools are refused).
        ValueError: ``seed`` is negative (NumPy's generators refuse it later, mid-attack).
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def model_classes(logits_fn: Callable[[tf.Tensor], tf.Tensor], x: np.ndarray, y: np.ndarray) -> int:
    """Probe the model on the first examples of ``x`` and count its classes.

    Only the first ``PROBE_SIZE`` (16) examples are run through the model.

    Args:
        logits_fn: The model as a function ``x -> logits`` (see :func:`inference_fn`).
        x: The inputs, (N, ...) with N >= 1.
        y: The labels, (N,) int64 >= 0.

    Returns:
        The number of classes of the model, an int >= 2.

    Raises:
        ValueError: The outputs are not logits (see :func:`check_model_output`), or a
            label is outside the model's classes.
    """
    num_classes = check_model_output(logits_fn(tf.constant(x[:PROBE_SIZE])), min(len(x), PROBE_SIZE))
    if y.max() >= num_classes:
        raise ValueError(f"label {int(y.max())} is outside the model's {num_classes} classes (0..{num_classes - 1})")
    return num_classes
