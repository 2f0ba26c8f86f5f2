"""Low-precision copies of a Keras model, for attacks that trade exactness for speed.

``compute_dtype="bfloat16"`` (or ``"float16"``) makes an attack compute its gradients with a
copy of the model whose layers run in that dtype (Keras' ``mixed_*`` policies: variables
and the model's input stay float32, matrix products and convolutions run in 16 bits). On
hardware with 16-bit units (GPU tensor cores, CPUs with AVX512-BF16 or AMX) the forward
and backward passes, which are nearly all of an attack's time, run up to twice as fast.

What changes and what does not:
- The iterate, the projection onto the eps-ball and the clipping stay in the dtype of ``x``,
  so ``x_adv`` keeps every guarantee (inside the ball, inside ``clip``, dtype of ``x``).
- Gradients, and the success decisions of ``keep_best``, ``early_stop`` and restarts, come
  from the low-precision copy. Its logits differ from the original's by about 1e-2, so on
  an example at the decision margin the copy can count as fooled what the original still
  classifies correctly. Judge the result with the original model (the harness does) and
  report final numbers from float32 attacks.

``"float32"`` gives a float32 copy of a model that itself computes in 16 bits. Only Keras
models that can be rebuilt from their config (Sequential and functional, tf-keras
or Keras 3) can be copied; anything else is refused with a ValueError. Copies are kept per
model (weakly: they go when the model goes) and take the model's current weights on
every call, so a model trained between attacks is never attacked with stale weights.
"""

from __future__ import annotations

import importlib
import weakref
from typing import Any

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
_COPIES: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def check_compute_dtype(compute_dtype: Any) -> str | None:
    """Check the dtype an attack should take its gradients in.

    Args:
        compute_dtype: None (compute as the model does), or one of :data:`COMPUTE_DTYPES` as
            a string or a dtype object with that ``name``.

    Returns:
        None, or the dtype's name: ``"float32"``, ``"bfloat16"`` or ``"float16"``.

    Raises:
        ValueError: Any other value; the message lists the choices.
    """
    if compute_dtype is None:
        return None
    name = getattr(compute_dtype, "name", compute_dtype)
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be None or one of {', '.join(COMPUTE_DTYPES)}; got {compute_dtype!r}")
    return name


def _keras_module(model: Any):
    """The Keras flavour (``tf_keras`` or Keras 3 ``keras``) that ``model`` belongs to."""
    for cls in type(model).__mro__:
        root = cls.__module__.split(".")[0]
        if root in ("tf_keras", "keras"):
            return importlib.import_module(root)
    raise ValueError(
        f"compute_dtype needs a Keras model (Sequential or functional); got {type(model).__name__}. "
        "Attack it with compute_dtype=None, or pass a Keras model.")


def _copy_in(model: Any, dtype: str):
    keras = _keras_module(model)
    policy = dtype if dtype == "float32" else f"mixed_{dtype}"

    def clone_layer(layer):
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=clone_layer)
    except Exception as error:  # subclassed models and custom layers without a config
        raise ValueError(
            f"compute_dtype={dtype!r} could not rebuild {type(model).__name__} from its config "
            f"({type(error).__name__}: {error}); use compute_dtype=None for this model.") from error
    return copy


def compute_model(model: Any, compute_dtype: str | None) -> Any:
    """Choose the model an attack should differentiate.

    The copy returns logits in ``compute_dtype``; callers cast them up before the loss.
    Copies are kept per model and take the model's current weights on every call.

    Args:
        model: The attacked model.
        compute_dtype: A name checked by :func:`check_compute_dtype`, or None.

    Returns:
        ``model`` itself for None or the dtype the model already computes in, else its
        Keras copy computing in ``compute_dtype``, holding the model's current weights.

    Raises:
        ValueError: ``model`` is not a Keras model, or cannot be rebuilt from its config
            (subclassed models, custom layers without a config).
    """
    if compute_dtype is None or getattr(model, "compute_dtype", None) == compute_dtype:
        return model
    copies = _COPIES.setdefault(model, {}) if _weakly_referable(model) else {}
    if compute_dtype not in copies:
        copies[compute_dtype] = _copy_in(model, compute_dtype)
    copy = copies[compute_dtype]
    copy.set_weights(model.get_weights())
    return copy


def _weakly_referable(model: Any) -> bool:
    try:
        weakref.ref(model)
    except TypeError:
        return False
    return True
