"""Square Attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"): random search on the margin loss, model outputs only.

    margin(x) = logit_y(x) - max_{j != y} logit_j(x)          (lower is better for the attack)
    x_best = initial point (below);  1 query
    repeat until the example is fooled or `queries` are spent:
        s = side of a square covering a share p of the pixels (p follows the schedule below)
        x_new = x_best with one random s x s square (all channels) changed, back in ball and range
        if margin(x_new) < margin(x_best): x_best = x_new;  1 query

L-inf: the start is ``x + eps * (+-1)`` in vertical stripes (one sign per column and
channel); a step sets one square, per channel, to ``x +- eps`` (the vertex of the ball).
L2: the start is a grid of pseudo-Gaussian blocks with random signs, scaled to norm eps; a
step moves mass between two squares: the first gets a new pseudo-Gaussian block (added to
its old content, renormalised so that it absorbs the second square's mass and any budget
left), the second is zeroed, and the whole perturbation is rescaled to norm eps.

The share p starts at ``p_init`` and is halved after 10, 50, 200, 500, 1000, 2000, 4000,
6000 and 8000 ten-thousandths of the query budget (the reference's schedule, tuned for
5000 queries and rescaled to any budget).

Queries are counted per example as in the reference: the initial point is the first, every
random-search step one more; the clean input's prediction is taken as given (an example
the model already misclassifies is returned unchanged and costs no query). An example
stops being queried once it is fooled; its result is the first misclassified point found,
else the lowest-margin point. The result is in the eps-ball and the clip range.

Inputs are read channels-last: an example of shape (H, W, C) as is, (H, W) as one channel,
(D,) as a single row of D pixels (squares then are single coordinates), and (H, W, C1, ...)
with the trailing axes as channels.

Deviations from the reference code (fra31/auto-attack ``square.py``), and why:

* Every example draws its own square positions and signs (AutoAttack draws one square per
  iteration for the whole batch; the authors' original code draws per example). Per-example
  draws, generated for every example of ``x`` from a counter-based seed, make a result
  independent of the batch, of ``batch_size`` and of the other epsilons of the call.
* Square positions range over every position (``0 .. H - s``); the reference's exclusive
  upper bound never places a square on the last row or column and fails when ``s = H``.
* L-inf: when a square's new signs would leave the point unchanged, the reference redraws
  them until it changes; here up to ``SIGN_TRIES`` draws are made at once and the first
  that changes the point is used (with one channel the second draw always does).
* L2: the square side is capped at the input's shorter side and the start's block side is
  at least 1, so inputs smaller than 5 x 5 work.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from attacks import validation
from attacks.backend import tf
from attacks.compiled import CompiledCache

DEFAULT_BATCH_SIZE = 512
SIGN_TRIES = 8  # L-inf sign draws per step and example; the first that changes the point is used
# Query fractions, in ten-thousandths of the budget, after which p is halved once more.
P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_COMPILED = CompiledCache(limit=None)  # one logits function per dtype and example shape

Eps = float | Sequence[float]
Clip = tuple[float, float] | None


def square(model: Any, x: Any, y: Any, *, eps: Eps, norm: Any = "inf", queries: int = 5000, p_init: float = 0.8,
           seed: int | None = None, clip: Clip = (0.0, 1.0), batch_size: int | None = None):
    """Square Attack (Andriushchenko et al. 2020), untargeted, L-inf or L2, on logits only.

    Args:
        model: Callable mapping a float batch to logits (N, C); called with
            ``training=False`` when it takes that argument. Only its outputs are used, never
            a gradient.
        x: Array or tensor (N, ...), floating point, inside ``clip``; never rescaled. Read
            channels-last (see the module docstring).
        y: True integer labels (N,).
        eps: A float (``x_adv`` shaped like ``x``) or a sequence of K floats (``x_adv``
            (K, N, ...), one batched run, each row with its own radius); each >= 0.
        norm: ``"inf"`` (or ``np.inf``) or ``"l2"`` (or ``2``).
        queries: Model evaluations per example at most, the initial point included.
        p_init: Initial share of the pixels a square covers, 0 < p_init <= 1; halved on the
            reference's schedule.
        seed: Seeds the random search; the same seed gives the same result. A row's draws
            depend only on the seed and its example, not on ``batch_size`` or the other
            epsilons of the call.
        clip: The valid input range (low, high), or None for unbounded inputs.
        batch_size: Rows (example and epsilon pairs) per model call, default 512.

    Returns:
        ``x_adv`` with the dtype and array type of ``x`` (NumPy in, NumPy out; tensor in,
        tensor out), shaped like ``x`` for a scalar ``eps``, (K, N, ...) for K epsilons;
        inside each ball and inside ``clip``. Per example: ``x`` itself if the model
        already misclassifies it (or eps is 0), else the first misclassified point found,
        else the lowest-margin point found.

    Raises:
        ValueError: NaN or infinite values in x, x outside clip, length mismatch, labels
            outside the model's classes, negative eps, queries/batch_size < 1, p_init
            outside (0, 1], unknown norm, a model returning probabilities instead of logits.
        TypeError: Non-float x, non-integer labels, a non-numeric p_init, a seed that is not
            an int, a model that is not callable.
    """
    x_adv, _ = square_with_queries(model, x, y, eps=eps, norm=norm, queries=queries, p_init=p_init, seed=seed,
                                   clip=clip, batch_size=batch_size)
    return x_adv


def square_with_queries(model: Any, x: Any, y: Any, *, eps: Eps, norm: Any = "inf", queries: int = 5000,
                        p_init: float = 0.8, seed: int | None = None, clip: Clip = (0.0, 1.0),
                        batch_size: int | None = None) -> tuple[Any, np.ndarray]:
    """:func:`square`, and the queries each example took.

    Args:
        model: As for :func:`square`.
        x: As for :func:`square`.
        y: As for :func:`square`.
        eps: As for :func:`square`.
        norm: As for :func:`square`.
        queries: As for :func:`square`.
        p_init: As for :func:`square`.
        seed: As for :func:`square`.
        clip: As for :func:`square`.
        batch_size: As for :func:`square`.

    Returns:
        ``(x_adv, used)``: ``x_adv`` as returned by :func:`square`; ``used`` an int64 array
        (N,) for a scalar eps, (K, N) for K epsilons, of the model evaluations each example
        took: 0 where it was misclassified already or eps is 0, 1 where the initial point
        fooled the model, at most ``queries``.

    Raises:
        ValueError: As for :func:`square`.
        TypeError: As for :func:`square`.
    """
    given = validation.attack_input(x, y, eps, norm, clip)
    queries = validation.check_positive_int(queries, "queries")
    p_init = validation.check_positive_float(p_init, "p_init")
    if p_init > 1:
        raise ValueError(f"p_init must be a share of the pixels in (0, 1], got {p_init!r}")
    batch_size = validation.check_positive_int(batch_size or DEFAULT_BATCH_SIZE, "batch_size")
    validation.check_seed(seed)

    x_np, y_np, epsilons = given.x, given.y, given.epsilons
    k, n = len(epsilons), len(x_np)
    if n == 0:
        used = np.zeros((k, 0), np.int64)
        return given.output(np.zeros((k, *x_np.shape), x_np.dtype)), (used[0] if given.scalar_eps else used)
    logits_fn = validation.inference_fn(model)
    validation.model_classes(logits_fn, x_np, y_np)
    search = _Search(_compiled_logits(model, x_np), x_np, y_np, epsilons, given.norm, given.clip, batch_size)
    base_seed = int(np.random.default_rng(seed).integers(0, 2**62))
    search.run(queries, p_init, base_seed)
    result = search.best.reshape(k, *x_np.shape)
    used = search.used.reshape(k, n)
    return given.output(result), (used[0] if given.scalar_eps else used)


def p_schedule(iteration: int, queries: int, p_init: float) -> float:
    """The share of the pixels a square covers at a random-search step.

    Args:
        iteration: The step, counted from 0 (the initial point is not a step).
        queries: The query budget, >= 1.
        p_init: The initial share, in (0, 1].

    Returns:
        ``p_init`` halved once for every mark of ``P_HALVINGS`` (ten-thousandths of the
        budget) that ``iteration`` has passed.
    """
    progress = iteration * 10000 // queries
    return p_init / 2 ** sum(progress > mark for mark in P_HALVINGS)


def pseudo_gaussian_block(side: int, transposed: bool = False) -> np.ndarray:
    """The L2 update's ``side x side`` block, of unit L2 norm.

    A positive top half and a negative bottom half, each a sum of nested centred
    rectangles, the k-th weighted ``1 / (k + 1)^2`` (the paper's pseudo-Gaussian square).

    Args:
        side: The block's side, >= 1.
        transposed: Split left/right instead of top/bottom.

    Returns:
        A float64 array (side, side) with L2 norm 1.
    """
    top, bottom = _nested_rectangles(side // 2, side), -_nested_rectangles(side - side // 2, side)
    block = np.concatenate([top, bottom], axis=0)
    block /= np.sqrt(np.sum(block ** 2))
    return block.T if transposed else block


def _nested_rectangles(rows: int, cols: int) -> np.ndarray:
    """(rows, cols): at Chebyshev distance d from the centre, sum_{k=d}^{m-1} 1/(k+1)^2 with
    m = max(rows, cols) // 2 + 1; unit L2 norm (empty when rows is 0)."""
    if rows == 0:
        return np.zeros((0, cols))
    distance = np.maximum(np.abs(np.arange(rows) - rows // 2)[:, None], np.abs(np.arange(cols) - cols // 2)[None, :])
    rings = max(rows // 2, cols // 2) + 1
    tail = np.cumsum((1.0 / np.arange(1, rings + 1) ** 2)[::-1])[::-1]  # tail[d] = sum_{k>=d}
    values = tail[distance]
    return values / np.sqrt(np.sum(values ** 2))


def _grid_shape(example_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of an example read channels-last (see the module docstring)."""
    if len(example_shape) == 1:
        return 1, example_shape[0], 1
    return example_shape[0], example_shape[1], int(np.prod(example_shape[2:], dtype=np.int64))


def _compiled_logits(model: Any, x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The model's logits as a compiled function of NumPy batches (one trace per dtype and
    example shape, kept with the model)."""
    key = (x.dtype.name, tuple(x.shape[1:]))
    per_model = _COMPILED.of(model)
    compiled = _COMPILED.get(per_model, key, lambda: tf.function(
        validation.inference_fn(model), input_signature=[tf.TensorSpec((None, *x.shape[1:]), x.dtype)]))
    return lambda batch: compiled(tf.constant(batch)).numpy()


class _Search:
    """Every (epsilon, example) row of one call, on a (rows, H, W, C) grid, and its best point."""

    def __init__(self, logits: Callable, x: np.ndarray, y: np.ndarray, epsilons: np.ndarray, norm: str, clip: Clip,
                 batch_size: int) -> None:
        n = len(x)
        self.logits, self.norm, self.clip, self.batch_size = logits, norm, clip, batch_size
        self.example_shape = tuple(x.shape[1:])
        self.x = x.reshape(n, *_grid_shape(self.example_shape))  # (N, H, W, C), once per example
        self.y = y
        self.example = np.tile(np.arange(n), len(epsilons))  # (R,) the example of each row
        self.eps = np.repeat(epsilons, n).astype(x.dtype)  # (R,)
        self.best = self.x[self.example]  # (R, H, W, C) the point returned for each row
        self.margin = np.full(len(self.example), np.inf)
        self.used = np.zeros(len(self.example), np.int64)
        _, fooled = self._margins(self.x, np.arange(n))
        self.open = (self.eps > 0) & ~fooled[self.example]  # still to attack

    def run(self, queries: int, p_init: float, base_seed: int) -> None:
        """The initial points, then random-search steps until every row is fooled or spent.

        The draws of a step are made for every example of ``x`` and picked by each row's
        example, so a row's draws do not depend on which rows are still open.
        """
        rows = np.flatnonzero(self.open)
        initial = self._linf_start if self.norm == "inf" else self._l2_start
        self._offer(rows, initial(rows, np.random.default_rng([base_seed, 0])))
        step = self._linf_step if self.norm == "inf" else self._l2_step
        for iteration in range(queries - 1):
            rows = np.flatnonzero(self.open)
            if not rows.size:
                return
            rng = np.random.default_rng([base_seed, iteration + 1])
            self._offer(rows, step(rows, p_schedule(iteration, queries, p_init), rng))

    def _offer(self, rows: np.ndarray, candidates: np.ndarray) -> None:
        """Query the rows' candidates; keep those that lower the margin; close fooled rows."""
        if not rows.size:
            return
        margin, fooled = self._margins(candidates, self.example[rows])
        self.used[rows] += 1
        better = (margin < self.margin[rows]) | fooled
        self.best[rows[better]] = candidates[better]
        self.margin[rows[better]] = margin[better]
        self.open[rows[fooled]] = False

    def _margins(self, points: np.ndarray, examples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(margin, misclassified) of points (M, H, W, C) of the given examples."""
        flat = points.reshape(len(points), *self.example_shape)
        logits = np.concatenate([self.logits(flat[start:start + self.batch_size])
                                 for start in range(0, len(flat), self.batch_size)]).astype(np.float64)
        labels, index = self.y[examples], np.arange(len(points))
        fooled = np.argmax(logits, axis=1) != labels
        true = logits[index, labels]
        logits[index, labels] = -np.inf
        return true - logits.max(axis=1), fooled

    def _feasible(self, points: np.ndarray) -> np.ndarray:
        return points if self.clip is None else np.clip(points, self.clip[0], self.clip[1]).astype(points.dtype)

    def _linf_start(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``x + eps * sign`` with one sign per column and channel (vertical stripes)."""
        n, _, width, channels = self.x.shape
        signs = rng.choice(np.array([-1.0, 1.0], self.x.dtype), size=(n, 1, width, channels))
        x = self.x[self.example[rows]]
        return self._feasible(x + _per_row(self.eps[rows]) * signs[self.example[rows]])

    def _linf_step(self, rows: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
        """Each row's best point with one random square set, per channel, to ``x +- eps``."""
        n, height, width, channels = self.x.shape
        side = min(max(int(round(math.sqrt(p * height * width))), 1), height, width)
        top, left = rng.integers(0, height - side + 1, n), rng.integers(0, width - side + 1, n)
        signs = rng.choice(np.array([-1.0, 1.0], self.x.dtype), size=(SIGN_TRIES, n, 1, 1, channels))
        examples = self.example[rows]
        window = _window(top[examples], left[examples], side, height, width)
        x, best, eps = self.x[examples], self.best[rows], _per_row(self.eps[rows])
        candidate = np.where(window, self._feasible(x + eps * signs[0][examples]), best)
        pending = _unchanged(candidate, best)
        for signs_try in signs[1:]:
            if not pending.any():
                break
            proposal = np.where(window, self._feasible(x + eps * signs_try[examples]), best)
            candidate = np.where(_per_row(pending), proposal, candidate)
            pending &= _unchanged(proposal, best)
        return candidate

    def _l2_start(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A grid of pseudo-Gaussian blocks with random signs per block and channel, scaled
        to norm eps."""
        n, height, width, channels = self.x.shape
        side = max(min(height, width) // 5, 1)
        blocks_down, blocks_across = height // side, width // side
        signs = rng.choice([-1.0, 1.0], size=(n, blocks_down, blocks_across, channels))
        transposed = rng.random((blocks_down, blocks_across)) > 0.5
        delta = np.zeros((n, height, width, channels))
        top0, left0 = (height - side * blocks_down) // 2, (width - side * blocks_across) // 2
        for i in range(blocks_down):
            for j in range(blocks_across):
                block = pseudo_gaussian_block(side, bool(transposed[i, j]))[None, :, :, None]
                top, left = top0 + i * side, left0 + j * side
                delta[:, top:top + side, left:left + side] += block * signs[:, i:i + 1, j:j + 1, :]
        return self._l2_point(rows, delta[self.example[rows]])

    def _l2_step(self, rows: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
        """Each row's perturbation with a new pseudo-Gaussian block added to one square
        (taking the second square's mass and any unused budget) and the second zeroed."""
        n, height, width, channels = self.x.shape
        side = min(max(int(round(math.sqrt(p * height * width))), 3), height, width)
        side = side + 1 if side % 2 == 0 and side < min(height, width) else side
        corners = [rng.integers(0, limit - side + 1, n) for limit in (height, width, height, width)]
        signs = rng.choice([-1.0, 1.0], size=(n, 1, 1, channels))
        transposed = rng.random(n) > 0.5
        examples = self.example[rows]
        first = _window(corners[0][examples], corners[1][examples], side, height, width)
        second = _window(corners[2][examples], corners[3][examples], side, height, width)
        delta = (self.best[rows] - self.x[examples]).astype(np.float64)
        eps = self.eps[rows].astype(np.float64)
        # Budget for the first square: its old mass, the second square's and what is unused.
        unused = np.maximum(eps ** 2 - np.sum(delta ** 2, axis=(1, 2, 3)), 0.0)[:, None, None, None] / channels
        both = np.sum((delta * (first | second)) ** 2, axis=(1, 2), keepdims=True)
        old = delta * first
        old /= 1e-12 + np.sqrt(np.sum(old ** 2, axis=(1, 2), keepdims=True))
        patterns = np.stack([pseudo_gaussian_block(side), pseudo_gaussian_block(side, True)])
        new = _place(patterns[transposed[examples].astype(int)], corners[0][examples], corners[1][examples],
                     height, width)[..., None] * signs[examples] + old
        new *= np.sqrt(unused + both) / (1e-12 + np.sqrt(np.sum(new ** 2, axis=(1, 2), keepdims=True)))
        delta = np.where(second, 0.0, delta)
        return self._l2_point(rows, np.where(first, new, delta))

    def _l2_point(self, rows: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """``x + eps * delta / ||delta||``, clipped; inside the ball (clipping moves each
        coordinate towards ``x``, which is in the range)."""
        length = np.sqrt(np.sum(delta ** 2, axis=(1, 2, 3)))
        scale = self.eps[rows].astype(np.float64) / np.maximum(length, 1e-12)
        point = self.x[self.example[rows]] + (delta * _per_row(scale)).astype(self.x.dtype)
        return self._feasible(point)


def _per_row(values: np.ndarray) -> np.ndarray:
    return values[:, None, None, None]


def _unchanged(points: np.ndarray, best: np.ndarray) -> np.ndarray:
    return np.all((points == best).reshape(len(points), -1), axis=1)


def _window(top: np.ndarray, left: np.ndarray, side: int, height: int, width: int) -> np.ndarray:
    """(M, H, W, 1) bool: each row's ``side x side`` square with the given corner."""
    rows = (np.arange(height)[None] >= top[:, None]) & (np.arange(height)[None] < top[:, None] + side)
    cols = (np.arange(width)[None] >= left[:, None]) & (np.arange(width)[None] < left[:, None] + side)
    return (rows[:, :, None] & cols[:, None, :])[..., None]


def _place(blocks: np.ndarray, top: np.ndarray, left: np.ndarray, height: int, width: int) -> np.ndarray:
    """(M, H, W): each row's block (M, s, s) at its corner, zero elsewhere."""
    side = blocks.shape[1]
    local_rows = np.clip(np.arange(height)[None] - top[:, None], 0, side - 1)
    local_cols = np.clip(np.arange(width)[None] - left[:, None], 0, side - 1)
    placed = blocks[np.arange(len(blocks))[:, None, None], local_rows[:, :, None], local_cols[:, None, :]]
    return placed * _window(top, left, side, height, width)[..., 0]
