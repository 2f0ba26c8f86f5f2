"""FGSM, BIM, PGD and MIM: presets of the one loop in :mod:`attacks.loop`.

Common arguments
----------------
model
    Any callable mapping a float batch to **logits** (N, C): a tf-keras or Keras 3 model,
    a ``tf.Module`` or a function. Called in inference mode (``training=False``).
x
    Array or tensor (N, ...), floating point, inside ``clip``. Never rescaled or clipped.
y
    Integer labels (N,); the target classes when ``targeted=True``.
eps
    A float, giving ``x_adv`` shaped like ``x``; or a sequence of K floats, giving
    (K, N, ...), computed in one batched run.
norm
    ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
loss
    ``"ce"`` (cross-entropy), ``"margin"`` (C&W logit margin) or a callable
    ``loss(logits, labels) -> (N,)``.
clip
    The valid input range (low, high); ``None`` for unbounded inputs.
seed
    Seeds the random start; the same seed (and batch_size) gives the same result.
batch_size
    Examples per compiled call (default 512); K*N stacked examples are split into batches.
compute_dtype
    ``None`` (default: the model as it is) or ``"bfloat16"`` / ``"float16"`` / ``"float32"``:
    take gradients with a copy of a Keras model computing in that dtype, up to twice as
    fast on hardware with 16-bit units. ``x_adv`` keeps its guarantees (ball, clip, dtype);
    success is judged by the copy, so judge results with the original model and report
    final numbers from float32 attacks. See :mod:`attacks.precision`.
early_stop
    (bim, pgd, mim) Stop iterating on an example once it is misclassified (on target), and
    let further restarts attack only the examples still standing. Robust accuracy is the
    same, the work is less; the returned point is then the first successful iterate, not
    the highest-loss one (use the default ``False`` to generate training examples).

Errors: ValueError or TypeError naming the bad value (NaN in x, x outside clip, length
mismatch, labels outside the model's classes, negative eps, steps < 1, unknown norm or
loss, a model that returns probabilities). An empty batch gives an empty result.
"""

from __future__ import annotations

from typing import Any, Sequence

from attacks import loop

Eps = float | Sequence[float]
Clip = tuple[float, float] | None


def pgd(model: Any, x: Any, y: Any, *, eps: Eps, norm: Any = "inf", steps: int = 40,
        step_size: float | None = None, random_start: bool = True, restarts: int = 1,
        targeted: bool = False, loss: Any = "ce", clip: Clip = (0.0, 1.0), seed: int | None = None,
        batch_size: int | None = None, early_stop: bool = False,
        compute_dtype: str | None = None):
    """Projected gradient descent (Madry et al. 2018), with restarts.

    ``steps`` steps of size ``step_size`` from a uniform random start in the eps-ball.
    Per example, the best point over all iterates and ``restarts`` is returned: a
    misclassified (for targeted: on-target) one first, then the one with the highest loss.

    Args:
        model: The attacked model: any callable mapping a float batch to **logits** (N, C),
            a tf-keras or Keras 3 model, a ``tf.Module`` or a function. Called in inference
            mode (``training=False``).
        x: The clean inputs, an array or tensor (N, ...), floating point, inside ``clip``.
            Never rescaled or clipped.
        y: Integer labels (N,); the target classes when ``targeted=True``.
        eps: The radius: a float, or a sequence of K floats computed in one batched run;
            each finite and >= 0 (eps = 0 returns ``x``).
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
        steps: Gradient steps per restart (>= 1).
        step_size: Size of one step; None: ``2.5 * eps / steps`` for each epsilon.
        random_start: Start from a uniform random point of the eps-ball instead of ``x``.
        restarts: Random starts per example (>= 1); the best point over all of them is
            returned.
        targeted: Move towards the class ``y`` instead of away from it.
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (C&W logit margin) or a callable
            ``loss(logits, labels) -> (N,)``.
        clip: The valid input range ``(low, high)``; None for unbounded inputs.
        seed: Seeds the random start; the same seed (and ``batch_size``) gives the same
            result. None draws fresh entropy.
        batch_size: Examples per compiled call (None: 512); the K*N stacked examples are
            split into batches of this size.
        early_stop: Stop iterating on an example once it is misclassified (on target), and
            let further restarts attack only the examples still standing. Robust accuracy is
            the same, the work is less; the returned point is then the first successful
            iterate, not the highest-loss one (keep ``False`` to generate training examples).
        compute_dtype: None (the model as it is) or ``"bfloat16"`` / ``"float16"`` /
            ``"float32"``: take gradients with a copy of a Keras model computing in that dtype,
            up to twice as fast on hardware with 16-bit units. ``x_adv`` keeps its guarantees
            (ball, clip, dtype); success is judged by the copy, so judge results with the
            original model and report final numbers from float32 attacks. See
            :mod:`attacks.precision`.

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out): shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons.
        Every ``x_adv`` is within ``eps`` of ``x`` in the chosen norm and inside ``clip``.
        An empty batch gives an empty result.

    Raises:
        TypeError: ``model`` is not callable, ``x`` is not floating point, ``y`` does not
            hold integers, ``eps`` is not numeric, or ``seed`` is not an int.
        ValueError: A value named in the message is wrong: NaN in ``x``, ``x`` outside
            ``clip``, a length mismatch, labels outside the model's classes, negative
            ``eps``, ``steps``, ``restarts`` or ``batch_size`` < 1, ``step_size`` <= 0, an
            unknown ``norm``, ``loss`` or ``compute_dtype``, a model that returns
            probabilities, or a model that ``compute_dtype`` cannot copy.
    """
    return loop.run(model, x, y, eps=eps, norm=norm, steps=steps, step_size=step_size,
                    random_start=random_start, restarts=restarts, targeted=targeted, loss=loss,
                    clip=clip, seed=seed, batch_size=batch_size, early_stop=early_stop, compute_dtype=compute_dtype)


def bim(model: Any, x: Any, y: Any, *, eps: Eps, norm: Any = "inf", steps: int = 10,
        step_size: float | None = None, targeted: bool = False, loss: Any = "ce",
        clip: Clip = (0.0, 1.0), batch_size: int | None = None, early_stop: bool = False,
        compute_dtype: str | None = None):
    """Basic iterative method (Kurakin et al. 2017): PGD from ``x`` itself, no random start.

    Deterministic: one start, no seed.

    Args:
        model: The attacked model: any callable mapping a float batch to **logits** (N, C),
            a tf-keras or Keras 3 model, a ``tf.Module`` or a function. Called in inference
            mode (``training=False``).
        x: The clean inputs, an array or tensor (N, ...), floating point, inside ``clip``.
            Never rescaled or clipped.
        y: Integer labels (N,); the target classes when ``targeted=True``.
        eps: The radius: a float, or a sequence of K floats computed in one batched run;
            each finite and >= 0 (eps = 0 returns ``x``).
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
        steps: Gradient steps (>= 1).
        step_size: Size of one step; None: ``2.5 * eps / steps`` for each epsilon.
        targeted: Move towards the class ``y`` instead of away from it.
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (C&W logit margin) or a callable
            ``loss(logits, labels) -> (N,)``.
        clip: The valid input range ``(low, high)``; None for unbounded inputs.
        batch_size: Examples per compiled call (None: 512); the K*N stacked examples are
            split into batches of this size.
        early_stop: Stop iterating on an example once it is misclassified (on target), and
            let further restarts attack only the examples still standing. Robust accuracy is
            the same, the work is less; the returned point is then the first successful
            iterate, not the highest-loss one (keep ``False`` to generate training examples).
        compute_dtype: None (the model as it is) or ``"bfloat16"`` / ``"float16"`` /
            ``"float32"``: take gradients with a copy of a Keras model computing in that dtype,
            up to twice as fast on hardware with 16-bit units. ``x_adv`` keeps its guarantees
            (ball, clip, dtype); success is judged by the copy, so judge results with the
            original model and report final numbers from float32 attacks. See
            :mod:`attacks.precision`.

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out): shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons.
        Every ``x_adv`` is within ``eps`` of ``x`` in the chosen norm and inside ``clip``.
        An empty batch gives an empty result.

    Raises:
        TypeError: ``model`` is not callable, ``x`` is not floating point, ``y`` does not
            hold integers, ``eps`` is not numeric.
        ValueError: A value named in the message is wrong: NaN in ``x``, ``x`` outside
            ``clip``, a length mismatch, labels outside the model's classes, negative
            ``eps``, ``steps`` or ``batch_size`` < 1, ``step_size`` <= 0, an unknown
            ``norm``, ``loss`` or ``compute_dtype``, a model that returns probabilities, or
            a model that ``compute_dtype`` cannot copy.
    """
    return loop.run(model, x, y, eps=eps, norm=norm, steps=steps, step_size=step_size,
                    random_start=False, targeted=targeted, loss=loss, clip=clip, seed=0,
                    batch_size=batch_size, early_stop=early_stop, compute_dtype=compute_dtype)


def mim(model: Any, x: Any, y: Any, *, eps: Eps, norm: Any = "inf", steps: int = 10,
        step_size: float | None = None, decay: float = 1.0, random_start: bool = False,
        restarts: int = 1, targeted: bool = False, loss: Any = "ce", clip: Clip = (0.0, 1.0),
        seed: int | None = None, batch_size: int | None = None, early_stop: bool = False,
        compute_dtype: str | None = None):
    """Momentum iterative method (Dong et al. 2018).

    Accumulates ``m = decay * m + g / ||g||_1`` and steps along the norm's steepest
    direction of ``m``.

    Args:
        model: The attacked model: any callable mapping a float batch to **logits** (N, C),
            a tf-keras or Keras 3 model, a ``tf.Module`` or a function. Called in inference
            mode (``training=False``).
        x: The clean inputs, an array or tensor (N, ...), floating point, inside ``clip``.
            Never rescaled or clipped.
        y: Integer labels (N,); the target classes when ``targeted=True``.
        eps: The radius: a float, or a sequence of K floats computed in one batched run;
            each finite and >= 0 (eps = 0 returns ``x``).
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
        steps: Gradient steps per restart (>= 1).
        step_size: Size of one step; None: ``eps / steps`` for each epsilon, as in the paper.
        decay: The momentum decay factor, in [0, 10]; 0 is plain BIM/PGD.
        random_start: Start from a uniform random point of the eps-ball instead of ``x``.
        restarts: Random starts per example (>= 1); the best point over all of them is
            returned.
        targeted: Move towards the class ``y`` instead of away from it.
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (C&W logit margin) or a callable
            ``loss(logits, labels) -> (N,)``.
        clip: The valid input range ``(low, high)``; None for unbounded inputs.
        seed: Seeds the random start; the same seed (and ``batch_size``) gives the same
            result. None draws fresh entropy.
        batch_size: Examples per compiled call (None: 512); the K*N stacked examples are
            split into batches of this size.
        early_stop: Stop iterating on an example once it is misclassified (on target), and
            let further restarts attack only the examples still standing. Robust accuracy is
            the same, the work is less; the returned point is then the first successful
            iterate, not the highest-loss one (keep ``False`` to generate training examples).
        compute_dtype: None (the model as it is) or ``"bfloat16"`` / ``"float16"`` /
            ``"float32"``: take gradients with a copy of a Keras model computing in that dtype,
            up to twice as fast on hardware with 16-bit units. ``x_adv`` keeps its guarantees
            (ball, clip, dtype); success is judged by the copy, so judge results with the
            original model and report final numbers from float32 attacks. See
            :mod:`attacks.precision`.

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out): shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons.
        Every ``x_adv`` is within ``eps`` of ``x`` in the chosen norm and inside ``clip``.
        An empty batch gives an empty result.

    Raises:
        TypeError: ``model`` is not callable, ``x`` is not floating point, ``y`` does not
            hold integers, ``eps`` is not numeric, or ``seed`` is not an int.
        ValueError: A value named in the message is wrong: NaN in ``x``, ``x`` outside
            ``clip``, a length mismatch, labels outside the model's classes, negative
            ``eps``, ``steps``, ``restarts`` or ``batch_size`` < 1, ``step_size`` <= 0,
            ``decay`` outside [0, 10], an unknown ``norm``, ``loss`` or ``compute_dtype``, a
            model that returns probabilities, or a model that ``compute_dtype`` cannot copy.
    """
    return loop.run(model, x, y, eps=eps, norm=norm, steps=steps, step_size=step_size,
                    rel_step_size=1.0, random_start=random_start, restarts=restarts,
                    targeted=targeted, loss=loss, decay=decay, clip=clip,
                    seed=seed, batch_size=batch_size, early_stop=early_stop, compute_dtype=compute_dtype)


def fgsm(model: Any, x: Any, y: Any, *, eps: Eps, norm: Any = "inf", targeted: bool = False,
         loss: Any = "ce", clip: Clip = (0.0, 1.0), batch_size: int | None = None,
         compute_dtype: str | None = None):
    """Fast gradient (sign) method (Goodfellow et al. 2015): one step of size ``eps``.

    L-inf: ``x + eps * sign(g)``; L2: ``x + eps * g / ||g||_2``; then clipped to ``clip``.
    No random start; the single step is returned even if it does not fool the model.

    Args:
        model: The attacked model: any callable mapping a float batch to **logits** (N, C),
            a tf-keras or Keras 3 model, a ``tf.Module`` or a function. Called in inference
            mode (``training=False``).
        x: The clean inputs, an array or tensor (N, ...), floating point, inside ``clip``.
            Never rescaled or clipped.
        y: Integer labels (N,); the target classes when ``targeted=True``.
        eps: The radius: a float, or a sequence of K floats computed in one batched run;
            each finite and >= 0 (eps = 0 returns ``x``).
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
        targeted: Move towards the class ``y`` instead of away from it.
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (C&W logit margin) or a callable
            ``loss(logits, labels) -> (N,)``.
        clip: The valid input range ``(low, high)``; None for unbounded inputs.
        batch_size: Examples per compiled call (None: 512); the K*N stacked examples are
            split into batches of this size.
        compute_dtype: None (the model as it is) or ``"bfloat16"`` / ``"float16"`` /
            ``"float32"``: take gradients with a copy of a Keras model computing in that dtype,
            up to twice as fast on hardware with 16-bit units. ``x_adv`` keeps its guarantees
            (ball, clip, dtype); success is judged by the copy, so judge results with the
            original model and report final numbers from float32 attacks. See
            :mod:`attacks.precision`.

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out): shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons.
        Every ``x_adv`` is within ``eps`` of ``x`` in the chosen norm and inside ``clip``.
        An empty batch gives an empty result.

    Raises:
        TypeError: ``model`` is not callable, ``x`` is not floating point, ``y`` does not
            hold integers, ``eps`` is not numeric.
        ValueError: A value named in the message is wrong: NaN in ``x``, ``x`` outside
            ``clip``, a length mismatch, labels outside the model's classes, negative
            ``eps``, ``batch_size`` < 1, an unknown ``norm``, ``loss`` or ``compute_dtype``,
            a model that returns probabilities, or a model that ``compute_dtype`` cannot
            copy.
    """
    return loop.run(model, x, y, eps=eps, norm=norm, steps=1, rel_step_size=1.0, random_start=False,
                    targeted=targeted, loss=loss, keep_best=False, clip=clip, seed=0,
                    batch_size=batch_size, compute_dtype=compute_dtype)
