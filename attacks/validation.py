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
    """``value`` (array, tensor, list) as a NumPy array, without copying dtype changes."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array or tensor, got {type(value).__name__}") from error


def check_clip(clip: tuple[float, float] | None) -> tuple[float, float] | None:
    """``clip`` as a (low, high) pair of finite floats with low < high, or None."""
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
    """x must be floating point, (N, ...) with N >= 0, finite, and inside ``clip``."""
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
    """y as an int64 array of shape (n,) with values >= 0."""
    y = as_array(y, "y")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match x, got {y.shape}")
    if n and y.min() < 0:
        raise ValueError(f"labels must be >= 0, got {int(y.min())}")
    return y.astype(np.int64)


def check_eps(eps: float | Sequence[float]) -> tuple[np.ndarray, bool]:
    """Epsilons as a float64 array (K,), and whether one scalar was given.

    Each must be finite and >= 0.
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
    """``value`` as an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_positive_float(value: Any, name: str) -> float:
    """``value`` as a finite float > 0."""
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a number, got {value!r}") from error
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return number


def inference_fn(model: Any) -> Callable[[tf.Tensor], tf.Tensor]:
    """A function x -> logits that calls ``model`` in inference mode.

    Keras models (Keras 2 and 3) and any callable that takes a ``training`` argument are
    called with ``training=False``, so Dropout and BatchNorm act as at test time.
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
    """Check the probe output of the model; returns the number of classes.

    Raises ValueError when the output is not (n, C) with C >= 2, is not finite, or looks
    like probabilities (every row in [0, 1] summing to 1): gradient attacks need logits,
    and softmax outputs saturate and mask gradients.
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
    """The validated (x, y, eps, norm, clip) of one attack call, and how to shape its output."""

    x: np.ndarray  # (N, ...) floating point, inside clip
    y: np.ndarray  # (N,) int64 >= 0
    epsilons: np.ndarray  # (K,) float64 >= 0
    scalar_eps: bool
    norm: str
    clip: tuple[float, float] | None
    is_tensor: bool

    def output(self, adversarial: np.ndarray) -> Any:
        """(K, N, ...) results as the caller expects them: (N, ...) for a scalar eps; a
        tensor if x was a tensor, else a NumPy array."""
        result = adversarial[0] if self.scalar_eps else adversarial
        return tf.constant(result) if self.is_tensor else result


def attack_input(x: Any, y: Any, eps: Any, norm: Any, clip: Any) -> AttackInput:
    """Validate the data arguments every attack shares (see :func:`check_x` and friends)."""
    from attacks.norms import canonical_norm

    clip = check_clip(clip)
    x_np = as_array(x, "x")
    check_x(x_np, clip)
    y_np = check_labels(y, len(x_np))
    epsilons, scalar_eps = check_eps(eps)
    return AttackInput(x=x_np, y=y_np, epsilons=epsilons, scalar_eps=scalar_eps, norm=canonical_norm(norm),
                       clip=clip, is_tensor=isinstance(x, (tf.Tensor, tf.Variable)))


def check_seed(seed: Any) -> None:
    """``seed`` must be an int or None."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be an int or None, got {seed!r}")


def model_classes(logits_fn: Callable[[tf.Tensor], tf.Tensor], x: np.ndarray, y: np.ndarray) -> int:
    """Probe the model on the first examples of ``x`` (N >= 1); returns its class count.

    Raises ValueError for outputs that are not logits (see :func:`check_model_output`) or
    labels outside the model's classes.
    """
    num_classes = check_model_output(logits_fn(tf.constant(x[:PROBE_SIZE])), min(len(x), PROBE_SIZE))
    if y.max() >= num_classes:
        raise ValueError(f"label {int(y.max())} is outside the model's {num_classes} classes (0..{num_classes - 1})")
    return num_classes
